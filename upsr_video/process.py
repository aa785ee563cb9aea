"""Up-scaling a video: the plan, the per-segment function, and the local (single-process) driver.

`process_segment` is the one unit of work: decode a frame range (plus context frames) with decord, run
temporally consistent UPSR, encode the range with PyAV to a temporary file renamed into place. The local path
runs it once over the whole video; the Ray pipelines run it on actors over many ranges. Both then call
`video.finalize` to concatenate the parts losslessly and mux audio/subtitles from the original.
"""
from __future__ import annotations

import bisect
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .checkpoint import ModelSpec, load_pipeline
from .pipeline import TileOptions, UPSRPipeline
from .targets import Geometry, output_geometry, place
from .temporal import TemporalOptions, TemporalUPSR


class UpscaleError(Exception):
    """A user-facing failure (one line)."""


@dataclass
class UpscaleOptions:
    target: Optional[str] = "1080p"
    scale: Optional[float] = None
    fit: str = "pad"
    checkpoint: Optional[str] = None  # None: the bundled default
    seed: int = 0
    steps: int | str = "auto"  # "auto" (calibrated per scale factor) | N denoiser calls, 1..T (T: full sampling)
    temporal: str = "flow"  # one of temporal.MODES
    anchor: float = 0.5  # recurrent modes: weight of the warped previous output in the start anchor
    window: int = 4
    decay: float = 0.6
    scene_threshold: Optional[float] = None
    tile: Optional[int] = None  # LR pixels; None: automatic bound
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 8  # frames decoded per batch
    fps: Optional[str] = None  # frame rate for a video whose timestamps are missing or all equal (None: declared)
    streams: str = "keep"  # keep | convert | drop-unsupported: streams the output container cannot hold
    codec: str = "libx264"
    crf: int = 18
    preset: str = "medium"
    pix_fmt: str = "auto"  # auto: yuv420p, or yuv420p10le for a source with more than 8 bits per sample
    threads: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Plan:
    """Everything a segment worker needs besides its frame range: resolved once by the driver."""

    geometry: Geometry
    out_size: tuple[int, int]  # (H, W) the diffusion runs at and produces (geometry.content reversed)
    start_step: Optional[int]  # the reverse process's first step; None: full sampling from the prior
    steps: int  # denoiser calls per frame
    cuts: list[int]  # frame indices that start a shot (0 included)
    options: UpscaleOptions
    time_base: tuple[int, int]
    colour: object = None
    pts: list[int] = field(default_factory=list)

    def shot_start(self, idx: int) -> int:
        return self.cuts[bisect.bisect_right(self.cuts, idx) - 1]


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UpscaleError(f"--device {device}: no CUDA device is available")
    return device


def make_plan(info, spec: ModelSpec, opts: UpscaleOptions, cuts: list[int]) -> Plan:
    """Output geometry and sampling for this video. The diffusion always runs at the output content size; the
    start step comes from --steps (startstep.resolve_start, the function `compare` uses too)."""
    from .startstep import StepsError, denoiser_calls, resolve_start

    try:
        # fitted to the picture as shown (stored width x sample aspect ratio): the output has square pixels
        geom = output_geometry(*info.display_size, opts.target, opts.scale, opts.fit)
    except ValueError as e:
        raise UpscaleError(str(e)) from None
    cw, ch = geom.content
    # the scale factor from the decoded frame to the content, the larger axis (they differ under --fit stretch and
    # for non-square input pixels): the one the table is looked up with
    factor = max(cw / info.width, ch / info.height)
    if factor <= 1.0:
        target = f"{cw}x{ch}" if geom.content == geom.canvas else \
            f"{cw}x{ch} (the picture inside {geom.canvas[0]}x{geom.canvas[1]} with --fit {geom.fit})"
        raise UpscaleError(f"input is already {info.width}x{info.height}, at or above the target {target}: "
                           "nothing to up-scale; use a larger --target or --scale")
    try:
        start = resolve_start(spec, factor, opts.steps)
    except StepsError as e:
        raise UpscaleError(str(e)) from None
    tb = info.time_base
    return Plan(geom, (ch, cw), start, denoiser_calls(spec, start), sorted(set([0] + list(cuts))), opts,
                (tb.numerator, tb.denominator), info.colour, list(info.pts))


def autocast_for(device: str, precision: str):
    """The autocast context of --precision: bf16 on CPU or CUDA, fp16 on CUDA only; fp32 runs as is."""
    import contextlib

    if precision == "fp32":
        return contextlib.nullcontext()
    dev = torch.device(device).type
    if precision == "fp16" and dev != "cuda":
        raise UpscaleError("--precision fp16 needs a CUDA device (use bf16 on CPU)")
    if precision not in ("bf16", "fp16"):
        raise UpscaleError(f"--precision must be fp32, bf16 or fp16, got {precision!r}")
    return torch.autocast(dev, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def to_tensor(frame: np.ndarray, device) -> torch.Tensor:
    """HWC uint8 (or uint16, 0..65535) RGB -> [1,3,H,W] float in [-1,1]."""
    if frame.dtype == np.uint16:
        t = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32)).to(device)
        return t.permute(2, 0, 1)[None].div_(32767.5).sub_(1.0)
    t = torch.from_numpy(np.ascontiguousarray(frame)).to(device)
    return t.permute(2, 0, 1)[None].float().div_(127.5).sub_(1.0)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    return ((t[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def to_uint16(t: torch.Tensor) -> np.ndarray:
    """[1,3,H,W] float in [-1,1] -> HWC uint16 RGB (0..65535): the precision a >8-bit source keeps."""
    return ((t[0].float().clamp(-1, 1) + 1) * 32767.5).round().int().permute(1, 2, 0).cpu().numpy().astype(np.uint16)


def output_pix_fmt(pix_fmt: str, codec: str, bit_depth: int) -> str:
    """--pix-fmt auto: yuv420p for an 8-bit source; for a deeper one yuv420p10le (H.264 High 10, HEVC Main 10,
    FFV1, ...), or the encoder's first 10-bit 4:2:0/4:4:4 format."""
    if pix_fmt != "auto":
        return pix_fmt
    if bit_depth <= 8:
        return "yuv420p"
    import av

    try:
        names = [f.name for f in av.Codec(codec, "w").video_formats or []]
    except Exception:
        return "yuv420p10le"  # the writer reports the unknown encoder
    for f in ("yuv420p10le", "yuv444p10le", "yuv422p10le", "gbrp10le"):
        if not names or f in names:
            return f
    raise UpscaleError(f"encoder {codec} cannot write more than 8 bits per sample; the source has {bit_depth} "
                       f"(use --codec libx264, libx265 or ffv1, or --pix-fmt yuv420p)")


def auto_tiles(pipe: UPSRPipeline, opts: UpscaleOptions, size: tuple[int, int]) -> TileOptions:
    """A memory bound: HR tiles of at most ~1 MPixel for the denoiser unless --tile says otherwise."""
    if opts.tile:
        return TileOptions(tile=int(opts.tile) * pipe.scale, overlap=max(pipe.multiple // 2, 32), aux_tile=256)
    h, w = size
    if h * w <= 1024 * 1024 * 2.2:
        return TileOptions(tile=None, aux_tile=512)
    return TileOptions(tile=1024, overlap=max(pipe.multiple // 2, 64), aux_tile=512)


@dataclass
class SegmentResult:
    path: str
    start: int
    stop: int
    frames: int
    seconds: float
    model_seconds: float


def process_segment(
    video_path: str,
    start: int,
    stop: int,
    plan: Plan,
    pipe: UPSRPipeline,
    out_path: str,
    progress: Optional[Callable[[int], None]] = None,
) -> SegmentResult:
    """Up-scale frames [start, stop) into a video-only file at out_path (temporary name, renamed on success).
    Frames [start - context, start) of the same shot are decoded only to warm the temporal state."""
    from .video import VideoWriter, iter_frames, probe

    t0 = time.perf_counter()
    opts = plan.options
    depth = probe(video_path, opts.fps).bit_depth  # > 8: decoded as uint16 and written at 10 bits by default
    pix_fmt = output_pix_fmt(opts.pix_fmt, opts.codec, depth)
    topts = TemporalOptions(opts.temporal, opts.window, opts.decay, opts.seed, opts.anchor)
    tiles = auto_tiles(pipe, opts, plan.out_size)
    runner = TemporalUPSR(pipe, topts, plan.out_size, plan.start_step, tiles)
    first = max(plan.shot_start(start), start - topts.context)
    cw, ch = plan.geometry.canvas
    model_s = 0.0
    n = 0
    tb = plan.time_base
    from fractions import Fraction

    amp = autocast_for(str(pipe.device), opts.precision)
    with amp, VideoWriter(out_path, cw, ch, Fraction(*tb), codec=opts.codec, crf=opts.crf, preset=opts.preset,
                     pix_fmt=pix_fmt, colour=plan.colour) as writer:
        for frames, indices in iter_frames(video_path, first, stop, batch_size=opts.batch_size, fps=opts.fps,
                                           deep=True):
            for frame, idx in zip(frames, indices):
                emit = idx >= start
                tm = time.perf_counter()
                hr = runner.push(idx, to_tensor(frame, pipe.device), plan.shot_start(idx), emit=emit)
                model_s += time.perf_counter() - tm
                if emit:
                    out = to_uint16(hr) if frame.dtype == np.uint16 else to_uint8(hr)
                    writer.write(place(out, plan.geometry), plan.pts[idx])
                    n += 1
                    if progress:
                        progress(1)
    if n != stop - start:
        raise UpscaleError(f"decoded {n} frames for range [{start}, {stop}), expected {stop - start}")
    return SegmentResult(out_path, start, stop, n, time.perf_counter() - t0, model_s)
