"""A random tiny checkpoint for tests that need a model whose denoiser matters but costs nothing."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from upsr_video.checkpoint import ModelSpec, build_models, save_checkpoint
from upsr_video.models.aux import AUX_PRESETS
from upsr_video.models.unet import DENOISER_PRESETS


def tiny_checkpoint(path: Path, info: Optional[dict] = None, noise: float = 0.03) -> Path:
    """upsr-tiny denoiser + compact-xs g, built from seed 0 with every parameter perturbed by `noise` x N(0, 1)
    (the zero-initialised last layers would otherwise make the denoiser return g): the same weights for the
    same arguments."""
    spec = ModelSpec(aux=AUX_PRESETS["compact-xs"].to_dict(), denoiser=DENOISER_PRESETS["upsr-tiny"].to_dict(),
                     info=info or {})
    torch.manual_seed(0)
    den, aux = build_models(spec)
    with torch.no_grad():
        for p in list(den.parameters()) + list(aux.parameters()):
            p.add_(noise * torch.randn_like(p))
    return save_checkpoint(path, spec, den, aux)


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter of `model` replaced by 0.05 x N(0, 1) from `seed` (zero-initialised heads would make a g
    return its bicubic skip), in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()
