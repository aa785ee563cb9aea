"""Choose the switch factor of a banded g (models.aux.ScaleBands) on held-out training-pool crops.

    python scripts/g_bands.py upsr_video/weights/upsr-small-default.safetensors \
        runs/g-compact-s-x2u-pool/model.safetensors --json reports/g_bands/choice.json

For each candidate factor, g alone of both checkpoints on the held-out crops (scripts/holdout_choice.py's) under
two degradations: antialiased bicubic (clean) and the web one at that factor (area down, one H.264 frame at CRF
26). Beside them, each g's seconds for one 1920x1080 output from an LR frame at that factor (medians).
Rule: the switch is the largest candidate factor F such that at every candidate factor <= F the low g's mean
PSNR-Y over the two degradations is within --tolerance dB of the x4 g's; below F the low g costs a quarter of
the x4 g's body per LR pixel, above it the x4 g keeps its quality. No factor passing: no bands.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from holdout_choice import CROP, holdout_crops, label  # noqa: E402
from quality_bars import SHARED, bicubic, g_only, lp, web_lr  # noqa: E402

from upsr_video.checkpoint import load_pipeline  # noqa: E402
from upsr_video.eval.fidelity import psnr_y  # noqa: E402
from upsr_video.eval.lpips_alex import load_lpips  # noqa: E402
from upsr_video.eval.sr_bench import bicubic_downscale  # noqa: E402


DEGRADATIONS = {"bicubic": bicubic_downscale, "H.264": lambda hr, f: web_lr([hr], f)[0]}


def g_seconds(pipe, factor: float, repeats: int) -> float:
    """Median seconds of g for one 1920x1080 output from an LR frame at `factor` (as upscale tiles it)."""
    from upsr_video.pipeline import TileOptions

    lr = torch.rand(1, 3, round(1080 / factor), round(1920 / factor)) * 2 - 1
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        pipe.condition(lr, (1080, 1920), TileOptions())
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def choose(rows: dict, tolerance: float) -> float | None:
    switch = None
    for f in sorted(rows, key=float):
        r = rows[f]
        if r["low"]["psnr_y_mean"] < r["x4"]["psnr_y_mean"] - tolerance:
            break
        switch = float(f)
    return switch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("x4", help="checkpoint whose g is the x4 (top) band")
    ap.add_argument("low", help="checkpoint whose g is the candidate low band")
    ap.add_argument("--factors", default="1.5,2,2.5,3")
    ap.add_argument("--tolerance", type=float, default=0.05, help="dB of PSNR-Y the low band may give up")
    ap.add_argument("--crops", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    crops = holdout_crops(a.crops)
    lpips_model = load_lpips(str(SHARED / "weights/lpips_alex_v0.1.safetensors"))
    pipes = {"x4": load_pipeline(a.x4)[1], "low": load_pipeline(a.low)[1]}
    print(f"{len(crops)} held-out crops of {CROP}x{CROP}; PSNR-Y / LPIPS of g alone; seconds of g per 1080p output")
    rows = {}
    for f in (float(x) for x in a.factors.split(",")):
        row = {}
        for name, pipe in [("bicubic", None), *pipes.items()]:
            fn = bicubic if pipe is None else g_only(pipe)
            r = {}
            for dname, make in DEGRADATIONS.items():
                ps, lps = [], []
                for hr in crops:
                    out = fn(make(hr, f), hr.shape[:2])
                    ps.append(psnr_y(out, hr, int(np.ceil(f))))
                    lps.append(lp(lpips_model, out, hr))
                r[dname] = {"psnr_y": float(np.mean(ps)), "lpips": float(np.mean(lps))}
            r["psnr_y_mean"] = float(np.mean([r[d]["psnr_y"] for d in DEGRADATIONS]))
            if pipe is not None:
                r["seconds_1080p"] = g_seconds(pipe, f, a.repeats)
            row[name] = r
        rows[f"{f:g}"] = row
        print(f"x{f:<4g} " + "  ".join(
            f"{n}: " + " ".join(f"{d} {v[d]['psnr_y']:.3f}/{v[d]['lpips']:.3f}" for d in DEGRADATIONS)
            + (f" {v['seconds_1080p']:.2f} s" if "seconds_1080p" in v else "") for n, v in row.items()), flush=True)
    switch = choose(rows, a.tolerance)
    print(f"switch factor: {switch} (tolerance {a.tolerance} dB)")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"x4": label(a.x4), "low": label(a.low), "crops": len(crops),
                                            "tolerance": a.tolerance, "threads": a.threads, "rows": rows,
                                            "switch": switch}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
