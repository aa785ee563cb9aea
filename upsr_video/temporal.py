"""Temporally consistent UPSR over a frame sequence (pure torch + OpenCV flow, no I/O).

UPSR's sampler is deterministic after its start state x_s = anchor + eta_s (y0 - anchor) + kappa sqrt(eta_s) w eps,
so a frame's texture is a function of its noise eps, its noise weight w (from the uncertainty |psi|) and the
anchor (g). The modes differ in how those three follow the video:

- independent: eps drawn per frame, raw |psi| (the per-frame baseline; flickers when the model uses its noise).
- shared: one eps per shot, fixed on the screen; |psi| smoothed in place: a decay-weighted running mean over the
  current and the last `window` to 2 `window` - 1 frames (below).
- flow: eps moves with the content along LR optical flow (`motion.transport`: stays unit Gaussian and white);
  the running means of |psi| are warped along the flow before each frame is added.
- recurrent: shared eps, warped |psi| sums, and the anchor blends the flow-warped previous output into g
  (`anchor` = strength, where the flow is reliable), so detail made for frame t-1 is re-used, not re-invented.
- flow-recurrent: flow noise and recurrent anchoring together.

Scene cuts reset every state. Segments: `context` frames before a segment's start reproduce an uninterrupted run.
Without anchoring the state depends on a bounded past and the match is bit-exact: |psi| is smoothed by two running
means, each restarted every 2 `window` frames, staggered by `window`, of which a frame uses the older (so it
averages window + 1 to 2 window frames, and depends on at most 2 window - 1 before it); flow noise is kept finite
the same way, by two noise chains, each restarted every `noise_period` frames (staggered) and cross-faded with
cos/sin weights (a sum of independent unit Gaussians with squared weights
summing to 1 stays unit Gaussian), so frame t's noise depends on at most 2 * noise_period - 1 frames. Both chains
ride on one set of particles (one transport per frame); each birth puts the samples back on their pixel centres,
so their sub-pixel positions, too, depend only on the frames since the older chain's birth. With
anchoring the previous output feeds the next frame, so the dependence on the past only decays (about by `anchor`
per frame); the last `recurrent_context` context frames are sampled and a segment matches an uninterrupted run to
>= 50 dB PSNR, not bit for bit (tests/test_temporal.py).
"""
from __future__ import annotations

import functools
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from . import motion as mo
from .diffusion.unw import uncertainty, weight_from_uncertainty
from .pipeline import TileOptions, UPSRPipeline

MODES = ("independent", "shared", "flow", "recurrent", "flow-recurrent")


@dataclass(frozen=True)
class TemporalOptions:
    mode: str = "flow-recurrent"  # one of MODES; the default-mode rule's choice on held-out clips (README)
    window: int = 4  # |psi| smoothing: window to 2 window - 1 past frames averaged with the current one
    decay: float = 0.6
    seed: int = 0
    anchor: float = 0.5  # recurrent modes: weight of the warped previous output in the start anchor (held-out rule)
    noise_period: int = 8  # flow noise: frames between restarts of each of the two cross-faded noise chains

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"temporal mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.window < 0 or not 0 < self.decay <= 1:
            raise ValueError("window must be >= 0 and decay in (0, 1]")
        if not 0 <= self.anchor < 1:
            raise ValueError(f"anchor strength must be in [0, 1), got {self.anchor}")
        if self.noise_period < 1:
            raise ValueError(f"noise period must be >= 1, got {self.noise_period}")

    @property
    def uses_flow(self) -> bool:
        return self.mode in ("flow", "recurrent", "flow-recurrent")

    @property
    def flow_noise(self) -> bool:
        return self.mode in ("flow", "flow-recurrent")

    @property
    def anchored(self) -> bool:
        return self.mode in ("recurrent", "flow-recurrent") and self.anchor > 0

    @property
    def recurrent_context(self) -> int:
        """Context frames that are sampled (not only tracked) in anchored modes: the previous output's weight
        after this many frames is below 1%."""
        return math.ceil(math.log(0.01) / math.log(self.anchor)) if self.anchored else 0

    @property
    def context(self) -> int:
        """Frames before a segment's start that must be fed (as context) for identical output (see the module
        docstring: exact without anchoring, >= 50 dB with it)."""
        if self.mode == "independent":
            return 0
        psi = 2 * self.window - 1 if self.window else 0
        noise = 2 * self.noise_period - 1 if self.flow_noise else 0
        return max(psi, noise, self.recurrent_context)


class TemporalUPSR:
    """Feed frames in increasing index order. `push(idx, lr, shot_start, emit)`; frames with emit=False
    (a segment's context) only update the temporal state (and, in anchored modes, the last
    `recurrent_context` of them are sampled to warm the previous output). `seconds` accumulates the time
    spent on flow, on warping (noise, |psi| sums, previous output) and on the model (g and the sampler)."""

    def __init__(
        self,
        pipe: UPSRPipeline,
        opts: TemporalOptions,
        out_size: tuple[int, int],
        start_step: Optional[int] = None,
        tiles: TileOptions = TileOptions(),
        flow_threads: Optional[int] = None,
    ):
        """out_size (H, W): the output size, where y0, g and the diffusion live; start_step: the reverse process's
        first step (None: full sampling from the prior); flow_threads: threads estimating a batch's flows while g
        runs (None: up to 4 when the model runs on a GPU, and 0, in the frame loop, on a CPU, whose cores the
        model's own threads already use)."""
        self.pipe, self.opts = pipe, opts
        self.out_size = tuple(out_size)
        self.start_step, self.tiles = start_step, tiles
        if flow_threads is None:
            flow_threads = 0 if torch.device(pipe.device).type == "cpu" else min(4, os.cpu_count() or 1)
        self.seconds = {"flow": 0.0, "warp": 0.0, "model": 0.0}  # flow: the frame loop's wait for it
        self._last_idx: Optional[int] = None
        self._flow_pool = ThreadPoolExecutor(flow_threads, thread_name_prefix="flow") if flow_threads > 0 else None
        self._reset(None, None)

    def _flows_ahead(self, lrs: Tensor, shot_starts: list[int]) -> list[Optional[Callable[[], mo.Motion]]]:
        """The motion into each frame of a batch, as a call that returns it. With flow threads the flows are
        started at once (OpenCV releases the GIL): the pairs are known before any frame is processed, so they run
        side by side and beside g instead of one after another in the frame loop, where on a GPU they were most
        of a frame's time. A frame that starts a shot, or the first frame ever, gets None, as in the loop."""
        if not self.opts.uses_flow:
            return [None] * len(shot_starts)
        jobs: list[Optional[Callable[[], mo.Motion]]] = []
        shot, prev = self._shot, self._prev_lr
        for k, shot_start in enumerate(shot_starts):
            if shot_start != shot:
                shot, prev = shot_start, None
            cur = lrs[k : k + 1]
            if prev is None:
                jobs.append(None)
            elif self._flow_pool is not None:
                jobs.append(self._flow_pool.submit(mo.estimate, prev, cur, self.out_size).result)
            else:
                jobs.append(functools.partial(mo.estimate, prev, cur, self.out_size))
            prev = cur
        return jobs

    def _reset(self, shot: Optional[int], idx: Optional[int]) -> None:
        self._shot = shot
        self._first = idx  # the first frame of this shot that was pushed
        self._sums: list[Optional[Tensor]] = [None, None]  # the two running means of |psi|, see _smooth_psi
        self._starts: list[Optional[int]] = [None, None]  # the shot age at which each began summing
        self._particles: Optional[mo.NoiseParticles] = None  # flow noise: both chains' values on one set of samples
        self._slots: list[Optional[int]] = [None, None]  # the chain in each half of the particles' channels
        self._shot_eps: Optional[Tensor] = None
        self._prev_lr: Optional[Tensor] = None
        self._prev_out: Optional[Tensor] = None

    # -- per-frame state ----------------------------------------------------------------------------------
    def _smooth_psi(self, psi: Tensor, idx: int, motion: Optional[mo.Motion]) -> Tensor:
        """|psi| of frame idx ([1,C,H,W]) smoothed over time: the decay-weighted mean (newest weight 1) of this
        frame's map and those of the frames since the older of two running sums restarted.

        Sum a restarts at the shot ages a W, a W + 2 W, ... (W = window), so the older one holds W + 1 to 2 W frames
        and a frame's map depends on at most 2 W - 1 before it, at fixed ages: a segment that starts with that much
        context reproduces an uninterrupted run (a runner that starts mid-shot begins the sums it finds running with
        its first frame: they are exact from their next restart on). A sum is
        S = psi + decay * S_prev in the first C of 4 channels-last channels (OpenCV warps a 4-channel image exactly
        and several times faster than 3 channels or a ring of every past map), warped onto each new frame first;
        disoccluded pixels restart at the new map. Returns a contiguous map, like psi."""
        W, d = self.opts.window, self.opts.decay
        if W == 0:
            return psi
        age, (_, c, h, w) = idx - self._shot, psi.shape
        total = lambda n: n if d == 1 else (1 - d**n) / (1 - d)  # the weights of n frames
        t0 = time.perf_counter()
        rows = None
        for a in range(2):
            if self._sums[a] is None:
                continue
            if age >= a * W and (age - a * W) % (2 * W) == 0:  # sum a restarts with this frame
                self._sums[a] = self._starts[a] = None
            elif motion is not None:
                S = motion.back(self._sums[a]).contiguous(memory_format=torch.channels_last)  # new (a no-op on the CPU)
                if rows is None:
                    rows = motion.disoccluded.view(-1).nonzero().squeeze(1)
                if rows.numel():  # this frame's map, at the weight of the frames in the sum, which the new one joins
                    S.permute(0, 2, 3, 1).view(h * w, 4)[rows, :c] = \
                        psi.permute(0, 2, 3, 1).reshape(h * w, c)[rows] * total(age - self._starts[a])
                self._sums[a] = S
        if motion is not None:
            self.seconds["warp"] += time.perf_counter() - t0
        for a in range(2):
            if self._sums[a] is None:
                if age < a * W:
                    continue  # sum 1 begins at age W
                self._sums[a] = psi.new_zeros((1, 4, h, w)).contiguous(memory_format=torch.channels_last)
                self._starts[a] = age
            part = self._sums[a][:, :c]
            torch.add(psi, part, alpha=d, out=part)
        older = min((a for a in (0, 1) if self._sums[a] is not None), key=lambda a: self._starts[a])
        return torch.div(self._sums[older][:, :c], total(age - self._starts[older] + 1), out=torch.empty_like(psi))

    def _flow_noise(self, shape, idx: int, motion: Optional[mo.Motion]) -> Tensor:
        """Two chains restarted every noise_period frames, staggered, cross-faded (module docstring). Chain c's
        values live in channel half c % 2 of one particle set, so a frame moves the samples once for both; a
        chain's birth restarts the shared sub-pixel offsets, which keeps the past a frame depends on bounded."""
        t0 = time.perf_counter()
        k, c = self.opts.noise_period, shape[1]
        age = idx - self._shot
        j, u = age // k, (age % k) / k
        seed = (self.opts.seed, "flow", self._shot)
        if self._particles is not None and motion is not None:
            def fresh(m: int) -> Tensor:  # each half from its own chain's stream, so the draws follow the chain
                return torch.cat([self.pipe.noise((c, m), *seed, "fresh", ch, idx) if ch is not None
                                  else torch.zeros((c, m), device=self._particles.rows.device) for ch in self._slots])
            self._particles = mo.transport(self._particles, motion, fresh)
        for ch in (j - 1, j) if j > 0 else (j,):
            if ch not in self._slots:  # born now (or, in a segment's first context frames, started late)
                new = self.pipe.noise(shape, *seed, "chain", ch)
                if self._particles is None:
                    self._particles = mo.NoiseParticles.fresh(new.new_zeros((1, 2 * c, *new.shape[2:])))
                self._particles = self._particles.reborn(ch % 2 * c, new)
                self._slots[ch % 2] = ch
        self.seconds["warp"] += time.perf_counter() - t0
        newest = self._particles.channels(j % 2 * c, c)
        if j == 0:
            return newest
        a = math.sin(math.pi / 2 * u)
        return a * newest + math.sqrt(1 - a * a) * self._particles.channels((j - 1) % 2 * c, c)

    def _noise(self, shape, idx: int, motion: Optional[mo.Motion]) -> Tensor:
        if self.opts.mode == "independent":
            return self.pipe.noise(shape, self.opts.seed, "frame", idx)
        if self.opts.flow_noise:
            return self._flow_noise(shape, idx, motion)
        if self._shot_eps is None:
            self._shot_eps = self.pipe.noise(shape, self.opts.seed, "shot", self._shot)
        return self._shot_eps

    def _anchor(self, g: Tensor, motion: Optional[mo.Motion]) -> Optional[Tensor]:
        """g blended with the previous output warped onto this frame where the flow is reliable (motion.reliable:
        consistent both ways, same colour)."""
        if motion is None or self._prev_out is None:
            return None
        t0 = time.perf_counter()
        prev = motion.back(self._prev_out, mode="bicubic").clamp_(-1, 1)  # a new tensor: updated in place below
        strength = motion.reliable.to(g.dtype).mul_(self.opts.anchor)  # 0 where unreliable: exactly g there
        anchor = torch.addcmul(g, prev.sub_(g), strength)
        self.seconds["warp"] += time.perf_counter() - t0
        return anchor

    # -- frames -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def push(self, idx: int, lr: Tensor, shot_start: int, emit: bool = True) -> Optional[Tensor]:
        """lr: [1,3,h,w] in [-1,1]. Returns the HR frame [1,3,H,W] = out_size when emit."""
        return self.push_batch([idx], lr, [shot_start], [emit])[0]

    @torch.no_grad()
    def push_batch(self, indices: list[int], lrs: Tensor, shot_starts: list[int], emits: list[bool]) -> list[Optional[Tensor]]:
        """Consecutive frames in one call (lrs: [N,3,h,w]): g runs once on the batch, the per-frame state (shot,
        flow, |psi| sums, noise) advances frame by frame in index order, and the emitted frames are denoised
        as one batch; in anchored modes each frame is sampled in order, as it needs its predecessor's output.
        Equal to N calls of `push` up to float rounding of batched convolutions."""
        n = len(indices)
        if not (lrs.shape[0] == n == len(shot_starts) == len(emits)):
            raise ValueError("push_batch: indices, frames, shot starts and emit flags differ in length")
        t0 = time.perf_counter()
        lrs = lrs.to(self.pipe.device, self.pipe.dtype)
        flows = self._flows_ahead(lrs, shot_starts) if self.pipe.is_diffusion else []
        y0, g = self.pipe.condition(lrs, self.out_size, self.tiles)
        self.seconds["model"] += time.perf_counter() - t0
        if not self.pipe.is_diffusion:  # the g-only fallback
            self._last_idx = indices[-1]
            return [g[k : k + 1].clamp(-1, 1) if e else None for k, e in enumerate(emits)]
        psi = uncertainty(g, y0).abs()
        shape = (1, *y0.shape[1:])
        outs: list[Optional[Tensor]] = [None] * n
        batch: list[tuple[int, Tensor, Tensor]] = []
        for k, (idx, shot_start, emit) in enumerate(zip(indices, shot_starts, emits)):
            if self._last_idx is not None and idx != self._last_idx + 1:
                raise ValueError(f"frames must be consecutive: got {idx} after {self._last_idx}")
            self._last_idx = idx
            if shot_start != self._shot:
                self._reset(shot_start, idx)
            lr = lrs[k : k + 1]
            motion = None
            if flows[k] is not None:
                t1 = time.perf_counter()
                motion = flows[k]()
                self.seconds["flow"] += time.perf_counter() - t1
            eps = self._noise(shape, idx, motion)
            if self.opts.mode == "independent":
                w = weight_from_uncertainty(psi[k : k + 1], self.pipe.unw)
            else:
                w = weight_from_uncertainty(self._smooth_psi(psi[k : k + 1], idx, motion), self.pipe.unw)
            if self.opts.anchored:
                # context frames are sampled only where they can still matter: the last recurrent_context before
                # the segment, or all of them when the run began at the shot's start (then the match is exact)
                warm = self._first == self._shot or idx >= self._first + self.opts.context - self.opts.recurrent_context
                out = None
                if emit or warm:
                    anchor = self._anchor(g[k : k + 1], motion)
                    out = self._sample(y0[k : k + 1], g[k : k + 1], eps, w, anchor)
                self._prev_out = out
                outs[k] = out if emit else None
            elif emit:
                batch.append((k, eps, w))
            self._prev_lr = lr
        if batch:
            sel = [k for k, _, _ in batch]
            hr = self._sample(y0[sel], g[sel], torch.cat([e for _, e, _ in batch]), torch.cat([w for _, _, w in batch]))
            for j, k in enumerate(sel):
                outs[k] = hr[j : j + 1]
        return outs

    def _sample(self, y0: Tensor, g: Tensor, eps: Tensor, w: Tensor, anchor: Optional[Tensor] = None) -> Tensor:
        t0 = time.perf_counter()
        out = self.pipe.sample(y0, g, eps, w, self.start_step, self.tiles, anchor=anchor)
        self.seconds["model"] += time.perf_counter() - t0
        return out
