"""End-to-end throughput of `upsr-video upscale`: seconds per frame, the share of wall time outside the model,
batch 1 against larger batches, peak memory; on a GPU also frames/s per model, batch and precision and the
achieved TFLOP/s of upsr-large.

    python benchmarks/video_throughput.py [--cases realshort_x4,720p_1080p,270p_1080p,720p_4k]
        [--batches 1,4] [--repeats 2] [--threads 1] [--frames 8] [--json out.json]
    python benchmarks/video_throughput.py --cases realshort_x4,720p_1080p --batches 1 --temporal shared \
        --baseline-rev 62aae39 --baseline-batch 8 --repeats 3 --threads 1  # batch 1 against the sequential loop before batching
    python benchmarks/video_throughput.py --gpu --out FOLDER   # on a CUDA machine, at most ~8 minutes

CPU cases (the bundled default checkpoint, `--steps auto`, fp32, the real CLI path `upscale.upscale_video`:
probe, scene cuts, decode thread, model batches, encode thread, finalize/mux), each clip made here from the
shared data (never committed):

* realshort_x4: ../shared/data/video/realshort.mp4 (320x240, 36 frames) at --scale 4 (1280x960), all frames;
* 720p_1080p: the first --frames frames of cockatoo.mp4 (1280x720) to --target 1080p;
* 270p_1080p: the first --frames frames of bikes.mp4 scaled to 480x270, to --target 1080p (x4);
* 720p_4k: the first --frames4k frames of cockatoo.mp4 to --target 4k (tiled);
* 720p_1080p_segments: the first --frames-long frames of cockatoo.mp4 to --target 1080p in segments of 10 frames
  (not in the default cases: its peak RSS shows whether memory grows over a long run).

Every (case, batch, repeat) runs in its own interpreter (this script with `--one`) so its peak RSS
(ru_maxrss) is its own. Reported per case and batch: the median over repeats of seconds per frame (wall, all
of the run: probe, cuts, model load, decode, model, encode, mux), of model seconds per frame (time inside
TemporalUPSR.push_batch) and of the outside-model share 1 - model / wall; the ratio of each batch's wall time
per frame to batch 1's, measured in the same run. The clips are encoded here with libx264 CRF 12.
With --baseline-rev, the package as it was at that revision (a temporary git worktree; 62aae39 is the last
one with frames going one at a time through the model and no decode/encode threads) runs the same clips
and options with --baseline-batch (default 1; give 8 for 62aae39, whose batch size was its decode batch),
interleaved with the rows, and batch 1's wall time per frame and peak RSS are reported against its medians.

--gpu (CUDA only) writes gpu_throughput.json into --out and prints: (a) model frames/s at 480p -> 1080p
(854x480 -> 1920x1080) for the bundled default and upsr-large (random weights), batch 1/4/8, bf16 and fp32
(TemporalUPSR.push_batch on frames already on the GPU, CUDA-synchronised, median of timed batches after a
warm-up); upsr-large's achieved TFLOP/s (FLOPs of one frame counted with FlopCounterMode: convolutions, linear
layers and matmuls) and its share of the GPU's dense bf16 peak where the GPU is known (or --peak-tflops);
(b) the end-to-end run of the default model (auto precision and batch) on a 480p clip made from cockatoo:
frames/s and outside-model share; (c) the same with --compile. Configurations that do not fit in memory are
reported as "oom"; the whole mode stops starting new configurations after --budget seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data" / "video"

CASES = {  # name: (source, LR size (None: as is), frames (None: all; "frames"/"frames4k": from the options), options)
    "realshort_x4": ("realshort.mp4", None, None, {"target": None, "scale": 4.0}),
    "720p_1080p": ("cockatoo.mp4", None, "frames", {"target": "1080p"}),
    "270p_1080p": ("bikes.mp4", (480, 270), "frames", {"target": "1080p"}),
    "720p_4k": ("cockatoo.mp4", None, "frames4k", {"target": "4k"}),
    # a long run of many segments in one process (the local path), for the memory it keeps over time
    "720p_1080p_segments": ("cockatoo.mp4", None, "frames_long", {"target": "1080p", "segment_frames": 10}),
}
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
                    "RTX 4090": 165.0, "RTX 3090": 71.0}  # dense bf16 tensor-core peaks from the vendors' sheets


def make_clip(src: Path, out: Path, size, frames) -> Path:
    """The first `frames` frames of src (all: None), scaled to size (W, H) when given, H.264 CRF 12."""
    import av

    with av.open(str(src)) as c, av.open(str(out), "w") as o:
        v = c.streams.video[0]
        rate = v.average_rate or 25
        s = o.add_stream("libx264", rate=rate, options={"crf": "12", "preset": "fast"})
        w, h = size or (v.codec_context.width, v.codec_context.height)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        tb = 1 / Fraction(rate)
        s.codec_context.time_base = tb
        n = 0
        for f in c.decode(v):
            if frames is not None and n >= frames:
                break
            f = f.reformat(width=w, height=h, format="yuv420p")
            f.pts, f.time_base = n, tb
            for p in s.encode(f):
                o.mux(p)
            n += 1
        for p in s.encode(None):
            o.mux(p)
    return out


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _which_package(module_file: str, code) -> str:
    """Which code a run imported (a check that a baseline really ran the old package), without machine paths."""
    where = Path(module_file).resolve()
    if code and where.is_relative_to(Path(code).resolve()):
        return "baseline worktree"
    return "this checkout" if where.is_relative_to(REPO) else "another installation"


def run_one(cfg: dict) -> int:
    """Child: one end-to-end run; prints one JSON line."""
    import torch

    if cfg.get("code"):  # a baseline: the package as it was at --baseline-rev
        sys.path.insert(0, cfg["code"])
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    import upsr_video
    from upsr_video.process import UpscaleOptions
    from upsr_video.upscale import upscale_video

    from upsr_video.temporal import TemporalUPSR

    calls = []  # (start, end) of every model batch, to split the time outside the model into its parts
    real_push = TemporalUPSR.push_batch

    def timed_push(self, *a, **kw):
        t = time.perf_counter()
        try:
            return real_push(self, *a, **kw)
        finally:
            calls.append((t, time.perf_counter()))

    TemporalUPSR.push_batch = timed_push
    options = dict(cfg["options"])
    segment_frames = options.pop("segment_frames", None)
    opts = UpscaleOptions(**options, batch_size=cfg["batch"], threads=cfg.get("threads") or 0)
    t0 = time.perf_counter()
    s = upscale_video(cfg["clip"], cfg["out"], opts, overwrite=True, segment_frames=segment_frames)
    t1 = time.perf_counter()
    print(json.dumps({"frames": s["frames"], "seconds": s["seconds"], "model_seconds": s["model_seconds"],
                      "before_first_batch_s": calls[0][0] - t0, "after_last_batch_s": t1 - calls[-1][1],
                      "between_batches_s": sum(b[0] - a[1] for a, b in zip(calls, calls[1:])),
                      "input_size": s["input_size"], "output_size": s["output_size"], "steps": s["steps"],
                      "maxrss_mib": _maxrss_mib(), "threads": torch.get_num_threads(),
                      "package": _which_package(upsr_video.__file__, cfg.get("code"))}))
    return 0


def launch(cfg: dict) -> dict:
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(cfg)],
                       capture_output=True, text=True, cwd=str(REPO))
    for line in reversed(r.stdout.splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    return {"error": err[-1] if err else f"exit status {r.returncode}"}


def cpu_mode(args) -> dict:
    import torch

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    batches = [int(b) for b in args.batches.split(",")]
    for c in cases:
        if c not in CASES:
            raise SystemExit(f"--cases: unknown {c!r}; choose from {', '.join(CASES)}")
    tmp = Path(tempfile.mkdtemp(prefix="upsr-bench-"))
    baseline = baseline_checkout(args.baseline_rev, tmp) if args.baseline_rev else None
    result = {"mode": "cpu", "cases": {}, "threads": args.threads or torch.get_num_threads(),
              "repeats": args.repeats}
    for case in cases:
        src, size, frames, options = CASES[case]
        frames = {"frames": args.frames, "frames4k": args.frames4k, "frames_long": args.frames_long}.get(frames, frames)
        clip = make_clip(SHARED / src, tmp / f"{case}.mp4", size, frames) if (size or frames) else SHARED / src
        from upsr_video.video import probe

        n = probe(str(clip)).num_frames
        case_batches = [b for b in batches if b == 1 or b <= n]  # a batch larger than the clip is batch n again
        options = {**options, **({"temporal": args.temporal} if args.temporal else {})}
        runs, base_runs = {}, []
        for rep in range(args.repeats):
            for b in case_batches:  # interleaved, so slow drifts of the machine's load hit every batch alike
                cfg = {"clip": str(clip), "out": str(tmp / f"{case}_out.mp4"), "batch": b, "options": options,
                       "threads": args.threads}
                rec = launch(cfg)
                runs.setdefault(b, []).append(rec)
                state = rec.get("error") or (f"{rec['seconds'] / rec['frames']:.3f} s/frame, outside model "
                                             f"{100 * (1 - rec['model_seconds'] / rec['seconds']):.2f}%")
                print(f"  {case} batch {b} run {rep + 1}: {state}", flush=True)
            if baseline:  # the old code on the same clip with the same options (its batch_size: decoded frames)
                rec = launch({"clip": str(clip), "out": str(tmp / f"{case}_base.mp4"), "batch": args.baseline_batch,
                              "options": options, "threads": args.threads, "code": str(baseline)})
                base_runs.append(rec)
                state = rec.get("error") or f"{rec['seconds'] / rec['frames']:.3f} s/frame"
                print(f"  {case} baseline {args.baseline_rev} run {rep + 1}: {state}", flush=True)
        result["cases"][case] = {str(b): runs[b] for b in case_batches}
        if baseline:
            result.setdefault("baseline", {"rev": args.baseline_rev, "batch": args.baseline_batch,
                                           "cases": {}})["cases"][case] = base_runs
    if baseline:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)], capture_output=True)
    return result


def baseline_checkout(rev: str, tmp: Path) -> Path:
    """A detached git worktree of the repository at `rev` (removed at the end of the run)."""
    path = tmp / "baseline"
    r = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev],
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"--baseline-rev {rev}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'git failed'}")
    return path


def cpu_report(result: dict) -> None:
    print()
    hdr = ["case", "LR -> HR", "frames", "batch", "s/frame wall", "s/frame model", "outside model",
           "before 1st batch s", "between batches s", "after last batch s", "wall vs batch 1", "peak RSS MiB"]
    rows = []
    result["medians"] = {}
    for case, by_batch in result["cases"].items():
        base = None
        for b, runs in by_batch.items():
            ok = [r for r in runs if "error" not in r]
            if not ok:
                rows.append([case, "-", "-", b, "error: " + runs[0]["error"]] + [""] * 7)
                continue
            wall = statistics.median(r["seconds"] / r["frames"] for r in ok)
            model = statistics.median(r["model_seconds"] / r["frames"] for r in ok)
            out = statistics.median(1 - r["model_seconds"] / r["seconds"] for r in ok)
            base = wall if b == "1" else base
            r0 = ok[0]
            size = f"{r0['input_size'][0]}x{r0['input_size'][1]}->{r0['output_size'][0]}x{r0['output_size'][1]}"
            parts = [statistics.median(r[k] for r in ok) for k in
                     ("before_first_batch_s", "between_batches_s", "after_last_batch_s")]
            rows.append([case, size, r0["frames"], b, f"{wall:.3f}", f"{model:.3f}", f"{100 * out:.2f}%"]
                        + [f"{x:.2f}" for x in parts]
                        + [f"{wall / base:.3f}x" if base else "-", f"{max(r['maxrss_mib'] for r in ok):,.0f}"])
            result["medians"].setdefault(case, {})[b] = {
                "s_per_frame": wall, "model_s_per_frame": model, "outside_share": out,
                "vs_batch1": wall / base if base else None, "before_first_batch_s": parts[0],
                "between_batches_s": parts[1], "after_last_batch_s": parts[2],
                "peak_rss_mib": max(r["maxrss_mib"] for r in ok)}
    widths = [max(len(str(x)) for x in col) for col in zip(hdr, *rows)]
    print("  ".join(h.ljust(w) for h, w in zip(hdr, widths)))
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    base = result.get("baseline")
    if base:
        print(f"\nbaseline: the package at {base['rev']} (batch size {base['batch']}), same clip and options, runs "
              f"interleaved with the rows above:")
        for case, runs in base["cases"].items():
            ok = [r for r in runs if "error" not in r]
            if not ok or "1" not in result["medians"].get(case, {}):
                print(f"  {case}: " + (runs[0].get("error", "no batch-1 row") if runs else "no runs"))
                continue
            wall = statistics.median(r["seconds"] / r["frames"] for r in ok)
            rss = statistics.median(r["maxrss_mib"] for r in ok)
            now = result["medians"][case]["1"]["s_per_frame"]
            now_rss = statistics.median(r["maxrss_mib"] for r in result["cases"][case]["1"] if "error" not in r)
            base["cases"][case] = {"runs": runs, "s_per_frame": wall, "batch1_vs_baseline": now / wall,
                                   "peak_rss_mib": rss, "batch1_rss_vs_baseline": now_rss / rss}
            print(f"  {case}: baseline {wall:.3f} s/frame, batch 1 now {now:.3f} s/frame = {now / wall:.3f}x; "
                  f"peak RSS (median) {rss:,.0f} MiB, now {now_rss:,.0f} MiB = {now_rss / rss:.3f}x")
    print(f"(medians over {result['repeats']} runs per row; torch threads {result['threads']}; wall = the whole "
          f"`upscale` run incl. model load, scene cuts and mux; model = time inside TemporalUPSR.push_batch; the "
          f"time outside it split into: before the first model batch (probe, cuts, model load, first decode), "
          f"between batches (the compute thread waiting), after the last batch (the encoder's lookahead tail, mux))")


# ---------------------------------------------------------------------------------------------------- GPU
# random-weight models timed beside the bundled default: (denoiser preset, g preset); speed does not depend on
# the weights. large: the official UPSR network size; small-rlfn: the default's denoiser with the RLFN
# output-grid g (aux rlfn-out) of the RLFN candidate.
RANDOM_MODELS = {"large": ("upsr-large", "compact-s"), "small-rlfn": ("upsr-small", "rlfn-out")}
def gpu_mode(args) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from upsr_video.checkpoint import ModelSpec, load_pipeline
    from upsr_video.diffusion.schedule import ScheduleConfig
    from upsr_video.models.aux import AUX_PRESETS, build_aux
    from upsr_video.models.unet import DENOISER_PRESETS, build_denoiser
    from upsr_video.pipeline import UPSRPipeline
    from upsr_video.process import UpscaleOptions, auto_tiles, autocast_for, make_plan
    from upsr_video.temporal import TemporalOptions, TemporalUPSR

    if not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device here")
    t_start = time.perf_counter()
    name = torch.cuda.get_device_name()
    peak = args.peak_tflops or next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
    out = {"mode": "gpu", "gpu": name, "bf16_peak_tflops": peak, "model": [], "end_to_end": []}
    lw, lh = 854, 480
    from types import SimpleNamespace

    info = SimpleNamespace(width=lw, height=lh, display_size=(Fraction(lw), Fraction(lh)),
                           time_base=Fraction(1, 25), colour=None, pts=[0])

    def build(model: str):
        if model == "default":
            spec, pipe = load_pipeline(None, device="cuda")
        else:
            den_name, aux_name = RANDOM_MODELS[model]
            den, aux = build_denoiser(den_name), build_aux(aux_name)
            spec = ModelSpec(aux=AUX_PRESETS[aux_name].to_dict(), denoiser=DENOISER_PRESETS[den_name].to_dict())
            pipe = UPSRPipeline(den, aux, ScheduleConfig.from_dict(spec.schedule), device="cuda")
        pipe.optimize(channels_last=True)
        return spec, pipe

    for model in args.gpu_models.split(","):
        spec, pipe = build(model)
        for prec in ("bf16", "fp32"):
            for b in (1, 4, 8):
                if time.perf_counter() - t_start > args.budget:
                    out["model"].append({"model": model, "precision": prec, "batch": b, "status": "skipped (budget)"})
                    continue
                opts = UpscaleOptions(target="1080p", batch_size=b, precision=prec)
                plan = make_plan(info, spec, opts, [0])
                tiles = auto_tiles(pipe, opts, plan.out_size, (lh, lw))
                runner = TemporalUPSR(pipe, TemporalOptions(), plan.out_size, plan.start_step, tiles)
                lr = torch.rand(b, 3, lh, lw, device="cuda") * 2 - 1
                rec = {"model": model, "precision": prec, "batch": b, "denoiser_calls": plan.steps,
                       "out_size": list(plan.out_size)}
                try:
                    torch.cuda.reset_peak_memory_stats()
                    times, idx = [], 0
                    with autocast_for("cuda", prec):
                        for k in range(args.gpu_batches + 2):
                            torch.cuda.synchronize()
                            t0 = time.perf_counter()
                            runner.push_batch(list(range(idx, idx + b)), lr, [0] * b, [True] * b)
                            torch.cuda.synchronize()
                            if k >= 2:  # two warm-up batches (cuDNN autotuning, allocator)
                                times.append(time.perf_counter() - t0)
                            idx += b
                    med = statistics.median(times)
                    rec.update(status="ok", s_per_batch=med, frames_per_s=b / med,
                               cuda_peak_mib=torch.cuda.max_memory_allocated() / 2**20)
                    if model == "large":
                        with FlopCounterMode(display=False) as fc, autocast_for("cuda", prec):
                            TemporalUPSR(pipe, TemporalOptions(), plan.out_size, plan.start_step, tiles).push_batch(
                                [0], lr[:1], [0], [True])
                        rec["flops_per_frame"] = fc.get_total_flops()
                        rec["tflops_per_s"] = rec["flops_per_frame"] * rec["frames_per_s"] / 1e12
                        if peak and prec == "bf16":
                            rec["share_of_bf16_peak"] = rec["tflops_per_s"] / peak
                except torch.cuda.OutOfMemoryError:
                    rec["status"] = "oom"
                    torch.cuda.empty_cache()
                out["model"].append(rec)
                print(json.dumps(rec), flush=True)
        del pipe
        torch.cuda.empty_cache()

    if not args.gpu_end_to_end:
        out["seconds"] = time.perf_counter() - t_start
        return out
    tmp = Path(tempfile.mkdtemp(prefix="upsr-bench-gpu-"))
    clip = make_clip(SHARED / "cockatoo.mp4", tmp / "480p.mp4", (lw, lh), None)
    for compile_ in (False, True):
        if time.perf_counter() - t_start > args.budget:
            out["end_to_end"].append({"compile": compile_, "status": "skipped (budget)"})
            continue
        rec = launch({"clip": str(clip), "out": str(tmp / "o.mp4"), "batch": 0,
                      "options": {"target": "1080p", "compile": compile_}, "threads": None})
        if "error" not in rec:
            rec.update(frames_per_s=rec["frames"] / rec["seconds"],
                       model_frames_per_s=rec["frames"] / rec["model_seconds"],
                       outside_share=1 - rec["model_seconds"] / rec["seconds"])
        rec["compile"] = compile_
        out["end_to_end"].append(rec)
        print(json.dumps(rec), flush=True)
    out["seconds"] = time.perf_counter() - t_start
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="realshort_x4,720p_1080p,270p_1080p,720p_4k")
    ap.add_argument("--batches", default="1,4", help="model batch sizes to compare (1 first: the baseline)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--frames", type=int, default=8, help="frames of the 720p and 270p clips")
    ap.add_argument("--frames4k", type=int, default=2, help="frames of the 720p -> 4K clip")
    ap.add_argument("--frames-long", type=int, default=80, help="frames of the 720p_1080p_segments clip")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--gpu", action="store_true", help="the CUDA measurements (see the module docstring)")
    ap.add_argument("--out", default=None, help="--gpu: folder for gpu_throughput.json")
    ap.add_argument("--budget", type=float, default=420.0, help="--gpu: seconds after which no new config starts")
    ap.add_argument("--gpu-batches", type=int, default=5, help="--gpu: timed batches per configuration")
    ap.add_argument("--gpu-models", default="default,large",
                    help="--gpu: default (the bundled checkpoint) and/or random-weight " + ", ".join(RANDOM_MODELS))
    ap.add_argument("--no-gpu-end-to-end", dest="gpu_end_to_end", action="store_false",
                    help="--gpu: the model measurements only (no decoder or encoder needed)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="--gpu: dense bf16 peak of this GPU")
    ap.add_argument("--baseline-rev", default=None,
                    help="also run the package as it was at this git revision (batch-1 speed against it)")
    ap.add_argument("--baseline-batch", type=int, default=1, help="--baseline-rev's batch size (8 for 62aae39)")
    ap.add_argument("--temporal", default=None, help="--temporal of every run (default: the package's default)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one is not None:
        return run_one(json.loads(args.one))
    import torch

    print("command: python " + shlex.join(["benchmarks/video_throughput.py"] + (sys.argv[1:] if argv is None else argv)))
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{'GPU ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}; "
          f"load average (1 min) {os.getloadavg()[0]:.2f}", flush=True)
    if args.gpu:
        result = gpu_mode(args)
        folder = Path(args.out or ".")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "gpu_throughput.json").write_text(json.dumps(result, indent=1))
        print(f"wrote {folder / 'gpu_throughput.json'}")
        return 0
    result = cpu_mode(args)
    cpu_report(result)
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
