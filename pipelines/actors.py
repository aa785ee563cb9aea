"""The Ray actor that up-scales segments: one model load per process, many segments.

`UpscaleWorker.run(segment, plan, out_path)` is `process_segment` plus idempotence: a part already in place
under its final name with the expected frame count is returned as is (process_segment renames its temporary
file only on success, so a final name never holds a partial part). Errors come back as an `error` field
(one line) rather than an exception: the driver decides about retries, and Ray's own retries
(`max_restarts`, `max_task_retries`) are kept for what they are for, a worker process that died.

Two environment hooks exist for fault-injection tests and audits (forwarded from the driver with every
other `UPSR_*` variable):
- `UPSR_PIPELINES_FAULT_MARKER=path`: the first segment run that can create this file (O_EXCL, so exactly one
  in a cluster sharing the folder) kills its own worker process with os._exit after its first frame.
- `UPSR_PIPELINES_SEGMENT_LOG=path`: every model load appends `load<TAB><TAB><TAB><TAB>pid<TAB>t0<TAB>t1` and
  every segment actually computed (not reused) `segment<TAB>video<TAB>start<TAB>stop<TAB>pid<TAB>t0<TAB>t1`
  (t0, t1: wall-clock seconds when the work began and ended).
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import ray

from upsr_video.segments import Segment
from upsr_video.video.probe import part_frames

FAULT_MARKER_ENV = "UPSR_PIPELINES_FAULT_MARKER"
SEGMENT_LOG_ENV = "UPSR_PIPELINES_SEGMENT_LOG"
MAX_RESTARTS = 3
MAX_TASK_RETRIES = 3


def one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return msg[0] if msg and msg[0] else type(e).__name__


def _fault_hook():
    """A progress callback that kills this process after the first frame, once per marker file."""
    marker = os.environ.get(FAULT_MARKER_ENV)
    if not marker:
        return None
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return None
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)

    def die(_n):
        os._exit(137)

    return die


def _log(kind: str, video: str, start, stop, t0: float, t1: float) -> None:
    path = os.environ.get(SEGMENT_LOG_ENV)
    if path:
        with open(path, "a") as f:  # O_APPEND: whole short lines from several processes do not interleave
            f.write(f"{kind}\t{video}\t{start}\t{stop}\t{os.getpid()}\t{t0:.6f}\t{t1:.6f}\n")


class UpscaleWorker:
    """Holds one UPSRPipeline. Created through `make_workers` (resources and restart policy)."""

    def __init__(self, checkpoint: Optional[str], device: str = "auto", threads: int = 0, compile: bool = False):
        """threads: torch's and OpenCV's threads (process.use_threads); 0: the CPUs Ray assigned to this actor (its
        decoder and encoder threads are derived from the same number, see process.io_threads)."""
        import torch

        from upsr_video.process import load_for_run, resolve_device, use_threads

        if device.startswith("cuda:"):
            device = "cuda"  # Ray exposes the actor's GPU as the only visible one
        self.device = resolve_device(device)
        if threads <= 0:
            try:
                threads = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)) or 1
            except Exception:  # outside Ray (direct use in tests)
                threads = 1
        use_threads(max(1, threads))
        self.threads = torch.get_num_threads()
        t0, w0 = time.perf_counter(), time.time()
        self.spec, self.pipe = load_for_run(checkpoint, self.device, compile)
        self.load_seconds = time.perf_counter() - t0
        _log("load", "", "", "", w0, time.time())
        self.segments_done = 0

    def info(self) -> dict:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "device": str(self.device),
            "threads": self.threads,
            "diffusion": bool(self.pipe.is_diffusion),
            "load_seconds": round(self.load_seconds, 3),
        }

    def noop(self, segment: dict) -> dict:
        """A zero-work call with the same argument shape: measures scheduling overhead."""
        return {"index": Segment.from_dict(segment).index, "started": time.time(), "pid": os.getpid()}

    def run(self, segment: dict | Segment, plan, out_path: str) -> dict:
        from upsr_video.process import process_segment

        started = time.time()
        seg = segment if isinstance(segment, Segment) else Segment.from_dict(segment)
        out = Path(out_path)
        base = {"index": seg.index, "start": seg.start, "stop": seg.stop, "path": str(out), "pid": os.getpid(),
                "started": started}
        try:
            if out.exists():
                n = part_frames(out)
                if n == seg.frames:
                    return {**base, "frames": n, "seconds": 0.0, "model_seconds": 0.0, "reused": True, "ended": time.time()}
                out.unlink()  # not the part this segment needs: redo it
            res = process_segment(seg.video, seg.start, seg.stop, plan, self.pipe, str(out), _fault_hook())
        except Exception as e:  # reported, not raised: one bad segment is a fact about its video, not the worker
            return {**base, "error": f"{one_line(e)}", "error_type": type(e).__name__, "ended": time.time()}
        self.segments_done += 1
        _log("segment", seg.video, seg.start, seg.stop, started, time.time())
        return {**base, **{k: v for k, v in asdict(res).items() if k != "path"}, "reused": False, "ended": time.time()}


def cluster_gpus() -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def cluster_cpus() -> int:
    return int(ray.cluster_resources().get("CPU", 0))


def forwarded_env() -> dict[str, str]:
    """The driver's UPSR_* variables, so workers on any node see the same settings and hooks."""
    return {k: v for k, v in os.environ.items() if k.startswith("UPSR_")}


def use_gpus(device: str) -> bool:
    """GPU actors when the options allow a GPU and the cluster has one."""
    from upsr_video.process import UpscaleError

    gpus = cluster_gpus()
    if device.startswith("cuda") and gpus == 0:
        raise UpscaleError(f"--device {device}: the Ray cluster has no GPU")
    return device != "cpu" and gpus > 0


def gpu_actor_cpus() -> int:
    """CPUs each GPU actor holds: the fewest CPUs per GPU over the alive GPU nodes (at least 1), so one actor per
    GPU fits on every node and, together, their torch, decoder and encoder threads use the node's cores without
    oversubscribing them."""
    try:
        per = [int(n["Resources"].get("CPU", 0)) // int(n["Resources"]["GPU"]) for n in ray.nodes()
               if n.get("Alive") and int(n.get("Resources", {}).get("GPU", 0)) > 0]
    except Exception:  # Ray not initialised
        per = []
    return max(1, min(per)) if per else 1


def actor_options(device: str = "auto", max_restarts: int = MAX_RESTARTS,
                  max_task_retries: int = MAX_TASK_RETRIES) -> tuple[dict, str]:
    """Ray options of one UpscaleWorker and the torch device it runs on: one GPU and its node's share of CPUs
    (gpu_actor_cpus) each when the cluster has GPUs (and --device allows), else one CPU each; always restartable
    with retried calls."""
    gpu = use_gpus(device)
    opts = {"num_cpus": gpu_actor_cpus() if gpu else 1, "num_gpus": 1 if gpu else 0,
            "max_restarts": int(max_restarts), "max_task_retries": int(max_task_retries)}
    env = forwarded_env()
    if env:
        opts["runtime_env"] = {"env_vars": env}
    return opts, (device if gpu else "cpu")


def make_workers(n: int, checkpoint: Optional[str], device: str = "auto", threads: int = 0,
                 max_restarts: int = MAX_RESTARTS, max_task_retries: int = MAX_TASK_RETRIES,
                 compile: bool = False) -> list:
    """n actors (see actor_options); torch threads from the CPUs each holds unless `threads` says otherwise. A
    worker that dies is restarted (model reloaded) and its in-flight call retried by Ray, up to the given counts."""
    opts, dev = actor_options(device, max_restarts, max_task_retries)
    cls = ray.remote(UpscaleWorker)
    return [cls.options(**opts).remote(checkpoint, dev, threads, compile) for _ in range(n)]
