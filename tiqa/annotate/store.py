"""The survey's SQLite store: images, each observer's presentation order, and every rating.

Durability: WAL journal with `synchronous=FULL`, one `BEGIN IMMEDIATE` transaction per rating,
committed before the server answers, so a rating that was answered 200 survives the process
being killed (and a power cut). Rows of `ratings` are never deleted: going back to change the
last rating marks it withdrawn (`withdrawn` = the time of the undo) and the new rating is a new
row; a partial unique index keeps at most one active rating per observer and position.

Tables
    images     image_id (content hash), path, added
    observers  name, created
    sequences  observer, position (0-based presentation order), image_id, repeat (0/1)
    ratings    id, observer, position, image_id, path, score (1..5), repeat, created (Unix
               time), withdrawn (Unix time of the undo, NULL while the rating stands)

The presentation order of an observer is drawn once (`presentation_order`) and stored, so an
observer continues at their first unrated position after a restart even if the folder changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import pathlib
import random
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Union

from tiqa import errors

SCHEMA_VERSION = "1"
SCORES = (1, 2, 3, 4, 5)
SCORE_NAMES = {1: "terrible", 2: "bad", 3: "average", 4: "good", 5: "excellent"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    image_id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS observers (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sequences (
    observer TEXT NOT NULL REFERENCES observers(name),
    position INTEGER NOT NULL,
    image_id TEXT NOT NULL REFERENCES images(image_id),
    repeat INTEGER NOT NULL,
    PRIMARY KEY (observer, position));
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    observer TEXT NOT NULL REFERENCES observers(name),
    position INTEGER NOT NULL,
    image_id TEXT NOT NULL REFERENCES images(image_id),
    path TEXT NOT NULL,
    score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    repeat INTEGER NOT NULL,
    created REAL NOT NULL,
    withdrawn REAL);
CREATE INDEX IF NOT EXISTS ratings_by_position ON ratings (observer, position);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_rating
    ON ratings (observer, position) WHERE withdrawn IS NULL;
"""


class StoreError(errors.InputError):
    """The store cannot be opened, written or read: a folder, no permission, damaged pages."""


class Conflict(Exception):
    """A request that is well formed but does not fit the observer's state (HTTP 409)."""

    def __init__(self, message: str, **details) -> None:
        super().__init__(message)
        self.details = details


@dataclasses.dataclass(frozen=True)
class Rating:
    """One row of `ratings`."""

    observer: str
    position: int
    image_id: str
    path: str
    score: int
    repeat: bool
    created: float
    withdrawn: Union[float, None] = None


@dataclasses.dataclass(frozen=True)
class Presentation:
    """One entry of an observer's sequence."""

    position: int
    image_id: str
    repeat: bool


def presentation_order(image_ids: Sequence[str], observer: str, seed: int,
                       repeat_fraction: float) -> list[tuple[str, bool]]:
    """An observer's own random order of `image_ids`, with about `repeat_fraction` shown twice.

    The shuffle is seeded by (seed, observer), so it is reproducible. round(fraction * N)
    images (at least one when the fraction is positive and N >= 2) are shown again later, at
    least `gap` = max(2, N // 4) presentations after their first showing, so the observer is
    unlikely to recognise them and never sees an image twice in a row.

    Returns:
        (image_id, is_repeat) per position.
    """
    if not 0.0 <= repeat_fraction <= 1.0:
        raise ValueError(f"repeat_fraction must lie in [0, 1], got {repeat_fraction}")
    digest = hashlib.sha256(f"{seed}\x00{observer}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    order = list(image_ids)
    rng.shuffle(order)
    count = len(order)
    repeats = round(repeat_fraction * count)
    if repeat_fraction > 0 and count >= 2:
        repeats = max(repeats, 1)
    gap = max(2, count // 4)
    # Only images early enough to be shown again `gap` later can be repeated.
    candidates = [i for i in range(count) if i + gap <= count]
    chosen = rng.sample(candidates, min(repeats, len(candidates)))
    # Sort keys: first showings at i, each repeat just before first showing j (or at the end).
    keyed = [(float(i), 0.0, image, False) for i, image in enumerate(order)]
    for i in chosen:
        j = rng.randint(i + gap, count)
        keyed.append((j - 0.5, rng.random(), order[i], True))
    keyed.sort()
    # A repeat lands at least 1.5 keys after its first showing, so never right after it.
    return [(image, repeat) for _, _, image, repeat in keyed]


class RatingStore:
    """Thread-safe access to one survey database (one connection, serialised by a lock).

    Writes also take SQLite's write lock (`BEGIN IMMEDIATE`), so another process (an export
    while the survey runs) sees whole ratings only; `timeout` is how long a write waits for it.
    """

    def __init__(self, path: Union[str, pathlib.Path], timeout: float = 30.0,
                 read_only: bool = False) -> None:
        """`read_only`: open with SQLite's mode=ro (the export), which also reads a store in a
        place this process may not write; nothing is created or changed."""
        self.path = pathlib.Path(path)
        if self.path.parent and not self.path.parent.exists():
            raise FileNotFoundError(f"{self.path}: the folder {self.path.parent} does not exist")
        self._lock = threading.Lock()
        try:
            # Autocommit mode: transactions are opened explicitly, one per change.
            self._db = (self._connect_read_only(timeout) if read_only else
                        sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None,
                                        check_same_thread=False))
        except sqlite3.Error as error:  # a folder, or a place this process cannot write
            raise StoreError(f"{self.path}: cannot open the ratings store ({error})") from error
        try:
            if read_only:
                self._check_schema()
            else:
                self._setup(timeout)
        except (sqlite3.DatabaseError, StoreError) as error:  # not a database, or a damaged one
            self._db.close()
            if isinstance(error, StoreError):
                raise
            raise StoreError(f"{self.path}: not a usable ratings store ({error})") from error

    def _connect_read_only(self, timeout: float) -> sqlite3.Connection:
        uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?mode=ro"
        options = dict(timeout=timeout, isolation_level=None, check_same_thread=False, uri=True)
        db = sqlite3.connect(uri, **options)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # opening is lazy
            return db
        except sqlite3.OperationalError:
            db.close()
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists() and wal.stat().st_size:
                raise  # ratings may wait in the WAL: never read around them
            # A folder SQLite cannot write its -shm file in: with no WAL, the file is the store.
            return sqlite3.connect(uri + "&immutable=1", **options)

    def _check_schema(self) -> None:
        """The schema version of a store opened read-only (which cannot be set up)."""
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.OperationalError as error:  # no meta table
            raise StoreError(f"{self.path}: not a ratings store ({error})") from error
        if row is None or row[0] != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: store schema {row[0] if row else 'missing'}, this "
                             f"code reads {SCHEMA_VERSION}")

    def _setup(self, timeout: float) -> None:
        """Pragmas and schema."""
        self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
        # FULL: the WAL is synced at every commit, so an acknowledged rating is on disk.
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("PRAGMA foreign_keys = ON")
        with self._transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise StoreError(f"{self.path}: store schema {row[0]}, this code reads "
                                 f"{SCHEMA_VERSION}")

    # -- plumbing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reporting(self) -> Iterator[None]:
        """SQLite's errors of a store that cannot be used (damaged pages, no permission, locked
        too long) as one StoreError naming it; an IntegrityError is this code's bug."""
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as error:
            raise StoreError(f"{self.path}: the ratings store cannot be used ({error})") from error

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction under the thread lock: committed on success, else rolled back."""
        with self._lock, self._reporting():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # a damaged store may refuse this too
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, parameters: Sequence = ()) -> list[tuple]:
        with self._lock, self._reporting():
            return self._db.execute(sql, parameters).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "RatingStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- images --------------------------------------------------------------------------------

    def add_images(self, images: Iterable[tuple[str, str]]) -> None:
        """Records (image_id, path) pairs; a known id gets its current path."""
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO images (image_id, path, added) VALUES (?, ?, ?) "
                "ON CONFLICT (image_id) DO UPDATE SET path = excluded.path",
                [(image_id, path, now) for image_id, path in images])

    def image_paths(self) -> dict[str, str]:
        """{image_id: path} of every image ever offered."""
        return dict(self._read("SELECT image_id, path FROM images"))

    # -- sequences -----------------------------------------------------------------------------

    def _sequence(self, db: sqlite3.Connection, observer: str) -> list[Presentation]:
        rows = db.execute("SELECT position, image_id, repeat FROM sequences WHERE observer = ? "
                          "ORDER BY position", (observer,)).fetchall()
        return [Presentation(p, i, bool(r)) for p, i, r in rows]

    def _ensure_sequence(self, db: sqlite3.Connection, observer: str,
                         make: Callable[[], list[tuple[str, bool]]]) -> list[Presentation]:
        sequence = self._sequence(db, observer)
        if sequence:
            return sequence
        order = make()
        if not order:
            raise Conflict("there are no images to rate")
        db.execute("INSERT OR IGNORE INTO observers (name, created) VALUES (?, ?)",
                   (observer, time.time()))
        db.executemany("INSERT INTO sequences VALUES (?, ?, ?, ?)",
                       [(observer, p, i, int(r)) for p, (i, r) in enumerate(order)])
        return self._sequence(db, observer)

    @staticmethod
    def _next_position(db: sqlite3.Connection, observer: str) -> Union[int, None]:
        row = db.execute(
            "SELECT MIN(s.position) FROM sequences s WHERE s.observer = ? AND NOT EXISTS ("
            "SELECT 1 FROM ratings r WHERE r.observer = s.observer AND r.position = s.position "
            "AND r.withdrawn IS NULL)", (observer,)).fetchone()
        return row[0]

    def next(self, observer: str, make: Callable[[], list[tuple[str, bool]]]) -> dict:
        """Where `observer` stands; creates their sequence with `make()` on first contact.

        Returns:
            {'position': first unrated position or None when done, 'total', 'rated',
             'presentation': the Presentation to show (None when done),
             'last': the active rating that an undo would withdraw, or None}.
        """
        with self._transaction() as db:
            sequence = self._ensure_sequence(db, observer, make)
            position = self._next_position(db, observer)
            rated = db.execute("SELECT COUNT(*) FROM ratings WHERE observer = ? AND "
                               "withdrawn IS NULL", (observer,)).fetchone()[0]
            last = self._undoable(db, observer)
        return {"position": position, "total": len(sequence), "rated": rated,
                "presentation": None if position is None else sequence[position],
                "last": last}

    def sequence(self, observer: str) -> list[Presentation]:
        """The stored presentation order of `observer` (empty if they never started)."""
        with self._lock, self._reporting():
            return self._sequence(self._db, observer)

    # -- ratings -------------------------------------------------------------------------------

    def rate(self, observer: str, image_id: str, score: int, path: str,
             make: Callable[[], list[tuple[str, bool]]]) -> Rating:
        """Stores `score` for the image at the observer's next unrated position.

        `image_id` must be the image shown there (the client names what it rated, so a stale
        or doubled request cannot land on another image). Committed before returning.

        Raises:
            Conflict: the observer is done, or `image_id` is not the image at their position.
        """
        if score not in SCORES or isinstance(score, bool):
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        with self._transaction() as db:
            sequence = self._ensure_sequence(db, observer, make)
            position = self._next_position(db, observer)
            if position is None:
                raise Conflict(f"{observer} has rated all {len(sequence)} images",
                               total=len(sequence))
            expected = sequence[position]
            if expected.image_id != image_id:
                raise Conflict(f"image {image_id} is not the one to rate now: position "
                               f"{position} shows {expected.image_id}", position=position,
                               expected_image_id=expected.image_id)
            rating = Rating(observer, position, image_id, path, int(score), expected.repeat,
                            time.time())
            db.execute("INSERT INTO ratings (observer, position, image_id, path, score, repeat, "
                       "created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (rating.observer, rating.position, rating.image_id, rating.path,
                        rating.score, int(rating.repeat), rating.created))
        return rating

    @staticmethod
    def _undoable(db: sqlite3.Connection, observer: str) -> Union[dict, None]:
        """The last active rating if it is the newest position ever rated (one step back only)."""
        last = db.execute("SELECT id, position, image_id, score FROM ratings WHERE observer = ? "
                          "AND withdrawn IS NULL ORDER BY position DESC LIMIT 1",
                          (observer,)).fetchone()
        if last is None:
            return None
        frontier = db.execute("SELECT MAX(position) FROM ratings WHERE observer = ?",
                              (observer,)).fetchone()[0]
        if last[1] < frontier:
            return None
        return {"id": last[0], "position": last[1], "image_id": last[2], "score": last[3]}

    def undo(self, observer: str) -> dict:
        """Withdraws the observer's last rating so that its image is shown again next.

        Only the last rating can be changed: after an undo, the one before it stays.

        Returns:
            {'position', 'image_id', 'score'} of the withdrawn rating.

        Raises:
            Conflict: nothing to undo (no rating yet, or the last one was already withdrawn).
        """
        with self._transaction() as db:
            last = self._undoable(db, observer)
            if last is None:
                raise Conflict(f"{observer} has no last rating to change")
            db.execute("UPDATE ratings SET withdrawn = ? WHERE id = ?", (time.time(), last["id"]))
        return {k: last[k] for k in ("position", "image_id", "score")}

    def withdrawn_score(self, observer: str, position: int) -> Union[int, None]:
        """The score last withdrawn at `position` (what the observer gave before going back)."""
        rows = self._read("SELECT score FROM ratings WHERE observer = ? AND position = ? AND "
                          "withdrawn IS NOT NULL ORDER BY id DESC LIMIT 1", (observer, position))
        return rows[0][0] if rows else None

    def ratings(self, include_withdrawn: bool = False) -> list[Rating]:
        """Every rating, in the order they were made."""
        where = "" if include_withdrawn else " WHERE withdrawn IS NULL"
        rows = self._read("SELECT observer, position, image_id, path, score, repeat, created, "
                          f"withdrawn FROM ratings{where} ORDER BY id")
        return [Rating(o, p, i, path, s, bool(r), c, w) for o, p, i, path, s, r, c, w in rows]

    def progress(self) -> list[tuple[str, int, int]]:
        """(observer, active ratings, sequence length) per observer, by name."""
        return self._read(
            "SELECT o.name, (SELECT COUNT(*) FROM ratings r WHERE r.observer = o.name AND "
            "r.withdrawn IS NULL), (SELECT COUNT(*) FROM sequences s WHERE s.observer = o.name) "
            "FROM observers o ORDER BY o.name")
