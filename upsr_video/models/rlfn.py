"""RLFN (Kong et al., NTIRE 2022 efficient SR winner, MIT) as an off-the-shelf LR-grid g.

Re-implemented from the paper's description and the published layout (46 features, 48 mid channels, four
residual local feature blocks with enhanced spatial attention, PixelShuffle x4), with the published parameter
names so the authors' x4 weights (../shared/weights/rlfn_ntire2022_x4.safetensors, bicubic-trained) load
strictly. It expects RGB in 0..255; the wrapper keeps g's [-1, 1] interface. Its ESA up-samples a strided,
max-pooled map to the input's size, a scale that depends on that size, so tiles are not exact whatever their overlap
(receptive_radius is a practical overlap, not a bound): on a 640x360 frame in 256-px tiles the mean difference from
the whole frame is 0.014 grey levels, 0.07% of the values differ by more than 1 and the largest by 5-13, with 16 to
64 px of overlap alike. Every frame of a run is tiled alike, so this does not flicker.

`RLFNOut` is the same network on the output grid (models.aux): its first convolution reads PixelUnshuffle(4) of
y0 (48 channels) instead of one LR pixel, and its PixelShuffle(4) lands on the output size, so its cost follows the
output whatever the factor. `lift_lr_grid` turns the published x4 weights into its starting point: at x4 the
4x4 block of y0 is the bicubic up-scale of one LR pixel, whose centre 2x2 average is that pixel to within a
slight blur, so the lifted network starts as RLFN at x4 and training teaches it the other factors.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ESA(nn.Module):
    """Enhanced spatial attention: a strided, max-pooled branch that gates the features."""

    def __init__(self, channels: int, esa: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, esa, 1)
        self.conv_f = nn.Conv2d(esa, esa, 1)
        self.conv2 = nn.Conv2d(esa, esa, 3, 2, 0)
        self.conv3 = nn.Conv2d(esa, esa, 3, 1, 1)
        self.conv4 = nn.Conv2d(esa, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        c1_ = self.conv1(x)
        c1 = F.max_pool2d(self.conv2(c1_), kernel_size=7, stride=3)
        c3 = F.interpolate(self.conv3(c1), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x * self.conv4(c3 + self.conv_f(c1_)).sigmoid()


class RLFB(nn.Module):
    def __init__(self, channels: int = 46, mid: int = 48, esa: int = 16):
        super().__init__()
        self.c1_r = nn.Conv2d(channels, mid, 3, 1, 1)
        self.c2_r = nn.Conv2d(mid, mid, 3, 1, 1)
        self.c3_r = nn.Conv2d(mid, channels, 3, 1, 1)
        self.c5 = nn.Conv2d(channels, channels, 1)
        self.esa = ESA(channels, esa)

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.c1_r(x), 0.05)
        out = F.leaky_relu(self.c2_r(out), 0.05)
        out = F.leaky_relu(self.c3_r(out), 0.05)
        return self.esa(self.c5(out + x))


class RLFN(nn.Module):
    grid = "lr"

    def __init__(self, scale: int = 4, channels: int = 46, mid: int = 48):
        super().__init__()
        self.scale = scale
        self.receptive_radius = 16
        self.fea_conv = nn.Conv2d(3, channels, 3, 1, 1)
        self.B1, self.B2, self.B3, self.B4 = (RLFB(channels, mid) for _ in range(4))
        self.LR_conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.upsampler = nn.Sequential(nn.Conv2d(channels, 3 * scale * scale, 3, 1, 1), nn.PixelShuffle(scale))

    def forward(self, lr: Tensor) -> Tensor:
        x = (lr + 1) * 127.5
        fea = self.fea_conv(x)
        out = self.B4(self.B3(self.B2(self.B1(fea))))
        return self.upsampler(self.LR_conv(out) + fea) / 127.5 - 1


class RLFNOut(RLFN):
    grid = "output"
    unshuffle = 4

    def __init__(self, scale: int = 4, channels: int = 46, mid: int = 48):
        super().__init__(4, channels, mid)
        self.scale = scale
        r = self.unshuffle
        self.fea_conv = nn.Conv2d(3 * r * r, channels, 3, 1, 1)
        self.receptive_radius = r * 16

    min_grid = 16  # ESA's strided conv and 7x7 max-pool need at least 15 grid positions

    def forward(self, y0: Tensor) -> Tensor:
        """Pads y0 (replicate) to a multiple of 4 and to at least 64 px, and crops back: any size works."""
        r = self.unshuffle
        h, w = y0.shape[-2:]
        ph, pw = max((-h) % r, r * self.min_grid - h), max((-w) % r, r * self.min_grid - w)
        if ph or pw:
            y0 = F.pad(y0, (0, pw, 0, ph), mode="replicate")
        return super().forward(F.pixel_unshuffle(y0, r))[..., :h, :w]

    @staticmethod
    def lift_lr_grid(state: dict[str, Tensor]) -> dict[str, Tensor]:
        """The published LR-grid x4 state dict -> RLFNOut's: fea_conv's weight for LR pixel c is spread over
        the centre 2x2 of c's 4x4 block (channel c*16 + 4i + j after PixelUnshuffle), a quarter each."""
        state = dict(state)
        w = state["fea_conv.weight"]
        lifted = w.new_zeros(w.shape[0], w.shape[1], 4, 4, *w.shape[2:])
        lifted[:, :, 1:3, 1:3] = w[:, :, None, None] / 4
        state["fea_conv.weight"] = lifted.reshape(w.shape[0], w.shape[1] * 16, *w.shape[2:])
        return state
