"""Up-scaling a whole folder tree (an archive) on Ray, resumable and fault tolerant.

Every video under INPUT_DIR becomes OUTPUT_DIR/<same relative folder>/<stem>.<ext>. Segments of several
videos share one actor pool. The manifest `OUTPUT_DIR/.upsr-manifest.sqlite` records each video's state and
each finished segment, so a rerun skips finished videos, reuses finished segments, retries failed videos
while attempts remain and reports the rest. A file that is not a video, or is truncated, is recorded as failed
with its one-line reason and never stops the others. Originals are only read.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

from upsr_video.manifest import DONE, FAILED, Manifest
from upsr_video.process import UpscaleError, UpscaleOptions

from .runner import COMPLETE, Engine, VideoJob, fingerprint, init_ray, pool_size

VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")
MANIFEST_FILE = ".upsr-manifest.sqlite"
# containers kept as they are; the others become .mkv, which holds whatever audio/subtitles they carry
# (AVI: PCM/AC-3/MP3, WebM: Vorbis/Opus/WebVTT are not all allowed in MP4)
KEEP_CONTAINER = {".mp4": ".mp4", ".m4v": ".mp4", ".mov": ".mov", ".mkv": ".mkv", ".avi": ".mkv", ".webm": ".mkv"}


def scan(input_dir: Path, exclude: Optional[Path] = None) -> list[Path]:
    """Video files under input_dir (by extension), sorted; hidden files and folders (our work folders and
    manifest among them) and the `exclude` subtree are left out."""
    found = []
    ex = exclude.resolve() if exclude else None
    for root, dirs, files in os.walk(input_dir):
        r = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (ex is None or (r / d).resolve() != ex))
        for f in sorted(files):
            if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_EXTS:
                found.append(r / f)
    return found


def output_for(rel: Path, output_dir: Path, container: str = "auto", src: Optional[Path] = None) -> Path:
    """auto: the input's container (see KEEP_CONTAINER), or Matroska where that cannot hold every stream of `src`
    copied as it is."""
    if container == "auto":
        ext = KEEP_CONTAINER.get(rel.suffix.lower(), ".mp4")
        if src is not None:
            from upsr_video.upscale import output_container

            ext = output_container(src, ext)
    else:
        ext = "." + container.lstrip(".")
    return output_dir / rel.parent / (rel.stem + ext)


def plan_outputs(inputs: list[Path], input_dir: Path, output_dir: Path, container: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs; two inputs that would share an output (a.avi, a.webm) keep their extension in
    the name (a.avi.mkv)."""
    outs = [output_for(p.relative_to(input_dir), output_dir, container, p) for p in inputs]
    seen: dict[Path, int] = {}
    for o in outs:
        seen[o] = seen.get(o, 0) + 1
    pairs = []
    for p, o in zip(inputs, outs):
        if seen[o] > 1:
            o = o.with_name(p.name + o.suffix)
        pairs.append((p, o))
    return pairs


def check_dirs(input_dir: Path, output_dir: Path) -> None:
    if not input_dir.is_dir():
        raise UpscaleError(f"input folder not found: {input_dir}")
    i, o = input_dir.resolve(), output_dir.resolve()
    if i == o:
        raise UpscaleError("OUTPUT_DIR is INPUT_DIR: outputs would replace the originals; choose another folder")
    if o.exists() and not o.is_dir():
        raise UpscaleError(f"output is not a folder: {output_dir}")


def run_archive(
    input_dir: str,
    output_dir: str,
    opts: UpscaleOptions,
    *,
    workers: Optional[int] = None,
    address: Optional[str] = None,
    segment_frames: Optional[int] = None,
    max_attempts: int = 3,
    overwrite: bool = False,
    retry_failed: bool = False,
    container: str = "auto",
    quiet: bool = False,
) -> dict:
    """Up-scale every video under input_dir into output_dir. Returns the JSON summary (done / failed with
    reasons / skipped, frames, hours of footage, seconds, throughput)."""
    t0 = time.perf_counter()
    if max_attempts < 1:
        raise UpscaleError(f"--max-attempts must be >= 1, got {max_attempts}")
    if workers is not None and workers < 1:
        raise UpscaleError(f"--workers must be >= 1, got {workers}")
    if segment_frames is not None and segment_frames < 1:
        raise UpscaleError(f"--segment-frames must be >= 1, got {segment_frames}")
    if container not in ("auto", "mp4", "mkv", "mov"):
        raise UpscaleError(f"--container must be auto, mp4, mkv or mov, got {container!r}")
    in_dir, out_dir = Path(input_dir), Path(output_dir)
    check_dirs(in_dir, out_dir)
    inside = out_dir.resolve().is_relative_to(in_dir.resolve())
    inputs = scan(in_dir, exclude=out_dir if inside else None)
    pairs = plan_outputs(inputs, in_dir, out_dir, container)
    for src, dst in pairs:
        if dst.exists() and os.path.samefile(src, dst):
            raise UpscaleError(f"output {dst} is the input file itself; choose another OUTPUT_DIR")
    out_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(out_dir, os.W_OK):
        raise UpscaleError(f"output folder is not writable: {out_dir}")

    manifest = Manifest(out_dir / MANIFEST_FILE)
    skipped, failed_before, jobs = [], [], []
    for src, dst in pairs:
        key = src.relative_to(in_dir).as_posix()
        try:
            fp = fingerprint(str(src), opts)
        except OSError as e:
            failed_before.append({"input": key, "reason": f"cannot read: {e.strerror or e}", "attempts": 0})
            continue
        prev = manifest.video(key)
        if prev is not None and prev.fingerprint == fp and prev.state == DONE and dst.exists() and not overwrite:
            skipped.append({"input": key, "output": str(dst), "reason": "done"})
            continue
        if dst.exists() and not overwrite:
            segs = manifest.segments(key) if prev is not None and prev.fingerprint == fp else []
            if segs and all(s.state == DONE for s in segs):
                manifest.video_done(key, prev.seconds or 0.0)  # a crash hit between finalize and the manifest
                skipped.append({"input": key, "output": str(dst), "reason": "done"})
            else:
                skipped.append({"input": key, "output": str(dst), "reason": "output exists (use --overwrite)"})
            continue
        rec = manifest.ensure_video(key, str(src), str(dst), fp)
        if rec.state == FAILED and rec.attempts >= max_attempts:
            if not retry_failed:
                failed_before.append({"input": key, "reason": rec.reason, "attempts": rec.attempts})
                continue
            manifest.reset_attempts(key)
        elif rec.attempts >= max_attempts:
            manifest.reset_attempts(key)  # interrupted, never failed: a fresh budget
        dst.parent.mkdir(parents=True, exist_ok=True)
        # absolute paths: actors (on other nodes too) do not share the driver's working directory
        jobs.append(VideoJob(key, str(src.absolute()), dst.absolute(), fp))

    totals = {"segments": 0, "videos_done": 0, "frames": 0, "t": time.perf_counter()}

    def on_progress(ev, d):
        if ev == "segment":
            totals["segments"] += 1
            totals["frames"] += d["frames"]
        elif ev == "video_done":
            totals["videos_done"] += 1
        if quiet:
            return
        if ev in ("retry", "failed"):
            sys.stderr.write(f"\n{d['video']}: {'retrying' if ev == 'retry' else 'FAILED'} ({d['reason']})\n")
        el = time.perf_counter() - totals["t"]
        sys.stderr.write(f"\rbatch: {totals['videos_done']}/{len(jobs)} videos, {totals['segments']} segments, "
                         f"{totals['frames'] / el if el > 0 else 0.0:6.2f} fps")
        sys.stderr.flush()

    engine = None
    started = False
    n_workers = 0
    try:
        if jobs:
            started = init_ray(address, num_cpus=max(workers or 1, os.cpu_count() or 1))
            n_workers = pool_size(workers, opts.device)
            engine = Engine(opts, manifest, workers=n_workers, segment_frames=segment_frames,
                            max_attempts=max_attempts, overwrite=overwrite, on_progress=on_progress)
            engine.start()
            engine.run(jobs)
            if not quiet:
                sys.stderr.write("\n")
    finally:
        if engine is not None:
            engine.stop()
        if started:
            import ray

            ray.shutdown()
        records = {r.key: r for r in manifest.videos()}
        manifest.close()

    secs = time.perf_counter() - t0
    done = [j for j in jobs if j.state == COMPLETE]
    failed = failed_before + [
        {"input": j.key, "reason": j.reason, "attempts": j.attempts} for j in jobs if j.state != COMPLETE
    ]
    frames_done = sum(records[j.key].frames or 0 for j in done)
    computed = sum(j.frames_computed for j in jobs)
    footage = sum(records[j.key].duration or 0.0 for j in done)
    return {
        "input_dir": str(in_dir),
        "output_dir": str(out_dir),
        "videos": len(pairs),
        "done": [{"input": j.key, "output": str(j.output), "frames": records[j.key].frames,
                  "segments_reused": j.reused_segments, "streams": (j.streams or {}).get("streams")}
                 for j in done],
        "failed": failed,
        "skipped": skipped,
        "counts": {"done": len(done), "failed": len(failed), "skipped": len(skipped)},
        "frames": frames_done,
        "frames_computed": computed,
        "hours": round(footage / 3600.0, 6),
        "seconds": round(secs, 3),
        "fps": round(computed / secs, 4) if secs > 0 else None,
        "workers": n_workers,
        "segments_computed": engine.segments_run if engine else 0,
        "segments_reused": sum(j.reused_segments for j in jobs),
        "median_dispatch_seconds": _median(engine.latencies) if engine else None,
        "max_videos_in_flight": engine.max_videos_in_flight if engine else 0,
        "manifest": str(out_dir / MANIFEST_FILE),
    }


def _median(xs: list[float]) -> Optional[float]:
    if not xs:
        return None
    s = sorted(xs)
    m = len(s) // 2
    return round(s[m] if len(s) % 2 else 0.5 * (s[m - 1] + s[m]), 4)
