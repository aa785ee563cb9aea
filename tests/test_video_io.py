"""Video I/O: probe, frame-exact decoding (decord / PyAV), colour matrices, the atomic writer, finalize (lossless
concatenation + audio/subtitles of the original), scene cuts, and the user-facing errors.

Clips are generated with PyAV directly (tests/videogen.py) from real images; the three shared videos are
checked against an independent PyAV decode."""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import videogen as g
from upsr_video.video import ColourInfo, SceneCutDetector, VideoError, VideoWriter, finalize, iter_frames, probe
from upsr_video.video.colour import rgb_to_yuv, yuv_to_rgb
from upsr_video.video.reader import decord_is_exact

SHARED_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"
REALSHORT, COCKATOO, BIKES = (SHARED_VIDEO / f"{n}.mp4" for n in ("realshort", "cockatoo", "bikes"))


# -- helpers ---------------------------------------------------------------------------------------------------
def pyav_decode(path, max_frames=None, rgb=True):
    """Independent reference: every frame of the first video stream (PyAV, presentation order) and its pts."""
    frames, pts = [], []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            pts.append(f.pts)
            if rgb:
                frames.append(f.to_ndarray(format="rgb24"))
            if max_frames and len(pts) == max_frames:
                break
    return frames, pts


def read_all(path, **kw):
    frames, idx = [], []
    for f, i in iter_frames(path, **kw):
        assert f.dtype == np.uint8 and f.ndim == 4 and f.shape[-1] == 3 and len(f) == len(i)
        frames.extend(f)
        idx.extend(i)
    return frames, idx


def maxdiff(a, b) -> int:
    return int(np.abs(np.asarray(a).astype(np.int16) - np.asarray(b).astype(np.int16)).max())


def assert_one_line(e: Exception):
    msg = str(e)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    c = {"dir": d, "cfr": g.cfr_clip(d), "vfr": g.vfr_clip(d), "subs": g.subtitle_clip(d),
         "subs_mkv": g.subtitle_clip(d, "subs.mkv"), "pcm": g.pcm_clip(d)}
    c["cut"], c["cut_at"] = g.cut_clip(d)
    return c


# -- probe -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path,size,frames,audio", [(REALSHORT, (320, 240), 36, True),
                                                    (COCKATOO, (1280, 720), 280, True),
                                                    (BIKES, (640, 272), 250, False)])
def test_probe_shared_videos_match_an_independent_decode(path, size, frames, audio):
    info = probe(path)
    _, pts = pyav_decode(path, rgb=False)
    assert info.num_frames == len(pts) == frames  # the counts in shared/data/SOURCES.md, confirmed by decoding
    assert info.pts == pts  # presentation order, exact timestamps
    assert (info.width, info.height) == size and info.rotation == 0
    assert info.has_audio is audio and len(info.audio) == int(audio)
    assert info.codec == "h264" and info.bit_depth == 8
    assert abs(info.duration - frames / info.avg_fps) < 1e-6
    if path == COCKATOO:
        assert info.avg_fps == pytest.approx(20.0) and info.audio[0]["codec"] == "mp3"
        assert info.colour.matrix == "bt709" and info.colour.tagged == ()  # untagged HD: BT.709
    if path == REALSHORT:
        assert info.audio[0]["codec"] == "aac" and info.audio[0]["language"] == "eng"
        assert info.colour.matrix == "smpte170m"  # untagged SD: BT.601


def test_shared_video_frames_equal_pyav_frames():
    """decord's frames are PyAV's frames, in the same order (realshort: untagged SD, decoded by decord)."""
    info = probe(REALSHORT)
    assert decord_is_exact(info)
    ref, _ = pyav_decode(REALSHORT)
    frames, idx = read_all(REALSHORT, batch_size=8)
    assert idx == list(range(36))
    assert max(maxdiff(a, b) for a, b in zip(frames, ref)) <= 2


def test_unseekable_untagged_hd_video_decodes_exactly():
    """cockatoo.mp4: untagged HD (BT.709, which decord would not use) whose keyframes do not decode after a
    seek (parameter sets in-band at the start only): a range comes from a decode from the start."""
    info = probe(COCKATOO)
    assert info.colour.matrix == "bt709" and not info.seekable and not decord_is_exact(info)
    frames, idx = read_all(COCKATOO, start=100, stop=103)
    assert idx == [100, 101, 102] and frames[0].shape == (720, 1280, 3)
    with av.open(str(COCKATOO)) as c:
        ref = [f.reformat(format="rgb24", src_colorspace=1, src_color_range=1).to_ndarray()
               for i, f in zip(range(103), c.decode(video=0)) if i >= 100]
    assert all(np.abs(a.astype(float) - b).mean() < 1.0 for a, b in zip(frames, ref))


# -- iter_frames -----------------------------------------------------------------------------------------------
def test_batches_and_ranges_give_the_frames_of_one_full_pass(clips):
    path = clips["cfr"]
    full, idx = read_all(path, batch_size=30)
    assert idx == list(range(30))
    for bs in (1, 7, 8):
        f, i = read_all(path, batch_size=bs)
        assert i == idx and all(np.array_equal(a, b) for a, b in zip(f, full))
    for start, stop in [(5, 17), (0, 1), (29, None), (13, 100), (8, 16)]:
        f, i = read_all(path, start=start, stop=stop, batch_size=4)
        want = list(range(start, min(30, stop or 30)))
        assert i == want and all(np.array_equal(a, full[k]) for a, k in zip(f, i))
    assert read_all(path, start=30) == ([], [])
    ref, _ = pyav_decode(path)
    assert max(maxdiff(a, b) for a, b in zip(full, ref)) <= 2


def test_both_decoders_give_the_same_frames(clips):
    path = clips["vfr"]
    a, ia = read_all(path, backend="decord", batch_size=6)
    b, ib = read_all(path, backend="pyav", batch_size=6)
    c, ic = read_all(path, backend="pyav", start=11, stop=17, batch_size=4)  # PyAV after a seek
    assert ia == ib == list(range(len(g.VFR_PTS))) and ic == list(range(11, 17))
    # same frames; the chroma upsampling differs (decord: FFmpeg 4.1 default, PyAV: full-resolution bilinear)
    assert max(np.abs(x.astype(float) - y).mean() for x, y in zip(a, b)) < 1.5
    assert all(np.array_equal(x, b[k]) for x, k in zip(c, ic))


def test_vfr_timestamps_are_kept(clips):
    info = probe(clips["vfr"])
    ref, pts = pyav_decode(clips["vfr"])
    assert info.pts == pts == g.VFR_PTS and info.time_base == Fraction(1, 1000)
    mp4 = probe(g.vfr_clip(clips["dir"], "vfr.mp4"))  # MP4 keeps them on a finer clock
    assert [p * mp4.time_base for p in mp4.pts] == [p * info.time_base for p in info.pts]
    assert [p * info.time_base for p in info.pts] == [Fraction(p, 1000) for p in g.VFR_PTS]
    frames, _ = read_all(clips["vfr"])
    assert max(maxdiff(a, b) for a, b in zip(frames, ref)) <= 2


@pytest.mark.parametrize("rotation,ext", [(90, ".mp4"), (270, ".mkv"), (180, ".mp4")])
def test_rotated_video_decodes_upright(tmp_path, rotation, ext):
    path, stored = g.rotated_clip(tmp_path, rotation, name=f"rot{rotation}{ext}")
    info = probe(path)
    assert info.rotation == rotation
    assert (info.width, info.height) == ((48, 64) if rotation in (90, 270) else (64, 48))
    frames, idx = read_all(path, batch_size=4)
    assert idx == list(range(6))
    for f, s in zip(frames, stored):
        assert f.shape == (info.height, info.width, 3)
        assert maxdiff(f, np.rot90(s, k=-rotation // 90)) <= 3  # turned clockwise, as players show it


def test_odd_size_and_10bit_decode(tmp_path):
    path, stored = g.odd_clip(tmp_path)
    info = probe(path)
    assert (info.width, info.height) == (131, 77)
    frames, _ = read_all(path, batch_size=2)
    assert len(frames) == 5 and max(maxdiff(a, b) for a, b in zip(frames, stored)) <= 3
    for codec, name in (("libx264", "10.mp4"), ("ffv1", "10.mkv")):
        path, stored = g.tenbit_clip(tmp_path, codec, name)
        info = probe(path)
        assert info.pix_fmt == "yuv420p10le" and info.bit_depth == 10
        frames, idx = read_all(path, batch_size=3)
        assert idx == list(range(8))
        err = np.mean([np.abs(a.astype(float) - b).mean() for a, b in zip(frames, stored)])
        assert err < 3.0, (codec, err)


# -- colour ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("matrix,rng,tagged,size", [
    ("bt709", "tv", True, (64, 32)),
    ("smpte170m", "tv", True, (64, 32)),
    ("bt470bg", "pc", True, (64, 32)),
    ("smpte170m", "tv", False, (64, 32)),  # untagged SD: BT.601
    ("bt709", "tv", False, (1280, 720)),  # untagged HD: BT.709
])
def test_decoded_colours_follow_the_stream_matrix_and_range(tmp_path, matrix, rng, tagged, size):
    path, card = g.colour_clip(tmp_path, matrix, rng, tagged, size)
    info = probe(path)
    assert (info.colour.matrix, info.colour.range) == (matrix, rng)
    frames, _ = read_all(path)
    assert maxdiff(frames[0], card) <= 2
    # the check has teeth: the other matrix would be far off on this card
    other = ColourInfo("bt709" if matrix != "bt709" else "smpte170m", rng)
    wrong = yuv_to_rgb(np.round(rgb_to_yuv(card, ColourInfo(matrix, rng))), other)
    assert np.abs(wrong.clip(0, 255) - card).max() > 10


# -- writer ----------------------------------------------------------------------------------------------------
def test_writer_round_trip_keeps_vfr_pts_and_pixels(tmp_path):
    frames = g.pan_frames(len(g.VFR_PTS), 64, 48, index=21)
    tb = Fraction(1, 1000)
    out = tmp_path / "part.mkv"
    with VideoWriter(out, 64, 48, tb, codec="ffv1", pix_fmt="yuv444p", colour=ColourInfo("bt709", "tv")) as w:
        for f, p in zip(frames, g.VFR_PTS):
            w.write(f, p)
    assert sorted(os.listdir(tmp_path)) == ["part.mkv"]
    info = probe(out)
    assert info.time_base == tb and info.pts == g.VFR_PTS and info.codec == "ffv1"
    assert (info.colour.matrix, info.colour.range, info.colour.primaries) == ("bt709", "tv", "bt709")
    assert set(info.colour.tagged) == {"matrix", "range", "primaries", "transfer"}
    got, _ = read_all(out)
    assert max(maxdiff(a, b) for a, b in zip(got, frames)) <= 2  # RGB -> YCbCr 4:4:4 -> RGB


def test_writer_rgb_ffv1_is_exact_and_rgb_sources_get_a_yuv_matrix(tmp_path):
    frames = g.pan_frames(3, 64, 48, index=27)
    rgb = ColourInfo("rgb", "pc")
    with VideoWriter(tmp_path / "rgb.mkv", 64, 48, Fraction(1, 25), codec="ffv1", pix_fmt="bgr0", colour=rgb) as w:
        for i, f in enumerate(frames):
            w.write(f, i)
    got, _ = read_all(tmp_path / "rgb.mkv")
    assert all(np.array_equal(a, b) for a, b in zip(got, frames))
    with VideoWriter(tmp_path / "yuv.mkv", 64, 48, Fraction(1, 25), pix_fmt="yuv444p", crf=0, colour=rgb) as w:
        w.write(frames[0], 0)
    info = probe(tmp_path / "yuv.mkv")
    assert (info.colour.matrix, info.colour.range) == ("smpte170m", "tv")  # SD size: BT.601
    assert maxdiff(read_all(tmp_path / "yuv.mkv")[0][0], frames[0]) <= 2


@pytest.mark.parametrize("codec,pix_fmt,ext", [("libx264", "yuv420p", ".mp4"), ("libx265", "yuv420p10le", ".mkv")])
def test_writer_lossy_codecs_keep_pts(tmp_path, codec, pix_fmt, ext):
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not in this PyAV build")
    frames = g.pan_frames(10, 64, 48, index=23)
    tb = Fraction(1, 12800)
    pts = [512 * i for i in range(10)]
    out = tmp_path / f"out{ext}"
    with VideoWriter(out, 64, 48, tb, codec=codec, crf=10, preset="ultrafast", pix_fmt=pix_fmt) as w:
        for f, p in zip(frames, pts):
            w.write(f, p)
    info = probe(out)
    assert info.num_frames == 10 and info.pix_fmt == pix_fmt
    assert [p * info.time_base for p in info.pts] == [p * tb for p in pts]
    got, _ = read_all(out)
    # 4:2:0 on 64x48 frames of fine texture: even a lossless 4:2:0 round trip is ~3.6 levels off on average
    assert np.mean([np.abs(a.astype(float) - b).mean() for a, b in zip(got, frames)]) < 6


def test_writer_on_exception_leaves_no_file(tmp_path):
    out = tmp_path / "x.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 64, 48, Fraction(1, 25)) as w:
            w.write(np.zeros((48, 64, 3), np.uint8), 0)
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_writer_rejects_bad_setups(tmp_path):
    tb = Fraction(1, 25)
    for kw in ({"path": tmp_path / "odd.mp4", "width": 131, "height": 77},  # 4:2:0 needs even sizes
               {"path": tmp_path / "x.avi", "width": 64, "height": 48},
               {"path": tmp_path / "x.mp4", "width": 64, "height": 48, "codec": "nosuchcodec"},
               {"path": tmp_path / "nofolder" / "x.mp4", "width": 64, "height": 48}):
        with pytest.raises(VideoError) as e:
            VideoWriter(time_base=tb, **kw)
        assert_one_line(e.value)
    with VideoWriter(tmp_path / "odd.mkv", 131, 77, tb, pix_fmt="yuv444p") as w:  # 4:4:4 takes odd sizes
        w.write(g.pan_frames(1, 131, 77)[0], 0)
        with pytest.raises(VideoError):
            w.write(np.zeros((77, 131, 3), np.uint8), 0)  # pts must increase
    assert probe(tmp_path / "odd.mkv").num_frames == 1
    assert sorted(os.listdir(tmp_path)) == ["odd.mkv"]


# -- finalize --------------------------------------------------------------------------------------------------
def _parts(original, folder, splits, codec="libx264", pix_fmt="yuv420p"):
    """Re-encode the original's frames into part files [a, b) as process_segment does (frames x pts).
    Lossless H.264 with B-frames (preset veryfast), so that joining parts must rebuild the dts."""
    info = probe(original)
    frames, _ = read_all(original)
    parts = []
    for k, (a, b) in enumerate(splits):
        p = Path(folder) / f".part{k}.mkv"
        with VideoWriter(p, info.width, info.height, info.time_base, codec=codec, crf=0, preset="veryfast",
                         pix_fmt=pix_fmt, colour=info.colour) as w:
            for i in range(a, b):
                w.write(frames[i], info.pts[i])
        parts.append(str(p))
    return parts, info


def test_finalize_concatenates_losslessly_and_keeps_audio(clips, tmp_path):
    parts, info = _parts(clips["cfr"], tmp_path, [(0, 12), (12, 30)])
    out = tmp_path / "out.mp4"
    summary = finalize(parts, clips["cfr"], out)
    assert summary["audio"][0]["action"] == "copy"
    assert [(d["type"], d["action"]) for d in summary["streams"]] == [("video", "upscale"), ("audio", "copy")]
    o = probe(out)
    assert o.num_frames == 30 and o.time_base == info.time_base and o.pts == info.pts and o.rotation == 0
    assert o.audio[0]["codec"] == "aac" and o.audio[0]["language"] == "eng"
    assert abs(o.audio[0]["duration"] - o.duration) <= 1 / o.avg_fps
    # lossless: the output decodes to exactly the parts' frames
    want = []
    for p in parts:
        want += pyav_decode(p)[0]
    got, _ = pyav_decode(out)
    assert len(got) == 30 and all(np.array_equal(a, b) for a, b in zip(got, want))
    assert sorted(x for x in os.listdir(tmp_path) if not x.startswith(".part")) == ["out.mp4"]


def test_finalize_of_a_rotated_original_writes_upright_video_without_rotation(tmp_path):
    src, stored = g.rotated_clip(tmp_path, 90)
    parts, info = _parts(src, tmp_path, [(0, 3), (3, 6)])
    out = tmp_path / "out.mkv"
    finalize(parts, src, out)
    o = probe(out)
    assert o.rotation == 0 and (o.width, o.height) == (48, 64) == (info.width, info.height)
    frames, _ = read_all(out)
    up, wrong = np.rot90(stored[0], k=-1), np.rot90(stored[0], k=1)
    assert np.abs(frames[0].astype(float) - up).mean() < 1.5 < np.abs(frames[0].astype(float) - wrong).mean()


def test_finalize_restores_exact_vfr_pts_from_millisecond_parts(clips, tmp_path):
    """Matroska parts store milliseconds; the MP4 output gets the original's exact timestamps back."""
    src = g.write_video(tmp_path / "vfr90k.mp4", g.pan_frames(12, 64, 48, index=25),
                        pts=[0, 2998, 6100, 9000, 12345, 15000, 18000, 21003, 24500, 27000, 30030, 33333],
                        time_base=Fraction(1, 90000))
    parts, info = _parts(src, tmp_path, [(0, 5), (5, 9), (9, 12)])
    assert probe(parts[1]).time_base == Fraction(1, 1000)
    out = tmp_path / "out.mp4"
    finalize(parts, src, out)
    o = probe(out)
    assert o.time_base == info.time_base and o.pts == info.pts


def test_finalize_subtitles_and_reencoded_audio(clips, tmp_path):
    # mov_text (MP4) -> Matroska: refused by default (one line), converted to SubRip with --streams convert
    out = tmp_path / "subs.mkv"
    parts, _ = _parts(clips["subs"], tmp_path, [(0, 20)])
    with pytest.raises(VideoError, match="cannot hold stream 2 .subtitle mov_text, fra.*--streams convert") as e:
        finalize(parts, clips["subs"], out)
    assert_one_line(e.value)
    assert not out.exists()
    s = finalize(parts, clips["subs"], out, streams="convert")
    o = probe(out)
    assert [x["language"] for x in o.subtitles] == ["fra"] and o.audio[0]["language"] == "eng"
    assert s["subtitles"][0]["action"] == "convert" and s["subtitles"][0]["to"] == "subrip"
    with av.open(str(out)) as c:
        st = c.streams.subtitles[0]
        texts = [r.ass for p in c.demux(st) if p.size for ss in [st.decode2(p)] if ss for r in ss]
    assert [t.split(b",")[-1] for t in texts] == [b"Hello", b"World"]
    # SubRip (Matroska) -> MP4: converted to mov_text
    out2 = tmp_path / "subs.mp4"
    parts, _ = _parts(clips["subs_mkv"], tmp_path, [(0, 20)])
    finalize(parts, clips["subs_mkv"], out2, streams="convert")
    o2 = probe(out2)
    assert o2.subtitles[0]["codec"] == "mov_text" and o2.subtitles[0]["language"] == "fra"
    # PCM (Matroska) -> MP4: FFmpeg's mp4 muxer holds PCM, so it is copied bit-exact
    out3 = tmp_path / "pcm.mp4"
    parts, _ = _parts(clips["pcm"], tmp_path, [(0, 7), (7, 15)])
    s3 = finalize(parts, clips["pcm"], out3)
    o3 = probe(out3)
    assert s3["audio"][0]["action"] == "copy" and o3.audio[0]["codec"] == "pcm_s16le"
    assert o3.audio[0]["language"] == "deu" and _audio_bytes(out3) == _audio_bytes(clips["pcm"])
    # WavPack (Matroska) cannot go into MP4: an error, or re-encoded to AAC with --streams convert (language
    # kept, same length), or dropped with --streams drop-unsupported
    wv = g.write_video(tmp_path / "wv.mkv", g.pan_frames(15, 64, 48, index=17), audio="wavpack", audio_language="swe")
    parts, _ = _parts(wv, tmp_path, [(0, 15)])
    out4 = tmp_path / "wv.mp4"
    with pytest.raises(VideoError, match=r"mp4 cannot hold stream 1 \(audio wavpack, swe\).*use .mkv, or --streams"):
        finalize(parts, wv, out4)
    s4 = finalize(parts, wv, out4, streams="convert")
    o4 = probe(out4)
    assert s4["audio"][0]["action"] == "convert" and o4.audio[0]["codec"] == "aac" and o4.audio[0]["language"] == "swe"
    assert abs(o4.audio[0]["duration"] - o4.duration) <= 2 / o4.avg_fps  # AAC pads to whole 1024-sample frames
    s5 = finalize(parts, wv, out4, overwrite=True, streams="drop-unsupported")
    assert s5["audio"][0]["action"] == "drop" and not probe(out4).audio


def _audio_bytes(path) -> bytes:
    """The first audio stream's packet payloads, concatenated."""
    with av.open(str(path)) as c:
        return b"".join(bytes(p) for p in c.demux(c.streams.audio[0]) if p.size)


def test_finalize_errors_leave_no_output(clips, tmp_path):
    parts, _ = _parts(clips["cfr"], tmp_path, [(0, 12), (12, 30)])
    out = tmp_path / "out.mp4"
    cases = [
        ([parts[0]], "parts hold 12 frames"),  # missing frames
        ([parts[1], parts[0]], "expected from 0"),  # wrong order
        ([parts[0], parts[0], parts[1]], "overlaps"),
        ([parts[0], str(tmp_path / "missing.mkv")], "missing"),
        ([], "no parts"),
    ]
    for ps, words in cases:
        with pytest.raises(VideoError) as e:
            finalize(ps, clips["cfr"], out)
        assert words in str(e.value)
        assert_one_line(e.value)
        assert not out.exists()
    finalize(parts, clips["cfr"], out)
    with pytest.raises(VideoError, match="exists"):
        finalize(parts, clips["cfr"], out)
    finalize(parts, clips["cfr"], out, overwrite=True)
    assert not [x for x in os.listdir(tmp_path) if ".tmp-" in x]


# -- errors ----------------------------------------------------------------------------------------------------
def test_bad_inputs_raise_one_line_video_errors(clips, tmp_path):
    ok_mkv = g.subtitle_clip(tmp_path, "full.mkv")
    cases = {
        "missing": (tmp_path / "nope.mp4", "no such file"),
        "folder": (tmp_path, "folder"),
        "empty": (tmp_path / "empty.mp4", "empty"),
        "text": (g.text_file(tmp_path), "not a video"),
        "audio only": (g.audio_only(tmp_path), "audio-only"),
        "no frames": (g.no_frames_clip(tmp_path), "no frames"),
        "header only": (_header_only(tmp_path), "no video frames"),
        "truncated mp4": (g.truncated(clips["cfr"], tmp_path), "truncated"),
        "truncated faststart mp4": (g.truncated(g.cfr_clip(tmp_path, name="fs.mp4", faststart=True), tmp_path,
                                                "trunc_fs.mp4"), "truncated"),
        "truncated mkv": (g.truncated(ok_mkv, tmp_path), "truncated"),
    }
    (tmp_path / "empty.mp4").write_bytes(b"")
    for what, (path, words) in cases.items():
        for call in (lambda: probe(path), lambda: next(iter_frames(path))):
            with pytest.raises(VideoError) as e:
                call()
            assert words in str(e.value), (what, str(e.value))
            assert_one_line(e.value)


def _header_only(folder) -> Path:
    """A Matroska file with a video stream and nothing else: a header, no frames."""
    path = Path(folder) / "header_only.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv444p"
        c.start_encoding()  # writes the header (PyAV writes nothing at all for a container never muxed into)
    return path


# -- scene cuts ------------------------------------------------------------------------------------------------
def _cuts(path, start=0, stop=None, **kw):
    det = SceneCutDetector(**kw)
    cuts = []
    for frames, idx in iter_frames(path, start, stop, batch_size=16):
        for f, i in zip(frames, idx):
            if det.update(cv2.resize(f, (64, 36), interpolation=cv2.INTER_AREA)) and i > start:
                cuts.append(i)
    return cuts


def test_scene_cut_found_at_the_cut_and_nowhere_else(clips):
    assert _cuts(clips["cut"]) == [clips["cut_at"]]
    assert _cuts(clips["cfr"]) == []  # one pan, no cut


def test_scene_cuts_on_real_footage():
    # bikes.mp4 is an edit of five shots (hard cuts at 30, 76, 137, 187, 242: checked by eye); within them motion
    assert _cuts(BIKES) == [30, 76, 137, 187, 242]
    assert _cuts(BIKES, 31, 76) == []  # a single shot with a pan: no cut
    assert _cuts(COCKATOO, 130, 180) == []  # the most agitated stretch of a one-shot clip
