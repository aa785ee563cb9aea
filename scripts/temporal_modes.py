"""The temporal-mode table: every `--temporal` mode on Vid4 BDx4 (GT) and bikes x2 (no GT), with bicubic.

Vid4: the 4 GT clips, first `--frames` frames, LR = blur sigma 1.6 + x4 down-scale at pixel centres
(quality_bars.bd_x4). Per mode: PSNR-Y, LPIPS, tOF, tLP (x100), E_warp, flicker (means over clips; E_warp and
flicker with flow on GT), seconds per frame and the flow share (flow + warping over model time). bikes.mp4 x2:
E_warp and flicker only (flow on the bicubic up-sampled input). Prints the table and the ratios of the issue's
bars, writes `table.json` and a crop strip (`strip.png`: a crop of consecutive frames per mode, and the
amplified difference between each frame and its motion-compensated predecessor) into --out.

`--data holdout` runs the same table on the training pool's held-out images made into clips of known motion
(upsr_video.eval.motion_clips: pans of 0.25-3 LR px per frame and a sprite crossing against them, same BDx4
degradation) and applies the default-mode rule (`choose`); Vid4 and bikes only report. `--anchor 0.3,0.4,0.5,0.7`
sweeps the anchoring strength of the recurrent modes.

    python scripts/temporal_modes.py --checkpoint checkpoints/upsr-small-video.safetensors
    python scripts/temporal_modes.py --data holdout --anchor 0.3,0.4,0.5,0.7 --checkpoint checkpoints/upsr-small-video.safetensors
    python scripts/temporal_modes.py --flow-presets   # the flow estimator's accuracy/cost measurement only
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from holdout_choice import holdout_images  # noqa: E402
from quality_bars import SHARED, VID4, bd_x4, bicubic, vid4_clips  # noqa: E402

from upsr_video.checkpoint import default_checkpoint_path, load_pipeline  # noqa: E402
from upsr_video.eval.compare import evaluate, read_frames, run_temporal  # noqa: E402
from upsr_video.eval.flow import dis_flow as hr_flow, make_dis, warp as np_warp  # noqa: E402
from upsr_video.eval.lpips_alex import load_lpips  # noqa: E402
from upsr_video.eval.motion_clips import HOLDOUT_MOTIONS, MotionSpec, fit_orientation, moving_clip  # noqa: E402
from upsr_video.process import use_threads  # noqa: E402
from upsr_video.startstep import resolve_start  # noqa: E402
from upsr_video.temporal import MODES, TemporalOptions  # noqa: E402
from upsr_video.upscale import cuts_of_frames  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("psnr_y", "lpips", "tof", "tlpips", "e_warp", "flicker")
COST_BAR = "flow + warp <= 15% of model time"


def flow_presets() -> None:
    """End-point error of LR flow estimators on the held-out clips of known motion (exact ground truth: the pan
    everywhere but the sprite, the sprite's own velocity inside it; pixels near the sprite's edge and the border
    left out), and the cost per pair at Vid4's LR size (144x180, from the largest held-out image)."""
    motions = list(holdout_motions())
    clips = []
    for _, im, other, spec in motions:
        gt = moving_clip(im, other, spec, 10)
        sprite = [np.any(g != b, -1) for g, b in zip(gt, moving_clip(im, np.zeros_like(other), spec, 10))]
        clips.append((spec, [cv2.cvtColor(bd_x4(f), cv2.COLOR_RGB2GRAY) for f in gt], sprite))
    big = max((im for _, im, _, _ in motions), key=lambda im: im.shape[0] * im.shape[1])
    timing = [cv2.cvtColor(bd_x4(f), cv2.COLOR_RGB2GRAY)
              for f in moving_clip(big, motions[0][1], MotionSpec((4, 1), (-6, 2), size=(576, 720)), 6)]
    ring = np.ones((5, 5), np.uint8)

    def at_lr(mask, shape):
        return cv2.resize(mask.astype(np.uint8), shape[::-1], interpolation=cv2.INTER_AREA) > 0

    presets = {"zero": None, "dis-ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
               "dis-fast": cv2.DISOPTICAL_FLOW_PRESET_FAST, "dis-medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
               "dis-fine (make_dis(0))": "fine", "farneback": "farneback"}
    for name, p in presets.items():
        def flow(a, b):
            if p is None:
                return np.zeros(a.shape + (2,), np.float32)
            if p == "farneback":
                return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
            return (make_dis(0) if p == "fine" else cv2.DISOpticalFlow_create(p)).calc(a, b, None)

        bg, sp = [], []
        for spec, lr, sprite in clips:
            for i in range(1, len(lr)):
                f = flow(lr[i], lr[i - 1])  # on frame i's grid, into frame i-1
                near = cv2.dilate(at_lr(sprite[i] | sprite[i - 1], lr[i].shape).astype(np.uint8), ring) > 0
                near[:3], near[-3:], near[:, :3], near[:, -3:] = True, True, True, True
                bg.append(float(np.linalg.norm(f - np.float32(spec.camera) / 4, axis=-1)[~near].mean()))
                inside = cv2.erode(at_lr(sprite[i], lr[i].shape).astype(np.uint8), ring) > 0
                if inside.sum() > 20:
                    sp.append(float(np.linalg.norm(f + np.float32(spec.sprite_velocity) / 4, axis=-1)[inside].mean()))
        secs = []
        for _ in range(3):
            for i in range(1, len(timing)):
                t0 = time.perf_counter()
                flow(timing[i], timing[i - 1])
                secs.append(time.perf_counter() - t0)
        print(f"{name:32s} EPE background {np.mean(bg):.3f}  sprite {np.mean(sp):.3f} LR px   "
              f"{1000 * np.median(secs):6.2f} ms per 180x144 pair", flush=True)


def run_modes(pipe, lr, size, cuts, start, configs: dict) -> tuple[dict, dict, dict]:
    """configs: {label: TemporalOptions}. Outputs (with bicubic), seconds per frame and flow share per label."""
    outs, secs, share = {"bicubic": [bicubic(f, size) for f in lr]}, {}, {}
    for label, opts in configs.items():
        t0 = time.perf_counter()
        outs[label], runner = run_temporal(opts, lr, size, pipe, cuts, start)
        secs[label] = (time.perf_counter() - t0) / len(lr)
        s = runner.seconds
        share[label] = (s["flow"] + s["warp"]) / s["model"]
    return outs, secs, share


def mode_configs(modes: list[str], anchors: list[float], seed: int) -> dict:
    """One TemporalOptions per mode, and per anchor strength for the anchored modes (labels `mode a=0.5` when
    more than one strength is swept)."""
    out = {}
    for m in modes:
        if m in ("recurrent", "flow-recurrent") and len(anchors) > 1:
            out.update({f"{m} a={a:g}": TemporalOptions(m, seed=seed, anchor=a) for a in anchors})
        else:
            out[m] = TemporalOptions(m, seed=seed, anchor=anchors[0])
    return out


def holdout_motions():
    """(name, image, sprite source, MotionSpec) per held-out training-pool image (holdout_choice.holdout_images):
    the motions of upsr_video.eval.motion_clips.HOLDOUT_MOTIONS in turn, the sprite cut from the next image."""
    ims = holdout_images()
    names, pics = list(ims), list(ims.values())
    for i, im in enumerate(pics):
        spec = fit_orientation(HOLDOUT_MOTIONS[i % len(HOLDOUT_MOTIONS)], im.shape[:2])
        yield names[i].removesuffix("_SRF_4_HR"), im, pics[(i + 1) % len(pics)], spec


def holdout_clips(frames: int) -> dict:
    """The held-out clips of known motion (holdout_motions), LR by the Vid4 bars' degradation (bd_x4).
    {name: (lr, gt)}."""
    out = {}
    for name, im, other, spec in holdout_motions():
        gt = moving_clip(im, other, spec, frames)
        out[name] = ([bd_x4(f) for f in gt], gt)
    return out


def choose(ratios: dict) -> str:
    """The default-mode rule (applied to held-out clips only): the configuration that passes the most of the
    issue's quality bars (tOF, tLP, E_warp, PSNR-Y within 0.2 dB, LPIPS within 1.05x of the best); among equals
    an unanchored mode first (its segments match an uninterrupted run bit for bit, which the Ray and resume paths
    promise; anchored modes only to >= 50 dB), then the lowest E_warp. The cost bar (flow share) is measured by
    benchmarks/temporal_cost.py at Vid4's size and reported, not ranked here."""
    return min(ratios, key=lambda m: (-sum(ok for k, ok in ratios[m]["bars"].items() if k != COST_BAR), "recurrent" in m,
                                      ratios[m]["e_warp_vs_independent"] or 1.0))


def strip(outs: dict, gt: list[np.ndarray], path: Path, crop_frac=0.25) -> None:
    """Rows: methods; columns: a crop of consecutive frames, then |O_t - W(O_{t+1})| x 4 (motion-compensated
    change, flow on GT) for the first pair: texture that sticks to the screen or flickers shows there."""
    h, w = gt[0].shape[:2]
    frames = [min(len(gt) - 1, len(gt) // 2 - 1 + k) for k in range(3)]  # the middle three (4, 5, 6 of 10)
    ch, cw = int(h * crop_frac), int(w * crop_frac)
    y, x = h // 2 - ch // 2, w // 2 - cw // 2
    t0, t1 = frames[0], frames[1]
    fl = hr_flow(cv2.cvtColor(gt[t0], cv2.COLOR_RGB2GRAY), cv2.cvtColor(gt[t1], cv2.COLOR_RGB2GRAY))
    rows = []
    for name, seq in [*outs.items(), ("GT", gt)]:
        tiles = [seq[t][y : y + ch, x : x + cw] for t in frames]
        diff = np.abs(np_warp(seq[t1].astype(np.float32), fl) - seq[t0].astype(np.float32)) * 4
        tiles.append(np.clip(diff, 0, 255).astype(np.uint8)[y : y + ch, x : x + cw])
        row = np.concatenate(tiles, 1)
        cv2.putText(row, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(default_checkpoint_path()))
    ap.add_argument("--data", choices=("vid4", "holdout"), default="vid4",
                    help="vid4: the test clips (report only); holdout: held-out pool images with known motion (choose)")
    ap.add_argument("--steps", default="auto", help="denoiser calls: auto (the calibrated start step) or N")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--anchor", default=str(TemporalOptions.anchor),
                    help="recurrent anchoring strength; a comma list sweeps it for the anchored modes")
    ap.add_argument("--frames", type=int, default=10, help="frames per clip")
    ap.add_argument("--clips", default=None, help="Vid4 clips (default: all four) or held-out clip names")
    ap.add_argument("--bikes-frames", type=int, default=20, help="bikes.mp4 frames with --data vid4 (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lpips-weights", default=os.environ.get("UPSR_LPIPS_WEIGHTS", str(SHARED / "weights/lpips_alex_v0.1.safetensors")))
    ap.add_argument("--out", default=None, help="folder for table.json and strip.png")
    ap.add_argument("--flow-presets", action="store_true", help="only measure the LR flow estimators")
    a = ap.parse_args(argv)
    use_threads(a.threads)  # torch and OpenCV, as `upscale --threads`
    if a.flow_presets:
        flow_presets()
        return 0
    anchors = [float(x) for x in a.anchor.split(",") if x]
    configs = mode_configs([m for m in a.modes.split(",") if m], anchors, a.seed)
    labels = list(configs)
    steps = a.steps if a.steps == "auto" else int(a.steps)
    spec, pipe = load_pipeline(a.checkpoint)
    lp = load_lpips(a.lpips_weights)
    ck = Path(a.checkpoint).resolve()
    res: dict = {"checkpoint": str(ck.relative_to(ROOT)) if ck.is_relative_to(ROOT) else ck.name, "data": a.data,
                 "steps": a.steps, "anchor": anchors, "frames": a.frames, "seed": a.seed}
    start = resolve_start(spec, 4.0, steps)
    res["start_step"] = start
    if a.data == "vid4":
        clips = vid4_clips(lambda gt: [bd_x4(f) for f in gt], a.frames, a.clips.split(",") if a.clips else VID4)
    else:
        clips = holdout_clips(a.frames)
        if a.clips:
            clips = {k: clips[k] for k in a.clips.split(",")}
    per_clip: dict[str, list[dict]] = {}
    secs_all: dict[str, list[float]] = {}
    shares: dict[str, list[float]] = {}
    for i, (clip, (lr, gt)) in enumerate(clips.items()):
        outs, secs, share = run_modes(pipe, lr, gt[0].shape[:2], [0], start, configs)
        rows, _ = evaluate(outs, lr, gt, [0], 4, lp, secs)
        for r in rows:
            per_clip.setdefault(r["method"], []).append({"clip": clip, **r})
            print(f"  {clip:18s} {r['method']:20s} " + "  ".join(f"{k} {r[k]:.5g}" for k in METRICS), flush=True)
        for m in labels:
            secs_all.setdefault(m, []).append(secs[m])
            shares.setdefault(m, []).append(share[m])
        if a.out and (clip == "calendar" or (a.data == "holdout" and i == 0)):
            strip(outs, gt, Path(a.out) / "strip.png")
    table = {m: {k: float(np.mean([r[k] for r in rows])) for k in METRICS} for m, rows in per_clip.items()}
    for m in labels:
        table[m]["s_per_frame"] = float(np.mean(secs_all[m]))
        table[m]["flow_share"] = float(np.mean(shares[m]))
    res["table"], res["per_clip"] = table, per_clip
    if a.data == "vid4" and a.bikes_frames:
        frames = read_frames(SHARED / "data/video/bikes.mp4", a.bikes_frames)
        size = (frames[0].shape[0] * 2, frames[0].shape[1] * 2)
        cuts = cuts_of_frames(frames)
        bstart = resolve_start(spec, 2.0, steps)
        outs, secs, share = run_modes(pipe, frames, size, cuts, bstart, configs)
        rows, _ = evaluate(outs, frames, None, cuts, 2, None, secs)
        res["bikes"] = {r["method"]: {"e_warp": r["e_warp"], "flicker": r["flicker"],
                                      **({"s_per_frame": secs[r["method"]], "flow_share": share[r["method"]]}
                                         if r["method"] in secs else {})} for r in rows}
        res["bikes_cuts"], res["bikes_start_step"] = cuts, bstart
    b, ind = table["bicubic"], table.get("independent")
    best_psnr = max(table[m]["psnr_y"] for m in labels)
    best_lp = min(table[m]["lpips"] for m in labels)
    ratios = {}
    for m in labels:
        v = table[m]
        ratios[m] = {"tof_vs_bicubic": v["tof"] / b["tof"], "tlp_vs_bicubic": v["tlpips"] / b["tlpips"],
                     "e_warp_vs_independent": v["e_warp"] / ind["e_warp"] if ind else None,
                     "psnr_below_best": best_psnr - v["psnr_y"], "lpips_vs_best": v["lpips"] / best_lp}
        if "bikes" in res and "independent" in res["bikes"]:
            ratios[m]["bikes_e_warp_vs_independent"] = res["bikes"][m]["e_warp"] / res["bikes"]["independent"]["e_warp"]
        r = ratios[m]
        r["bars"] = {"tof <= 0.9x bicubic": r["tof_vs_bicubic"] <= 0.9, "tLP <= 0.4x bicubic": r["tlp_vs_bicubic"] <= 0.4,
                     "E_warp <= 0.8x independent": r["e_warp_vs_independent"] is not None and r["e_warp_vs_independent"] <= 0.8,
                     "PSNR-Y within 0.2 dB of best": r["psnr_below_best"] <= 0.2, "LPIPS <= 1.05x best": r["lpips_vs_best"] <= 1.05,
                     COST_BAR: table[m]["flow_share"] <= 0.15}
    res["ratios"] = ratios
    where = f"Vid4 BDx4 {a.frames} frames x {len(clips)} clips" if a.data == "vid4" else \
        f"held-out pool clips (known motion, BDx4) {a.frames} frames x {len(clips)}"
    print(f"\ncheckpoint {res['checkpoint']}, steps {a.steps} (start step {start}), anchor {a.anchor}, {where}")
    print("| mode | PSNR-Y | LPIPS | tOF | tLP | E_warp | flicker | s/frame | flow share | bikes E_warp | bikes flicker |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for m in ["bicubic", *labels]:
        v, bk = table[m], res.get("bikes", {}).get(m, {})
        print(f"| {m} | {v['psnr_y']:.3f} | {v['lpips']:.4f} | {v['tof']:.4f} | {v['tlpips']:.3f} | {v['e_warp']:.6f} | "
              f"{v['flicker']:.5f} | {v.get('s_per_frame', float('nan')):.2f} | {v.get('flow_share', float('nan')):.3f} | "
              f"{bk.get('e_warp', float('nan')):.7f} | {bk.get('flicker', float('nan')):.5f} |")
    print()
    for m in labels:
        r = ratios[m]
        print(f"{m:20s} tOF/bicubic {r['tof_vs_bicubic']:.3f}  tLP/bicubic {r['tlp_vs_bicubic']:.3f}  E_warp/independent "
              f"{r['e_warp_vs_independent'] or float('nan'):.3f}  PSNR below best {r['psnr_below_best']:.3f} dB  "
              f"LPIPS/best {r['lpips_vs_best']:.3f}  bars " + ", ".join(f"{k}: {'PASS' if ok else 'FAIL'}" for k, ok in r["bars"].items()))
    if a.data == "holdout" and ind:
        res["choice"] = choose(ratios)
        print(f"\nchoice by the default-mode rule (most quality bars passed, then unanchored, then lowest E_warp): {res['choice']}")
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.json").write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
