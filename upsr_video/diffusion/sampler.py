"""The deterministic UPSR test-time sampler and per-frame noise.

After the start state, the sampler is deterministic, so one noise tensor eps decides the whole sample:
sharing eps across the frames of a shot shares the "seed" of the diffusion, which is what keeps video
output from flickering. eps is drawn from a counter-based seed (seed, stream, index) on the CPU so it does
not depend on the device, on tiling, on worker processes or on where a segment starts.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Optional

import torch
from torch import Tensor

from .schedule import Schedule

DenoiseFn = Callable[[Tensor, int], Tensor]  # (scaled x_t, step) -> x0_hat


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from a tuple, stable across processes and Python versions (no hash())."""
    h = hashlib.blake2b(repr(tuple(parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def gaussian_noise(shape, *seed_parts: int | str, device=None, dtype=torch.float32) -> Tensor:
    """Standard normal noise drawn on the CPU from derive_seed(*seed_parts), then moved."""
    gen = torch.Generator(device="cpu").manual_seed(derive_seed(*seed_parts))
    eps = torch.randn(shape, generator=gen, dtype=torch.float32)
    return eps.to(device=device, dtype=dtype)


def start_state(schedule: Schedule, y0: Tensor, g: Tensor, noise: Tensor, w, start_step: Optional[int],
                anchor: Optional[Tensor] = None) -> Tensor:
    """x at the first sampled step.

    start_step None: ResShift/UPSR prior x_{T-1} = y0 + kappa sqrt(eta_{T-1}) w eps.
    start_step s: Diff-SR style truncated start, the forward marginal at s anchored on g instead of the
    unknown x0: x_s = g + eta_s (y0 - g) + kappa sqrt(eta_s) w eps.
    anchor (an estimate of x0 better than g, e.g. the warped previous video frame) replaces g in that marginal;
    with start_step None it enters as the marginal at T-1, where eta_{T-1} ~ 0.98 leaves it a 2% share.
    """
    if start_step is not None and not 0 <= start_step < schedule.T:
        raise ValueError(f"start step must be in 0..{schedule.T - 1}, got {start_step}")
    if anchor is not None:
        return schedule.q_sample(anchor, y0, schedule.T - 1 if start_step is None else start_step, noise, w)
    if start_step is None:
        return schedule.prior_sample(y0, noise, w)
    return schedule.q_sample(g, y0, start_step, noise, w)


def reverse(schedule: Schedule, denoise: DenoiseFn, x: Tensor, y0: Tensor, first: int) -> Tensor:
    """The deterministic reverse process from state x at step `first` down to 0; x0_hat clamped to [-1, 1]."""
    for t in range(first, -1, -1):
        x0_hat = denoise(x / schedule.input_scale(t), t)
        if t == 0:
            return x0_hat.clamp(-1.0, 1.0)
        x = schedule.ddim_step(x, x0_hat, y0, t)
    raise AssertionError("unreachable")


def sample(
    schedule: Schedule,
    denoise: DenoiseFn,
    y0: Tensor,
    g: Tensor,
    noise: Tensor,
    w: Tensor | float = 1.0,
    start_step: Optional[int] = None,
    anchor: Optional[Tensor] = None,
) -> Tensor:
    """Run the reverse process from the start state; returns x0_hat of the last step clamped to [-1, 1]."""
    x = start_state(schedule, y0, g, noise, w, start_step, anchor)
    return reverse(schedule, denoise, x, y0, schedule.T - 1 if start_step is None else start_step)
