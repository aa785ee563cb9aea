"""Shared noise per shot, smoothed uncertainty, and independence from where a segment starts."""
import torch

from upsr_video.models.aux import build_aux
from upsr_video.pipeline import UPSRPipeline
from upsr_video.temporal import TemporalOptions, TemporalUPSR

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
    for mode in ("shared", "independent"):
        opts = TemporalOptions(mode, window=3, seed=3)
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
