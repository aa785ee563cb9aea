"""Ground-truth video with known motion, made from still images: a camera pan over a background image and a
sprite (an elliptical cut-out of a second image) moving across it, so there is occlusion and disocclusion.

Why: temporal defaults (mode, anchor strength) must be chosen on held-out training-pool data, and the training
pool is still images; a test set's clips (Vid4) only report. Motion is whole output pixels per frame and frames
are crops, never resampled, so every ground-truth frame is as sharp as the source image and consecutive frames
are exact shifts of each other (the LR frames move by sub-pixel amounts when the step is not a multiple of the
scale factor).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MotionSpec:
    """Velocities in pixels per frame, (dx, dy): the camera's over the background (the content moves by minus
    it) and the sprite's on the screen; `size` (H, W) of each frame, `sprite` its (h, w)."""

    camera: tuple[int, int]
    sprite_velocity: tuple[int, int]
    size: tuple[int, int] = (256, 256)
    sprite: tuple[int, int] = (72, 96)


def _ellipse(h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    return ((ys + 0.5 - h / 2) / (h / 2)) ** 2 + ((xs + 0.5 - w / 2) / (w / 2)) ** 2 <= 1.0


def moving_clip(background: np.ndarray, sprite_src: np.ndarray, spec: MotionSpec, frames: int) -> list[np.ndarray]:
    """`frames` HxWxC frames (dtype of background). The camera path is centred on the background and the sprite's
    path on the frame; raises ValueError when the background is too small for the path."""
    fh, fw = spec.size
    bh, bw = background.shape[:2]
    cx, cy = spec.camera
    span_x, span_y = abs(cx) * (frames - 1), abs(cy) * (frames - 1)
    if fw + span_x > bw or fh + span_y > bh:
        raise ValueError(f"a {bw}x{bh} background is too small for {frames} frames of {fw}x{fh} moving {spec.camera}")
    x0 = (bw - fw - span_x) // 2 + (span_x if cx < 0 else 0)
    y0 = (bh - fh - span_y) // 2 + (span_y if cy < 0 else 0)
    sh, sw = spec.sprite
    if sprite_src.shape[0] < sh or sprite_src.shape[1] < sw:
        raise ValueError("the sprite source is smaller than the sprite")
    oy, ox = (sprite_src.shape[0] - sh) // 2, (sprite_src.shape[1] - sw) // 2
    sprite = sprite_src[oy : oy + sh, ox : ox + sw]
    mask = _ellipse(sh, sw)
    vx, vy = spec.sprite_velocity
    sx0 = (fw - sw) // 2 - vx * (frames - 1) // 2
    sy0 = (fh - sh) // 2 - vy * (frames - 1) // 2
    out = []
    for t in range(frames):
        f = background[y0 + cy * t : y0 + cy * t + fh, x0 + cx * t : x0 + cx * t + fw].copy()
        sx, sy = sx0 + vx * t, sy0 + vy * t
        # the part of the sprite inside the frame
        ax, ay = max(sx, 0), max(sy, 0)
        bx, by = min(sx + sw, fw), min(sy + sh, fh)
        if ax < bx and ay < by:
            m = mask[ay - sy : by - sy, ax - sx : bx - sx]
            f[ay:by, ax:bx][m] = sprite[ay - sy : by - sy, ax - sx : bx - sx][m]
        out.append(f)
    return out


# The held-out set's motions, one per held-out pool image (cycled): slow to fast pans (0.25 to 3 LR pixels per
# frame at x4, sub-pixel for most), diagonal, and sprites crossing against the pan.
HOLDOUT_MOTIONS = (
    MotionSpec((1, 0), (3, 1)),
    MotionSpec((0, 2), (-4, 0)),
    MotionSpec((4, 1), (-6, 2)),
    MotionSpec((-3, 5), (5, -3)),
    MotionSpec((7, -2), (-2, 4)),
    MotionSpec((11, 3), (-9, 0)),
)


def fit_orientation(spec: MotionSpec, shape: tuple[int, int]) -> MotionSpec:
    """The spec with x and y swapped (camera and sprite) when the image is portrait and the camera moves more
    along x: the long axis takes the long path."""
    cx, cy = spec.camera
    if shape[0] > shape[1] and abs(cx) > abs(cy):
        return MotionSpec((cy, cx), spec.sprite_velocity[::-1], spec.size, spec.sprite[::-1])
    return spec
