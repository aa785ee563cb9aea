"""Temporally consistent UPSR over a frame sequence (pure torch, no I/O).

Flicker in per-frame diffusion SR comes from the sampler's start noise: UPSR's sampler is deterministic after
x_T, so a frame's texture is a function of its eps. Within a shot every frame therefore uses the same eps,
derived from (seed, first frame index of the shot); the uncertainty map that weights that noise is averaged
over the last `window` frames of the shot with exponentially decaying weights (a finite window, so a segment
that starts with `window` context frames reproduces an uninterrupted run bit for bit). Scene cuts reset both.
`mode="independent"` draws eps per frame and uses the raw map (the per-frame baseline).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .diffusion.unw import uncertainty, weight_from_uncertainty
from .pipeline import TileOptions, UPSRPipeline


@dataclass(frozen=True)
class TemporalOptions:
    mode: str = "shared"  # shared | independent
    window: int = 4  # past frames of |psi| averaged with the current one
    decay: float = 0.6
    seed: int = 0

    def __post_init__(self):
        if self.mode not in ("shared", "independent"):
            raise ValueError(f"temporal mode must be shared or independent, got {self.mode!r}")
        if self.window < 0 or not 0 < self.decay <= 1:
            raise ValueError("window must be >= 0 and decay in (0, 1]")

    @property
    def context(self) -> int:
        """Frames before a segment's start that must be fed (as context) for identical output."""
        return self.window if self.mode == "shared" else 0


class TemporalUPSR:
    """Feed frames in increasing index order. `push(idx, lr, shot_start, emit)`; frames with emit=False
    (a segment's context) only update the uncertainty history."""

    def __init__(
        self,
        pipe: UPSRPipeline,
        opts: TemporalOptions,
        out_size: tuple[int, int],
        start_step: Optional[int] = None,
        tiles: TileOptions = TileOptions(),
    ):
        """out_size (H, W): the output size, where y0, g and the diffusion live; start_step: the reverse process's
        first step (None: full sampling from the prior)."""
        self.pipe, self.opts = pipe, opts
        self.out_size = tuple(out_size)
        self.start_step, self.tiles = start_step, tiles
        self._shot: Optional[int] = None
        self._hist: deque[Tensor] = deque(maxlen=opts.window + 1)
        self._last_idx: Optional[int] = None
        self._noise_key = None
        self._noise: Optional[Tensor] = None

    def _shot_noise(self, shape, key) -> Tensor:
        if self._noise_key != key:
            self._noise = self.pipe.noise(shape, *key)
            self._noise_key = key
        return self._noise

    def _smoothed(self) -> Tensor:
        d = self.opts.decay
        maps = list(self._hist)[::-1]  # newest first
        wts = [d**j for j in range(len(maps))]
        acc = sum(w * m for w, m in zip(wts, maps))
        return acc / sum(wts)

    @torch.no_grad()
    def push(self, idx: int, lr: Tensor, shot_start: int, emit: bool = True) -> Optional[Tensor]:
        """lr: [1,3,h,w] in [-1,1]. Returns the HR frame [1,3,H,W] = out_size when emit."""
        return self.push_batch([idx], lr, [shot_start], [emit])[0]

    @torch.no_grad()
    def push_batch(self, indices: list[int], lrs: Tensor, shot_starts: list[int], emits: list[bool]) -> list[Optional[Tensor]]:
        """Consecutive frames in one call (lrs: [N,3,h,w]): g runs once on the batch, the per-frame state (shot,
        |psi| history, noise) advances frame by frame in index order, and the emitted frames are denoised as one
        batch. Equal to N calls of `push` up to float rounding of batched convolutions."""
        n = len(indices)
        if not (lrs.shape[0] == n == len(shot_starts) == len(emits)):
            raise ValueError("push_batch: indices, frames, shot starts and emit flags differ in length")
        y0, g = self.pipe.condition(lrs, self.out_size, self.tiles)
        psi = uncertainty(g, y0).abs()
        ws, eps, sel = [], [], []
        for k, (idx, shot_start, emit) in enumerate(zip(indices, shot_starts, emits)):
            if self._last_idx is not None and idx != self._last_idx + 1:
                raise ValueError(f"frames must be consecutive: got {idx} after {self._last_idx}")
            self._last_idx = idx
            if shot_start != self._shot:
                self._shot = shot_start
                self._hist.clear()
            if self.opts.mode == "independent":
                self._hist.clear()
            self._hist.append(psi[k : k + 1].clone())  # a copy: the history must not pin the whole batch
            if not emit or not self.pipe.is_diffusion:
                continue
            ws.append(weight_from_uncertainty(self._smoothed(), self.pipe.unw))
            if self.opts.mode == "shared":
                eps.append(self._shot_noise((1, *y0.shape[1:]), (self.opts.seed, "shot", shot_start)))
            else:
                eps.append(self.pipe.noise((1, *y0.shape[1:]), self.opts.seed, "frame", idx))
            sel.append(k)
        outs: list[Optional[Tensor]] = [None] * n
        if not self.pipe.is_diffusion:  # the g-only fallback
            return [g[k : k + 1].clamp(-1, 1) if e else None for k, e in enumerate(emits)]
        if sel:
            hr = self.pipe.sample(y0[sel], g[sel], torch.cat(eps), torch.cat(ws),
                                  self.start_step, self.tiles)
            for j, k in enumerate(sel):
                outs[k] = hr[j : j + 1]
        return outs
