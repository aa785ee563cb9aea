"""Resumable training state in safetensors + JSON (no pickle).

Tensors: `model.*`, `ema.*`, and the optimiser's per-parameter state as `optim.<param index>.<name>`.
JSON: step, optimiser hyper-parameters (param_groups), scalar per-parameter state, the run config.
RNG state is not stored because every random draw of a step is derived from (seed, step): resuming at step k
replays exactly what an uninterrupted run would do.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file
from torch import nn


def save_state(path: Path, step: int, model: nn.Module, ema: Optional[nn.Module], opt: torch.optim.Optimizer, config: dict) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    osd = opt.state_dict()
    scalars: dict[str, dict] = {}
    for pid, st in osd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val) and val.dim() > 0:
                tensors[f"optim.{pid}.{name}"] = val.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = float(val) if torch.is_tensor(val) else val
    meta = {"step": step, "param_groups": osd["param_groups"], "scalars": scalars, "config": config}
    tmp = path / f"state.safetensors.tmp.{os.getpid()}"
    save_file(tensors, str(tmp))
    tmpj = path / f"state.json.tmp.{os.getpid()}"
    tmpj.write_text(json.dumps(meta, indent=1))
    # the JSON names the step and is written last: a crash between the two renames leaves the older pair
    os.replace(tmp, path / "state.safetensors")
    os.replace(tmpj, path / "state.json")


def has_state(path: Path) -> bool:
    return (Path(path) / "state.json").exists() and (Path(path) / "state.safetensors").exists()


def load_state(path: Path, model: nn.Module, ema: Optional[nn.Module], opt: torch.optim.Optimizer) -> int:
    """Restore in place; returns the step to continue from."""
    path = Path(path)
    meta = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    if ema is not None:
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, strict=True)
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for pid, sc in meta["scalars"].items():
        for name, val in sc.items():
            state.setdefault(int(pid), {})[name] = torch.tensor(val) if name == "step" else val
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["step"])
