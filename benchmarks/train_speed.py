"""Training speed per batch size: seconds per step and crops per second of a training config, to choose the batch
for a machine (a lent GPU is launch-bound at the CPU recipes' batches of 8-16 crops).

    python benchmarks/train_speed.py --config configs/g-rlfn-video.yaml --batches 16,32,64 --workers 14
    python benchmarks/train_speed.py --config configs/upsr-rlfn-video.yaml --batches 8,32 --window 10 --repeats 2

For each batch size the real training loop (`Trainer.train`, loader processes, autocast on CUDA, EMA) runs
(repeats + 1) windows of --window steps in one call; the first window warms up (kernel choice, allocator,
loader start) and is not counted. A window is timed between two log records, each of which reads the loss back
from the device, so queued GPU work is inside it. Prints the median seconds per step, crops per second and
their ratio to the first batch size's, and the peak CUDA memory. Timings depend on other load on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def measure(config: str, batch: int, window: int, repeats: int, workers: int, device: str | None) -> dict:
    import torch

    from training.config import TrainConfig
    from training.trainer import Trainer

    with tempfile.TemporaryDirectory(prefix="upsr-train-speed-") as tmp:
        steps = window * (repeats + 1)
        cfg = TrainConfig.load(config, {"out": tmp, "batch": batch, "steps": steps, "log_every": window,
                                        "val_every": 0, "ckpt_every": 10**9, "workers": workers})
        tr = Trainer(cfg, device=device, log_stdout=False)
        if tr.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        tr.train()
        times = [json.loads(line)["time"] for line in (Path(tmp) / "log.jsonl").read_text().splitlines()
                 if '"loss"' in line]
    per_step = [(b - a) / window for a, b in zip(times, times[1:])]
    s = statistics.median(per_step)
    rec = {"batch": batch, "s_per_step": s, "crops_per_s": batch / s, "windows_s_per_step": per_step,
           "device": str(tr.device)}
    if tr.device.type == "cuda":
        rec["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--batches", default="16,32,64")
    ap.add_argument("--window", type=int, default=20, help="steps per timed window")
    ap.add_argument("--repeats", type=int, default=3, help="timed windows per batch size (after one warm-up)")
    ap.add_argument("--workers", type=int, default=max(0, (os.cpu_count() or 2) - 2), help="loader processes")
    ap.add_argument("--device", default=None, help="cpu, cuda (default: cuda if available)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import torch

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{'GPU ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}; "
          f"{args.config}, workers {args.workers}", flush=True)
    rows = []
    for b in (int(x) for x in args.batches.split(",")):
        try:
            rec = measure(args.config, b, args.window, args.repeats, args.workers, args.device)
        except torch.cuda.OutOfMemoryError:
            rec = {"batch": b, "status": "oom"}
        rows.append(rec)
        if "s_per_step" in rec:
            rec["crops_per_s_vs_first"] = rec["crops_per_s"] / rows[0].get("crops_per_s", float("nan"))
            print(f"batch {b:4d}: {rec['s_per_step']:.4f} s/step, {rec['crops_per_s']:.1f} crops/s "
                  f"({rec['crops_per_s_vs_first']:.2f}x batch {rows[0]['batch']})"
                  + (f", peak {rec['cuda_peak_mib']:.0f} MiB" if "cuda_peak_mib" in rec else ""), flush=True)
        else:
            print(f"batch {b:4d}: {rec['status']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"config": args.config, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
