"""Checkpoints: safetensors weights + a JSON config, in one file's metadata or in a folder.

One file (`*.safetensors`): tensors `denoiser.*` and `aux.*`, metadata `upsr_video` = JSON config.
One folder: `model.safetensors` (same tensors) + `config.json`. Nothing is ever unpickled; importing an
official UPSR `.pth` goes through `models.unet.load_official_state_dict` (torch.load weights_only=True).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .diffusion.schedule import ScheduleConfig
from .diffusion.unw import UNWConfig
from .models.aux import AuxConfig, build_aux

FORMAT = "upsr-video/1"
META_KEY = "upsr_video"


class CheckpointError(Exception):
    """A checkpoint that cannot be used: missing, corrupt, or not matching its config."""


@dataclass
class ModelSpec:
    """Everything needed to rebuild the networks, plus provenance."""

    aux: dict
    denoiser: Optional[dict] = None  # None: a g-only checkpoint (labelled fallback)
    schedule: dict = field(default_factory=lambda: ScheduleConfig().to_dict())
    unw: dict = field(default_factory=lambda: UNWConfig().to_dict())
    scale: int = 4
    train_scales: tuple[float, float] = (4.0, 4.0)
    info: dict = field(default_factory=dict)  # provenance: command, data, steps, metrics

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "aux": self.aux,
            "denoiser": self.denoiser,
            "schedule": self.schedule,
            "unw": self.unw,
            "scale": self.scale,
            "train_scales": list(self.train_scales),
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        if d.get("format") != FORMAT:
            raise CheckpointError(f"unsupported checkpoint format {d.get('format')!r} (expected {FORMAT})")
        return cls(
            aux=d["aux"],
            denoiser=d.get("denoiser"),
            schedule=d.get("schedule", ScheduleConfig().to_dict()),
            unw=d.get("unw", UNWConfig().to_dict()),
            scale=int(d.get("scale", 4)),
            train_scales=tuple(d.get("train_scales", (4.0, 4.0))),
            info=d.get("info", {}),
        )


def build_models(spec: ModelSpec) -> tuple[Optional[nn.Module], nn.Module]:
    aux = build_aux(AuxConfig.from_dict(spec.aux))
    den = None
    if spec.denoiser is not None:
        from .models.unet import build_denoiser

        den = build_denoiser(spec.denoiser)
    return den, aux


def state_tensors(denoiser: Optional[nn.Module], aux: nn.Module) -> dict[str, torch.Tensor]:
    out = {f"aux.{k}": v.detach().cpu().contiguous() for k, v in aux.state_dict().items()}
    if denoiser is not None:
        out.update({f"denoiser.{k}": v.detach().cpu().contiguous() for k, v in denoiser.state_dict().items()})
    return out


def save_checkpoint(path: str | os.PathLike, spec: ModelSpec, denoiser: Optional[nn.Module], aux: nn.Module) -> Path:
    """Write atomically (temporary name, then rename). A path without the .safetensors suffix is a folder."""
    path = Path(path)
    tensors = state_tensors(denoiser, aux)
    config = json.dumps(spec.to_dict(), sort_keys=True)
    if path.suffix == ".safetensors":
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp.{os.getpid()}")
        save_file(tensors, str(tmp), metadata={META_KEY: config})
        os.replace(tmp, path)
    else:
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / f"model.safetensors.tmp.{os.getpid()}"
        save_file(tensors, str(tmp), metadata={META_KEY: config})
        os.replace(tmp, path / "model.safetensors")
        tmpc = path / f"config.json.tmp.{os.getpid()}"
        tmpc.write_text(json.dumps(spec.to_dict(), indent=2, sort_keys=True))
        os.replace(tmpc, path / "config.json")
    return path


def read_checkpoint(path: str | os.PathLike) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    weights = path / "model.safetensors" if path.is_dir() else path
    try:
        tensors = load_file(str(weights))
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"not a readable safetensors checkpoint: {weights} ({str(e).splitlines()[0]})") from None
    if path.is_dir() and (path / "config.json").exists():
        cfg = json.loads((path / "config.json").read_text())
    elif META_KEY in meta:
        cfg = json.loads(meta[META_KEY])
    else:
        raise CheckpointError(f"{weights} has no upsr-video config (metadata '{META_KEY}' or config.json)")
    return ModelSpec.from_dict(cfg), tensors


def _load_part(module: nn.Module, tensors: dict, prefix: str, where: Path) -> None:
    sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {prefix}{missing[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {prefix}{unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(f"shape mismatch {len(shapes)} (e.g. {prefix}{k}: file {tuple(sd[k].shape)} vs config {tuple(own[k].shape)})")
        raise CheckpointError(f"{where}: weights do not match the config: " + "; ".join(parts))
    module.load_state_dict(sd, strict=True)


def load_checkpoint(path: str | os.PathLike) -> tuple[ModelSpec, Optional[nn.Module], nn.Module]:
    """Rebuild the networks from the config and load the weights strictly."""
    spec, tensors = read_checkpoint(path)
    try:
        den, aux = build_models(spec)
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: invalid model config ({e})") from None
    _load_part(aux, tensors, "aux.", Path(path))
    if den is not None:
        _load_part(den, tensors, "denoiser.", Path(path))
    elif any(k.startswith("denoiser.") for k in tensors):
        raise CheckpointError(f"{path}: file has denoiser weights but its config has no denoiser")
    return spec, den, aux


def default_checkpoint_path() -> Path:
    """The bundled default checkpoint shipped inside the package."""
    return Path(__file__).resolve().parent / "weights" / "upsr-small-default.safetensors"


def load_pipeline(path: str | os.PathLike | None = None, device: str = "cpu", dtype=torch.float32):
    """(spec, UPSRPipeline) from a checkpoint (the bundled default when path is None)."""
    from .pipeline import UPSRPipeline

    spec, den, aux = load_checkpoint(path or default_checkpoint_path())
    pipe = UPSRPipeline(
        den, aux, ScheduleConfig.from_dict(spec.schedule), UNWConfig.from_dict(spec.unw), device=device, dtype=dtype
    )
    return spec, pipe
