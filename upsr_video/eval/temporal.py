"""Temporal-consistency metrics for up-scaled video (definitions: shared/docs/VIDEO_NOTES.md).

All functions take sequences (list or TxHxWx3 array) of uint8 HxWx3 RGB frames and return
``PairScores(mean, per_pair)``: ``per_pair[i]`` scores the pair (frame i, frame i+1), NaN where the pair is
not scored (it straddles a shot cut, lies in the skipped clip edges of tOF/tLPIPS, or has no valid pixel);
``mean`` is the mean over scored pairs (NaN if none).  ``cut_frames`` holds the indices where a new shot
starts: the pair (t-1, t) is skipped for every t in it.  Flow direction conventions: `upsr_video.eval.flow`.

- ``warping_error``  Lai et al. 2018, with the official evaluation's normalisation: squared difference
  of RGB in [0, 1], averaged over channels and non-occluded pixels (independent noise of std s per
  channel on a static clip gives 2 s^2).  Flow is DIS, so values are for A/B, not for paper tables.
- ``tof``            TecoGAN tOF, Farneback flow; flows centre-cropped as TecoGAN's ``crop_8x8``.
- ``tlpips``         TecoGAN tLP x 100 on the same crop and pairs as ``tof``.
- ``flicker``        mean |O_t - O_{t-1}| (RGB in [0, 1]) on static, non-occluded pixels.
"""
from __future__ import annotations

import math
import warnings
from typing import Iterable, NamedTuple, Optional

import numpy as np
import torch

from .flow import dis_flow, farneback_flow, occlusion_mask, to_grey, warp
from .lpips_alex import image_to_tensor

EDGE_SKIP = 2  # TecoGAN drops the first and last 2 frames of every sequence for tOF / tLP


class PairScores(NamedTuple):
    """Unpacks as ``(mean, per_pair)``; ``float(scores)`` is the mean."""

    mean: float
    per_pair: list[float]

    def __float__(self) -> float:
        return float(self.mean)


def _frames(frames, name: str) -> list[np.ndarray]:
    seq = list(frames)
    if len(seq) < 2:
        raise ValueError(f"{name}: need at least 2 frames, got {len(seq)}")
    shape = None
    for i, f in enumerate(seq):
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            got = f"{f.dtype} {f.shape}" if isinstance(f, np.ndarray) else type(f).__name__
            raise ValueError(f"{name}[{i}]: expected uint8 HxWx3 RGB, got {got}")
        if shape is None:
            shape = f.shape
        elif f.shape != shape:
            raise ValueError(f"{name}[{i}]: shape {f.shape} differs from {name}[0] {shape}")
    return seq


def _same(a: list, b: list, na: str, nb: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{na} has {len(a)} frames but {nb} has {len(b)}")
    if a[0].shape != b[0].shape:
        raise ValueError(f"{na} frames are {a[0].shape} but {nb} frames are {b[0].shape}")


def _cuts(cut_frames: Optional[Iterable[int]], n: int) -> set[int]:
    cuts = {int(c) for c in (cut_frames or ())}
    bad = [c for c in cuts if not 0 <= c < n]
    if bad:
        raise ValueError(f"cut frame indices out of range 0..{n - 1}: {sorted(bad)}")
    return cuts


def scored_pairs(n: int, cut_frames: Optional[Iterable[int]] = None, edge: int = 0) -> list[int]:
    """Indices t of the pairs (t-1, t) to score, within shots and `edge` frames away from shot ends.

    Per shot of length L, frames edge..L-1-edge are kept (TecoGAN); a shot too short to keep a pair
    (L < 2 * edge + 2, i.e. fewer than 6 frames for edge=2) is scored on all its pairs, with a warning.
    """
    cuts = _cuts(cut_frames, n)
    starts = sorted({0} | cuts)
    out = []
    for s, e in zip(starts, starts[1:] + [n]):
        if e - s < 2:
            continue
        if edge and e - s >= 2 * edge + 2:
            out.extend(range(s + edge + 1, e - edge))
        else:
            if edge:
                warnings.warn(f"shot of frames {s}..{e - 1} is shorter than {2 * edge + 2} frames: "
                              f"scoring all its pairs instead of skipping {edge} frames at each end", stacklevel=3)
            out.extend(range(s + 1, e))
    return out


def _result(n: int, values: dict[int, float]) -> PairScores:
    per_pair = [values.get(t, math.nan) for t in range(1, n)]
    valid = [v for v in per_pair if not math.isnan(v)]
    return PairScores(float(np.mean(valid)) if valid else math.nan, per_pair)


def _float01(f: np.ndarray) -> np.ndarray:
    return f.astype(np.float32) / 255.0


def warping_error(outputs, flow_frames, cut_frames: Optional[Iterable[int]] = None) -> PairScores:
    """E_warp: flow F (t-1 -> t) and its reverse on `flow_frames` (the input up-sampled to the output
    size, or GT), O_t warped onto t-1 by F, squared error vs O_{t-1} on the non-occluded mask."""
    outs = _frames(outputs, "outputs")
    refs = _frames(flow_frames, "flow_frames")
    _same(outs, refs, "outputs", "flow_frames")
    grey = [to_grey(f) for f in refs]
    vals = {}
    for t in scored_pairs(len(outs), cut_frames):
        fw = dis_flow(grey[t - 1], grey[t])
        bw = dis_flow(grey[t], grey[t - 1])
        valid = ~occlusion_mask(fw, bw)
        if not valid.any():
            continue
        diff = warp(_float01(outs[t]), fw) - _float01(outs[t - 1])
        vals[t] = float(np.mean(diff[valid].astype(np.float64) ** 2))
    return _result(len(outs), vals)


def tecogan_crop(h: int, w: int) -> tuple[slice, slice]:
    """TecoGAN's centre crop: each side the largest multiple of 32 that leaves >= 16 px in total."""
    def side(n):
        m = (n // 32) * 32
        while m > n - 16:
            m -= 32
        if m <= 0:
            raise ValueError(f"frame side {n} px is too small for the tOF/tLPIPS crop (need >= 48 px)")
        o = (n - m) // 2
        return slice(o, o + m)
    return side(h), side(w)


def tof(gt_frames, out_frames, cut_frames: Optional[Iterable[int]] = None, edge: int = EDGE_SKIP) -> PairScores:
    """TecoGAN tOF: mean L2 norm of (Farneback flow of output pair - that of GT pair), on the crop.

    The first/last `edge` frames of each shot are skipped; shorter shots use all pairs (see scored_pairs).
    """
    gts = _frames(gt_frames, "gt_frames")
    outs = _frames(out_frames, "out_frames")
    _same(gts, outs, "gt_frames", "out_frames")
    cy, cx = tecogan_crop(*gts[0].shape[:2])
    vals = {}
    for t in scored_pairs(len(gts), cut_frames, edge):
        fg = farneback_flow(gts[t - 1], gts[t])[cy, cx]
        fo = farneback_flow(outs[t - 1], outs[t])[cy, cx]
        vals[t] = float(np.mean(np.sqrt(((fo - fg) ** 2).sum(axis=-1))))
    return _result(len(gts), vals)


@torch.no_grad()
def tlpips(gt_frames, out_frames, lpips_model, cut_frames: Optional[Iterable[int]] = None,
           edge: int = EDGE_SKIP) -> PairScores:
    """TecoGAN tLP x 100: |LPIPS(g_{t-1}, g_t) - LPIPS(o_{t-1}, o_t)| on the tOF crop and pairs."""
    gts = _frames(gt_frames, "gt_frames")
    outs = _frames(out_frames, "out_frames")
    _same(gts, outs, "gt_frames", "out_frames")
    cy, cx = tecogan_crop(*gts[0].shape[:2])
    dev = next(lpips_model.parameters()).device
    tens = {}

    def tensor(seq, key, i):
        k = (key, i)
        if k not in tens:
            tens[k] = image_to_tensor(np.ascontiguousarray(seq[i][cy, cx]), dev)
        return tens[k]

    vals = {}
    for t in scored_pairs(len(gts), cut_frames, edge):
        dg = float(lpips_model(tensor(gts, "g", t - 1), tensor(gts, "g", t)).mean())
        do = float(lpips_model(tensor(outs, "o", t - 1), tensor(outs, "o", t)).mean())
        vals[t] = abs(dg - do) * 100.0
        for key in ("g", "o"):
            tens.pop((key, t - 1), None)  # pairs come in increasing t: frame t-1 is no longer needed
    return _result(len(gts), vals)


def flicker(out_frames, ref_frames=None, cut_frames: Optional[Iterable[int]] = None,
            threshold: float = 0.5) -> PairScores:
    """Mean |O_t - O_{t-1}| (RGB in [0, 1]) over pixels that are static in the reference frames
    (DIS flow magnitude t-1 -> t below `threshold` px and not occluded).  `ref_frames` is the input
    up-sampled to the output size (or GT); None uses the outputs themselves."""
    outs = _frames(out_frames, "out_frames")
    refs = outs if ref_frames is None else _frames(ref_frames, "ref_frames")
    _same(outs, refs, "out_frames", "ref_frames")
    grey = [to_grey(f) for f in refs]
    vals = {}
    for t in scored_pairs(len(outs), cut_frames):
        fw = dis_flow(grey[t - 1], grey[t])
        bw = dis_flow(grey[t], grey[t - 1])
        static = (np.hypot(fw[..., 0], fw[..., 1]) < threshold) & ~occlusion_mask(fw, bw)
        if not static.any():
            continue
        d = np.abs(_float01(outs[t]) - _float01(outs[t - 1]))
        vals[t] = float(np.mean(d[static].astype(np.float64)))
    return _result(len(outs), vals)
