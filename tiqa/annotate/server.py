"""The rating survey: a local web page and a small JSON API over the SQLite store.

Served by the standard library's `ThreadingHTTPServer` on 127.0.0.1 unless another address is
asked for, which then needs an access token on every request (`?token=`, the `X-TIQA-Token`
header, or the cookie the page sets after a first request with `?token=`).

Routes
    GET  /                       the survey page (inline HTML and JS)
    GET  /status                 observers and their progress (HTML)
    GET  /api/health             {'ok': true, 'images': N}
    GET  /api/next?observer=NAME {'image_id', 'url', 'width', 'height', 'position', 'total',
                                  'rated', 'can_go_back', 'previous_score'}, or
                                  {'done': true, 'total', 'rated', 'can_go_back'}
    POST /api/rate               {'observer', 'image_id', 'score'} -> 200 {'ok': true, ...}
    POST /api/undo               {'observer'} -> 200 {'ok': true, 'position', ...}: withdraws the
                                 last rating, whose image /api/next then shows again
    GET  /image/<image_id>.png   an image of the survey folder, grey 8-bit PNG at native size
    GET  /example/<name>.png     'original' or '<kind>/<level>': the instruction's examples

Errors are JSON `{'error': message}`: 400 for a malformed body, a missing field, a bad name or
score or an unknown image; 409 when the request does not fit the observer's state (an image
other than the one to rate now, nothing to undo, the survey finished); 401 without the token;
404 for anything else. POST bodies must be `application/json` (which also keeps other web
sites from posting ratings through a plain HTML form). Images are served by content hash
only: no part of a URL is ever used as a file path.

"Go back": `POST /api/undo` marks the observer's last rating withdrawn (it stays in the store)
and the next `/api/next` shows that image again; only the last rating can be changed (a
second undo in a row is refused with 409). In the page: the Back button, Backspace or the left
arrow key.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import hmac
import html
import http.cookies
import http.server
import io as bytes_io
import ipaddress
import json
import logging
import pathlib
import re
import secrets
import socket
import threading
import urllib.parse
from typing import Any, Union

import numpy as np
from PIL import Image

from tiqa import errors, io
from tiqa.annotate import store as store_lib

_LOG = logging.getLogger(__name__)

# Observer names: a letter, digit or underscore, then those, spaces, . ' or -; 64 at most.
NAME_PATTERN = re.compile(r"\w[\w .'\-]{0,63}")
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~\-]{12,128}")
TOKEN_HEADER = "X-TIQA-Token"
TOKEN_COOKIE = "tiqa_token"
MAX_BODY_BYTES = 16 * 1024
EXAMPLE_NAMES = ("original",) + tuple(
    f"{kind}/{level}" for kind in ("blur", "noise", "ring") for level in range(1, 6))
_IMAGE_ROUTE = re.compile(r"/image/([0-9a-f]{20})\.png")
_EXAMPLE_ROUTE = re.compile(r"/example/(original|(?:blur|noise|ring)/[1-5])\.png")
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


class HttpError(Exception):
    """An error answered as JSON with an HTTP status."""

    def __init__(self, status: int, message: str, **details) -> None:
        super().__init__(message)
        self.status = status
        self.details = details


@dataclasses.dataclass(frozen=True)
class SurveyImage:
    """An image offered for rating.

    Attributes:
        image_id: the first 20 hex digits of the SHA-256 of the file (and page index, for a
            page of a stack), so the same pixels keep their id whatever the file is called.
        path: what the export writes: the file as listed under the folder, or 'file#page'.
        item: the `tiqa.io` item to read.
    """

    image_id: str
    path: str
    item: io.Item


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_name(name: Any) -> str:
    """The observer name if it is valid, else HttpError 400 saying why."""
    if not isinstance(name, str) or not name:
        raise HttpError(400, "observer: a non-empty name is required")
    if len(name) > 64 or not NAME_PATTERN.fullmatch(name) or name != name.strip():
        raise HttpError(400, "observer: use 1 to 64 letters, digits, spaces, _ . ' or -, "
                             "starting with a letter or digit")
    return name


def scan_images(folder: Union[str, pathlib.Path]) -> list[SurveyImage]:
    """The images under `folder` (as `tiqa.io.list_inputs` lists them), one per content hash."""
    if not str(folder):
        raise errors.InputError("config.images: name the folder of images to rate")
    items = io.list_inputs(folder)
    digests: dict[pathlib.Path, Any] = {}
    images: dict[str, SurveyImage] = {}
    for file, page in items:
        if file not in digests:
            digest = hashlib.sha256()
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            digests[file] = digest
        digest = digests[file].copy()
        if page is not None:
            digest.update(f"#page={page}".encode())
        image_id = digest.hexdigest()[:20]
        path = str(file) if page is None else f"{file}#{page}"
        if image_id in images:
            _LOG.warning("%s has the same content as %s; it is shown once", path,
                         images[image_id].path)
            continue
        images[image_id] = SurveyImage(image_id, path, (file, page))
    return list(images.values())


def png_bytes(image01: np.ndarray) -> bytes:
    """A [0, 1] grey image as 8-bit PNG bytes (round(x * 255))."""
    data = np.round(np.clip(np.asarray(image01, np.float64), 0.0, 1.0) * 255).astype(np.uint8)
    buffer = bytes_io.BytesIO()
    Image.fromarray(data).save(buffer, format="PNG")
    return buffer.getvalue()


def example_images(item: io.Item, size: int, seed: int,
                   normalisation: str = "auto") -> dict[str, bytes]:
    """PNGs of the centre crop of one slice: 'original' and '<kind>/<level>' for levels 1..5."""
    import jax  # only the instruction's examples need the distortions
    from tiqa import distortions

    image = io.read_item(item, normalisation)
    side = min(int(size), *image.shape)
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    crop = image[top:top + side, left:left + side]
    examples = {"original": png_bytes(crop)}
    key = jax.random.PRNGKey(seed)
    for kind_index, kind in enumerate(distortions.KINDS):
        for level in range(1, distortions.NUM_LEVELS):
            level_key = jax.random.fold_in(jax.random.fold_in(key, kind_index), level)
            distorted = distortions.apply(kind, crop, level, level_key)
            examples[f"{kind}/{level}"] = png_bytes(np.asarray(distorted))
    return examples


@dataclasses.dataclass(frozen=True)
class SurveySettings:
    """The survey's keys of configs/annotate.py (see there)."""
    images: str
    store: str
    host: str
    port: int
    token: str
    repeat_fraction: float
    seed: int
    examples: str
    example_size: int
    normalisation: str


class Survey:
    """The survey's state: its images, the store, and rendered PNGs (the HTTP layer is apart)."""

    def __init__(self, settings: SurveySettings) -> None:
        self.token = str(settings.token)
        host = str(settings.host)
        if self.token and not TOKEN_PATTERN.fullmatch(self.token):
            raise errors.InputError("config.token: use 12 to 128 characters from A-Z a-z 0-9 . _ ~ -")
        if not is_loopback(host) and not self.token:
            raise errors.InputError(f"config.host={host} is reachable from other machines: set "
                                    f"config.token (e.g. --config.token={secrets.token_urlsafe(16)})")
        if not 0.0 <= float(settings.repeat_fraction) <= 1.0:
            raise errors.InputError(f"config.repeat_fraction must lie in [0, 1], got "
                                    f"{config.repeat_fraction}")
        if not str(settings.store):
            raise errors.InputError("config.store: name the SQLite file that keeps the ratings")
        self.loopback = is_loopback(host)
        self.seed = int(settings.seed)
        self.repeat_fraction = float(settings.repeat_fraction)
        self.normalisation = str(settings.normalisation)
        self.example_size = int(settings.example_size)
        images = scan_images(settings.images)
        self.images = {image.image_id: image for image in images}
        self.image_ids = [image.image_id for image in images]
        self.example_item = (io.list_inputs(settings.examples)[0] if settings.examples
                             else images[0].item)
        self.store = store_lib.RatingStore(settings.store)
        self.store.add_images((image.image_id, image.path) for image in images)
        self._pngs: collections.OrderedDict[str, tuple[bytes, int, int]] = (
            collections.OrderedDict())
        self._png_lock = threading.Lock()
        self._examples: Union[dict[str, bytes], None] = None
        self._examples_lock = threading.Lock()

    def close(self) -> None:
        self.store.close()

    # -- images --------------------------------------------------------------------------------

    def image_png(self, image_id: str) -> tuple[bytes, int, int]:
        """(PNG bytes, width, height) of a survey image; the last 256 are cached."""
        with self._png_lock:
            if image_id in self._pngs:
                self._pngs.move_to_end(image_id)
                return self._pngs[image_id]
        image = self.images.get(image_id)
        if image is None:
            raise HttpError(404, f"no image {image_id} in this survey")
        pixels = io.read_item(image.item, self.normalisation)
        entry = (png_bytes(pixels), int(pixels.shape[1]), int(pixels.shape[0]))
        with self._png_lock:
            self._pngs[image_id] = entry
            while len(self._pngs) > 256:
                self._pngs.popitem(last=False)
        return entry

    def example_png(self, name: str) -> bytes:
        """An example of the instruction page; all are made on the first request."""
        with self._examples_lock:
            if self._examples is None:
                self._examples = example_images(self.example_item, self.example_size,
                                                self.seed, self.normalisation)
        return self._examples[name]

    # -- the API -------------------------------------------------------------------------------

    def _order(self, observer: str):
        return lambda: store_lib.presentation_order(self.image_ids, observer, self.seed,
                                                    self.repeat_fraction)

    def next(self, observer: Any) -> dict:
        """The body of GET /api/next."""
        observer = check_name(observer)
        state = self.store.next(observer, self._order(observer))
        answer = {"observer": observer, "total": state["total"], "rated": state["rated"],
                  "can_go_back": state["last"] is not None}
        presentation = state["presentation"]
        if presentation is None:
            return {"done": True, **answer}
        image_id = presentation.image_id
        if image_id not in self.images:
            raise HttpError(500, f"image {image_id} of {observer}'s sequence is no longer in "
                                 "the folder")
        _, width, height = self.image_png(image_id)
        return {"done": False, "image_id": image_id, "url": f"/image/{image_id}.png",
                "width": width, "height": height, "position": presentation.position,
                "previous_score": self.store.withdrawn_score(observer, presentation.position),
                **answer}

    def rate(self, body: dict) -> dict:
        """The body of POST /api/rate's answer (after the rating is committed)."""
        missing = [field for field in ("observer", "image_id", "score") if field not in body]
        if missing:
            raise HttpError(400, f"missing field(s): {', '.join(missing)}")
        observer = check_name(body["observer"])
        score, image_id = body["score"], body["image_id"]
        if isinstance(score, bool) or not isinstance(score, int) or score not in store_lib.SCORES:
            raise HttpError(400, f"score must be an integer from 1 to 5, got {score!r}"[:200])
        if not isinstance(image_id, str) or image_id not in self.images:
            raise HttpError(400, f"unknown image: {image_id!r}"[:200])
        try:
            rating = self.store.rate(observer, image_id, score, self.images[image_id].path,
                                     self._order(observer))
        except store_lib.Conflict as conflict:
            raise HttpError(409, str(conflict), **conflict.details) from conflict
        return {"ok": True, "observer": observer, "image_id": image_id, "score": score,
                "position": rating.position}

    def undo(self, body: dict) -> dict:
        """The body of POST /api/undo's answer."""
        if "observer" not in body:
            raise HttpError(400, "missing field(s): observer")
        observer = check_name(body["observer"])
        try:
            withdrawn = self.store.undo(observer)
        except store_lib.Conflict as conflict:
            raise HttpError(409, str(conflict), **conflict.details) from conflict
        return {"ok": True, "observer": observer, **withdrawn}

    def status_rows(self) -> list[tuple[str, int, int]]:
        return self.store.progress()


# ----------------------------------------------------------------------------------------------
# The page.
# ----------------------------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Image quality survey</title>
<style nonce="__NONCE__">
  /* Mid grey around the images, as in ITU-R BT.500 viewing conditions. */
  body { background: #7f7f7f; color: #000; font: 16px/1.45 sans-serif; margin: 1em 2em; }
  main { max-width: none; }
  /* Native resolution: no scaling up, and nearest-neighbour if a screen must scale anyway. */
  img.native { image-rendering: crisp-edges; image-rendering: pixelated; max-width: none;
               max-height: none; display: block; }
  .viewer { overflow: auto; padding: 0.5em 0; }
  .scores button { font-size: 1.05em; min-width: 7.5em; margin: 0.2em; padding: 0.4em; }
  .scores button.previous { outline: 3px solid #000; }
  table.examples td { padding: 0.2em; text-align: center; font-size: 0.85em; vertical-align: top; }
  #error { color: #700; font-weight: bold; }
  [hidden] { display: none !important; }
</style>
</head>
<body data-state="name">
<main>
<h1>Image quality survey</h1>
<p id="error" role="alert" hidden></p>

<section id="name">
  <form id="name-form" autocomplete="off">
    <label for="observer">Your name (letters, digits, spaces, _ . ' -):</label>
    <input id="observer" name="observer" maxlength="64" required value="__OBSERVER__" autofocus>
    <button type="submit" id="start">Continue</button>
  </form>
  <p>Your ratings are kept under this name; use the same name to continue later.</p>
</section>

<section id="instructions" hidden>
  <p id="welcome"></p>
  <p>You will see __COUNT__ tomography slices, one at a time, in an order of your own; a few
  of them come back a second time. Rate the <strong>quality</strong> of each image: how
  clearly it shows the structure of the sample, whatever that structure is.</p>
  <p>Press a key or click a button:
  <strong>5</strong> excellent, <strong>4</strong> good, <strong>3</strong> average,
  <strong>2</strong> bad, <strong>1</strong> terrible. Go back to change your last rating with
  <strong>Backspace</strong>, <strong>&larr;</strong> or the Back button.
  Images are shown pixel for pixel; please do not zoom the page.</p>
  <p>The examples below show how quality degrades as blur, noise or ring artefacts grow
  (levels 1 to 5, from mild to severe, on a crop of one slice). They illustrate the kinds of
  damage, not the answers: rate each image by what you see.</p>
  <table class="examples">__EXAMPLES__</table>
  <p><button id="begin" type="button">Begin (Enter)</button></p>
</section>

<section id="rating" hidden>
  <p><span id="progress"></span> &mdash; <span id="who"></span></p>
  <!-- The buttons above the image, so that a tall slice does not push them off screen. -->
  <div class="scores">
    <button type="button" data-score="1">1 terrible</button>
    <button type="button" data-score="2">2 bad</button>
    <button type="button" data-score="3">3 average</button>
    <button type="button" data-score="4">4 good</button>
    <button type="button" data-score="5">5 excellent</button>
    <button type="button" id="back">&larr; Back</button>
  </div>
  <div class="viewer"><img id="image" class="native" alt="image to rate"></div>
</section>

<section id="done" hidden>
  <p>Thank you: you have rated all <span id="done-total"></span> images.</p>
  <p><button type="button" id="done-back">&larr; Change my last rating</button></p>
</section>
</main>

<script nonce="__NONCE__">
"use strict";
const NAME = /^[\\p{L}\\p{N}_][\\p{L}\\p{N}\\p{M}_ .'\\-]{0,63}$/u;
let observer = "";
let current = null;
let busy = false;

function setState(name) {
  document.body.dataset.state = name;
  for (const id of ["name", "instructions", "rating", "done"]) {
    document.getElementById(id).hidden = id !== name;
  }
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;  // text only: nothing from the server is parsed as HTML
  box.hidden = !message;
}

async function api(method, path, body) {
  const options = {method, headers: {}, credentials: "same-origin"};
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function loadImage(img, data) {
  return new Promise((resolve, reject) => {
    const url = new URL(data.url, location.href).href;
    img.width = data.width;
    img.height = data.height;
    // On a screen with an integer device-pixel ratio, one image pixel is one screen pixel.
    const ratio = window.devicePixelRatio || 1;
    const exact = Number.isInteger(ratio) && ratio > 1;
    img.style.width = exact ? (data.width / ratio) + "px" : "";
    img.style.height = exact ? (data.height / ratio) + "px" : "";
    if (img.src === url && img.complete) { resolve(); return; }
    img.onload = () => resolve();
    img.onerror = () => reject(new Error("the image could not be loaded"));
    img.src = url;
  });
}

async function fetchNext() {
  return api("GET", "/api/next?observer=" + encodeURIComponent(observer));
}

async function show(data) {
  if (data.done) {
    document.getElementById("done-total").textContent = data.total;
    document.getElementById("done-back").disabled = !data.can_go_back;
    current = null;
    setState("done");
    return;
  }
  await loadImage(document.getElementById("image"), data);
  current = data;
  document.getElementById("progress").textContent = (data.position + 1) + " of " + data.total;
  document.getElementById("who").textContent = observer;
  document.getElementById("back").disabled = !data.can_go_back;
  for (const button of document.querySelectorAll("button[data-score]")) {
    button.classList.toggle("previous", Number(button.dataset.score) === data.previous_score);
  }
  document.body.dataset.position = data.position;
  setState("rating");
}

// One request chain at a time: keys pressed while a rating is on its way are ignored.
async function step(action) {
  if (busy) return;
  busy = true;
  document.body.dataset.busy = "1";
  try {
    if (action) await action();
    await show(await fetchNext());
    showError("");
  } catch (error) {
    showError(error.message);
  } finally {
    busy = false;
    document.body.dataset.busy = "";
  }
}

function rate(score) {
  if (document.body.dataset.state !== "rating" || !current) return;
  const imageId = current.image_id;
  step(() => api("POST", "/api/rate", {observer, image_id: imageId, score}));
}

function back() {
  step(() => api("POST", "/api/undo", {observer}));
}

async function enterName(event) {
  event.preventDefault();
  // NFC: an accent typed as a separate combining mark becomes one letter, as the server expects.
  const name = document.getElementById("observer").value.trim().normalize("NFC");
  if (!NAME.test(name)) {
    showError("Please use 1 to 64 letters, digits, spaces, _ . ' or -, " +
              "starting with a letter or digit.");
    return;
  }
  if (busy) return;
  busy = true;
  try {
    observer = name;
    const data = await fetchNext();
    const welcome = document.getElementById("welcome");
    welcome.textContent = data.rated > 0
      ? "Welcome back, " + name + ": you have rated " + data.rated + " of " + data.total + "."
      : "Welcome, " + name + ".";
    showError("");
    setState("instructions");
  } catch (error) {
    showError(error.message);
  } finally {
    busy = false;
  }
}

document.getElementById("name-form").addEventListener("submit", enterName);
document.getElementById("begin").addEventListener("click", () => step(null));
document.getElementById("back").addEventListener("click", back);
document.getElementById("done-back").addEventListener("click", back);
for (const button of document.querySelectorAll("button[data-score]")) {
  button.addEventListener("click", () => {
    button.blur();  // else a later Space or Enter would press it again
    rate(Number(button.dataset.score));
  });
}
document.addEventListener("keydown", (event) => {
  const state = document.body.dataset.state;
  if (event.ctrlKey || event.altKey || event.metaKey) return;
  if (state === "rating" && /^[1-5]$/.test(event.key)) {
    event.preventDefault();
    rate(Number(event.key));
  } else if ((state === "rating" || state === "done") &&
             (event.key === "Backspace" || event.key === "ArrowLeft")) {
    event.preventDefault();
    back();
  } else if (state === "instructions" && event.key === "Enter") {
    event.preventDefault();
    step(null);
  }
});
</script>
</body>
</html>
"""


def _examples_table() -> str:
    """The instruction's example grid: one row per distortion kind, the original first."""
    rows = []
    for kind in ("blur", "noise", "ring"):
        cells = ['<td><img class="native" loading="lazy" src="/example/original.png" '
                 'alt="original"><br>original</td>']
        for level in range(1, 6):
            cells.append(f'<td><img class="native" loading="lazy" '
                         f'src="/example/{kind}/{level}.png" alt="{kind} level {level}">'
                         f"<br>{kind}, level {level}</td>")
        rows.append(f"<tr><th>{kind}</th>{''.join(cells)}</tr>")
    return "".join(rows)


def render_page(survey: Survey, observer: str, nonce: str) -> str:
    """The survey page; the name from `?observer=` is pre-filled, escaped."""
    page = _PAGE.replace("__EXAMPLES__", _examples_table())
    page = page.replace("__COUNT__", str(len(survey.image_ids)))
    page = page.replace("__NONCE__", nonce)
    return page.replace("__OBSERVER__", html.escape(observer[:64], quote=True))


def render_status(survey: Survey) -> str:
    """A small HTML table of observers and their progress (names escaped)."""
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{rated} of {total}</td></tr>"
                   for name, rated, total in survey.status_rows())
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Survey status"
            f"</title></head><body><h1>Survey status</h1><p>{len(survey.image_ids)} images</p>"
            f"<table><tr><th>observer</th><th>rated</th></tr>{rows}</table></body></html>")


# ----------------------------------------------------------------------------------------------
# HTTP.
# ----------------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    """Routes requests to the `Survey` held by the server."""

    protocol_version = "HTTP/1.1"  # keep-alive: a client may send many ratings on one socket
    server_version = "TIQA-survey"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection frees its thread after a minute
    # Headers and body go out in separate writes; with Nagle's algorithm the client's delayed
    # ACK would hold every answer back by ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args) -> None:
        _LOG.debug("%s " + format, self.address_string(), *args)

    @property
    def survey(self) -> Survey:
        return self.server.survey

    # -- answers -------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str,
              headers: Union[dict, None] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self._send(status, body, "application/json", {"Cache-Control": "no-store"})

    # -- checks --------------------------------------------------------------------------------

    def _check_host(self) -> None:
        """On loopback, only loopback Host names (a guard against DNS rebinding)."""
        if not self.survey.loopback:
            return
        host = self.headers.get("Host")
        if host is None:
            return
        name = host[1:host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
        if name.lower() not in _LOOPBACK_NAMES:
            raise HttpError(421, f"this survey only answers to 127.0.0.1, not {host!r}"[:200])

    def _check_token(self, query: dict) -> bool:
        """Whether a token was given in the query (then the page sets the cookie)."""
        token = self.survey.token
        if not token:
            return False
        given = query.get("token", [None])[0]
        from_query = given is not None
        if given is None:
            given = self.headers.get(TOKEN_HEADER)
        if given is None:
            cookie = http.cookies.SimpleCookie()
            try:
                cookie.load(self.headers.get("Cookie", ""))
            except http.cookies.CookieError:
                pass
            given = cookie[TOKEN_COOKIE].value if TOKEN_COOKIE in cookie else None
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            raise HttpError(401, "this survey needs its access token (?token=...)")
        return from_query

    def _read_json(self) -> dict:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise HttpError(400, "chunked bodies are not accepted; send Content-Length")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            raise HttpError(400, "malformed body: Content-Length is missing or not a number")
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            raise HttpError(413 if length > 0 else 400,
                            f"malformed body: {length} bytes (at most {MAX_BODY_BYTES})")
        raw = self.rfile.read(length)
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise HttpError(400, "the body must be JSON with Content-Type: application/json")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise HttpError(400, "malformed body: not valid JSON") from None
        if not isinstance(body, dict):
            raise HttpError(400, "malformed body: expected a JSON object")
        return body

    # -- routing -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        try:
            url = urllib.parse.urlsplit(self.path)
            try:
                query = urllib.parse.parse_qs(url.query, max_num_fields=20)
            except ValueError:
                raise HttpError(400, "too many query parameters") from None
            self._check_host()
            token_in_query = self._check_token(query)
            if method == "POST":
                self._post(url.path, self._read_json())
            else:
                self._get(url.path, query, token_in_query)
        except HttpError as error:
            self._json(error.status, {"error": str(error), **error.details})
        except (io.ImageError, store_lib.StoreError) as error:
            _LOG.error("%s", error)
            self._json(500, {"error": str(error)})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # one bad request must not take the survey down
            _LOG.exception("error answering %s %s", method, self.path)
            self.close_connection = True
            self._json(500, {"error": "internal error (see the server log)"})

    def _get(self, path: str, query: dict, token_in_query: bool) -> None:
        if path == "/":
            nonce = secrets.token_urlsafe(16)
            page = render_page(self.survey, query.get("observer", [""])[0], nonce)
            headers = {
                "Cache-Control": "no-store",
                "Content-Security-Policy": (
                    f"default-src 'none'; img-src 'self'; connect-src 'self'; "
                    f"script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")}
            if token_in_query:  # later requests (images, API) carry the token as a cookie
                headers["Set-Cookie"] = (f"{TOKEN_COOKIE}={self.survey.token}; HttpOnly; "
                                         "SameSite=Strict; Path=/")
            self._send(200, page.encode(), "text/html; charset=utf-8", headers)
        elif path == "/status":
            self._send(200, render_status(self.survey).encode(), "text/html; charset=utf-8",
                       {"Cache-Control": "no-store"})
        elif path == "/api/health":
            self._json(200, {"ok": True, "images": len(self.survey.image_ids)})
        elif path == "/api/next":
            names = query.get("observer")
            if not names:
                raise HttpError(400, "missing field(s): observer")
            self._json(200, self.survey.next(names[0]))
        elif match := _IMAGE_ROUTE.fullmatch(path):
            if match.group(1) not in self.survey.images:
                raise HttpError(404, "no such image")
            png, _, _ = self.survey.image_png(match.group(1))
            self._send(200, png, "image/png", {"Cache-Control": "private, max-age=3600"})
        elif match := _EXAMPLE_ROUTE.fullmatch(path):
            png = self.survey.example_png(match.group(1))
            self._send(200, png, "image/png", {"Cache-Control": "private, max-age=3600"})
        else:
            raise HttpError(404, "not found")

    def _post(self, path: str, body: dict) -> None:
        if path == "/api/rate":
            self._json(200, self.survey.rate(body))
        elif path == "/api/undo":
            self._json(200, self.survey.undo(body))
        else:
            raise HttpError(404, "not found")


class SurveyServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server holding one `Survey`; each request runs on its own thread."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], survey: Survey) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.survey = survey
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        suffix = f"?token={self.survey.token}" if self.survey.token else ""
        return f"http://{host}:{port}/{suffix}"


def make_server(settings: SurveySettings) -> SurveyServer:
    """A bound, not yet serving, survey server; port 0 = any."""
    survey = Survey(settings)
    try:
        return SurveyServer((settings.host, settings.port), survey)
    except OSError as error:
        survey.close()
        raise errors.InputError(f"cannot listen on {settings.host}:{settings.port}: {error}") from error


def serve(settings: SurveySettings) -> None:
    """Runs the survey until interrupted; prints the address to open first."""
    server = make_server(settings)
    survey = server.survey
    print(f"survey of {len(survey.image_ids)} images at {server.url} "
          f"(ratings in {survey.store.path}); Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        survey.close()
