"""The UPSR denoiser f_theta: a guided-diffusion UNet with Swin window attention, predicting x0 at HR.

A reimplementation of the official UPSR `UNetModelSwin` (Apache-2.0). The diffusion runs in pixel space:
the HR state x_t (3 ch) and the conditioning cat[g, y0] are `PixelUnshuffle(4)`-ed to the LR grid
(48 + 96 = 144 channels), the UNet works there, and an output head upsamples back to HR. With the
`upsr-large` preset the module and parameter names equal the official ones (119,418,319 parameters), so
an official checkpoint loads strictly with `load_official_state_dict`.

CPU presets add two options the official model does not have: a light head (norm-SiLU-conv3x3 at the LR
grid + PixelShuffle; the official head costs ~1.5 TFLOP per 1080p step) and `residual`, which predicts
x0 = g (or y0) + network output with a zero-initialised last conv, so an untrained model already returns g.
`residual: g_xt` adds lambda_t (x_t - g) to that base, with one learnable scalar per step initialised near the
Wiener weight of x_t against g: at small t, where x_t is close to x0, the network starts from its input
instead of having to learn an identity through the whole UNet (the earlier "g" models learnt to ignore x_t).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .swin import SwinLayer, normalization

SCALE = 4  # pixel-space diffusion: HR <-> LR grid via PixelUnshuffle/PixelShuffle(4)


# --------------------------------------------------------------------------------------------------
# config


@dataclass(frozen=True)
class DenoiserConfig:
    """Architecture of the denoiser. `attention_levels` are UNet level indices (0 = LR grid, full size)."""

    model_channels: int = 160
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: Union[int, tuple[int, ...]] = 2
    attention_levels: tuple[int, ...] = (0, 1, 2, 3)
    middle_attention: bool = True
    num_heads: int = -1  # used when num_head_channels == -1
    num_head_channels: int = 32  # heads = swin_embed_dim // num_head_channels
    swin_depth: int = 2
    swin_embed_dim: int = 192
    window_size: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    image_size: int = 64  # LR training crop; a level whose size <= window gets one unshifted window
    norm_groups: int = 32
    head: str = "official"  # "official" | "light"
    num_feat: int = 128  # width of the official head
    g_cond: bool = True  # False: ablation "g-condition off", input cat[x_t, y0] (96 ch)
    residual: str = "none"  # "none" | "g" | "y0" | "g_xt": x0 = base + network output
    # residual "g_xt": base = g + lambda_t (x_t - g), lambda_t learnable per step, initialised to xt_blend[t];
    # input_scales[t] undoes the caller's x_t scaling (Schedule.input_scale)
    xt_blend: tuple[float, ...] = ()
    input_scales: tuple[float, ...] = ()
    official_swin_mask: bool = False  # reproduce the official shifted-window mask (see swin.py)

    def __post_init__(self):
        cm = tuple(int(m) for m in self.channel_mult)
        nrb = self.num_res_blocks
        nrb = int(nrb) if isinstance(nrb, (int, float)) else tuple(int(n) for n in nrb)
        object.__setattr__(self, "channel_mult", cm)
        object.__setattr__(self, "num_res_blocks", nrb)
        object.__setattr__(self, "attention_levels", tuple(sorted({int(a) for a in self.attention_levels})))
        if not cm or self.model_channels <= 0 or min(cm) <= 0:
            raise ValueError(f"denoiser: bad model_channels/channel_mult ({self.model_channels}, {cm})")
        if isinstance(nrb, tuple) and len(nrb) != len(cm):
            raise ValueError(f"denoiser: num_res_blocks {nrb} needs one entry per level ({len(cm)})")
        if any(a < 0 or a >= len(cm) for a in self.attention_levels):
            raise ValueError(f"denoiser: attention_levels {self.attention_levels} outside 0..{len(cm) - 1}")
        if self.head not in ("official", "light"):
            raise ValueError(f"denoiser: head must be 'official' or 'light', not {self.head!r}")
        if self.residual not in ("none", "g", "y0", "g_xt"):
            raise ValueError(f"denoiser: residual must be 'none', 'g', 'y0' or 'g_xt', not {self.residual!r}")
        object.__setattr__(self, "xt_blend", tuple(float(v) for v in self.xt_blend))
        object.__setattr__(self, "input_scales", tuple(float(v) for v in self.input_scales))
        if self.residual == "g_xt" and (not self.xt_blend or len(self.xt_blend) != len(self.input_scales)):
            raise ValueError("denoiser: residual 'g_xt' needs xt_blend and input_scales, one value per step")
        if self.window_size <= 0 or self.swin_depth < 0:
            raise ValueError("denoiser: window_size must be > 0 and swin_depth >= 0")
        if self.num_head_channels > 0 and self.swin_embed_dim % self.num_head_channels:
            raise ValueError(f"denoiser: swin_embed_dim {self.swin_embed_dim} not divisible by "
                             f"num_head_channels {self.num_head_channels}")
        if self.num_head_channels <= 0 and self.num_heads <= 0:
            raise ValueError("denoiser: set num_head_channels or num_heads")

    @property
    def heads(self) -> int:
        return self.swin_embed_dim // self.num_head_channels if self.num_head_channels > 0 else self.num_heads

    @property
    def res_blocks(self) -> tuple[int, ...]:
        nrb = self.num_res_blocks
        return (nrb,) * len(self.channel_mult) if isinstance(nrb, int) else nrb

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "DenoiserConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"denoiser config: unknown keys {unknown}")
        return cls(**d)


DENOISER_PRESETS: dict[str, DenoiserConfig] = {
    # The official UPSR RealSR x4 network (options/*_UPSR_RealSR_x4.yml): 119,418,319 parameters.
    "upsr-large": DenoiserConfig(official_swin_mask=True),
    # CPU default: ~2M parameters, attention only at the two coarse maps, light head, x0 = g + f.
    "upsr-small": DenoiserConfig(
        model_channels=32, channel_mult=(1, 2, 4), num_res_blocks=1, attention_levels=(2,),
        num_head_channels=16, swin_depth=2, swin_embed_dim=64, window_size=8, mlp_ratio=2.0,
        head="light", residual="g",
    ),
    # Unit tests: tiny and fast, same code paths as upsr-small.
    "upsr-tiny": DenoiserConfig(
        model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,),
        num_head_channels=8, swin_depth=2, swin_embed_dim=16, window_size=4, mlp_ratio=2.0,
        image_size=16, norm_groups=8, head="light", residual="g",
    ),
}


def _as_config(cfg: Union[DenoiserConfig, dict, str]) -> DenoiserConfig:
    if isinstance(cfg, DenoiserConfig):
        return cfg
    if isinstance(cfg, str):
        if cfg not in DENOISER_PRESETS:
            raise ValueError(f"unknown denoiser preset {cfg!r}; known: {', '.join(DENOISER_PRESETS)}")
        return DENOISER_PRESETS[cfg]
    if isinstance(cfg, dict):
        return DenoiserConfig.from_dict(cfg)
    raise TypeError(f"denoiser config must be a DenoiserConfig, dict or preset name, not {type(cfg).__name__}")


# --------------------------------------------------------------------------------------------------
# building blocks (guided-diffusion layout and names)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding [cos, sin] of the raw (integer) step, frequencies max_period^(-i/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepBlock(nn.Module):
    """Marker: forward(x, emb)."""


class EmbedSequential(nn.Sequential):
    """Sequential that hands the time embedding to the children that take one."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class ResBlock(TimestepBlock):
    """GN-SiLU-conv; scale-shift GN from the time embedding; SiLU-dropout-conv (zero init); 1x1 skip."""

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: Optional[int] = None,
                 scale_shift: bool = True, groups: int = 32):
        super().__init__()
        out = out_channels or channels
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(normalization(channels, groups), nn.SiLU(), nn.Conv2d(channels, out, 3, 1, 1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out if scale_shift else out))
        self.out_layers = nn.Sequential(
            normalization(out, groups), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(out, out, 3, 1, 1)
        )
        nn.init.zeros_(self.out_layers[3].weight)
        nn.init.zeros_(self.out_layers[3].bias)
        self.skip_connection = nn.Identity() if out == channels else nn.Conv2d(channels, out, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.in_layers(x)
        e = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[3](self.out_layers[2](self.out_layers[1](h)))
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


# --------------------------------------------------------------------------------------------------
# the network


class UNetModelSwin(nn.Module):
    """f_theta(x_t, t, g, y0) -> x0_hat at HR. x_t must already be scaled by the caller.

    H and W must be multiples of `spatial_multiple` (the caller reflect-pads).
    """

    def __init__(self, cfg: Union[DenoiserConfig, dict, str] = "upsr-large"):
        super().__init__()
        cfg = _as_config(cfg)
        self.config = cfg
        mc, groups, drop = cfg.model_channels, cfg.norm_groups, cfg.dropout
        emb_dim = 4 * mc
        nrb = cfg.res_blocks
        self.in_channels = 3 * SCALE * SCALE * (3 if cfg.g_cond else 2)

        def rb(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, emb_dim, drop, cout, True, groups)

        def swin(ch: int, res: int) -> SwinLayer:
            return SwinLayer(ch, cfg.swin_embed_dim, cfg.heads, cfg.window_size, cfg.swin_depth, res,
                             cfg.mlp_ratio, drop, groups, cfg.official_swin_mask)

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        ch = cfg.channel_mult[0] * mc
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(self.in_channels, ch, 3, 1, 1))])
        skip_chans = [ch]
        res = cfg.image_size
        last = len(cfg.channel_mult) - 1
        for level, mult in enumerate(cfg.channel_mult):
            for j in range(nrb[level]):
                layers: list[nn.Module] = [rb(ch, mult * mc)]
                ch = mult * mc
                if level in cfg.attention_levels and j == 0:
                    layers.append(swin(ch, res))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_chans.append(ch)
            if level != last:
                self.input_blocks.append(EmbedSequential(Downsample(ch)))
                skip_chans.append(ch)
                res //= 2

        mid: list[nn.Module] = [rb(ch, ch)]
        if cfg.middle_attention:
            mid.append(swin(ch, res))
        mid.append(rb(ch, ch))
        self.middle_block = EmbedSequential(*mid)

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(nrb[level] + 1):
                layers = [rb(ch + skip_chans.pop(), mult * mc)]
                ch = mult * mc
                if level in cfg.attention_levels and i == 0:
                    layers.append(swin(ch, res))
                if level and i == nrb[level]:
                    layers.append(Upsample(ch))
                    res *= 2
                self.output_blocks.append(EmbedSequential(*layers))

        if cfg.head == "official":
            nf = cfg.num_feat
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(ch, nf, 3, 1, 1), nn.LeakyReLU(0.01))
            self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1)
        else:
            self.out = nn.Sequential(normalization(ch, groups), nn.SiLU(), nn.Conv2d(ch, 3 * SCALE * SCALE, 3, 1, 1))
            if cfg.residual != "none":  # start exactly at the base image
                nn.init.zeros_(self.out[2].weight)
                nn.init.zeros_(self.out[2].bias)
        if cfg.residual == "g_xt":
            self.xt_blend = nn.Parameter(torch.tensor(cfg.xt_blend, dtype=torch.float32))
            self.register_buffer("input_scales", torch.tensor(cfg.input_scales, dtype=torch.float32), persistent=False)

        self.spatial_multiple = SCALE * self._lr_multiple()

    def _lr_multiple(self) -> int:
        """LR-grid multiple: 2^(levels-1) for the down/up path, window * 2^level where Swin runs."""
        cfg = self.config
        m = 2 ** (len(cfg.channel_mult) - 1)
        level = 0
        for mod in self.input_blocks:
            for layer in mod:
                if isinstance(layer, Downsample):
                    level += 1
                elif isinstance(layer, SwinLayer):
                    m = math.lcm(m, layer.window * 2 ** level)
        for layer in self.middle_block:
            if isinstance(layer, SwinLayer):
                m = math.lcm(m, layer.window * 2 ** level)
        for mod in self.output_blocks:
            for layer in mod:
                if isinstance(layer, SwinLayer):
                    m = math.lcm(m, layer.window * 2 ** level)
                elif isinstance(layer, Upsample):
                    level -= 1
        return m

    def _head(self, h: Tensor) -> Tensor:
        if self.config.head == "official":
            h = self.conv_before_upsample(h)
            h = F.leaky_relu(self.conv_up1(F.interpolate(h, scale_factor=2, mode="nearest")), 0.2)
            h = F.leaky_relu(self.conv_up2(F.interpolate(h, scale_factor=2, mode="nearest")), 0.2)
            return self.conv_last(F.leaky_relu(self.conv_hr(h), 0.2))
        return F.pixel_shuffle(self.out(h), SCALE)

    def forward(self, x_t: Tensor, t: Tensor, g: Optional[Tensor], y0: Tensor) -> Tensor:
        cfg = self.config
        if x_t.dim() != 4 or x_t.shape[1] != 3:
            raise ValueError(f"denoiser: x_t must be [N,3,H,W], got {tuple(x_t.shape)}")
        n, _, hh, ww = x_t.shape
        m = self.spatial_multiple
        if hh % m or ww % m:
            raise ValueError(f"denoiser: HR size {hh}x{ww} is not a multiple of {m} (pad the input)")
        if y0.shape != x_t.shape:
            raise ValueError(f"denoiser: y0 shape {tuple(y0.shape)} != x_t shape {tuple(x_t.shape)}")
        need_g = cfg.g_cond or cfg.residual in ("g", "g_xt")
        if need_g and (g is None or g.shape != x_t.shape):
            got = None if g is None else tuple(g.shape)
            raise ValueError(f"denoiser: g must have x_t's shape {tuple(x_t.shape)}, got {got}")
        t = torch.as_tensor(t, device=x_t.device)
        if t.dim() == 0:
            t = t.expand(n)
        if t.shape != (n,):
            raise ValueError(f"denoiser: t must have shape ({n},), got {tuple(t.shape)}")

        cond = torch.cat([g, y0], dim=1) if cfg.g_cond else y0
        h = torch.cat([F.pixel_unshuffle(x_t, SCALE), F.pixel_unshuffle(cond, SCALE)], dim=1)
        emb = self.time_embed(timestep_embedding(t, cfg.model_channels).to(x_t.dtype))

        skips = []
        for mod in self.input_blocks:
            h = mod(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for mod in self.output_blocks:
            h = mod(torch.cat([h, skips.pop()], dim=1), emb)
        out = self._head(h)
        if cfg.residual == "g":
            out = out + g
        elif cfg.residual == "g_xt":
            lam = self.xt_blend[t].to(out.dtype).view(n, 1, 1, 1)
            x_raw = x_t * self.input_scales[t].to(x_t.dtype).view(n, 1, 1, 1)
            out = out + g + lam * (x_raw - g)
        elif cfg.residual == "y0":
            out = out + y0
        return out


def build_denoiser(cfg: Union[DenoiserConfig, dict, str]) -> UNetModelSwin:
    return UNetModelSwin(_as_config(cfg))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------------
# official checkpoints

_DERIVED_BUFFERS = ("relative_position_index", "attn_mask")  # constants recomputed from the config


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def _select_state_dict(obj) -> tuple[dict, Optional[str]]:
    if isinstance(obj, dict):
        for key in ("params_ema", "params"):
            if _is_state_dict(obj.get(key)):
                return obj[key], key
        if _is_state_dict(obj):
            return obj, None
    raise ValueError("checkpoint holds no state dict ('params_ema', 'params' or a plain name->tensor dict)")


def load_official_state_dict(model: nn.Module, path: Union[str, os.PathLike]) -> Optional[str]:
    """Load an official UPSR `.pth` ({'params': sd, 'params_ema': sd} or a plain sd) strictly.

    Prefers 'params_ema'. Raises ValueError (one line) naming the first mismatched keys. Returns the
    key the weights came from ('params_ema', 'params' or None for a plain state dict).
    """
    try:
        obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such checkpoint file") from None
    except Exception as e:  # unpickling refused or corrupt file
        raise ValueError(f"{path}: cannot read as a weights-only torch checkpoint ({type(e).__name__})") from None
    try:
        sd, key = _select_state_dict(obj)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith(_DERIVED_BUFFERS)]
    unexpected = [k for k in sd if k not in own]
    shapes = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:3])}")
        if shapes:
            parts.append(f"shape mismatch {len(shapes)}: " + ", ".join(
                f"{k} file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in shapes[:3]))
        raise ValueError(f"{path}: checkpoint does not match the denoiser ({'; '.join(parts)})")
    for k in own:
        if k not in sd:  # a derived constant the file left out
            sd[k] = own[k]
    model.load_state_dict(sd, strict=True)
    return key
