"""ResShift "power" noise schedule and the residual-shifting diffusion's closed forms.

Pure tensor functions, no I/O. Index convention: steps t = 0..T-1, eta is increasing in t, the prior is at
t = T-1 (ResShift's code convention). Everything is per pixel: `w` is the UNW weight map (1 = isotropic
ResShift noise) and broadcasts against the image.

Formulas (UPSR code, see the project's UPSR facts):
    forward marginal  x_t = x0 + eta_t (y0 - x0) + kappa sqrt(eta_t) w eps
    prior             x_{T-1} = y0 + kappa sqrt(eta_{T-1}) w eps
    posterior         mean = (eta_{t-1}/eta_t) x_t + (alpha_t/eta_t) x0,
                      var  = kappa^2 w^2 eta_{t-1} alpha_t / eta_t
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Optional

import torch
from torch import Tensor


@dataclass(frozen=True)
class ScheduleConfig:
    """Parameters of the power schedule. `sqrt_eta_floor` is UPSR's extra sqrt(0.001) bound on
    sqrt(eta_1); ResShift has none (None)."""

    steps: int = 5
    power: float = 0.2
    kappa: float = 2.5
    min_noise: float = 0.2
    etas_end: float = 0.99
    sqrt_eta_floor: Optional[float] = math.sqrt(0.001)
    input_scale_c: float = 0.3  # network input divided by sqrt(eta kappa^2 c + 0.25); c hard-coded in UPSR

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ScheduleConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown schedule fields: {sorted(unknown)}")
        return cls(**d)


SCHEDULE_PRESETS = {
    "upsr": ScheduleConfig(),
    "resshift-v3": ScheduleConfig(steps=4, power=0.3, kappa=2.0, min_noise=0.2, sqrt_eta_floor=None),
}


def power_sqrt_etas(cfg: ScheduleConfig) -> Tensor:
    """sqrt(eta_t) for t = 0..T-1 as float64."""
    if cfg.steps < 2:
        raise ValueError("the schedule needs at least 2 steps")
    candidates = [cfg.min_noise / cfg.kappa, cfg.min_noise]
    if cfg.sqrt_eta_floor is not None:
        candidates.append(cfg.sqrt_eta_floor)
    start = min(candidates)
    base = math.exp(math.log(cfg.etas_end / start) / (cfg.steps - 1))
    t = torch.arange(cfg.steps, dtype=torch.float64)
    expo = ((t / (cfg.steps - 1)) ** cfg.power) * (cfg.steps - 1)
    return start * base**expo


class Schedule:
    """Precomputed schedule tensors (float64 on CPU; cast on use) and the diffusion's closed forms."""

    def __init__(self, cfg: ScheduleConfig = ScheduleConfig()):
        self.cfg = cfg
        self.T = cfg.steps
        self.kappa = cfg.kappa
        self.sqrt_etas = power_sqrt_etas(cfg)
        self.etas = self.sqrt_etas**2
        prev = torch.cat([torch.zeros(1, dtype=torch.float64), self.etas[:-1]])
        self.etas_prev = prev
        self.alphas = self.etas - prev

    # -- helpers ---------------------------------------------------------------------------------
    def _at(self, values: Tensor, t, like: Tensor) -> Tensor:
        """Gather values at step(s) t, shaped to broadcast over an NCHW tensor `like`."""
        if isinstance(t, int):
            return torch.tensor(float(values[t]), dtype=like.dtype, device=like.device)
        t = torch.as_tensor(t, device="cpu").long()
        v = values[t].to(dtype=like.dtype, device=like.device)
        return v.view(-1, *([1] * (like.dim() - 1)))

    def _check_t(self, t) -> None:
        tt = torch.as_tensor(t)
        if (tt < 0).any() or (tt >= self.T).any():
            raise ValueError(f"step must be in 0..{self.T - 1}, got {t}")

    # -- forward process -------------------------------------------------------------------------
    def q_sample(self, x0: Tensor, y0: Tensor, t, noise: Tensor, w: Tensor | float = 1.0) -> Tensor:
        """Forward marginal q(x_t | x0, y0) sampled with the given noise."""
        self._check_t(t)
        eta = self._at(self.etas, t, x0)
        sq = self._at(self.sqrt_etas, t, x0)
        return x0 + eta * (y0 - x0) + self.kappa * sq * w * noise

    def marginal_std(self, t, like: Tensor, w: Tensor | float = 1.0) -> Tensor:
        return self.kappa * self._at(self.sqrt_etas, t, like) * w

    def prior_sample(self, y0: Tensor, noise: Tensor, w: Tensor | float = 1.0) -> Tensor:
        """x_{T-1} = y0 + kappa sqrt(eta_{T-1}) w eps."""
        return y0 + self.kappa * float(self.sqrt_etas[-1]) * w * noise

    def posterior_mean_var(self, x_t: Tensor, x0: Tensor, t, w: Tensor | float = 1.0) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x0), t >= 1."""
        self._check_t(t)
        if torch.as_tensor(t).min() < 1:
            raise ValueError("the posterior is defined for t >= 1")
        eta = self._at(self.etas, t, x_t)
        eta_prev = self._at(self.etas_prev, t, x_t)
        alpha = self._at(self.alphas, t, x_t)
        mean = (eta_prev / eta) * x_t + (alpha / eta) * x0
        var = self.kappa**2 * eta_prev * alpha / eta * w**2
        return mean, torch.as_tensor(var, dtype=x_t.dtype).expand_as(x_t)

    # -- reverse process used at test time ---------------------------------------------------------
    def input_scale(self, t) -> float:
        """Divisor applied to x_t before it enters the network."""
        eta = float(self.etas[t])
        return math.sqrt(eta * self.kappa**2 * self.cfg.input_scale_c + 0.25)

    def input_scale_tensor(self, t: Tensor, like: Tensor) -> Tensor:
        """Per-sample input divisors (training draws a different t for each sample)."""
        eta = self._at(self.etas, t, like)
        return torch.sqrt(eta * self.kappa**2 * self.cfg.input_scale_c + 0.25)

    def xt_wiener_weights(self, sigma_g: float = 0.1, w: float = 0.7) -> list[float]:
        """Per step, the weight lambda_t = s^2 / (s^2 + kappa^2 eta_t w^2) that minimises the error of
        g + lambda (x_t - g) when g's error has std s and x_t's noise std kappa sqrt(eta_t) w (the eta_t (y0 - x0)
        shift ignored): the denoiser's starting blend of its input x_t and g (DenoiserConfig.xt_blend)."""
        return [sigma_g**2 / (sigma_g**2 + self.kappa**2 * float(e) * w**2) for e in self.etas]

    def ddim_coefficients(self, t: int) -> tuple[float, float, float]:
        """(k_t, m_t, j_t) of x_{t-1} = k x0_hat + m x_t + j y0, the deterministic UPSR sampler."""
        if not 1 <= t < self.T:
            raise ValueError(f"sampler step must be in 1..{self.T - 1}, got {t}")
        eta, eta_prev = float(self.etas[t]), float(self.etas[t - 1])
        m = math.sqrt(eta_prev / eta)
        k = 1.0 - eta_prev - (1.0 - eta) * m
        j = eta_prev - math.sqrt(eta * eta_prev)
        return k, m, j

    def ddim_step(self, x_t: Tensor, x0_hat: Tensor, y0: Tensor, t: int) -> Tensor:
        k, m, j = self.ddim_coefficients(t)
        return k * x0_hat + m * x_t + j * y0
