"""Distributed up-scaling on Ray: segments of one or many videos on a shared pool of actors.

The driver prepares each video once (probe, scene cuts, plan), splits it into frame-index segments, puts the
plan in the object store once per video and hands segment descriptors to idle actors. Parts land in a work
folder beside the output (`.<output name>.upsr-work/`); the manifest records each finished part, so a rerun
after any crash recomputes only what was not finished. When all parts of a video exist they are
concatenated losslessly with audio/subtitles from the original (`finalize`) and the work folder is removed.

`run_distributed` is the `upsr_video.runners` entry point `ray` used by `upsr-video upscale --workers N`;
`Engine` is shared with the archive command (pipelines/archive.py).
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

# the fingerprint, manifest, work folder and segments are the local driver's too (upsr_video.upscale)
from upsr_video.manifest import DONE, MANIFEST_NAME, Manifest, part_name, work_dir_for
from upsr_video.process import UpscaleError, UpscaleOptions
from upsr_video.resume import EXECUTION_ONLY, checkpoint_identity, fingerprint  # noqa: F401
from upsr_video.segments import Segment, default_segment_frames, make_segments

from .actors import cluster_cpus, cluster_gpus, make_workers, one_line, use_gpus

OBJECT_STORE_BYTES = 96 * 1024 * 1024  # plans and descriptors only: frames never go through the store

PREPARE_THREADS = 2  # videos probed and scanned for cuts at once, beside the scheduling loop
PREPARE_DECODE_THREADS = 1  # decoder threads of each preparation: the actors own the cores
POLL_S = 0.05  # while preparations run, how often the loop looks at them
REPLACEMENT_START_S = 600.0  # how long work may wait only for replacement workers that cannot be placed

ACTIVE, QUEUED, COMPLETE, FAILED_JOB, SKIPPED = "active", "queued", "complete", "failed", "skipped"


# -- Ray session --------------------------------------------------------------------------------------------
CONNECT_TIMEOUT_S = 5.0


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast (one line) when a host:port Ray address does not accept connections: ray.init itself keeps
    retrying an unreachable GCS for minutes, printing warnings. `auto` and `local` are Ray's to resolve."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UpscaleError(f"--ray-address must be auto or host:port, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        why = "timed out" if isinstance(e, socket.timeout) else (e.strerror or type(e).__name__)
        raise UpscaleError(f"cannot join Ray at {address}: {why} (is a Ray head running there?)") from None


def init_ray(address: Optional[str] = None, num_cpus: Optional[int] = None) -> bool:
    """Connect to `address` (auto or host:port; default $RAY_ADDRESS) or start a new local instance (never an
    existing `ray start` cluster unless asked to). Returns True when this call started/joined Ray (so the caller
    shuts it down), False when Ray was already initialised in this process (tests, notebooks)."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    kw = {"ignore_reinit_error": True, "log_to_driver": False, "logging_level": logging.ERROR}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        if address:
            check_reachable(address)
            ray.init(address=address, **kw)
        else:
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                     object_store_memory=OBJECT_STORE_BYTES, **kw)
    except UpscaleError:
        raise
    except Exception as e:
        where = f"join Ray at {address}" if address else "start a local Ray instance"
        raise UpscaleError(f"cannot {where}: {one_line(e)}") from None
    return True


def pool_size(requested: Optional[int], device: str) -> int:
    """Actors to start: the request, capped by what the cluster can host (one GPU each, or one CPU each).
    None: one per GPU, else one per CPU."""
    gpus = use_gpus(device)
    cap = cluster_gpus() if gpus else cluster_cpus()
    cap = max(1, cap)
    n = cap if requested is None else int(requested)
    if n < 1:
        raise UpscaleError(f"--workers must be >= 1, got {requested}")
    return min(n, cap)


def os_error(e: OSError) -> str:
    where = f": {e.filename}" if getattr(e, "filename", None) else ""
    return f"{e.strerror or one_line(e)}{where}"


def footage_seconds(info) -> Optional[float]:
    d = getattr(info, "duration", None)
    if d:
        return float(d)
    pts, tb = list(getattr(info, "pts", []) or []), getattr(info, "time_base", None)
    if len(pts) >= 2 and tb is not None:
        span = (pts[-1] - pts[0]) * float(tb)
        return span + span / (len(pts) - 1)
    fps = getattr(info, "fps", None) or getattr(info, "frame_rate", None)
    n = getattr(info, "num_frames", 0)
    return float(n / float(fps)) if fps else None


# -- the engine -----------------------------------------------------------------------------------------------
@dataclass
class VideoJob:
    key: str  # manifest key
    input: str
    output: Path
    fingerprint: str = ""  # of input + options: part names carry it, so a changed run never reuses old parts
    state: str = QUEUED
    reason: Optional[str] = None
    attempts: int = 0
    prep: object = None
    plan_ref: object = None
    segments: list[Segment] = field(default_factory=list)
    parts: dict[int, str] = field(default_factory=dict)
    inflight: set[int] = field(default_factory=set)
    frames_computed: int = 0
    reused_segments: int = 0
    model_seconds: float = 0.0
    t0: float = 0.0
    seconds: float = 0.0
    duration: Optional[float] = None
    streams: Optional[dict] = None  # what finalize did with each stream of the input

    @property
    def work(self) -> Path:
        return work_dir_for(self.output)

    def part_path(self, seg: Segment) -> Path:
        return self.work / part_name(self.fingerprint, seg)


class Engine:
    """Runs VideoJobs on a pool of UpscaleWorker actors; the manifest makes every step resumable."""

    def __init__(self, opts: UpscaleOptions, manifest: Manifest, *, workers: int, spec=None,
                 segment_frames: Optional[int] = None, max_attempts: int = 1, overwrite: bool = False,
                 on_progress: Optional[Callable[[str, dict], None]] = None, keep_names: tuple[str, ...] = ()):
        if max_attempts < 1:
            raise UpscaleError(f"--max-attempts must be >= 1, got {max_attempts}")
        if segment_frames is not None and segment_frames < 1:
            raise UpscaleError(f"--segment-frames must be >= 1, got {segment_frames}")
        self.opts, self.manifest, self.workers = opts, manifest, workers
        self.segment_frames, self.max_attempts, self.overwrite = segment_frames, max_attempts, overwrite
        self.on_progress = on_progress or (lambda ev, d: None)
        self.keep_names = keep_names  # files of the work folder to leave (a manifest kept there)
        self.spec = spec
        self.actors: list = []
        self.latencies: list[float] = []  # driver submit -> actor start, seconds
        self.segment_seconds: list[float] = []  # actor-side wall time of each computed segment
        self.segments_run = 0
        self.segments_reused = 0
        self.replacements = 0
        self.max_videos_in_flight = 0  # most videos with segments running at once (several videos share the pool)

    # .. lifecycle ..
    def start(self) -> None:
        if self.spec is None:
            from upsr_video.checkpoint import CheckpointError, default_checkpoint_path, read_checkpoint

            try:
                self.spec, _ = read_checkpoint(self.opts.checkpoint or default_checkpoint_path())
            except CheckpointError as e:
                raise UpscaleError(str(e)) from None
        self.actors = make_workers(self.workers, self.opts.checkpoint, self.opts.device, self.opts.threads,
                                   compile=self.opts.compile)

    def stop(self) -> None:
        import ray

        for a in self.actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:
                pass
        self.actors = []

    # .. one video's preparation ..
    def _begin(self, job: VideoJob) -> Optional[list[int]]:
        """Scheduling thread: count the attempt; the scene cuts the manifest already has (None: detect them)."""
        rec = self.manifest.video(job.key)
        job.attempts = self.manifest.begin_attempt(job.key)
        job.t0 = job.t0 or time.perf_counter()
        return rec.cuts if rec and rec.cuts is not None and rec.frames is not None else None

    def _prepare(self, job: VideoJob, cuts: Optional[list[int]]):
        """Preparation thread: the streams check, probe, scene cuts and plan (seconds of decoding for a long
        video); no manifest or Ray calls, so the scheduling thread keeps feeding the actors meanwhile."""
        from upsr_video.upscale import check_streams, prepare

        check_streams(job.input, job.output, self.opts, warn=False)  # a stream the container cannot hold: fail early
        return prepare(job.input, self.opts, spec=self.spec, cuts=cuts, threads=PREPARE_DECODE_THREADS)

    def _activate(self, job: VideoJob, prep) -> list[Segment]:
        """Scheduling thread: split (reused from the manifest), find finished parts, put the plan in the object
        store. Returns the segments still to compute; raises on a bad input."""
        import ray

        rec = self.manifest.video(job.key)
        job.prep = prep
        n = int(job.prep.info.num_frames)
        if n <= 0:
            raise UpscaleError(f"{job.input}: no video frames")
        split = rec.split if rec and rec.split and rec.frames == n and rec.split[-1][1] == n else None
        if split is None:
            seg_len = self.segment_frames or default_segment_frames(n, self.workers)
            segs = make_segments(job.input, n, seg_len, job.prep.plan.cuts)
            job.duration = footage_seconds(job.prep.info)
            self.manifest.set_plan(job.key, n, job.duration, job.prep.plan.cuts, [(s.start, s.stop) for s in segs])
        else:
            segs = [Segment(job.input, a, b, i) for i, (a, b) in enumerate(split)]
            job.duration = rec.duration
        job.segments = segs
        job.work.mkdir(parents=True, exist_ok=True)
        done = {r.idx: r for r in self.manifest.segments(job.key) if r.state == DONE}
        todo = []
        for s in segs:
            r = done.get(s.index)
            if r and r.part == str(job.part_path(s)) and Path(r.part).exists() and (r.start, r.stop) == (s.start, s.stop):
                job.parts[s.index] = r.part
                job.reused_segments += 1
            elif s.index not in job.parts:
                todo.append(s)
        job.plan_ref = ray.put(job.prep.plan)
        job.state = ACTIVE
        self.on_progress("prepared", {"video": job.key, "frames": n, "segments": len(segs),
                                      "done_frames": sum(s.frames for s in segs if s.index in job.parts)})
        return todo

    # .. outcomes ..
    def _fail(self, job: VideoJob, reason: str, retry: Callable[[], None]) -> None:
        """A failed attempt: retry (a new attempt) while attempts remain, else the video is failed."""
        if job.state not in (ACTIVE, QUEUED):
            return
        job.reason = reason
        self.manifest.video_failed(job.key, reason)  # the failure counts even if the driver dies next
        if job.attempts < self.max_attempts:
            self.on_progress("retry", {"video": job.key, "reason": reason, "attempt": job.attempts + 1})
            retry()
        else:
            job.state = FAILED_JOB
            self.on_progress("failed", {"video": job.key, "reason": reason})

    def _finalize(self, job: VideoJob) -> None:
        from upsr_video.video import finalize

        parts = [job.parts[s.index] for s in job.segments]
        try:
            job.streams = finalize(parts, job.input, str(job.output), overwrite=self.overwrite, fps=self.opts.fps,
                                   streams=self.opts.streams)
        except Exception as e:
            job.state = FAILED_JOB
            job.reason = f"finalize: {one_line(e)}"
            self.manifest.video_failed(job.key, job.reason)
            self.on_progress("failed", {"video": job.key, "reason": job.reason})
            return
        job.seconds = time.perf_counter() - job.t0
        self.manifest.video_done(job.key, job.seconds)  # written only once the output is in place
        job.state = COMPLETE
        self._clean_work(job)
        self.on_progress("video_done", {"video": job.key, "frames": len(job.prep.plan.pts) if job.prep else None})

    def _clean_work(self, job: VideoJob) -> None:
        if not job.work.is_dir():
            return
        for f in job.work.iterdir():
            if any(f.name.startswith(k) for k in self.keep_names):
                continue
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)
        try:
            job.work.rmdir()
        except OSError:
            pass  # the manifest still lives there (single-video mode): the caller removes it

    def _replace(self, dead) -> Optional[object]:
        """A worker whose call failed for good (restarts or call retries exhausted): kill it for sure (an actor
        still restarting would keep its CPU/GPU and starve its replacement) and start a fresh one (bounded)
        so the pool keeps its size. The new actor gets work only once it is placed and loaded (the scheduling
        loop waits for its `info` call): after a node loss it may never be placed."""
        import ray

        try:
            ray.kill(dead, no_restart=True)
        except Exception:
            pass
        if dead in self.actors:
            self.actors.remove(dead)
        if self.replacements >= 2 * max(1, self.workers):
            return None
        self.replacements += 1
        new = make_workers(1, self.opts.checkpoint, self.opts.device, self.opts.threads,
                           compile=self.opts.compile)[0]
        self.actors.append(new)
        return new

    # .. the scheduling loop ..
    def run(self, jobs: list[VideoJob]) -> list[VideoJob]:
        """Feed the actors segment after segment while a small pool of threads prepares the next videos (probe,
        scene cuts), so no actor waits for a new video's preparation."""
        with ThreadPoolExecutor(max_workers=PREPARE_THREADS, thread_name_prefix="prepare") as pool:
            try:
                return self._run(jobs, pool)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, jobs: list[VideoJob], pool: ThreadPoolExecutor) -> list[VideoJob]:
        import ray
        from ray.exceptions import RayActorError, RayError

        todo: deque[VideoJob] = deque(j for j in jobs if j.state == QUEUED)
        queue: deque[tuple[VideoJob, Segment]] = deque()
        inflight: dict = {}
        preparing: dict[Future, VideoJob] = {}
        idle = deque(self.actors)
        starting: dict = {}  # ref of a replacement's `info` call -> the actor (idle once that call returns)
        waiting_since: Optional[float] = None  # work left and only starting replacements to run it
        lookahead = 2 * max(1, len(self.actors))

        def start_preparing(job: VideoJob) -> None:
            try:
                cuts = self._begin(job)
            except Exception as e:
                job.state = QUEUED
                self._fail(job, one_line(e), lambda: todo.append(job))
                return
            preparing[pool.submit(self._prepare, job, cuts)] = job

        def prepared(fut: Future, job: VideoJob) -> None:
            try:
                segs = self._activate(job, fut.result())
            except Exception as e:  # bad input: a fact about this video, never a stop for the others
                job.state = QUEUED
                self._fail(job, one_line(e), lambda: todo.append(job))
                return
            if not segs and len(job.parts) == len(job.segments):
                self._finalize(job)
            for s in segs:
                queue.append((job, s))

        while True:
            while todo and len(queue) < lookahead and len(preparing) < PREPARE_THREADS:
                start_preparing(todo.popleft())
            for fut in [f for f in preparing if f.done()]:
                prepared(fut, preparing.pop(fut))
            while idle and queue:
                job, seg = queue.popleft()
                if job.state != ACTIVE or seg.index in job.parts or seg.index in job.inflight:
                    continue
                actor = idle.popleft()
                self.manifest.segment_started(job.key, seg.index)
                ref = actor.run.remote(seg.to_dict(), job.plan_ref, str(job.part_path(seg)))
                inflight[ref] = (actor, job, seg, time.time(), job.attempts)
                job.inflight.add(seg.index)
                self.max_videos_in_flight = max(self.max_videos_in_flight, len({id(v[1]) for v in inflight.values()}))
            if not inflight:
                if preparing:
                    wait_futures(list(preparing), return_when=FIRST_COMPLETED)
                    continue
                if not todo and not queue:
                    break
                if idle:
                    continue
                if not starting:
                    raise UpscaleError("all Ray workers died and could not be replaced")
                waiting_since = waiting_since or time.time()
                if time.time() - waiting_since > REPLACEMENT_START_S:
                    raise UpscaleError(f"no Ray worker could be started within {REPLACEMENT_START_S:.0f} s to replace "
                                       "the lost ones (does the cluster have a free CPU/GPU for one?)")
            else:
                waiting_since = None
            # with preparations running, look back at them often; otherwise wait for an actor
            timeout = POLL_S if preparing else (None if inflight else 1.0)
            ready, _ = ray.wait(list(inflight) + list(starting), num_returns=1, timeout=timeout)
            for ref in ready:
                if ref in starting:
                    actor = starting.pop(ref)
                    try:
                        ray.get(ref)
                        idle.append(actor)
                    except RayError:
                        new = self._replace(actor)
                        if new is not None:
                            starting[new.info.remote()] = new
                    continue
                actor, job, seg, t_sub, attempt = inflight.pop(ref)
                job.inflight.discard(seg.index)
                try:
                    res = ray.get(ref)
                    idle.append(actor)
                except RayActorError as e:
                    new = self._replace(actor)
                    if new is not None:
                        starting[new.info.remote()] = new
                    res = {"error": f"worker died: {one_line(e)}"}
                except RayError as e:
                    idle.append(actor)
                    res = {"error": one_line(e)}
                if "error" in res:
                    self.manifest.segment_pending(job.key, seg.index)
                    if job.state == ACTIVE and attempt < job.attempts:
                        # submitted in an earlier attempt that already failed and was retried: this failure
                        # belongs to that attempt, so it is retried within the current one, not counted again
                        queue.append((job, seg))
                        continue

                    def retry(job=job, seg=seg):
                        job.attempts = self.manifest.begin_attempt(job.key)
                        queue.append((job, seg))

                    self._fail(job, f"frames [{seg.start}, {seg.stop}): {res['error']}", retry)
                    continue
                if "started" in res:
                    self.latencies.append(max(0.0, res["started"] - t_sub))
                self.manifest.segment_done(job.key, seg.index, res["path"], res["frames"], res.get("seconds", 0.0))
                job.parts[seg.index] = res["path"]
                if res.get("reused"):
                    job.reused_segments += 1
                    self.segments_reused += 1
                else:
                    job.frames_computed += int(res["frames"])
                    job.model_seconds += float(res.get("model_seconds", 0.0))
                    self.segment_seconds.append(float(res.get("seconds", 0.0)))
                    self.segments_run += 1
                self.on_progress("segment", {"video": job.key, "frames": int(res["frames"]), "index": seg.index})
                if job.state == ACTIVE and len(job.parts) == len(job.segments):
                    self._finalize(job)
        return jobs


# -- single video ---------------------------------------------------------------------------------------------
def run_distributed(
    input: str,
    output: str,
    opts: UpscaleOptions,
    *,
    overwrite: bool = False,
    workers: Optional[int] = 1,
    address: Optional[str] = None,
    segment_frames: Optional[int] = None,
    quiet: bool = False,
    max_attempts: int = 2,
    on_event: Optional[Callable[[str, dict], None]] = None,
    resume: bool = True,
) -> dict:
    """Up-scale one video on `workers` Ray actors (None: one per GPU, else one per CPU of the cluster). Same
    output as the local driver, whatever the split. An interrupted run resumes from the work folder's manifest
    (parts made with other inputs/options are never reused). `on_event(name, data)` sees the engine's events
    (prepared, segment, retry, failed, video_done). Returns the JSON summary."""
    from upsr_video.upscale import check_output

    t0 = time.perf_counter()
    out = check_output(output, overwrite)
    if not Path(input).is_file():
        raise UpscaleError(f"input not found: {input}")
    if workers is not None and workers < 1:
        raise UpscaleError(f"--workers must be >= 1, got {workers}")
    if segment_frames is not None and segment_frames < 1:
        raise UpscaleError(f"--segment-frames must be >= 1, got {segment_frames}")
    from upsr_video.upscale import check_streams

    check_streams(input, out, opts)  # before Ray starts: a stream the output container cannot hold is an error
    started = init_ray(address, num_cpus=max(workers or 1, os.cpu_count() or 1))
    work = work_dir_for(out)
    manifest = None
    engine = None
    prog: dict = {}
    try:
        import ray

        gcs = ray.get_runtime_context().gcs_address
        n_workers = pool_size(workers, opts.device)
        work.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(work / MANIFEST_NAME)
        key = str(Path(input).resolve())
        fp = fingerprint(input, opts)
        manifest.ensure_video(key, str(input), str(out), fp, reset=not resume)
        if not resume:  # start over: the actors would otherwise return parts already in place as finished
            for f in work.glob("part-*"):
                f.unlink(missing_ok=True)

        def on_progress(ev, d):
            if on_event is not None:
                on_event(ev, d)
            if quiet:
                return
            if ev == "prepared":
                from upsr_video.cli import Progress

                prog["p"] = Progress(d["frames"], label=f"upscale ({n_workers} ray workers)")
                if d["done_frames"]:
                    prog["p"](d["done_frames"])
            elif ev == "segment" and "p" in prog:
                prog["p"](d["frames"])
            elif ev == "retry":
                sys.stderr.write(f"\nretrying ({d['reason']})\n")

        engine = Engine(opts, manifest, workers=n_workers, segment_frames=segment_frames, max_attempts=max_attempts,
                        overwrite=overwrite, on_progress=on_progress, keep_names=(MANIFEST_NAME,))
        engine.start()
        # absolute paths: actors (on other nodes too) do not share the driver's working directory
        job = VideoJob(key, str(Path(input).absolute()), out.absolute(), fp)
        engine.run([job])
        if job.state != COMPLETE:
            raise UpscaleError(job.reason or "distributed run failed")
    except BaseException as e:
        if manifest is not None and work.is_dir() and not any(work.glob("part-*")):
            shutil.rmtree(work, ignore_errors=True)  # ours, and nothing worth resuming
        if isinstance(e, OSError):  # e.g. the work folder cannot be created: one line, not a traceback
            raise UpscaleError(os_error(e)) from None
        raise
    finally:
        if engine is not None:
            engine.stop()
        if manifest is not None:
            manifest.close()
        if started:
            import ray

            ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    from upsr_video.upscale import run_summary

    prep = job.prep
    return {
        **run_summary(input, out, prep, opts, len(prep.plan.pts), time.perf_counter() - t0, job.model_seconds,
                      engine.spec.denoiser is not None, job.streams),
        "workers": n_workers,
        "segments": len(job.segments),
        "split": [[s.start, s.stop] for s in job.segments],
        "attempts": job.attempts,
        "segments_reused": job.reused_segments,
        "frames_computed": job.frames_computed,
        "ray_address": address or os.environ.get("RAY_ADDRESS") or "local",
        "ray_gcs": gcs,
    }
