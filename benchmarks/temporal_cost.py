"""Cost of the temporal modes per frame: flow estimation and warping (noise transport, |psi| sums, previous
output) against the model's own time (g and the sampler), measured in the same runs.

    python benchmarks/temporal_cost.py [--checkpoint CKPT] [--frames 41] [--threads 1] [--batch 1] [--json out.json]
        [--clip FOLDER_OR_VIDEO --scale F]

Runs every `--temporal` mode over the LR frames of Vid4 calendar (`../shared/data/vid4/calendar_BDx4`, 180x144,
x4 to 720x576; or the first --frames of --clip, up-scaled by --scale: `--clip ../shared/data/video/cockatoo.mp4
--scale 1.5 --frames 25` is 720p -> 1080p) as `upscale` runs them (the checkpoint's calibrated start step, `--batch` frames per push, as
`upscale --batch-size`), and prints per mode the median milliseconds per frame of flow, warp and model (a push's
over its frames), the share (flow + warp) / model of the medians, and the wall time per frame. Flow is the time
the frame loop waits for it: on a CPU, as here, the flows are estimated in the loop (on a GPU they run on threads
beside g and mostly hide); the last line gives the same pairs' flow estimated alone, one after another. The
first 2 x noise_period frames are the warm-up of flow noise (one noise chain, then two), so the medians are
taken over the frames after them, where every chain is running: the steady state of a long shot. The issue's bar: flow + warping <= 15% of the model's time per frame.

`--parts` then times the pieces alone on the same pairs (medians over --repeats passes): the two DIS calls and the
rest of `motion.estimate`, the flows' resize to the output, one noise transport (both chains' 6 channels), and the warps along the backward flow (the two running sums of
|psi|, 4 channels each, bilinear; the previous output, 3 channels bicubic); and, not a time, the median share of
the output's pixels whose noise the transport draws afresh each frame (disoccluded or reached by no sample; there
the noise does not follow the content). The particles there are never reborn, unlike a chain's every
2 x noise_period frames, so the sub-pixel offsets accumulate for the whole run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from upsr_video.checkpoint import default_checkpoint_path  # noqa: E402
from upsr_video.eval.compare import read_frames  # noqa: E402
from upsr_video.eval.sr_bench import to_tensor  # noqa: E402
from upsr_video.process import load_for_run, use_threads  # noqa: E402
from upsr_video.startstep import resolve_start  # noqa: E402
from upsr_video import motion as mo  # noqa: E402
from upsr_video.temporal import MODES, TemporalOptions, TemporalUPSR  # noqa: E402

CLIP = REPO.parent / "shared/data/vid4/calendar_BDx4"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(default_checkpoint_path()))
    ap.add_argument("--clip", default=str(CLIP), help="LR frames: a folder of images or a video (default: Vid4 calendar)")
    ap.add_argument("--scale", type=float, default=4.0, help="output size over the clip's (1.5: a 720p clip to 1080p)")
    ap.add_argument("--frames", type=int, default=41)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1, help="frames per push")
    ap.add_argument("--flow-threads", type=int, default=None, help="TemporalUPSR flow_threads (default: the device's)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (on a GPU the wall times compare; the flow / warp /"
                    " model split is only indicative, as the runner does not wait for the GPU between them)")
    ap.add_argument("--parts", action="store_true", help="also time the flow's and the warping's pieces alone")
    ap.add_argument("--repeats", type=int, default=3, help="passes over the pairs for --parts")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    use_threads(a.threads)  # torch and OpenCV, as `upscale --threads`
    spec, pipe = load_for_run(a.checkpoint, a.device)  # as upscale's processes: allocator, layout on CUDA
    sync = torch.cuda.synchronize if torch.device(pipe.device).type == "cuda" else (lambda: None)
    frames = read_frames(a.clip, a.frames)
    lr = [to_tensor(f).to(pipe.device) for f in frames]
    size = (round(frames[0].shape[0] * a.scale), round(frames[0].shape[1] * a.scale))
    start = resolve_start(spec, a.scale, "auto")
    res = {"checkpoint": Path(a.checkpoint).name, "clip": Path(a.clip).name, "device": str(pipe.device), "size": size,
           "start_step": start, "threads": a.threads,
           "batch": a.batch, "flow_threads": a.flow_threads, "modes": {}}
    print(f"{Path(a.checkpoint).name}: {len(lr)} frames {frames[0].shape[1]}x{frames[0].shape[0]} -> {size[1]}x{size[0]}, "
          f"start step {start}, {a.threads} thread(s), batch {a.batch}")
    print("| mode | flow ms | warp ms | model ms | (flow + warp) / model | wall ms |\n|---|---|---|---|---|---|")
    warm = 2 * TemporalOptions().noise_period
    for mode in a.modes.split(","):
        opts = TemporalOptions(mode)
        if len(lr) <= warm + 2 * a.batch:
            raise SystemExit(f"--frames must exceed {warm + 2 * a.batch}")
        runner = TemporalUPSR(pipe, opts, size, start, flow_threads=a.flow_threads)
        per = {k: [] for k in (*runner.seconds, "wall")}
        for i in range(0, len(lr) - a.batch + 1, a.batch):
            before = dict(runner.seconds)
            t0 = time.perf_counter()
            runner.push_batch(list(range(i, i + a.batch)), torch.cat(lr[i : i + a.batch]), [0] * a.batch, [True] * a.batch)
            sync()
            wall = time.perf_counter() - t0
            if i >= warm:
                for k in runner.seconds:
                    per[k].append(1000 * (runner.seconds[k] - before[k]) / a.batch)
                per["wall"].append(1000 * wall / a.batch)
        med = {k: statistics.median(v) for k, v in per.items()}
        share = (med["flow"] + med["warp"]) / med["model"]
        res["modes"][mode] = {"median_ms": med, "share": share, "frames_timed": len(per["model"]) * a.batch}
        print(f"| {mode} | {med['flow']:.1f} | {med['warp']:.1f} | {med['model']:.1f} | {share:.3f} | {med['wall']:.1f} |",
              flush=True)
    alone = []  # the baseline: the same pairs' flow one after another, nothing beside it
    for i in range(warm, len(lr)):
        t0 = time.perf_counter()
        mo.estimate(lr[i - 1], lr[i], size)
        alone.append(1000 * (time.perf_counter() - t0))
    res["flow_alone_ms"] = statistics.median(alone)
    print(f"flow estimated alone, frame after frame (the same pairs): {res['flow_alone_ms']:.1f} ms per frame")
    if a.parts:
        res["parts_ms"], res["fresh_noise_share"] = parts(lr, size, warm, a.repeats, sync)
        print("pieces alone (median ms): " + ", ".join(f"{k} {v:.2f}" for k, v in res["parts_ms"].items()))
        print(f"noise drawn afresh per frame (median share of the output's pixels): {res['fresh_noise_share']:.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


def parts(lr: list, size: tuple[int, int], first: int, repeats: int, sync) -> tuple[dict, float]:
    """Median milliseconds of the temporal modes' pieces, each timed alone on the pairs from `first` on, and the
    median share of the output's pixels whose noise the transport draws afresh (so it does not follow the
    content there: disoccluded, or reached by no sample)."""
    import cv2

    from upsr_video.eval.flow import dis_flow

    times: dict[str, list[float]] = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.setdefault(name, []).append(1000 * (time.perf_counter() - t0))
        return out

    h, w = size
    gen = torch.Generator().manual_seed(0)
    dev = lr[0].device
    sums = [torch.rand(1, 4, h, w, generator=gen).contiguous(memory_format=torch.channels_last).to(dev)
            for _ in range(2)]
    prev = (torch.rand(1, 3, h, w, generator=gen) * 2 - 1).to(dev)
    particles = mo.NoiseParticles.fresh(torch.randn(1, 6, h, w, generator=gen).to(dev))
    shares = []  # of the output's pixels that take fresh noise per transport: disoccluded or reached by no sample

    def fresh(k: int):
        shares.append(k / (h * w))
        return torch.randn(6, k, generator=gen).to(dev)

    for _ in range(repeats):
        for i in range(first, len(lr)):
            grey = [cv2.cvtColor(mo._rgb(x), cv2.COLOR_RGB2GRAY) for x in (lr[i - 1], lr[i])]
            level = mo.flow_level(*grey[0].shape)
            fw = timed("DIS forward", lambda: dis_flow(grey[0], grey[1], level))
            bw = timed("DIS backward", lambda: dis_flow(grey[1], grey[0], level))
            m = timed("estimate", lambda: mo.estimate(lr[i - 1], lr[i], size))
            timed("flows to the output size", lambda: mo.up_flows([fw, bw], size))
            particles = timed("noise transport (6 channels)", lambda: mo.transport(particles, m, fresh))
            timed("|psi| sums warp (2 x 4 channels, bilinear)", lambda: [m.back(x) for x in sums])
            timed("anchor warp (3 channels, bicubic)", lambda: m.back(prev, mode="bicubic"))
    med = {k: statistics.median(v) for k, v in times.items()}
    dis = [a + b for a, b in zip(times["DIS forward"], times["DIS backward"])]
    med["estimate minus the DIS pair (medians)"] = med["estimate"] - statistics.median(dis)
    return med, statistics.median(shares)


if __name__ == "__main__":
    sys.exit(main())
