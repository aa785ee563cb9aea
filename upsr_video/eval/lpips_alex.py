"""LPIPS v0.1 (AlexNet trunk) built fully offline from one safetensors file.

The `lpips` package would download the ImageNet AlexNet trunk from the internet at first use; these
machines (and many render nodes) cannot.  We build the module with a random trunk and no package
weights, then load trunk *and* linear heads from `lpips_alex_v0.1.safetensors`, which holds torchvision
``features.{0,3,6,8,10}.{weight,bias}`` and LPIPS ``lin{0..4}.model.1.weight``.

Path resolution: explicit argument, else ``$UPSR_LPIPS_WEIGHTS``, else FileNotFoundError.
Inputs of the returned module: float NCHW RGB in [-1, 1] (the project's model convention).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Union

import lpips
import numpy as np
import torch
from safetensors.torch import load_file

ENV_VAR = "UPSR_LPIPS_WEIGHTS"

# torchvision AlexNet `features` index -> LPIPS slice holding it (lpips.pretrained_networks.alexnet).
_TRUNK_SLICES = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}


class FrozenLPIPS(lpips.LPIPS):
    """LPIPS that stays in eval mode: its linear heads carry Dropout, so a stray ``.train()`` from a
    training loop would make the loss random.  Parameters are frozen; gradients still flow to inputs."""

    def train(self, mode: bool = True):  # noqa: D102 - intentionally ignores `mode`
        return super().train(False)


def resolve_weights_path(weights_path: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Explicit path, else $UPSR_LPIPS_WEIGHTS; a clear FileNotFoundError otherwise."""
    src = "argument"
    if weights_path is None:
        weights_path = os.environ.get(ENV_VAR)
        src = f"${ENV_VAR}"
    if not weights_path:
        raise FileNotFoundError(
            f"LPIPS-alex weights not given: pass weights_path or set {ENV_VAR} to lpips_alex_v0.1.safetensors"
        )
    p = Path(weights_path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"LPIPS-alex weights not found at {p} (from {src}); set {ENV_VAR} or pass weights_path")
    return p


def _state_dict_from_file(path: Path) -> dict:
    sd = load_file(str(path))
    out = {}
    missing = []
    for idx, sl in _TRUNK_SLICES.items():
        for part in ("weight", "bias"):
            k = f"features.{idx}.{part}"
            if k in sd:
                out[f"net.slice{sl}.{idx}.{part}"] = sd[k]
            else:
                missing.append(k)
    for i in range(5):
        k = f"lin{i}.model.1.weight"
        if k in sd:
            out[k] = sd[k]
        else:
            missing.append(k)
    if missing:
        raise ValueError(f"{path} is not an LPIPS-alex v0.1 file: missing keys {', '.join(missing)}")
    return out


def load_lpips(weights_path: Optional[Union[str, os.PathLike]] = None, device: Union[str, torch.device] = "cpu") -> lpips.LPIPS:
    """Frozen LPIPS-alex v0.1 in eval mode on `device`, differentiable w.r.t. its [-1, 1] NCHW inputs."""
    path = resolve_weights_path(weights_path)
    sd = _state_dict_from_file(path)
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=` flag
        warnings.simplefilter("ignore", UserWarning)
        # pnet_rand: no ImageNet download; pretrained=False: no package weights either -> one source of truth.
        model = FrozenLPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
    res = model.load_state_dict(sd, strict=False)
    # `lins.*` alias `lin*` (same modules); the scaling layer is a constant buffer.
    bad_missing = [k for k in res.missing_keys if not (k.startswith("lins.") or k.startswith("scaling_layer."))]
    if bad_missing or res.unexpected_keys:
        raise ValueError(f"LPIPS weight mapping mismatch: missing {bad_missing}, unexpected {res.unexpected_keys}")
    model.requires_grad_(False)
    model.eval()
    return model.to(device)


def image_to_tensor(img: np.ndarray, device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """uint8 HWC RGB -> float32 1x3xHxW in [-1, 1] (LPIPS input convention)."""
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError("expected a uint8 HxWx3 RGB array")
    t = torch.from_numpy(np.ascontiguousarray(img)).to(device)
    return t.permute(2, 0, 1)[None].float() / 127.5 - 1.0


@torch.no_grad()
def lpips_distance(model: lpips.LPIPS, a: np.ndarray, b: np.ndarray) -> float:
    """LPIPS between two uint8 HWC RGB images (no gradient)."""
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    dev = next(model.parameters()).device
    return float(model(image_to_tensor(a, dev), image_to_tensor(b, dev)).mean())
