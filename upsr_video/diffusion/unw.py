"""Uncertainty-guided noise weighting (UNW).

psi = (g - y0) / 2 is UPSR's uncertainty estimate (per pixel and RGB channel, at HR, no blur): where the
auxiliary SR network g departs from the bicubic image y0, the LR image is ambiguous and needs more noise;
flat regions get less. w_u = b_u + (1 - b_u) clamp(|psi|, 0, psi_max) / psi_max lies in [b_u, 1];
b_u = 1 gives ResShift's isotropic noise (the ablation baseline).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class UNWConfig:
    b_u: float = 0.4
    psi_max: float = 0.1

    def __post_init__(self):
        if not 0.0 <= self.b_u <= 1.0:
            raise ValueError(f"b_u must be in [0, 1], got {self.b_u}")
        if self.psi_max <= 0:
            raise ValueError(f"psi_max must be > 0, got {self.psi_max}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "UNWConfig":
        return cls(**d)


def uncertainty(g: Tensor, y0: Tensor) -> Tensor:
    """psi = (g - y0) / 2."""
    return (g - y0) / 2


def weight_from_uncertainty(psi_abs: Tensor, cfg: UNWConfig) -> Tensor:
    """Map |psi| (possibly temporally smoothed) to the noise weight w_u."""
    return cfg.b_u + (1.0 - cfg.b_u) * torch.clamp(psi_abs, 0.0, cfg.psi_max) / cfg.psi_max


def noise_weight(g: Tensor, y0: Tensor, cfg: UNWConfig = UNWConfig()) -> Tensor:
    """w_u for one frame."""
    return weight_from_uncertainty(uncertainty(g, y0).abs(), cfg)
