"""Choose between checkpoints on held-out training-pool data (never the test sets): g alone and the full model
as `upscale` runs it, under fixed degradations, with bicubic beside them.

    python scripts/holdout_choice.py upsr_video/weights/upsr-small-default.safetensors \
        checkpoints/upsr-small-video.safetensors --json /tmp/holdout.json

Images: the pool's held-out images (every 20th of train_hr, the split training uses for validation), cut into
up to --crops 240x240 crops each (a grid from the centre out). Degradations, each the same for every checkpoint:
  bicubic x1.5 / x2 / x3 / x4   antialiased bicubic (as Set5/Set14's LR are made)
  BD x4                  Gaussian blur sigma 1.6 + x4 at pixel centres (the Vid4 bar's degradation)
  H.264 x2 / x1.5        area down, one H.264 frame at CRF 26 (yuv420p), decoded
Denoising (a diffusion checkpoint): bicubic x4, the reverse process from t = 0 started at the forward marginal of
the ground truth vs at g (quality_bars' denoise check on held-out crops: does the denoiser use x_t).
Metrics: PSNR-Y (ceil(scale) px shaved) and LPIPS-alex; the model starts at the step `--steps` gives (auto: the
checkpoint's calibrated table, as `upscale` does). A g-only checkpoint reports g.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_bars import SHARED, bd_x4, bicubic, denoise_gains, g_only, image_method, lp, web_lr  # noqa: E402

from upsr_video.checkpoint import load_pipeline  # noqa: E402
from upsr_video.eval.fidelity import psnr_y  # noqa: E402
from upsr_video.eval.lpips_alex import load_lpips  # noqa: E402
from upsr_video.eval.sr_bench import Pair, bicubic_downscale, read_rgb  # noqa: E402

CROP = 240


def holdout_images(every: int = 20) -> dict[str, np.ndarray]:
    """The pool's held-out images (training.data.holdout_split, as training validates), RGB, by file stem."""
    from training.data import holdout_split

    _, val = holdout_split([SHARED / "data/images/train_hr"], every)
    return {Path(p).stem: read_rgb(Path(p)) for p in val}


def holdout_crops(per_image: int, every: int = 20) -> list[np.ndarray]:
    """Up to per_image non-overlapping CROPxCROP crops of each held-out pool image, nearest the centre first."""
    out = []
    for im in holdout_images(every).values():
        h, w = im.shape[:2]
        ny, nx = h // CROP, w // CROP
        y0, x0 = (h - ny * CROP) // 2, (w - nx * CROP) // 2
        cells = sorted(((i, j) for i in range(ny) for j in range(nx)),
                       key=lambda c: ((c[0] + 0.5) / ny - 0.5) ** 2 + ((c[1] + 0.5) / nx - 0.5) ** 2)
        for i, j in cells[:per_image]:
            out.append(np.ascontiguousarray(im[y0 + i * CROP : y0 + (i + 1) * CROP, x0 + j * CROP : x0 + (j + 1) * CROP]))
    return out


DEGRADATIONS = {
    "bicubic x1.5": (1.5, lambda hr: bicubic_downscale(hr, 1.5)),
    "bicubic x2": (2, lambda hr: bicubic_downscale(hr, 2)),
    "bicubic x3": (3, lambda hr: bicubic_downscale(hr, 3)),
    "bicubic x4": (4, lambda hr: bicubic_downscale(hr, 4)),
    "BD x4": (4, bd_x4),
    "H.264 x2": (2, lambda hr: web_lr([hr])[0]),  # the web bar's degradation, one frame
    "H.264 x1.5": (1.5, lambda hr: web_lr([hr], 1.5)[0]),  # the same from 720p to 1080p
}


def label(ckpt: str) -> str:
    """A checkpoint's name in the report: its path in the repository, else its last two path parts (reports are
    committed; they carry no paths of the machine that made them)."""
    p = Path(ckpt).resolve()
    root = Path(__file__).resolve().parents[1]
    return str(p.relative_to(root)) if p.is_relative_to(root) else "/".join(p.parts[-2:])


def crops_and_lpips(per_image: int) -> tuple[list[np.ndarray], object]:
    """The held-out crops (holdout_crops) and the LPIPS-alex model every held-out comparison scores with."""
    return holdout_crops(per_image), load_lpips(str(SHARED / "weights/lpips_alex_v0.1.safetensors"))


def crop_scores(methods: dict, crops, make_lr, scale: float, lpips_model) -> dict:
    """Mean PSNR-Y (ceil(scale) px shaved) and LPIPS of each method `fn(lr, (H, W))` on the crops; each crop's LR
    is made once for all methods."""
    acc = {m: {"psnr_y": [], "lpips": []} for m in methods}
    for hr in crops:
        lr = make_lr(hr)
        for m, fn in methods.items():
            out = fn(lr, hr.shape[:2])
            acc[m]["psnr_y"].append(psnr_y(out, hr, int(np.ceil(scale))))
            acc[m]["lpips"].append(lp(lpips_model, out, hr))
    return {m: {k: float(np.mean(v)) for k, v in d.items()} for m, d in acc.items()}


def evaluate(ckpt: str, crops, lpips_model, steps, seed: int) -> dict:
    spec, pipe = load_pipeline(ckpt)
    res = {}
    for name, (scale, make_lr) in DEGRADATIONS.items():
        methods = {"bicubic": bicubic, "g": g_only(pipe)}
        if pipe.is_diffusion:
            methods["upsr"] = image_method(pipe, spec, float(scale), seed, steps)
        res[name] = crop_scores(methods, crops, make_lr, scale, lpips_model)
        row = "  ".join(f"{m} {d['psnr_y']:.3f}/{d['lpips']:.3f}" for m, d in res[name].items())
        print(f"{Path(ckpt).name:40s} {name:11s} {row}", flush=True)
    if pipe.is_diffusion:  # does the denoiser use x_t: the denoising check, on held-out crops
        x4 = DEGRADATIONS["bicubic x4"][1]
        pairs = [Pair(f"crop{i}", hr, x4(hr)) for i, hr in enumerate(crops)]
        d = res["denoise x4 t=0"] = denoise_gains(pipe, pairs, seed, [0])[0]
        print(f"{Path(ckpt).name:40s} denoise x4  t=0 from GT marginal {d['from_gt']:.3f}  from g {d['from_g']:.3f}  "
              f"gain {d['from_gt'] - d['from_g']:+.3f} dB", flush=True)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--crops", type=int, default=4, help="crops per held-out image")
    ap.add_argument("--steps", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    crops, lpips_model = crops_and_lpips(a.crops)
    print(f"{len(crops)} held-out crops of {CROP}x{CROP}; PSNR-Y/LPIPS per method", flush=True)
    report = {"crops": len(crops), "steps": a.steps, "seed": a.seed,
              "results": {label(c): evaluate(c, crops, lpips_model, a.steps, a.seed) for c in a.checkpoints}}
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
