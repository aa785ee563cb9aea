"""Model-side motion: LR flow on real frames, and noise transport that keeps unit Gaussian, white statistics."""
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy import stats

from upsr_video import motion as mo
from upsr_video.eval.sr_bench import to_tensor

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _calendar(i: int) -> np.ndarray:
    """Vid4 calendar's ground-truth frame i (1-based), RGB uint8."""
    return cv2.cvtColor(cv2.imread(str(SHARED / f"data/vid4/GT/calendar/Frame_{i:03d}.png")), cv2.COLOR_BGR2RGB)


def _down4(hr: np.ndarray) -> np.ndarray:
    """hr down-scaled x4 (area): an LR frame."""
    return cv2.resize(hr, (hr.shape[1] // 4, hr.shape[0] // 4), interpolation=cv2.INTER_AREA)


def _motion(fw: torch.Tensor, bw: torch.Tensor) -> mo.Motion:
    none = torch.zeros((1, 1, *fw.shape[-2:]), dtype=torch.bool)
    return mo.Motion(fw, bw, none, none, ~none)


def _zoom(h, w, s):
    """Zoom by s about the centre: fw(x) = (s - 1)(x - c), bw(x) = (1/s - 1)(x - c)."""
    c = torch.tensor([(w - 1) / 2, (h - 1) / 2]).view(1, 2, 1, 1)
    x = mo.grid_coords(h, w) - c
    return _motion((s - 1) * x, (1 / s - 1) * x)


def _smooth_random(h, w, seed, amp=2.5):
    g = torch.Generator().manual_seed(seed)
    f = torch.nn.functional.interpolate(torch.randn(1, 2, 4, 5, generator=g) * amp, size=(h, w), mode="bicubic",
                                        align_corners=False)
    return _motion(f, -f)


def _sequence(h=96, w=128, n=30):
    return [_zoom(h, w, 1.03), _zoom(h, w, 0.97)] * 3 + [_smooth_random(h, w, i) for i in range(n - 6)]


def _white_gaussian(x: torch.Tensor):
    v = x.flatten().double().numpy()
    assert abs(v.mean()) < 0.02 and abs(v.var() - 1) < 0.03
    assert stats.kstest(v[::7], "norm").pvalue > 1e-3
    a = x[0].double()
    for lag in ((slice(None), slice(1, None), slice(None)), (slice(None), slice(None), slice(1, None))):
        lead = (slice(None), slice(None, -1), slice(None)) if lag[1].start else (slice(None), slice(None), slice(None, -1))
        r = torch.corrcoef(torch.stack([a[lag].flatten(), a[lead].flatten()]))[0, 1]
        assert abs(float(r)) < 0.03, float(r)


def test_transport_keeps_unit_gaussian_white_noise_and_bilinear_does_not():
    h, w = 96, 128
    eps = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    p, bil = mo.NoiseParticles.fresh(eps), eps
    for i, m in enumerate(_sequence(h, w)):
        gen = torch.Generator().manual_seed(100 + i)
        p = mo.transport(p, m, lambda k: torch.randn(3, k, generator=gen))
        bil = mo.warp(bil, m.bw)
    _white_gaussian(p.eps)
    assert float(bil.var()) < 0.7  # bilinear warping shrinks the variance: the statistics would fail
    # the noise really moved: most of it is carried, not replaced by fresh samples
    moved = mo.transport(mo.NoiseParticles.fresh(eps), _smooth_random(h, w, 99), lambda k: torch.full((3, k), 99.0))
    assert float((moved.eps == 99).float().mean()) < 0.2


def test_subpixel_motion_accumulates():
    """0.25 px per frame for 8 frames moves the noise by exactly 2 px (rounding each step alone never moves it)."""
    h, w = 32, 40
    eps = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(1))
    f = torch.zeros(1, 2, h, w)
    f[:, 0] = 0.25
    p = mo.NoiseParticles.fresh(eps)
    for _ in range(8):
        p = mo.transport(p, _motion(f, -f), lambda k: torch.zeros(3, k))
    assert torch.equal(p.eps[..., 2:], eps[..., :-2])
    assert torch.all(p.eps[..., :2] == 0)  # the uncovered columns took fresh noise


def test_fresh_samples_fill_exactly_the_uncovered_pixels_in_raster_order():
    """A 1.5 px shift right leaves 1 or 2 columns uncovered per frame; fresh(k) is asked for exactly that many
    samples per channel, and they land row by row."""
    h, w = 6, 9
    eps = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(4))
    f = torch.zeros(1, 2, h, w)
    f[:, 0] = 1.5
    asked = []

    def numbered(k):
        asked.append(k)
        return 1000 + torch.arange(3 * k, dtype=torch.float32).view(3, k)

    p = mo.transport(mo.NoiseParticles.fresh(eps), _motion(f, -f), numbered)
    cols = 2  # x + 1.5 lands on x + 2 (floor(x + 2)), so columns 0 and 1 are uncovered
    assert asked == [cols * h]
    assert torch.equal(p.eps[..., cols:], eps[..., :-cols])
    expect = 1000 + torch.arange(3 * cols * h, dtype=torch.float32).view(3, h, cols)
    assert torch.equal(p.eps[0, :, :, :cols], expect)


def test_flow_on_real_frames_finds_motion():
    """Vid4 calendar at LR: a known shift is recovered, and the estimated flow explains consecutive frames better
    than no motion."""
    t = [to_tensor(_down4(_calendar(i))) for i in (1, 3)]
    shifted = torch.roll(t[0], shifts=(1, 2), dims=(2, 3))  # content moves +2 px in x, +1 px in y
    m = mo.estimate(t[0], shifted, (t[0].shape[-2] * 4, t[0].shape[-1] * 4))
    inner = m.fw[0, :, 40:-40, 40:-40]
    assert abs(float(inner[0].median()) - 8) < 0.3 and abs(float(inner[1].median()) - 4) < 0.3  # x4 output pixels
    real = mo.estimate(t[0], t[1], t[0].shape[-2:])
    err_flow = (mo.warp(t[0], real.bw) - t[1]).abs()[..., 8:-8, 8:-8].mean()
    err_zero = (t[0] - t[1]).abs()[..., 8:-8, 8:-8].mean()
    assert err_flow < 0.75 * err_zero
    assert float(real.reliable.float().mean()) > 0.9  # frames 1 and 3: little is occluded


def test_colour_check_accepts_an_exact_sub_pixel_pan_of_texture_and_rejects_changed_content():
    """Calendar's HR frame shifted by (6, 2) px, then both down-scaled x4: the LR content moves by exactly (1.5, 0.5)
    px. Resampled along that flow, its text and brick misses by more than the tolerance near Nyquist; the check
    low-passes the difference, so the pan stays reliable (the unfiltered check kept 0.44 of it), while a block whose
    content changed (inverted colours) is rejected."""
    f = _calendar(1)
    a, b = to_tensor(_down4(f)), to_tensor(_down4(np.roll(f, (2, 6), (0, 1))))
    changed = b.clone()
    changed[..., 40:80, 60:110] *= -1
    pan = mo.estimate(a, b, a.shape[-2:]).reliable[0, 0]
    assert float(pan[8:-8, 8:-8].float().mean()) > 0.9
    inverted = mo.estimate(a, changed, a.shape[-2:]).reliable[0, 0]
    assert float(inverted[44:76, 64:106].float().mean()) < 0.02
    assert float(inverted[8:-8, 8:-8].float().mean()) > 0.75  # the rest of the frame still is reliable


def test_still_content_gets_exactly_zero_flow_and_moving_content_keeps_its_flow():
    """Left half unchanged but for +-1 grey level of noise (as an encoder leaves still background), right half
    shifted 2 LR px: the noise samples of the still half do not move at all, the moving half's do."""
    a = _down4(_calendar(1)).astype(np.int16)
    h, w = a.shape[:2]
    b = a.copy()
    b[:, w // 2 :] = np.roll(a[:, w // 2 :], 2, axis=1)
    b[:, : w // 2] += np.random.default_rng(0).integers(-1, 2, size=b[:, : w // 2].shape, dtype=np.int16)
    t = [to_tensor(np.clip(x, 0, 255).astype(np.uint8)) for x in (a, b)]
    m = mo.estimate(t[0], t[1], (h, w))
    still = m.fw[0, :, 8:-8, 8 : w // 2 - 8]
    assert torch.count_nonzero(still) == 0 and torch.count_nonzero(m.bw[0, :, 8:-8, 8 : w // 2 - 8]) == 0
    moving = m.fw[0, 0, 8:-8, w // 2 + 8 : -8]
    assert abs(float(moving.median()) - 2) < 0.2
    eps = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(2))
    p = mo.transport(mo.NoiseParticles.fresh(eps), m, lambda k: torch.zeros(3, k))
    assert torch.equal(p.eps[..., 8:-8, 8 : w // 2 - 8], eps[..., 8:-8, 8 : w // 2 - 8])


def test_flow_level_keeps_the_finest_level_under_the_pixel_budget_and_still_finds_motion():
    """Small LR frames are refined at every pixel, larger ones one pyramid level up per 4x pixels; at level 1
    (Vid4 calendar at its full 720x576, as an LR frame) a known shift is still recovered to 0.1 px."""
    assert [mo.flow_level(h, w) for h, w in ((144, 180), (270, 480), (360, 640), (480, 854), (720, 1280), (1080, 1920))] \
        == [0, 0, 0, 1, 1, 2]
    for h, w in ((144, 180), (480, 854), (1080, 1920), (2160, 3840)):
        lv = mo.flow_level(h, w)
        assert h * w <= mo.FLOW_PIXELS * 4**lv and (lv == 0 or h * w > mo.FLOW_PIXELS * 4 ** (lv - 1))
    f = _calendar(1)
    assert mo.flow_level(*f.shape[:2]) == 1
    t = to_tensor(f)
    m = mo.estimate(t, torch.roll(t, shifts=(1, 2), dims=(2, 3)), f.shape[:2])
    inner = m.fw[0, :, 40:-40, 40:-40]
    assert abs(float(inner[0].median()) - 2) < 0.1 and abs(float(inner[1].median()) - 1) < 0.1


def test_upsampling_on_the_device_gives_the_cv2_maps():
    """up_on_device (the path of a GPU, run here on the CPU) against up_flows / up_masks: same flows to float
    rounding, same masks; and the cv2 functions give each field as resizing it alone would."""
    rng = np.random.default_rng(0)
    flows = [rng.normal(0, 3, (36, 45, 2)).astype(np.float32) for _ in range(2)]
    masks = [rng.random((36, 45)) > p for p in (0.9, 0.5)]
    size = (81, 101)  # a non-integer factor
    got = mo.up_on_device(flows, masks, size, torch.device("cpu"))
    for fl, g, cv in zip(flows, got[:2], mo.up_flows(flows, size)):
        torch.testing.assert_close(g, cv, atol=2e-4, rtol=0)
        assert torch.equal(cv, mo.up_flows([fl], size)[0])
        # the field itself: x scaled by 101 / 45 and y by 81 / 36, resized with pixel centres aligned
        ref = cv2.resize(fl * np.array([101 / 45, 81 / 36], np.float32), (101, 81), interpolation=cv2.INTER_LINEAR)
        torch.testing.assert_close(cv[0].permute(1, 2, 0), torch.from_numpy(ref), atol=1e-5, rtol=0)
    for m, g, cv in zip(masks, got[2:], mo.up_masks(masks, size)):
        assert g.dtype == torch.bool and torch.equal(g, cv) and torch.equal(cv, mo.up_masks([m], size)[0])
        assert cv.is_contiguous()  # flat views of the masks are taken


def test_motion_back_is_the_backward_warp_along_bw():
    """Motion.back (its sampling map made once and reused) gives warp(img, bw) bit for bit, for a stack of maps
    and for a frame, bilinear and bicubic; and that warp is grid_sample's to float rounding."""
    h, w = 57, 83
    gen = torch.Generator().manual_seed(5)
    bw = torch.randn(1, 2, h, w, generator=gen) * 3
    m = _motion(torch.zeros_like(bw), bw)
    for img, mode in ((torch.rand(1, 15, h, w, generator=gen), "bilinear"), (torch.rand(1, 3, h, w, generator=gen), "bicubic")):
        first, again = m.back(img, mode), m.back(img, mode)
        assert torch.equal(first, mo.warp(img, bw, mode)) and torch.equal(again, first)
        pos = mo.grid_coords(h, w) + bw
        grid = torch.stack([pos[:, 0] / (w - 1) * 2 - 1, pos[:, 1] / (h - 1) * 2 - 1], dim=-1)
        ref = torch.nn.functional.grid_sample(img, grid, mode=mode, padding_mode="border", align_corners=True)
        inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))  # borders: cv2 and torch pad bicubic differently
        assert float((first - ref)[inner].abs().mean()) < 0.01
        # every memory layout gives the same values as the plain HxWxC remap: channels-last (one HxWxC remap), and
        # contiguous or a crop of a padded map (as the sampler's output comes; plane by plane up to 4 channels)
        interp = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}[mode]
        src = np.ascontiguousarray(img[0].permute(1, 2, 0).numpy())
        hwc = cv2.remap(src, mo.sampling_map(bw), None, interpolation=interp, borderMode=cv2.BORDER_REPLICATE)
        hwc = torch.from_numpy(hwc).permute(2, 0, 1)[None]
        padded = torch.zeros(1, img.shape[1], h + 3, w + 5)
        padded[..., :h, :w] = img
        for layout in (img.contiguous(memory_format=torch.channels_last), img.contiguous(), padded[..., :h, :w]):
            assert torch.equal(m.back(layout, mode), hwc)
