"""The local driver of `upsr-video upscale`: probe, plan, segments (resumable through a manifest), finalize.
Distributed runs (pipelines/) reuse `prepare`, the segments, the manifest and `process_segment` (here
`start_segment`, so a part's encoder finishes beside the next segment's model work) and differ only
in how many segments run where."""
from __future__ import annotations

import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional


from .checkpoint import CheckpointError
from .process import (Plan, UpscaleError, UpscaleOptions, autocast_for, load_for_run, make_plan, resolve_batch_size,
                      resolve_device, start_segment, use_threads)


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


def detect_cuts(video_path: str, threshold: Optional[float] = None, fps=None, threads: int = 0) -> list[int]:
    """Shot starts of the whole video (0 included), from one cheap pass: every frame is decoded and scaled to
    64x36 by the decoder's converter (`iter_thumbnails`); no full-size frame is converted, so this costs a
    fraction of the decode the up-scaling itself does."""
    from .video.reader import iter_thumbnails

    return cuts_of_frames(iter_thumbnails(video_path, (64, 36), fps=fps, threads=threads), threshold)


def prepare(input_path: str, opts: UpscaleOptions, spec=None, cuts: Optional[list[int]] = None,
            threads: int = 0) -> Prepared:
    """Probe, plan and (when not given) scene cuts of one video; `threads`: decoder threads of the cut pass."""
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
    make_plan(info, spec, opts, [0])  # a bad target or --steps fails before the pass over the frames
    if cuts is None:
        cuts = detect_cuts(input_path, opts.scene_threshold, fps=opts.fps, threads=threads) \
            if opts.temporal != "independent" else [0]
    return Prepared(info, make_plan(info, spec, opts, cuts), spec)


def upscale_video(
    input_path: str,
    output: str,
    opts: UpscaleOptions,
    overwrite: bool = False,
    progress: Optional[Callable[[int], None]] = None,
    on_start: Optional[Callable[[Prepared, object], None]] = None,
    segment_frames: Optional[int] = None,
    resume: bool = True,
) -> dict:
    """Up-scale one video locally, resumably. The video is split into segments exactly as the distributed
    runner splits it; each finished segment is a part file in the work folder beside the output
    (`.<output name>.upsr-work/`), recorded in its manifest, so a run killed at any point and run again computes
    only the unfinished segments and writes the same file as an uninterrupted run (parts of other inputs,
    options, checkpoints or versions are never reused: their fingerprint differs). resume=False starts over.
    Leftovers of dead runs (temporary files) are removed; the work folder goes once the output is in place.
    Returns the JSON summary."""
    from .manifest import DONE, MANIFEST_NAME, Manifest, part_name, work_dir_for
    from .resume import fingerprint
    from .segments import Segment, default_segment_frames, make_segments
    from .video import VideoError, finalize
    from .video.probe import part_frames

    t0 = time.perf_counter()
    out = check_output(output, overwrite)
    if segment_frames is not None and segment_frames < 1:
        raise UpscaleError(f"--segment-frames must be >= 1, got {segment_frames}")
    if opts.threads:
        use_threads(opts.threads)
    device = resolve_device(opts.device)
    autocast_for(device, opts.precision)  # reject fp16 on CPU before any work
    resolve_batch_size(opts.batch_size, device)
    check_streams(input_path, out, opts)
    work = work_dir_for(out)
    fresh = not work.exists()
    try:
        manifest = Manifest(work / MANIFEST_NAME)  # one run per output: a second one is refused here
    except OSError as e:
        raise UpscaleError(f"cannot write {out}: {e.strerror or e}") from None
    done_ok = False
    try:
        key = str(Path(input_path).resolve())
        fp = fingerprint(input_path, opts)
        rec = manifest.ensure_video(key, str(input_path), str(out), fp, reset=not resume)
        manifest.begin_attempt(key)
        # the model loads beside the probe and the scene-cut pass
        loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load")
        loading = loader.submit(load_for_run, opts.checkpoint, device, opts.compile)
        loader.shutdown(wait=False)
        cuts = rec.cuts if rec.cuts is not None and rec.frames is not None else None
        prep = prepare(input_path, opts, cuts=cuts)
        n = int(prep.info.num_frames)
        if rec.split and rec.frames == n and rec.split[-1][1] == n:
            segs = [Segment(str(input_path), a, b, i) for i, (a, b) in enumerate(rec.split)]
        else:
            seg_len = segment_frames or default_segment_frames(n, 1)
            segs = make_segments(str(input_path), n, seg_len, prep.plan.cuts)
            manifest.set_plan(key, n, prep.info.duration, prep.plan.cuts, [(g.start, g.stop) for g in segs])
        parts = {g.index: work / part_name(fp, g) for g in segs}
        done = {r.idx for r in manifest.segments(key)
                if r.state == DONE and r.part == str(parts.get(r.idx)) and parts[r.idx].exists()
                and part_frames(parts[r.idx]) == r.stop - r.start}
        _clean_leftovers(out, work, keep={parts[i].name for i in done})
        try:
            spec, pipe = loading.result()
        except CheckpointError as e:
            raise UpscaleError(str(e)) from None
        if on_start:
            on_start(prep, pipe)
        if progress and done:
            progress(sum(g.frames for g in segs if g.index in done))
        computed, model_s = 0, 0.0
        report = _serialised(progress)  # two encode threads may be writing at once (see below)
        finishing = None
        try:
            for g in segs:
                if g.index in done:
                    continue
                manifest.segment_started(key, g.index)
                job = start_segment(input_path, g.start, g.stop, prep.plan, pipe, str(parts[g.index]), report)
                # the previous part's encoder finished beside this segment's model work; record it now
                previous, finishing = finishing, (g, job)
                if previous is not None:
                    computed, model_s = _record(manifest, key, previous, computed, model_s)
            if finishing is not None:
                last, finishing = finishing, None
                computed, model_s = _record(manifest, key, last, computed, model_s)
        finally:
            if finishing is not None:  # failed meanwhile: the part still finishing is kept if it completes
                try:
                    _record(manifest, key, finishing, 0, 0.0)
                except Exception:
                    pass
        streams = finalize([str(parts[g.index]) for g in segs], input_path, str(out), overwrite=overwrite,
                           fps=opts.fps, streams=opts.streams)
        manifest.video_done(key, time.perf_counter() - t0)
        done_ok = True
    except VideoError as e:
        raise UpscaleError(str(e)) from None
    except OSError as e:
        raise UpscaleError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        manifest.close()
        if done_ok or (fresh and not any(work.glob("part-*"))):
            shutil.rmtree(work, ignore_errors=True)  # finished, or nothing worth resuming
    return {
        **run_summary(input_path, out, prep, opts, n, time.perf_counter() - t0, model_s, pipe.is_diffusion,
                      streams),
        "segments": len(segs),
        "split": [[g.start, g.stop] for g in segs],
        "segments_reused": len(done),
        "frames_computed": computed,
    }


def _record(manifest, key, finishing, computed: int, model_s: float) -> tuple[int, float]:
    """Wait for a segment's part to be in place and record it in the manifest."""
    g, job = finishing
    res = job.result()
    manifest.segment_done(key, g.index, res.path, res.frames, res.seconds)
    return computed + res.frames, model_s + res.model_seconds


def _serialised(progress: Optional[Callable[[int], None]]) -> Optional[Callable[[int], None]]:
    if progress is None:
        return None
    import threading

    lock = threading.Lock()

    def report(n: int) -> None:
        with lock:
            progress(n)

    return report


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_leftovers(out: Path, work: Path, keep: set[str]) -> None:
    """Remove what dead runs left: in the work folder (whose lock this run holds) every file but the manifest and
    the finished parts in `keep`; beside the output, temporary outputs (`.<name>.tmp-<pid>`) and parts of older
    versions (`.<stem>.part0.<pid>.mkv`) whose process is gone."""
    from .manifest import MANIFEST_NAME

    for f in work.iterdir():
        if f.name.startswith(MANIFEST_NAME) or f.name in keep:
            continue
        if f.is_dir():
            shutil.rmtree(f, ignore_errors=True)
        else:
            f.unlink(missing_ok=True)
    for pattern, tail in ((f".{out.name}.tmp-*", lambda f: f.name.rsplit("-", 1)[1]),
                          (f".{out.stem}.part0.*.mkv", lambda f: f.name.rsplit(".", 2)[1])):
        for f in out.parent.glob(pattern):
            pid = tail(f)
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                f.unlink(missing_ok=True)


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
        "steps": prep.plan.steps if is_diffusion else 0,  # denoiser calls per frame
        "start_step": prep.plan.start_step if is_diffusion else None,
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
