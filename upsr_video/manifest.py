"""The manifest: what is finished, in SQLite, so an interrupted run resumes where it stopped.

One file per run target (`OUTPUT_DIR/.upsr-manifest.sqlite` for an archive, inside the work folder for a
single video). Only the driver writes it. WAL + synchronous=FULL, one transaction per change: a state is
written only after the thing it describes exists (a segment is `done` only after its part file was renamed
into place; a video only after `finalize` renamed the output), so a crash at any point leaves a manifest that
is at worst behind the disk, never ahead of it. Rows left `running` by a killed driver read as pending
(and that interrupted attempt is not counted). One driver at a time: an exclusive lock on `<manifest>.lock`
(released by the kernel when a driver dies, however it dies) refuses a second driver on the same target.
"""
from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from upsr_video.process import UpscaleError

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.sqlite"  # inside a single video's work folder


def work_dir_for(output: Path) -> Path:
    """The work folder of one output: `.<output name>.upsr-work/` beside it (parts and the manifest)."""
    return Path(output).with_name(f".{Path(output).name}.upsr-work")


def part_name(fingerprint: str, seg) -> str:
    """A finished part's file name: the fingerprint's prefix (a changed run never reuses it), the segment's
    index and frame range."""
    tag = f"{fingerprint[:12]}-" if fingerprint else ""
    return f"part-{tag}{seg.index:05d}-{seg.start}-{seg.stop}.mkv"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
    key TEXT PRIMARY KEY,
    input TEXT NOT NULL,
    output TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    fingerprint TEXT,
    frames INTEGER,
    duration REAL,
    seconds REAL,
    cuts TEXT,
    split TEXT,
    updated REAL
);
CREATE TABLE IF NOT EXISTS segments (
    video TEXT NOT NULL,
    idx INTEGER NOT NULL,
    start INTEGER NOT NULL,
    stop INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    part TEXT,
    frames INTEGER,
    seconds REAL,
    finished REAL,
    PRIMARY KEY (video, idx)
);
"""


class ManifestError(UpscaleError):
    """The manifest cannot be opened, is from an incompatible version, or another driver holds it (one line)."""


@dataclass
class VideoRecord:
    key: str
    input: str
    output: str
    state: str = PENDING
    attempts: int = 0
    reason: Optional[str] = None
    fingerprint: Optional[str] = None
    frames: Optional[int] = None
    duration: Optional[float] = None
    seconds: Optional[float] = None
    cuts: Optional[list[int]] = None
    split: Optional[list[tuple[int, int]]] = None
    updated: Optional[float] = None


@dataclass
class SegmentRecord:
    video: str
    idx: int
    start: int
    stop: int
    state: str = PENDING
    attempts: int = 0
    part: Optional[str] = None
    frames: Optional[int] = None
    seconds: Optional[float] = None
    finished: Optional[float] = None


class Manifest:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: Optional[int] = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock()
            self.db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            with self._tx():
                for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                    self.db.execute(stmt)
                row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if row is None:
                    self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) != SCHEMA_VERSION:
                    raise ManifestError(f"{self.path}: manifest schema {row[0]}, this version reads {SCHEMA_VERSION}")
                # a driver that died left rows 'running': nothing is running now, and an attempt cut short by
                # a crash of the driver is not a failure of the video, so it does not count
                self.db.execute("UPDATE videos SET state='pending', attempts=MAX(0, attempts-1) WHERE state='running'")
                self.db.execute("UPDATE segments SET state='pending' WHERE state='running'")  # attempts: submissions
        except sqlite3.DatabaseError as e:
            self._unlock()
            raise ManifestError(f"cannot open manifest {self.path}: {e}") from None
        except OSError as e:
            self._unlock()
            raise ManifestError(f"cannot open manifest {self.path}: {e.strerror or e}") from None

    def _lock(self) -> None:
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ManifestError(f"{self.path.parent}: another run is using this folder (lock {lock.name})") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def __del__(self):
        self._unlock()

    # -- plumbing ---------------------------------------------------------------------------------------
    class _Tx:
        def __init__(self, db):
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, et, ev, tb):
            self.db.execute("COMMIT" if et is None else "ROLLBACK")
            return False

    def _tx(self):
        return Manifest._Tx(self.db)

    def close(self) -> None:
        self.db.close()
        self._unlock()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def get_meta(self, key: str) -> Optional[str]:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx():
            self.db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    # -- videos -----------------------------------------------------------------------------------------
    def video(self, key: str) -> Optional[VideoRecord]:
        cur = self.db.execute("SELECT * FROM videos WHERE key=?", (key,))
        row = cur.fetchone()
        if row is None:
            return None
        d = dict(zip([c[0] for c in cur.description], row))
        d["cuts"] = json.loads(d["cuts"]) if d["cuts"] else None
        d["split"] = [tuple(x) for x in json.loads(d["split"])] if d["split"] else None
        return VideoRecord(**d)

    def videos(self) -> list[VideoRecord]:
        keys = [r[0] for r in self.db.execute("SELECT key FROM videos ORDER BY key")]
        return [self.video(k) for k in keys]

    def ensure_video(self, key: str, input: str, output: str, fingerprint: str, reset: bool = False) -> VideoRecord:
        """The record of `key`; a new one, or a reset one when the inputs/options changed (fingerprint) or
        `reset` asks to start over."""
        with self._tx():
            rec = self.video(key)
            if rec is None or rec.fingerprint != fingerprint or reset:
                self.db.execute("DELETE FROM segments WHERE video=?", (key,))
                self.db.execute(
                    "INSERT INTO videos (key, input, output, state, attempts, fingerprint, updated) VALUES (?,?,?,?,0,?,?)"
                    " ON CONFLICT(key) DO UPDATE SET input=excluded.input, output=excluded.output, state='pending',"
                    " attempts=0, reason=NULL, fingerprint=excluded.fingerprint, frames=NULL, duration=NULL,"
                    " seconds=NULL, cuts=NULL, split=NULL, updated=excluded.updated",
                    (key, input, output, PENDING, fingerprint, time.time()),
                )
            elif rec.output != output:
                self.db.execute("UPDATE videos SET output=?, updated=? WHERE key=?", (output, time.time(), key))
        return self.video(key)

    def begin_attempt(self, key: str) -> int:
        with self._tx():
            self.db.execute("UPDATE videos SET state='running', attempts=attempts+1, updated=? WHERE key=?", (time.time(), key))
        return self.video(key).attempts

    def set_plan(self, key: str, frames: int, duration: Optional[float], cuts: list[int], split: list[tuple[int, int]]) -> None:
        """Record the probe, the scene cuts and the split once, so a resumed run reuses the same segments."""
        with self._tx():
            self.db.execute(
                "UPDATE videos SET frames=?, duration=?, cuts=?, split=?, updated=? WHERE key=?",
                (int(frames), duration, json.dumps([int(c) for c in cuts]), json.dumps([list(map(int, s)) for s in split]),
                 time.time(), key),
            )
            for i, (a, b) in enumerate(split):
                self.db.execute("INSERT OR IGNORE INTO segments (video, idx, start, stop) VALUES (?,?,?,?)", (key, i, int(a), int(b)))

    def video_done(self, key: str, seconds: float) -> None:
        with self._tx():
            self.db.execute("UPDATE videos SET state='done', reason=NULL, seconds=?, updated=? WHERE key=?",
                            (float(seconds), time.time(), key))

    def video_failed(self, key: str, reason: str) -> None:
        with self._tx():
            self.db.execute("UPDATE videos SET state='failed', reason=?, updated=? WHERE key=?",
                            (reason.splitlines()[0] if reason else "failed", time.time(), key))

    def reset_attempts(self, key: str) -> None:
        with self._tx():
            self.db.execute("UPDATE videos SET attempts=0, state='pending', updated=? WHERE key=?", (time.time(), key))

    # -- segments ---------------------------------------------------------------------------------------
    def segments(self, key: str) -> list[SegmentRecord]:
        cur = self.db.execute("SELECT * FROM segments WHERE video=? ORDER BY idx", (key,))
        cols = [c[0] for c in cur.description]
        return [SegmentRecord(**dict(zip(cols, r))) for r in cur.fetchall()]

    def segment_started(self, key: str, idx: int) -> None:
        with self._tx():
            self.db.execute("UPDATE segments SET state='running', attempts=attempts+1 WHERE video=? AND idx=?", (key, idx))

    def segment_done(self, key: str, idx: int, part: str, frames: int, seconds: float) -> None:
        """Call only once `part` is in place under its final name."""
        with self._tx():
            self.db.execute(
                "UPDATE segments SET state='done', part=?, frames=?, seconds=?, finished=? WHERE video=? AND idx=?",
                (str(part), int(frames), float(seconds), time.time(), key, idx),
            )

    def segment_pending(self, key: str, idx: int) -> None:
        with self._tx():
            self.db.execute("UPDATE segments SET state='pending', part=NULL WHERE video=? AND idx=?", (key, idx))

    def segment_failed(self, key: str, idx: int) -> None:
        with self._tx():
            self.db.execute("UPDATE segments SET state='failed' WHERE video=? AND idx=?", (key, idx))

    # -- reporting --------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return {s: n for s, n in self.db.execute("SELECT state, COUNT(*) FROM videos GROUP BY state")}
