"""Swin window attention on NCHW feature maps, as used inside the UPSR denoiser.

A reimplementation of the layer the official UPSR UNet interleaves with its ResBlocks: 1x1 "patch
embedding" to `embed_dim`, `depth` Swin blocks (GroupNorm instead of LayerNorm, 1x1-conv MLP, windowed
multi-head attention with a relative position bias, every second block shifted by half a window) and a
1x1 projection back. There is no residual around the whole layer, only inside each block. Module and
buffer names follow the official checkpoint (`patch_embed.proj`, `blocks.K.attn.qkv`, ...), so its
weights load strictly.

Two official details are reproduced on purpose because the released weights were trained with them:
- A block whose construction-time resolution is not larger than the window uses the whole map as one
  window and no shift (so a 64x64 training crop gets unshifted attention at its 8x8 level).
- The shifted-window mask of the official code only separates tokens of the bottom window row, by the
  token's column (an indexing slip: regions are labelled along H and the window is then read transposed).
  `official_mask=True` reproduces that; `False` gives the textbook 3x3-region Swin mask.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MASK_VALUE = -100.0  # official value for "different region" (finite, not -inf)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm evaluated in float32 (stable under fp16/bf16 autocast), cast back to the input dtype."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int, groups: int = 32) -> GroupNorm32:
    if channels % groups:
        raise ValueError(f"GroupNorm: {channels} channels are not divisible by {groups} groups")
    return GroupNorm32(groups, channels)


def relative_position_index(window: int) -> Tensor:
    """(w*w, w*w) index into the (2w-1)^2 bias table for every (query, key) token pair of a window."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + (window - 1)
    dx = xs[:, None] - xs[None, :] + (window - 1)
    return dy * (2 * window - 1) + dx


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, C, H, W) -> (B, nW, w*w, C); windows in raster order, tokens row-major within a window."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // window, window, w // window, window)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // window) * (w // window), window * window, c)


def window_reverse(windows: Tensor, window: int, h: int, w: int) -> Tensor:
    """Inverse of `window_partition`: (B, nW, w*w, C) -> (B, C, H, W)."""
    b, _, _, c = windows.shape
    x = windows.view(b, h // window, w // window, window, window, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)


def shift_window_mask(h: int, w: int, window: int, shift: int, official: bool = False) -> Tensor:
    """(nW, w*w, w*w) additive mask for shifted-window attention on an h x w map (0 or MASK_VALUE).

    Tokens that wrapped around in the cyclic shift come from other image regions and must not attend to
    each other. Textbook Swin labels 3 bands along H times 3 along W. `official=True` reproduces the
    official UPSR mask: bands along H only, with each window's tokens read column-major (see module doc).
    """
    def bands(n: int) -> Tensor:
        idx = torch.arange(n)
        return (idx >= n - window).long() + (idx >= n - shift).long()

    if official:
        labels = bands(h)[:, None].expand(h, w)
    else:
        labels = bands(h)[:, None] * 3 + bands(w)[None, :]
    win = labels.view(h // window, window, w // window, window).permute(0, 2, 1, 3)  # nH, nW, wy, wx
    if official:
        win = win.transpose(-1, -2)
    win = win.reshape(-1, window * window)
    diff = win[:, :, None] != win[:, None, :]
    return torch.zeros(diff.shape).masked_fill_(diff, MASK_VALUE)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative position bias."""

    def __init__(self, dim: int, window: int, num_heads: int, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention: dim {dim} is not divisible by {num_heads} heads")
        self.dim, self.window, self.num_heads = dim, window, num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def bias(self) -> Tensor:
        n = self.window * self.window
        idx = self.relative_position_index.reshape(-1)
        return self.relative_position_bias_table[idx].view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, nW, N, C); mask: (nW, N, N) or None. Returns (B, nW, N, C)."""
        b, nw, n, c = x.shape
        hd = c // self.num_heads
        qkv = self.qkv(x).view(b, nw, n, 3, self.num_heads, hd).permute(3, 0, 1, 4, 2, 5)
        q, k, v = (t.reshape(b, nw * self.num_heads, n, hd) for t in qkv)  # windows x heads as one axis
        bias = self.bias().to(x.dtype)[None]  # 1, heads, N, N
        if mask is not None:
            bias = bias + mask.to(x.dtype)[:, None]  # nW, heads, N, N
        else:
            bias = bias.expand(nw, -1, -1, -1)
        bias = bias.reshape(nw * self.num_heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # scale = hd ** -0.5
        out = out.view(b, nw, self.num_heads, n, hd).permute(0, 1, 3, 2, 4).reshape(b, nw, n, c)
        return self.proj_drop(self.proj(out))


class Mlp(nn.Module):
    """Feed-forward part of a Swin block, as 1x1 convolutions on NCHW maps (official layout)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class SwinBlock(nn.Module):
    """norm -> (shifted) window attention -> residual; norm -> MLP -> residual. NCHW in and out."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, resolution: int,
                 mlp_ratio: float = 4.0, drop: float = 0.0, groups: int = 32, official_mask: bool = False):
        super().__init__()
        if resolution <= window:  # official rule: the whole (training) map is one window, no shift
            window, shift = resolution, 0
        self.window, self.shift, self.official_mask = window, shift, official_mask
        self.norm1 = normalization(dim, groups)
        self.attn = WindowAttention(dim, window, num_heads, proj_drop=drop)
        self.norm2 = normalization(dim, groups)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        # Kept only so official checkpoints load strictly; the mask actually used is rebuilt per input size.
        mask = shift_window_mask(resolution, resolution, window, shift, official_mask) if shift else None
        self.register_buffer("attn_mask", mask)
        self._mask_cache: dict[tuple, Tensor] = {}

    def _mask(self, h: int, w: int, x: Tensor) -> Tensor:
        key = (h, w, x.device, x.dtype)
        m = self._mask_cache.get(key)
        if m is None:
            if x.device.type == "meta":
                m = torch.zeros((h // self.window) * (w // self.window), self.window ** 2, self.window ** 2,
                                device="meta", dtype=x.dtype)
            else:
                m = shift_window_mask(h, w, self.window, self.shift, self.official_mask).to(x.device, x.dtype)
            self._mask_cache.clear()
            self._mask_cache[key] = m
        return m

    def forward(self, x: Tensor) -> Tensor:
        _, _, h, w = x.shape
        if h % self.window or w % self.window:
            raise ValueError(f"Swin block: feature map {h}x{w} is not a multiple of the window {self.window}")
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(2, 3))
        mask = self._mask(h, w, x) if self.shift else None
        y = window_reverse(self.attn(window_partition(y, self.window), mask), self.window, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(2, 3))
        x = x + y
        return x + self.mlp(self.norm2(x))


class _Proj(nn.Module):
    """1x1 projection holder, named like the official PatchEmbed / PatchUnEmbed (`.proj`)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class SwinLayer(nn.Module):
    """in_chans -> embed_dim (1x1) -> `depth` Swin blocks (odd ones shifted) -> in_chans (1x1).

    `resolution` is the map size this layer sees during training (official `img_size`); it only decides
    whether the window is clamped and shifting disabled, any multiple of the window works at run time.
    """

    def __init__(self, in_chans: int, embed_dim: int, num_heads: int, window: int, depth: int,
                 resolution: int, mlp_ratio: float = 4.0, drop: float = 0.0, groups: int = 32,
                 official_mask: bool = False):
        super().__init__()
        self.patch_embed = _Proj(in_chans, embed_dim)
        self.patch_unembed = _Proj(embed_dim, in_chans)  # registered before the blocks, as officially
        self.blocks = nn.ModuleList(
            SwinBlock(embed_dim, num_heads, window, 0 if i % 2 == 0 else window // 2, resolution,
                      mlp_ratio, drop, groups, official_mask)
            for i in range(depth)
        )

    @property
    def window(self) -> int:
        return max(b.window for b in self.blocks) if len(self.blocks) else 1

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        for blk in self.blocks:
            x = blk(x)
        return self.patch_unembed(x)
