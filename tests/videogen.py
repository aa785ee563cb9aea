"""Test videos made with PyAV directly (not with the code under test), from real images in ../shared/data.

Every maker writes into a folder the test gives (pytest's tmp_path) and returns the path (and what the test needs
to know about the clip). Frames are small so that a whole suite of clips takes a second or two to make.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

import av
import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGES = SHARED / "images" / "train_hr"
VIDEOS = SHARED / "video"


def image(index: int) -> np.ndarray:
    """RGB training image number `index` (sorted file names)."""
    files = sorted(IMAGES.glob("*.png"))
    return cv2.cvtColor(cv2.imread(str(files[index % len(files)]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def pan_frames(n: int, width: int, height: int, index: int = 0, step: int = 3) -> list[np.ndarray]:
    """n frames panning diagonally across a real image (a 2x window, downscaled): real texture, real motion."""
    img = image(index)
    cw, ch = min(img.shape[1] - 1, width * 2), min(img.shape[0] - 1, height * 2)
    out = []
    for i in range(n):
        x = (i * step) % max(1, img.shape[1] - cw)
        y = (i * step // 2) % max(1, img.shape[0] - ch)
        out.append(cv2.resize(img[y:y + ch, x:x + cw], (width, height), interpolation=cv2.INTER_AREA))
    return out


def tone(seconds: float, rate: int = 48000, channels: int = 1) -> np.ndarray:
    """A 440 Hz tone (float32, planar: channels x samples)."""
    t = np.arange(int(round(seconds * rate))) / rate
    return np.repeat((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], channels, axis=0)


def mux_tone(container, stream, seconds: float) -> None:
    """Encode a mono 48 kHz tone of `seconds` into an audio `stream` of `container` and flush the encoder."""
    samples = tone(seconds)
    fs = stream.codec_context.frame_size or 1024
    for k in range(0, samples.shape[1], fs):
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, k:k + fs]), format="fltp", layout="mono")
        af.sample_rate, af.pts, af.time_base = 48000, k, Fraction(1, 48000)
        for p in stream.encode(af):
            container.mux(p)
    for p in stream.encode():
        container.mux(p)


def write_video(path, frames: Sequence[np.ndarray], pts: Optional[Sequence[int]] = None,
                time_base: Fraction = Fraction(1, 25), codec: str = "libx264", pix_fmt: str = "yuv420p",
                options: Optional[dict] = None, rotation: Optional[int] = None, colour: Optional[dict] = None,
                yuv_planes: Optional[Sequence[Sequence[np.ndarray]]] = None, audio: Optional[str] = None,
                audio_language: str = "eng", subtitles: Optional[list[tuple[float, float, str]]] = None,
                subtitle_codec: Optional[str] = None, subtitle_language: str = "fra",
                container_options: Optional[dict] = None, sar: Optional[Fraction] = None,
                field_order: Optional[int] = None) -> Path:
    """A clip of RGB `frames` (or exact `yuv_planes` per frame) shown at `pts` (time_base units; default
    0, 1, 2, ... on a 1/rate clock). rotation: clockwise display rotation in degrees (display matrix);
    colour: AVCOL_* codes for colorspace/color_range/color_primaries/color_trc; audio: an encoder name for a
    tone as long as the video; subtitles: (start s, end s, text) cues; sar: sample aspect ratio; field_order:
    AVFieldOrder code of the stream (2: top field first)."""
    path = Path(path)
    n = len(yuv_planes) if yuv_planes is not None else len(frames)
    pts = list(range(n)) if pts is None else list(pts)
    h, w = (yuv_planes[0][0].shape if yuv_planes is not None else frames[0].shape[:2])
    rate = Fraction(1, 1) / time_base if (1 / time_base) <= 240 else Fraction(30)
    with av.open(str(path), "w", options=container_options or {}) as c:
        vs = c.add_stream(codec, rate=rate, options=options or {})
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        vs.time_base = time_base
        vs.codec_context.time_base = time_base
        for k, v in (colour or {}).items():
            setattr(vs.codec_context, k, v)
        if sar is not None:
            vs.codec_context.sample_aspect_ratio = Fraction(sar)
        if field_order is not None:
            vs.codec_context.field_order = int(field_order)
        if rotation:
            vs.set_display_rotation(-rotation)  # PyAV takes counter-clockwise degrees
        aus = None
        if audio:
            aus = c.add_stream(audio, rate=48000)
            aus.layout = "mono"
            aus.metadata["language"] = audio_language
        ss = None
        if subtitles:
            ss = c.add_stream(subtitle_codec or ("mov_text" if path.suffix in (".mp4", ".mov") else "subrip"))
            ss.metadata["language"] = subtitle_language
            ss.time_base = Fraction(1, 1000)
            from upsr_video.video.mux import ASS_HEADER

            ss.codec_context.subtitle_header = ASS_HEADER
        for i in range(n):
            if yuv_planes is not None:
                f = av.VideoFrame(w, h, pix_fmt)
                for plane, a in zip(f.planes, yuv_planes[i]):
                    dt = np.uint16 if a.dtype == np.uint16 else np.uint8
                    buf = np.frombuffer(plane, dt).reshape(plane.height, plane.line_size // dt().itemsize)
                    buf[:, : a.shape[1]] = a
                for k, v in (colour or {}).items():
                    setattr(f, k, v)
            else:
                f = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
                f = f.reformat(format=pix_fmt)
            f.pts, f.time_base = pts[i], time_base
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if aus is not None:
            last = pts[-1] + (pts[-1] - pts[0]) / max(1, n - 1) if n > 1 else pts[-1] + 1
            mux_tone(c, aus, float((last - pts[0]) * time_base))
        if ss is not None:
            from av.subtitles.subtitle import SubtitleSet

            for t0, t1, text in subtitles:
                ms0, ms1 = int(t0 * 1000), int(t1 * 1000)
                p = ss.codec_context.encode_subtitle(
                    SubtitleSet.create(b"0,0,Default,,0,0,0,," + text.encode(), 0, ms1 - ms0, pts=ms0))
                p.stream, p.time_base = ss, Fraction(1, 1000)
                c.mux(p)
    return path


# -- the clips the tests use ------------------------------------------------------------------------------------
def cfr_clip(folder, n: int = 30, size=(64, 48), audio: bool = True, name: str = "cfr.mp4",
             faststart: bool = False) -> Path:
    """25 fps H.264 (B-frames) panning over a real image, with an AAC tone (language 'eng'). faststart: MP4
    index at the front (a truncated copy still opens and promises all frames)."""
    return write_video(Path(folder) / name, pan_frames(n, *size), time_base=Fraction(1, 12800),
                       pts=[512 * i for i in range(n)], audio="aac" if audio else None,
                       container_options={"movflags": "+faststart"} if faststart else None)


VFR_PTS = [0, 33, 70, 100, 150, 160, 200, 260, 300, 333, 370, 400, 450, 500, 520, 560, 601, 640, 700, 733]


def vfr_clip(folder, name: str = "vfr.mkv") -> Path:
    """Irregular timestamps on a 1/1000 clock (H.264 with B-frames). In Matroska (the default) the stored pts
    are VFR_PTS themselves; MP4 stores them on a finer clock (1/16000)."""
    return write_video(Path(folder) / name, pan_frames(len(VFR_PTS), 64, 48, index=3), pts=VFR_PTS,
                       time_base=Fraction(1, 1000))


def rotated_clip(folder, rotation: int = 90, name: str = "rot.mp4") -> tuple[Path, list[np.ndarray]]:
    """Stored 64x48 with a display rotation (clockwise degrees); returns the path and the stored frames."""
    frames = pan_frames(6, 64, 48, index=5)
    return write_video(Path(folder) / name, frames, rotation=rotation, codec="libx264", pix_fmt="yuv444p",
                       options={"qp": "0"}), frames


def odd_clip(folder, name: str = "odd.mkv") -> tuple[Path, list[np.ndarray]]:
    """131x77 (odd sizes): lossless FFV1 in yuv444p."""
    frames = pan_frames(5, 131, 77, index=7)
    return write_video(Path(folder) / name, frames, codec="ffv1", pix_fmt="yuv444p"), frames


def tenbit_clip(folder, codec: str = "libx264", name: str = "10bit.mp4") -> tuple[Path, list[np.ndarray]]:
    """yuv420p10le (High 10 H.264, or FFV1 in .mkv)."""
    frames = pan_frames(8, 64, 48, index=9)
    opts = {"crf": "4"} if codec == "libx264" else {}
    return write_video(Path(folder) / name, frames, codec=codec, pix_fmt="yuv420p10le", options=opts), frames


def anamorphic_clip(folder, n: int = 4, name: str = "dvd.mp4") -> tuple[Path, list[np.ndarray]]:
    """NTSC DVD widescreen: 720x480 stored with SAR 32:27 (shown 853.3x480, 16:9). Returns the path and the
    pictures as shown (854x480), which were squeezed horizontally to store them."""
    shown = pan_frames(n, 854, 480, index=23, step=8)
    stored = [cv2.resize(f, (720, 480), interpolation=cv2.INTER_AREA) for f in shown]
    return write_video(Path(folder) / name, stored, sar=Fraction(32, 27), options={"crf": "12"}), shown


def interlaced_clip(folder, n: int = 8, name: str = "interlaced.mp4") -> tuple[Path, list[np.ndarray]]:
    """Interlaced H.264 (+ilme+ildct, top field first), 64x48: the top field of frame i is the picture at time
    2i, the bottom field the picture at time 2i+1 (fast pan: a woven frame combs). Returns the path and the
    2n field-time pictures."""
    pics = pan_frames(2 * n, 64, 48, index=27, step=4)
    woven = []
    for i in range(n):
        w = pics[2 * i].copy()
        w[1::2] = pics[2 * i + 1][1::2]
        woven.append(w)
    return write_video(Path(folder) / name, woven, options={"flags": "+ilme+ildct", "crf": "10"},
                       field_order=2), pics


def combing(frame: np.ndarray) -> float:
    """Mean distance of each row from the average of its neighbours (luma-ish): high for a woven interlaced frame."""
    x = np.asarray(frame, np.float64).mean(axis=-1)
    return float(np.abs(x[1:-1] - 0.5 * (x[:-2] + x[2:])).mean())


def audio_only(folder, name: str = "audio.m4a") -> Path:
    path = Path(folder) / name
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=48000)
        s.layout = "mono"
        mux_tone(c, s, 0.5)
    return path


def no_frames_clip(folder, name: str = "noframes.mkv") -> Path:
    """Matroska with a video stream that holds no frame (and an AAC tone, so that the file itself is valid)."""
    path = Path(folder) / name
    with av.open(str(path), "w") as c:
        vs = c.add_stream("ffv1", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv444p"
        s = c.add_stream("aac", rate=48000)
        s.layout = "mono"
        mux_tone(c, s, 0.3)
    return path


def cut_clip(folder, before: int = 12, after: int = 12, name: str = "cut.mp4") -> tuple[Path, int]:
    """Two shots panning over two different real images; returns the path and the index of the cut."""
    frames = pan_frames(before, 64, 48, index=11) + pan_frames(after, 64, 48, index=40)
    return write_video(Path(folder) / name, frames, options={"crf": "18"}), before


def subtitle_clip(folder, name: str = "subs.mp4") -> Path:
    """H.264 + AAC ('eng') + text subtitles ('fra'; mov_text in MP4, SubRip in Matroska)."""
    return write_video(Path(folder) / name, pan_frames(20, 64, 48, index=13), audio="aac",
                       subtitles=[(0.0, 0.3, "Hello"), (0.4, 0.7, "World")])


def pcm_clip(folder, name: str = "pcm.mkv") -> Path:
    """Matroska with PCM audio: an MP4 output cannot copy it (re-encoded to AAC)."""
    return write_video(Path(folder) / name, pan_frames(15, 64, 48, index=17), audio="pcm_s16le",
                       audio_language="deu")


def truncated(src, folder, name: Optional[str] = None) -> Path:
    """The first half of the bytes of `src`."""
    src = Path(src)
    data = src.read_bytes()
    out = Path(folder) / (name or f"trunc{src.suffix}")
    out.write_bytes(data[: len(data) // 2])
    return out


def text_file(folder, name: str = "notes.mp4") -> Path:
    path = Path(folder) / name
    path.write_text("this is not a video\n")
    return path


def colour_patches(width: int = 64, height: int = 32) -> np.ndarray:
    """An RGB test card of 8 colour patches (moderate saturation: no channel clips in BT.601 or BT.709)."""
    cols = np.array([[180, 60, 50], [60, 170, 70], [50, 80, 190], [200, 180, 60],
                     [70, 180, 190], [128, 128, 128], [30, 30, 30], [225, 225, 225]], np.uint8)
    pw = width // len(cols)
    img = np.zeros((height, width, 3), np.uint8)
    for i, c in enumerate(cols):
        img[:, i * pw:(i + 1) * pw] = c
    return img


def colour_clip(folder, matrix: str, range_: str = "tv", tagged: bool = True, size=(64, 32),
                name: Optional[str] = None) -> tuple[Path, np.ndarray]:
    """The patch card converted to YCbCr with `matrix`/`range_` by numpy (the reference conversion) and stored
    losslessly (FFV1 yuv444p), tagged with that matrix and range or untagged. Returns path and RGB card."""
    from upsr_video.video.colour import MATRICES, PRIMARIES, RANGES, TRANSFERS, ColourInfo, rgb_to_yuv

    rgb = colour_patches(*size)
    yuv = np.round(rgb_to_yuv(rgb, ColourInfo(matrix, range_))).clip(0, 255).astype(np.uint8)
    planes = [yuv[..., k] for k in range(3)]
    tags = {"colorspace": MATRICES[matrix], "color_range": RANGES[range_],
            "color_primaries": PRIMARIES.get(matrix, 2), "color_trc": TRANSFERS.get(matrix, 2)} if tagged else {}
    path = Path(folder) / (name or f"colour_{matrix}_{range_}_{'t' if tagged else 'u'}_{size[0]}.mkv")
    return write_video(path, [], yuv_planes=[planes, planes], codec="ffv1", pix_fmt="yuv444p", colour=tags), rgb


def restamped(src, folder, name: str = "samepts.mkv", value: Optional[int] = 0) -> Path:
    """A copy of `src` (packets as they are) whose video packets all carry the timestamp `value` (None: no
    timestamps at all, in a raw .h264 elementary stream); other streams keep theirs. Matroska keeps the declared
    frame rate (DefaultDuration) of the original's stream."""
    out = Path(folder) / name
    with av.open(str(src)) as i, av.open(str(out), "w") as o:
        v = i.streams.video[0]
        ov = o.add_stream_from_template(v, rate=v.average_rate)
        others = {s.index: o.add_stream_from_template(s) for s in i.streams if s.type == "audio" and value is not None}
        for k, s in others.items():
            s.metadata["language"] = i.streams[k].metadata.get("language", "und")
        for p in i.demux():
            if p.size == 0 or p.dts is None and p.pts is None:
                continue
            if p.stream.index == v.index:
                p.pts = p.dts = value
                p.stream = ov
            elif p.stream.index in others:
                p.stream = others[p.stream.index]
            else:
                continue
            o.mux(p)
    return out


def font_file() -> Path:
    """A real TrueType font (matplotlib ships it) to attach to a Matroska file."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "cmex10.ttf"


CHAPTERS = [(0, 200, "Opening"), (200, 400, "Ending")]  # milliseconds, title


def rich_mkv(folder, name: str = "rich.mkv") -> Path:
    """Matroska as from a disc rip: H.264 video, AAC 'eng' ("Main", default) and PCM 'deu' ("Kommentar",
    comment) audio, SubRip 'fra' ("Français") and ASS 'jpn' ("Signs", forced) subtitles, the ASS script's font
    attached (cmex10.ttf), two chapters and a container title. 10 frames of 64x48 at 25 fps."""
    from av.stream import Disposition
    from av.subtitles.subtitle import SubtitleSet

    from upsr_video.video.mux import ASS_HEADER

    path = Path(folder) / name
    header = ASS_HEADER.replace(b"Style: Default,Arial,", b"Style: Default,cmex10,")
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        auds = []
        for codec, lang, title, disp in (("aac", "eng", "Main", Disposition.default),
                                         ("pcm_s16le", "deu", "Kommentar", Disposition.comment)):
            a = c.add_stream(codec, rate=48000)
            a.layout = "mono"
            a.metadata["language"], a.metadata["title"] = lang, title
            a.disposition = disp
            auds.append(a)
        subs = []
        for codec, lang, title, disp in (("subrip", "fra", "Français", Disposition(0)),
                                         ("ass", "jpn", "Signs", Disposition.forced)):
            s = c.add_stream(codec)
            s.metadata["language"], s.metadata["title"] = lang, title
            s.disposition = disp
            s.time_base = Fraction(1, 1000)
            s.codec_context.subtitle_header = header
            subs.append(s)
        c.add_attachment(font_file().name, "application/x-truetype-font", font_file().read_bytes())
        c.metadata["title"] = "A rich test file"
        c.set_chapters([{"id": i + 1, "start": a, "end": b, "time_base": Fraction(1, 1000), "metadata": {"title": t}}
                        for i, (a, b, t) in enumerate(CHAPTERS)])
        for i, f in enumerate(pan_frames(10, 64, 48, index=31)):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for p in vs.encode(vf):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        for a in auds:
            mux_tone(c, a, 0.4)
        for s, cues in ((subs[0], [(0, 150, "Bonjour")]), (subs[1], [(100, 300, "{\\fncmex10}Sign")])):
            for ms0, ms1, text in cues:
                p = s.codec_context.encode_subtitle(
                    SubtitleSet.create(b"0,0,Default,,0,0,0,," + text.encode(), 0, ms1 - ms0, pts=ms0))
                p.stream, p.time_base = s, Fraction(1, 1000)
                c.mux(p)
    return path


MASTERING = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"  # BT.2020 / D65, 1000 nits
CONTENT_LIGHT = (1000, 400)  # MaxCLL, MaxFALL


def hdr_clip(folder, n: int = 4, codec: str = "libx265", name: str = "hdr.mkv") -> Path:
    """10-bit HDR10: yuv420p10le, BT.2020 primaries and matrix, PQ (SMPTE 2084) transfer, limited range, with
    mastering display and content light level SEI. Each frame's planes are exact 10-bit ramps (luma 64..940 over
    the frame, chroma ramps the other way) moving a little per frame: far more than 256 levels per channel."""
    w, h = 64, 48
    planes = []
    for i in range(n):
        yy, xx = np.mgrid[0:h, 0:w]
        y = 64 + ((yy * w + xx + 37 * i) % (w * h)) * 876 // (w * h - 1)
        cy, cx = np.mgrid[0:h // 2, 0:w // 2]
        u = 412 + ((cx * (h // 2) + cy + 5 * i) % (w * h // 4)) * 200 // (w * h // 4 - 1)
        v = 612 - ((cy * (w // 2) + cx + 9 * i) % (w * h // 4)) * 200 // (w * h // 4 - 1)
        planes.append([a.astype(np.uint16) for a in (y, u, v)])
    key = "x265-params" if codec == "libx265" else "x264-params"
    md, cll = ("master-display", "max-cll") if codec == "libx265" else ("mastering-display", "cll")
    params = f"{md}={MASTERING}:{cll}={CONTENT_LIGHT[0]},{CONTENT_LIGHT[1]}"
    if codec == "libx265":
        params = "log-level=error:" + params
    return write_video(Path(folder) / name, [], yuv_planes=planes, codec=codec, pix_fmt="yuv420p10le",
                       options={key: params, "crf": "4"},
                       colour={"colorspace": 9, "color_range": 1, "color_primaries": 9, "color_trc": 16})
