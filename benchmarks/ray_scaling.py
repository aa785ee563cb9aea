"""Ray scaling of the archive pipeline: frames/s with 1, 2, 4 CPU actors and the per-segment scheduling cost.

A synthetic archive (N small clips cut from the shared real videos) is up-scaled by the same Engine that
`upsr-video batch` uses, with actors started and their model loaded before the clock starts (steady state;
actor start-up is reported separately). Scheduling overhead is measured two ways: the round trip of a no-op
actor call carrying a segment descriptor, and the driver-side submit-to-start latency of real segments,
both compared with the median time of a real segment.

    python benchmarks/ray_scaling.py [--clips 6] [--frames 48] [--workers 1,2,4] [--repeats 3] [--checkpoint PATH]
                                     [--steps 1]

Without --checkpoint a tiny checkpoint is generated (the upsr-tiny denoiser when the models package has it,
else g alone), run by default with one denoiser call per frame so a CPU run takes minutes, not hours (`--steps auto`
takes the start step from the checkpoint's calibration table, as `upscale` does). Every actor runs one torch thread on one Ray CPU. On a
machine with fewer cores than actors the larger pools oversubscribe: the efficiency column then measures
contention, not Ray. The load average is printed before and after, since other processes skew the figures.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))


def make_clips(folder: Path, n: int, frames: int, w: int, h: int) -> list[Path]:
    """n clips of real content (windows of bikes.mp4 / cockatoo.mp4, down-scaled), H.264 at 25 fps."""
    import av
    import cv2

    sources = [SHARED / "data" / "video" / "bikes.mp4", SHARED / "data" / "video" / "cockatoo.mp4"]
    pool = []
    for src in sources:
        with av.open(str(src)) as c:
            for i, f in enumerate(c.decode(video=0)):
                pool.append(cv2.resize(f.to_ndarray(format="rgb24"), (w, h), interpolation=cv2.INTER_AREA))
                if i >= 200:
                    break
    paths = []
    for k in range(n):
        p = folder / f"clip{k:02d}.mp4"
        off = (k * 37) % max(1, len(pool) - frames)
        with av.open(str(p), "w") as out:
            s = out.add_stream("libx264", rate=25, options={"crf": "16"})
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            for f in pool[off : off + frames]:
                for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    out.mux(pkt)
            for pkt in s.encode():
                out.mux(pkt)
        paths.append(p)
    return paths


def make_checkpoint(path: Path) -> tuple[Path, str]:
    import torch

    from upsr_video.checkpoint import ModelSpec, build_models, save_checkpoint
    from upsr_video.models.aux import AUX_PRESETS

    torch.manual_seed(0)
    try:
        from upsr_video.models.unet import DENOISER_PRESETS

        den_cfg, label = DENOISER_PRESETS["upsr-tiny"].to_dict(), "upsr-tiny + compact-xs"
    except (ImportError, KeyError):
        den_cfg, label = None, "g only (compact-xs)"
    spec = ModelSpec(aux=AUX_PRESETS["compact-xs"].to_dict(), denoiser=den_cfg)
    den, aux = build_models(spec)
    return save_checkpoint(path, spec, den, aux), label


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def run_once(clips, in_dir: Path, out_dir: Path, opts, workers: int, segment_frames: int) -> dict:
    import ray

    from pipelines.archive import MANIFEST_FILE, plan_outputs
    from pipelines.manifest import Manifest
    from pipelines.runner import Engine, VideoJob, fingerprint

    out_dir.mkdir(parents=True)
    m = Manifest(out_dir / MANIFEST_FILE)
    jobs = []
    for src, dst in plan_outputs(clips, in_dir, out_dir, "auto"):
        key = src.relative_to(in_dir).as_posix()
        fp = fingerprint(str(src), opts)
        m.ensure_video(key, str(src), str(dst), fp)
        jobs.append(VideoJob(key, str(src.absolute()), dst.absolute(), fp))
    eng = Engine(opts, m, workers=workers, segment_frames=segment_frames, max_attempts=1)
    t0 = time.perf_counter()
    eng.start()
    ray.get([a.info.remote() for a in eng.actors])  # model loaded everywhere
    t_start = time.perf_counter() - t0
    seg_times = []

    t1 = time.perf_counter()
    eng.run(jobs)
    wall = time.perf_counter() - t1
    eng.stop()
    m.close()
    bad = [j.key for j in jobs if j.state != "complete"]
    if bad:
        raise SystemExit(f"benchmark run failed for {bad}: {[j.reason for j in jobs if j.state != 'complete']}")
    frames = sum(j.frames_computed for j in jobs)
    seg_times = eng.segment_seconds
    return {"fps": frames / wall, "wall": wall, "frames": frames, "start": t_start,
            "latency": median(eng.latencies), "segment": median(seg_times), "segments": eng.segments_run}


def noop_round_trip(opts, calls: int = 50) -> float:
    import ray

    from pipelines.actors import make_workers
    from pipelines.segments import Segment

    a = make_workers(1, opts.checkpoint, "cpu", 1)[0]
    ray.get(a.info.remote())
    seg = Segment("x.mp4", 0, 48, 0).to_dict()
    ts = []
    for _ in range(calls):
        t = time.perf_counter()
        ray.get(a.noop.remote(seg))
        ts.append(time.perf_counter() - t)
    ray.kill(a)
    return median(ts)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--size", default="96x72", help="clip size WxH")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--segment-frames", type=int, default=16)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--steps", default="1", help="denoiser calls per frame: auto or 1..T, as `upscale --steps`")
    args = ap.parse_args(argv)

    import ray

    from pipelines.runner import OBJECT_STORE_BYTES
    from upsr_video.process import UpscaleOptions
    from upsr_video.startstep import parse_steps

    counts = [int(x) for x in args.workers.split(",")]
    w, h = (int(v) for v in args.size.lower().split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="upsr-ray-bench-"))
    in_dir = tmp / "in"
    in_dir.mkdir()
    clips = make_clips(in_dir, args.clips, args.frames, w, h)
    ckpt, label = (Path(args.checkpoint), "given") if args.checkpoint else make_checkpoint(tmp / "tiny.safetensors")
    opts = UpscaleOptions(target=None, scale=2, checkpoint=str(ckpt), device="cpu", preset="ultrafast", crf=18,
                          steps=parse_steps(args.steps), threads=1)
    cores = os.cpu_count() or 1
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=max(counts + [cores]), include_dashboard=False, log_to_driver=False,
             object_store_memory=OBJECT_STORE_BYTES, logging_level=logging.ERROR)
    steps = "automatic steps" if args.steps == "auto" else f"{args.steps} step(s)"
    print(f"archive: {args.clips} clips x {args.frames} frames at {w}x{h} -> x2, segments of {args.segment_frames} "
          f"frames; model: {label}, {steps}; {cores} CPU cores; Ray {ray.__version__}; "
          f"median of {args.repeats} runs; load average before: {os.getloadavg()[0]:.2f}")
    rows = []
    for n in counts:
        runs = [run_once(clips, in_dir, tmp / f"out-w{n}-r{r}", opts, n, args.segment_frames) for r in range(args.repeats)]
        rows.append((n, {k: median([r[k] for r in runs]) for k in runs[0]}))
    noop = noop_round_trip(opts)
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)

    base = rows[0][1]["fps"]
    print(f"{'actors':>6} {'fps':>8} {'speedup':>8} {'effic.':>7} {'wall s':>7} {'actor start s':>13} "
          f"{'segment s':>9} {'submit->start s':>15}")
    for n, r in rows:
        sp = r["fps"] / base
        note = "  (oversubscribed: more actors than cores)" if n > cores else ""
        print(f"{n:>6} {r['fps']:>8.2f} {sp:>8.2f} {sp / n * rows[0][0]:>7.2f} {r['wall']:>7.2f} {r['start']:>13.2f} "
              f"{r['segment']:>9.3f} {r['latency']:>15.4f}{note}")
    seg1 = rows[0][1]["segment"]
    print(f"no-op actor call round trip (descriptor in, dict out): median {noop * 1e3:.2f} ms "
          f"= {100 * noop / seg1:.2f}% of a {args.segment_frames}-frame segment ({seg1:.3f} s, 1 actor)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
