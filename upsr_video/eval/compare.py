"""Run several up-scaling methods on the same clip and measure fidelity and temporal stability.

Methods: bicubic, lanczos, g alone, UPSR in every temporal mode (`upsr-<mode>`, see `upsr_video.temporal`), and
UPSR with UNW off (b_u = 1: ResShift-style isotropic noise, shared noise). All methods see the same LR frames and
the same scene cuts; frames stay in memory (clips for evaluation are short).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch

from ..diffusion.unw import UNWConfig
from ..pipeline import UPSRPipeline
from ..temporal import MODES, TemporalOptions, TemporalUPSR
from .fidelity import psnr_y, ssim_y
from .sr_bench import bicubic_downscale, to_tensor, to_uint8

UPSR_METHODS = [f"upsr-{m}" for m in MODES]
ALL_METHODS = ["bicubic", "lanczos", "g", *UPSR_METHODS, "unw-off"]


def read_frames(src: str | Path, max_frames: Optional[int] = None) -> list[np.ndarray]:
    """RGB uint8 frames from a folder of images (sorted by name) or a video file."""
    src = Path(src)
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
        files = files[:max_frames] if max_frames else files
        if not files:
            raise FileNotFoundError(f"no image frames in {src}")
        return [cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in files]
    from ..video import iter_frames

    out: list[np.ndarray] = []
    for frames, _ in iter_frames(str(src), 0, max_frames, batch_size=8):
        out.extend(list(frames))
    return out


def downscale(frames: list[np.ndarray], scale: int) -> list[np.ndarray]:
    return [bicubic_downscale(f[: f.shape[0] // scale * scale, : f.shape[1] // scale * scale], scale) for f in frames]


def shot_starts(cuts: list[int], n: int) -> list[int]:
    cs = sorted(set([0] + list(cuts)))
    return [max(c for c in cs if c <= i) for i in range(n)]


def run_temporal(opts: TemporalOptions, lr: list[np.ndarray], size: tuple[int, int], pipe: UPSRPipeline, cuts: list[int],
                 start_step: Optional[int] = None) -> tuple[list[np.ndarray], TemporalUPSR]:
    """UPSR output frames of one temporal mode, as `upscale` makes them (its tiles), and the runner (its `seconds`
    split flow / warp / model)."""
    from ..process import UpscaleOptions, auto_tiles

    shots = shot_starts(cuts, len(lr))
    runner = TemporalUPSR(pipe, opts, size, start_step, auto_tiles(pipe, UpscaleOptions(), size, lr[0].shape[:2]))
    return [to_uint8(runner.push(i, to_tensor(f).to(pipe.device), shots[i])) for i, f in enumerate(lr)], runner


def run_method(name: str, lr: list[np.ndarray], size: tuple[int, int], pipe: Optional[UPSRPipeline], cuts: list[int],
               seed: int = 0, start_step: Optional[int] = None, anchor: float = TemporalOptions.anchor
               ) -> tuple[list[np.ndarray], float]:
    """Output frames (H, W = size) and seconds per frame. The UPSR methods run what `upscale` runs: diffusion at
    `size` from `start_step` (startstep.resolve_start; None: full sampling) with the CLI's tiles."""
    h, w = size
    t0 = time.perf_counter()
    if name in ("bicubic", "lanczos"):
        interp = cv2.INTER_CUBIC if name == "bicubic" else cv2.INTER_LANCZOS4
        out = [cv2.resize(f, (w, h), interpolation=interp) for f in lr]
        return out, (time.perf_counter() - t0) / len(lr)
    if pipe is None:
        raise ValueError(f"method {name} needs a checkpoint")
    if name == "g":
        out = []
        with torch.no_grad():
            for f in lr:
                _, g = pipe.condition(to_tensor(f).to(pipe.device), (h, w))
                out.append(to_uint8(g))
        return out, (time.perf_counter() - t0) / len(lr)
    p, mode = pipe, name.removeprefix("upsr-")
    if name == "unw-off":
        p = UPSRPipeline(pipe.denoiser, pipe.aux, pipe.schedule.cfg, UNWConfig(b_u=1.0, psi_max=pipe.unw.psi_max), pipe.device)
        mode = "shared"
    elif name not in UPSR_METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(ALL_METHODS)}")
    out, _ = run_temporal(TemporalOptions(mode, seed=seed, anchor=anchor), lr, (h, w), p, cuts, start_step)
    return out, (time.perf_counter() - t0) / len(lr)


def evaluate(outputs: dict[str, list[np.ndarray]], lr: list[np.ndarray], gt: Optional[list[np.ndarray]], cuts: list[int],
             scale: float, lpips_model=None, seconds: Optional[dict] = None) -> tuple[list[dict], dict]:
    """Table rows (one per method) and per-frame curves {metric: {method: values}}."""
    from .temporal import flicker, tlpips, tof, warping_error

    h, w = next(iter(outputs.values()))[0].shape[:2]
    # flow on the input up-sampled to the output size (or on GT when there is one)
    ref = gt if gt is not None else [cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC) for f in lr]
    cutset = set(c for c in cuts if c > 0)
    rows, curves = [], {"psnr_y": {}, "e_warp": {}}
    shave = int(np.ceil(scale))
    for name, frames in outputs.items():
        row = {"method": name}
        ew, per_pair = warping_error(frames, ref, cutset)
        row["e_warp"] = float(ew)
        curves["e_warp"][name] = [float(x) for x in per_pair]
        row["flicker"] = float(flicker(frames, ref, cutset))
        if gt is not None:
            ps = [psnr_y(o, g, shave) for o, g in zip(frames, gt)]
            row["psnr_y"] = float(np.mean(ps))
            row["ssim_y"] = float(np.mean([ssim_y(o, g, shave) for o, g in zip(frames, gt)]))
            curves["psnr_y"][name] = [float(x) for x in ps]
            if lpips_model is not None:
                with torch.no_grad():
                    row["lpips"] = float(np.mean([float(lpips_model(to_tensor(o), to_tensor(g)).mean()) for o, g in zip(frames, gt)]))
                row["tlpips"] = float(tlpips(gt, frames, lpips_model, cutset))
            row["tof"] = float(tof(gt, frames, cutset))
        if seconds and name in seconds:
            row["seconds_per_frame"] = float(seconds[name])
        rows.append(row)
    return rows, curves


def write_tables(out_dir: str | Path, rows: list[dict], curves: dict) -> dict:
    """JSON + CSV table and per-frame curve plots."""
    from .plots import plot_per_frame, write_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "table.json", "csv": out / "table.csv"}
    write_table(rows, files["json"], files["csv"])
    for metric, per in curves.items():
        if per:
            files[f"{metric}_plot"] = out / f"per_frame_{metric}.png"
            plot_per_frame(per, metric, files[f"{metric}_plot"])
    return {k: str(v) for k, v in files.items()}


def write_report(out_dir: str | Path, rows: list[dict], curves: dict, outputs: dict[str, list[np.ndarray]],
                 gt: Optional[list[np.ndarray]], lr: list[np.ndarray], fps: float = 10.0) -> dict:
    """JSON + CSV table, per-frame curves, a bar chart, an image grid with crops and a side-by-side preview video."""
    from .plots import image_grid, plot_bars

    out = Path(out_dir)
    files: dict = {k: Path(v) for k, v in write_tables(out, rows, curves).items()}
    metrics = [m for m in ("psnr_y", "lpips", "e_warp", "tof", "tlpips", "flicker") if all(m in r for r in rows)]
    files["bars"] = out / "bars.png"
    plot_bars({r["method"]: {m: r[m] for m in metrics} for r in rows}, metrics, files["bars"])
    mid = len(lr) // 2
    imgs = {k: v[mid] for k, v in outputs.items()}
    if gt is not None:
        imgs["GT"] = gt[mid]
    h, w = imgs[next(iter(imgs))].shape[:2]
    crop = (w // 2 - w // 8, h // 2 - h // 8, w // 4, h // 4)
    files["grid"] = out / "grid.png"
    image_grid(imgs, crop, files["grid"])
    files["preview"] = out / "side_by_side.mp4"
    _preview_video(outputs, files["preview"], fps)
    return {k: str(v) for k, v in files.items()}


def _preview_video(outputs: dict[str, list[np.ndarray]], path: Path, fps: float) -> None:
    """Methods side by side (each downsized so the strip stays under 1920 px wide), labelled."""
    from fractions import Fraction

    from ..video import VideoWriter

    names = list(outputs)
    h, w = outputs[names[0]][0].shape[:2]
    s = min(1.0, 1920 / (w * len(names)))
    tw, th = max(2, int(w * s) // 2 * 2), max(2, int(h * s) // 2 * 2)
    tb = Fraction(1, int(round(fps)))
    with VideoWriter(str(path), tw * len(names), th, tb, crf=20, preset="veryfast") as wr:
        for i in range(len(outputs[names[0]])):
            tiles = []
            for n in names:
                f = cv2.resize(outputs[n][i], (tw, th), interpolation=cv2.INTER_AREA)
                cv2.putText(f, n, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
                tiles.append(f)
            wr.write(np.concatenate(tiles, axis=1), i)
