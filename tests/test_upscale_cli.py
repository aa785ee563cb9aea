"""`upsr-video upscale` end to end: frames, timestamps, audio/subtitles, sizes, determinism, segment-split
invariance, the bundled checkpoint's quality on a real clip, and every bad input (one line, exit 2, no output).

The video-path cases use a g-only checkpoint written by the test (timing, streams and geometry do not depend on
the denoiser, and it keeps the suite fast on 2 CPU cores); determinism and segment-split invariance use a tiny
random diffusion checkpoint; one test runs the bundled default on real frames against ground truth.
"""
from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import videogen
from tinymodel import tiny_checkpoint
from upsr_video.checkpoint import ModelSpec, build_models, default_checkpoint_path, save_checkpoint
from upsr_video.eval.fidelity import psnr_y
from upsr_video.models.aux import AUX_PRESETS
from upsr_video.process import UpscaleError, UpscaleOptions
from upsr_video.upscale import upscale_video

REALSHORT = videogen.VIDEOS / "realshort.mp4"


def decode(path):
    """(frames RGB, pts, time_base) of the first video stream, decoded by PyAV (independent of the code under test)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames, pts = [], []
        for f in c.decode(s):
            frames.append(f.to_ndarray(format="rgb24"))
            pts.append(f.pts)
        return frames, pts, s.time_base


def streams(path):
    with av.open(str(path)) as c:
        return [(s.type, s.codec_context.name, s.metadata.get("language"),
                 float(s.duration * s.time_base) if s.duration else None) for s in c.streams]


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "upsr_video", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def _tiny(folder, name: str, info: dict):
    """The tests' tiny random checkpoint (tinymodel.tiny_checkpoint); the same weights for every name."""
    return tiny_checkpoint(folder / name, info, noise=0.02)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return _tiny(tmp_path_factory.mktemp("ckpt"), "tiny.safetensors", {"name": "test-tiny"})


@pytest.fixture(scope="module")
def g_ckpt(tmp_path_factory):
    """A g-only checkpoint (the labelled fallback path): compact-xs with random weights."""
    spec = ModelSpec(aux=AUX_PRESETS["compact-xs"].to_dict(), denoiser=None, info={"name": "test-g"})
    torch.manual_seed(1)
    den, aux = build_models(spec)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "g.safetensors", spec, den, aux)


def opts(ckpt, **kw) -> UpscaleOptions:
    kw.setdefault("scale", 2.0)
    kw.setdefault("target", None)
    return UpscaleOptions(checkpoint=str(ckpt), threads=2, **kw)


# -- the real clip, through the command line --------------------------------------------------------------------
def test_realshort_cli_keeps_frames_timestamps_and_audio(tmp_path, g_ckpt):
    out = tmp_path / "realshort_x2.mp4"
    r = run_cli("upscale", REALSHORT, "--scale", 2, "-o", out, "--checkpoint", g_ckpt, "--quiet")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    src_frames, src_pts, src_tb = decode(REALSHORT)
    frames, pts, tb = decode(out)
    assert summary["frames"] == len(src_frames) == len(frames) == 36
    assert frames[0].shape == (480, 640, 3) and summary["output_size"] == [640, 480]
    assert tb == src_tb and pts == src_pts
    src_s, out_s = streams(REALSHORT), streams(out)
    assert [s[:2] for s in out_s if s[0] == "audio"] == [s[:2] for s in src_s if s[0] == "audio"]
    vdur = (pts[-1] - pts[0] + (pts[1] - pts[0])) * float(tb)
    adur = [s[3] for s in out_s if s[0] == "audio"][0]
    assert abs(adur - [s[3] for s in src_s if s[0] == "audio"][0]) <= (pts[1] - pts[0]) * float(tb)  # +-1 frame
    assert abs(adur - vdur) <= (pts[1] - pts[0]) * float(tb) + 0.05  # the source's own audio/video offset
    assert not [p for p in tmp_path.iterdir() if p.name != out.name]  # no temporary files left behind


def test_bundled_checkpoint_beats_bicubic_on_real_frames(tmp_path):
    """The shipped default, 4x on frames of a real clip down-scaled 4x, against the original frames."""
    from upsr_video.eval.sr_bench import bicubic_downscale

    assert default_checkpoint_path().exists(), "the bundled default checkpoint must ship with the package"
    frames, _, _ = decode(REALSHORT)
    gt = [f for f in frames[:4]]
    lr = [bicubic_downscale(f, 4) for f in gt]
    src = videogen.write_video(tmp_path / "lr.mkv", lr, codec="ffv1", pix_fmt="yuv444p")
    out = tmp_path / "sr.mkv"
    summary = upscale_video(str(src), str(out), UpscaleOptions(target=None, scale=4.0, codec="ffv1",
                                                               pix_fmt="yuv444p", threads=2))
    assert summary["model"] == "UPSR"
    sr, _, _ = decode(out)
    import cv2

    bic = [cv2.resize(f, (f.shape[1] * 4, f.shape[0] * 4), interpolation=cv2.INTER_CUBIC) for f in lr]
    p_sr = np.mean([psnr_y(a, b, 4) for a, b in zip(sr, gt)])
    p_bic = np.mean([psnr_y(a, b, 4) for a, b in zip(bic, gt)])
    assert p_sr > p_bic + 0.3, (p_sr, p_bic)


# -- timing, geometry, streams --------------------------------------------------------------------------------
def test_vfr_timestamps_are_kept(tmp_path, g_ckpt):
    src = videogen.vfr_clip(tmp_path)
    out = tmp_path / "out.mkv"
    upscale_video(str(src), str(out), opts(g_ckpt))
    _, pts, tb = decode(out)
    _, src_pts, src_tb = decode(src)
    assert pts == src_pts == videogen.VFR_PTS and tb == src_tb


def test_rotation_is_applied(tmp_path, g_ckpt):
    src, stored = videogen.rotated_clip(tmp_path, 90)
    out = tmp_path / "out.mp4"
    upscale_video(str(src), str(out), opts(g_ckpt))
    frames, _, _ = decode(out)
    assert frames[0].shape == (128, 96, 3)  # stored 64x48, shown rotated: 48x64, then x2
    from upsr_video.video import probe

    assert probe(str(out)).rotation == 0  # frames are upright: no rotation tag written
    import cv2

    small = cv2.resize(frames[0], (48, 64), interpolation=cv2.INTER_AREA).astype(float)
    cw, ccw = np.rot90(stored[0], k=-1).astype(float), np.rot90(stored[0], k=1).astype(float)
    assert np.abs(small - cw).mean() < 0.5 * np.abs(small - ccw).mean()  # turned clockwise, as tagged


def test_all_equal_or_missing_timestamps_fall_back_to_the_frame_rate(tmp_path, g_ckpt):
    """Video packets all stamped 0 (Matroska declaring 25 fps), or carrying no timestamp (a raw H.264 stream):
    every frame comes out, in order, at the declared rate (or --fps), with one warning line on stderr; the
    frames are those of the same clip with proper timestamps."""
    good = videogen.write_video(tmp_path / "good.mkv", videogen.pan_frames(10, 64, 48, index=21), audio="aac")
    zero = videogen.restamped(good, tmp_path, "zero.mkv", 0)
    raw = videogen.restamped(good, tmp_path, "raw.h264", None)
    ref = tmp_path / "ref.mkv"
    upscale_video(str(good), str(ref), opts(g_ckpt, codec="ffv1", pix_fmt="yuv444p"))
    ref_frames, ref_pts, ref_tb = decode(ref)
    assert len(ref_frames) == 10 and [t * ref_tb for t in ref_pts] == [Fraction(i, 25) for i in range(10)]

    out = tmp_path / "zero_up.mkv"
    r = run_cli("upscale", zero, "-o", out, "--scale", 2, "--checkpoint", g_ckpt, "--codec", "ffv1",
                "--pix-fmt", "yuv444p", "--quiet")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("note: this checkpoint")]
    assert len(lines) == 1 and lines[0].startswith("warning:") and "all equal" in lines[0] and "25 fps" in lines[0]
    s = json.loads(r.stdout)
    assert s["frames"] == 10 and s["timestamps"] == "declared-rate"
    frames, pts, tb = decode(out)
    assert [t * tb for t in pts] == [Fraction(i, 25) for i in range(10)]  # every frame, at the declared rate
    _assert_same_frames_in_order(frames, ref_frames)
    assert ("audio", "aac", "eng") in {x[:3] for x in streams(out)}

    out2 = tmp_path / "raw_up.mkv"  # no timestamps at all; --fps overrides the declared rate
    s = upscale_video(str(raw), str(out2), opts(g_ckpt, codec="ffv1", pix_fmt="yuv444p", fps="10"))
    frames, pts, tb = decode(out2)
    assert s["timestamps"] == "given-rate" and len(frames) == 10
    assert [t * tb for t in pts] == [Fraction(i, 10) for i in range(10)]
    _assert_same_frames_in_order(frames, ref_frames)


def _assert_same_frames_in_order(frames, ref):
    """The same pictures in the same order (decord and PyAV decode the inputs within a level of each other;
    neighbouring frames differ by ~30 levels here)."""
    d = np.array([[np.abs(a.astype(float) - b).mean() for b in ref] for a in frames])
    assert len(frames) == len(ref) and np.all(np.diag(d) < 3.0), np.diag(d)
    assert np.array_equal(d.argmin(axis=1), np.arange(len(ref)))


def test_anamorphic_dvd_comes_out_at_its_display_shape(tmp_path, g_ckpt):
    """720x480 with SAR 32:27 (16:9 as shown): --scale 1 gives 854x480 square pixels holding the picture as
    shown (stretched, not padded); a 16:9 target is filled without bars."""
    from upsr_video.upscale import prepare

    src, shown = videogen.anamorphic_clip(tmp_path)
    out = tmp_path / "out.mp4"
    s = upscale_video(str(src), str(out), opts(g_ckpt, scale=1.0))
    frames, _, _ = decode(out)
    assert s["input_size"] == [720, 480] and s["input_sar"] == "32:27" and s["output_size"] == [854, 480]
    assert len(frames) == 4 and frames[0].shape == (480, 854, 3)
    with av.open(str(out)) as c:
        sar = c.streams.video[0].sample_aspect_ratio
        assert sar in (None, 1)  # square pixels
    err = [np.abs(f.astype(float) - g).mean() for f, g in zip(frames, shown)]
    assert max(err) < 6, err  # the picture as shown, not squeezed or padded
    geom = prepare(str(src), opts(g_ckpt, scale=None, target="1280x720")).plan.geometry
    assert geom.content == geom.canvas == (1280, 720)  # 16:9 fills 16:9 (ignoring the SAR would pad to 1080)


def test_interlaced_input_is_deinterlaced(tmp_path, g_ckpt):
    """An interlaced H.264 clip (+ilme+ildct, top field first) comes out with every frame and its timestamps, each
    frame deinterlaced (no combing), and the summary says which filter ran; a range decodes to exactly the frames
    of a whole pass (segments need no special case)."""
    from upsr_video.video import iter_frames, probe

    src, pics = videogen.interlaced_clip(tmp_path)
    assert probe(str(src)).interlaced
    woven, src_pts, src_tb = decode(src)
    out = tmp_path / "out.mkv"
    s = upscale_video(str(src), str(out), opts(g_ckpt, codec="ffv1", pix_fmt="yuv444p"))
    frames, pts, tb = decode(out)
    assert len(frames) == 8 and s["frames"] == 8 and [p * tb for p in pts] == [p * src_tb for p in src_pts]
    assert s["deinterlaced"] in ("bwdif (interlaced)", "yadif (interlaced)")
    import cv2

    back = [cv2.resize(f, (64, 48), interpolation=cv2.INTER_AREA) for f in frames]
    assert max(videogen.combing(f) for f in back) < 0.5 * min(videogen.combing(f) for f in woven)
    # the top field (time 2i) is kept: each frame is nearest to its own picture
    d = np.array([[np.abs(b.astype(float) - p).mean() for p in pics[::2]] for b in back])
    assert np.array_equal(d.argmin(axis=1), np.arange(8))
    whole = np.concatenate([f for f, _ in iter_frames(str(src))])
    part = np.concatenate([f for f, _ in iter_frames(str(src), 3, 6, batch_size=2)])
    assert np.array_equal(part, whole[3:6])


@pytest.mark.parametrize("target,expect", [("720p", (1224, 720)), ("300x300", (300, 300)), (None, (196, 116))])
def test_odd_input_sizes_give_exact_even_outputs(tmp_path, g_ckpt, target, expect):
    src, _ = videogen.odd_clip(tmp_path)  # 131x77
    out = tmp_path / "out.mp4"
    kw = {"target": target, "scale": None} if target else {"scale": 1.5}
    s = upscale_video(str(src), str(out), opts(g_ckpt, **kw))
    frames, _, _ = decode(out)
    assert len(frames) == 5 and (frames[0].shape[1], frames[0].shape[0]) == expect == tuple(s["output_size"])


def test_ten_bit_input(tmp_path, g_ckpt):
    src, _ = videogen.tenbit_clip(tmp_path)
    out = tmp_path / "out.mkv"
    upscale_video(str(src), str(out), opts(g_ckpt, pix_fmt="yuv420p10le", codec="ffv1"))
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    assert len(decode(out)[0]) == 8


def _deep_frames(path):
    """(RGB48 frames, first frame) of a video decoded by PyAV with its own tags and accurate rounding."""
    from av.video.reformatter import Interpolation

    from upsr_video.video.colour import RANGES, SWS

    flags = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
    out, first = [], None
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            first = first or f
            out.append(f.reformat(format="rgb48le", src_colorspace=SWS["bt2020nc"], src_color_range=RANGES["tv"],
                                  dst_color_range=RANGES["pc"], interpolation=flags).to_ndarray())
    return np.stack(out), first


def _hdr_facts(frame):
    import struct

    side = {sd.type.name: bytes(sd) for sd in frame.side_data}
    md = side.get("MASTERING_DISPLAY_METADATA")
    cll = side.get("CONTENT_LIGHT_LEVEL")
    return ((frame.format.name, frame.colorspace, frame.color_range, frame.color_primaries, frame.color_trc),
            struct.unpack("<22i", md) if md else None, struct.unpack("<2I", cll) if cll else None)


def test_ten_bit_hdr_is_kept_end_to_end(tmp_path, g_ckpt):
    """A 10-bit PQ (HDR10) clip with mastering display and content light metadata: decoded at 16 bits (exactly
    the source's levels), up-scaled in float, written 10-bit by the default encoder (H.264 High 10) with the same
    colour tags and HDR metadata and no tone mapping; every channel keeps far more than 256 levels."""
    from upsr_video.process import to_tensor, to_uint16
    from upsr_video.video import iter_frames

    src = videogen.hdr_clip(tmp_path)
    ref, src_first = _deep_frames(src)
    mine = np.concatenate([f for f, _ in iter_frames(str(src), deep=True)])
    assert mine.dtype == np.uint16 and np.array_equal(mine, ref)  # the source's levels, not 8-bit ones
    assert all(len(np.unique(ref[..., k])) > 256 for k in range(3))
    assert np.array_equal(to_uint16(to_tensor(mine[0], "cpu")), mine[0])  # float keeps 16-bit levels exactly

    out = tmp_path / "out.mkv"
    s = upscale_video(str(src), str(out), opts(g_ckpt))
    frames, out_first = _deep_frames(out)
    assert len(frames) == 4 and frames.shape[1:] == (96, 128, 3) and s["bit_depth"] == [10, 10]
    assert all(len(np.unique(frames[..., k])) > 256 for k in range(3)), [len(np.unique(frames[..., k])) for k in range(3)]
    want = _hdr_facts(src_first)
    assert want == (("yuv420p10le", 9, 1, 9, 16), videogen_mastering(), videogen.CONTENT_LIGHT)
    assert _hdr_facts(out_first) == want  # pix_fmt, matrix, range, primaries, PQ, mastering, MaxCLL/MaxFALL
    assert s["colour"]["transfer"] == "smpte2084" and s["colour"]["mastering_display"] == videogen.MASTERING
    # no tone mapping: the picture's PQ code values are kept (the output against a plain bicubic x2 of the input)
    import cv2

    bic = np.stack([cv2.resize(f.astype(np.float32), (128, 96), interpolation=cv2.INTER_CUBIC) for f in ref])
    assert abs(frames.astype(np.float64).mean() - bic.mean()) < 0.02 * 65535


def videogen_mastering():
    """The mastering display of videogen.MASTERING as the decoder exports it (22 int32)."""
    import re

    g, b, r, wp, lum = re.findall(r"\(([^)]*)\)", videogen.MASTERING)
    xy = [tuple(int(v) for v in t.split(",")) for t in (r, g, b, wp)]
    hi, lo = (int(v) for v in lum.split(","))
    vals = [q for x, y in xy for q in (x, 50000, y, 50000)]
    return tuple(vals + [lo, 10000, hi, 10000, 1, 1])


def test_writer_libx265_carries_hdr10_metadata(tmp_path):
    """HEVC Main 10 from uint16 RGB: 10-bit frames, colour tags and the mastering/content-light SEI."""
    from dataclasses import replace

    from upsr_video.video import VideoWriter, probe

    src = videogen.hdr_clip(tmp_path)
    info = probe(str(src))
    assert info.colour.mastering_display() == videogen.MASTERING and info.colour.light == videogen.CONTENT_LIGHT
    ref, first = _deep_frames(src)
    out = tmp_path / "x265.mkv"
    with VideoWriter(out, 64, 48, info.time_base, codec="libx265", preset="ultrafast", crf=4, pix_fmt="yuv420p10le",
                     colour=info.colour) as w:
        for i, f in enumerate(ref):
            w.write(f, info.pts[i])
    got, out_first = _deep_frames(out)
    assert _hdr_facts(out_first) == _hdr_facts(first)
    assert np.abs(got.astype(float) - ref).mean() < 0.03 * 65535  # lossy 4:2:0 of sharp 10-bit ramps
    assert probe(str(out)).colour == replace(info.colour)


def test_subtitles_and_languages_are_kept(tmp_path, g_ckpt):
    src = videogen.subtitle_clip(tmp_path)
    out = tmp_path / "out.mkv"
    with pytest.raises(UpscaleError, match="matroska cannot hold stream 2 .subtitle mov_text"):
        upscale_video(str(src), str(out), opts(g_ckpt))  # refused before any work
    assert not out.exists()
    upscale_video(str(src), str(out), opts(g_ckpt, streams="convert"))  # mov_text -> SubRip
    kinds = {(t, lang) for t, _, lang, _ in streams(out)}
    assert ("audio", "eng") in kinds and ("subtitle", "fra") in kinds


def _all_streams(path):
    """(type, codec, language, title, disposition, payload) of every stream; payload: the packets' bytes (the
    attachment's data for an attachment; None for video)."""
    out = []
    with av.open(str(path)) as c:
        payload = {s.index: [] for s in c.streams if s.type in ("audio", "subtitle")}
        for p in c.demux([c.streams[i] for i in payload]):
            if p.size:
                payload[p.stream.index].append(bytes(p))
        for s in c.streams:
            data = (b"".join(payload[s.index]) if s.index in payload
                    else bytes(s.data) if s.type == "attachment" else None)
            if s.type == "data" and int(s.discard):
                continue  # an MP4 chapter track (read as the chapters)
            codec = s.metadata.get("mimetype") if s.type == "attachment" else s.codec_context.name
            # MP4 stores a track title as 'name'
            name = s.metadata.get("filename") if s.type == "attachment" else s.metadata.get("title", s.metadata.get("name"))
            out.append((s.type, codec, s.metadata.get("language"), name, int(s.disposition), data))
        chapters = [(round(float(ch["start"] * ch["time_base"]), 3), round(float(ch["end"] * ch["time_base"]), 3),
                     ch["metadata"].get("title")) for ch in c.chapters()]
        return out, chapters, c.metadata.get("title")


def test_every_stream_chapter_attachment_and_tag_is_kept(tmp_path, g_ckpt):
    """A Matroska rip (AAC + PCM audio, SubRip + ASS subtitles with their font attached, chapters, titles,
    languages, dispositions): the default output is Matroska and holds all of it, audio and subtitles bit-exact;
    the JSON summary lists every stream. An explicit .mp4 is refused in one line; with --streams convert the text
    subtitles become mov_text and the font is dropped, each drop said on stderr."""
    src = videogen.rich_mkv(tmp_path)
    r = run_cli("upscale", src, "--scale", 2, "--checkpoint", g_ckpt, "--quiet")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    out = tmp_path / "rich_upsr.mkv"
    assert s["output"] == str(out) and out.exists()
    want, chapters, title = _all_streams(src)
    got, out_chapters, out_title = _all_streams(out)
    assert got[0][:2] == ("video", "h264") and len(decode(out)[0]) == 10
    assert got[1:] == want[1:]  # same order, codecs, languages, titles, dispositions and bytes
    assert [g[:4] for g in got[1:]] == [("audio", "aac", "eng", "Main"), ("audio", "pcm_s16le", "deu", "Kommentar"),
                                        ("subtitle", "srt", "fra", "Français"), ("subtitle", "ssa", "jpn", "Signs"),
                                        ("attachment", "application/x-truetype-font", None, "cmex10.ttf")]
    assert got[5][5] == videogen.font_file().read_bytes()
    assert out_chapters == chapters == [(0.0, 0.2, "Opening"), (0.2, 0.4, "Ending")]
    assert out_title == title == "A rich test file"
    assert [(d["index"], d["type"], d["action"]) for d in s["streams"]] == [
        (0, "video", "upscale"), (1, "audio", "copy"), (2, "audio", "copy"), (3, "subtitle", "copy"),
        (4, "subtitle", "copy"), (5, "attachment", "copy")]
    assert s["chapters"] == 2 and s["streams"][2]["language"] == "deu" and s["streams"][5]["filename"] == "cmex10.ttf"

    mp4 = tmp_path / "rich.mp4"
    r = run_cli("upscale", src, "--scale", 2, "--checkpoint", g_ckpt, "--quiet", "-o", mp4)
    _assert_clean_failure(r, tmp_path, "mp4 cannot hold stream 3 (subtitle subrip, fra)")
    assert not mp4.exists()
    s = upscale_video(str(src), str(mp4), opts(g_ckpt, streams="convert"))
    got, out_chapters, _ = _all_streams(mp4)
    assert [g[:3] for g in got] == [("video", "h264", "und"), ("audio", "aac", "eng"), ("audio", "pcm_s16le", "deu"),
                                    ("subtitle", "mov_text", "fra"), ("subtitle", "mov_text", "jpn")]
    assert got[1][5] == want[1][5] and got[2][5] == want[2][5]  # audio still bit-exact
    assert out_chapters == chapters
    assert [(d["action"], d.get("to")) for d in s["streams"]] == [
        ("upscale", None), ("copy", None), ("copy", None), ("convert", "mov_text"), ("convert", "mov_text"),
        ("drop", None)]


def test_scene_cut_starts_a_new_shot(tmp_path, g_ckpt):
    src, cut = videogen.cut_clip(tmp_path)
    s = upscale_video(str(src), str(tmp_path / "o.mp4"), opts(g_ckpt))
    assert s["shots"] == 2


# -- determinism and segment-split invariance -------------------------------------------------------------------
def test_fixed_seed_is_deterministic_and_seed_matters(tmp_path, tiny_ckpt):
    src = videogen.cfr_clip(tmp_path, n=4, audio=False)
    a, b, c = (tmp_path / f"{k}.mkv" for k in "abc")
    for path, seed in ((a, 3), (b, 3), (c, 4)):
        upscale_video(str(src), str(path), opts(tiny_ckpt, seed=seed, codec="ffv1", pix_fmt="yuv444p"))
    fa, fb, fc = (decode(p)[0] for p in (a, b, c))
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb))
    assert not all(np.array_equal(x, y) for x, y in zip(fa, fc))


@pytest.mark.parametrize("mode", ["shared", "independent", "flow"])
def test_segment_split_invariance(tmp_path, tiny_ckpt, mode):
    """Frames [0, N) in one piece == pieces [0, k) + [k, N) (context frames warm the temporal state). The anchored
    modes match to >= 50 dB instead (tests/test_temporal.py)."""
    from upsr_video.checkpoint import load_pipeline
    from upsr_video.process import process_segment
    from upsr_video.upscale import prepare
    from upsr_video.video import finalize

    src, cut = videogen.cut_clip(tmp_path, before=5, after=5)
    o = opts(tiny_ckpt, temporal=mode, codec="ffv1", pix_fmt="yuv444p")
    prep = prepare(str(src), o)
    _, pipe = load_pipeline(o.checkpoint)
    n = prep.info.num_frames
    whole = tmp_path / "whole.mkv"
    process_segment(str(src), 0, n, prep.plan, pipe, str(tmp_path / "w.part.mkv"))
    finalize([str(tmp_path / "w.part.mkv")], str(src), str(whole))
    parts = []
    assert cut == 5
    for i, (a, b) in enumerate([(0, 2), (2, 7), (7, n)]):  # the middle piece spans the cut; 7 is 2 frames past it
        p = tmp_path / f"p{i}.part.mkv"
        process_segment(str(src), a, b, prep.plan, pipe, str(p))
        parts.append(str(p))
    pieces = tmp_path / "pieces.mkv"
    finalize(parts, str(src), str(pieces))
    (fw, pw, _), (fp, pp, _) = decode(whole), decode(pieces)
    assert pw == pp and len(fw) == n
    assert all(np.array_equal(x, y) for x, y in zip(fw, fp))


# -- resume of a single-file run ----------------------------------------------------------------------------------
def _done_rows(db):
    import sqlite3

    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT idx, start, stop FROM segments WHERE state='done'").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []


def _killed_run(args, work, min_done=1):
    """Start `upscale` in a subprocess, SIGKILL it once `min_done` segments are recorded; the done rows then."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "upsr_video", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    t0, done = time.time(), []
    while time.time() - t0 < 300 and proc.poll() is None:
        done = _done_rows(work / "manifest.sqlite")
        if len(done) >= min_done:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill: {proc.stderr.read().decode()[-800:]}"
    return _done_rows(work / "manifest.sqlite")


def test_killed_single_file_run_resumes_to_the_same_file(tmp_path, tiny_ckpt):
    """`upscale` SIGKILLed after its first finished segment, then run again: the finished segments are reused
    (only the unfinished frames are computed), the leftovers of the dead run are removed, and the output is
    byte for byte the file of an uninterrupted run. --no-resume computes everything again."""
    src = videogen.cfr_clip(tmp_path, n=24)
    flags = ["--scale", 2, "--checkpoint", tiny_ckpt, "--steps", 1, "--threads", 1,
             "--segment-frames", 4, "--quiet"]
    o = opts(tiny_ckpt, steps=1)
    o.threads = 1
    ref = tmp_path / "ref.mp4"
    s = upscale_video(str(src), str(ref), o, segment_frames=4)
    assert s["segments"] == 6 and s["frames_computed"] == 24 and s["segments_reused"] == 0
    assert not (tmp_path / ".ref.mp4.upsr-work").exists()

    out = tmp_path / "out.mp4"
    work = tmp_path / ".out.mp4.upsr-work"
    done = _killed_run(["upscale", src, "-o", out, *flags], work)
    assert 1 <= len(done) < 6 and not out.exists() and work.is_dir()
    stale = tmp_path / ".out.mp4.tmp-999999999"  # what a run killed while writing the output leaves
    stale.write_bytes(b"half a file")
    (work / ".part-x.mkv.tmp-999999999").write_bytes(b"half a part")
    r = run_cli("upscale", src, "-o", out, *flags)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    finished = sum(b - a for _, a, b in done)
    assert s["segments_reused"] >= len(done) and s["frames_computed"] == 24 - 4 * s["segments_reused"]
    assert s["frames_computed"] <= 24 - finished  # nothing finished before the kill was computed again
    assert out.read_bytes() == ref.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfr.mp4", "out.mp4", "ref.mp4"]  # no leftovers

    out.unlink()
    done = _killed_run(["upscale", src, "-o", out, *flags], work)
    assert done
    s = upscale_video(str(src), str(out), o, segment_frames=4, resume=False)
    assert s["segments_reused"] == 0 and s["frames_computed"] == 24
    assert out.read_bytes() == ref.read_bytes() and not work.exists()


# -- --steps: the one sampling path ----------------------------------------------------------------------------
def test_steps_reach_the_sampler_on_a_real_clip(tmp_path):
    """The bundled default on frames of realshort (x2, a factor it was not trained at when it shipped): one
    denoiser call and full sampling give different frames, and the summary says what ran."""
    frames, _, _ = decode(REALSHORT)
    import cv2

    small = [cv2.resize(f, (160, 120), interpolation=cv2.INTER_AREA) for f in frames[:2]]
    src = videogen.write_video(tmp_path / "real.mkv", small, codec="ffv1", pix_fmt="yuv444p")
    outs, sums = {}, {}
    for n in (1, 5):
        out = tmp_path / f"s{n}.mkv"
        r = run_cli("upscale", src, "--scale", 2, "--steps", n, "-o", out, "--codec", "ffv1", "--pix-fmt", "yuv444p",
                    "--quiet", "--threads", 2)
        assert r.returncode == 0, r.stderr
        sums[n] = json.loads(r.stdout.strip().splitlines()[-1])
        outs[n] = decode(out)[0]
        assert outs[n][0].shape == (240, 320, 3)
    assert (sums[1]["steps"], sums[1]["start_step"]) == (1, 0)
    assert (sums[5]["steps"], sums[5]["start_step"]) == (5, None)
    assert "resize_mode" not in sums[1]
    diff = np.mean([np.abs(a.astype(float) - b.astype(float)).mean() for a, b in zip(outs[1], outs[5])])
    assert diff > 0.05, diff


def test_a_checkpoints_table_entry_is_what_auto_runs(tmp_path):
    """A checkpoint carrying its own start_steps table: --steps auto at x2 gives exactly the frames of the explicit
    --steps the entry stands for (start step 2 = 3 calls), and not those of another count."""
    table = {"checkpoint": "test-tiny-table", "factors": {"1.5": 0, "2": 2, "4": None}}
    ckpt = _tiny(tmp_path, "table.safetensors", {"name": "test-tiny-table", "start_steps": table})
    src = videogen.cfr_clip(tmp_path, n=3, audio=False)
    got = {}
    for steps in ("auto", 3, 1):
        out = tmp_path / f"{steps}.mkv"
        s = upscale_video(str(src), str(out), opts(ckpt, steps=steps, codec="ffv1", pix_fmt="yuv444p"))
        got[steps] = (s, decode(out)[0])
    assert got["auto"][0]["start_step"] == 2 and got["auto"][0]["steps"] == 3
    assert all(np.array_equal(a, b) for a, b in zip(got["auto"][1], got[3][1]))
    assert not all(np.array_equal(a, b) for a, b in zip(got["auto"][1], got[1][1]))


def test_input_at_the_target_fails_before_any_work(tmp_path, g_ckpt):
    """640x480 -> --target 640x480, 320x240 or --scale 1: one line naming both sizes, exit 2, no output or part file."""
    src = videogen.write_video(tmp_path / "src.mp4", videogen.pan_frames(3, 640, 480))
    for extra in (["--target", "640x480"], ["--target", "320x240"], ["--scale", "1"]):
        out = tmp_path / "out.mp4"
        r = run_cli("upscale", src, "-o", out, "--checkpoint", g_ckpt, "--quiet", *extra)
        target = "320x240" if "320x240" in extra else "640x480"
        _assert_clean_failure(r, tmp_path, f"input is already 640x480, at or above the target {target}: "
                                           "nothing to up-scale; use a larger --target or --scale")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["src.mp4"]


# -- bad input: one line, exit 2, nothing written ---------------------------------------------------------------
def _assert_clean_failure(r, folder, needle):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not [p for p in Path(folder).iterdir() if p.name.startswith((".out", "out"))]


@pytest.mark.parametrize("case", ["missing", "text", "audio_only", "truncated", "no_frames", "bad_target",
                                  "steps_0", "steps_9", "steps_x", "fp16_cpu", "exists", "bad_container"])
def test_bad_input_fails_cleanly(tmp_path, g_ckpt, case):
    out = tmp_path / "out.mp4"
    extra = []
    if case == "missing":
        src, needle = tmp_path / "nope.mp4", "not found"
    elif case == "text":
        src, needle = videogen.text_file(tmp_path), "not a video"
    elif case == "audio_only":
        src, needle = videogen.audio_only(tmp_path), "video"
    elif case == "truncated":
        src, needle = videogen.truncated(videogen.cfr_clip(tmp_path, n=40, faststart=True), tmp_path), "trunc"
    elif case == "no_frames":
        src, needle = videogen.no_frames_clip(tmp_path), "frames"
    else:
        src = videogen.cfr_clip(tmp_path, n=4, audio=False, name="src.mp4")
        if case == "bad_target":
            extra, needle = ["--target", "720i"], "target"
        elif case.startswith("steps_"):
            v = case.split("_")[1]
            extra = ["--steps", v, "--scale", "2"]
            needle = f"--steps must be auto or a number of denoiser calls in 1..5, got {v if v != 'x' else repr(v)}"
        elif case == "fp16_cpu":
            extra, needle = ["--precision", "fp16", "--device", "cpu"], "fp16"
        elif case == "exists":
            out.write_bytes(b"keep me")
            needle = "exists"
        elif case == "bad_container":
            out, needle = tmp_path / "out.avi", "container"
    args = ["upscale", src, "-o", out, "--checkpoint", g_ckpt, "--quiet"] + (extra or ["--scale", "2"])
    r = run_cli(*args)
    if case == "exists":
        assert r.returncode == 2 and out.read_bytes() == b"keep me" and "exists" in r.stderr
        return
    _assert_clean_failure(r, tmp_path, needle.lower() if needle.islower() else needle)


def test_write_failure_leaves_no_partial_output(tmp_path, g_ckpt, monkeypatch):
    """A disk-full error mid-encode: one clean error, no output and no temporary files."""
    import errno

    from upsr_video.video import writer as writer_mod

    src = videogen.cfr_clip(tmp_path, n=6, audio=False, name="src.mp4")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    calls = {"n": 0}
    real_write = writer_mod.VideoWriter.write

    def failing(self, frame, pts):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, frame, pts)

    monkeypatch.setattr(writer_mod.VideoWriter, "write", failing)
    with pytest.raises(UpscaleError, match="No space left"):
        upscale_video(str(src), str(out_dir / "o.mp4"), opts(g_ckpt))
    assert list(out_dir.iterdir()) == []
