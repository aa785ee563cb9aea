"""The default model's quality bars, all on the CPU, every ratio against bicubic measured in the same run.

    python scripts/quality_bars.py                       # the bundled default, every section
    python scripts/quality_bars.py --checkpoint runs/upsr-video/model.safetensors --only vid4,set14 --json out.json
    python scripts/quality_bars.py --ablation A B C D    # Set14 x4 table of four checkpoints (UNW / g-cond on/off)

Sections (--only):
  vid4      Vid4 GT (4 clips, first 10 frames), LR = Gaussian blur sigma 1.6 (13x13) + x4 at pixel centres;
            UPSR through the shipped video path (the default --temporal mode, calibrated start)
  web       the same GT down-scaled x2 (area), encoded as a clip with H.264 (libx264 CRF 26, yuv420p), decoded, x2
  set14     Set14 x4 (the set's LR) with LPIPS; x2 and x3 with LR made by antialiased bicubic
  denoise   Set14 x4: start from the forward marginal of the ground truth at each step t vs from g at t
  seeds     Set14 x4: mean |difference| (grey levels) between seeds 0 and 1, all pixels and where w_u > 0.8,
            at the shipped start step and at full sampling
  cost      `upsr-video upscale` of a 720p clip (8 frames of cockatoo) to --target 1080p vs the same frames
            down-scaled to 480x270 and up-scaled to 1080p: seconds per frame, median of --repeats runs

Metrics: PSNR-Y with ceil(scale) pixels shaved, LPIPS-alex v0.1 (the shared weights). Bicubic = torch bicubic
(align_corners False), the y0 of the model. Exit code 0 only when every bar of the sections run passes.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from upsr_video.checkpoint import default_checkpoint_path, load_pipeline
from upsr_video.diffusion.sampler import reverse
from upsr_video.eval.compare import read_frames, run_method
from upsr_video.eval.fidelity import psnr_y
from upsr_video.eval.lpips_alex import load_lpips
from upsr_video.eval.sr_bench import load_pairs, to_tensor, to_uint8
from upsr_video.process import use_threads
from upsr_video.startstep import resolve_start
from upsr_video.temporal import TemporalOptions
from upsr_video.tiling import crop_to, pad_to_multiple

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VID4 = ("calendar", "city", "foliage", "walk")
SECTIONS = ("vid4", "web", "set14", "denoise", "seeds", "cost")


# -- degradations of the bars (independent of training/) ---------------------------------------------


def bd_x4(frame: np.ndarray) -> np.ndarray:
    """Gaussian blur sigma 1.6 (13x13, reflect-101), then every 4th pixel sampled at pixel centres (the mean
    of HR pixels 4j+1 and 4j+2 in each direction: bilinear at the LR centre)."""
    blur = cv2.GaussianBlur(frame.astype(np.float32), (13, 13), 1.6, borderType=cv2.BORDER_REFLECT_101)
    t = torch.from_numpy(blur).permute(2, 0, 1)[None]
    h, w = frame.shape[:2]
    lr = F.interpolate(t, size=(h // 4, w // 4), mode="bilinear", align_corners=False)
    return lr[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


def h264_round_trip(frames: list[np.ndarray], crf: int = 26) -> list[np.ndarray]:
    """Encode the frames as one H.264 clip (libx264, CRF, yuv420p, 25 fps) in memory and decode them back."""
    buf = io.BytesIO()
    h, w = frames[0].shape[:2]
    with av.open(buf, "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=25, options={"crf": str(crf)})
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        for f in frames:
            out.mux(st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(st.encode(None))
    buf.seek(0)
    with av.open(buf) as inp:
        dec = [fr.to_ndarray(format="rgb24") for fr in inp.decode(video=0)]
    if len(dec) != len(frames):
        raise RuntimeError(f"H.264 round trip returned {len(dec)} frames for {len(frames)}")
    return dec


def bicubic(lr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return to_uint8(F.interpolate(to_tensor(lr), size=size, mode="bicubic", align_corners=False))


# -- scoring -------------------------------------------------------------------------------------------


def lp(model, a: np.ndarray, b: np.ndarray) -> float:
    with torch.no_grad():
        return float(model(to_tensor(a), to_tensor(b)).mean())


def frame_scores(outs: list[np.ndarray], gts: list[np.ndarray], shave: int, lpips_model) -> dict:
    return {"psnr_y": float(np.mean([psnr_y(o, g, shave) for o, g in zip(outs, gts)])),
            "lpips": float(np.mean([lp(lpips_model, o, g) for o, g in zip(outs, gts)]))}


def video_section(name: str, clips: dict, scale: int, spec, pipe, lpips_model, seed: int, steps) -> dict:
    """clips: {clip: (lr frames, gt frames)} -> {method: mean scores over clips}."""
    acc: dict[str, list[dict]] = {}
    start = resolve_start(spec, float(scale), steps)
    for clip, (lr, gt) in clips.items():
        size = gt[0].shape[:2]
        outs = {"bicubic": [bicubic(f, size) for f in lr]}
        outs["g"] = run_method("g", lr, size, pipe, [0], seed)[0]
        if pipe.is_diffusion:
            outs["upsr"] = run_method(f"upsr-{TemporalOptions.mode}", lr, size, pipe, [0], seed, start)[0]
        for m, o in outs.items():
            s = frame_scores(o, gt, scale, lpips_model)
            acc.setdefault(m, []).append(s)
            print(f"  {name} {clip:9s} {m:8s} PSNR-Y {s['psnr_y']:7.3f}  LPIPS {s['lpips']:.4f}", flush=True)
    return {m: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} for m, rows in acc.items()}


def vid4_clips(make_lr, frames: int = 10, clips=VID4) -> dict:
    """{clip: (LR frames, GT frames)}: the first `frames` GT frames cropped to a multiple of 4, LR by make_lr."""
    out = {}
    for clip in clips:
        gt = read_frames(SHARED / "data/vid4/GT" / clip, frames)
        gt = [np.ascontiguousarray(f[: f.shape[0] // 4 * 4, : f.shape[1] // 4 * 4]) for f in gt]
        out[clip] = (make_lr(gt), gt)
    return out


def web_lr(gt: list[np.ndarray], factor: float = 2) -> list[np.ndarray]:
    """The web bar's LR: area down-scale by `factor` (x2 for the bar), H.264 at CRF 26, decoded."""
    small = [cv2.resize(f, (round(f.shape[1] / factor), round(f.shape[0] / factor)), interpolation=cv2.INTER_AREA)
             for f in gt]
    return h264_round_trip(small, 26)


def image_method(pipe, spec, scale: float, seed: int, steps):
    start = resolve_start(spec, scale, steps)

    def run(lr: np.ndarray, size) -> np.ndarray:
        with torch.no_grad():
            return to_uint8(pipe(to_tensor(lr), seed=seed, out_size=size, start_step=start))

    return run


def g_only(pipe):
    def run(lr: np.ndarray, size) -> np.ndarray:
        with torch.no_grad():
            return to_uint8(pipe.condition(to_tensor(lr), size)[1].clamp(-1, 1))

    return run


def image_scores(pairs, fn, scale: float, lpips_model=None) -> dict:
    shave = int(np.ceil(scale))
    ps, lps = [], []
    for p in pairs:
        out = fn(p.lr, p.hr.shape[:2])
        ps.append(psnr_y(out, p.hr, shave))
        if lpips_model is not None:
            lps.append(lp(lpips_model, out, p.hr))
    res = {"psnr_y": float(np.mean(ps))}
    if lps:
        res["lpips"] = float(np.mean(lps))
    return res


def set14_section(spec, pipe, lpips_model, seed, steps) -> dict:
    res = {}
    for scale in (4, 2, 3):
        pairs = load_pairs(SHARED / "data/images/Set14", scale, make_lr=scale != 4)
        use_lp = lpips_model if scale == 4 else None
        rows = {"bicubic": image_scores(pairs, lambda lr, size: bicubic(lr, size), scale, use_lp),
                "g": image_scores(pairs, g_only(pipe), scale, use_lp)}
        if pipe.is_diffusion:
            rows["upsr"] = image_scores(pairs, image_method(pipe, spec, scale, seed, steps), scale, use_lp)
        res[f"x{scale}"] = rows
        for m, r in rows.items():
            print(f"  set14 x{scale} {m:8s} " + "  ".join(f"{k} {v:.4f}" for k, v in r.items()), flush=True)
    return res


def _padded(pipe, lr: np.ndarray, size):
    y0, g = pipe.condition(to_tensor(lr), size)
    w = pipe.weight(y0, g)
    m = pipe.multiple
    return y0, g, w, [pad_to_multiple(z, m)[0] for z in (y0, g, w)]


def denoise_gains(pipe, pairs, seed: int, steps) -> dict:
    """PSNR-Y of the reverse process started at each step t of `steps` from the forward marginal of the ground
    truth vs from g (the same noise for both), averaged over pairs (objects with .lr and .hr)."""
    sched = pipe.schedule
    res = {}
    for t in steps:
        ps_gt, ps_g = [], []
        for i, p in enumerate(pairs):
            scale = p.hr.shape[0] / p.lr.shape[0]
            with torch.no_grad():
                y0, g, w, (y0p, gp, wp) = _padded(pipe, p.lr, p.hr.shape[:2])
                x0p = pad_to_multiple(to_tensor(p.hr), pipe.multiple)[0]
                eps = pipe.noise(y0p.shape, "frame", seed, i)

                def den(x, tt):
                    return pipe.denoiser(x, torch.full((1,), tt, dtype=torch.long), gp, y0p)

                for anchor, acc in ((x0p, ps_gt), (gp, ps_g)):
                    x = sched.q_sample(anchor, y0p, t, eps, wp)
                    out = crop_to(reverse(sched, den, x, y0p, t), y0.shape[-2:])
                    acc.append(psnr_y(to_uint8(out), p.hr, int(np.ceil(scale))))
        res[t] = {"from_gt": float(np.mean(ps_gt)), "from_g": float(np.mean(ps_g))}
    return res


def denoise_section(pipe, seed: int) -> dict:
    """Set14 x4: the denoising gain (from the ground truth's marginal over from g) at every step t."""
    res = denoise_gains(pipe, load_pairs(SHARED / "data/images/Set14", 4), seed, range(pipe.schedule.T))
    for t, r in res.items():
        print(f"  denoise t={t}: from GT marginal {r['from_gt']:.3f}  from g {r['from_g']:.3f}  "
              f"gain {r['from_gt'] - r['from_g']:+.3f} dB", flush=True)
    return res


def seeds_section(spec, pipe, steps) -> dict:
    pairs = load_pairs(SHARED / "data/images/Set14", 4)
    res = {}
    for label, start in (("shipped", resolve_start(spec, 4.0, steps)), ("full", None)):
        diffs, diffs_hi = [], []
        for p in pairs:
            with torch.no_grad():
                lr = to_tensor(p.lr)
                y0, g = pipe.condition(lr, p.hr.shape[:2])
                hi = (pipe.weight(y0, g) > 0.8)[0].any(0).numpy()
                a, b = (to_uint8(pipe.sample(y0, g, pipe.noise(y0.shape, "frame", s), start_step=start)) for s in (0, 1))
            d = np.abs(a.astype(np.float64) - b.astype(np.float64))
            diffs.append(d.mean())
            if hi.any():
                diffs_hi.append(d[hi].mean())
        res[label] = {"start_step": start, "mean_abs_diff": float(np.mean(diffs)), "mean_abs_diff_high_w": float(np.mean(diffs_hi))}
        print(f"  seeds {label} (start {start}): |seed0 - seed1| = {res[label]['mean_abs_diff']:.3f} grey levels, "
              f"where w_u > 0.8: {res[label]['mean_abs_diff_high_w']:.3f}", flush=True)
    return res


def _write_clip(frames: list[np.ndarray], path: Path) -> None:
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=Fraction(20), options={"crf": "12"})
        st.width, st.height, st.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for f in frames:
            out.mux(st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(st.encode(None))


def cost_section(checkpoint: str, repeats: int, threads: int) -> dict:
    frames = read_frames(SHARED / "data/video/cockatoo.mp4", 8)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        _write_clip(frames, d / "in720.mp4")
        _write_clip([cv2.resize(f, (480, 270), interpolation=cv2.INTER_AREA) for f in frames], d / "in270.mp4")
        res = {}
        for _ in range(repeats):
            for name in ("in270", "in720"):
                out = d / f"{name}_out.mp4"
                cmd = [sys.executable, "-m", "upsr_video", "upscale", str(d / f"{name}.mp4"), "--target", "1080p",
                       "-o", str(out), "--overwrite", "--checkpoint", checkpoint, "--threads", str(threads)]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if proc.returncode:
                    raise RuntimeError(f"upscale failed: {proc.stderr.strip()[-500:]}")
                res.setdefault(name, []).append(wall / len(frames))
        med = {k: statistics.median(v) for k, v in res.items()}
        print(f"  cost: 480x270 -> 1080p {med['in270']:.3f} s/frame, 1280x720 -> 1080p {med['in720']:.3f} s/frame, "
              f"ratio {med['in720'] / med['in270']:.3f} (medians of {repeats}, wall time incl. start-up)", flush=True)
        return {"s_per_frame": med, "ratio": med["in720"] / med["in270"], "runs": res}


def bars_of(r: dict) -> dict:
    bars = {}
    if "vid4" in r:
        v = r["vid4"]
        bars["vid4 BDx4: PSNR-Y >= bicubic + 2.0 dB"] = v["upsr"]["psnr_y"] >= v["bicubic"]["psnr_y"] + 2.0
        bars["vid4 BDx4: LPIPS <= 0.45x bicubic"] = v["upsr"]["lpips"] <= 0.45 * v["bicubic"]["lpips"]
    if "web" in r:
        v = r["web"]
        bars["web x2 H.264: PSNR-Y >= bicubic + 1.0 dB"] = v["upsr"]["psnr_y"] >= v["bicubic"]["psnr_y"] + 1.0
        bars["web x2 H.264: LPIPS <= 0.45x bicubic"] = v["upsr"]["lpips"] <= 0.45 * v["bicubic"]["lpips"]
    if "set14" in r:
        s = r["set14"]
        bars["set14 x4: PSNR-Y >= bicubic + 1.0 dB"] = s["x4"]["upsr"]["psnr_y"] >= s["x4"]["bicubic"]["psnr_y"] + 1.0
        bars["set14 x4: LPIPS <= 0.45x bicubic"] = s["x4"]["upsr"]["lpips"] <= 0.45 * s["x4"]["bicubic"]["lpips"]
        for k in ("x2", "x3"):
            bars[f"set14 {k}: PSNR-Y >= bicubic + 1.0 dB"] = s[k]["upsr"]["psnr_y"] >= s[k]["bicubic"]["psnr_y"] + 1.0
    if "denoise" in r:
        d = r["denoise"][0]
        bars["denoiser: from GT marginal at t=0 >= from g + 3 dB"] = d["from_gt"] >= d["from_g"] + 3.0
    if "cost" in r:
        bars["cost: 720p->1080p <= 1.5x 270p->1080p s/frame"] = r["cost"]["ratio"] <= 1.5
    return bars


def ablation(ckpts: list[str], lpips_model, seed: int, steps) -> dict:
    pairs = load_pairs(SHARED / "data/images/Set14", 4)
    names = ["ResShift-style (UNW off, g-cond off)", "UNW on, g-cond off", "UNW off, g-cond on", "UPSR (UNW on, g-cond on)"]
    rows = {"bicubic": image_scores(pairs, lambda lr, size: bicubic(lr, size), 4, lpips_model)}
    for name, ck in zip(names, ckpts):
        spec, pipe = load_pipeline(ck)
        rows[name] = image_scores(pairs, image_method(pipe, spec, 4.0, seed, steps), 4, lpips_model)
    for k, r in rows.items():
        print(f"{k:40s} PSNR-Y {r['psnr_y']:7.3f}  LPIPS {r['lpips']:.4f}")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(default_checkpoint_path()))
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--steps", default="auto", help="denoiser calls (auto = the calibrated start step, as upscale)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="cost section: runs per clip (median)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lpips-weights", default=os.environ.get("UPSR_LPIPS_WEIGHTS", str(SHARED / "weights/lpips_alex_v0.1.safetensors")))
    ap.add_argument("--ablation", nargs=4, metavar="CKPT", help="Set14 x4 table of four checkpoints instead of the bars")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    use_threads(a.threads)  # torch and OpenCV, as `upscale --threads`
    steps = a.steps if a.steps == "auto" else int(a.steps)
    lpips_model = load_lpips(a.lpips_weights)
    if a.ablation:
        rows = ablation(a.ablation, lpips_model, a.seed, steps)
        if a.json:
            Path(a.json).write_text(json.dumps(rows, indent=2))
        return 0
    only = [s for s in a.only.split(",") if s]
    bad = set(only) - set(SECTIONS)
    if bad:
        ap.error(f"unknown sections {sorted(bad)}")
    spec, pipe = load_pipeline(a.checkpoint)
    ck = Path(a.checkpoint).resolve()
    root = Path(__file__).resolve().parents[1]
    r: dict = {"checkpoint": str(ck.relative_to(root)) if ck.is_relative_to(root) else ck.name, "steps": a.steps, "seed": a.seed}
    if "vid4" in only:
        r["vid4"] = video_section("vid4", vid4_clips(lambda gt: [bd_x4(f) for f in gt]), 4, spec, pipe, lpips_model, a.seed, steps)
    if "web" in only:
        r["web"] = video_section("web", vid4_clips(web_lr), 2, spec, pipe, lpips_model, a.seed, steps)
    if "set14" in only:
        r["set14"] = set14_section(spec, pipe, lpips_model, a.seed, steps)
    if "denoise" in only and pipe.is_diffusion:
        r["denoise"] = denoise_section(pipe, a.seed)
    if "seeds" in only and pipe.is_diffusion:
        r["seeds"] = seeds_section(spec, pipe, steps)
    if "cost" in only:
        r["cost"] = cost_section(a.checkpoint, a.repeats, a.threads)
    bars = bars_of(r) if pipe.is_diffusion else {}
    r["bars"] = bars
    print()
    for k, v in bars.items():
        print(f"bar: {k}: {'PASS' if v else 'FAIL'}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(r, indent=2, default=str))
    return 0 if all(bars.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
