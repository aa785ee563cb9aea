"""Image SR benchmark on Set5/Set14-style folders (`*_HR.png` + bicubic `*_LR.png`, or HR only with the LR
made here): bicubic, g alone and UPSR variants, scored by PSNR-Y / SSIM-Y (border shaved by the scale) and
LPIPS-alex. Used by the training issue's quality bars and the ablation table."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .fidelity import psnr_y, ssim_y


@dataclass
class Pair:
    name: str
    hr: np.ndarray  # HWC uint8 RGB, cropped to scale x LR
    lr: np.ndarray


def read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def bicubic_downscale(hr: np.ndarray, scale: float) -> np.ndarray:
    """LR made with torch's antialiased bicubic (the same resize code for every method and factor)."""
    t = torch.from_numpy(hr).permute(2, 0, 1)[None].float()
    h, w = hr.shape[:2]
    lr = F.interpolate(t, size=(round(h / scale), round(w / scale)), mode="bicubic", antialias=True, align_corners=False)
    return lr.round().clamp(0, 255).byte()[0].permute(1, 2, 0).numpy()


def load_pairs(folder: str | Path, scale: float = 4, make_lr: bool = False) -> list[Pair]:
    """Pairs of a benchmark folder. With make_lr (or when no LR files exist), LR = bicubic_downscale(HR)."""
    folder = Path(folder)
    hrs = sorted(p for p in folder.iterdir() if re.search(r"_HR\.(png|jpg|bmp)$", p.name, re.I)) or sorted(
        p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".bmp")
    )
    if not hrs:
        raise FileNotFoundError(f"no images in {folder}")
    pairs = []
    for hp in hrs:
        hr = read_rgb(hp)
        lp = hp.with_name(hp.name.replace("_HR", "_LR"))
        if not make_lr and lp != hp and lp.exists():
            lr = read_rgb(lp)
        else:
            h, w = hr.shape[:2]
            hr = hr[: int(h // scale * scale), : int(w // scale * scale)] if float(scale).is_integer() else hr
            lr = bicubic_downscale(hr, scale)
        th, tw = round(lr.shape[0] * scale), round(lr.shape[1] * scale)
        pairs.append(Pair(hp.stem.replace("_HR", ""), np.ascontiguousarray(hr[:th, :tw]), lr))
    return pairs


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1


def to_uint8(t: torch.Tensor) -> np.ndarray:
    return ((t[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


Method = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]  # (lr [-1,1], (H, W)) -> hr [-1,1]


def bicubic_method(lr: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(lr, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


def score(pairs: list[Pair], method: Method, scale: float, lpips_model=None) -> dict:
    """Per-image and mean PSNR-Y / SSIM-Y (shave = ceil(scale)) and LPIPS."""
    shave = int(np.ceil(scale))
    rows = []
    for p in pairs:
        with torch.no_grad():
            out_t = method(to_tensor(p.lr), p.hr.shape[:2])
        out = to_uint8(out_t)
        row = {"image": p.name, "psnr_y": psnr_y(out, p.hr, shave), "ssim_y": ssim_y(out, p.hr, shave)}
        if lpips_model is not None:
            with torch.no_grad():
                row["lpips"] = float(lpips_model(to_tensor(out), to_tensor(p.hr)).mean())
        rows.append(row)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "image"}
    return {"mean": mean, "images": rows}
