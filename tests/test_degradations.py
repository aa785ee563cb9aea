"""Degradation model: kernel formulas vs independent numpy/scipy, noise/JPEG statistics, sizes, seeds."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.special
import torch
import torch.nn.functional as F
import yaml

from training import kernels as K
from training.degradations import (
    DegradationConfig,
    add_gaussian_noise,
    add_poisson_noise,
    degrade,
    filter2d,
    jpeg,
    sample_scale,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TRAIN_HR = SHARED / "data" / "images" / "train_hr"
SET5 = SHARED / "data" / "images" / "Set5"
KPROB = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)


def _rgb(path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1].copy()


def _t(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / ((a - b) ** 2).mean()))


@pytest.fixture(scope="module")
def hr_batch() -> torch.Tensor:
    """Four 128x128 crops of two real HR images."""
    crops = []
    for name in ("bsd100_img_003_SRF_4_HR.png", "bsd100_img_007_SRF_4_HR.png"):
        im = _t(_rgb(TRAIN_HR / name))
        crops += [im[:, 40:168, 60:188], im[:, 170:298, 150:278]]
    return torch.stack(crops)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _np_quad(size, sx, sy, theta):
    r = np.arange(size) - (size - 1) / 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    d = np.stack([xx, yy], -1)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    sigma = rot @ np.diag([sx**2, sy**2]) @ rot.T
    inv = np.linalg.inv(sigma)
    return np.einsum("hwi,ij,hwj->hw", d, inv, d)


# -- kernels --------------------------------------------------------------------------------------


def test_random_kernels_sum_to_one_and_respect_size():
    gen = _gen(0)
    n = 64
    ks = K.random_kernel_sizes(gen, n, 7, 21)
    assert set(ks.tolist()) <= set(range(7, 22, 2)) and len(set(ks.tolist())) >= 5
    k = K.random_mixed_kernels(gen, n, ks, KPROB, (0.2, 3.0), (0.5, 4.0), (1.0, 2.0), grid=21)
    assert k.shape == (n, 21, 21)
    assert torch.allclose(k.sum((-2, -1)), torch.ones(n), atol=1e-5)
    assert (k >= 0).all()
    for i in range(n):
        half = int(ks[i]) // 2
        inside = k[i, 10 - half : 11 + half, 10 - half : 11 + half]
        assert float(inside.sum()) == pytest.approx(1.0, abs=1e-5)  # nothing outside the kernel size
    blur = K.random_blur_kernels(gen, n, (7, 21), KPROB, (0.2, 3.0), (0.5, 4.0), (1.0, 2.0), 0.5, grid=21)
    assert torch.allclose(blur.sum((-2, -1)), torch.ones(n), atol=1e-5)
    assert (blur < 0).any()  # the sinc kernels (prob 0.5 here) have negative lobes


def test_isotropic_kernels_are_symmetric():
    sig = torch.tensor([0.4, 1.3, 2.9])
    ks = torch.tensor([7, 13, 21])
    kinds = [
        K.gaussian_kernels(ks, sig, sig, torch.zeros(3)),
        K.gaussian_kernels(ks, sig, sig, torch.zeros(3), beta=torch.tensor([0.6, 1.0, 3.5])),
        K.gaussian_kernels(ks, sig, sig, torch.zeros(3), beta=torch.tensor([1.2, 1.5, 2.0]), plateau=True),
        K.sinc_kernels(torch.tensor([1.2, 2.0, 3.0]), ks),
    ]
    for k in kinds:
        assert torch.allclose(k.sum((-2, -1)), torch.ones(3), atol=1e-5)
        for t in (k.transpose(-2, -1), k.flip(-1), k.flip(-2), torch.rot90(k, 1, (-2, -1))):
            assert torch.allclose(k, t, atol=1e-7)


def test_anisotropic_gaussian_matches_numpy_formula():
    sx, sy, th = 2.5, 0.7, 0.6
    k = K.gaussian_kernels(torch.tensor([15]), torch.tensor([sx]), torch.tensor([sy]), torch.tensor([th]), grid=15)[0]
    ref = np.exp(-0.5 * _np_quad(15, sx, sy, th))
    ref /= ref.sum()
    np.testing.assert_allclose(k.numpy(), ref, atol=1e-7)
    assert not torch.allclose(k, k.transpose(0, 1), atol=1e-4)  # rotated -> not transpose-symmetric
    assert torch.allclose(k, k.flip(0).flip(1), atol=1e-7)  # but point-symmetric


def test_generalized_and_plateau_formulas():
    sx, sy, th = 1.8, 1.1, -0.9
    args = (torch.tensor([21]), torch.tensor([sx]), torch.tensor([sy]), torch.tensor([th]))
    q = _np_quad(21, sx, sy, th)
    gauss = K.gaussian_kernels(*args)[0]
    gen1 = K.gaussian_kernels(*args, beta=torch.tensor([1.0]))[0]
    assert torch.allclose(gen1, gauss, atol=1e-8)  # beta = 1 is the Gaussian
    gen = K.gaussian_kernels(*args, beta=torch.tensor([2.5]))[0]
    ref = np.exp(-0.5 * q**2.5)
    np.testing.assert_allclose(gen.numpy(), ref / ref.sum(), atol=1e-7)
    plat = K.gaussian_kernels(*args, beta=torch.tensor([1.5]), plateau=True)[0]
    ref = 1.0 / (1.0 + q**1.5)
    np.testing.assert_allclose(plat.numpy(), ref / ref.sum(), atol=1e-7)


def test_sinc_kernel_closed_form():
    w = 1.7
    raw = K.sinc_kernels(torch.tensor([w]), torch.tensor([13]), grid=13, normalize=False)[0].double()
    assert float(raw[6, 6]) == pytest.approx(w**2 / (4 * math.pi), rel=1e-6)
    # the centre value is the r -> 0 limit of w J1(w r) / (2 pi r)
    r = 1e-4
    assert float(raw[6, 6]) == pytest.approx(w * scipy.special.j1(w * r) / (2 * math.pi * r), rel=1e-6)
    for (i, j) in [(6, 7), (2, 9), (0, 0), (12, 5)]:
        rr = math.hypot(i - 6, j - 6)
        assert float(raw[i, j]) == pytest.approx(w * scipy.special.j1(w * rr) / (2 * math.pi * rr), rel=1e-5, abs=1e-9)
    norm = K.sinc_kernels(torch.tensor([w]), torch.tensor([13]), grid=13)[0]
    assert float(norm.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(norm[6, 6]) == pytest.approx(float(raw[6, 6] / raw.sum()), rel=1e-5)


def test_filter2d_matches_opencv_per_image(hr_batch):
    gen = _gen(3)
    k = K.random_blur_kernels(gen, 4, (7, 21), KPROB, (0.2, 3.0), (0.5, 4.0), (1.0, 2.0), 0.3, grid=21)
    out = filter2d(hr_batch, k)
    for i in range(4):
        img = hr_batch[i].permute(1, 2, 0).numpy()
        # cv2.filter2D correlates; BORDER_REFLECT_101 is torch's "reflect"
        ref = cv2.filter2D(img, -1, k[i].numpy(), borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_allclose(out[i].permute(1, 2, 0).numpy(), ref, atol=2e-5)


# -- JPEG and noise -------------------------------------------------------------------------------


def test_jpeg_changes_image_less_at_higher_quality(hr_batch):
    x = (hr_batch[:1] * 255).round() / 255
    psnrs = [_psnr(jpeg(x, q), x) for q in (30, 50, 70, 95)]
    assert all(p < 60 for p in psnrs)  # JPEG changed the image
    assert psnrs == sorted(psnrs) and psnrs[-1] - psnrs[0] > 3, psnrs
    assert torch.equal(jpeg(x, 50), jpeg(x, 50))


def test_gaussian_noise_sigma_range():
    cfg = DegradationConfig(
        blur_prob=0.0,
        resize_prob=(0, 0, 1),
        gaussian_noise_prob=1.0,
        jpeg_prob=0.0,
        second_blur_prob=0.0,
        resize_prob2=(0, 0, 1),
        noise_prob2=0.0,
        jpeg_prob2=0.0,
        final_sinc_prob=0.0,
    )
    n = 64
    flat = torch.full((n, 3, 64, 64), 128 / 255)
    lr = degrade(flat, 1.0, cfg, _gen(11))
    noise = lr - flat
    sig = noise.flatten(1).std(1)
    # 8-bit rounding adds 1/12 LSB^2 of variance; 12288 samples give < 1 % estimation error
    assert float(sig.min()) >= 1 / 255 * 0.98 and float(sig.max()) <= 30 / 255 * 1.02, (sig * 255).tolist()
    assert float(sig.min()) < 4 / 255 and float(sig.max()) > 25 / 255  # the whole range is used
    assert abs(float(noise.mean())) < 0.5 / 255
    gray = (noise[:, 0] == noise[:, 1]).all((-2, -1)) & (noise[:, 1] == noise[:, 2]).all((-2, -1))
    assert 0.15 < float(gray.float().mean()) < 0.65  # gray noise prob 0.4


def test_gaussian_noise_gray_shares_channels():
    x = torch.full((2, 3, 32, 32), 0.5)
    out = add_gaussian_noise(x, torch.tensor([10 / 255, 10 / 255]), torch.tensor([True, False]), _gen(0))
    assert torch.equal(out[0, 0], out[0, 1]) and torch.equal(out[0, 1], out[0, 2])
    assert not torch.equal(out[1, 0], out[1, 1])


def test_poisson_noise_variance_follows_intensity():
    # a ramp with all 256 levels: photon count per unit = 256, so var(noise) = v / 256 * scale^2
    ramp = torch.arange(256, dtype=torch.float32) / 255
    x = ramp.view(1, 1, 1, 256).expand(4, 3, 64, 256).contiguous()
    for scale in (1.0, 2.0):
        out = add_poisson_noise(x, torch.full((4,), scale), torch.zeros(4, dtype=torch.bool), _gen(5))
        noise = (out - x)[..., 80:180]  # columns far from the clamps
        var = noise.pow(2).mean(dim=(0, 1, 2))
        expected = ramp[80:180] / 256 * scale**2
        assert float((var / expected).mean()) == pytest.approx(1.0, abs=0.05)


# -- full degradation -----------------------------------------------------------------------------


def test_degrade_reproducible_and_seed_dependent(hr_batch):
    cfg = DegradationConfig()
    a = degrade(hr_batch, 4.0, cfg, _gen(123))
    b = degrade(hr_batch, 4.0, cfg, _gen(123))
    c = degrade(hr_batch, 4.0, cfg, _gen(124))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a[0] - a[1]).abs().max() > 0.05  # different images, different outputs
    assert torch.equal(torch.rand(1, generator=_gen(123)), torch.rand(1, generator=_gen(123)))


@pytest.mark.parametrize("mode", ["realesrgan", "bicubic"])
@pytest.mark.parametrize("scale", [1.5, 2.0, 3.0, 3.7, 4.0])
def test_output_size_range_and_quantisation(hr_batch, mode, scale):
    hr = hr_batch[:2, :, :117, :101]
    lr = degrade(hr, scale, DegradationConfig(mode=mode), _gen(int(scale * 10)))
    assert lr.shape == (2, 3, round(117 / scale), round(101 / scale))
    assert lr.dtype == torch.float32 and float(lr.min()) >= 0 and float(lr.max()) <= 1
    assert torch.equal((lr * 255).round() / 255, lr)


def test_realesrgan_is_harder_than_bicubic(hr_batch):
    def up_psnr(mode):
        lr = degrade(hr_batch, 4.0, DegradationConfig(mode=mode), _gen(9))
        up = F.interpolate(lr, size=hr_batch.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        return np.mean([_psnr(up[i], hr_batch[i]) for i in range(len(hr_batch))])

    assert up_psnr("realesrgan") < up_psnr("bicubic") - 1.0


def test_bicubic_mode_is_antialiased_interpolate(hr_batch):
    lr = degrade(hr_batch, 4.0, DegradationConfig(mode="bicubic"), _gen(0))
    ref = F.interpolate(hr_batch, size=(32, 32), mode="bicubic", align_corners=False, antialias=True)
    assert torch.equal(lr, (ref.clamp(0, 1) * 255).round() / 255)


def test_bicubic_mode_reproduces_matlab_lr_of_set5():
    """The Set5 x4 LR images were made with MATLAB imresize; ours should be nearly identical."""
    for i in (1, 3):
        hr = _t(_rgb(SET5 / f"img_00{i}_SRF_4_HR.png"))[None]
        lr_ref = _t(_rgb(SET5 / f"img_00{i}_SRF_4_LR.png"))
        lr = degrade(hr, 4.0, DegradationConfig(mode="bicubic"), _gen(0))[0]
        assert lr.shape == lr_ref.shape
        assert _psnr(lr, lr_ref) > 50
        no_aa = F.interpolate(hr, size=lr.shape[-2:], mode="bicubic", align_corners=False)[0].clamp(0, 1)
        assert _psnr(no_aa, lr_ref) < _psnr(lr, lr_ref) - 10  # antialiasing is what matches


# -- config and API -------------------------------------------------------------------------------


def test_config_round_trip_and_validation():
    cfg = DegradationConfig(mode="bicubic", noise_range=(2.0, 10.0))
    d = yaml.safe_load(yaml.safe_dump(cfg.to_dict()))
    assert DegradationConfig.from_dict(d) == cfg
    assert DegradationConfig.from_dict({}) == DegradationConfig()
    with pytest.raises(ValueError, match="unknown degradation config keys"):
        DegradationConfig.from_dict({"nosie_range": [1, 2]})
    with pytest.raises(ValueError, match="mode"):
        DegradationConfig(mode="gan")
    with pytest.raises(ValueError, match="sinc_prob"):
        DegradationConfig(sinc_prob=1.5)
    with pytest.raises(ValueError, match="kernel_range"):
        DegradationConfig(kernel_range=(6, 21))
    with pytest.raises(ValueError, match="jpeg_range"):
        DegradationConfig(jpeg_range=(30, 120))


def test_degrade_rejects_bad_input(hr_batch):
    cfg = DegradationConfig()
    with pytest.raises(ValueError, match=r"\[0,1\]"):
        degrade(hr_batch * 2 - 1, 4.0, cfg, _gen(0))
    with pytest.raises(ValueError, match="N,3,H,W"):
        degrade(hr_batch[0], 4.0, cfg, _gen(0))
    with pytest.raises(ValueError, match="scale"):
        degrade(hr_batch, 0.0, cfg, _gen(0))


def test_sample_scale():
    vals = [sample_scale(_gen(s), 1.5, 4.0) for s in range(50)]
    assert all(1.5 <= v <= 4.0 for v in vals) and max(vals) - min(vals) > 1.5
    assert sample_scale(_gen(7), 1.5, 4.0) == sample_scale(_gen(7), 1.5, 4.0)
    assert sample_scale(_gen(7), 4.0, 4.0) == 4.0
    with pytest.raises(ValueError):
        sample_scale(_gen(0), 4.0, 2.0)


def test_tiny_images_survive_the_full_pipeline():
    # stage-1 downscaling to 0.15 leaves 2-3 px, smaller than the blur padding (replicate fallback)
    hr = torch.rand(3, 3, 16, 20, generator=_gen(1))
    for seed in range(6):
        lr = degrade(hr, 4.0, DegradationConfig(resize_prob=(0, 1, 0), resize_range=(0.15, 0.2)), _gen(seed))
        assert lr.shape == (3, 3, 4, 5) and torch.isfinite(lr).all()
