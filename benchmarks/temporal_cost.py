"""Cost of the temporal modes per frame: flow estimation and warping (noise transport, |psi| history, previous
output) against the model's own time (g and the sampler), measured in the same runs.

    python benchmarks/temporal_cost.py [--checkpoint CKPT] [--frames 41] [--threads 1] [--batch 1] [--json out.json]

Runs every `--temporal` mode over the LR frames of Vid4 calendar (`../shared/data/vid4/calendar_BDx4`, 180x144,
x4 to 720x576) as `upscale` runs them (the checkpoint's calibrated start step, `--batch` frames per push, as
`upscale --batch-size`), and prints per mode the median milliseconds per frame of flow, warp and model (a push's
over its frames), the share (flow + warp) / model of the medians, and the wall time per frame. Flow is the time
the frame loop waits for it: on a CPU, as here, the flows are estimated in the loop (on a GPU they run on threads
beside g and mostly hide); the last line gives the same pairs' flow estimated alone, one after another. The
first 2 x noise_period frames are the warm-up of flow noise (one particle chain, then two), so the medians are
taken over the frames after them, where every chain is running: the steady state of a long shot. The issue's bar: flow + warping <= 15% of the model's time per frame.
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

from upsr_video.checkpoint import default_checkpoint_path, load_pipeline  # noqa: E402
from upsr_video.eval.compare import read_frames  # noqa: E402
from upsr_video.eval.sr_bench import to_tensor  # noqa: E402
from upsr_video.startstep import resolve_start  # noqa: E402
from upsr_video import motion as mo  # noqa: E402
from upsr_video.temporal import MODES, TemporalOptions, TemporalUPSR  # noqa: E402

CLIP = REPO.parent / "shared/data/vid4/calendar_BDx4"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(default_checkpoint_path()))
    ap.add_argument("--frames", type=int, default=41)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1, help="frames per push")
    ap.add_argument("--flow-threads", type=int, default=None, help="TemporalUPSR flow_threads (default: the device's)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    spec, pipe = load_pipeline(a.checkpoint)
    frames = read_frames(CLIP, a.frames)
    lr = [to_tensor(f).to(pipe.device) for f in frames]
    size = (frames[0].shape[0] * 4, frames[0].shape[1] * 4)
    start = resolve_start(spec, 4.0, "auto")
    res = {"checkpoint": Path(a.checkpoint).name, "size": size, "start_step": start, "threads": a.threads,
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
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
