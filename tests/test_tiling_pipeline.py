"""Padding, tiling and the UPSRPipeline on odd sizes: shapes, round trips and seam size."""
import torch
import torch.nn.functional as F
from torch import nn

from upsr_video.models.aux import build_aux
from upsr_video.pipeline import TileOptions, UPSRPipeline
from upsr_video.tiling import crop_to, pad_to_multiple, tile_starts, tiled_apply


class LocalDenoiser(nn.Module):
    """A deterministic denoiser with a small receptive field (two 3x3 convs) and a spatial multiple of 16:
    enough to show what tiling does to a network that sees only its tile."""

    spatial_multiple = 16

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(9, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x, t, g, y0):
        assert x.shape[-2] % 16 == 0 and x.shape[-1] % 16 == 0
        h = torch.tanh(self.c1(torch.cat([x, g, y0], 1)))
        return g + 0.1 * self.c2(h) + 0.01 * t.view(-1, 1, 1, 1)


def test_pad_crop_roundtrip_odd_sizes():
    x = torch.randn(1, 3, 131, 77)
    for m in (8, 64, 256):
        p, size = pad_to_multiple(x, m)
        assert p.shape[-2] % m == 0 and p.shape[-1] % m == 0
        assert torch.equal(crop_to(p, size), x)
    tiny = torch.randn(1, 3, 5, 3)
    p, size = pad_to_multiple(tiny, 64)  # too small to reflect: replicate
    assert p.shape[-2:] == (64, 64) and torch.equal(crop_to(p, size), tiny)


def test_tile_starts_cover():
    for length in (64, 131, 300, 524):
        starts = tile_starts(length, 64, 16, 16)
        assert starts[0] == 0 and starts[-1] + 64 == length if length >= 64 else starts == [0]
        covered = torch.zeros(length, dtype=torch.bool)
        for s in starts:
            covered[s : s + 64] = True
        assert covered.all()


def test_tiled_apply_equals_whole_for_pointwise_and_is_close_for_local_ops():
    x = torch.randn(1, 3, 131, 77)
    pointwise = lambda z: torch.sigmoid(3 * z)
    torch.testing.assert_close(tiled_apply(pointwise, x, 32, 8), pointwise(x), rtol=0, atol=1e-6)
    k = torch.ones(3, 1, 3, 3) / 9
    blur = lambda z: F.conv2d(z, k, padding=1, groups=3)
    diff = (tiled_apply(blur, x, 48, 16) - blur(x)).abs()
    # only the wrong 1-px tile borders leak in, at the raised-cosine's smallest weight
    assert float(diff.max()) < 0.02


def _pipe(tile=None):
    return UPSRPipeline(LocalDenoiser(), build_aux("bicubic"))


def test_pipeline_odd_size_shapes_tiling_and_noise():
    pipe = _pipe()
    lr = torch.rand(1, 3, 77, 131) * 2 - 1  # 131x77 (W x H)
    whole = pipe(lr, seed=5)
    assert whole.shape == (1, 3, 308, 524)
    assert float(whole.min()) >= -1 and float(whole.max()) <= 1
    tiled = pipe(lr, seed=5, tiles=TileOptions(tile=128, overlap=32))
    seam = (tiled - whole).abs()
    assert float(seam.max()) < 0.01, float(seam.max())
    again = pipe(lr, seed=5)
    assert torch.equal(whole, again)
    other = pipe(lr, seed=6)
    assert not torch.equal(whole, other)


def test_pipeline_arbitrary_output_size_and_g_tiles():
    pipe = _pipe()
    lr = torch.rand(1, 3, 40, 50) * 2 - 1
    out = pipe(lr, seed=0, out_size=(90, 113))
    assert out.shape == (1, 3, 90, 113)
    # g tiled with its receptive field as context is exact
    aux = build_aux("compact-xs")
    with torch.no_grad():
        for p in aux.parameters():
            p.normal_(0, 0.05)
    p2 = UPSRPipeline(LocalDenoiser(), aux)
    _, g_whole = p2.condition(lr, tiles=TileOptions(aux_tile=None))
    _, g_tiled = p2.condition(lr, tiles=TileOptions(aux_tile=16))
    torch.testing.assert_close(g_tiled, g_whole, rtol=0, atol=1e-5)


def test_g_only_fallback_returns_g():
    aux = build_aux("bicubic")
    pipe = UPSRPipeline(None, aux)
    lr = torch.rand(1, 3, 10, 12) * 2 - 1
    out = pipe(lr)
    assert not pipe.is_diffusion
    torch.testing.assert_close(out, F.interpolate(lr, scale_factor=4, mode="bicubic").clamp(-1, 1))


def test_tile_option_counts_input_pixels_at_the_runs_factor():
    """--tile T bounds tiles of T input pixels: the denoiser's (HR) tile is T times this run's factor (x4: 4T,
    x1.5: 1.5T; the larger axis for a stretched target), whatever scale the checkpoint was trained at. Without
    --tile a frame up to ~2.2 MPixel goes whole, larger ones in 1024-px tiles."""
    from upsr_video.process import UpscaleOptions, auto_tiles

    pipe = _pipe()
    opts = UpscaleOptions(tile=100)
    assert pipe.scale == 4
    assert auto_tiles(pipe, opts, (1080, 1920), (270, 480)).tile == 400
    assert auto_tiles(pipe, opts, (1080, 1920), (720, 1280)).tile == 150
    assert auto_tiles(pipe, opts, (1080, 1920), (540, 1280)).tile == 200  # x2 vertically, x1.5 across
    assert auto_tiles(pipe, UpscaleOptions(), (1080, 1920), (720, 1280)).tile is None
    assert auto_tiles(pipe, UpscaleOptions(), (2160, 3840), (1080, 1920)).tile == 1024
