"""UPSRPipeline: LR image tensor -> HR image tensor, one frame or a batch.

The steps are exposed separately (`condition`, `weight`, `sample`) because the video path smooths the
uncertainty map over time and shares noise across a shot; `__call__` runs them in order for one image.
Pure torch: no file or video I/O here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .diffusion.sampler import gaussian_noise, sample
from .diffusion.schedule import Schedule, ScheduleConfig
from .diffusion.unw import UNWConfig, noise_weight
from .models.aux import aux_grid
from .tiling import crop_to, pad_to_multiple, tiled_apply


def make_condition(aux: nn.Module, lr: Tensor, out_size: tuple[int, int],
                   run: Optional[Callable[[nn.Module, Tensor], Tensor]] = None) -> tuple[Tensor, Tensor]:
    """(y0, g) at out_size: y0 = bicubic(LR). A banded g (models.aux.ScaleBands) first picks the network for
    this factor (the larger of the two axes'). An output-grid g maps y0 to g at that size (see models.aux); an
    LR-grid g runs at its native factor and its output is resized to out_size when that is not scale x LR
    (resizing g's output beats feeding g a resized LR). `run(net, x)` applies a network (the pipeline tiles it);
    training uses the same function."""
    y0 = F.interpolate(lr, size=tuple(out_size), mode="bicubic", align_corners=False)
    select = getattr(aux, "select", None)
    if select is not None:
        aux = select(max(out_size[0] / lr.shape[-2], out_size[1] / lr.shape[-1]))
    run = run or (lambda net, x: net(x))
    if aux_grid(aux) == "output":
        return y0, run(aux, y0)
    g = run(aux, lr)
    if g.shape[-2:] != tuple(out_size):
        down = g.shape[-2] > out_size[0]
        g = F.interpolate(g, size=tuple(out_size), mode="bicubic", align_corners=False, antialias=down)
    return y0, g


@dataclass
class TileOptions:
    """Tile sizes in HR pixels for the denoiser and LR pixels for g; None = whole frame."""

    tile: Optional[int] = None
    overlap: int = 64
    aux_tile: Optional[int] = 256
    batch: int = 1  # frames x tiles per denoiser call when tiling: tiles of one frame go through together


class UPSRPipeline:
    def __init__(
        self,
        denoiser: Optional[nn.Module],
        aux: nn.Module,
        schedule: ScheduleConfig = ScheduleConfig(),
        unw: UNWConfig = UNWConfig(),
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.denoiser = denoiser.to(device).eval() if denoiser is not None else None
        self.aux = aux.to(device).eval()
        self.schedule = Schedule(schedule)
        self.unw = unw
        self.device = torch.device(device)
        self.dtype = dtype
        self.scale = int(getattr(aux, "scale", 4))
        self.multiple = int(getattr(denoiser, "spatial_multiple", 1)) if denoiser is not None else 1

    def optimize(self, channels_last: bool = False, compile: bool = False) -> None:
        """Execution settings that keep the arithmetic: channels-last weights (NHWC, the layout cuDNN's
        tensor-core convolutions run on; activations follow the weights) and torch.compile of both networks."""
        for name in ("denoiser", "aux"):
            net = getattr(self, name)
            if net is None:
                continue
            if channels_last:
                net.to(memory_format=torch.channels_last)
            if compile and isinstance(getattr(net, "bands", None), nn.ModuleList):
                for i, band in enumerate(net.bands):  # a banded g hands out its bands: compile each
                    net.bands[i] = torch.compile(band)
            elif compile:
                setattr(self, name, torch.compile(net))

    @property
    def is_diffusion(self) -> bool:
        """False for a g-only fallback checkpoint."""
        return self.denoiser is not None

    # -- conditioning ------------------------------------------------------------------------------
    @torch.no_grad()
    def condition(self, lr: Tensor, out_size: Optional[tuple[int, int]] = None, tiles: TileOptions = TileOptions()):
        """(y0, g) at the output size (default scale x LR); see make_condition."""
        lr = lr.to(self.device, self.dtype)
        size = out_size or (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale)
        return make_condition(self.aux, lr, size, lambda net, z: self._run_aux(net, z, tiles))

    def _run_aux(self, net: nn.Module, lr: Tensor, tiles: TileOptions) -> Tensor:
        """g over tiles of its input (LR, or y0 for an output-grid g: tiles then are aux_tile x 4 pixels)."""
        out_grid = aux_grid(net) == "output"
        t = tiles.aux_tile
        if t is not None and out_grid:
            t *= 4
        if t is None or (lr.shape[-2] <= t and lr.shape[-1] <= t):
            return net(lr)
        # g has a finite receptive field: tiles with that much context and a centre crop are exact (for a g
        # that unshuffles its input the context and tile are multiples of that factor, so tiles keep its phase)
        u = int(getattr(net, "unshuffle", 1))
        r = int(getattr(net, "receptive_radius", 16)) + 2
        r, t = (r + u - 1) // u * u, (t + u - 1) // u * u
        s = 1 if out_grid else net.scale
        h, w = lr.shape[-2:]
        out = None
        for y in range(0, h, t):
            for x in range(0, w, t):
                y0, y1, x0, x1 = max(0, y - r), min(h, y + t + r), max(0, x - r), min(w, x + t + r)
                res = net(lr[..., y0:y1, x0:x1])
                if out is None:
                    out = torch.empty((lr.shape[0], res.shape[1], h * s, w * s), device=lr.device, dtype=res.dtype)
                ty, tx = min(t, h - y), min(t, w - x)
                out[..., y * s : (y + ty) * s, x * s : (x + tx) * s] = res[
                    ..., (y - y0) * s : (y - y0 + ty) * s, (x - x0) * s : (x - x0 + tx) * s
                ]
        return out

    def weight(self, y0: Tensor, g: Tensor) -> Tensor:
        return noise_weight(g, y0, self.unw)

    def noise(self, shape, *seed_parts) -> Tensor:
        return gaussian_noise(tuple(shape), *seed_parts, device=self.device, dtype=self.dtype)

    # -- sampling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        y0: Tensor,
        g: Tensor,
        noise: Tensor,
        w: Optional[Tensor] = None,
        start_step: Optional[int] = None,
        tiles: TileOptions = TileOptions(),
        anchor: Optional[Tensor] = None,
    ) -> Tensor:
        """Reverse diffusion at HR. Pads every map to the denoiser's spatial multiple, denoises tile by tile
        (blended) and crops back. Without a denoiser returns g (the clearly labelled fallback). `anchor`: the
        start state's x0 estimate instead of g (sampler.start_state)."""
        if self.denoiser is None:
            return g.clamp(-1, 1)
        if w is None:
            w = self.weight(y0, g)
        size = y0.shape[-2:]
        m = self.multiple
        y0p, _ = pad_to_multiple(y0, m)
        gp, _ = pad_to_multiple(g, m)
        ep, _ = pad_to_multiple(noise.to(y0), m)
        wp = pad_to_multiple(w, m)[0] if torch.is_tensor(w) else w
        n = y0.shape[0]
        tile = tiles.tile
        if tile is not None:
            tile = max(m, (tile + m - 1) // m * m)
        overlap = tiles.overlap

        def steps(k: int, t: int) -> Tensor:
            return torch.full((k,), t, device=self.device, dtype=torch.long)

        def denoise(x_scaled: Tensor, t: int) -> Tensor:
            if tile is None:
                return self.denoiser(x_scaled, steps(n, t), gp, y0p)
            stacked = torch.cat([x_scaled, gp, y0p], dim=1)
            per_call = max(1, tiles.batch // n)  # tiles per call: up to `batch` images in all
            return tiled_apply(lambda z: self.denoiser(z[:, :3], steps(z.shape[0], t), z[:, 3:6], z[:, 6:9]),
                               stacked, tile, overlap, m, per_call)

        ap = pad_to_multiple(anchor.to(y0), m)[0] if anchor is not None else None
        out = sample(self.schedule, denoise, y0p, gp, ep, wp, start_step, ap)
        return crop_to(out, size)

    def __call__(
        self,
        lr: Tensor,
        seed: int = 0,
        noise: Optional[Tensor] = None,
        out_size: Optional[tuple[int, int]] = None,
        start_step: Optional[int] = None,
        tiles: TileOptions = TileOptions(),
    ) -> Tensor:
        """One LR batch [N,3,h,w] in [-1,1] -> HR [N,3,H,W] in [-1,1]. Noise: given, or drawn from `seed`
        for the whole (unpadded) frame."""
        y0, g = self.condition(lr, out_size, tiles)
        if noise is None:
            noise = self.noise(y0.shape, "frame", seed)
        return self.sample(y0, g, noise, None, start_step, tiles)
