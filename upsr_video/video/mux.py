"""`finalize`: the video-only part files, concatenated losslessly, plus every other stream of the original.

Parts are remuxed packet by packet (no re-encode). Each packet is matched to its frame of the original by its
time (a part's container may have stored the time on a coarser clock, e.g. Matroska's milliseconds), then
given that frame's exact pts in the original's time base; the parts must cover every frame once, in order.
Decode timestamps are rebuilt for the whole stream from the largest reorder depth of any part, so B-frame
parts join without dts going backwards.

Every other stream of the original (audio, subtitles, further video such as cover art, data, attachments such
as fonts) is copied packet for packet, bit-exact, with its tags (language, title, ...) and disposition, and so
are the chapters and the container's tags. `plan_streams` decides, before any work, what happens to each: a
stream the output container cannot hold is an error under the policy `keep` (the default), is converted under
`convert` where it can be (audio to AAC, text subtitles to mov_text for MP4/MOV, SubRip for Matroska; bitmap
subtitles, data and attachments cannot be) and dropped otherwise, and is dropped under `drop-unsupported`.
No rotation is written (frames are already upright). The
output is written under a temporary name and renamed into place only when complete. The output video stream
gets the original's time base and pts; Matroska outputs store them on its millisecond clock (as any Matroska
file does), MP4/MOV outputs exactly.
"""
from __future__ import annotations

import bisect
import heapq
import io
import itertools
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional

import av

from .errors import VideoError, reason
from .probe import codec_name, probe
from .writer import _unlink, container_format, muxer_options, temp_path

POLICIES = ("keep", "convert", "drop-unsupported")
TEXT_SUBTITLES = {"subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text"}
TEXT_TARGET = {"mp4": "mov_text", "mov": "mov_text", "matroska": "subrip", "webm": "webvtt", "nut": "subrip"}
# a minimal ASS header for text-subtitle encoders when the decoder offers none
ASS_HEADER = (b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\n"
              b"Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, "
              b"Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, "
              b"Alignment, MarginL, MarginR, MarginV, Encoding\nStyle: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,"
              b"0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0\n\n[Events]\n"
              b"Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n")


# stream tags the muxer writes itself (stale once copied) or that no longer apply (frames are upright)
_DERIVED_TAGS = ("duration", "number_of_frames", "number_of_bytes", "bps", "_statistics_", "encoder", "rotate")


def _stream_facts(s) -> dict:
    d = {"index": s.index, "type": s.type, "codec": codec_name(s) if s.type != "attachment" else None,
         "language": s.metadata.get("language"), "title": s.metadata.get("title")}
    if s.type == "attachment":
        d.update(filename=s.metadata.get("filename"), mimetype=s.metadata.get("mimetype"))
    if s.type == "video" and s.disposition & av.stream.Disposition.attached_pic:
        d["attached_pic"] = True
    return d


def _describe(d: dict) -> str:
    what = d.get("filename") if d["type"] == "attachment" else d["codec"]
    lang = f", {d['language']}" if d.get("language") else ""
    return f"stream {d['index']} ({d['type']} {what}{lang})"


_HOLDS: dict = {}


def _copy_problem(fmt: str, s) -> Optional[str]:
    """None when a `fmt` file can hold stream `s` copied as it is (a header written to memory with it), else a
    short reason."""
    key = (fmt, s.type, codec_name(s) if s.type != "attachment" else s.metadata.get("mimetype"))
    if key in _HOLDS:
        return _HOLDS[key]
    problem = None
    try:
        with av.logging.Capture(), av.open(io.BytesIO(), "w", format=fmt) as oc:
            if s.type == "attachment":
                oc.add_attachment("probe.bin", s.metadata.get("mimetype") or "application/octet-stream", b"\0")
            else:
                oc.add_stream_from_template(s)
            oc.start_encoding()
    except Exception as e:
        problem = reason(e) if s.type != "attachment" else "no attachments in this container"
    _HOLDS[key] = problem
    return problem


def _can_convert(fmt: str, s) -> Optional[str]:
    """The codec a stream that cannot be copied into `fmt` would be converted to, or None."""
    if s.type == "audio" and s.codec_context is not None:
        return "aac"
    if s.type == "subtitle" and s.codec_context is not None and s.codec_context.name in TEXT_SUBTITLES:
        return TEXT_TARGET.get(fmt, "subrip")
    return None


def plan_streams(original, out, policy: str = "keep", info=None) -> dict:
    """What `finalize` will do with every stream of `original` for an output named `out` (its container from the
    extension): {"streams": [{index, type, codec, language, title, action, ...}], "chapters": n,
    "container_tags": [...]}; action is upscale (the video), copy, convert (with "to"), drop (with "reason") or
    chapters (an MP4/MOV chapter track: its chapters are copied as chapters).
    Raises VideoError (one line) when, under policy `keep`, the container cannot hold a stream."""
    if policy not in POLICIES:
        raise VideoError(f"--streams must be one of {', '.join(POLICIES)}, got {policy!r}")
    fmt = container_format(out)
    info = info or probe(original)
    p = os.fspath(original)
    plan = []
    try:
        c = av.open(p, metadata_errors="ignore")
    except Exception as e:
        raise VideoError(f"{p}: cannot open ({reason(e)})") from None
    with c:
        for s in c.streams:
            d = _stream_facts(s)
            if s.index == info.stream_index:
                d["action"] = "upscale"
            elif s.type == "data" and int(s.discard) >= int(av.stream.Discard.all) and c.chapters():
                d["action"] = "chapters"  # an MP4/MOV chapter track, hidden by the demuxer: copied as chapters
            elif s.type not in ("audio", "subtitle", "video", "data", "attachment"):
                d.update(action="drop", reason=f"unknown stream type {s.type}")
            else:
                problem = _copy_problem(fmt, s)
                to = _can_convert(fmt, s) if problem else None
                if problem is None:
                    d["action"] = "copy"
                elif policy == "keep":
                    hint = "--streams convert" if to else "--streams drop-unsupported"
                    hint = hint if fmt == "matroska" else f".mkv, or {hint}"
                    raise VideoError(f"{Path(out).name}: {fmt} cannot hold {_describe(d)} of {Path(p).name} "
                                     f"({problem}): use {hint}")
                elif policy == "convert" and to:
                    d.update(action="convert", to=to)
                else:
                    d.update(action="drop", reason=f"{fmt} cannot hold it" + ("" if policy != "convert" else
                                                                             " and it cannot be converted"))
            plan.append(d)
        chapters = len(c.chapters())
        tags = sorted(k for k in c.metadata if not k.lower().startswith(_DERIVED_TAGS))
    return {"streams": plan, "chapters": chapters, "container_tags": tags}


def finalize(parts: list, original, out, overwrite: bool = False, fps=None, streams: str = "keep") -> dict:
    """Concatenate `parts` (in order) into `out` with every other stream, the chapters and the tags of
    `original` (see `plan_streams`; `streams` is the policy). Returns the plan, with "frames" and, per kind,
    "audio"/"subtitles" lists of what was done. Raises VideoError. fps: as for `probe` (an original with missing
    or all-equal timestamps)."""
    out_p = Path(out)
    parts = [os.fspath(p) for p in parts]
    if not parts:
        raise VideoError(f"{out_p}: no parts to finalize")
    if out_p.exists() and not overwrite:
        raise VideoError(f"output exists: {out_p} (use --overwrite)")
    fmt = container_format(out_p)
    if not out_p.parent.is_dir():
        raise VideoError(f"{out_p}: output folder does not exist")
    info = probe(original, fps)
    plan = plan_streams(original, out_p, streams, info)
    for p in parts:
        if not os.path.isfile(p):
            raise VideoError(f"part file missing: {p}")
    order, depth = _scan_parts(parts, info.pts, info.time_base)
    tmp = temp_path(out_p)
    try:
        summary = _write(parts, os.fspath(original), info, order, depth, str(tmp), fmt, plan)
        os.replace(tmp, out_p)
    except VideoError:
        _unlink(tmp)
        raise
    except BaseException as e:
        _unlink(tmp)
        if isinstance(e, Exception):
            raise VideoError(f"cannot write {out_p}: {reason(e)}") from None
        raise
    return summary


def _video_stream(c, path: str):
    if not c.streams.video:
        raise VideoError(f"{path}: part has no video stream")
    return c.streams.video[0]


def _signature(v) -> tuple:
    cc = v.codec_context
    return cc.name, cc.width, cc.height, cc.pix_fmt, bytes(cc.extradata or b"")


def _scan_parts(parts: list[str], pts: list[int], tb: Fraction) -> tuple[list[int], int]:
    """Frame index of every video packet (decode order, all parts) and the largest reorder depth. Checks that
    the parts share one encoding and cover every frame of the original exactly once, in order."""
    order: list[int] = []
    ref = None
    covered = 0
    for path in parts:
        try:
            with av.open(path, metadata_errors="ignore") as c:
                v = _video_stream(c, path)
                sig = _signature(v)
                if ref is None:
                    ref = sig
                elif sig[:4] != ref[:4]:
                    raise VideoError(f"{path}: part encoded as {sig[0]} {sig[1]}x{sig[2]} {sig[3]}, the first "
                                     f"part as {ref[0]} {ref[1]}x{ref[2]} {ref[3]}")
                elif sig[4] != ref[4]:
                    raise VideoError(f"{path}: part encoded with different codec settings than the first part")
                ptb = v.time_base
                mine: list[int] = []
                for pkt in c.demux(v):
                    if pkt.size == 0:
                        continue
                    if pkt.pts is None:
                        raise VideoError(f"{path}: video packet without a timestamp")
                    mine.append(_frame_of(pkt.pts * ptb, pts, tb, ptb, path))
        except VideoError:
            raise
        except Exception as e:
            raise VideoError(f"{path}: unreadable part ({reason(e)})") from None
        if not mine:
            raise VideoError(f"{path}: part has no frames")
        srt = sorted(mine)
        if srt != list(range(covered, covered + len(mine))):
            what = "overlaps earlier parts" if srt[0] < covered else "leaves a gap"
            raise VideoError(f"{path}: part holds frames {srt[0]}..{srt[-1]}, expected from {covered}: it {what}")
        covered += len(mine)
        order.extend(mine)
    if covered != len(pts):
        raise VideoError(f"parts hold {covered} frames, the original has {len(pts)}")
    depth = max(k - j for k, j in enumerate(order))
    return order, max(0, depth)


def _frame_of(t: Fraction, pts: list[int], tb: Fraction, ptb: Fraction, path: str) -> int:
    """Index of the original frame shown at time t (seconds), allowing the part's clock resolution."""
    x = t / tb
    j = bisect.bisect_left(pts, x)
    best = min((i for i in (j - 1, j) if 0 <= i < len(pts)), key=lambda i: abs(pts[i] - x))
    if abs(pts[best] * tb - t) > max(ptb, tb):
        raise VideoError(f"{path}: a frame at {float(t):.4f} s matches no frame of the original")
    return best


def _write(parts: list[str], original: str, info, order: list[int], depth: int, tmp: str, fmt: str,
           plan: dict) -> dict:
    pts, tb = info.pts, info.time_base
    actions = {d["index"]: d for d in plan["streams"]}
    summary: dict = {"frames": len(order), **plan,
                     "audio": [d for d in plan["streams"] if d["type"] == "audio"],
                     "subtitles": [d for d in plan["streams"] if d["type"] == "subtitle"]}
    with av.open(tmp, "w", format=fmt, options=muxer_options(fmt)) as oc, \
            av.open(original, metadata_errors="ignore") as src:
        with av.open(parts[0], metadata_errors="ignore") as p0:
            ov = oc.add_stream_from_template(_video_stream(p0, parts[0]))
        ov.time_base = tb
        _copy_tags(src.streams[info.stream_index], ov)
        for k, v in src.metadata.items():
            if not k.lower().startswith(_DERIVED_TAGS):
                oc.metadata[k] = v
        if plan["chapters"]:
            oc.set_chapters(src.chapters())
        routes = {}
        for s in src.streams:
            d = actions[s.index]
            if d["action"] == "copy" and s.type == "attachment":
                a = oc.add_attachment(s.metadata.get("filename") or f"attachment{s.index}",
                                      s.metadata.get("mimetype") or "application/octet-stream", bytes(s.data))
                d["output_index"] = a.index
            elif d["action"] == "copy":
                out = oc.add_stream_from_template(s)
                _copy_tags(s, out)
                routes[s.index] = ("copy", out)
                d["output_index"] = out.index
            elif d["action"] == "convert":
                routes[s.index] = _convert(oc, s, fmt)
                d["output_index"] = routes[s.index][1].index
            elif d["action"] == "upscale":
                d["output_index"] = ov.index
        seq = itertools.count()
        last_dur = max(1, round((Fraction(info.duration) - (pts[-1] - pts[0]) * tb) / tb))
        video = ((t, next(seq), pkt) for t, pkt in _video_packets(parts, ov, pts, tb, order, depth, last_dur))
        others = ((t, next(seq), pkt) for t, pkt in _other_packets(src, routes))
        written = 0
        for _, _, pkt in heapq.merge(video, others, key=lambda x: (x[0], x[1])):
            oc.mux(pkt)
            written += pkt.stream is ov
    if written != len(pts):
        raise VideoError(f"wrote {written} video frames, expected {len(pts)}")
    return summary


def _copy_tags(src, dst) -> None:
    """The stream's tags (language, title, ...; not those the muxer writes itself) and disposition
    (default/forced/comment/...)."""
    for k, v in src.metadata.items():
        if v and not k.lower().startswith(_DERIVED_TAGS):
            dst.metadata[k] = v
    try:
        dst.disposition = src.disposition
    except Exception:
        pass


def _convert(oc, s, fmt: str) -> tuple:
    """The route of a stream `fmt` cannot hold as it is: ('aac', out, resampler) for audio, ('convert', out) for
    text subtitles (see `_can_convert`)."""
    cc = s.codec_context
    if s.type == "audio":
        out = oc.add_stream("aac", rate=cc.sample_rate if cc.sample_rate in _AAC_RATES else 48000)
        name = cc.layout.name
        out.layout = name if cc.channels <= 8 and not name.endswith("channels") else _LAYOUTS.get(cc.channels, "stereo")
        _copy_tags(s, out)
        res = av.AudioResampler(format="fltp", layout=out.layout, rate=out.rate, frame_size=1024)
        return ("aac", out, res)
    out = oc.add_stream(TEXT_TARGET.get(fmt, "subrip"))
    out.time_base = s.time_base
    try:
        cc.open()
    except Exception:
        pass
    out.codec_context.subtitle_header = cc.subtitle_header or ASS_HEADER
    _copy_tags(s, out)
    return ("convert", out)


_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
_AAC_RATES = {96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}


def _video_packets(parts, ov, pts, tb, order, depth, last_dur) -> Iterator[tuple[float, "av.Packet"]]:
    """The parts' packets with the original's pts, exact durations (to the next frame) and rebuilt dts:
    dts[k] = pts[k] - shift, shift the longest span of `depth` frames, so dts[k] <= pts[k - depth] <= the
    packet's pts, dts strictly increase, and dts steps equal frame durations (MP4 track length = footage)."""
    k = 0
    n = len(pts)
    shift = max((pts[i] - pts[i - depth] for i in range(depth, n)), default=depth) if depth else 0
    for path in parts:
        with av.open(path, metadata_errors="ignore") as c:
            for pkt in c.demux(c.streams.video[0]):
                if pkt.size == 0:
                    continue
                j = order[k]
                pkt.pts = pts[j]
                pkt.dts = pts[k] - shift
                pkt.duration = pts[j + 1] - pts[j] if j + 1 < n else last_dur
                pkt.time_base = tb
                pkt.stream = ov
                yield float(pkt.dts * tb), pkt
                k += 1


def _other_packets(src, routes: dict) -> Iterator[tuple[float, "av.Packet"]]:
    if not routes:
        return
    streams = [src.streams[i] for i in routes]
    last: dict[int, float] = {}

    def timed(pkt, i):
        t = pkt.dts if pkt.dts is not None else pkt.pts
        last[i] = float(t * pkt.time_base) if t is not None else last.get(i, 0.0)
        return last[i], pkt

    for pkt in src.demux(streams):
        i = pkt.stream.index
        route = routes[i]
        if route[0] == "copy":
            if pkt.size and pkt.pts is None and pkt.dts is None and pkt.stream.type == "video":
                pkt.pts = pkt.dts = 0  # an attached picture (cover art): one untimed packet
            if pkt.size == 0 or (pkt.pts is None and pkt.dts is None):
                continue
            if pkt.dts is None:
                pkt.dts = pkt.pts
            pkt.stream = route[1]
            yield timed(pkt, i)
        elif route[0] == "aac":
            if pkt.size:
                for ep in _encode_audio(route, pkt.stream.decode(pkt)):
                    yield timed(ep, i)
        else:
            if pkt.size == 0 or pkt.pts is None:
                continue
            sub = pkt.stream.decode2(pkt)
            if not sub or len(sub) == 0:
                continue  # an "end of display" marker: the converted cue carries its duration
            ep = route[1].codec_context.encode_subtitle(sub)
            ep.pts = ep.dts = pkt.pts
            ep.duration = pkt.duration or int(round(Fraction(sub.end_display_time - sub.start_display_time, 1000)
                                                    / pkt.time_base))
            ep.time_base = pkt.time_base
            ep.stream = route[1]
            yield timed(ep, i)
    for i, route in routes.items():  # drain the decoder, resampler and encoder of re-encoded audio
        if route[0] == "aac":
            for ep in _encode_audio(route, src.streams[i].decode(None), flush=True):
                yield timed(ep, i)


def _encode_audio(route, frames, flush: bool = False):
    _, out, res = route
    for f in list(frames) + ([None] if flush else []):
        for r in res.resample(f):
            yield from out.encode(r)
    if flush:
        yield from out.encode(None)
