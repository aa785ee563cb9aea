"""Calibrate the start step of the reverse process per scale factor (Diff-SR's "perceptual recoverable field",
brought into UPSR) and write the table `--steps auto` reads.

    python scripts/calibrate_start_step.py                       # bundled checkpoint, writes the shipped table
    python scripts/calibrate_start_step.py --checkpoint runs/upsr-video/model.safetensors \
        --degradation-config configs/g-video.yaml --out /tmp/t.json --report /tmp/t-report.json
    python scripts/calibrate_start_step.py --factors 2 --images 2 --out /tmp/t.json --report /tmp/r.json --plot /tmp/p.png

Calibration set: the images the training run held out of its pool (every 20th of train_hr, never Set5/Set14/Vid4),
centre crops of 240x240 so every factor divides exactly. For each factor the LR is made once per image (the same
LR for every start step): by default with the same antialiased bicubic as every benchmark here, or with
`--degradation-config`, the `degradation:` block of a training config (training.degradations.degrade, seeded per
image and factor). The model runs as `upscale` does: y0 and g at the output size, the sampler started at s
(x_s = g + eta_s (y0 - g) + kappa sqrt(eta_s) w_u eps, s + 1 denoiser calls) or from the prior ("full", T calls).
Rule: among the s with PSNR-Y >= bicubic + 0.5 dB, the cheapest whose LPIPS is within 1% of the best (so a
flat curve costs one denoiser call, not five); if none qualifies, the s with the best PSNR-Y.

Writes the table ({"checkpoint": name, "factors": {factor: s or null}}, null = full sampling) to --out, and the
curves behind it (PSNR-Y, LPIPS and seconds per s, bicubic and g, the rule, the set) to --report with a plot.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from upsr_video.checkpoint import default_checkpoint_path, load_pipeline
from upsr_video.diffusion.sampler import derive_seed
from upsr_video.eval.fidelity import psnr_y
from upsr_video.eval.lpips_alex import load_lpips
from upsr_video.eval.sr_bench import bicubic_downscale, read_rgb, to_tensor, to_uint8
from upsr_video.startstep import TABLE_PATH

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FACTORS = [1.5, 2.0, 3.0, 4.0, 6.0, 8.0]
RULE = ("on held-out training-pool crops: among s with PSNR-Y >= bicubic + 0.5 dB, the smallest s whose LPIPS is "
        "within {tie:.0%} of the best; if none, the best PSNR-Y")


def calibration_images(every: int = 20, crop: int = 240, limit: Optional[int] = None) -> list[np.ndarray]:
    """Held-out images of the training pool (the split training/data.holdout_split makes), centre-cropped."""
    from training.data import holdout_split

    _, val = holdout_split([SHARED / "data/images/train_hr"], every)
    out = []
    for p in val[:limit] if limit else val:
        im = read_rgb(Path(p))
        h, w = im.shape[:2]
        y, x = (h - crop) // 2, (w - crop) // 2
        out.append(np.ascontiguousarray(im[y : y + crop, x : x + crop]))
    return out


def load_degradation(path: Optional[str]):
    """The `degradation:` block of a training config as a DegradationConfig; None: plain antialiased bicubic."""
    if not path:
        return None
    from training.config import read_yaml
    from training.degradations import DegradationConfig

    cfg = read_yaml(path)  # with its parents (`extends:`)
    if "degradation" not in cfg:
        raise ValueError(f"{path} has no degradation: block")
    return DegradationConfig.from_dict(cfg["degradation"])


def make_lrs(images, factor: float, degradation, seed: int) -> list[torch.Tensor]:
    """One LR per image in [-1,1], made once so that every start step sees the same input."""
    out = []
    for i, hr in enumerate(images):
        if degradation is None:
            out.append(to_tensor(bicubic_downscale(hr, factor)))
            continue
        from training.degradations import degrade

        gen = torch.Generator().manual_seed(derive_seed(seed, "calibration-lr", i, f"{factor:g}"))
        hr01 = torch.from_numpy(hr).permute(2, 0, 1)[None].float() / 255.0
        out.append(degrade(hr01, factor, degradation, gen) * 2 - 1)
    return out


def measure(pipe, images, lrs, start, lp, seed: int, factor: float) -> dict:
    ps, ls, secs = [], [], []
    shave = int(np.ceil(factor))
    for i, (hr, lr) in enumerate(zip(images, lrs)):
        t0 = time.perf_counter()
        with torch.no_grad():
            if start == "bicubic":
                out = torch.nn.functional.interpolate(lr, size=hr.shape[:2], mode="bicubic", align_corners=False)
            elif start == "g":
                out = pipe.condition(lr, hr.shape[:2])[1]
            else:
                out = pipe(lr, seed=seed + i, out_size=hr.shape[:2], start_step=start)
        secs.append(time.perf_counter() - t0)
        o8 = to_uint8(out)
        ps.append(psnr_y(o8, hr, shave))
        with torch.no_grad():
            ls.append(float(lp(to_tensor(o8), to_tensor(hr)).mean()))
    return {"psnr_y": float(np.mean(ps)), "lpips": float(np.mean(ls)), "seconds": float(np.median(secs))}


def choose(curve: dict, bic_psnr: float, margin: float = 0.5, tie: float = 0.01):
    """(s, meets_bar): among the s with PSNR-Y >= bicubic + margin, the cheapest (smallest s) whose LPIPS is within
    `tie` (relative) of the best one; if none qualifies, the best PSNR-Y. A flat curve thus costs 1 denoiser call."""
    ok = {k: v for k, v in curve.items() if v["psnr_y"] >= bic_psnr + margin}
    if not ok:
        best = max(curve, key=lambda k: curve[k]["psnr_y"])
        return (None if best == "full" else int(best)), False
    floor = min(v["lpips"] for v in ok.values())
    near = [k for k, v in ok.items() if v["lpips"] <= floor * (1 + tie)]
    best = min(near, key=lambda k: float("inf") if k == "full" else int(k))
    return (None if best == "full" else int(best)), True


def plot(results: dict, path: Path, T: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    xs = list(range(T)) + [T]
    for f, r in results.items():
        c = r["curve"]
        keys = [str(s) for s in range(T)] + ["full"]
        for ax, m in zip(axes, ("psnr_y", "lpips")):
            line = ax.plot(xs, [c[k][m] for k in keys], marker="o", label=f"x{f:g}")[0]
            ax.axhline(r["bicubic"][m], color=line.get_color(), ls=":", lw=0.8)
    for ax, m in zip(axes, ("PSNR-Y (dB)", "LPIPS-alex")):
        ax.set_xticks(xs, [str(s) for s in range(T)] + ["full\n(prior)"])
        ax.set_xlabel("start step s")
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
    axes[0].legend(ncol=2, fontsize=8)
    axes[0].set_title("PSNR-Y vs start step (dotted: bicubic)")
    axes[1].set_title("LPIPS vs start step (dotted: bicubic)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(default_checkpoint_path()))
    ap.add_argument("--factors", default=",".join(f"{f:g}" for f in FACTORS))
    ap.add_argument("--degradation-config", default=None,
                    help="a training config (e.g. configs/g-video.yaml) whose degradation: block makes the LR "
                         "(default: antialiased bicubic)")
    ap.add_argument("--lpips-weights", default=os.environ.get("UPSR_LPIPS_WEIGHTS", str(SHARED / "weights/lpips_alex_v0.1.safetensors")))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crop", type=int, default=240)
    ap.add_argument("--images", type=int, default=None, help="use only the first N held-out images (smoke runs)")
    ap.add_argument("--out", default=str(TABLE_PATH), help="table JSON (default: the one the package ships)")
    ap.add_argument("--report", default=str(ROOT / "reports/start_step_calibration.json"),
                    help="the curves behind the table (JSON)")
    ap.add_argument("--plot", default=str(ROOT / "reports/start_step_calibration.png"))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--tie", type=float, default=0.01, help="relative LPIPS within which the cheaper s wins")
    ap.add_argument("--rechoose", action="store_true", help="re-apply the rule to the curves already in --report")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.rechoose:
        report = json.loads(Path(a.report).read_text())
        for f, r in report["curves"].items():
            r["chosen"], r["meets_bar"] = choose(r["curve"], r["bicubic"]["psnr_y"], tie=a.tie)
            report["factors"][f] = r["chosen"]
        report["rule"] = RULE.format(tie=a.tie)
        write_json(Path(a.report), report)
        write_json(Path(a.out), {"checkpoint": report.get("checkpoint"), "factors": report["factors"]})
        print(json.dumps({"table": report["factors"]}))
        return 0
    try:
        degradation = load_degradation(a.degradation_config)
    except (OSError, ValueError) as e:
        print(f"error: --degradation-config: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    spec, pipe = load_pipeline(a.checkpoint)
    if not pipe.is_diffusion:
        print("error: the checkpoint has no denoiser", file=sys.stderr)
        return 2
    T = pipe.schedule.T
    lp = load_lpips(a.lpips_weights)
    images = calibration_images(crop=a.crop, limit=a.images)
    results, table = {}, {}
    for f in [float(x) for x in a.factors.split(",")]:
        lrs = make_lrs(images, f, degradation, a.seed)
        bic = measure(pipe, images, lrs, "bicubic", lp, a.seed, f)
        g = measure(pipe, images, lrs, "g", lp, a.seed, f)
        curve = {str(s): measure(pipe, images, lrs, s, lp, a.seed, f) for s in range(T)}
        curve["full"] = measure(pipe, images, lrs, None, lp, a.seed, f)
        s, ok = choose(curve, bic["psnr_y"], tie=a.tie)
        results[f] = {"bicubic": bic, "g": g, "curve": curve, "chosen": s, "meets_bar": ok}
        table[f"{f:g}"] = s
        print(f"x{f:g}: bicubic {bic['psnr_y']:.2f} dB / {bic['lpips']:.3f}; g {g['psnr_y']:.2f} / {g['lpips']:.3f}")
        for k, v in curve.items():
            mark = " <-" if (k == "full" and s is None) or k == str(s) else ""
            print(f"   s={k:>4s}: PSNR-Y {v['psnr_y']:6.2f} ({v['psnr_y'] - bic['psnr_y']:+.2f})  LPIPS {v['lpips']:.4f}  {v['seconds']:.3f} s{mark}")
    name = spec.info.get("name")
    write_json(Path(a.out), {"checkpoint": name, "factors": table})
    write_json(Path(a.report), {
        "checkpoint": name,
        "schedule": spec.schedule,
        "rule": RULE.format(tie=a.tie),
        "calibration_set": f"train_hr held-out (every 20th), {len(images)} centre crops {a.crop}x{a.crop}",
        "degradation": degradation.to_dict() if degradation is not None else "bicubic (antialiased)",
        "factors": table,
        "curves": {f"{f:g}": r for f, r in results.items()},
    })
    plot(results, Path(a.plot), T)
    print(json.dumps({"table": table, "json": a.out, "report": a.report, "plot": a.plot}))
    return 0


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
