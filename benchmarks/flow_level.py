"""What the flow's pyramid level (`motion.FLOW_PIXELS`, `motion.flow_level`) costs and buys on large LR frames.

    python benchmarks/flow_level.py [--lr-size 480x854] [--out-size 1080x1922] [--frames 6] [--levels 0,1,2]
                                    [--checkpoint CKPT] [--threads 2] [--json out.json]

A clip of known motion from a held-out training-pool image (Urban100 img_001, 1024x644: blurred with sigma 0.7,
then shifted by a sub-pixel camera pan per frame with a bicubic resampler) at `--lr-size`. Per DIS level:
1. the flow alone: end-point error against the known pan (LR px, 8 px border left out) over four pans, and the
   median milliseconds per frame pair on one OpenCV thread (a flow thread's cost);
2. end to end (`--frames` > 0): the `flow` temporal mode up-scales `--frames` frames of one pan to `--out-size`
   with the checkpoint at its calibrated start step, with the flow forced to that level, and the known-motion
   warping error is measured: the mean |out_t(x) - out_{t-1}(x + pan)| in grey levels over the interior, the
   previous output brought over by the exact pan (bicubic). The same for `independent` noise (the per-frame
   baseline, whose flow level is irrelevant) and for bicubic up-scaling of the LR frames (the resampler's
   own floor), in the same run. Lower is steadier; a level that moves the noise along a worse flow shows here.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from holdout_choice import holdout_images  # noqa: E402
from upsr_video import motion as mo  # noqa: E402
from upsr_video.checkpoint import default_checkpoint_path, load_pipeline  # noqa: E402
from upsr_video.eval.flow import make_dis  # noqa: E402
from upsr_video.eval.sr_bench import to_tensor  # noqa: E402
from upsr_video.startstep import resolve_start  # noqa: E402
from upsr_video.temporal import TemporalOptions, TemporalUPSR  # noqa: E402

IMAGE = "urban100_img_001_SRF_4_HR"
PANS = [(2.6, 0.8), (-1.3, 1.7), (4.4, 0.0), (0.4, -0.6)]  # LR px per frame (the camera's; content moves by -pan)


def pan_origin(shape: tuple, size: tuple[int, int], pan: tuple[float, float], frames: int) -> tuple[float, float]:
    """The origin (x, y) of pan_clip's path over an image of `shape`. Raises ValueError when the path leaves the
    image (warpAffine would fill the rest with black, where no flow is defined)."""
    ox, oy = 40 + abs(pan[0]) * 4, 40 + abs(pan[1]) * 4
    xs = [ox + pan[0] * t for t in (0, frames - 1)]
    ys = [oy + pan[1] * t for t in (0, frames - 1)]
    if min(xs) < 0 or min(ys) < 0 or max(xs) + size[1] + 2 > shape[1] or max(ys) + size[0] + 2 > shape[0]:
        raise ValueError(f"a {shape[1]}x{shape[0]} image is too small for {frames} frames of "
                         f"{size[1]}x{size[0]} panned by {pan} px per frame")
    return ox, oy


def pan_clip(image: np.ndarray, size: tuple[int, int], pan: tuple[float, float], frames: int) -> list[np.ndarray]:
    """uint8 frames of `size` (H, W): frame t(x) = blurred image(x + origin + t * pan) (see pan_origin)."""
    ox, oy = pan_origin(image.shape, size, pan, frames)
    soft = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.7)
    out = []
    for t in range(frames):
        m = np.float32([[1, 0, ox + pan[0] * t], [0, 1, oy + pan[1] * t]])
        f = cv2.warpAffine(soft, m, (size[1], size[0]), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
        out.append(np.clip(f, 0, 255).round().astype(np.uint8))
    return out


def known_motion_error(frames: list[np.ndarray], shift: tuple[float, float], margin: int = 24) -> float:
    """Mean |f_t(x) - f_{t-1}(x + shift)| (grey levels, all channels) over the interior, f_{t-1} resampled bicubic."""
    h, w = frames[0].shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    errs = []
    for prev, cur in zip(frames, frames[1:]):
        moved = cv2.remap(prev.astype(np.float32), gx + shift[0], gy + shift[1], cv2.INTER_CUBIC)
        d = np.abs(moved - cur.astype(np.float32))[margin:-margin, margin:-margin]
        errs.append(float(d.mean()))
    return statistics.mean(errs)


def flow_only(image: np.ndarray, size: tuple[int, int], levels: list[int]) -> dict:
    clips = {pan: [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in pan_clip(image, size, pan, 4)] for pan in PANS}
    res = {}
    for level in levels:
        epe, ms = [], []
        for pan, grey in clips.items():
            for i in range(1, len(grey)):
                t0 = time.perf_counter()
                fl = make_dis(level).calc(grey[i], grey[i - 1], None)  # on frame i's grid, into frame i-1
                ms.append(1000 * (time.perf_counter() - t0))
                epe.append(float(np.linalg.norm(fl - np.float32(pan), axis=-1)[8:-8, 8:-8].mean()))
        res[level] = {"epe_lr_px": statistics.mean(epe), "ms_per_pair": statistics.median(ms)}
        print(f"level {level}: EPE {res[level]['epe_lr_px']:.3f} LR px, {res[level]['ms_per_pair']:.1f} ms per pair "
              f"(one thread)", flush=True)
    return res


def end_to_end(image, lr_size, out_size, levels, frames, checkpoint) -> dict:
    spec, pipe = load_pipeline(checkpoint)
    pan = PANS[0]
    lr = pan_clip(image, lr_size, pan, frames)
    factor = out_size[1] / lr_size[1]
    start = resolve_start(spec, factor, "auto")
    shift = (pan[0] * out_size[1] / lr_size[1], pan[1] * out_size[0] / lr_size[0])
    to_u8 = lambda t: ((t[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()  # noqa: E731
    bic = [cv2.resize(f, (out_size[1], out_size[0]), interpolation=cv2.INTER_CUBIC) for f in lr]
    res = {"bicubic": {"error": known_motion_error(bic, shift)}}
    runs = [("independent", None)] + [("flow", lv) for lv in levels]
    real_level = mo.flow_level
    try:
        for mode, level in runs:
            mo.flow_level = (lambda h, w, lv=level: lv) if level is not None else real_level
            runner = TemporalUPSR(pipe, TemporalOptions(mode), out_size, start, flow_threads=0)
            outs, t0 = [], time.perf_counter()
            for i, f in enumerate(lr):
                outs += runner.push_batch([i], to_tensor(f).to(pipe.device), [0], [True])
            label = mode if level is None else f"flow level {level}"
            res[label] = {"error": known_motion_error([to_u8(o) for o in outs], shift),
                          "s_per_frame": (time.perf_counter() - t0) / frames,
                          "flow_ms_per_frame": 1000 * runner.seconds["flow"] / (frames - 1)}
    finally:
        mo.flow_level = real_level
    base = res["independent"]["error"]
    print(f"end to end, {frames} frames {lr_size[1]}x{lr_size[0]} -> {out_size[1]}x{out_size[0]}, start step {start}, "
          f"pan {pan} LR px per frame:")
    print("| run | known-motion error (grey levels) | / independent | flow ms per frame | s per frame |\n|---|---|---|---|---|")
    for label, r in res.items():
        print(f"| {label} | {r['error']:.3f} | {r['error'] / base:.3f} | {r.get('flow_ms_per_frame', 0):.0f} | "
              f"{r.get('s_per_frame', 0):.2f} |")
    return {"start_step": start, "pan": pan, "runs": res}


def _size(s: str) -> tuple[int, int]:
    h, w = s.lower().split("x")
    return int(h), int(w)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lr-size", type=_size, default=(480, 854), help="HxW of the LR frames")
    ap.add_argument("--out-size", type=_size, default=(1080, 1922), help="HxW of the output")
    ap.add_argument("--levels", default="0,1,2")
    ap.add_argument("--frames", type=int, default=6, help="end-to-end frames (0: the flow alone)")
    ap.add_argument("--checkpoint", default=str(default_checkpoint_path()))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    image = holdout_images()[IMAGE]
    levels = [int(x) for x in a.levels.split(",")]
    try:  # before any timing: the flow-only clips have 4 frames, the end-to-end one --frames
        for pan in PANS:
            pan_origin(image.shape, a.lr_size, pan, max(4, a.frames))
    except ValueError as e:
        ap.error(str(e))
    cv2.setNumThreads(1)
    print(f"FLOW_PIXELS = {mo.FLOW_PIXELS}: a {a.lr_size[1]}x{a.lr_size[0]} LR frame gets level "
          f"{mo.flow_level(*a.lr_size)}")
    res = {"lr_size": a.lr_size, "out_size": a.out_size, "flow_pixels": mo.FLOW_PIXELS,
           "shipped_level": mo.flow_level(*a.lr_size), "flow": flow_only(image, a.lr_size, levels)}
    if a.frames > 0:
        torch.set_num_threads(a.threads)
        res["end_to_end"] = end_to_end(image, a.lr_size, a.out_size, levels, a.frames, a.checkpoint)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
