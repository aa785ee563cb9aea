"""RLFN (Kong et al., NTIRE 2022 efficient SR winner, MIT) as an off-the-shelf LR-grid g.

Re-implemented from the paper's description and the published layout (46 features, 48 mid channels, four
residual local feature blocks with enhanced spatial attention, PixelShuffle x4), with the published parameter
names so the authors' x4 weights (../shared/weights/rlfn_ntire2022_x4.safetensors, bicubic-trained) load
strictly. It expects RGB in 0..255; the wrapper keeps g's [-1, 1] interface. Its ESA pools over the whole
input, so tiles are not exact (receptive_radius is a practical overlap, not a bound).
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
