"""How many denoiser calls a run makes: `--steps auto|N` -> the reverse process's start step.

The diffusion always runs at the output size. With N denoiser calls (1..T) the reverse process starts at step
s = N - 1 from the truncated start x_s = g + eta_s (y0 - g) + kappa sqrt(eta_s) w eps (Diff-SR's "perceptual
recoverable field"); N = T is full sampling from the prior (start step None). `auto` takes s from a calibration
table for the run's scale factor (nearest calibrated factor): `{"checkpoint": name or null, "factors": {"1.5": s,
...}}`, an entry null = full sampling. The table ships with the package (`data/start_steps.json`, written by
`scripts/calibrate_start_step.py`) and a checkpoint may carry its own in `info["start_steps"]`; no table, or a table
calibrated for another checkpoint, means full sampling.

`resolve_start` is the one function every path uses (make_plan for upscale and the Ray runner, `compare`, the
quality scripts), so they all run what `upscale` ships.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

TABLE_PATH = Path(__file__).resolve().parent / "data" / "start_steps.json"

Steps = Union[str, int]  # "auto" or a number of denoiser calls


class StepsError(ValueError):
    """A --steps value outside auto|1..T (one line)."""


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


def table_for(spec) -> dict:
    """The calibration table a checkpoint uses: its own, else the shipped one; {} when calibrated for another."""
    table = spec.info.get("start_steps") or load_table()
    if table.get("checkpoint") not in (None, spec.info.get("name")):
        return {}  # calibrated for another model
    return table


def schedule_steps(spec) -> int:
    """T, the checkpoint's number of diffusion steps."""
    from .diffusion.schedule import ScheduleConfig

    return ScheduleConfig.from_dict(spec.schedule).steps


def parse_steps(value, T: Optional[int] = None) -> Steps:
    """"auto" or an int from a command-line string (the range is checked by resolve_start, which knows T)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v == "auto":
        return "auto"
    try:
        return int(v)
    except ValueError:
        rng = f"1..{T}" if T else "1..T (the checkpoint's diffusion steps)"
        raise StepsError(f"--steps must be auto or a number of denoiser calls in {rng}, got {value!r}") from None


def resolve_start(spec, factor: float, steps: Steps = "auto") -> Optional[int]:
    """The start step of the reverse process for `steps` at this scale factor; None = full sampling from the
    prior (T denoiser calls). Raises StepsError for a count outside 1..T."""
    T = schedule_steps(spec)
    if steps == "auto":
        s = lookup(table_for(spec), factor)
        return s if s is not None and 0 <= s < T else None
    n = parse_steps(steps, T)
    if not 1 <= n <= T:
        raise StepsError(f"--steps must be auto or a number of denoiser calls in 1..{T}, got {n}")
    return None if n == T else n - 1


def denoiser_calls(spec, start: Optional[int]) -> int:
    """Denoiser calls of a run that starts at `start` (None: the prior, T calls)."""
    return schedule_steps(spec) if start is None else start + 1
