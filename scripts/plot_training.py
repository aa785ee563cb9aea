"""Training curves of one or more runs: loss, validation PSNR-Y gain over bicubic and LPIPS against step.

    python scripts/plot_training.py runs/g-video runs/upsr-video -o reports/training_curves.png

Reads each run's log.jsonl (written by training.trainer); one row of panels per run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_log(run: Path) -> tuple[list[dict], list[dict]]:
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in recs if "loss" in r and "event" not in r]
    val = [r for r in recs if r.get("event") == "val"]
    return train, val


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("-o", "--out", default="reports/training_curves.png")
    a = ap.parse_args(argv)
    fig, axes = plt.subplots(len(a.runs), 3, figsize=(13, 3.4 * len(a.runs)), squeeze=False)
    for row, run in zip(axes, a.runs):
        train, val = read_log(Path(run))
        name = Path(run).name
        row[0].plot([r["step"] for r in train], [r["loss"] for r in train], lw=0.8)
        row[0].set(title=f"{name}: training loss", xlabel="step", yscale="log")
        for key in sorted({k for r in val for k in r if k.startswith("val_gain_x")}):
            row[1].plot([r["step"] for r in val], [r[key] for r in val], marker="o", label=key.replace("val_gain_", ""))
        row[1].axhline(0, color="grey", lw=0.5)
        row[1].set(title=f"{name}: val PSNR-Y - bicubic (dB)", xlabel="step")
        row[1].legend(fontsize=8)
        row[2].plot([r["step"] for r in val], [r.get("val_lpips", float("nan")) for r in val], marker="o", color="C3")
        row[2].set(title=f"{name}: val LPIPS-alex", xlabel="step")
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
