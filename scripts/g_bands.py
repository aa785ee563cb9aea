"""Choose the switch factor of a banded g (models.aux.ScaleBands) by cost, with its quality on held-out crops beside it.

    python scripts/g_bands.py upsr_video/weights/upsr-small-default.safetensors \
        checkpoints/g-compact-s-x2u-pool.safetensors --json reports/g_bands/choice.json

For each candidate factor: each g's seconds for one 1920x1080 output from an LR frame at that factor (medians),
and g alone of both checkpoints on the held-out crops (scripts/holdout_choice.py's) under two degradations,
antialiased bicubic (clean) and the web one at that factor (area down, one H.264 frame at CRF 26).

Rule (cost; the quality it gives up is reported beside it, and the full model's on held-out crops by
holdout_choice.py): a frame's time is the denoiser's D (measured here: one 1080p frame at the x4 checkpoint's
calibrated start step for x4) plus g's G(factor). The issue's cost bar asks that a frame from any input cost at
most 1.5x one from 270p (x4), so g's budget is 1.5 (D + G_x4(4)) - D. The switch is the largest candidate factor
at which the x4 g is over that budget (none over it: no bands): the low g serves the factors where the x4 g is too
dear, the x4 g every factor above, where it keeps its quality.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from holdout_choice import CROP, crop_scores, crops_and_lpips, label  # noqa: E402
from model_cost import median_time  # noqa: E402
from quality_bars import bicubic, g_only, web_lr  # noqa: E402

from upsr_video.checkpoint import load_pipeline  # noqa: E402
from upsr_video.eval.sr_bench import bicubic_downscale  # noqa: E402
from upsr_video.models.aux import ScaleBands  # noqa: E402
from upsr_video.pipeline import TileOptions  # noqa: E402
from upsr_video.startstep import resolve_start  # noqa: E402


DEGRADATIONS = {"bicubic": bicubic_downscale, "H.264": lambda hr, f: web_lr([hr], f)[0]}


def g_seconds(pipe, factor: float, repeats: int) -> float:
    """Median seconds of g for one 1920x1080 output from an LR frame at `factor` (as upscale tiles it)."""
    lr = torch.rand(1, 3, round(1080 / factor), round(1920 / factor)) * 2 - 1
    return median_time(lambda: pipe.condition(lr, (1080, 1920), TileOptions()), repeats)[0]


def denoiser_seconds(pipe, spec, repeats: int) -> float:
    """Median seconds of the denoiser for one 1920x1080 frame at the calibrated start step for x4."""
    start = resolve_start(spec, 4.0, "auto")
    y0 = torch.rand(1, 3, 1080, 1920) * 2 - 1
    return median_time(lambda: pipe.sample(y0, y0, torch.randn_like(y0), start_step=start), repeats)[0]


def choose(rows: dict, budget: float) -> float | None:
    over = [float(f) for f, r in rows.items() if r["x4"]["seconds_1080p"] > budget]
    return max(over) if over else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("x4", help="checkpoint whose g is the x4 (top) band (a banded one: its top band)")
    ap.add_argument("low", help="checkpoint whose g is the candidate low band")
    ap.add_argument("--factors", default="1.5,2,2.5,3")
    ap.add_argument("--crops", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    crops, lpips_model = crops_and_lpips(a.crops)
    spec, x4 = load_pipeline(a.x4)
    if isinstance(x4.aux, ScaleBands):  # an already banded checkpoint (the shipped default): its x4 network
        x4.aux = x4.aux.bands[-1]
    pipes = {"x4": x4, "low": load_pipeline(a.low)[1]}
    d = denoiser_seconds(x4, spec, a.repeats)
    g4 = g_seconds(x4, 4.0, a.repeats)
    budget = 1.5 * (d + g4) - d
    print(f"denoiser {d:.2f} s per 1080p frame, x4 g from 270p {g4:.2f} s: g's budget {budget:.2f} s")
    print(f"{len(crops)} held-out crops of {CROP}x{CROP}; PSNR-Y / LPIPS of g alone; seconds of g per 1080p output")
    rows = {}
    for f in (float(x) for x in a.factors.split(",")):
        methods = {"bicubic": bicubic, **{name: g_only(pipe) for name, pipe in pipes.items()}}
        scores = {d: crop_scores(methods, crops, lambda hr, make=make: make(hr, f), f, lpips_model)
                  for d, make in DEGRADATIONS.items()}
        row = {}
        for name in methods:
            r = row[name] = {d: scores[d][name] for d in DEGRADATIONS}
            r["psnr_y_mean"] = float(np.mean([r[d]["psnr_y"] for d in DEGRADATIONS]))
            if name in pipes:
                r["seconds_1080p"] = g_seconds(pipes[name], f, a.repeats)
        rows[f"{f:g}"] = row
        print(f"x{f:<4g} " + "  ".join(
            f"{n}: " + " ".join(f"{d} {v[d]['psnr_y']:.3f}/{v[d]['lpips']:.3f}" for d in DEGRADATIONS)
            + (f" {v['seconds_1080p']:.2f} s" if "seconds_1080p" in v else "") for n, v in row.items()), flush=True)
    switch = choose(rows, budget)
    print(f"switch factor: {switch} (the x4 g is over the {budget:.2f} s budget at and below it)")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"x4": label(a.x4), "low": label(a.low), "crops": len(crops),
                                            "threads": a.threads, "denoiser_seconds_1080p": d, "x4_g_seconds_from_270p": g4,
                                            "budget": budget, "rows": rows,
                                            "switch": switch}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
