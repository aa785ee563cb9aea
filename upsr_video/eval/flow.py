"""Optical flow, backward warping and occlusion masks for the temporal metrics.

Direction convention (used everywhere in `upsr_video.eval`): ``flow = dis_flow(a, b)`` is defined on the
pixel grid of `a` and points into `b`, so that ``a(x) ~= b(x + flow(x))``; ``flow[..., 0]`` is the x
(column) displacement, ``flow[..., 1]`` the y (row) displacement, in pixels.  ``warp(b, flow)``
samples `b` at ``x + flow(x)`` and so brings `b` onto `a`'s grid (backward warping).
"""
from __future__ import annotations

import functools
import threading
from typing import Optional

import cv2
import numpy as np


def to_grey(frame: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 RGB (or already HxW grey) -> uint8 HxW grey."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {frame.dtype}")
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected HxWx3 RGB or HxW grey, got shape {frame.shape}")


def _grey_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ga, gb = to_grey(a), to_grey(b)
    if ga.shape != gb.shape:
        raise ValueError(f"frame shapes differ: {ga.shape} vs {gb.shape}")
    return ga, gb


def make_dis(finest_scale: Optional[int] = None):
    """OpenCV DIS. finest_scale None: the MEDIUM preset (the metrics' flow, on HR frames). finest_scale s: the
    model's flow on LR frames (`upsr_video.motion`), patch 8, stride 3, refined down to pyramid level s (0 = every
    pixel). At level 0, on the held-out clips of known motion (`scripts/temporal_modes.py --flow-presets`) its
    end-point error is 0.049 LR px on the pan and 0.088 on the moving sprite, against 0.057 / 0.095 for the FAST
    preset, 0.164 / 0.386 for plain MEDIUM, 0.22 / 0.20 for Farneback and 1.3 for no motion, at ~14 ms per 180x144
    pair (FAST: ~1 ms). End to end FAST is cheaper but worse: the flow mode's E_warp on those clips rose from
    0.736x to 0.759x that of per-frame noise. Levels 1 and 2 trade accuracy for 4x and 16x fewer pixels on large
    frames (`benchmarks/flow_level.py`)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    if finest_scale is not None:
        dis.setFinestScale(finest_scale)
        dis.setPatchSize(8)
        dis.setPatchStride(3)
    return dis


_DIS = threading.local()  # this thread's DIS instances, by finest_scale


def _thread_dis(finest_scale: Optional[int]):
    """`make_dis(finest_scale)`, one instance per thread and setting: an instance is not thread-safe, and making one
    costs about as much as a third of a 180x144 flow (its calc keeps no state from one call to the next)."""
    cache = _DIS.__dict__.setdefault("by_scale", {})
    if finest_scale not in cache:
        cache[finest_scale] = make_dis(finest_scale)
    return cache[finest_scale]


def dis_flow(a: np.ndarray, b: np.ndarray, finest_scale: Optional[int] = None) -> np.ndarray:
    """DIS flow (`make_dis`) from `a` to `b` on grey frames: float32 HxWx2, a(x) ~= b(x + F(x))."""
    ga, gb = _grey_pair(a, b)
    return _thread_dis(finest_scale).calc(ga, gb, None)


def farneback_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Farneback flow from `a` to `b` with TecoGAN's tOF parameters (0.5, 3, 15, 3, 5, 1.2, 0)."""
    ga, gb = _grey_pair(a, b)
    return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> np.ndarray:
    """The pixel coordinates (x, y) of an h x w grid, HxWx2 float32 (cached, read-only)."""
    g = np.empty((h, w, 2), np.float32)
    g[..., 0], g[..., 1] = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)[:, None]
    g.flags.writeable = False
    return g


def warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: out(x) = img(x + flow(x)), bilinear, border replicated; keeps img's dtype.

    Pass float images to avoid re-quantising; works on flow fields (HxWx2 float32) too.
    """
    h, w = flow.shape[:2]
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be HxWx2, got {flow.shape}")
    if img.shape[:2] != (h, w):
        raise ValueError(f"image {img.shape[:2]} and flow {flow.shape[:2]} sizes differ")
    pos = _grid(h, w) + flow.astype(np.float32, copy=False)  # one 2-channel map: what remap reads fastest
    src = img.astype(np.float32) if img.dtype == np.float64 else img
    out = cv2.remap(src, pos, None, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if out.ndim == 2 and img.ndim == 3:  # cv2 drops a trailing singleton channel
        out = out[..., None]
    return out.astype(img.dtype, copy=False)


def _sq(f: np.ndarray) -> np.ndarray:
    return f[..., 0] ** 2 + f[..., 1] ** 2


def occlusion_mask(flow_fw: np.ndarray, flow_bw: np.ndarray, boundary: bool = True) -> np.ndarray:
    """Occlusion / motion-boundary mask of Lai et al. 2018 (after Ruder et al. 2016), True = unreliable.

    `flow_fw` is defined on the grid the mask is for (frame A, pointing to frame B); `flow_bw` is the
    reverse flow (on B, pointing to A).  With W(flow_bw)(x) = flow_bw(x + flow_fw(x)) (flow_bw brought
    onto A's grid by flow_fw), a pixel is occluded where

        |flow_fw + W(flow_bw)|^2 > 0.01 (|flow_fw|^2 + |W(flow_bw)|^2) + 0.5        (fw-bw inconsistent)
        or |grad flow_fw|^2 > 0.01 |flow_fw|^2 + 0.002                             (motion boundary)

    The gradient is taken of the flow that lives on the mask's grid.  Lai's code names it ``bw_flow``
    inside ``detect_occlusion`` but calls ``detect_occlusion(bw_flow, fw_flow)`` for the warping error,
    i.e. exactly this.  Gradients are forward differences (zero on the last row/column), as there.
    boundary=False keeps only the fw-bw check (Sundaram et al. 2010): the model's LR flow uses that, because at
    LR the boundary term flags most textured moving pixels.
    """
    if flow_fw.shape != flow_bw.shape or flow_fw.ndim != 3 or flow_fw.shape[2] != 2:
        raise ValueError(f"flows must both be HxWx2, got {flow_fw.shape} and {flow_bw.shape}")
    f = flow_fw.astype(np.float32, copy=False)  # read only below
    bw = warp(flow_bw.astype(np.float32, copy=False), f)
    inconsistent = _sq(f + bw) > 0.01 * (_sq(f) + _sq(bw)) + 0.5
    if not boundary:
        return inconsistent
    du = np.zeros_like(f)
    dv = np.zeros_like(f)
    du[:, :-1] = f[:, :-1] - f[:, 1:]
    dv[:-1, :] = f[:-1, :] - f[1:, :]
    grad_sq = (du**2 + dv**2).sum(axis=-1)
    boundary = grad_sq > 0.01 * _sq(f) + 0.002
    return inconsistent | boundary
