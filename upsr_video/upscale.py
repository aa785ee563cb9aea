"""The local driver of `upsr-video upscale`: probe, plan, one segment, finalize. Distributed runs (pipelines/)
reuse `prepare` and `process_segment` and differ only in how many segments run where."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional


from .checkpoint import CheckpointError, load_pipeline
from .process import Plan, autocast_for, UpscaleError, UpscaleOptions, make_plan, process_segment, resolve_device


@dataclass
class Prepared:
    info: object
    plan: Plan
    spec: object


def check_output(output: str, overwrite: bool) -> Path:
    out = Path(output)
    if out.exists() and not overwrite:
        raise UpscaleError(f"output exists: {out} (use --overwrite)")
    if out.suffix.lower() not in (".mp4", ".mkv", ".mov"):
        raise UpscaleError(f"unsupported output container {out.suffix or '(none)'}: use .mp4, .mkv or .mov")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UpscaleError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise UpscaleError(f"output folder is not writable: {parent}")
    return out


OWN_CONTAINERS = {".mp4": ".mp4", ".m4v": ".mp4", ".mov": ".mov", ".mkv": ".mkv"}


def output_container(input_path, preferred: Optional[str] = None) -> str:
    """The extension of an output that holds every stream of the input copied as it is: `preferred` (default:
    the input's own container where this tool writes it), else Matroska. An unreadable input keeps the
    preferred one (its error comes later, from the probe)."""
    from .video import VideoError, probe
    from .video.mux import plan_streams

    ext = preferred or OWN_CONTAINERS.get(Path(input_path).suffix.lower(), ".mkv")
    if ext == ".mkv":
        return ext
    try:
        info = probe(input_path)
    except VideoError:
        return ext
    try:
        plan_streams(input_path, Path("probe" + ext), "keep", info)
    except VideoError:
        return ".mkv"
    return ext


def default_output(input_path) -> str:
    """INPUT's stem + `_upsr` + the container that holds all of its streams."""
    p = Path(input_path)
    return str(p.with_name(p.stem + "_upsr" + output_container(p)))


def check_streams(input_path, out, opts: UpscaleOptions, warn: bool = True) -> dict:
    """Before any work: what happens to every stream of the input in `out` (see `video.mux.plan_streams`).
    A stream the container cannot hold is an error under --streams keep (the default); a dropped stream is
    said on one stderr line each."""
    from .video import VideoError, probe
    from .video.mux import _describe, plan_streams

    try:
        plan = plan_streams(input_path, out, opts.streams, probe(input_path, opts.fps))
    except VideoError as e:
        raise UpscaleError(str(e)) from None
    for d in plan["streams"] if warn else []:
        if d["action"] == "drop":
            sys.stderr.write(f"warning: {_describe(d)} dropped: {d['reason']}\n")
    return plan


def cuts_of_frames(frames, threshold: Optional[float] = None) -> list[int]:
    """Shot starts (0 included) of frames 0, 1, 2, ... given in order (a list or a stream), each judged on a 64x36
    copy by the scene-cut detector."""
    import cv2

    from .video import SceneCutDetector

    det = SceneCutDetector() if threshold is None else SceneCutDetector(threshold=threshold)
    cuts = [0]
    for i, f in enumerate(frames):
        if det.update(cv2.resize(f, (64, 36), interpolation=cv2.INTER_AREA)) and i > 0:
            cuts.append(i)
    return cuts


def detect_cuts(video_path: str, threshold: Optional[float] = None, batch_size: int = 16, fps=None) -> list[int]:
    """Shot starts of the whole video (0 included), from one streamed pass over its frames."""
    from .video import iter_frames

    frames = iter_frames(video_path, 0, None, batch_size=batch_size, fps=fps)
    return cuts_of_frames((f for batch, _ in frames for f in batch), threshold)


def prepare(input_path: str, opts: UpscaleOptions, spec=None, cuts: Optional[list[int]] = None) -> Prepared:
    from .checkpoint import read_checkpoint
    from .video import VideoError, probe

    try:
        info = probe(input_path, opts.fps)
    except VideoError as e:
        raise UpscaleError(str(e)) from None
    if info.timestamp_note:  # missing or all-equal timestamps replaced: said once, on one line
        sys.stderr.write(f"warning: {info.timestamp_note}\n")
        sys.stderr.flush()
    if (info.colour.mastering_display() or info.colour.light) and opts.codec not in ("libx264", "libx265"):
        sys.stderr.write(f"warning: {input_path}: the {opts.codec} encoder cannot carry the HDR mastering display "
                         f"/ content light metadata; it is not kept (use --codec libx264 or libx265)\n")
    if spec is None:
        from .checkpoint import default_checkpoint_path

        try:
            spec, _ = read_checkpoint(opts.checkpoint or default_checkpoint_path())
        except CheckpointError as e:
            raise UpscaleError(str(e)) from None
    if cuts is None:
        cuts = detect_cuts(input_path, opts.scene_threshold, fps=opts.fps) if opts.temporal == "shared" else [0]
    return Prepared(info, make_plan(info, spec, opts, cuts), spec)


def upscale_video(
    input_path: str,
    output: str,
    opts: UpscaleOptions,
    overwrite: bool = False,
    progress: Optional[Callable[[int], None]] = None,
    on_start: Optional[Callable[[Prepared, object], None]] = None,
) -> dict:
    """Up-scale one video locally. Returns the JSON summary."""
    import torch

    from .video import VideoError, finalize

    t0 = time.perf_counter()
    out = check_output(output, overwrite)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = resolve_device(opts.device)
    autocast_for(device, opts.precision)  # reject fp16 on CPU before any work
    check_streams(input_path, out, opts)
    prep = prepare(input_path, opts)
    try:
        spec, pipe = load_pipeline(opts.checkpoint, device=device)
    except CheckpointError as e:
        raise UpscaleError(str(e)) from None
    if on_start:
        on_start(prep, pipe)
    n = prep.info.num_frames
    part = out.with_name(f".{out.stem}.part0.{os.getpid()}.mkv")
    try:
        res = process_segment(input_path, 0, n, prep.plan, pipe, str(part), progress)
        streams = finalize([str(part)], input_path, str(out), overwrite=overwrite, fps=opts.fps,
                           streams=opts.streams)
    except VideoError as e:
        raise UpscaleError(str(e)) from None
    except OSError as e:
        raise UpscaleError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        if part.exists():
            part.unlink()
    return run_summary(input_path, out, prep, opts, res.frames, time.perf_counter() - t0, res.model_seconds,
                       pipe.is_diffusion, streams)


def run_summary(input_path, out, prep: Prepared, opts: UpscaleOptions, frames: int, secs: float,
                model_seconds: float, is_diffusion: bool, streams: Optional[dict] = None) -> dict:
    """The JSON summary of one up-scaled video; the local and the distributed drivers both print it."""
    return {
        "input": str(input_path),
        "output": str(out),
        "frames": frames,
        "input_size": [prep.info.width, prep.info.height],
        "output_size": list(prep.plan.geometry.canvas),
        "model": "UPSR" if is_diffusion else "g only (fallback: checkpoint has no denoiser)",
        "checkpoint": str(opts.checkpoint or "bundled default"),
        "resize_mode": prep.plan.resize_mode,
        "start_step": prep.plan.start_step,
        "temporal": opts.temporal,
        "shots": len(prep.plan.cuts),
        "seconds": round(secs, 3),
        "model_seconds": round(model_seconds, 3),
        "fps": round(frames / secs, 4) if secs > 0 else None,
        "seconds_per_frame": round(secs / max(1, frames), 4),
        "timestamps": prep.info.timestamps,  # "stream", or replaced at the declared/given rate
        "input_sar": _ratio(prep.info.sample_aspect_ratio),  # the output has square pixels
        "deinterlaced": _deinterlacer(prep.info),
        "bit_depth": [prep.info.bit_depth, _out_depth(prep, opts)],  # input, output (decoded at the source's)
        "colour": _colour_summary(prep.info.colour),
        # every stream of the input and what happened to it; chapters and container tags copied
        "streams": (streams or {}).get("streams"),
        "chapters": (streams or {}).get("chapters"),
    }


def _out_depth(prep: Prepared, opts: UpscaleOptions) -> Optional[int]:
    from .process import output_pix_fmt

    try:
        import av

        fmt = output_pix_fmt(opts.pix_fmt, opts.codec, prep.info.bit_depth)
        return max(c.bits for c in av.VideoFormat(fmt).components)
    except Exception:
        return None


def _colour_summary(c) -> dict:
    """The colour tags written (those of the source) and whether HDR static metadata was there to keep."""
    return {"matrix": c.matrix, "range": c.range, "primaries": c.primaries, "transfer": c.transfer,
            "mastering_display": c.mastering_display(), "content_light": list(c.light) if c.light else None}


def _ratio(r) -> Optional[str]:
    return f"{r.numerator}:{r.denominator}" if r else None


def _deinterlacer(info) -> Optional[str]:
    """The filter interlaced input went through (None: progressive)."""
    if not info.interlaced:
        return None
    from .video.reader import deinterlace_filter

    return f"{deinterlace_filter()} ({info.field_order})"
