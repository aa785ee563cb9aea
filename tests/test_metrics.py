"""Evaluation metrics: LPIPS reference distances, fidelity formulas, flow/warp conventions, temporal
metrics against closed forms, report plots/tables."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from scipy import ndimage

from upsr_video.eval import fidelity, flow, plots, temporal
from upsr_video.eval.lpips_alex import ENV_VAR, image_to_tensor, load_lpips, lpips_distance

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEIGHTS = SHARED / "weights" / "lpips_alex_v0.1.safetensors"


def read_rgb(path: Path) -> np.ndarray:
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert im is not None, path
    return np.ascontiguousarray(im[:, :, ::-1])


def texture(h: int, w: int, ox: float = 0.0, oy: float = 0.0, seed: int = 0) -> np.ndarray:
    """Smooth multi-orientation sinusoid texture sampled at (x + ox, y + oy): exact sub-pixel shifts,
    values in about [50, 205] so added noise is not clipped."""
    rng = np.random.default_rng(seed)
    k = rng.uniform(-0.35, 0.35, (12, 2))
    ph = rng.uniform(0, 2 * np.pi, (12, 3))
    amp = rng.uniform(5, 12, 12)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = x + ox, y + oy
    img = np.full((h, w, 3), 128.0)
    for (kx, ky), p, a in zip(k, ph, amp):
        for c in range(3):
            img[..., c] += a * np.sin(kx * x + ky * y + p[c])
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def shifted_sequence(n: int, dx: float, dy: float, h: int = 96, w: int = 128) -> list[np.ndarray]:
    """Frame t is frame 0 moved by t * (dx, dy): I_t(x + t d) = I_0(x)."""
    return [texture(h, w, -t * dx, -t * dy) for t in range(n)]


def add_noise(frames, sigma: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(np.round(f + rng.normal(0, sigma, f.shape)), 0, 255).astype(np.uint8) for f in frames]


@pytest.fixture(scope="module")
def lp():
    return load_lpips(WEIGHTS)


# ---------------------------------------------------------------------------------------------- LPIPS
def test_lpips_reference_distances(lp):
    d = SHARED / "data" / "lpips_check"
    ref, p0, p1 = (read_rgb(d / f"ex_{n}.png") for n in ("ref", "p0", "p1"))
    assert round(lpips_distance(lp, ref, p0), 3) == 0.722
    assert round(lpips_distance(lp, ref, p1), 3) == 0.138
    assert lpips_distance(lp, ref, ref) == pytest.approx(0.0, abs=1e-6)


def test_lpips_frozen_but_differentiable(lp):
    assert not lp.training and all(not p.requires_grad for p in lp.parameters())
    lp.train()  # a training loop's .train() must not switch on the heads' dropout
    assert not lp.training
    a = image_to_tensor(texture(64, 64))
    b = image_to_tensor(texture(64, 64, 3, 1)).requires_grad_(True)
    d1 = lp(a, b).mean()
    d1.backward()
    assert b.grad is not None and torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0
    assert float(lp(a, b).mean().detach()) == pytest.approx(float(d1.detach()), abs=1e-7)  # deterministic (no dropout)
    assert all(p.grad is None for p in lp.parameters())


def test_lpips_weights_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        load_lpips()
    with pytest.raises(FileNotFoundError, match="not found"):
        load_lpips(tmp_path / "nope.safetensors")
    monkeypatch.setenv(ENV_VAR, str(WEIGHTS))
    m = load_lpips()
    ref = read_rgb(SHARED / "data" / "lpips_check" / "ex_ref.png")
    p1 = read_rgb(SHARED / "data" / "lpips_check" / "ex_p1.png")
    assert round(lpips_distance(m, ref, p1), 3) == 0.138
    bad = tmp_path / "bad.safetensors"
    save_file({"features.0.weight": torch.zeros(64, 3, 11, 11)}, str(bad))
    with pytest.raises(ValueError, match="missing keys"):
        load_lpips(bad)


# ------------------------------------------------------------------------------------------- fidelity
def test_rgb_to_y_known_colours():
    kr, kb = 0.299, 0.114  # BT.601
    kg = 1 - kr - kb
    cols = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 64, 200]], np.uint8)
    want = 16 + 219 * (kr * cols[:, 0] + kg * cols[:, 1] + kb * cols[:, 2]) / 255
    got = fidelity.rgb_to_y(cols[None])[0]
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert got[0] == pytest.approx(16) and got[1] == pytest.approx(235)


def test_psnr_matches_gaussian_noise_closed_form():
    rng = np.random.default_rng(1)
    clean = rng.integers(60, 196, (256, 256, 3)).astype(np.uint8)
    sigma = 4.0
    noisy = add_noise([clean], sigma, seed=2)[0]
    var = sigma**2 + 1 / 12  # + uniform rounding error of the uint8 quantisation
    want_rgb = 10 * math.log10(255**2 / var)
    # Y = sum c_i RGB_i with independent per-channel noise -> var * sum c_i^2
    c = np.array([65.481, 128.553, 24.966]) / 255
    want_y = 10 * math.log10(255**2 / (var * (c**2).sum()))
    assert fidelity.psnr_rgb(noisy, clean) == pytest.approx(want_rgb, abs=0.05)
    assert fidelity.psnr_y(noisy, clean, shave=4) == pytest.approx(want_y, abs=0.05)
    assert fidelity.psnr_y(clean, clean) == math.inf


def _ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Direct Wang et al. formula with scipy's Gaussian (11 taps: radius 5 = truncate*1.5)."""
    g = lambda z: ndimage.gaussian_filter(z, 1.5, truncate=5 / 1.5, mode="constant")[5:-5, 5:-5]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ma, mb = g(a), g(b)
    va, vb, cov = g(a * a) - ma**2, g(b * b) - mb**2, g(a * b) - ma * mb
    return float(np.mean((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))))


def test_ssim_against_independent_formula():
    hr = read_rgb(SHARED / "data" / "images" / "Set5" / "img_001_SRF_4_HR.png")
    lr = read_rgb(SHARED / "data" / "images" / "Set5" / "img_001_SRF_4_LR.png")
    hr = hr[: lr.shape[0] * 4, : lr.shape[1] * 4]
    up = cv2.resize(lr, (hr.shape[1], hr.shape[0]), interpolation=cv2.INTER_CUBIC)
    s = 4
    ya = fidelity.rgb_to_y(up)[s:-s, s:-s]
    yb = fidelity.rgb_to_y(hr)[s:-s, s:-s]
    got = fidelity.ssim_y(up, hr, shave=s)
    assert got == pytest.approx(_ssim_reference(ya, yb), abs=1e-6)
    assert 0.5 < got < 0.99
    assert fidelity.ssim_y(hr, hr, shave=s) == pytest.approx(1.0, abs=1e-12)
    assert fidelity.ssim_y(add_noise([hr], 10, 3)[0], hr, s) < got + 0.2  # noise lowers it
    assert 25 < fidelity.psnr_y(up, hr, s) < 40


def test_fidelity_rejects_bad_input():
    a = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        fidelity.psnr_y(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="shapes differ"):
        fidelity.ssim_y(a, np.zeros((32, 30, 3), np.uint8))
    with pytest.raises(ValueError, match="shave"):
        fidelity.psnr_rgb(a, a, shave=16)


# ----------------------------------------------------------------------------------------------- flow
@pytest.mark.parametrize("dx,dy", [(3.0, -2.0), (2.5, -1.25), (-4.6, 3.2)])
def test_dis_recovers_known_shift_and_warp_undoes_it(dx, dy):
    a, b = shifted_sequence(2, dx, dy)
    f = flow.dis_flow(a, b)
    assert f.shape == (96, 128, 2) and f.dtype == np.float32
    inner = (slice(16, -16), slice(16, -16))
    err = np.hypot(f[..., 0] - dx, f[..., 1] - dy)[inner]
    assert err.max() < 0.1
    back = flow.warp(b.astype(np.float32), f)
    assert np.abs(back - a)[inner].mean() < 0.5  # levels; unwarped |b - a| is tens of levels
    assert np.abs(b.astype(np.float32) - a)[inner].mean() > 5
    assert not flow.occlusion_mask(f, flow.dis_flow(b, a))[inner].any()


def test_dis_flow_reuses_one_instance_per_thread_with_the_result_of_a_new_one():
    """dis_flow keeps a DIS instance per thread and setting: its flows must equal a fresh instance's, whatever ran
    on it before (other frame sizes, other pairs), and threads must not share one."""
    from concurrent.futures import ThreadPoolExecutor

    frames = [read_rgb(p) for p in sorted((SHARED / "data/vid4/GT/walk").glob("*.png"))[:4]]
    grey = [flow.to_grey(f) for f in frames]
    small = [cv2.resize(g, (g.shape[1] // 4, g.shape[0] // 4), interpolation=cv2.INTER_AREA) for g in grey]
    pairs = [(small[0], small[1], 0), (grey[1], grey[2], None), (small[2], small[3], 0), (grey[3], grey[2], None),
             (small[3], small[2], 0)]
    for a, b, s in pairs:  # interleaved sizes and settings on this thread's instances
        np.testing.assert_array_equal(flow.dis_flow(a, b, s), flow.make_dis(s).calc(a, b, None))
    with ThreadPoolExecutor(4) as pool:  # the same pairs on 4 threads at once, 3 rounds
        got = list(pool.map(lambda p: flow.dis_flow(*p), pairs * 3))
    for (a, b, s), f in zip(pairs * 3, got):
        np.testing.assert_array_equal(f, flow.make_dis(s).calc(a, b, None))


def test_warp_direction_is_backward():
    a, b = shifted_sequence(2, 3.0, -2.0)
    const = np.zeros((96, 128, 2), np.float32)
    const[..., 0], const[..., 1] = 3, -2
    out = flow.warp(b, const)  # out(x) = b(x + d) = a(x) exactly for integer d (away from the border)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[2:-2, :-3], a[2:-2, :-3])


def test_occlusion_mask_square_moving_right():
    """Square [20:40, 20:40] moves 6 px right.  On A's grid: the background that the square covers in B
    (cols 40..45) fails the fw-bw check; the forward-difference motion boundary of the *forward* flow
    lies on cols 19 and 39 and rows 19 and 39.  Nothing else is flagged."""
    h = w = 64
    fw = np.zeros((h, w, 2), np.float32)
    fw[20:40, 20:40, 0] = 6
    bw = np.zeros((h, w, 2), np.float32)
    bw[20:40, 26:46, 0] = -6
    want = np.zeros((h, w), bool)
    want[20:40, 40:46] = True
    want[20:40, 19] = want[20:40, 39] = True
    want[19, 20:40] = want[39, 20:40] = True
    np.testing.assert_array_equal(flow.occlusion_mask(fw, bw), want)


# ------------------------------------------------------------------------------------------- temporal
def test_identical_frames_score_zero():
    frames = [texture(64, 80)] * 4
    e = temporal.warping_error(frames, frames)
    assert e.mean == 0.0 and e.per_pair == [0.0, 0.0, 0.0]
    mean, per_pair = e
    assert float(e) == mean == 0.0 and per_pair == e.per_pair
    assert temporal.flicker(frames).mean == 0.0


def test_warping_error_moving_clean_vs_noise_closed_form():
    seq = shifted_sequence(4, 2.0, 1.0)
    assert temporal.warping_error(seq, seq).mean < 2e-5  # O_t warped by the flow lands on O_{t-1}
    sigma = 6.0
    static = [texture(96, 128)] * 4
    noisy = add_noise(static, sigma, seed=4)
    # flow is 0 on the clean static reference, so E = E[(n_t - n_{t-1})^2] = 2 var (RGB in [0, 1])
    want = 2 * (sigma**2 + 1 / 12) / 255**2
    e = temporal.warping_error(noisy, static)
    assert e.mean == pytest.approx(want, rel=0.03)
    assert all(v == pytest.approx(want, rel=0.05) for v in e.per_pair)
    # flicker on the same (all static) clip: E|n_t - n_{t-1}| = 2 s / sqrt(pi)
    fl = temporal.flicker(noisy, static)
    assert fl.mean == pytest.approx(2 * math.sqrt(sigma**2 + 1 / 12) / math.sqrt(math.pi) / 255, rel=0.03)


def test_warping_error_skips_pairs_across_cuts():
    a = shifted_sequence(3, 1.5, 0.5)
    other = texture(96, 128, seed=7)
    seq = a[:2] + [other, other]
    without = temporal.warping_error(seq, seq)
    assert without.per_pair[1] > 100 * max(without.per_pair[0], 1e-6)  # the cut pair dominates
    cut = temporal.warping_error(seq, seq, cut_frames={2})
    assert math.isnan(cut.per_pair[1])
    assert cut.per_pair[0] == without.per_pair[0] and cut.per_pair[2] == without.per_pair[2]
    assert cut.mean == pytest.approx((without.per_pair[0] + without.per_pair[2]) / 2)
    with pytest.raises(ValueError, match="out of range"):
        temporal.warping_error(seq, seq, cut_frames={9})


def test_warping_error_real_video_noise():
    """Vid4 calendar GT (real pan): independent noise raises E_warp by between (1 + 1/4) and 2 var --
    bilinear warping averages the noise of frame t over up to four pixels."""
    gt = [read_rgb(SHARED / "data" / "vid4" / "GT" / "calendar" / f"Frame_{i:03d}.png") for i in (1, 2, 3)]
    sigma = 6.0
    base = temporal.warping_error(gt, gt)
    noisy = temporal.warping_error(add_noise(gt, sigma, seed=5), gt)
    ratio = (noisy.mean - base.mean) / ((sigma**2 + 1 / 12) / 255**2)
    assert 1.2 < ratio < 2.05


def test_flicker_ignores_moving_pixels():
    seq = shifted_sequence(3, 3.0, 0.0)
    fl = temporal.flicker(seq)
    assert math.isnan(fl.mean) and all(math.isnan(v) for v in fl.per_pair)  # nothing is static


def test_tof_zero_for_gt_and_positive_when_a_frame_is_perturbed():
    gt = shifted_sequence(8, 1.0, 0.5)
    z = temporal.tof(gt, gt)
    # 8 frames, 2 skipped at each end: frames 2..5, pairs t = 3, 4, 5
    assert [i + 1 for i, v in enumerate(z.per_pair) if not math.isnan(v)] == [3, 4, 5]
    assert z.mean == 0.0
    out = list(gt)
    out[3] = texture(96, 128, -3 * 1.0 + 2.0, -3 * 0.5)  # frame 3 displaced by 2 px
    p = temporal.tof(gt, out)
    assert p.per_pair[2] > 0.5 and p.per_pair[3] > 0.5  # pairs (2,3) and (3,4) see the jump
    assert p.per_pair[4] == 0.0  # pair (4,5) untouched
    with pytest.warns(UserWarning, match="shorter than 6"):
        short = temporal.tof(gt[:4], out[:4])
    assert not any(math.isnan(v) for v in short.per_pair) and short.mean > 0


def test_tlpips_zero_for_gt_and_positive_when_perturbed(lp):
    gt = shifted_sequence(6, 1.0, 0.5, h=64, w=80)
    z = temporal.tlpips(gt, gt, lp)
    assert z.mean == 0.0 and sum(not math.isnan(v) for v in z.per_pair) == 1
    out = add_noise(gt, 12.0, seed=6)
    assert temporal.tlpips(gt, out, lp).mean > 0.1
    with pytest.raises(ValueError, match="too small"):
        temporal.tlpips([g[:40] for g in gt], [g[:40] for g in gt], lp)


def test_temporal_rejects_bad_input():
    f = texture(32, 32)
    with pytest.raises(ValueError, match="at least 2"):
        temporal.warping_error([f], [f])
    with pytest.raises(ValueError, match="frames"):
        temporal.tof([f, f, f], [f, f])
    with pytest.raises(ValueError, match="uint8"):
        temporal.flicker([f.astype(np.float32)] * 2)


# ---------------------------------------------------------------------------------------------- plots
def test_plots_and_tables(tmp_path):
    curves = {"bicubic": [0.01, 0.012, math.nan, 0.011], "upsr": [0.02, 0.018, math.nan, 0.019]}
    p1 = plots.plot_per_frame(curves, "E_warp", tmp_path / "a" / "per_frame.png")
    table = {"bicubic": {"psnr_y": 26.1, "tof": 0.4}, "upsr": {"psnr_y": 25.3, "tof": 0.6}}
    p2 = plots.plot_bars(table, ["psnr_y", "tof"], tmp_path / "bars.png")
    imgs = {"gt": texture(96, 128), "out": texture(96, 128, 1, 1), "lr": texture(24, 32)}
    p3 = plots.image_grid(imgs, path=tmp_path / "grid.png")
    p4 = plots.image_grid(imgs, crop=(40, 30, 32, 24), path=tmp_path / "grid_crop.png")
    sizes = {}
    for p in (p1, p2, p3, p4):
        im = cv2.imread(str(p))
        assert im is not None and im.ndim == 3 and im.shape[0] >= 150 and im.shape[1] >= 300, p
        assert im.std() > 5  # not a blank canvas
        sizes[p.name] = im.shape
    assert sizes["grid_crop.png"][0] > sizes["grid.png"][0]  # the zoom row was added
    with pytest.raises(ValueError, match="outside"):
        plots.image_grid(imgs, crop=(120, 0, 32, 24), path=tmp_path / "x.png")
    with pytest.raises(ValueError, match="missing"):
        plots.plot_bars(table, ["lpips"], tmp_path / "y.png")

    rows = [{"clip": "calendar", "method": "bicubic", "e_warp": 0.0031, "tof": math.nan},
            {"clip": "city", "method": "upsr", "e_warp": 0.0042, "tlpips": 1.5}]
    plots.write_table(rows, tmp_path / "t" / "res.json", tmp_path / "t" / "res.csv")

    def no_nan(c):
        raise AssertionError(f"non-strict JSON constant {c}")

    data = json.loads((tmp_path / "t" / "res.json").read_text(), parse_constant=no_nan)
    assert data[0]["tof"] is None and data[1]["tlpips"] == 1.5 and len(data) == 2
    with open(tmp_path / "t" / "res.csv", newline="") as fh:
        got = list(csv.DictReader(fh))
    assert list(got[0]) == ["clip", "method", "e_warp", "tof", "tlpips"]
    assert [r["clip"] for r in got] == ["calendar", "city"]
    assert float(got[0]["e_warp"]) == 0.0031 and got[0]["tof"] == "" and got[0]["tlpips"] == ""
    assert float(got[1]["tlpips"]) == 1.5
