"""Choosing the reverse process's start step from the scale factor (Diff-SR's "perceptual recoverable field").

A calibration table maps scale factors to the start step s that gave the best LPIPS at no worse than
bicubic + 0.5 dB PSNR-Y on a calibration set from the training pool. The table ships with the package
(`data/start_steps.json`, measured by `scripts/calibrate_start_step.py`) and a checkpoint may carry its own in
`info["start_steps"]`. No entry: full sampling from the prior (None).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

TABLE_PATH = Path(__file__).resolve().parent / "data" / "start_steps.json"


def load_table(path: Path = TABLE_PATH) -> dict:
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def _nearest(entries: dict, factor: float):
    """The value of the entry whose factor key is nearest to `factor` (clamped at both ends)."""
    return entries[min(entries, key=lambda k: abs(float(k) - factor))]


def lookup(table: dict, factor: float) -> Optional[int]:
    """Start step of the nearest calibrated factor; None = full prior start (or no table)."""
    entries = table.get("factors", {})
    if not entries:
        return None
    v = _nearest(entries, factor)
    return None if v is None else int(v)


def _table_for(spec) -> dict:
    table = spec.info.get("start_steps") or load_table()
    if table.get("checkpoint") not in (None, spec.info.get("name")):
        return {}  # calibrated for another model
    return table


def choose_mode(spec, factor: float) -> Optional[str]:
    """The measured best mode for this factor ("resize" | "direct" | "truncated"), nearest calibrated factor;
    None when the table has no modes (the caller's heuristic decides)."""
    modes = _table_for(spec).get("modes", {})
    if not modes:
        return None
    return _nearest(modes, factor)


def choose_start_step(spec, factor: float, steps: int) -> Optional[int]:
    s = lookup(_table_for(spec), factor)
    if s is not None and not 0 <= s < steps:
        return None
    return s
