"""`probe`: what a video file holds, read once with PyAV so that every later step can be frame-exact.

The frame count and the per-frame timestamps come from the video stream's packets (demuxed, not decoded:
fast), sorted into presentation order, so variable frame rates are kept exactly. One frame is decoded for the
facts only a decoder reports reliably: the display rotation (display-matrix side data) and the colour tags.
A file that cannot be opened, has no video stream or no frames, or is truncated (fewer packets than its header
promises, or a video stream that ends well before its stated duration) raises VideoError.

Broken timestamps: when the video packets carry none (raw elementary streams) or all carry the same one, the
frames are timed at the stream's declared frame rate (or the rate the caller gives, `upscale --fps`) from the
first timestamp on, on a 1/rate clock; `VideoInfo.timestamps` then says so and `timestamp_note` is the one-line
warning to show. Such frames are identified by their decode order, never by their (useless) timestamps.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from typing import Optional

import av

from .colour import ColourInfo, resolve
from .errors import VideoError, reason



@dataclass
class VideoInfo:
    """A video file's facts. width/height describe the frames `iter_frames` returns (upright: the rotation is
    applied), coded_width/coded_height the stored picture. pts[i] is frame i's timestamp in time_base units,
    i in presentation order."""

    path: str
    width: int
    height: int
    coded_width: int
    coded_height: int
    num_frames: int
    pts: list[int]
    time_base: Fraction
    avg_fps: float
    duration: float  # seconds from the first frame's start to the last frame's end
    start_time: float  # seconds, the first frame's timestamp
    rotation: int  # clockwise degrees (0/90/180/270) a player turns the stored picture by
    colour: ColourInfo
    pix_fmt: str
    bit_depth: int
    codec: str
    container: str
    stream_index: int
    seekable: bool = True  # decoding from a keyframe after a seek gives clean frames (see _seek_is_clean)
    sample_aspect_ratio: Optional[Fraction] = None
    has_audio: bool = False
    audio: list[dict] = field(default_factory=list)
    subtitles: list[dict] = field(default_factory=list)
    timestamps: str = "stream"  # "stream" | "declared-rate" | "given-rate" (missing or all-equal pts replaced)
    timestamp_note: Optional[str] = None  # the warning line to show when the timestamps were replaced
    field_order: str = "progressive"  # "progressive" | "tff" | "bff" | "interlaced" (parity per frame, from flags)

    @property
    def interlaced(self) -> bool:
        return self.field_order != "progressive"

    @property
    def display_size(self) -> tuple[Fraction, Fraction]:
        """(W, H) of the upright picture as shown: the stored width stretched by the sample aspect ratio (which
        becomes the height for a 90/270-degree rotation)."""
        sar = self.sample_aspect_ratio if self.sample_aspect_ratio and self.sample_aspect_ratio > 0 else Fraction(1)
        if self.rotation in (90, 270):
            return Fraction(self.width), self.height * sar
        return self.width * sar, Fraction(self.height)

    @property
    def fps(self) -> float:
        return self.avg_fps

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def probe(path, fps=None) -> VideoInfo:
    """Facts of the video at `path` (the first video stream that is not cover art). Raises VideoError.
    fps: the frame rate (number or fraction string) for a stream whose timestamps are missing or all equal,
    instead of its declared rate; valid timestamps are always kept."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise VideoError(f"{p}: not found (no such file)") from None
    except OSError as e:
        raise VideoError(f"{p}: cannot read ({reason(e)})") from None
    if os.path.isdir(p):
        raise VideoError(f"{p}: is a folder, not a video file")
    if st.st_size == 0:
        raise VideoError(f"{p}: empty file")
    info = _probe_cached(os.path.abspath(p), st.st_size, st.st_mtime_ns, None if fps is None else str(fps))
    return replace(info, path=p, pts=list(info.pts), audio=[dict(a) for a in info.audio],
                   subtitles=[dict(s) for s in info.subtitles])


@lru_cache(maxsize=32)
def _probe_cached(path: str, size: int, mtime_ns: int, fps: Optional[str]) -> VideoInfo:
    return _probe(path, fps)


def parse_rate(fps) -> Fraction:
    """A frame rate from a number or a fraction string ('25', '29.97', '30000/1001'); VideoError if not > 0."""
    try:
        r = Fraction(str(fps).strip())
    except (ValueError, ZeroDivisionError):
        raise VideoError(f"--fps must be a number or a fraction like 30000/1001, got {fps!r}") from None
    if not 0 < r <= 1000:
        raise VideoError(f"--fps must be in (0, 1000], got {fps}")
    return r.limit_denominator(1001000)


def _language(stream) -> Optional[str]:
    lang = stream.metadata.get("language")
    return None if lang in (None, "", "und") else lang


def _stream_summary(s) -> dict:
    cc = s.codec_context
    d = {"index": s.index, "codec": codec_name(s), "language": _language(s),
         "title": s.metadata.get("title")}
    if s.type == "audio":
        d.update(channels=cc.channels, sample_rate=cc.sample_rate, layout=cc.layout.name)
        if s.duration and s.time_base:
            d["duration"] = float(s.duration * s.time_base)
    return d


def codec_name(stream) -> str:
    """The codec's FFmpeg name ('mp3', not the decoder's 'mp3float')."""
    try:
        codec = stream.codec_context.codec if stream.codec_context is not None else stream.codec
        return getattr(codec, "canonical_name", None) or codec.name
    except Exception:
        return "unknown"


def _tag_seconds(tag: Optional[str]) -> Optional[float]:
    """Matroska's per-stream DURATION tag ("HH:MM:SS.nnnnnnnnn") in seconds."""
    m = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d*)?)", (tag or "").strip())
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else None


def _rotation(frame, stream) -> int:
    """Clockwise display rotation from the frame's display matrix, or the legacy 'rotate' tag."""
    deg = None
    try:
        ccw = frame.rotation  # counter-clockwise, [-180, 180]
        if ccw:
            deg = -float(ccw)
    except Exception:
        pass
    if deg is None:
        try:
            deg = float(stream.metadata.get("rotate", 0))
        except ValueError:
            deg = 0.0
    return int(round(deg / 90.0)) % 4 * 90


def _open(p: str):
    try:
        return av.open(p, metadata_errors="ignore")
    except EOFError:  # a container header and nothing after it
        raise VideoError(f"{p}: no video frames: the file ends before its first frame (empty or truncated)") \
            from None
    except Exception as e:  # PyAV raises FFmpegError subclasses, OSError and ValueError alike
        raise VideoError(f"{p}: cannot open: not a video file, or truncated/corrupt ({reason(e)})") from None


def _probe(p: str, fps: Optional[str] = None) -> VideoInfo:
    with _open(p) as c:
        vs = [s for s in c.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
        if not vs:
            kind = "audio-only file" if c.streams.audio else "file without a video stream"
            raise VideoError(f"{p}: not a video ({kind})")
        v = vs[0]
        if v.codec_context is None:
            raise VideoError(f"{p}: video codec {v.codec.name if v.codec else '?'} is not supported")
        v.thread_type = "AUTO"
        tb = v.time_base or Fraction(1, 90000)
        pts: list[int] = []
        no_pts = discarded = 0
        keys: list[int] = []  # pts of keyframe packets
        max_pts, last_dur = None, 0  # the last shown frame's packet duration, when the container gives one
        first = None
        try:
            for pkt in c.demux(v):
                if pkt.size == 0:
                    continue
                if pkt.is_corrupt:
                    raise VideoError(f"{p}: corrupt video packet at frame {len(pts) + no_pts} (truncated file?)")
                if first is None:
                    try:
                        frames = v.decode(pkt)
                    except av.FFmpegError:
                        frames = []
                    first = frames[0] if frames else None
                if pkt.is_discard:  # before the start of an edit list: decoded for references, never shown
                    discarded += 1
                elif pkt.pts is None:
                    no_pts += 1
                else:
                    pts.append(int(pkt.pts))
                    if pkt.is_keyframe:
                        keys.append(int(pkt.pts))
                    if max_pts is None or pkt.pts > max_pts:
                        max_pts, last_dur = int(pkt.pts), int(pkt.duration or 0)
            if first is None and (pts or no_pts):
                try:
                    frames = v.decode(None)
                    first = frames[0] if frames else None
                except av.FFmpegError:
                    first = None
        except VideoError:
            raise
        except Exception as e:
            raise VideoError(f"{p}: truncated or corrupt video ({reason(e)})") from None
        declared = v.guessed_rate or v.average_rate
        raw_pts: list = _decoded_pts(p, v.index) if no_pts else pts  # no packet timestamps: ask the decoder
        n = len(raw_pts)
        if n == 0:
            raise VideoError(f"{p}: the video stream has no frames")
        if first is None:
            raise VideoError(f"{p}: no frame of the video stream can be decoded (corrupt file?)")
        timestamps, note = "stream", None
        broken = ("missing" if any(t is None for t in raw_pts)
                  else "all equal" if n > 1 and len(set(raw_pts)) == 1 else None)
        if broken:
            if fps is not None:
                rate, timestamps, src = parse_rate(fps), "given-rate", "the given"
            elif declared and 0 < declared <= 1000:
                rate, timestamps, src = Fraction(declared).limit_denominator(1001000), "declared-rate", "its declared"
            else:
                raise VideoError(f"{p}: the video timestamps are {broken} and no frame rate is declared: "
                                 f"give one with --fps")
            known = [t for t in raw_pts if t is not None]
            t0 = known[0] * tb if known else Fraction(0)
            tb = 1 / rate
            pts = [round(t0 / tb) + i for i in range(n)]
            shown = f"{float(rate):.6g}"
            note = f"{p}: video timestamps are {broken}; frames timed at {src} rate of {shown} fps"
            last_dur = 0  # on the old clock, and as unreliable as the timestamps
        else:
            pts = list(raw_pts)
        pts.sort()
        if len(set(pts)) != n:
            raise VideoError(f"{p}: the video stream has frames with equal timestamps; cannot order them")
        if v.frames and n + discarded < v.frames:
            raise VideoError(f"{p}: truncated video: {n + discarded} of {v.frames} frames are present")
        span = (pts[-1] - pts[0]) * tb
        rate = v.average_rate or v.guessed_rate
        if n >= 2 and span > 0:
            mean_dur = span / (n - 1)
        else:
            mean_dur = 1 / Fraction(rate) if rate else Fraction(0)
        avg_fps = float(1 / mean_dur) if mean_dur else 0.0
        frame_dur = last_dur * tb if last_dur > 0 else mean_dur
        duration = float((pts[-1] - pts[0]) * tb + frame_dur)
        stated = _tag_seconds(v.metadata.get("DURATION"))
        end = float(pts[-1] * tb + frame_dur)
        if stated is not None and avg_fps > 0 and stated - end > 2.5 / avg_fps + 0.05:
            raise VideoError(f"{p}: truncated video: frames end at {end:.2f} s of {stated:.2f} s")

        cw, ch = first.width, first.height
        rot = _rotation(first, v)
        w, h = (ch, cw) if rot in (90, 270) else (cw, ch)
        fmt = first.format.name
        colour = replace(resolve(cw, ch, fmt, first.colorspace, first.color_range, first.color_primaries,
                                 first.color_trc), **_hdr_side_data(first))
        try:
            depth = max(comp.bits for comp in av.VideoFormat(fmt).components)
        except Exception:
            depth = 8
        audio = [_stream_summary(s) for s in c.streams.audio]
        subs = [_stream_summary(s) for s in c.streams.subtitles]
        sar = v.sample_aspect_ratio or v.codec_context.sample_aspect_ratio
        field_order = _field_order(first, v)
        seekable = _seek_is_clean(p, v.index, sorted(keys))
        return VideoInfo(
            path=p, width=w, height=h, coded_width=cw, coded_height=ch, num_frames=n, pts=pts, time_base=tb,
            avg_fps=avg_fps, duration=duration, start_time=float(pts[0] * tb), rotation=rot, colour=colour,
            pix_fmt=fmt, bit_depth=depth, codec=codec_name(v), container=c.format.name,
            stream_index=v.index, seekable=seekable and timestamps == "stream",
            sample_aspect_ratio=Fraction(sar) if sar else None, has_audio=bool(audio), audio=audio, subtitles=subs,
            timestamps=timestamps, timestamp_note=note, field_order=field_order)


def part_frames(path) -> Optional[int]:
    """Frames in a finished part file; None when it cannot be read."""
    try:
        return int(probe(path).num_frames)
    except Exception:
        return None


def _hdr_side_data(frame) -> dict:
    """Mastering display and content light level side data of a decoded frame (HDR10 static metadata)."""
    import struct

    out: dict = {}
    try:
        for sd in frame.side_data:
            b = bytes(sd)
            if sd.type.name == "MASTERING_DISPLAY_METADATA" and len(b) >= 88:
                out["mastering"] = struct.unpack("<22i", b[:88])
            elif sd.type.name == "CONTENT_LIGHT_LEVEL" and len(b) >= 8:
                out["light"] = struct.unpack("<2I", b[:8])
    except Exception:
        pass
    return out


# AVFieldOrder: 1 progressive; coded/displayed first: 2 TT, 3 BB, 4 TB (bottom shown first), 5 BT (top shown first)
_FIELD_ORDERS = {2: "tff", 3: "bff", 4: "bff", 5: "tff"}


def _field_order(frame, stream) -> str:
    """How the picture is scanned: 'interlaced' when the decoded frames say so themselves (the deinterlacer
    then takes each frame's own parity), else the stream's declared field order, else 'progressive'."""
    try:
        if frame.interlaced_frame:
            return "interlaced"
    except Exception:
        pass
    try:
        return _FIELD_ORDERS.get(int(stream.codec_context.field_order or 0), "progressive")
    except Exception:
        return "progressive"


def _seek_is_clean(p: str, index: int, keys: list[int]) -> bool:
    """Whether decoding from a keyframe after a seek is clean (its first frame not flagged corrupt). Some files
    are not: in cockatoo.mp4 the IDR frames at 76 and 145 decode to garbage after a seek in PyAV and decord
    alike ('gray chroma', corrupt frames), though fine when decoded from the start. Such files are decoded from
    the start, never by seeking."""
    later = [k for k in keys if k > keys[0]] if keys else []
    if not later:
        return True
    target = later[len(later) // 2]
    try:
        with av.open(p, metadata_errors="ignore") as c:
            v = c.streams[index]
            c.seek(target, stream=v, backward=True, any_frame=False)
            for f in c.decode(v):
                return not f.is_corrupt
    except Exception:
        return False
    return False


def _decoded_pts(p: str, index: int) -> list[Optional[int]]:
    """Frame timestamps from a full decode, for streams whose packets carry none (None where a frame has none)."""
    out: list[Optional[int]] = []
    with _open(p) as c:
        v = c.streams[index]
        v.thread_type = "AUTO"
        try:
            for f in c.decode(v):
                out.append(int(f.pts) if f.pts is not None else None)
        except Exception as e:
            raise VideoError(f"{p}: truncated or corrupt video ({reason(e)})") from None
    return out
