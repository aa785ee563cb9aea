"""Quality bars and the ablation table on Set14 x4 (bicubic LR supplied with the set).

    python scripts/eval_quality.py --checkpoint upsr_video/weights/upsr-small-default.safetensors
    python scripts/eval_quality.py --ablation runs/abl-resshift/model.safetensors runs/abl-unw/model.safetensors \
        runs/abl-gcond/model.safetensors runs/abl-upsr/model.safetensors

Prints PSNR-Y (4-px border shaved), SSIM-Y and LPIPS-alex for bicubic, g alone and UPSR (5 steps, fixed
seed), the bars of the training issue, and writes JSON with --json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from upsr_video.checkpoint import default_checkpoint_path, load_pipeline
from upsr_video.eval.lpips_alex import load_lpips
from upsr_video.eval.sr_bench import bicubic_method, load_pairs, score

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def upsr_method(pipe, seed: int, start_step=None):
    def run(lr, size):
        return pipe(lr, seed=seed, out_size=size, start_step=start_step)

    return run


def g_method(pipe):
    def run(lr, size):
        _, g = pipe.condition(lr, size)
        return g.clamp(-1, 1)

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(default_checkpoint_path()))
    ap.add_argument("--set", default=str(SHARED / "data/images/Set14"))
    ap.add_argument("--lpips-weights", default=os.environ.get("UPSR_LPIPS_WEIGHTS", str(SHARED / "weights/lpips_alex_v0.1.safetensors")))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ablation", nargs=4, metavar="CKPT",
                    help="four checkpoints: UNW off/g off (ResShift), UNW on/g off, UNW off/g on, UNW on/g on (UPSR)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    pairs = load_pairs(a.set, 4)
    lp = load_lpips(a.lpips_weights)
    rows = {"bicubic": score(pairs, bicubic_method, 4, lp)["mean"]}
    if a.ablation:
        names = ["ResShift-style (UNW off, g-cond off)", "UNW on, g-cond off", "UNW off, g-cond on", "UPSR (UNW on, g-cond on)"]
        for name, ck in zip(names, a.ablation):
            _, pipe = load_pipeline(ck)
            rows[name] = score(pairs, upsr_method(pipe, a.seed), 4, lp)["mean"]
    else:
        spec, pipe = load_pipeline(a.checkpoint)
        rows["g alone"] = score(pairs, g_method(pipe), 4, lp)["mean"]
        if pipe.is_diffusion:
            rows[f"UPSR ({pipe.schedule.T} steps, seed {a.seed})"] = score(pairs, upsr_method(pipe, a.seed), 4, lp)["mean"]
    bic = rows["bicubic"]
    print(f"{'method':44s} {'PSNR-Y':>8s} {'dPSNR':>7s} {'SSIM-Y':>7s} {'LPIPS':>7s} {'LPIPS/bic':>9s}")
    for k, r in rows.items():
        print(f"{k:44s} {r['psnr_y']:8.3f} {r['psnr_y'] - bic['psnr_y']:+7.3f} {r['ssim_y']:7.4f} {r['lpips']:7.4f} {r['lpips'] / bic['lpips']:9.3f}")
    bars = {}
    if "g alone" in rows:
        bars["g >= bicubic + 1.5 dB"] = rows["g alone"]["psnr_y"] >= bic["psnr_y"] + 1.5
    for k, r in rows.items():
        if k.startswith("UPSR (") and "steps" in k:
            bars["UPSR LPIPS <= 0.85 x bicubic"] = r["lpips"] <= 0.85 * bic["lpips"]
            bars["UPSR PSNR-Y >= bicubic + 0.5 dB"] = r["psnr_y"] >= bic["psnr_y"] + 0.5
    for k, v in bars.items():
        print(f"bar: {k}: {'PASS' if v else 'FAIL'}")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "bars": bars}, indent=2))
    return 0 if all(bars.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
