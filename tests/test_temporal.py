"""Shared noise per shot, smoothed uncertainty, flow noise, recurrent anchoring, and independence from where a
segment starts."""
import math

import pytest
import torch
from torch import nn

from upsr_video.models.aux import build_aux
from upsr_video.pipeline import UPSRPipeline
from upsr_video.temporal import MODES, TemporalOptions, TemporalUPSR

from test_tiling_pipeline import LocalDenoiser


def _frames(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, 20, 24, generator=g) * 2 - 1
    return [(base + 0.05 * torch.randn(1, 3, 20, 24, generator=g)).clamp(-1, 1) for _ in range(n)]


def _pipe():
    aux = build_aux("compact-xs")
    with torch.no_grad():
        for p in aux.parameters():
            p.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    return UPSRPipeline(LocalDenoiser(), aux)


def _run(pipe, frames, cuts, start, stop, opts):
    shot = lambda i: max(c for c in cuts if c <= i)
    r = TemporalUPSR(pipe, opts, (80, 96))
    first = max(shot(start), start - opts.context)
    out = []
    for i in range(first, stop):
        y = r.push(i, frames[i], shot(i), emit=i >= start)
        if i >= start:
            out.append(y)
    return out


def test_segment_split_gives_identical_frames():
    pipe, frames, cuts = _pipe(), _frames(12), [0, 7]
    opts = TemporalOptions("shared", window=3, decay=0.6, seed=4)
    whole = _run(pipe, frames, cuts, 0, 12, opts)
    parts = _run(pipe, frames, cuts, 0, 5, opts) + _run(pipe, frames, cuts, 5, 9, opts) + _run(pipe, frames, cuts, 9, 12, opts)
    assert len(whole) == len(parts) == 12
    for a, b in zip(whole, parts):
        assert torch.equal(a, b)


def test_without_context_the_smoothing_differs():
    """The context frames matter: starting cold at frame 5 changes frame 5 (so the test above is not vacuous)."""
    pipe, frames, cuts = _pipe(), _frames(8), [0]
    opts = TemporalOptions("shared", window=3, seed=4)
    whole = _run(pipe, frames, cuts, 0, 8, opts)
    cold = TemporalUPSR(pipe, opts, (80, 96)).push(5, frames[5], 0)
    assert not torch.equal(whole[5], cold)


def test_smoothed_uncertainty_is_the_decayed_mean_of_the_motion_compensated_history():
    """|psi| smoothing against an independent numpy computation: every earlier map brought onto the frame by an
    integer translation (exact for any bilinear warp), border replicated, disoccluded pixels taking the newest map;
    the mean, weights decay**age, runs over the frames since the older of two sums restarted, sum a restarting at
    shot ages a W, a W + 2 W, ... (W = window): W + 1 to 2 W frames once both run."""
    import numpy as np

    from upsr_video.motion import Motion

    h, w, window, decay, shot = 16, 20, 3, 0.6, 10
    r = TemporalUPSR(_pipe(), TemporalOptions("flow", window=window, decay=decay), (h, w))
    r._reset(shot, shot)
    rng = np.random.default_rng(0)
    psis = [rng.random((3, h, w)).astype(np.float32) for _ in range(4 * window + 2)]
    bx, by = -2, 1  # bw: frame t's pixel x shows frame t-1's x + (bx, by)
    dis = np.zeros((h, w), bool)
    dis[:, :3] = True
    motion = Motion(fw=torch.zeros(1, 2, h, w), bw=torch.tensor([bx, by], dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, h, w).contiguous(),
                    occluded=torch.zeros(1, 1, h, w, dtype=torch.bool), disoccluded=torch.from_numpy(dis)[None, None],
                    reliable=torch.ones(1, 1, h, w, dtype=torch.bool))
    ys = np.clip(np.arange(h) + by, 0, h - 1)[:, None]
    xs = np.clip(np.arange(w) + bx, 0, w - 1)[None, :]
    hist: list = []  # every map so far, newest last, each on the current frame's grid
    lengths = []
    for t, p in enumerate(psis):
        hist = [np.where(dis, p, m[:, ys, xs]) for m in hist] + [p]
        starts = [t - t % (2 * window)] + ([t - (t - window) % (2 * window)] if t >= window else [0])
        n = t - min(starts) + 1  # frames in the older sum
        lengths.append(n)
        wts = [decay**j for j in range(n)]
        expect = sum(wj * m for wj, m in zip(wts, hist[::-1])) / sum(wts)
        got = r._smooth_psi(torch.from_numpy(p)[None], shot + t, motion if t else None)
        assert got.is_contiguous() and np.abs(got[0].numpy() - expect).max() < 1e-5, t
    assert lengths[2 * window :] == [window + 1 + j % window for j in range(len(psis) - 2 * window)]  # W+1..2W


def test_shared_noise_within_shot_and_reset_at_cut():
    pipe, frames = _pipe(), _frames(6)
    frames = [frames[0]] * 6  # a static shot: identical inputs
    opts = TemporalOptions("shared", window=2, seed=1)
    out = _run(pipe, frames, [0, 3], 0, 6, opts)
    # same noise and (up to float rounding of the weighted mean) the same map
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[1], out[2], rtol=0, atol=1e-5)
    assert not torch.equal(out[2], out[3])  # new shot, new noise
    ind = _run(pipe, frames, [0], 0, 3, TemporalOptions("independent", seed=1))
    assert not torch.equal(ind[0], ind[1])  # per-frame noise flickers on a static shot
    diff_shared = (out[1] - out[0]).abs().mean()
    diff_ind = (ind[1] - ind[0]).abs().mean()
    assert diff_shared < 1e-5 and diff_ind > 1e-3


def test_diffusion_runs_at_the_output_size():
    """A non-x4 output (20x24 -> 50x60, x2.5): the frame is the sampler's output at that size, from y0 and g built
    there, not a x4 result resized; the start step reaches the sampler."""
    from upsr_video.diffusion.unw import uncertainty, weight_from_uncertainty

    pipe, frames = _pipe(), _frames(1)
    opts = TemporalOptions("shared", seed=2)
    for start in (None, 0, 3):
        out = TemporalUPSR(pipe, opts, (50, 60), start).push(0, frames[0], 0)
        y0, g = pipe.condition(frames[0], (50, 60))
        eps = pipe.noise(y0.shape, 2, "shot", 0)
        w = weight_from_uncertainty(uncertainty(g, y0).abs(), pipe.unw)
        assert out.shape[-2:] == (50, 60)
        torch.testing.assert_close(out, pipe.sample(y0, g, eps, w, start), rtol=0, atol=1e-6)
    a = TemporalUPSR(pipe, opts, (50, 60), 0).push(0, frames[0], 0)
    b = TemporalUPSR(pipe, opts, (50, 60), None).push(0, frames[0], 0)
    assert (a - b).abs().mean() > 1e-4  # the start step changes the frame


def test_g_only_fallback_is_g_clamped_at_the_output_size():
    aux = _pipe().aux
    pipe = UPSRPipeline(None, aux)
    frame = _frames(1)[0]
    out = TemporalUPSR(pipe, TemporalOptions(), (50, 60)).push(0, frame, 0)
    _, g = pipe.condition(frame, (50, 60))
    assert out.shape[-2:] == (50, 60) and torch.equal(out, g.clamp(-1, 1))


def test_push_batch_equals_frame_by_frame():
    """Batches of 4 with a cut inside and context frames: the same frames as one push per frame (float rounding of
    batched convolutions aside), in both modes."""
    pipe, frames, cuts = _pipe(), _frames(10), [0, 6]
    shot = lambda i: max(c for c in cuts if c <= i)
    for mode in MODES:
        opts = TemporalOptions(mode, window=3, seed=3, noise_period=2)
        ref = _run(pipe, frames, cuts, 2, 10, opts)
        r = TemporalUPSR(pipe, opts, (80, 96))
        first = max(shot(2), 2 - opts.context)
        got = []
        for b in range(first, 10, 4):
            idx = list(range(b, min(b + 4, 10)))
            outs = r.push_batch(idx, torch.cat([frames[i] for i in idx]), [shot(i) for i in idx], [i >= 2 for i in idx])
            assert [o is None for o in outs] == [i < 2 for i in idx]
            got += [o for o in outs if o is not None]
        assert len(got) == len(ref) == 8
        for a, b in zip(ref, got):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


# -- motion: a texture translating by a known amount ---------------------------------------------------------------
def _moving(n=8, dx=1, h=24, w=32, seed=0):
    """An LR texture that moves dx px right per frame (periodic), as [1,3,h,w] frames in [-1,1]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, h // 2, w // 2, generator=g) * 2 - 1, size=(h, w),
                                           mode="bicubic", align_corners=False).clamp(-1, 1)
    return [torch.roll(base, shifts=dx * i, dims=3) for i in range(n)]


class XPass(nn.Module):
    """A denoiser that returns its (unscaled) input x_t: the output's texture is the start state's noise."""

    spatial_multiple = 1

    def __init__(self, schedule):
        super().__init__()
        self.scale = [schedule.input_scale(t) for t in range(schedule.T)]

    def forward(self, x, t, g, y0):
        return x * self.scale[int(t[0])]


def _corr(a, b):
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_flow_noise_moves_with_the_content_and_shared_noise_sticks():
    """x4 output of a texture moving 1 LR px (4 output px) per frame: with flow noise the output's texture (output
    minus g) at frame t is the previous one shifted by the motion; with screen-fixed shared noise it stays put."""
    base = _pipe()
    pipe = UPSRPipeline(XPass(base.schedule), base.aux)
    frames = _moving(6)
    res = {}
    for mode in ("flow", "shared"):
        r = TemporalUPSR(pipe, TemporalOptions(mode, seed=5, noise_period=8), (96, 128), start_step=0)
        tex = []
        for i, f in enumerate(frames):
            out = r.push(i, f, 0)
            tex.append(out - pipe.condition(f, (96, 128))[1])
        inner = (..., slice(8, -8), slice(16, -16))  # away from the wrap-around seam
        moved = [_corr(tex[t][inner], torch.roll(tex[t - 1], 4, dims=3)[inner]) for t in range(1, 6)]
        still = [_corr(tex[t][inner], tex[t - 1][inner]) for t in range(1, 6)]
        res[mode] = (min(moved), max(moved), min(still), max(still))
    assert res["flow"][0] > 0.9 and res["flow"][3] < 0.3
    assert res["shared"][1] < 0.3 and res["shared"][2] > 0.9


def _translation(h, w, dx):
    from test_motion import _motion

    fw = torch.zeros(1, 2, h, w)
    fw[:, 0] = dx
    return _motion(fw, -fw)


def test_flow_noise_depends_on_a_bounded_past_and_crossfades_smoothly():
    """Both chains ride on one set of particles. A runner started late (as a segment's context) gives the noise of
    an uninterrupted run bit for bit from 2 k - 1 frames on, under sub-pixel motion whose offsets accumulate (so
    the positions must restart at each chain birth; without that this fails), and not before. Under an integer
    translation each frame's noise is the previous one moved, cross-faded by one step: correlation cos(pi / 2k)
    at every frame once two chains run, births included, and it stays unit Gaussian and white."""
    from test_motion import _white_gaussian

    k, shape = 3, (1, 3, 48, 64)
    opts = TemporalOptions("flow", seed=3, noise_period=k)

    def run(first, n, motion):
        r = TemporalUPSR(_pipe(), opts, shape[2:])
        r._reset(0, first)
        return {i: r._flow_noise(shape, i, motion if i > first else None).clone() for i in range(first, n)}

    sub = _translation(*shape[2:], 0.3)
    whole, late = run(0, 20, sub), run(7, 20, sub)
    assert all(torch.equal(whole[i], late[i]) for i in range(7 + 2 * k - 1, 20))
    assert not torch.equal(whole[8], late[8])
    eps = run(0, 12, _translation(*shape[2:], 2.0))
    inner = (..., slice(4, -4), slice(8, -8))
    for i in range(1, 12):
        _white_gaussian(eps[i])
        moved = _corr(eps[i][inner], torch.roll(eps[i - 1], 2, dims=3)[inner])
        expect = 1.0 if i <= k else math.cos(math.pi / (2 * k))  # the first chain runs alone until the second's first step
        assert abs(moved - expect) < 0.03, (i, moved)


def test_recurrent_anchor_reuses_the_warped_previous_output():
    """Anchored modes start frame t from g blended with the warped previous output: with screen-fixed noise on a
    moving texture, the output's texture follows the shifted previous texture only when anchored; a cut resets
    the anchor exactly."""
    base = _pipe()
    pipe = UPSRPipeline(XPass(base.schedule), base.aux)
    frames = _moving(6)
    inner = (..., slice(8, -8), slice(16, -16))
    corr = {}
    for a in (0.0, 0.8):
        r = TemporalUPSR(pipe, TemporalOptions("recurrent", seed=2, anchor=a), (96, 128), start_step=0)
        tex = [r.push(i, f, 0) - pipe.condition(f, (96, 128))[1] for i, f in enumerate(frames)]
        corr[a] = sum(_corr(tex[t][inner], torch.roll(tex[t - 1], 4, dims=3)[inner]) for t in range(1, 6)) / 5
    assert corr[0.0] < 0.3 and corr[0.8] > 0.5, corr
    pipe = _pipe()
    opts = TemporalOptions("flow-recurrent", seed=2, anchor=0.8)
    r = TemporalUPSR(pipe, opts, (96, 128), start_step=0)
    whole = [r.push(i, f, 0 if i < 3 else 3) for i, f in enumerate(frames)]
    r2 = TemporalUPSR(pipe, opts, (96, 128), start_step=0)
    fresh = [r2.push(i, frames[i], 3) for i in range(3, 6)]
    assert all(torch.equal(a, b) for a, b in zip(whole[3:], fresh))


def _psnr(a, b):
    mse = float(((a - b) / 2).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _segmented(pipe, frames, cuts, opts, bounds, start_step):
    shot = lambda i: max(c for c in cuts if c <= i)  # noqa: E731
    out = []
    for a, b in zip(bounds, bounds[1:]):
        r = TemporalUPSR(pipe, opts, (96, 128), start_step)
        for i in range(max(shot(a), a - opts.context), b):
            y = r.push(i, frames[i], shot(i), emit=i >= a)
            if i >= a:
                out.append(y)
    return out


@pytest.mark.parametrize("mode", ["flow", "recurrent", "flow-recurrent"])
def test_segments_match_an_uninterrupted_run(mode):
    """Segments started with `context` frames: bit-exact without anchoring (flow noise over several chain restarts),
    >= 50 dB PSNR with it; a segment started cold (no context) is measurably worse, so context matters."""
    pipe, frames, cuts = _pipe(), _moving(22), [0, 17]
    opts = TemporalOptions(mode, window=2, seed=7, anchor=0.5, noise_period=3)
    whole = _segmented(pipe, frames, cuts, opts, [0, 22], 0)
    parts = _segmented(pipe, frames, cuts, opts, [0, 9, 14, 22], 0)
    assert len(whole) == len(parts) == 22
    psnr = min(_psnr(a, b) for a, b in zip(whole, parts))
    if mode == "flow":
        assert psnr == math.inf
    else:
        assert psnr >= 50, psnr
    cold = TemporalUPSR(pipe, opts, (96, 128), 0)
    assert _psnr(whole[9], cold.push(9, frames[9], 0)) < psnr


@pytest.mark.parametrize("mode", ["flow", "flow-recurrent"])
def test_flows_estimated_on_threads_give_the_frame_loops_frames(mode):
    """Flow threads (the GPU default) estimate a batch's flows before its frames are processed; the frames are
    those of the flows estimated one by one in the loop (the CPU default), bit for bit, across a cut inside a
    batch; and a run whose flow mattered differs from one whose flows were all None (so the check has teeth)."""
    pipe, frames = _pipe(), _frames(9, seed=3)
    shots = [0] * 4 + [4] * 5  # a cut at frame 4, inside the second batch of 3
    opts = TemporalOptions(mode, seed=1, noise_period=3)

    def run(threads):
        r = TemporalUPSR(pipe, opts, (80, 96), start_step=0, flow_threads=threads)
        out = []
        for i in range(0, 9, 3):
            out += r.push_batch(list(range(i, i + 3)), torch.cat(frames[i : i + 3]), shots[i : i + 3], [True] * 3)
        return out

    inline, threaded = run(0), run(2)
    assert all(torch.equal(a, b) for a, b in zip(inline, threaded))
    still = run(0)
    r = TemporalUPSR(pipe, opts, (80, 96), start_step=0, flow_threads=0)
    no_motion = [r.push(i, frames[i], i) for i in range(9)]  # every frame its own shot: no flow anywhere
    assert all(torch.equal(a, b) for a, b in zip(inline, still))
    assert not all(torch.equal(a, b) for a, b in zip(inline[1:4], no_motion[1:4]))
