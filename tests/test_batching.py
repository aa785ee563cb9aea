"""Model batches and overlapped decode/encode (issue 13): batched output equals frame-by-frame output within
float tolerance, segments are bit-identical to a whole run at any batch size, tiles of a frame go through the
denoiser together, worker-thread failures end a run with their own error (no hang, no output), queues stay
bounded, scene cuts come from the cheap thumbnail pass, a decord reader is reused across ranges, and a process
that runs the model keeps freed memory for the next frame."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch

import videogen
from test_upscale_cli import decode, opts, tiny_ckpt  # noqa: F401  (fixture)
from upsr_video.overlap import Drain, Prefetch
from upsr_video.process import (_MALLOPT, Plan, UpscaleError, process_segment, resolve_batch_size,
                                resolve_precision)

BIKES = videogen.VIDEOS / "bikes.mp4"
COCKATOO = videogen.VIDEOS / "cockatoo.mp4"
REALSHORT = videogen.VIDEOS / "realshort.mp4"


def _whole_and_pieces(tmp_path, src, o, pieces, tag):
    """Frames of one whole-video segment and of the given pieces, each joined by finalize."""
    from upsr_video.checkpoint import load_pipeline
    from upsr_video.upscale import prepare
    from upsr_video.video import finalize

    prep = prepare(str(src), o)
    _, pipe = load_pipeline(o.checkpoint)
    n = prep.info.num_frames
    outs = []
    for k, ranges in enumerate([[(0, n)], pieces]):
        parts = []
        for i, (a, b) in enumerate(ranges):
            p = tmp_path / f"{tag}{k}-{i}.part.mkv"
            res = process_segment(str(src), a, b, prep.plan, pipe, str(p))
            assert res.frames == b - a and 0 < res.model_seconds <= res.seconds
            parts.append(str(p))
        out = tmp_path / f"{tag}{k}.mkv"
        finalize(parts, str(src), str(out))
        outs.append(decode(out))
    return n, outs


@pytest.mark.parametrize("mode", ["shared", "independent", "flow"])
def test_batched_segments_are_bit_identical_to_a_whole_run_and_close_to_batch_1(tmp_path, tiny_ckpt, mode):
    """Batch 3 (not a divisor of anything here): pieces that start and end inside batches, one spanning the
    cut, give the whole run's frames bit for bit; and batch 3 is batch 1 within one grey level. In flow mode a
    batch's flows are estimated side by side before its frames are processed: a cut inside a batch must still
    leave the first frame after it without motion."""
    src, cut = videogen.cut_clip(tmp_path, before=5, after=6)
    pieces = [(0, 2), (2, 7), (7, 8), (8, 11)]
    o3 = opts(tiny_ckpt, temporal=mode, codec="ffv1", pix_fmt="bgr0", batch_size=3)  # RGB kept exactly
    n, ((f_whole, p_whole, _), (f_pieces, p_pieces, _)) = _whole_and_pieces(tmp_path, src, o3, pieces, "b3")
    assert n == 11 and len(f_whole) == len(f_pieces) == n and p_whole == p_pieces
    assert all(np.array_equal(x, y) for x, y in zip(f_whole, f_pieces))
    o1 = opts(tiny_ckpt, temporal=mode, codec="ffv1", pix_fmt="bgr0", batch_size=1)
    _, ((f_one, p_one, _), _) = _whole_and_pieces(tmp_path, src, o1, [(0, n)], "b1")
    assert p_one == p_whole
    diffs = [np.abs(x.astype(int) - y.astype(int)) for x, y in zip(f_one, f_whole)]
    assert max(d.max() for d in diffs) <= 1 and np.mean([d.mean() for d in diffs]) < 0.01


def test_plan_batches_tile_each_shot_whatever_the_split():
    plan = Plan(None, (8, 8), None, 1, [0, 5, 9], None, (1, 25), None, list(range(12)))
    assert [plan.batch_of(i, 3) for i in range(12)] == [
        (0, 3), (0, 3), (0, 3), (3, 5), (3, 5), (5, 8), (5, 8), (5, 8), (8, 9), (9, 12), (9, 12), (9, 12)]
    assert all(plan.batch_of(i, 1) == (i, i + 1) for i in range(12))


def test_tiles_of_a_frame_batched_together_equal_one_by_one():
    from upsr_video.tiling import tiled_apply

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    x = torch.randn(2, 3, 70, 90)
    calls = []

    def fn(z):
        calls.append(z.shape[0])
        return conv(z)

    with torch.no_grad():
        one = tiled_apply(fn, x, 32, 8, 1, batch=1)
        n1 = len(calls)
        calls.clear()
        many = tiled_apply(fn, x, 32, 8, 1, batch=4)
    assert n1 == 12 and calls == [8, 8, 8]  # 12 tiles of 2 frames: 4 tiles (8 images) per call
    assert torch.allclose(one, many, atol=1e-5)


def test_batch_size_and_precision_defaults():
    assert resolve_batch_size(0, "cpu") == 1 and resolve_batch_size(0, "cuda") == 4 and resolve_batch_size(6, "cpu") == 6
    with pytest.raises(UpscaleError, match="batch-size"):
        resolve_batch_size(-1, "cpu")
    assert resolve_precision("auto", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"


# -- threads: errors, no hang, bounded queues ----------------------------------------------------------------------
def test_prefetch_is_bounded_and_raises_the_sources_error():
    made = []

    def source():
        for i in range(100):
            made.append(i)
            yield i
        raise ValueError("decoder broke")

    with Prefetch(source(), depth=2) as p:
        it = iter(p)
        assert next(it) == 0
        time.sleep(0.3)
        assert len(made) <= 4  # one consumed, two queued, one waiting to be queued
        with pytest.raises(ValueError, match="decoder broke"):
            list(it)


def test_drain_raises_the_sinks_error_at_the_next_put_and_never_blocks():
    seen = []

    def sink(x):
        if x == 3:
            raise OSError(28, "No space left on device")
        seen.append(x)

    t0 = time.time()
    with pytest.raises(OSError, match="No space left"):
        with Drain(sink, depth=1) as d:
            for i in range(1000):
                d.put(i)
    assert seen == [0, 1, 2] and time.time() - t0 < 10
    assert not [t for t in threading.enumerate() if t.name in ("drain", "prefetch")]


@pytest.mark.parametrize("where", ["decode", "encode", "model"])
def test_a_failure_on_any_thread_ends_the_segment_with_its_error(tmp_path, tiny_ckpt, monkeypatch, where):
    """A decoder error (in the decode thread), an encoder error (in the encode thread) or a model error (in the
    compute thread) ends process_segment with that one-line error, within seconds, with no part file and no
    temporary file left, and no worker thread still running."""
    import upsr_video.video as video
    from upsr_video.checkpoint import load_pipeline
    from upsr_video.temporal import TemporalUPSR
    from upsr_video.upscale import prepare
    from upsr_video.video import VideoError, writer

    src = videogen.cfr_clip(tmp_path, n=12, audio=False, name="src.mp4")
    o = opts(tiny_ckpt, batch_size=2, steps=1)
    prep = prepare(str(src), o)
    _, pipe = load_pipeline(o.checkpoint)
    real_iter, real_write, real_push = video.iter_frames, writer.VideoWriter.write, TemporalUPSR.push_batch

    def bad_iter(*a, **kw):
        for k, batch in enumerate(real_iter(*a, **kw)):
            if k == 2:
                raise VideoError("src.mp4: decoding failed at frame 4 (Invalid data)")
            yield batch

    def bad_write(self, frame, pts):
        if self.frames == 5:
            raise VideoError("encoding frame 5 failed: Broken pipe")
        return real_write(self, frame, pts)

    def bad_push(self, indices, *a):
        if indices[0] >= 6:
            raise RuntimeError("out of memory")
        return real_push(self, indices, *a)

    patch, needle = {"decode": ((video, "iter_frames", bad_iter), "decoding failed at frame 4"),
                     "encode": ((writer.VideoWriter, "write", bad_write), "encoding frame 5 failed"),
                     "model": ((TemporalUPSR, "push_batch", bad_push), "out of memory")}[where]
    monkeypatch.setattr(*patch)
    out = tmp_path / "out"
    out.mkdir()
    t0 = time.time()
    with pytest.raises((VideoError, RuntimeError), match=needle) as e:
        process_segment(str(src), 0, 12, prep.plan, pipe, str(out / "part.mkv"))
    assert len(str(e.value).splitlines()) == 1 and time.time() - t0 < 60
    assert list(out.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name in ("decode", "encode")]


# -- one cheap pass for scene cuts; readers reused ---------------------------------------------------------------
def test_scene_cuts_from_the_thumbnail_pass_on_real_footage(tmp_path):
    """detect_cuts decodes 64x36 thumbnails (never a full-size RGB frame) and finds what the detector finds on
    full frames: bikes' five cuts, none in cockatoo or realshort, the synthetic cut."""
    from upsr_video.upscale import detect_cuts

    assert detect_cuts(str(BIKES)) == [0, 30, 76, 137, 187, 242]
    assert detect_cuts(str(COCKATOO)) == [0]
    assert detect_cuts(str(REALSHORT)) == [0]
    src, cut = videogen.cut_clip(tmp_path)
    assert detect_cuts(str(src)) == [0, cut]


def test_a_decord_reader_is_opened_once_for_many_ranges(monkeypatch):
    import decord

    from upsr_video.video import iter_frames, reader

    opened = []
    real = decord.VideoReader

    def counting(*a, **kw):
        opened.append(a[0])
        return real(*a, **kw)

    monkeypatch.setattr(decord, "VideoReader", counting)
    monkeypatch.setattr(reader, "_DECORD_CACHE", {})
    whole = np.concatenate([f for f, _ in iter_frames(str(BIKES), 0, 40, batch_size=8, backend="decord")])
    ranges = [(20, 40), (0, 12), (12, 20)]  # backwards and forwards on one reader
    parts = {a: np.concatenate([f for f, _ in iter_frames(str(BIKES), a, b, batch_size=8, backend="decord")])
             for a, b in ranges}
    assert len(opened) == 1
    assert np.array_equal(np.concatenate([parts[0], parts[12], parts[20]]), whole)


def test_a_part_failing_while_the_next_segment_computes_fails_the_run_and_resumes(tmp_path, tiny_ckpt, monkeypatch):
    """The local driver starts segment k+1's model work while segment k's encoder flushes. A flush that fails
    then ends the run with its one-line error and no output; the parts already in place stay recorded, so the
    next run reuses them and writes the file of an uninterrupted run."""
    from upsr_video.upscale import upscale_video
    from upsr_video.video import VideoError, writer

    src = videogen.cfr_clip(tmp_path, n=12, audio=False, name="src.mp4")
    o = opts(tiny_ckpt, steps=1)
    ref = tmp_path / "ref.mp4"
    s = upscale_video(str(src), str(ref), o, segment_frames=4)
    assert s["segments"] == 3 and s["frames_computed"] == 12

    real_close, closes = writer.VideoWriter.close, []

    def failing_close(self):  # the part of segment 1 (frames 4-8) cannot be written
        closes.append(self.path.name)
        if self.path.name.endswith("-00001-4-8.mkv"):
            self.abort()
            raise VideoError(f"cannot write {self.path}: No space left on device")
        return real_close(self)

    monkeypatch.setattr(writer.VideoWriter, "close", failing_close)
    out = tmp_path / "out.mp4"
    with pytest.raises(UpscaleError, match="No space left"):
        upscale_video(str(src), str(out), o, segment_frames=4)
    # segment 2 had started when segment 1's part failed: it was let finish, and nothing writes after the return
    assert not out.exists() and len(closes) == 3
    parts = sorted(p.name for p in (tmp_path / ".out.mp4.upsr-work").glob("part-*"))
    time.sleep(0.5)
    assert sorted(p.name for p in (tmp_path / ".out.mp4.upsr-work").glob("part-*")) == parts
    monkeypatch.setattr(writer.VideoWriter, "close", real_close)
    s = upscale_video(str(src), str(out), o, segment_frames=4)
    assert s["segments_reused"] == 2 and s["frames_computed"] == 4
    assert out.read_bytes() == ref.read_bytes()


_HEAP_PROBE = r"""
import ctypes, json, os, sys
sys.path.insert(0, os.getcwd())

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "load":
    from upsr_video.process import load_for_run
    load_for_run(None, "cpu")
size, count = 16 << 20, 8  # 128 MB in blocks of 16 MB: more than the heap has free after loading
before = libc.mallinfo2()
blocks = [libc.malloc(size) for _ in range(count)]
during = libc.mallinfo2()
for b in blocks:
    libc.free(b)
after = libc.mallinfo2()
print(json.dumps({"mapped": during.hblkhd - before.hblkhd, "trimmed": during.arena - after.arena}))
"""


def _glibc() -> tuple[int, ...]:
    name, version = platform.libc_ver()
    return tuple(int(x) for x in version.split(".")[:2]) if name == "glibc" and version else ()


@pytest.mark.skipif(_glibc() < (2, 33), reason="glibc's malloc, with mallinfo2 (glibc 2.33+) to read it")
def test_a_process_that_loads_the_model_keeps_freed_memory_for_the_next_frame():
    """After load_for_run a 16 MB block (a frame's temporary at 720p) comes from the heap and stays there when
    freed, ready for the next frame; under glibc's defaults it is mapped and unmapped, page-faulted in anew
    every time. A MALLOC_*_ variable the user set is left to stand."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}

    def probe(how: str, extra: Optional[dict] = None) -> dict:
        out = subprocess.run([sys.executable, "-c", _HEAP_PROBE, how], env={**env, **(extra or {})},
                             capture_output=True, text=True, check=True, cwd=str(Path(__file__).parents[1]))
        return json.loads(out.stdout.strip().splitlines()[-1])

    plain = probe("bare")
    assert plain["mapped"] >= 8 * 16 << 20, plain
    tuned = probe("load")
    assert tuned == {"mapped": 0, "trimmed": 0}
    for _, value, var in _MALLOPT:  # any one of the user's settings: none of ours is applied
        user = probe("load", {var: str(value)})
        assert user["mapped"] > 0 or user["trimmed"] > 0, (var, user)
