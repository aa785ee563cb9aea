"""Training configuration (YAML). Paths in a config are relative to the current directory (the repo root), except
`extends:` (relative to the config's own folder)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

import yaml


@dataclass
class TrainConfig:
    kind: str = "g"  # "g" (auxiliary SR net) or "upsr" (the denoiser, g frozen)
    out: str = "runs/g"
    seed: int = 0  # weight init and the validation draws
    # the training draws (crops, degradations, scale, t, eps); None = seed. A continuation (init_from) gives its
    # own so that it does not replay its parent's batches, while `seed` keeps its validation figures comparable.
    data_seed: Optional[int] = None
    steps: int = 2000
    batch: int = 16
    patch: int = 128  # HR crop size
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    warmup: int = 100
    lr_schedule: str = "cosine"  # cosine | constant
    min_lr_ratio: float = 0.1
    ema: float = 0.999
    grad_clip: float = 1.0
    amp: bool = True  # bf16/fp16 autocast, used on GPU only
    log_every: int = 25
    val_every: int = 250
    ckpt_every: int = 250
    val_images: int = 6
    val_crop: int = 192
    val_scales: tuple[float, ...] = (4.0,)  # validation factors (PSNR-Y gain over bicubic reported per factor)
    val_start_step: Optional[int] = None  # denoiser validation: truncated start step (None = full sampling)
    threads: int = 0  # torch CPU threads (0 = torch default)
    workers: int = 0  # loader processes building batches ahead (0: in the training process); same run either way
    data: dict = field(default_factory=lambda: {"sources": ["../shared/data/images/train_hr"], "holdout_every": 20})
    degradation: dict = field(default_factory=lambda: {"mode": "bicubic"})
    scales: tuple[float, float] = (4.0, 4.0)  # random scale range; (4, 4) = classic x4
    aux: str | dict = "compact-s"
    aux_checkpoint: Optional[str] = None  # kind "upsr": the trained g (a .safetensors checkpoint)
    init_from: Optional[str] = None  # fine-tuning: start from this checkpoint's g (kind g) or denoiser (kind upsr)
    val_degradation: Optional[dict] = None  # validation degradation (None = the training one); keep it fixed
    # across recipes so their validation figures compare
    denoiser: str | dict = "upsr-small"
    schedule: str | dict = "upsr"
    unw: dict = field(default_factory=lambda: {"b_u": 0.4, "psi_max": 0.1})
    # kind "upsr": the share of samples whose x_t is the sampler's truncated start state at t (the marginal
    # anchored on g instead of x0, `diffusion.sampler.start_state`) rather than the forward marginal of x0.
    # Without it the denoiser only ever sees x_t built around the ground truth, so at a start step near 0 it
    # learns to return its input, which at test time is g.
    start_prob: float = 0.0
    # kind "upsr": relative weights of the diffusion steps t = 0..T-1 drawn for training (None = uniform). The
    # shipped sampler starts at the calibrated step (0 for every factor so far), so the steps it never runs
    # need not take an equal share of the denoiser's training.
    t_weights: Optional[tuple[float, ...]] = None
    loss: dict = field(default_factory=lambda: {"l1": 1.0, "mse": 0.0, "lpips": 0.0})
    lpips_weights: Optional[str] = "../shared/weights/lpips_alex_v0.1.safetensors"

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        d = dict(d)
        for k in ("betas", "scales", "val_scales", "t_weights"):
            if d.get(k) is not None:
                d[k] = tuple(float(x) for x in d[k])
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path, overrides: Optional[dict] = None) -> "TrainConfig":
        d = read_yaml(path)
        d.update(overrides or {})
        return cls.from_dict(d)

    @property
    def train_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"], d["scales"], d["val_scales"] = list(self.betas), list(self.scales), list(self.val_scales)
        if self.t_weights is not None:
            d["t_weights"] = list(self.t_weights)
        return d


def read_yaml(path: str | Path, _seen: tuple = ()) -> dict:
    """A config file's keys, after its parent's: `extends: FILE` (relative to this file's folder) loads FILE
    first and this file's keys replace the parent's whole (a changed `degradation:` restates it), so a
    continuation states only what differs from the run it continues."""
    path = Path(path).resolve()
    if path in _seen:
        raise ValueError(f"config {path.name}: `extends` loops back to it")
    d = yaml.safe_load(path.read_text()) or {}
    if not isinstance(d, dict):
        raise ValueError(f"config {path.name}: expected a mapping of keys")
    parent = d.pop("extends", None)
    if parent is None:
        return d
    base = read_yaml(path.parent / parent, (*_seen, path))
    base.update(d)
    return base
