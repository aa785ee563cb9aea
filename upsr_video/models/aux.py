"""The auxiliary SR network g: one interface, several implementations.

UPSR needs g(y) close to x to build the uncertainty map and the conditioning; the official g is ATD
(2.53M parameters, a transformer), far too slow for video on a CPU. The default here is a compact
VGG-style residual network in the spirit of Real-ESRGAN's SRVGGNetCompact: plain 3x3 convolutions with
PReLU at the LR grid, one PixelShuffle, and a bicubic skip. All its work happens at LR resolution, it has no
attention and no normalisation, so it runs at tens of ms per 270p frame on a laptop CPU and tiles exactly
(finite receptive field). Any other x4 network can be plugged in with `register_aux`.

Two interfaces, told apart by the attribute `grid`:
- "lr" (off-the-shelf x4 networks: CompactSR, RLFN, ATD): `forward(lr [N,3,h,w] in [-1,1]) -> [N,3,s*h,s*w]`;
  at another factor its output is resized to the target, so its cost follows the *input* size.
- "output" (the default since random-scale training): `forward(y0 [N,3,H,W]) -> [N,3,H,W]`, where y0 is the
  bicubic up-scale of the LR frame to the *output* size. It works on PixelUnshuffle(4) of y0, the same grid
  as the denoiser, so its cost follows the output size whatever the factor (a 720p -> 1080p frame costs what
  a 270p -> 1080p frame costs), and one network serves every factor it was trained on.
A third kind, `ScaleBands`, holds LR-grid networks for bands of factors (a cheap unshuffled x2 one below the
switch factor, the x4 one above) and picks one per call of pipeline.make_condition.
All have `scale` (the factor used when no output size is given) and `receptive_radius` (in pixels of their
input; how much overlap makes tiling exact).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class AuxConfig:
    arch: str = "compact"
    scale: int = 4
    num_feat: int = 48
    num_conv: int = 10
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AuxConfig":
        return cls(**d)


class CompactSR(nn.Module):
    """conv-PReLU body, PixelShuffle head, plus a bicubic-upsampled skip (so it learns a residual).

    `unshuffle` u > 1 runs the body on PixelUnshuffle(u) of the LR frame (as Real-ESRGAN's x2 network does):
    the body then costs 1/u^2 of the LR grid's, which is what keeps a low-factor g (720p -> 1080p) as cheap as
    an x4 one per output pixel; the head shuffles by scale*u. Reflect-pads to a multiple of u and crops back."""

    grid = "lr"

    def __init__(self, scale: int = 4, num_feat: int = 48, num_conv: int = 10, in_ch: int = 3, unshuffle: int = 1):
        super().__init__()
        self.scale = scale
        self.unshuffle = u = int(unshuffle)
        layers: list[nn.Module] = [nn.Conv2d(in_ch * u * u, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        layers += [nn.Conv2d(num_feat, in_ch * (scale * u) ** 2, 3, 1, 1)]
        self.body = nn.Sequential(*layers)
        self.upsample = nn.PixelShuffle(scale * u)
        self.receptive_radius = u * (num_conv + 2)
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, lr: Tensor) -> Tensor:
        base = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        u = self.unshuffle
        if u == 1:
            return base + self.upsample(self.body(lr))
        h, w = lr.shape[-2:]
        x = _pad_to(lr, u)
        res = self.upsample(self.body(F.pixel_unshuffle(x, u)))
        return base + res[..., : h * self.scale, : w * self.scale]


def _pad_to(x: Tensor, r: int) -> Tensor:
    """Pad the bottom/right edges to a multiple of r (reflect where the frame is large enough)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % r, (-w) % r
    if not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")


class OutputGridSR(nn.Module):
    """CompactSR's body on the output grid: PixelUnshuffle(4) of y0 (48 ch) -> conv-PReLU x num_conv ->
    PixelShuffle(4), plus y0 (a residual). Reflect-pads to a multiple of 4 and crops back, so any size works."""

    grid = "output"
    unshuffle = 4

    def __init__(self, scale: int = 4, num_feat: int = 64, num_conv: int = 8, in_ch: int = 3):
        super().__init__()
        self.scale = scale
        r = self.unshuffle
        c = in_ch * r * r
        layers: list[nn.Module] = [nn.Conv2d(c, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        layers += [nn.Conv2d(num_feat, c, 3, 1, 1)]
        self.body = nn.Sequential(*layers)
        self.receptive_radius = r * (num_conv + 2)
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, y0: Tensor) -> Tensor:
        r = self.unshuffle
        h, w = y0.shape[-2:]
        x = _pad_to(y0, r)
        out = x + F.pixel_shuffle(self.body(F.pixel_unshuffle(x, r)), r)
        return out[..., :h, :w]


class ScaleBands(nn.Module):
    """g as bands of LR-grid networks by factor: band i serves factors up to `upto[i]` (the last band: all
    above). Why: an LR-grid network's body costs in proportion to the input, so one x4 network run at x1.5
    (720p -> 1080p) costs 7x what it costs at x4 for the same output; a low band whose body runs on
    PixelUnshuffle(2) of the frame (CompactSR `unshuffle=2`) keeps g's cost per output pixel bounded while each
    band keeps the LR grid's detail. `select(factor)` picks the band (pipeline.make_condition calls it);
    called directly it is the top band, the `scale` network."""

    grid = "lr"

    def __init__(self, nets: list[nn.Module], upto: list[Optional[float]]):
        super().__init__()
        if len(nets) != len(upto) or not nets:
            raise ValueError("ScaleBands needs one upper factor per network")
        tops = list(upto[:-1])
        if upto[-1] is not None or any(u is None for u in tops) or tops != sorted(tops):
            raise ValueError(f"band limits must rise and the last band be open-ended, got {upto}")
        if any(aux_grid(n) != "lr" for n in nets):
            raise ValueError("ScaleBands holds LR-grid networks only")
        self.bands = nn.ModuleList(nets)
        self.upto = list(upto)
        self.scale = nets[-1].scale
        self.receptive_radius = max(int(getattr(n, "receptive_radius", 16)) for n in nets)

    def select(self, factor: float) -> nn.Module:
        for net, top in zip(self.bands, self.upto):
            if top is None or factor <= top + 1e-6:
                return net
        raise AssertionError("unreachable: the last band is open-ended")

    def forward(self, lr: Tensor) -> Tensor:
        return self.bands[-1](lr)


def aux_grid(net: nn.Module) -> str:
    """"output" for a g that maps y0 at the output size, "lr" for an x`scale` network on the LR frame."""
    return getattr(net, "grid", "lr")


def bands_config(parts: list[tuple[dict, Optional[float]]]) -> AuxConfig:
    """The config of a ScaleBands g from (band's AuxConfig dict, upper factor) pairs, lowest band first."""
    top = AuxConfig.from_dict(parts[-1][0])
    return AuxConfig("bands", top.scale, 0, 0, {"bands": [{"aux": dict(a), "upto": u} for a, u in parts]})


def _bands(c: AuxConfig) -> nn.Module:
    parts = c.extra.get("bands") or []
    return ScaleBands([build_aux(AuxConfig.from_dict(p["aux"])) for p in parts], [p["upto"] for p in parts])


class BicubicAux(nn.Module):
    """g = bicubic: |psi| = 0 everywhere, so w_u = b_u (a test and ablation stand-in; no parameters)."""

    grid = "lr"

    def __init__(self, scale: int = 4):
        super().__init__()
        self.scale = scale
        self.receptive_radius = 2

    def forward(self, lr: Tensor) -> Tensor:
        return F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)


_BUILDERS: dict[str, Callable[[AuxConfig], nn.Module]] = {
    "compact": lambda c: CompactSR(c.scale, c.num_feat, c.num_conv, unshuffle=int(c.extra.get("unshuffle", 1))),
    "compact-out": lambda c: OutputGridSR(c.scale, c.num_feat, c.num_conv),
    "bicubic": lambda c: BicubicAux(c.scale),
    "rlfn": lambda c: _rlfn(c),
    "rlfn-out": lambda c: _rlfn(c, output_grid=True),
    "bands": _bands,
}


def _rlfn(c: AuxConfig, output_grid: bool = False) -> nn.Module:
    from .rlfn import RLFN, RLFNOut

    return (RLFNOut if output_grid else RLFN)(c.scale, c.num_feat, int(c.extra.get("mid", 48)))

AUX_PRESETS: dict[str, AuxConfig] = {
    "compact-s": AuxConfig("compact", 4, 48, 10),
    "compact-m": AuxConfig("compact", 4, 64, 16),
    "compact-xs": AuxConfig("compact", 4, 16, 2),
    "compact-s-x2u": AuxConfig("compact", 2, 48, 10, {"unshuffle": 2}),
    "out-m": AuxConfig("compact-out", 4, 64, 8),
    "out-xs": AuxConfig("compact-out", 4, 16, 2),
    "bicubic": AuxConfig("bicubic", 4, 0, 0),
    "rlfn": AuxConfig("rlfn", 4, 46, 0, {"mid": 48}),
    "rlfn-out": AuxConfig("rlfn-out", 4, 46, 0, {"mid": 48}),
}


def register_aux(arch: str, builder: Callable[[AuxConfig], nn.Module]) -> None:
    """Plug in another x4 network (e.g. ATD): `builder(cfg)` must return a module with the interface above."""
    _BUILDERS[arch] = builder


def build_aux(cfg: AuxConfig | dict | str) -> nn.Module:
    if isinstance(cfg, str):
        if cfg not in AUX_PRESETS:
            raise ValueError(f"unknown g preset {cfg!r}; known: {', '.join(AUX_PRESETS)}")
        cfg = AUX_PRESETS[cfg]
    elif isinstance(cfg, dict):
        cfg = AuxConfig.from_dict(cfg)
    if cfg.arch not in _BUILDERS:
        raise ValueError(f"unknown g architecture {cfg.arch!r}; known: {', '.join(_BUILDERS)}")
    return _BUILDERS[cfg.arch](cfg)
