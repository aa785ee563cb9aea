"""Arbitrary-scale modes compared (the Diff-SR target-resolution issue), and the defaults they decide.

    python scripts/compare_scale_modes.py --json reports/scale_modes.json [--write-defaults]

Modes, for each factor (LR made from HR with the same antialiased bicubic for every method):
  resize     the model at its trained factor (x4), then resized to the target (antialiased bicubic)
  direct     y0 and g at the target size, full sampling from the prior
  truncated  y0 and g at the target size, start step from the shipped calibration table (Diff-SR)
plus bicubic as the baseline. Set5 + Set14 give PSNR-Y (shave = ceil(factor)) and LPIPS-alex; the first
Vid4 calendar GT frames give E_warp (flow on GT, shared noise per shot); seconds per image are medians.
--write-defaults stores, per factor, the fastest mode whose LPIPS is within 1% of the best among those with
PSNR-Y >= bicubic + 0.5 dB (else the best PSNR-Y) in the shipped table (`modes`), which `--resize-mode auto`
then follows. --redecide re-applies that rule to the rows of an earlier --json without recomputing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from upsr_video.checkpoint import default_checkpoint_path, load_pipeline
from upsr_video.eval.fidelity import psnr_y
from upsr_video.eval.lpips_alex import load_lpips
from upsr_video.eval.sr_bench import bicubic_downscale, load_pairs, read_rgb, to_tensor, to_uint8
from upsr_video.eval.temporal import warping_error
from upsr_video.startstep import TABLE_PATH, load_table, lookup
from upsr_video.temporal import TemporalOptions, TemporalUPSR

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODES = ["bicubic", "resize", "direct", "truncated"]


def run_image(pipe, mode: str, lr: torch.Tensor, size, start, seed: int) -> torch.Tensor:
    with torch.no_grad():
        if mode == "bicubic":
            return F.interpolate(lr, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)
        if mode == "resize":
            hr = pipe(lr, seed=seed, start_step=None)
            down = hr.shape[-2] > size[0]
            return F.interpolate(hr, size=size, mode="bicubic", align_corners=False, antialias=down).clamp(-1, 1)
        return pipe(lr, seed=seed, out_size=size, start_step=start if mode == "truncated" else None)


def image_scores(pipe, pairs, factor: float, mode: str, start, lp, seed: int) -> dict:
    ps, ls, secs = [], [], []
    for i, p in enumerate(pairs):
        t0 = time.perf_counter()
        out = to_uint8(run_image(pipe, mode, to_tensor(p.lr), p.hr.shape[:2], start, seed + i))
        secs.append(time.perf_counter() - t0)
        ps.append(psnr_y(out, p.hr, int(np.ceil(factor))))
        with torch.no_grad():
            ls.append(float(lp(to_tensor(out), to_tensor(p.hr)).mean()))
    return {"psnr_y": float(np.mean(ps)), "lpips": float(np.mean(ls)), "seconds": float(np.median(secs))}


def video_ewarp(pipe, gt: list[np.ndarray], factor: float, mode: str, start, seed: int) -> dict:
    if float(factor).is_integer():  # crop so that HR = factor x LR exactly
        h, w = gt[0].shape[:2]
        gt = [f[: int(h // factor * factor), : int(w // factor * factor)] for f in gt]
    size = gt[0].shape[:2]
    lrs = [bicubic_downscale(f, factor) for f in gt]
    outs, secs = [], []
    if mode == "bicubic":
        for lr in lrs:
            t0 = time.perf_counter()
            outs.append(to_uint8(run_image(pipe, "bicubic", to_tensor(lr), size, None, seed)))
            secs.append(time.perf_counter() - t0)
    else:
        lr_h, lr_w = lrs[0].shape[:2]
        model_size = (lr_h * pipe.scale, lr_w * pipe.scale) if mode == "resize" else size
        runner = TemporalUPSR(pipe, TemporalOptions("shared", seed=seed), model_size,
                              size if mode == "resize" else None, start if mode == "truncated" else None)
        for i, lr in enumerate(lrs):
            t0 = time.perf_counter()
            outs.append(to_uint8(runner.push(i, to_tensor(lr), 0)))
            secs.append(time.perf_counter() - t0)
    return {"e_warp": float(warping_error(outs, gt)[0]),
            "psnr_y_video": float(np.mean([psnr_y(o, g, int(np.ceil(factor))) for o, g in zip(outs, gt)])),
            "seconds_per_frame": float(np.median(secs))}


def decide(rows: dict, tie: float = 0.01) -> str:
    """Among modes with PSNR-Y >= bicubic + 0.5 dB, the fastest whose LPIPS is within `tie` (relative) of the best;
    if none qualifies, the best PSNR-Y."""
    bic = rows["bicubic"]["psnr_y"]
    cands = {m: r for m, r in rows.items() if m != "bicubic"}
    ok = {m: r for m, r in cands.items() if r["psnr_y"] >= bic + 0.5}
    if not ok:
        return max(cands, key=lambda m: cands[m]["psnr_y"])
    floor = min(r["lpips"] for r in ok.values())
    near = {m: r for m, r in ok.items() if r["lpips"] <= floor * (1 + tie)}
    return min(near, key=lambda m: near[m]["seconds"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(default_checkpoint_path()))
    ap.add_argument("--factors", default="2,3,4")
    ap.add_argument("--sets", default="Set5,Set14")
    ap.add_argument("--vid4-clip", default="calendar")
    ap.add_argument("--vid4-frames", type=int, default=6)
    ap.add_argument("--lpips-weights", default=os.environ.get("UPSR_LPIPS_WEIGHTS", str(SHARED / "weights/lpips_alex_v0.1.safetensors")))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--write-defaults", action="store_true", help="store the chosen mode per factor in the shipped table")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--redecide", action="store_true", help="re-apply the rule to the rows in --json")
    a = ap.parse_args(argv)
    if a.redecide:
        rep = json.loads(Path(a.json).read_text())
        rep["best_mode"] = {f: decide(rows) for f, rows in rep["rows"].items()}
        Path(a.json).write_text(json.dumps(rep, indent=1))
        if a.write_defaults:
            table = load_table()
            table["modes"] = rep["best_mode"]
            TABLE_PATH.write_text(json.dumps(table, indent=1))
        print(json.dumps({"best_mode": rep["best_mode"]}))
        return 0
    if a.threads:
        torch.set_num_threads(a.threads)
    spec, pipe = load_pipeline(a.checkpoint)
    lp = load_lpips(a.lpips_weights)
    table = load_table()
    clip = sorted((SHARED / "data/vid4/GT" / a.vid4_clip).iterdir())[: a.vid4_frames]
    gt_frames = [read_rgb(p) for p in clip]
    report, modes = {}, {}
    print(f"{'factor':>6s} {'mode':>10s} {'s':>4s} {'PSNR-Y':>7s} {'dPSNR':>6s} {'LPIPS':>6s} {'s/img':>6s} {'E_warp':>8s} {'s/frame':>7s}")
    for f in [float(x) for x in a.factors.split(",")]:
        start = lookup(table, f)
        pairs = [p for s in a.sets.split(",") for p in load_pairs(SHARED / "data/images" / s, f, make_lr=True)]
        rows = {}
        for m in MODES:
            r = image_scores(pipe, pairs, f, m, start, lp, a.seed)
            r.update(video_ewarp(pipe, gt_frames, f, m, start, a.seed))
            r["start_step"] = start if m == "truncated" else (None if m != "bicubic" else "-")
            rows[m] = r
            print(f"x{f:<5g} {m:>10s} {str(r['start_step']):>4s} {r['psnr_y']:7.2f} {r['psnr_y'] - rows['bicubic']['psnr_y']:+6.2f} "
                  f"{r['lpips']:6.3f} {r['seconds']:6.3f} {r['e_warp']:8.5f} {r['seconds_per_frame']:7.3f}", flush=True)
        modes[f"{f:g}"] = decide(rows)
        report[f"{f:g}"] = rows
    print(json.dumps({"best_mode": modes}))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"checkpoint": spec.info.get("name"), "images": a.sets,
                                            "vid4": f"{a.vid4_clip} first {a.vid4_frames} frames", "rows": report,
                                            "best_mode": modes}, indent=1))
    if a.write_defaults:
        table["modes"] = modes
        TABLE_PATH.write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
