"""Up-scaling a video: the plan, the per-segment function, and the local (single-process) driver.

`process_segment` is the one unit of work: decode a frame range (plus context frames) with decord, run
temporally consistent UPSR, encode the range with PyAV to a temporary file renamed into place. The local path
runs it once over the whole video; the Ray pipelines run it on actors over many ranges. Both then call
`video.finalize` to concatenate the parts losslessly and mux audio/subtitles from the original.
"""
from __future__ import annotations

import bisect
import ctypes
import json
import os
import platform
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
    temporal: str = TemporalOptions.mode  # one of temporal.MODES
    anchor: float = TemporalOptions.anchor  # recurrent modes: weight of the warped previous output in the start
    window: int = TemporalOptions.window
    decay: float = TemporalOptions.decay
    scene_threshold: Optional[float] = None
    tile: Optional[int] = None  # LR pixels; None: automatic bound
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 on a CUDA device that supports it, else fp32 | fp32 | bf16 | fp16
    batch_size: int = 0  # frames per model batch; 0: automatic (see resolve_batch_size)
    fps: Optional[str] = None  # frame rate for a video whose timestamps are missing or all equal (None: declared)
    streams: str = "keep"  # keep | convert | drop-unsupported: streams the output container cannot hold
    codec: str = "libx264"
    crf: int = 18
    preset: str = "medium"
    pix_fmt: str = "auto"  # auto: yuv420p, or yuv420p10le for a source with more than 8 bits per sample
    threads: int = 0
    compile: bool = False  # torch.compile the networks (CUDA; the first batch of each shape compiles)

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

    def batch_of(self, idx: int, batch_size: int) -> tuple[int, int]:
        """[a, b): the model batch frame `idx` belongs to. Batches tile every shot from its first frame in steps
        of batch_size, so they depend on the video and its cuts only, never on how the video is split into
        segments: every frame is computed in the same batch, with the same neighbours, in every run."""
        k = bisect.bisect_right(self.cuts, idx)
        s = self.cuts[k - 1]
        end = self.cuts[k] if k < len(self.cuts) else len(self.pts)
        a = s + (idx - s) // batch_size * batch_size
        return a, min(a + batch_size, end)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UpscaleError(f"--device {device}: no CUDA device is available")
    return device


def resolve_precision(precision: str, device: str) -> str:
    """--precision auto: bf16 on a CUDA device with bf16 support (tensor cores; checked against fp32 by
    tests/test_cuda.py), fp32 elsewhere (bf16 on a CPU is slower and coarser)."""
    if precision != "auto":
        return precision
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def resolve_batch_size(batch_size: int, device: str) -> int:
    """--batch-size 0: 4 frames per model batch on CUDA (keeps the GPU busy between small launches), 1 on a CPU
    (a CPU is already busy with one frame; larger batches only cost memory)."""
    if batch_size < 0:
        raise UpscaleError(f"--batch-size must be >= 0, got {batch_size}")
    if batch_size:
        return int(batch_size)
    return 4 if torch.device(device).type == "cuda" else 1


# glibc's malloc settings for a process that runs the model (mallopt parameters and values; see tune_allocator)
_MALLOPT = (
    (-3, 32 << 20, "MALLOC_MMAP_THRESHOLD_"),  # M_MMAP_THRESHOLD: blocks under 32 MB (glibc's cap) from the heap
    (-2, 64 << 20, "MALLOC_TOP_PAD_"),  # M_TOP_PAD: grow the heap 64 MB at a time
    (-1, 1 << 30, "MALLOC_TRIM_THRESHOLD_"),  # M_TRIM_THRESHOLD: give freed heap back only above 1 GB
)


def tune_allocator() -> bool:
    """Keep freed memory for the next frame instead of returning it to the OS (glibc only; True if applied).

    Each output frame allocates and frees the same few tens of MB-sized temporaries (at 1080p the noise
    transport's rows alone are 66 MB). Under glibc's defaults the heap is trimmed and large blocks are mapped
    and unmapped again, so every frame page-faults them in anew: `upscale` on two CPU threads took 1.13-1.14x
    the time per frame at 720p -> 1080p and 720p -> 4K (README, "Throughput"). All three settings go together:
    setting any one switches off glibc's adaptive mmap threshold, which alone is much slower. The price is up
    to 1 GB of freed heap kept per process. Skipped where the user set any of the matching MALLOC_*_ variables
    (their choice stands) and on other C libraries."""
    if platform.libc_ver()[0] != "glibc" or any(env in os.environ for _, _, env in _MALLOPT):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all([mallopt(param, value) == 1 for param, value, _ in _MALLOPT])


def load_for_run(checkpoint: Optional[str], device: str, compile: bool = False):
    """(spec, pipeline) ready for `process_segment` on `device`: on CUDA the networks use the channels-last
    layout (what cuDNN's tensor-core convolutions run on); `compile` wraps them in torch.compile. The process's
    allocator is tuned for frame after frame (tune_allocator)."""
    tune_allocator()
    spec, pipe = load_pipeline(checkpoint, device=device)
    pipe.optimize(channels_last=torch.device(device).type == "cuda", compile=compile)
    return spec, pipe


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
    """The autocast context of --precision (resolved by resolve_precision): bf16 on CPU or CUDA, fp16 on CUDA
    only; fp32 runs as is."""
    import contextlib

    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    dev = torch.device(device).type
    if precision == "fp16" and dev != "cuda":
        raise UpscaleError("--precision fp16 needs a CUDA device (use bf16 on CPU)")
    if precision not in ("bf16", "fp16"):
        raise UpscaleError(f"--precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    return torch.autocast(dev, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def frames_to_tensor(frames: np.ndarray, device) -> torch.Tensor:
    """(B, H, W, 3) uint8 (or uint16, 0..65535) RGB -> [B,3,H,W] float in [-1,1] on `device`. 8-bit frames go to
    a CUDA device as bytes, from pinned memory without blocking, and are converted there; on the host the
    conversion is numpy's (one thread: a decode thread beside the model's threads adds no thread team)."""
    dev = torch.device(device)
    if dev.type == "cuda" and frames.dtype == np.uint8:
        src = torch.from_numpy(np.ascontiguousarray(frames)).pin_memory().to(dev, non_blocking=True)
        return src.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    b, h, w, c = frames.shape
    out = torch.empty((b, c, h, w), dtype=torch.float32)  # torch's allocation: the alignment CPU kernels expect
    x = out.numpy()  # (numpy's own buffers are aligned differently, which changes their rounding in the last bit)
    np.copyto(x, frames.transpose(0, 3, 1, 2), casting="unsafe")
    x /= np.float32(32767.5 if frames.dtype == np.uint16 else 127.5)
    x -= np.float32(1.0)
    return out.to(dev)


def quantize(t: torch.Tensor, deep: bool) -> torch.Tensor:
    """[B,3,H,W] float in [-1,1] -> (B, H, W, 3) RGB levels on t's device: uint8, or int32 0..65535 (deep)."""
    t = t.float().clamp(-1, 1).add(1)
    q = t.mul_(32767.5).round_().int() if deep else t.mul_(127.5).round_().byte()
    return q.permute(0, 2, 3, 1)


def to_tensor(frame: np.ndarray, device) -> torch.Tensor:
    """HWC uint8 (or uint16, 0..65535) RGB -> [1,3,H,W] float in [-1,1]."""
    return frames_to_tensor(frame[None], device)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    return _Staged(t[:1], False).numpy()[0]


def to_uint16(t: torch.Tensor) -> np.ndarray:
    """[1,3,H,W] float in [-1,1] -> HWC uint16 RGB (0..65535): the precision a >8-bit source keeps."""
    return _Staged(t[:1], True).numpy()[0]


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


def auto_tiles(pipe: UPSRPipeline, opts: UpscaleOptions, size: tuple[int, int], in_size: tuple[int, int]) -> TileOptions:
    """A memory bound: HR tiles of at most ~1 MPixel for the denoiser unless --tile says otherwise; as many
    frames x tiles per denoiser call as the model batch has frames. size, in_size: (H, W) of the output and of the
    input frames; --tile counts input pixels, so the denoiser's tile is that times this run's (larger axis) factor,
    not the checkpoint's training scale."""
    batch = resolve_batch_size(opts.batch_size, str(getattr(pipe, "device", "cpu")))
    h, w = size
    if opts.tile:
        factor = max(h / in_size[0], w / in_size[1])
        return TileOptions(tile=max(1, round(int(opts.tile) * factor)), overlap=max(pipe.multiple // 2, 32),
                           aux_tile=256, batch=batch)
    if h * w <= 1024 * 1024 * 2.2:
        return TileOptions(tile=None, aux_tile=512, batch=batch)
    return TileOptions(tile=1024, overlap=max(pipe.multiple // 2, 64), aux_tile=512, batch=batch)


@dataclass
class SegmentResult:
    path: str
    start: int
    stop: int
    frames: int
    seconds: float
    model_seconds: float


class _Staged:
    """A batch of output frames on its way to the host as RGB levels. From a GPU: quantized there and copied into
    pinned memory without blocking the compute thread (`numpy` waits for the copy's event). On the host:
    quantized by `numpy`, on the encode thread, with numpy (one thread; the same arithmetic as `quantize`)."""

    def __init__(self, hr: torch.Tensor, deep: bool):
        self.deep = deep
        if hr.device.type == "cuda":
            q = quantize(hr, deep)
            self.host = torch.empty(q.shape, dtype=q.dtype, pin_memory=True)
            self.host.copy_(q, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host, self.event = hr.detach(), None

    def numpy(self) -> np.ndarray:
        """(B, H, W, 3) uint8, or uint16 for deep."""
        if self.event is not None:
            self.event.synchronize()
            out = self.host.numpy()
        else:
            x = np.clip(self.host.float().numpy(), -1, 1) + np.float32(1.0)
            x *= np.float32(32767.5 if self.deep else 127.5)
            out = np.rint(x).astype(np.int32 if self.deep else np.uint8).transpose(0, 2, 3, 1)
        return out.astype(np.uint16) if self.deep else out


class _ModelClock:
    """Time spent in the model: wall time on a CPU; on CUDA the device time between events around each batch
    (launches return before the work is done), read once at the end."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.seconds = 0.0
        self.pairs: list = []

    def __enter__(self):
        if self.cuda:
            self._a = torch.cuda.Event(enable_timing=True)
            self._a.record()
        else:
            self._t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            b = torch.cuda.Event(enable_timing=True)
            b.record()
            self.pairs.append((self._a, b))
        else:
            self.seconds += time.perf_counter() - self._t
        return False

    def total(self) -> float:
        if self.cuda and self.pairs:
            self.pairs[-1][1].synchronize()
            self.seconds = sum(a.elapsed_time(b) for a, b in self.pairs) / 1000.0
            self.pairs = []
        return self.seconds


def use_threads(n: int) -> None:
    """Compute with n threads: torch's intra-op threads and OpenCV's (the flow and the warps between the model's
    calls), so that `--threads n` or a Ray actor holding n CPUs keeps to n cores; OpenCV would otherwise take every
    core of the machine in each process."""
    import cv2

    torch.set_num_threads(n)
    cv2.setNumThreads(n)


def io_threads() -> int:
    """Decoder and encoder threads each: half the CPUs this process computes with (torch's intra-op threads,
    set from --threads or the CPUs a Ray actor holds), at least one, so decoding and encoding beside the model
    do not oversubscribe the cores."""
    return max(1, torch.get_num_threads() // 2)


QUEUE_BATCHES = 2  # batches decoded ahead of the model, and batches waiting for the encoder


class SegmentJob:
    """A segment whose frames are all computed and whose encoder is finishing on its own thread (the encoder's
    lookahead holds the last frames until the end: tens of frames at x264's default presets). `result()` waits
    until the part is in place."""

    def __init__(self, sink, start: int, stop: int, out_path: str, t0: float, clock: "_ModelClock", written: list):
        self._sink, self.start, self.stop, self.out_path = sink, start, stop, out_path
        self._t0, self._clock, self._written = t0, clock, written

    def result(self) -> SegmentResult:
        self._sink.join()
        return SegmentResult(self.out_path, self.start, self.stop, self._written[0],
                             time.perf_counter() - self._t0, self._clock.total())


def process_segment(
    video_path: str,
    start: int,
    stop: int,
    plan: Plan,
    pipe: UPSRPipeline,
    out_path: str,
    progress: Optional[Callable[[int], None]] = None,
) -> SegmentResult:
    """Up-scale frames [start, stop) into a video-only file at out_path (temporary name, renamed on success)."""
    return start_segment(video_path, start, stop, plan, pipe, out_path, progress).result()


def start_segment(
    video_path: str,
    start: int,
    stop: int,
    plan: Plan,
    pipe: UPSRPipeline,
    out_path: str,
    progress: Optional[Callable[[int], None]] = None,
) -> SegmentJob:
    """Compute frames [start, stop) and return while the encoder finishes the part (`SegmentJob.result()`), so a
    driver can start the next segment's model work meanwhile.

    Three stages overlap: a decode thread fills model batches (`Plan.batch_of`: the same batches whatever the
    split, so a segment's frames equal an uninterrupted run's bit for bit), this thread runs TemporalUPSR on them,
    and an encode thread quantizes and writes the frames, then flushes and renames the part; queues of
    QUEUE_BATCHES batches bound memory. Frames [start - context, start) of the same shot warm the temporal state;
    the batches at the segment's edges are computed whole and only their frames in [start, stop) are written."""
    from fractions import Fraction

    from .overlap import Drain, Prefetch
    from .video import VideoWriter, iter_frames, probe

    t0 = time.perf_counter()
    opts = plan.options
    info = probe(video_path, opts.fps)
    depth = info.bit_depth  # > 8: decoded as uint16 and written at 10 bits by default
    deep = depth > 8
    pix_fmt = output_pix_fmt(opts.pix_fmt, opts.codec, depth)
    topts = TemporalOptions(opts.temporal, opts.window, opts.decay, opts.seed, opts.anchor)
    tiles = auto_tiles(pipe, opts, plan.out_size, (info.height, info.width))
    runner = TemporalUPSR(pipe, topts, plan.out_size, plan.start_step, tiles)
    bs = resolve_batch_size(opts.batch_size, str(pipe.device))
    first = plan.batch_of(max(plan.shot_start(start), start - topts.context), bs)[0]
    emit_from = plan.batch_of(start, bs)[0]  # batches computed whole: the same frames denoised together
    last = plan.batch_of(stop - 1, bs)[1]
    threads = io_threads()
    cw, ch = plan.geometry.canvas
    clock = _ModelClock(pipe.device)
    written = [0]

    def batches():
        """Decoded frames regrouped into model batches, as tensors on the model's device."""
        buf, idx = [], []
        for frames, indices in iter_frames(video_path, first, last, batch_size=bs, fps=opts.fps, deep=True,
                                           threads=threads):
            for f, i in zip(frames, indices):
                buf.append(f)
                idx.append(i)
                if i + 1 == plan.batch_of(i, bs)[1]:
                    yield frames_to_tensor(np.stack(buf), pipe.device), idx
                    buf, idx = [], []
        if buf:
            raise UpscaleError(f"decoded frames {idx[0]}..{idx[-1]} do not complete a batch")

    def encode(item) -> None:
        staged, indices = item
        for frame, i in zip(staged.numpy(), indices):
            writer.write(place(frame, plan.geometry), plan.pts[i])
            written[0] += 1
            if progress:
                progress(1)

    def finish() -> None:
        if written[0] != stop - start:  # before the rename: a short part is never put in place
            raise UpscaleError(f"decoded {written[0]} frames for range [{start}, {stop}), expected {stop - start}")
        writer.close()

    amp = autocast_for(str(pipe.device), opts.precision)
    writer = VideoWriter(out_path, cw, ch, Fraction(*plan.time_base), codec=opts.codec, crf=opts.crf,
                         preset=opts.preset, pix_fmt=pix_fmt, colour=plan.colour, threads=threads)
    sink = Drain(encode, QUEUE_BATCHES, "encode", finish=finish, abandon=writer.abort)
    try:
        with Prefetch(batches(), QUEUE_BATCHES, "decode") as source:
            for lrs, indices in source:
                with amp, clock:
                    hrs = runner.push_batch(indices, lrs, [plan.shot_start(i) for i in indices],
                                            [i >= emit_from for i in indices])
                keep = [k for k, i in enumerate(indices) if start <= i < stop]
                if keep:
                    hr = torch.cat([hrs[k] for k in keep])
                    sink.put((_Staged(hr, deep), [indices[k] for k in keep]))
        sink.end()
    except BaseException:
        sink.abort()  # the encode thread stops and removes the temporary file
        raise
    return SegmentJob(sink, start, stop, out_path, t0, clock, written)
