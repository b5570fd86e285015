"""The annotation survey: HTTP API, concurrency, a SIGKILL mid-stream, a real browser, export."""

import base64
import contextlib
import hashlib
import http.client
import io as bytes_io
import json
import math
import os
import pathlib
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from configs import annotate as annotate_config
from tiqa import annotations, errors, labels
from tiqa.annotate import export, server, store as store_lib
from tiqa.phases import annotate as annotate_phase

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Student's t, 97.5th percentile, 2 degrees of freedom, in closed form: (2p - 1) / sqrt(2p(1 - p)).
T_975_DF2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)


# ----------------------------------------------------------------------------------------------
# Fixtures and helpers.
# ----------------------------------------------------------------------------------------------


def _write_images(folder: pathlib.Path, count: int, seed: int) -> pathlib.Path:
    """`count` small, distinct grey PNGs (distinct sizes too, to check native size)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(count):
        pixels = rng.integers(0, 256, (16 + k % 5, 24 + k % 7), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"slice_{k:03d}.png")
    return folder


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory) -> pathlib.Path:
    return _write_images(tmp_path_factory.mktemp("small"), 12, seed=1)


@pytest.fixture(scope="module")
def large_folder(tmp_path_factory) -> pathlib.Path:
    # 182 images + round(18.2) repeats = 200 presentations per observer.
    return _write_images(tmp_path_factory.mktemp("large"), 182, seed=2)


def _survey(images, store, **overrides):
    return annotate_phase.survey_settings(_config(images, store, **overrides))


def _config(images, store, **overrides):
    config = annotate_config.get_config()
    config.images, config.store, config.port = str(images), str(store), 0
    for key, value in overrides.items():
        config[key] = value
    return config


@contextlib.contextmanager
def _running(config):
    """An in-process survey server on a free port; yields it, then shuts it down."""
    httpd = server.make_server(annotate_phase.survey_settings(config))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        httpd.survey.close()


def _call(port, method, path, body=None, headers=None, raw=None, connection=None):
    """(status, parsed JSON or bytes, headers) of one request."""
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        kind = response.getheader("Content-Type", "")
        if kind.startswith("application/json"):
            payload = json.loads(payload)
        return response.status, payload, response
    finally:
        if own:
            connection.close()


def _next(port, observer, connection=None):
    status, data, _ = _call(port, "GET", "/api/next?observer=" + urllib.parse.quote(observer),
                            connection=connection)
    assert status == 200, data
    return data


def _rate(port, observer, image_id, score, connection=None):
    return _call(port, "POST", "/api/rate",
                 {"observer": observer, "image_id": image_id, "score": score},
                 connection=connection)


def _store_rows(path, include_withdrawn=False):
    with store_lib.RatingStore(path) as store:
        return store.ratings(include_withdrawn=include_withdrawn)


# ----------------------------------------------------------------------------------------------
# Presentation order.
# ----------------------------------------------------------------------------------------------


def test_presentation_order_is_per_observer_reproducible_with_later_repeats():
    ids = [f"image{k}" for k in range(60)]
    alice = store_lib.presentation_order(ids, "Alice", seed=0, repeat_fraction=0.1)
    assert alice == store_lib.presentation_order(ids, "Alice", seed=0, repeat_fraction=0.1)
    assert alice != store_lib.presentation_order(ids, "Bob", seed=0, repeat_fraction=0.1)
    assert alice != store_lib.presentation_order(ids, "Alice", seed=1, repeat_fraction=0.1)
    first = [image for image, repeat in alice if not repeat]
    repeats = [image for image, repeat in alice if repeat]
    assert sorted(first) == sorted(ids) and len(repeats) == 6
    for image in repeats:
        where = [k for k, (i, _) in enumerate(alice) if i == image]
        assert alice[where[0]][1] is False and where[1] - where[0] >= 60 // 4
    assert len(store_lib.presentation_order(ids[:5], "A", 0, 0.1)) == 6  # at least one repeat
    assert len(store_lib.presentation_order(ids, "A", 0, 0.0)) == 60


# ----------------------------------------------------------------------------------------------
# The HTTP API.
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_full_session_with_going_back(small_folder, tmp_path):
    store_path = tmp_path / "ratings.sqlite"
    with _running(_config(small_folder, store_path)) as httpd:
        port = httpd.server_address[1]
        status, page, response = _call(port, "GET", "/")
        assert status == 200 and b"Image quality survey" in page
        assert "nonce-" in response.getheader("Content-Security-Policy")
        status, example, _ = _call(port, "GET", "/example/ring/5.png")
        assert status == 200 and Image.open(bytes_io.BytesIO(example)).mode == "L"

        observer, shown, total = "Grace H.", [], None
        while True:
            data = _next(port, observer)
            if data["done"]:
                break
            total = data["total"]
            assert data["position"] == len(shown) and data["rated"] == len(shown)
            # The image is the file's own grey pixels, at its own size.
            status, png, response = _call(port, "GET", data["url"])
            assert status == 200 and response.getheader("Content-Type") == "image/png"
            image = Image.open(bytes_io.BytesIO(png))
            assert image.mode == "L" and image.size == (data["width"], data["height"])
            source = httpd.survey.images[data["image_id"]].item[0]
            np.testing.assert_array_equal(np.asarray(image), np.asarray(Image.open(source)))
            score = 1 + len(shown) % 5
            status, answer, _ = _rate(port, observer, data["image_id"], score)
            assert status == 200 and answer["position"] == len(shown), answer
            shown.append((data["image_id"], score))
            if len(shown) == 3:  # go back and change the last rating
                status, answer, _ = _call(port, "POST", "/api/undo", {"observer": observer})
                assert status == 200 and answer["position"] == 2 and answer["score"] == 3
                again = _next(port, observer)
                assert again["position"] == 2 and again["image_id"] == shown[-1][0]
                assert again["previous_score"] == 3 and again["rated"] == 2
                status, _, _ = _rate(port, observer, again["image_id"], 5)
                assert status == 200
                shown[-1] = (again["image_id"], 5)
                status, _, _ = _call(port, "POST", "/api/undo", {"observer": observer})
                assert status == 200
                status, error, _ = _call(port, "POST", "/api/undo", {"observer": observer})
                assert status == 409 and "no last rating" in error["error"]  # one step back only
                status, _, _ = _rate(port, observer, again["image_id"], 5)
                assert status == 200
        assert total == 12 + 1 and len(shown) == total
        assert data == {"done": True, "observer": observer, "total": total, "rated": total,
                        "can_go_back": True}
        # 12 distinct images; the repeat is one of them, shown twice.
        assert len({i for i, _ in shown}) == 12
        status, error, _ = _rate(port, observer, shown[0][0], 4)
        assert status == 409 and "rated all" in error["error"]
        status, page, _ = _call(port, "GET", "/status")
        assert status == 200 and b"Grace H." in page and b"13 of 13" in page
    active = _store_rows(store_path)
    assert [(r.image_id, r.score) for r in active] == shown
    assert [r.position for r in active] == list(range(total))
    everything = _store_rows(store_path, include_withdrawn=True)
    assert len(everything) == total + 2  # two withdrawn ratings are kept, not deleted
    assert sum(r.repeat for r in active) == 1


def test_bad_input_is_refused_with_json_errors(small_folder, tmp_path):
    with _running(_config(small_folder, tmp_path / "ratings.sqlite")) as httpd:
        port = httpd.server_address[1]
        first = _next(port, "Ada")
        image_id = first["image_id"]
        other_id = next(i for i in httpd.survey.image_ids if i != image_id)
        good = {"observer": "Ada", "image_id": image_id, "score": 3}
        bad_bodies = {
            "score 0": {**good, "score": 0},
            "score 6": {**good, "score": 6},
            "score text": {**good, "score": "3"},
            "score fraction": {**good, "score": 3.5},
            "score bool": {**good, "score": True},
            "score null": {**good, "score": None},
            "unknown image": {**good, "image_id": "0" * 20},
            "image not text": {**good, "image_id": 7},
            "missing observer": {"image_id": image_id, "score": 3},
            "missing image": {"observer": "Ada", "score": 3},
            "missing score": {"observer": "Ada", "image_id": image_id},
            "empty name": {**good, "observer": ""},
            "script name": {**good, "observer": "<script>alert(1)</script>"},
            "long name": {**good, "observer": "a" * 65},
            "padded name": {**good, "observer": " Ada"},
            "control name": {**good, "observer": "Ada\nB"},
            "name not text": {**good, "observer": ["Ada"]},
        }
        for case, body in bad_bodies.items():
            status, error, _ = _call(port, "POST", "/api/rate", body)
            assert status == 400 and isinstance(error, dict) and error["error"], case
        for case, raw, kind in (("malformed", b'{"observer": "Ada", "score"', "application/json"),
                                ("not an object", b'[1, 2, 3]', "application/json"),
                                ("not UTF-8", b'{"observer": "\xff"}', "application/json"),
                                ("empty", b"", "application/json"),
                                ("form post", b"observer=Ada&score=3",
                                 "application/x-www-form-urlencoded")):
            status, error, _ = _call(port, "POST", "/api/rate", raw=raw,
                                     headers={"Content-Type": kind})
            assert status == 400 and error["error"], case
        status, error, _ = _call(port, "POST", "/api/undo", {"observer": "Ada"})
        assert status == 409  # nothing rated yet
        status, error, _ = _call(port, "POST", "/api/undo", {})
        assert status == 400 and "observer" in error["error"]
        # A known image that is not the one to rate now (a stale or doubled request).
        status, error, _ = _rate(port, "Ada", other_id, 3)
        assert status == 409 and error["expected_image_id"] == image_id
        for path in ("/api/next", "/api/next?observer=", "/api/next?observer=%3Cb%3E"):
            status, error, _ = _call(port, "GET", path)
            assert status == 400 and error["error"], path
        # Images come from the survey's folder only, looked up by content hash.
        for path in ("/image/../../../../etc/passwd", "/image/..%2F..%2F..%2Fetc%2Fpasswd",
                     "/%2e%2e/%2e%2e/etc/passwd", "/example/../../../etc/passwd",
                     f"/image/{'0' * 20}.png", f"/image/{image_id}.png/../../x",
                     "/slice_000.png", "/image/slice_000.png"):
            status, error, _ = _call(port, "GET", path)
            assert status == 404 and b"root:" not in json.dumps(error).encode(), path
        status, _, _ = _call(port, "GET", "/", headers={"Host": "attacker.example:80"})
        assert status == 421  # DNS rebinding guard
        # Names are escaped in the page.
        hostile = "<script>alert('x')</script>\"&"
        status, page, _ = _call(port, "GET", "/?observer=" + urllib.parse.quote(hostile))
        assert status == 200 and b"<script>alert(" not in page
        assert b"&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&amp;" in page
        _next(port, "O'Brien")
        status, page, _ = _call(port, "GET", "/status")
        assert b"O&#x27;Brien" in page and b"O'Brien" not in page
        # After all that, the first rating still lands where it should.
        status, answer, _ = _rate(port, "Ada", image_id, 3)
        assert status == 200 and answer["position"] == 0


def test_token_is_required_off_loopback_and_checked_on_every_request(small_folder, tmp_path):
    with pytest.raises(ValueError, match="token"):
        server.Survey(_survey(small_folder, tmp_path / "a.sqlite", host="0.0.0.0"))
    with pytest.raises(ValueError, match="token"):
        server.Survey(_survey(small_folder, tmp_path / "a.sqlite", token="short"))
    token = "s3cret-token-for-tests"
    with _running(_config(small_folder, tmp_path / "b.sqlite", token=token)) as httpd:
        port = httpd.server_address[1]
        for path in ("/", "/api/health", "/api/next?observer=Ada", "/example/original.png"):
            status, error, _ = _call(port, "GET", path)
            assert status == 401 and "token" in error["error"], path
        status, error, _ = _call(port, "GET", "/api/health?token=wrong-token-value")
        assert status == 401
        status, error, _ = _call(port, "POST", "/api/rate", {"observer": "Ada"})
        assert status == 401
        status, _, response = _call(port, "GET", f"/?token={token}")
        assert status == 200 and token in response.getheader("Set-Cookie")
        assert _call(port, "GET", "/api/health", headers={"X-TIQA-Token": token})[0] == 200
        assert _call(port, "GET", "/api/health",
                     headers={"Cookie": f"tiqa_token={token}"})[0] == 200


@pytest.mark.slow
def test_five_observers_post_1000_ratings_concurrently(large_folder, tmp_path):
    store_path = tmp_path / "ratings.sqlite"
    observers = [f"observer {k}" for k in range(5)]
    failures = []

    def session(observer):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            for k in range(200):
                data = _next(port, observer, connection)
                status, answer, _ = _rate(port, observer, data["image_id"], 1 + k % 5,
                                          connection)
                if status != 200:
                    failures.append((observer, k, status, answer))
                    return
        except Exception as error:  # reported below, with the observer
            failures.append((observer, repr(error)))
        finally:
            connection.close()

    with _running(_config(large_folder, store_path)) as httpd:
        port = httpd.server_address[1]
        threads = [threading.Thread(target=session, args=(o,)) for o in observers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not failures, failures[:3]
        assert all(_next(port, o)["done"] for o in observers)
    rows = _store_rows(store_path)
    assert len(rows) == 1000
    for observer in observers:
        mine = [r for r in rows if r.observer == observer]
        assert sorted(r.position for r in mine) == list(range(200))
        assert [r.score for r in sorted(mine, key=lambda r: r.position)] == [
            1 + k % 5 for k in range(200)]


# ----------------------------------------------------------------------------------------------
# A SIGKILL in the middle of a stream of ratings.
# ----------------------------------------------------------------------------------------------


def _start_subprocess(images, store_path, log_path):
    """`python -m launch.annotate` on a free port; returns (process, port) once it listens."""
    log = open(log_path, "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "launch.annotate", f"--config.images={images}",
         f"--config.store={store_path}", "--config.port=0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log)
    log.close()
    ready, _, _ = select.select([process.stdout], [], [], 90)
    line = process.stdout.readline().decode() if ready else ""
    if "http://127.0.0.1:" not in line:
        process.kill()
        process.wait()
        raise AssertionError(f"the survey did not start: {line!r}; log: "
                             f"{pathlib.Path(log_path).read_text()[-2000:]}")
    port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
    return process, port


def test_sigkill_mid_stream_loses_no_acknowledged_rating(large_folder, tmp_path):
    store_path = tmp_path / "ratings.sqlite"
    process, port = _start_subprocess(large_folder, store_path, tmp_path / "server.log")
    acknowledged = {"Kim": [], "Lee": []}
    stop = threading.Event()

    def stream(observer):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while not stop.is_set():
                data = _next(port, observer, connection)
                score = 1 + data["position"] % 5
                status, answer, _ = _rate(port, observer, data["image_id"], score, connection)
                assert status == 200, answer
                acknowledged[observer].append((data["position"], data["image_id"], score))
        except (OSError, http.client.HTTPException):
            pass  # the server died under us: expected
        finally:
            connection.close()

    try:
        threads = [threading.Thread(target=stream, args=(o,)) for o in acknowledged]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while min(map(len, acknowledged.values())) < 15 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)  # while both streams are in flight
        process.wait(timeout=30)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert min(map(len, acknowledged.values())) >= 15

    # A plain SQLite reader (recovering the WAL) finds every acknowledged rating.
    with contextlib.closing(sqlite3.connect(store_path)) as db:
        stored = set(db.execute("SELECT observer, position, image_id, score FROM ratings "
                                "WHERE withdrawn IS NULL").fetchall())
    for observer, acks in acknowledged.items():
        assert {(observer, *ack) for ack in acks} <= stored
        # At most the one rating in flight at the kill was stored without its answer.
        assert len({s for s in stored if s[0] == observer}) in (len(acks), len(acks) + 1)

    process, port = _start_subprocess(large_folder, store_path, tmp_path / "server.log")
    try:
        for observer in acknowledged:
            count = len({s for s in stored if s[0] == observer})
            data = _next(port, observer)
            assert data["position"] == count and data["rated"] == count
            assert (observer, data["position"] - 1) in {s[:2] for s in stored}
            status, _, _ = _rate(port, observer, data["image_id"], 2)
            assert status == 200
            assert _next(port, observer)["position"] == count + 1
    finally:
        process.kill()
        process.wait(timeout=30)


# ----------------------------------------------------------------------------------------------
# A real browser: headless Chromium over the DevTools protocol (standard library only).
# ----------------------------------------------------------------------------------------------


class _WebSocket:
    """A minimal RFC 6455 client: text frames out (masked), text frames in."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the DevTools socket closed during the handshake")
            response += chunk
        head, self.buffer = response.split(b"\r\n\r\n", 1)
        accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        if b" 101 " not in head.split(b"\r\n")[0] or accept.encode() not in head:
            raise ConnectionError(f"WebSocket handshake refused: {head[:200]!r}")

    def _exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the DevTools socket closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def _frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = bytes([0x80 | opcode, 0x80 | length])
        elif length < 1 << 16:
            header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
        else:
            header = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
        masked = bytes(b ^ mask[k % 4] for k, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send(self, text: str) -> None:
        self._frame(0x1, text.encode())

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._exactly(2)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(self._exactly(2), "big")
            elif length == 127:
                length = int.from_bytes(self._exactly(8), "big")
            mask = self._exactly(4) if second & 0x80 else None
            payload = self._exactly(length)
            if mask:
                payload = bytes(b ^ mask[k % 4] for k, b in enumerate(payload))
            opcode = first & 0x0F
            if opcode == 0x9:  # ping
                self._frame(0xA, payload)
                continue
            if opcode == 0x8:
                raise ConnectionError("the browser closed the DevTools socket")
            message += payload
            if first & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class _DevTools:
    """Commands of the Chrome DevTools protocol on one page."""

    def __init__(self, url: str) -> None:
        self.socket = _WebSocket(url)
        self.ids = 0

    def call(self, method: str, **params):
        self.ids += 1
        self.socket.send(json.dumps({"id": self.ids, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.receive())
            if message.get("id") == self.ids:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        state = self.evaluate("JSON.stringify({state: document.body.dataset.state, "
                              "error: document.getElementById('error').textContent})")
        raise AssertionError(f"timed out waiting for {expression}; page: {state}")

    def press(self, key: str, code: str, key_code: int, text: str = "") -> None:
        common = {"key": key, "code": code, "windowsVirtualKeyCode": key_code,
                  "nativeVirtualKeyCode": key_code}
        self.call("Input.dispatchKeyEvent", type="keyDown", text=text, **common)
        self.call("Input.dispatchKeyEvent", type="keyUp", **common)

    def press_digit(self, digit: int) -> None:
        self.press(str(digit), f"Digit{digit}", 48 + digit, str(digit))


def _chromium() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    if found is None:
        # Not a skip: the survey's only real-browser test would silently stop running.
        pytest.fail("Chromium is not installed, so the real-browser test cannot run; install "
                    "it (Debian: apt-get install chromium; .ci/run does this)")
    return found


def _devtools_page(chromium: str, url: str, profile: pathlib.Path):
    """Starts headless Chromium on `url`; returns (process, DevTools websocket URL)."""
    process = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", "--disable-extensions",
         "--window-size=1280,1024", "--force-device-scale-factor=1",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    active_port = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not active_port.exists() or not active_port.read_text().strip():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            error = process.communicate()[1].decode(errors="replace")[-800:]
            pytest.fail(f"Chromium is installed but could not start here: {error}")
        time.sleep(0.1)
    port = int(active_port.read_text().split()[0])
    while time.monotonic() < deadline:
        with contextlib.closing(http.client.HTTPConnection("127.0.0.1", port, timeout=10)) as c:
            c.request("GET", "/json/list")
            pages = [t for t in json.loads(c.getresponse().read()) if t["type"] == "page"
                     and t["url"].startswith(url.split("?")[0])]
        if pages:
            return process, pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.1)
    process.kill()
    raise AssertionError("Chromium never opened the survey page")


@pytest.mark.slow
def test_a_real_browser_rates_with_key_presses(small_folder, tmp_path):
    chromium = _chromium()
    store_path = tmp_path / "ratings.sqlite"
    with _running(_config(small_folder, store_path)) as httpd:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        process, websocket_url = _devtools_page(chromium, url, tmp_path / "profile")
        devtools = None
        try:
            devtools = _DevTools(websocket_url)
            devtools.wait_for("document.readyState === 'complete' && "
                              "document.body.dataset.state === 'name'")
            devtools.evaluate("document.getElementById('observer').focus()")
            devtools.call("Input.insertText", text="Ada Lovelace")
            devtools.press("Enter", "Enter", 13, "\r")
            devtools.wait_for("document.body.dataset.state === 'instructions'")
            # The level examples (made from the first slice by tiqa.distortions) load.
            devtools.wait_for("[...document.querySelectorAll('table.examples img')]"
                              ".every(i => i.complete && i.naturalWidth > 0)", timeout=60)
            devtools.press("Enter", "Enter", 13, "\r")
            ready = "document.body.dataset.state === 'rating' && !document.body.dataset.busy"
            scores = [3, 5, 2, 4]
            for position, score in enumerate(scores):
                devtools.wait_for(f"{ready} && document.body.dataset.position === "
                                  f"'{position}'")
                # Shown pixel for pixel: the box is the image's own size.
                size = devtools.evaluate(
                    "(() => { const i = document.getElementById('image'); "
                    "const box = i.getBoundingClientRect(); return [i.naturalWidth, "
                    "i.naturalHeight, box.width, box.height, i.width, i.height]; })()")
                assert size[:2] == size[2:4] == size[4:], size
                progress = devtools.evaluate("document.getElementById('progress').textContent")
                assert progress == f"{position + 1} of 13"
                devtools.press_digit(score)
            devtools.wait_for(f"{ready} && document.body.dataset.position === '4'")
            devtools.press("Backspace", "Backspace", 8)  # go back: change the last rating
            devtools.wait_for(f"{ready} && document.body.dataset.position === '3'")
            assert devtools.evaluate(
                "document.querySelector('button.previous').dataset.score") == "4"
            devtools.press_digit(1)
            devtools.wait_for(f"{ready} && document.body.dataset.position === '4'")
            assert devtools.evaluate("document.getElementById('error').hidden")
        finally:
            if devtools is not None:
                devtools.socket.close()
            process.kill()
            process.wait(timeout=30)
    active = _store_rows(store_path)
    assert [(r.observer, r.position, r.score) for r in active] == [
        ("Ada Lovelace", k, s) for k, s in enumerate([3, 5, 2, 1])]
    withdrawn = [r for r in _store_rows(store_path, True) if r.withdrawn is not None]
    assert [(r.position, r.score) for r in withdrawn] == [(3, 4)]


# ----------------------------------------------------------------------------------------------
# Export.
# ----------------------------------------------------------------------------------------------


def _fill(store, observer, plan):
    """Rates `plan` [(image_id, repeat, score)] in order as `observer`."""
    order = [(image_id, repeat) for image_id, repeat, _ in plan]
    for image_id, _, score in plan:
        store.rate(observer, image_id, score, f"imgs/{image_id}.png", lambda: order)


@pytest.mark.slow
def test_export_hand_computed_mos_std_ci95_and_consistency(tmp_path):
    store_path = tmp_path / "ratings.sqlite"
    with store_lib.RatingStore(store_path) as store:
        store.add_images([(i, f"imgs/{i}.png") for i in ("x", "y", "z")])
        # A sees x twice (5 then 3: their score for x is 4).
        _fill(store, "A", [("x", False, 5), ("y", False, 2), ("z", False, 1), ("x", True, 3)])
        _fill(store, "B", [("y", False, 2), ("x", False, 1)])
        store.undo("B")  # withdrawn: it must not count
        store.rate("B", "x", 5, "imgs/x.png", lambda: [])  # B's order is stored already
        _fill(store, "C", [("x", False, 3), ("y", False, 5)])
    output = tmp_path / "annotations.csv"
    config = _config("", store_path, export=str(output))
    result = subprocess.run([sys.executable, "-m", "launch.annotate",
                             f"--config.store={store_path}", f"--config.export={output}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # x: 4, 5, 3 -> mean 4, std 1, ci95 = t(.975, 2) / sqrt(3).
    # y: 2, 2, 5 -> mean 3, std sqrt(3), ci95 = t(.975, 2) * sqrt(3) / sqrt(3).
    # z: 1 (one observer) -> no std, no interval.
    assert output.read_text() == (
        "path,score,std,n,ci95\n"
        f"imgs/x.png,4.0000,1.0000,3,{T_975_DF2 / math.sqrt(3):.4f}\n"
        f"imgs/y.png,3.0000,{math.sqrt(3):.4f},3,{T_975_DF2:.4f}\n"
        "imgs/z.png,1.0000,,1,\n")
    assert annotations.read_annotations(output) == {"imgs/x.png": 4.0, "imgs/y.png": 3.0,
                                               "imgs/z.png": 1.0}
    assert "screening: correlation with the others' mean (too few observers for ITU-R BT.500" \
        in result.stdout
    assert "nobody dropped" in result.stdout and "A: 1 pair(s), 2.00, 0%, 0%" in result.stdout
    # The same through the library, with the details the report is made from.
    exported = annotate_phase.run(config)
    assert exported.screening.rules == ("correlation",) and not exported.screening.dropped
    assert exported.consistency["A"] == export.Consistency(1, 2.0, 0.0, 0.0)
    assert exported.consistency["B"].pairs == 0
    row = exported.rows[0]
    assert (row.path, row.n) == ("imgs/x.png", 3)
    assert row.ci95 == pytest.approx(T_975_DF2 / math.sqrt(3), rel=1e-12)
    with pytest.raises(FileNotFoundError, match="no such ratings store"):
        annotate_phase.run(_config("", tmp_path / "absent.sqlite", export=str(output)))


def _planted(observers: int, images: int, seed: int, noise: float) -> export.ScoreMatrix:
    rng = np.random.default_rng(seed)
    quality = rng.uniform(1.3, 4.7, images)
    good = np.clip(np.round(quality + rng.normal(0, noise, (observers, images))), 1, 5)
    planted = rng.integers(1, 6, images).astype(float)  # answers at random
    names = tuple(f"observer {k}" for k in range(observers)) + ("random",)
    ids = tuple(f"i{k:02d}" for k in range(images))
    return export.ScoreMatrix(names, ids, ids, np.vstack([good, planted]))


def test_screening_removes_a_planted_random_observer():
    # Fifteen observers as in the paper's surveys: ITU-R BT.500 and the correlation rule run.
    screening = export.screen(_planted(14, 40, seed=0, noise=0.6))
    assert screening.rules == ("bt500", "correlation")
    assert list(screening.dropped) == ["random"]
    assert "BT.500" in screening.dropped["random"] and "correlation" in screening.dropped["random"]
    # Three observers: too few for BT.500; the correlation rule (iterated) still finds it.
    few = _planted(2, 30, seed=0, noise=0.5)
    screening = export.screen(few)
    assert screening.rules == ("correlation",) and list(screening.dropped) == ["random"]
    assert screening.correlations["observer 0"] > 0.5
    # The export leaves the dropped observer out of the scores.
    kept = export.mean_opinion_scores(few, tuple(screening.dropped))
    np.testing.assert_allclose([row.score for row in kept], few.scores[:2].mean(axis=0))


def test_bt500_rule_by_hand():
    # 20 observers, two images. Image a: ten 3s, four 2s, four 4s, X=1, Y=5: mean 3,
    # m2 = 16/20 = 0.8, m4 = 40/20 = 2, kurtosis 2 / 0.64 = 3.125 (normal: k = 2),
    # S = sqrt(16/19) = 0.918, so X (-2 <= -1.835) counts in Q and Y in P; image b swaps X, Y.
    column = [3] * 10 + [2] * 4 + [4] * 4
    scores = np.array([column + [1, 5], column + [5, 1]], dtype=float).T
    counts = export.bt500_counts(scores)
    np.testing.assert_array_equal(counts[:18], [[0, 0, 2]] * 18)
    np.testing.assert_array_equal(counts[18:], [[1, 1, 2], [1, 1, 2]])
    assert export.bt500_rejected(1, 1, 2)  # (P+Q)/J = 1 > 0.05 and |P-Q|/(P+Q) = 0 < 0.3
    assert not export.bt500_rejected(2, 0, 2)  # one-sided: a bias, not inconsistency
    assert not export.bt500_rejected(1, 1, 40)  # (P+Q)/J = 0.05 is not above 0.05
    assert not export.bt500_rejected(0, 0, 2)


def _store_with_ratings(path):
    with store_lib.RatingStore(path) as store:
        store.add_images([(f"i{n}", f"imgs/{n}.png") for n in range(300)])
        _fill(store, "A", [(f"i{n}", False, 1 + n % 5) for n in range(300)])
        _fill(store, "B", [(f"i{n}", False, 1 + (n + 1) % 5) for n in range(300)])
    return path


def test_a_store_that_cannot_be_opened_is_one_clear_error(tmp_path):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    with pytest.raises(store_lib.StoreError, match=f"{folder}: cannot open"):
        store_lib.RatingStore(folder)
    assert issubclass(store_lib.StoreError, errors.InputError)


@pytest.mark.slow
def test_damaged_pages_are_one_clear_error_when_serving_and_exporting(small_folder, tmp_path):
    store_path = _store_with_ratings(tmp_path / "ratings.sqlite")
    data = bytearray(store_path.read_bytes())
    page = 4096
    assert len(data) > 16 * page
    # Page 16 holds rows the export and the survey's start both read; the schema stays whole,
    # so the store opens and the damage only shows when those rows are read.
    data[15 * page:16 * page] = b"\xa5" * page
    store_path.write_bytes(bytes(data))
    with pytest.raises(store_lib.StoreError, match="ratings.sqlite"):
        annotate_phase.run(_config("", store_path, export=str(tmp_path / "a.csv")))
    assert not (tmp_path / "a.csv").exists()
    with pytest.raises(store_lib.StoreError, match="ratings.sqlite"):
        server.Survey(_survey(small_folder, store_path))
    result = subprocess.run([sys.executable, "-m", "launch.annotate",
                             f"--config.store={store_path}", f"--config.export={tmp_path / 'a.csv'}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {store_path}")


@pytest.mark.slow
def test_a_read_only_store_is_exported(tmp_path):
    if shutil.which("chattr") is None:
        pytest.fail("chattr is needed to make a store read-only even for root "
                    "(Debian: apt-get install e2fsprogs)")
    folder = tmp_path / "frozen"
    folder.mkdir()
    store_path = _store_with_ratings(folder / "ratings.sqlite")
    before = store_path.read_bytes()
    output = tmp_path / "annotations.csv"
    # Immutable file and folder: nothing can be written there, even by root.
    frozen = subprocess.run(["chattr", "+i", str(store_path), str(folder)], capture_output=True)
    if frozen.returncode:
        pytest.fail(f"chattr +i refused (a file system without immutable files?): "
                    f"{frozen.stderr!r}")
    try:
        result = annotate_phase.run(_config("", store_path, export=str(output)))
    finally:
        subprocess.run(["chattr", "-i", str(store_path), str(folder)], check=True)
    assert len(result.rows) == 300 and output.exists()
    assert store_path.read_bytes() == before
