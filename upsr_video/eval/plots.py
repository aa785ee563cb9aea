"""Figures and tables for evaluation reports (matplotlib Agg: no display needed on render nodes)."""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PathLike = Union[str, os.PathLike]


def _prepare(path: PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def plot_per_frame(curves: Mapping[str, Sequence[float]], ylabel: str, path: PathLike,
                   xlabel: str = "frame pair (t-1, t)", title: Optional[str] = None) -> Path:
    """One line per method over frame (pair) index; NaN values (skipped pairs) show as gaps."""
    if not curves:
        raise ValueError("plot_per_frame: no curves given")
    p = _prepare(path)
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    try:
        for name, ys in curves.items():
            ys = np.asarray(ys, dtype=float)
            ax.plot(np.arange(1, len(ys) + 1), ys, label=name, lw=1.2, marker="." if len(ys) < 60 else None)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(p)
    finally:
        plt.close(fig)
    return p


def plot_bars(table: Mapping[str, Mapping[str, float]], metrics: Sequence[str], path: PathLike,
              title: Optional[str] = None) -> Path:
    """One panel per metric, one bar per method (metrics have different units, so no shared axis)."""
    if not table or not metrics:
        raise ValueError("plot_bars: empty table or metric list")
    for m in metrics:
        missing = [k for k, row in table.items() if m not in row]
        if missing:
            raise ValueError(f"plot_bars: metric {m!r} missing for {', '.join(missing)}")
    p = _prepare(path)
    methods = list(table)
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(3.2 * len(metrics), 4), 3.6), dpi=100, squeeze=False)
    try:
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for ax, m in zip(axes[0], metrics):
            vals = [float(table[k][m]) for k in methods]
            x = np.arange(len(methods))
            ax.bar(x, vals, color=[colours[i % len(colours)] for i in range(len(methods))])
            ax.set_xticks(x)
            ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
            ax.set_title(m, fontsize=10)
            for xi, v in zip(x, vals):
                if math.isfinite(v):
                    ax.annotate(f"{v:.4g}", (xi, v), ha="center", va="bottom", fontsize=7)
            ax.grid(axis="y", alpha=0.3)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(p)
    finally:
        plt.close(fig)
    return p


def image_grid(images: Mapping[str, np.ndarray], crop: Optional[tuple[int, int, int, int]] = None,
               path: Optional[PathLike] = None) -> Path:
    """Side-by-side previews of uint8 HWC RGB images, titled by name.

    `crop` = (x, y, w, h) in pixels of the first image's size: the region is outlined on the full
    images and a second row shows it enlarged (nearest neighbour, so SR artefacts stay visible).
    Images of other sizes (e.g. the LR input) are shown as is; the crop is scaled to them.
    """
    if path is None:
        raise ValueError("image_grid: path is required")
    if not images:
        raise ValueError("image_grid: no images given")
    for k, im in images.items():
        if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"image_grid: {k!r} is not a uint8 HxWx3 RGB array")
    ref_h, ref_w = next(iter(images.values())).shape[:2]
    if crop is not None:
        x, y, w, h = crop
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > ref_w or y + h > ref_h:
            raise ValueError(f"image_grid: crop {crop} outside the {ref_w}x{ref_h} image")
    p = _prepare(path)
    n = len(images)
    rows = 1 if crop is None else 2
    aspect = ref_h / ref_w
    fig, axes = plt.subplots(rows, n, figsize=(3.2 * n, 3.2 * aspect * rows + 0.4 * rows), dpi=100, squeeze=False)
    try:
        for j, (name, im) in enumerate(images.items()):
            ax = axes[0, j]
            ax.imshow(im, interpolation="nearest")
            ax.set_title(name, fontsize=9)
            ax.axis("off")
            if crop is not None:
                sy, sx = im.shape[0] / ref_h, im.shape[1] / ref_w
                cx, cy, cw, ch = x * sx, y * sy, w * sx, h * sy
                ax.add_patch(plt.Rectangle((cx - 0.5, cy - 0.5), cw, ch, fill=False, ec="red", lw=1.2))
                y0, y1 = int(round(cy)), max(int(round(cy + ch)), int(round(cy)) + 1)
                x0, x1 = int(round(cx)), max(int(round(cx + cw)), int(round(cx)) + 1)
                axes[1, j].imshow(im[y0:y1, x0:x1], interpolation="nearest")
                axes[1, j].axis("off")
        fig.tight_layout()
        fig.savefig(p)
    finally:
        plt.close(fig)
    return p


def _json_safe(v):
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None  # strict JSON has no NaN/inf
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def write_table(rows: Sequence[Mapping[str, object]], json_path: Optional[PathLike] = None,
                csv_path: Optional[PathLike] = None) -> None:
    """Rows of results to strict JSON (NaN/inf -> null) and/or CSV (columns: union of keys, first-seen order)."""
    rows = [dict(r) for r in rows]
    if json_path is not None:
        with open(_prepare(json_path), "w") as fh:
            json.dump(_json_safe(rows), fh, indent=2, allow_nan=False)
            fh.write("\n")
    if csv_path is not None:
        cols: list[str] = []
        for r in rows:
            cols.extend(k for k in r if k not in cols)
        with open(_prepare(csv_path), "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
