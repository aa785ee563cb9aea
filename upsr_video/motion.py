"""Model-side motion between consecutive frames: LR optical flow, warping, and noise that follows the flow.

Flow is estimated on the LR frames (16x fewer pixels than a x4 output, so it costs milliseconds) with OpenCV
DIS and brought to the output grid. Conventions as in `upsr_video.eval.flow`: a flow lives on the grid of the
frame it is defined on and points into the other frame; `warp(img, flow)` samples img at x + flow(x).

The diffusion noise must stay unit Gaussian and spatially white per pixel, whatever the motion: bilinear
warping averages neighbouring samples and shrinks the variance (to 0.25-1 per warp, compounding), so noise is
moved as particles instead. Every sample carries its sub-pixel position, is pushed along the forward flow and
lands on the nearest pixel; a pixel reached by several samples keeps the one that lands closest, and a pixel
reached by none, or disoccluded, gets a fresh sample. Each output value is thus one distinct N(0, 1) sample:
the statistics are exact, and slow motion accumulates in the sub-pixel positions instead of rounding away.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .eval.flow import dis_flow, occlusion_mask
from .eval.flow import warp as np_warp  # the metrics' cv2 backward warp: same convention


def _rgb(frame: Tensor) -> np.ndarray:
    """[1,3,h,w] RGB in [-1,1] -> uint8 HxWx3."""
    return np.ascontiguousarray(((frame[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy())


def _to_t(a: np.ndarray) -> Tensor:
    """HxWxC -> [1,C,H,W] (a channels-last view); HxW -> [1,1,H,W]."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    return (t.permute(2, 0, 1) if t.ndim == 3 else t[None])[None]


@functools.lru_cache(maxsize=8)
def grid_coords(h: int, w: int, device=None) -> Tensor:
    """[1,2,h,w] pixel coordinates (x, y). Cached (per size and device): never modify the result in place."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([xs, ys])[None]


@functools.lru_cache(maxsize=8)
def grid_rows(h: int, w: int, device=None) -> Tensor:
    """grid_coords as one row (x, y) per pixel in raster order, [h*w, 2]. Cached: never modify in place."""
    return grid_coords(h, w, device)[0].permute(1, 2, 0).reshape(h * w, 2).contiguous()


def warp(img: Tensor, flow: Tensor, mode: str = "bilinear") -> Tensor:
    """Backward warp out(x) = img(x + flow(x)); img [N,C,H,W], flow [N,2,H,W] in pixels; border replicated;
    mode bilinear or bicubic (Keys, a = -0.75, in both implementations below).

    On the CPU a single frame goes through cv2.remap (`_remap`), about 3x faster than grid_sample (measured on a
    stack of 15 maps at the output size). Elsewhere grid_sample."""
    if img.device.type == "cpu" and img.shape[0] == 1 and flow.shape[0] == 1:
        return _remap(img, sampling_map(flow), mode)
    h, w = flow.shape[-2:]
    pos = grid_coords(h, w, flow.device) + flow
    gx = pos[:, 0] / max(w - 1, 1) * 2 - 1
    gy = pos[:, 1] / max(h - 1, 1) * 2 - 1
    grid = torch.stack([gx, gy], dim=-1).to(img.dtype)
    return F.grid_sample(img, grid, mode=mode, padding_mode="border", align_corners=True)


def sampling_map(flow: Tensor) -> np.ndarray:
    """cv2.remap's map for a backward warp along flow ([1,2,H,W]): the positions x + flow(x), HxWx2 float32."""
    h, w = flow.shape[-2:]
    return (grid_rows(h, w).view(h, w, 2) + flow[0].float().permute(1, 2, 0)).numpy()


def _remap(img: Tensor, pos: np.ndarray, mode: str) -> Tensor:
    """img [1,C,H,W] on the CPU sampled at pos (`sampling_map`). A channels-last img is remapped as one HxWxC image
    and the result is channels-last. Up to 4 channels, planes with contiguous rows (the sampler's output, a crop
    of its padded maps) are remapped one by one into a contiguous result: the same values, without a copy to
    channels-last and back. (Above 4 channels cv2 quantises the sub-pixel weights to 1/32 pixel and a plane at a
    time is exact but 1.7-1.9x slower, so those always go as one HxWxC image.)"""
    interp = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}[mode]
    if img.dtype == torch.float32 and img.shape[1] <= 4 and img.stride(-1) == 1:
        out = torch.empty_like(img)
        for src, dst in zip(img[0].numpy(), out[0].numpy()):
            cv2.remap(src, pos, None, dst=dst, interpolation=interp, borderMode=cv2.BORDER_REPLICATE)
        return out
    hwc = img[0].permute(1, 2, 0)
    src = hwc.numpy() if hwc.is_contiguous() and img.dtype == torch.float32 else np.ascontiguousarray(hwc.float().numpy())
    out = cv2.remap(src, pos, None, interpolation=interp, borderMode=cv2.BORDER_REPLICATE)
    if out.ndim == 2:  # cv2 drops a single channel
        out = out[..., None]
    return torch.from_numpy(out).permute(2, 0, 1)[None].to(img.dtype)


@dataclass
class Motion:
    """Motion between frames t-1 and t at the output size (pixels of the output grid).

    fw on t-1's grid points into t; bw on t's grid points into t-1; occluded marks t-1 pixels not seen in t,
    disoccluded marks t pixels not seen in t-1; reliable marks t pixels that are not disoccluded and whose
    predecessor, brought over by bw, has the same colour (mean |diff| <= PHOTO_TOLERANCE grey levels at LR, low-passed
    by a Gaussian of PHOTO_SIGMA LR px)."""

    fw: Tensor
    bw: Tensor
    occluded: Tensor
    disoccluded: Tensor
    reliable: Tensor
    _bw_map: Optional[np.ndarray] = field(default=None, init=False, repr=False, compare=False)  # see back()

    def back(self, img: Tensor, mode: str = "bilinear") -> Tensor:
        """`warp(img, bw)`: frame t-1's img ([1,C,H,W]) on frame t's grid. On the CPU the sampling map is made once
        per motion and serves every image brought over (the running sums of |psi|, the previous output)."""
        if img.device.type != "cpu" or img.shape[0] != 1:
            return warp(img, self.bw, mode)
        if self._bw_map is None:
            self._bw_map = sampling_map(self.bw)
        return _remap(img, self._bw_map, mode)


def up_flows(flows: list[np.ndarray], size: tuple[int, int]) -> list[Tensor]:
    """LR flows (HxWx2, LR pixels) at `size` (H, W) in output pixels, [1,2,H,W] each (a view of HxWx2 memory, which
    the noise transport reads without a copy)."""
    h, w = flows[0].shape[:2]
    scale = np.array([size[1] / w, size[0] / h], np.float32)
    # scaled on the LR grid, then resized (bilinear is linear: the same field, without a pass over the output)
    return [_to_t(cv2.resize(f * scale, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)) for f in flows]


def up_masks(masks: list[np.ndarray], size: tuple[int, int]) -> list[Tensor]:
    """Boolean LR masks (HxW) at `size`, [1,1,H,W] each: True wherever a covered LR pixel is True."""
    up = cv2.resize(np.stack(masks, -1).astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR) > 0
    t = _to_t(up[..., None] if up.ndim == 2 else up)
    return [t[:, i : i + 1].contiguous() for i in range(len(masks))]  # flat views of them are taken


def up_on_device(flows: list[np.ndarray], masks: list[np.ndarray], size: tuple[int, int], device) -> list[Tensor]:
    """up_flows of the flows and up_masks of the masks, computed on `device` from the LR arrays (one small copy
    instead of the output-size fields; the resize is then the device's). Same maps as the cv2 functions, to
    float rounding (tests/test_motion.py); on the CPU the cv2 ones are faster."""
    h, w = flows[0].shape[:2]
    lr = np.concatenate([*flows, *(m[..., None] for m in masks)], axis=-1).astype(np.float32)
    up = F.interpolate(_to_t(lr).to(device, non_blocking=True), size=tuple(size), mode="bilinear", align_corners=False)
    k = 2 * len(flows)
    scale = torch.tensor([size[1] / w, size[0] / h], device=device).repeat(len(flows)).view(1, k, 1, 1)
    fl = up[:, :k] * scale
    return [fl[:, 2 * i : 2 * i + 2] for i in range(len(flows))] + [up[:, k + i : k + i + 1] > 0 for i in range(len(masks))]


PHOTO_TOLERANCE = 6.0  # grey levels (of 255): flow that brings a different colour is not re-used
# LR px: the colour check compares the frames low-passed by a Gaussian of this sigma. Resampling a textured LR
# frame along even an exact sub-pixel flow misses by more than the tolerance near Nyquist (interpolation and
# aliasing, not a wrong flow): on the held-out clips of known motion the unfiltered check rejected 5-26% of the
# pixels, most of them textured ones where re-used detail matters most; low-passed, 0.2-3% (HISTORY; an exact
# pan of Vid4 calendar in `tests/test_motion.py`).
PHOTO_SIGMA = 1.0
# grey levels (of 255, mean |difference| over a 3x3 LR window): where the two LR frames agree this closely the
# content did not move, and the flow there is set to exactly 0. DIS reports ~0.1 LR px of noise on still
# content, which random-walks the noise samples' sub-pixel positions until they hop to a neighbour: flicker
# where nothing moves. A slow pan over texture changes the pixels far more than this, so it keeps its flow.
STILL_TOLERANCE = 1.5


# The most pixels the flow is refined at: on larger LR frames it stops one pyramid level up (a quarter of the
# pixels) per 4x. DIS's cost grows with the pixels of its finest level (~0.2 s per 854x480 pair at level 0 on one
# core, against a model frame of ~0.2 s on a GPU), its accuracy much less (`benchmarks/flow_level.py`).
FLOW_PIXELS = 256_000


def flow_level(h: int, w: int) -> int:
    """The DIS pyramid level the flow of an h x w LR frame is refined down to (0 = every pixel)."""
    level = 0
    while h * w > FLOW_PIXELS * 4**level:
        level += 1
    return level


def _zero_where(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """flow (HxWx2 float32) with both components +0.0 where mask (HxW): each pixel's pair selected as one 64-bit
    word, 3x faster than np.where broadcasting the mask over the two channels (the same bits)."""
    pairs = np.ascontiguousarray(flow).view(np.int64)[..., 0]
    return np.where(mask, np.int64(0), pairs).view(np.float32).reshape(flow.shape)


def lr_motion(pa: np.ndarray, pb: np.ndarray) -> tuple[np.ndarray, ...]:
    """`estimate`'s work on the LR grid, from uint8 RGB frames t-1 (pa) and t (pb): (fw, bw, occluded, disoccluded,
    photo), flows in LR pixels and boolean masks; photo marks t pixels whose predecessor brought over by bw has the
    same colour (see Motion)."""
    a, b = cv2.cvtColor(pa, cv2.COLOR_RGB2GRAY), cv2.cvtColor(pb, cv2.COLOR_RGB2GRAY)
    level = flow_level(*a.shape)
    fw, bw = dis_flow(a, b, level), dis_flow(b, a, level)
    # the mean |difference| over 3x3 pixels x 3 channels, as an exact integer sum (cv2.blur's border)
    diff = cv2.transform(cv2.absdiff(pa, pb).astype(np.float32), np.ones((1, 3), np.float32))
    still = cv2.boxFilter(diff, -1, (3, 3), normalize=False) <= 27 * STILL_TOLERANCE
    fw, bw = _zero_where(still, fw), _zero_where(still, bw)
    occ, dis = occlusion_mask(fw, bw, boundary=False), occlusion_mask(bw, fw, boundary=False)
    d = np.abs(cv2.GaussianBlur(np_warp(pa.astype(np.float32), bw) - pb, (0, 0), PHOTO_SIGMA))  # blur is linear
    photo = (d[..., 0] + d[..., 1] + d[..., 2]) / 3 <= PHOTO_TOLERANCE  # numpy's mean(-1), 15x faster (same bits)
    return fw, bw, occ, dis, photo


def estimate(prev_lr: Tensor, cur_lr: Tensor, out_size: tuple[int, int]) -> Motion:
    """Flow both ways between two LR frames ([1,3,h,w] in [-1,1]) and the occlusion masks, at out_size (H, W).
    The LR work is numpy/OpenCV: small torch ops cost more in thread hand-offs than in arithmetic."""
    fw, bw, occ, dis, photo = lr_motion(_rgb(prev_lr), _rgb(cur_lr))
    size, dev = tuple(out_size), prev_lr.device
    if dev.type != "cpu":
        up_fw, up_bw, up_occ, up_dis, unreliable = up_on_device([fw, bw], [occ, dis, dis | ~photo], size, dev)
        return Motion(up_fw, up_bw, up_occ, up_dis, ~unreliable)
    up_fw, up_bw = up_flows([fw, bw], size)
    up_occ, up_dis, unreliable = up_masks([occ, dis, dis | ~photo], size)
    return Motion(up_fw, up_bw, up_occ, up_dis, ~unreliable)


@dataclass
class NoiseParticles:
    """A noise field of C channels on an HxW grid whose samples sit at pixel + offset (each offset in [-0.5, 0.5]).

    Stored as one row per pixel, [H*W, C + 2] = (the C noise values, the x and y offsets): moving the samples is
    then one row gather, about 5x faster than gathering C + 2 channel planes."""

    rows: Tensor
    size: tuple[int, int]

    @classmethod
    def fresh(cls, eps: Tensor) -> "NoiseParticles":
        """Samples of eps ([1,C,H,W]) at their pixel centres."""
        _, c, h, w = eps.shape
        rows = torch.zeros((h * w, c + 2), device=eps.device, dtype=torch.float32)
        rows[:, :c] = eps[0].permute(1, 2, 0).reshape(h * w, c)
        return cls(rows, (h, w))

    @property
    def eps(self) -> Tensor:
        """The noise, all C channels, [1,C,H,W] (a channels-last view)."""
        return self.channels(0, self.rows.shape[1] - 2)

    @property
    def offset(self) -> Tensor:
        """The sub-pixel offsets (x, y), [1,2,H,W] (a channels-last view)."""
        h, w = self.size
        return self.rows[:, -2:].view(h, w, 2).permute(2, 0, 1)[None]

    def channels(self, first: int, count: int) -> Tensor:
        """Noise channels first..first+count-1, [1,count,H,W] (a channels-last view)."""
        h, w = self.size
        return self.rows[:, first : first + count].view(h, w, count).permute(2, 0, 1)[None]

    def reborn(self, first: int, eps: Tensor) -> "NoiseParticles":
        """A copy whose channels from `first` on hold eps ([1,C,H,W]) and whose samples sit at their pixel centres
        again (the offsets, which depend on every earlier motion, restart). The other channels keep their values."""
        _, c, h, w = eps.shape
        rows = self.rows.clone()
        rows[:, first : first + c] = eps[0].permute(1, 2, 0).reshape(h * w, c)
        rows[:, -2:] = 0
        return NoiseParticles(rows, (h, w))


@functools.lru_cache(maxsize=4)
def _indices(n: int, device=None) -> Tensor:
    """0..n-1 as int64 (cached: never modify in place)."""
    return torch.arange(n, device=device)


def transport(p: NoiseParticles, motion: Motion, fresh: Callable[[int], Tensor]) -> NoiseParticles:
    """Move the samples along motion.fw to frame t (see the module docstring); the pixels no sample reaches and the
    disoccluded ones take, in raster order, the k samples of `fresh(k)` ([C, k] N(0, 1), drawn from the seed and
    the frame index): a few percent of the frame, so a full-size fresh field is never drawn.

    Per target pixel the sample that lands closest wins (ties: the lower source index), found with one
    scatter-amin of the key (distance rank, source index); samples that leave the frame or are occluded go to a
    spare bin past the last pixel, so no array is compacted. p is consumed: its offset columns are overwritten
    with the moved samples' offsets, so that one row gather carries value and offset together."""
    h, w = p.size
    n = h * w
    dev = p.rows.device
    fw = motion.fw[0].float().permute(1, 2, 0).reshape(n, 2)  # rows (x, y), like the particles
    pos = grid_rows(h, w, dev).add(p.rows[:, -2:]).add_(fw)
    tgt = pos.add(0.5).floor_()  # not round(): half-to-even would send x + 0.5 and x + 1.5 to one pixel
    off = pos.sub_(tgt)  # in [-0.5, 0.5)
    p.rows[:, -2:] = off
    tgt = tgt.long()
    tx, ty = tgt[:, 0], tgt[:, 1]
    ok = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h) & ~motion.occluded.view(-1)
    tidx = torch.where(ok, ty * w + tx, n)
    bits = n.bit_length()  # key = rank << bits | source index: the index comes back with a mask, not a modulo
    # <= 0.5, so the rank stays under 2**19 and the key under 2**(19 + bits); written out, as sum(1) over two
    # columns is 3x slower (the same bits)
    dist = off[:, 0] * off[:, 0] + off[:, 1] * off[:, 1]
    key = dist.mul_(2**20).long().bitwise_left_shift_(bits).bitwise_or_(_indices(n, dev))
    none = torch.iinfo(torch.long).max
    best = torch.full((n + 1,), none, device=dev, dtype=torch.long)
    best.scatter_reduce_(0, tidx, key, reduce="amin")
    best = best[:n]
    hit = (best != none) & ~motion.disoccluded.view(-1)
    winner = torch.where(hit, best.bitwise_and_((1 << bits) - 1), 0)
    rows = p.rows.index_select(0, winner)  # every sample with its new offset
    empty = (~hit).nonzero().squeeze(1)
    if empty.numel():
        new = torch.zeros((empty.numel(), rows.shape[1]), device=dev, dtype=rows.dtype)
        new[:, :-2] = fresh(empty.numel()).t()
        rows.index_copy_(0, empty, new)
    return NoiseParticles(rows, (h, w))
