"""What a finished part depends on: the fingerprint that decides whether earlier work may be reused.

A part made by an earlier run is reused only when everything that shapes its frames is the same: the input file
(size and modification time), the output-changing options, the checkpoint's content (a SHA-256 of its bytes, so
a reinstall that only touches the file keeps its parts, while any change of weights or config discards them),
the calibration table the plan reads (the checkpoint's own `info.start_steps` or the shipped
`upsr_video/data/start_steps.json`), the package version, and a digest of the package's source (the version
string is not bumped for every change that alters frames, and a development install never bumps it: work made
by other code is never mixed into a file). The checkpoint's hash is cached per (path, size, mtime) within a
process: a batch of many videos hashes it once.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Optional

EXECUTION_ONLY = ("device", "threads", "batch_size")  # options that do not change the output


def package_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("upsr-video")
    except (ImportError, PackageNotFoundError):
        return "unknown"


@lru_cache(maxsize=4)
def code_digest(root: Optional[str] = None) -> str:
    """SHA-256 over the Python sources under `root` (default: this package), their relative paths and bytes in
    sorted order: the same code anywhere, installed or checked out, gives the same digest. Once per process."""
    base = Path(root) if root else Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(base.rglob("*.py")):
        h.update(f.relative_to(base).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path) -> str:
    """SHA-256 of a file's bytes, computed once per (path, size, mtime) in this process."""
    p = os.path.abspath(os.fspath(path))
    st = os.stat(p)
    return _sha256(p, st.st_size, st.st_mtime_ns)


def _checkpoint_files(checkpoint: Optional[str]) -> tuple[Path, list[Path]]:
    from .checkpoint import default_checkpoint_path

    p = Path(checkpoint) if checkpoint else default_checkpoint_path()
    return p, ([p / "model.safetensors", p / "config.json"] if p.is_dir() else [p])


def _own_table(p: Path) -> Optional[dict]:
    """The calibration table a checkpoint carries itself (`info.start_steps` of its config), if any."""
    try:
        if p.is_dir() and (p / "config.json").exists():
            cfg = json.loads((p / "config.json").read_text())
        else:
            from safetensors import safe_open

            from .checkpoint import META_KEY

            weights = p / "model.safetensors" if p.is_dir() else p
            with safe_open(str(weights), framework="pt") as f:
                cfg = json.loads((f.metadata() or {}).get(META_KEY, "{}"))
        return (cfg.get("info") or {}).get("start_steps") or None
    except Exception:  # unreadable: loading it fails later with its own message
        return None


def calibration_table(checkpoint: Optional[str]) -> dict:
    """The start-step table a plan with this checkpoint reads: its own, else the shipped one."""
    from .startstep import load_table

    p, _ = _checkpoint_files(checkpoint)
    own = _own_table(p) if p.exists() else None
    return own if own is not None else load_table()


def checkpoint_identity(checkpoint: Optional[str]) -> list:
    """SHA-256 of the checkpoint's file(s) (not their names, paths or times: a reinstall keeps parts)."""
    _, files = _checkpoint_files(checkpoint)
    return [file_sha256(f) if f.exists() else None for f in files]


def fingerprint(input_path: str, opts) -> str:
    """What a finished part depends on (see the module docstring). A rerun with a different fingerprint starts
    that video over."""
    st = os.stat(input_path)
    d = {
        "input": [st.st_size, st.st_mtime_ns],
        # the checkpoint by content, not by the path the options name
        "options": {k: v for k, v in opts.to_dict().items() if k not in EXECUTION_ONLY and k != "checkpoint"},
        "checkpoint": checkpoint_identity(opts.checkpoint),
        "calibration": calibration_table(opts.checkpoint),
        "version": package_version(),
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:20]
