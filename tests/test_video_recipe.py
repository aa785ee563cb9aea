"""The video training recipe: codec round trips, the video degradation, the output-grid g, the x_t-blend
denoiser residual. Checked against independent computations on real images."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.codec import compress
from training.degradations import DegradationConfig, degrade
from upsr_video.diffusion.schedule import Schedule
from upsr_video.models.aux import build_aux
from upsr_video.models.unet import DENOISER_PRESETS, build_denoiser
from upsr_video.pipeline import TileOptions, UPSRPipeline, make_condition

from tinymodel import randomised

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
IMG = SHARED / "data" / "images" / "train_hr" / "bsd100_img_003_SRF_4_HR.png"


def _img(h=120, w=160) -> np.ndarray:
    return cv2.imread(str(IMG), cv2.IMREAD_COLOR)[:h, :w, ::-1].copy()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def _ycbcr(a: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2YCrCb).astype(np.float64)


# -- codec -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec,good,bad", [("h264", 16, 40), ("mpeg4", 2, 20), ("mpeg2", 2, 20)])
def test_codec_round_trip_quality_follows_the_quantiser(codec, good, bad):
    img = _img()
    hi, lo = compress(img, codec, good), compress(img, codec, bad)
    assert hi.shape == img.shape and hi.dtype == np.uint8
    assert _psnr(hi, img) > _psnr(lo, img) + 2.0
    assert _psnr(hi, img) > 30.0


def test_codec_is_deterministic_and_handles_odd_and_tiny_sizes():
    img = _img(37, 53)
    a, b = compress(img, "h264", 30, (2, -1)), compress(img, "h264", 30, (2, -1))
    assert np.array_equal(a, b)
    tiny = _img(5, 7)
    assert compress(tiny, "mpeg2", 4).shape == (5, 7, 3)


def test_codec_subsamples_chroma():
    # a 1-px checkerboard of two colours of equal luma (BT.601): 4:2:0 averages its chroma away, the luma stays
    a, b = np.array([200, 50, 100], np.uint8), np.array([0, 150, 110], np.uint8)
    yy, xx = np.mgrid[:64, :64]
    img = np.where(((yy + xx) % 2 == 0)[..., None], a, b).astype(np.uint8)
    out = compress(img, "mpeg2", 2)
    yi, yo = _ycbcr(img), _ycbcr(out)
    luma_err = np.abs(yi[..., 0] - yo[..., 0]).mean()
    chroma_err = np.abs(yi[..., 1:] - yo[..., 1:]).mean()
    assert chroma_err > 10 * luma_err and chroma_err > 10


def test_codec_motion_returns_the_inter_coded_frame():
    img = _img()
    intra, inter = compress(img, "h264", 34), compress(img, "h264", 34, (3, 2))
    assert not np.array_equal(intra, inter)
    assert _psnr(inter, img) > 25 and _psnr(intra, img) > 25


def test_codec_rejects_unknown_codec():
    with pytest.raises(ValueError, match="unknown codec"):
        compress(_img(16, 16), "vp9", 30)


# -- video degradation -------------------------------------------------------------------------------


def _hr(n=2, size=96) -> torch.Tensor:
    """n real crops (the picture is 320 wide, so three per row)."""
    img = _img(480, 320)
    crops = [img[(i // 3) * size : (i // 3 + 1) * size, (i % 3) * size : (i % 3 + 1) * size] for i in range(n)]
    return torch.stack([torch.from_numpy(c.copy()).permute(2, 0, 1) for c in crops]).float() / 255


def _video_cfg(**kw) -> DegradationConfig:
    base = dict(mode="video", blur_prob=0.0, noise_prob=0.0, codec_prob=0.0, resize_modes=["bilinear"])
    base.update(kw)
    return DegradationConfig.from_dict(base)


def test_video_mode_bd_blur_equals_gaussian_blur_then_pixel_centre_decimation():
    hr = _hr()
    cfg = _video_cfg(blur_prob=1.0, kernel_range=[13, 13], kernel_prob=[1, 0, 0, 0, 0, 0], blur_sigma=[1.6, 1.6],
                     sinc_prob=0.0)
    lr = degrade(hr, 4.0, cfg, torch.Generator().manual_seed(3))
    for i in range(hr.shape[0]):
        a = hr[i].permute(1, 2, 0).numpy().astype(np.float64)
        blur = cv2.GaussianBlur(a, (13, 13), 1.6, borderType=cv2.BORDER_REFLECT_101)
        # x4 at pixel centres: LR pixel j sits at HR coordinate 4j + 1.5, halfway between pixels 4j+1 and 4j+2
        ref = blur.reshape(24, 4, 24, 4, 3)[:, 1:3, :, 1:3].mean(axis=(1, 3))
        ref = np.round(np.clip(ref, 0, 1) * 255) / 255
        got = lr[i].permute(1, 2, 0).numpy()
        assert np.abs(got - ref).max() <= 1.01 / 255


def test_blur_stated_at_a_reference_factor_scales_with_the_factor():
    """blur_ref_scale 4 with sigma 1.6 at x2 is a Gaussian of sigma 0.8 (the same 0.4 LR px as BD x4), then x2
    decimation at pixel centres (LR pixel j sits halfway between HR pixels 2j and 2j+1)."""
    hr = _hr()
    cfg = _video_cfg(blur_prob=1.0, kernel_range=[13, 13], kernel_prob=[1, 0, 0, 0, 0, 0], blur_sigma=[1.6, 1.6],
                     sinc_prob=0.0, blur_ref_scale=4)
    lr = degrade(hr, 2.0, cfg, torch.Generator().manual_seed(3))
    for i in range(hr.shape[0]):
        a = hr[i].permute(1, 2, 0).numpy().astype(np.float64)
        blur = cv2.GaussianBlur(a, (13, 13), 0.8, borderType=cv2.BORDER_REFLECT_101)
        ref = blur.reshape(48, 2, 48, 2, 3).mean(axis=(1, 3))
        ref = np.round(np.clip(ref, 0, 1) * 255) / 255
        assert np.abs(lr[i].permute(1, 2, 0).numpy() - ref).max() <= 1.01 / 255
    with pytest.raises(ValueError, match="blur_ref_scale"):
        _video_cfg(blur_ref_scale=0)


def test_video_mode_codec_equals_an_independent_round_trip():
    hr = _hr()
    cfg = _video_cfg(codec_prob=1.0, codec_weights=[1, 0, 0], crf_range=[26, 26], codec_motion_prob=0.0, resize_modes=["area"])
    lr = degrade(hr, 2.0, cfg, torch.Generator().manual_seed(0))
    down = F.interpolate(hr, size=(48, 48), mode="area")
    down8 = (down.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i in range(hr.shape[0]):
        ref = compress(down8[i], "h264", 26)
        assert np.array_equal((lr[i] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), ref)


@pytest.mark.parametrize("scale", [1.25, 1.5, 2.7, 4.0])
def test_video_mode_sizes_reproducibility_and_seeds(scale):
    hr = _hr(4)
    cfg = DegradationConfig.from_dict({"mode": "video", "codec_prob": 0.7})
    a = degrade(hr, scale, cfg, torch.Generator().manual_seed(5))
    b = degrade(hr, scale, cfg, torch.Generator().manual_seed(5))
    c = degrade(hr, scale, cfg, torch.Generator().manual_seed(6))
    assert a.shape[-2:] == (round(96 / scale), round(96 / scale))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal((a * 255).round() / 255, a)


def test_video_config_validation():
    with pytest.raises(ValueError, match="codec_weights"):
        DegradationConfig.from_dict({"mode": "video", "codec_weights": [1, 0]})
    with pytest.raises(ValueError, match="resize_modes"):
        DegradationConfig.from_dict({"mode": "video", "resize_modes": ["lanczos"]})


# -- output-grid g -----------------------------------------------------------------------------------


def test_output_grid_g_starts_at_y0_and_keeps_any_size():
    g = build_aux("out-xs").eval()
    assert g.grid == "output"
    y0 = torch.rand(1, 3, 37, 51) * 2 - 1
    assert torch.equal(g(y0), y0)  # zero-initialised last conv: untrained g = bicubic
    g = randomised(g)
    assert g(y0).shape == y0.shape


def test_output_grid_g_runs_on_y0_at_the_output_size():
    g = randomised(build_aux("out-xs"))
    lr = torch.rand(1, 3, 30, 40) * 2 - 1
    y0, out = make_condition(g, lr, (45, 60))
    ref_y0 = F.interpolate(lr, size=(45, 60), mode="bicubic", align_corners=False)
    assert torch.equal(y0, ref_y0)
    assert torch.allclose(out, g(ref_y0))


def test_output_grid_g_tiles_exactly():
    g = randomised(build_aux("out-xs"))
    pipe = UPSRPipeline(None, g)
    lr = torch.rand(1, 3, 70, 90) * 2 - 1
    size = (150, 190)
    _, whole = pipe.condition(lr, size, TileOptions(aux_tile=None))
    _, tiled = pipe.condition(lr, size, TileOptions(aux_tile=8))  # 32-px tiles of y0
    assert torch.allclose(whole, tiled, atol=1e-5)


# -- denoiser with the x_t blend ---------------------------------------------------------------------


def test_xt_wiener_weights_match_the_formula():
    s = Schedule()
    lam = s.xt_wiener_weights(0.1, 0.7)
    for t, eta in enumerate(s.etas.tolist()):
        assert lam[t] == pytest.approx(0.01 / (0.01 + 2.5**2 * eta * 0.49), rel=1e-12)
    assert lam[0] > 0.7 and lam[-1] < 0.01


def test_g_xt_residual_starts_at_the_blend_of_x_t_and_g():
    s = Schedule()
    cfg = DENOISER_PRESETS["upsr-tiny"].to_dict()
    cfg.update(residual="g_xt", xt_blend=s.xt_wiener_weights(), input_scales=[s.input_scale(t) for t in range(s.T)])
    net = build_denoiser(cfg).eval()
    m = net.spatial_multiple
    x0 = torch.rand(2, 3, m, m) * 2 - 1
    g, y0 = x0 + 0.1 * torch.randn_like(x0), x0 + 0.2 * torch.randn_like(x0)
    t = torch.tensor([0, 3])
    x_t = s.q_sample(x0, y0, t, torch.randn_like(x0), 1.0)
    x_in = x_t / s.input_scale_tensor(t, x_t)
    with torch.no_grad():
        out = net(x_in, t, g, y0)
    lam = torch.tensor(s.xt_wiener_weights(), dtype=torch.float32)[t].view(2, 1, 1, 1)
    assert torch.allclose(out, g + lam * (x_t - g), atol=1e-5)
    assert any(n == "xt_blend" for n, _ in net.named_parameters())


def test_g_xt_needs_its_values():
    cfg = DENOISER_PRESETS["upsr-tiny"].to_dict()
    cfg["residual"] = "g_xt"
    with pytest.raises(ValueError, match="g_xt"):
        build_denoiser(cfg)


# -- RLFN, the off-the-shelf LR-grid g -----------------------------------------------------------------


def test_rlfn_loads_the_published_weights_and_beats_bicubic_on_set14():
    from safetensors.torch import load_file

    from upsr_video.eval.fidelity import psnr_y
    from upsr_video.eval.sr_bench import load_pairs, to_tensor, to_uint8

    g = build_aux("rlfn")
    g.load_state_dict(load_file(str(SHARED / "weights" / "rlfn_ntire2022_x4.safetensors")), strict=True)
    assert sum(p.numel() for p in g.parameters()) == 317_218 and g.grid == "lr"
    pairs = load_pairs(SHARED / "data" / "images" / "Set14", 4)[:3]
    gains = []
    with torch.no_grad():
        for p in pairs:
            lr = to_tensor(p.lr)
            out = to_uint8(g.eval()(lr).clamp(-1, 1))
            bic = to_uint8(F.interpolate(lr, size=p.hr.shape[:2], mode="bicubic", align_corners=False).clamp(-1, 1))
            gains.append(psnr_y(out, p.hr, 4) - psnr_y(bic, p.hr, 4))
    assert min(gains) > 0.4  # baboon, barbara, bridge: hard images; a wrong load loses to bicubic


def test_rlfn_lifted_to_the_output_grid_starts_as_rlfn_at_x4_and_keeps_any_size():
    from safetensors.torch import load_file

    from upsr_video.eval.fidelity import psnr_y
    from upsr_video.eval.sr_bench import load_pairs, to_tensor, to_uint8
    from upsr_video.models.rlfn import RLFNOut

    state = load_file(str(SHARED / "weights" / "rlfn_ntire2022_x4.safetensors"))
    lr_grid = build_aux("rlfn").eval()
    lr_grid.load_state_dict(state, strict=True)
    out_grid = build_aux("rlfn-out").eval()
    out_grid.load_state_dict(RLFNOut.lift_lr_grid(state), strict=True)
    assert out_grid.grid == "output"
    # the lifted first conv: LR pixel c's weight, a quarter on each of the centre 2x2 of its 4x4 block, 0 elsewhere
    w = out_grid.fea_conv.weight.reshape(46, 3, 4, 4, 3, 3)
    assert torch.equal(w[:, :, 1:3, 1:3].sum((2, 3)), state["fea_conv.weight"])
    assert w[:, :, 0].abs().max() == 0 and w[:, :, :, 3].abs().max() == 0
    pairs = load_pairs(SHARED / "data" / "images" / "Set14", 4)[:2]
    with torch.no_grad():
        for p in pairs:
            lr = to_tensor(p.lr)
            ref = to_uint8(lr_grid(lr).clamp(-1, 1))
            _, g = make_condition(out_grid, lr, p.hr.shape[:2])
            lifted = to_uint8(g.clamp(-1, 1))
            assert abs(psnr_y(lifted, p.hr, 4) - psnr_y(ref, p.hr, 4)) < 0.3
            assert psnr_y(lifted, ref, 4) > 33  # the same network, not merely as good
        for size in ((37, 51), (8, 200)):  # any size, also below ESA's minimum grid
            assert out_grid(torch.rand(1, 3, *size) * 2 - 1).shape == (1, 3, *size)
