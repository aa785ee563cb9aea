"""Padding to a network's spatial multiple, and overlapping tiles with smooth blending.

Tiles bound memory on large frames. Each tile is processed independently and the results are blended with
raised-cosine ramps over the overlap, so there is no visible seam (the official code averages tiles flatly and
draws independent noise per tile; here the noise is drawn for the whole frame by the caller, so tiling changes
nothing but the network's field of view).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Pad the bottom/right of an NCHW tensor to a multiple, by reflection where the tensor is large enough
    (replicate otherwise). Returns the padded tensor and the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def crop_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    return x[..., : size[0], : size[1]]


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles covering [0, length): stride tile - overlap, the last tile flush with the end.
    Offsets are multiples of `align` except possibly the last."""
    if tile >= length:
        return [0]
    stride = max(align, (tile - overlap) // align * align)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


def _ramp(n: int, overlap: int, at_start: bool, at_end: bool, device, dtype) -> Tensor:
    """1-D blending weight: raised-cosine ramps of `overlap` samples on interior edges, 1 elsewhere."""
    w = torch.ones(n, device=device, dtype=dtype)
    if overlap > 0:
        k = torch.arange(overlap, device=device, dtype=dtype)
        r = 0.5 - 0.5 * torch.cos(math.pi * (k + 0.5) / overlap)
        if not at_start:
            w[:overlap] = r
        if not at_end:
            w[-overlap:] = torch.minimum(w[-overlap:], r.flip(0))
    return w


def tiled_apply(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    tile: int,
    overlap: int,
    align: int = 1,
    batch: int = 1,
) -> Tensor:
    """Apply a same-size map `fn` (NCHW -> NC'HW) tile by tile and blend the overlaps smoothly.

    `tile` must be a multiple of `align` (e.g. the network's spatial multiple); the frame must be at least one
    tile large or smaller than a tile in which case it is processed whole. `batch` tiles go through `fn` in one
    call (stacked along the batch axis: `batch` x N images), which keeps a GPU busy on a single frame; memory
    grows with it."""
    n, _, h, w = x.shape
    th, tw = min(tile, h), min(tile, w)
    ys, xs = tile_starts(h, th, overlap, align), tile_starts(w, tw, overlap, align)
    if len(ys) == 1 and len(xs) == 1:
        return fn(x)
    cells = [(yi, xi) for yi in range(len(ys)) for xi in range(len(xs))]
    batch = max(1, int(batch))
    out = None
    acc = torch.zeros((1, 1, h, w), device=x.device, dtype=torch.float32)
    for g in range(0, len(cells), batch):
        group = cells[g : g + batch]
        res_all = fn(torch.cat([x[..., ys[yi] : ys[yi] + th, xs[xi] : xs[xi] + tw] for yi, xi in group])).float()
        for j, (yi, xi) in enumerate(group):
            y, x0 = ys[yi], xs[xi]
            res = res_all[j * n : (j + 1) * n]
            if out is None:
                out = torch.zeros((n, res.shape[1], h, w), device=x.device, dtype=torch.float32)
            # overlap actually shared with the neighbour (the last tile can overlap more than `overlap`)
            oy0 = ys[yi - 1] + th - y if yi > 0 else 0
            oy1 = y + th - ys[yi + 1] if yi + 1 < len(ys) else 0
            ox0 = xs[xi - 1] + tw - x0 if xi > 0 else 0
            ox1 = x0 + tw - xs[xi + 1] if xi + 1 < len(xs) else 0
            wy = _edge_weight(th, oy0, oy1, x.device)
            wx = _edge_weight(tw, ox0, ox1, x.device)
            wgt = wy[:, None] * wx[None, :]
            out[..., y : y + th, x0 : x0 + tw] += res * wgt
            acc[..., y : y + th, x0 : x0 + tw] += wgt
    return (out / acc).to(x.dtype)


def _edge_weight(n: int, ov_start: int, ov_end: int, device) -> Tensor:
    w = torch.ones(n, device=device, dtype=torch.float32)
    if ov_start > 0:
        w = torch.minimum(w, _ramp(n, ov_start, False, True, device, torch.float32))
    if ov_end > 0:
        w = torch.minimum(w, _ramp(n, ov_end, True, False, device, torch.float32))
    return w
