"""`iter_frames`: upright RGB frames of a range of a video, in presentation order, in batches.

Decoding is done by decord (`VideoReader.get_batch`, one batch at a time, never the whole video) where its
result is right. decord 0.6 converts to RGB inside its bundled FFmpeg 4.1 with swscale, which honours the
stream's tagged matrix and range (measured on lossless bt709/bt601 x tv/pc test cards: within 1 level for
4:4:4, within 2 for 4:2:0) but assumes BT.601 limited range for a stream that states nothing. Where that differs
from the colour `probe` resolved (an untagged HD stream is BT.709), a 3x3 correction afterwards cannot undo the
channels decord already clipped to 0..255 (measured: up to 35 levels wrong on saturated colours), so those
streams are decoded with PyAV, converting with the resolved matrix and range and accurate rounding. PyAV is also
used, with the same output contract, where decord's result cannot be trusted: more than 8 bits per sample
(decord's conversion is biased ~2 levels dark there; PyAV's accurate path is exact on the card), rotated videos
(decord 0.6 applies an MP4 rotation itself and returns a wrongly shaped array for 90/270 degrees, and ignores
it in Matroska), frame counts that disagree with `probe`, and decord errors (from the failing batch on).
Fewer decodable frames than `probe` counted raise VideoError: frames are never dropped silently.
"""
from __future__ import annotations

import os
import threading
from typing import Iterator, Optional

import av
import numpy as np

from av.video.reformatter import Interpolation

from .colour import KR_KB, RANGES, SWS, is_rgb_format
from .errors import VideoError, reason
from .probe import VideoInfo, probe

Batch = tuple[np.ndarray, list[int]]


def iter_frames(path, start: int = 0, stop: Optional[int] = None, batch_size: int = 8,
                backend: str = "auto", fps=None, deep: bool = False, threads: int = 0) -> Iterator[Batch]:
    """Yield (frames, indices) for frames [start, stop) of `path`: frames a uint8 array (B, H, W, 3) RGB, upright,
    indices the frame numbers (presentation order, matching `probe(path).pts`). stop=None or past the end means
    the end. backend: 'auto' (decord where it is exact, else PyAV), 'decord' or 'pyav'. fps: as for `probe` (a
    stream with missing or all-equal timestamps). deep: frames of a source with more than 8 bits per sample come
    as uint16 RGB (0..65535, the source's levels scaled, no tone mapping) instead of uint8. threads: decoder
    threads (0: the library's choice, all cores)."""
    p = os.fspath(path)
    info = probe(p, fps)
    n = info.num_frames
    stop = n if stop is None else min(int(stop), n)
    start = int(start)
    if start < 0:
        raise VideoError(f"{p}: frame range starts at {start} (< 0)")
    if batch_size < 1:
        raise VideoError(f"batch size must be >= 1, got {batch_size}")
    if start >= stop:
        return
    if backend not in ("auto", "decord", "pyav"):
        raise VideoError(f"unknown decoder backend {backend!r}")
    deep = bool(deep) and info.bit_depth > 8
    use_decord = not deep and (backend == "decord" or (backend == "auto" and decord_is_exact(info)))
    pos = start
    if use_decord:
        for frames, idx in _iter_decord(p, info, start, stop, batch_size, threads):
            if frames is None:  # decord gave up at idx[0]: PyAV carries on from there
                pos = idx[0]
                break
            yield frames, idx
            pos = idx[-1] + 1
        else:
            return
    yield from _iter_pyav(p, info, pos, stop, batch_size, deep, threads)


def decord_is_exact(info: VideoInfo) -> bool:
    """Whether decord's own RGB conversion and geometry equal what `iter_frames` promises for this video."""
    if info.rotation or info.bit_depth > 8 or not info.seekable or info.timestamps != "stream" or info.interlaced:
        return False
    if is_rgb_format(info.pix_fmt):
        return True
    c = info.colour
    matrix = c.matrix if "matrix" in c.tagged and c.matrix in SWS else "smpte170m"
    rng = c.range if "range" in c.tagged else ("pc" if info.pix_fmt.startswith("yuvj") else "tv")
    return KR_KB.get(matrix) == KR_KB.get(c.matrix) and rng == c.range


_DECORD_CACHE: dict = {}  # (path, size, mtime, threads) -> an open VideoReader not in use by anyone
_DECORD_LOCK = threading.Lock()


def _checkout_decord(p: str, threads: int):
    """An open decord reader of `p`: the one a previous range of this process left, else a new one. Opening
    indexes the whole file, so a worker that decodes many ranges of one video opens it once. A reader is
    used by one caller at a time (taken out of the cache while in use); the cache holds one video."""
    import decord

    st = os.stat(p)
    key = (p, st.st_size, st.st_mtime_ns, int(threads))
    with _DECORD_LOCK:
        vr = _DECORD_CACHE.pop(key, None)
    if vr is None:
        decord.logging.set_level(decord.logging.QUIET)
        vr = decord.VideoReader(p, ctx=decord.cpu(0), num_threads=int(threads))
    return key, vr


def _checkin_decord(key, vr) -> None:
    with _DECORD_LOCK:
        _DECORD_CACHE.clear()
        _DECORD_CACHE[key] = vr


def _iter_decord(p: str, info: VideoInfo, start: int, stop: int, bs: int, threads: int = 0) -> Iterator:
    """decord batches; a final (None, [i]) means: decord failed from frame i on."""
    try:
        key, vr = _checkout_decord(p, threads)
        ok = len(vr) == info.num_frames
    except Exception:
        ok = False
    if not ok:
        yield None, [start]
        return
    shape = (info.height, info.width, 3)
    failed = False
    try:
        for a in range(start, stop, bs):
            idx = list(range(a, min(a + bs, stop)))
            try:
                frames = vr.get_batch(idx).asnumpy()
            except Exception:
                frames = None
            if frames is None or frames.shape[1:] != shape or frames.dtype != np.uint8:
                failed = True  # a reader that failed is not kept
                yield None, [a]
                return
            yield frames, idx
    finally:
        if not failed:
            _checkin_decord(key, vr)


def _iter_pyav(p: str, info: VideoInfo, start: int, stop: int, bs: int, deep: bool = False,
               threads: int = 0) -> Iterator[Batch]:
    """PyAV batches: decoded frames (deinterlaced when the stream is interlaced) converted to RGB."""
    frames = _deinterlaced(p, info, start, stop, threads) if info.interlaced else \
        _pyav_frames(p, info, start, stop, threads)
    buf: list[np.ndarray] = []
    idx: list[int] = []
    for frame, i in frames:
        buf.append(to_rgb(frame, info, deep))
        idx.append(i)
        if len(buf) == bs:
            yield _upright(np.stack(buf), info.rotation), idx
            buf, idx = [], []
    if buf:
        yield _upright(np.stack(buf), info.rotation), idx


def _pyav_frames(p: str, info: VideoInfo, start: int, stop: int,
                 threads: int = 0) -> Iterator[tuple["av.VideoFrame", int]]:
    """Decoded frames [start, stop) with their indices, decoding from the keyframe before `start`; frames are
    identified by their timestamps (by decode order where the timestamps were replaced)."""
    if start >= stop:
        return
    index_of = {t: i for i, t in enumerate(info.pts)}
    for attempt in ("seek", "from_start"):
        expect = start
        restart = False
        try:
            with av.open(p, metadata_errors="ignore") as c:
                v = c.streams[info.stream_index]
                v.thread_type = "AUTO"
                v.codec_context.thread_count = int(threads)
                seek = attempt == "seek" and start > 0 and info.seekable
                if attempt == "seek" and not seek:
                    attempt = "from_start"
                if seek:
                    c.seek(info.pts[start], stream=v, backward=True, any_frame=False)
                k = -1
                for frame in c.decode(v):
                    k += 1
                    if seek and k == 0 and frame.is_corrupt:
                        restart = True  # the keyframe does not decode on its own: count from the start
                        break
                    if info.timestamps != "stream":
                        i = k  # replaced timestamps (missing or all equal): frames are known by decode order
                    else:
                        i = index_of.get(frame.pts) if frame.pts is not None else None
                    if i is None:
                        if seek:
                            restart = True  # cannot place frames after a seek: count from the start instead
                            break
                        i = k
                    if i < expect:
                        continue
                    if i > expect:
                        if seek:
                            restart = True  # the seek landed past `start`
                            break
                        raise VideoError(f"{p}: frame {expect} cannot be decoded (truncated or corrupt file)")
                    yield frame, i
                    expect += 1
                    if expect == stop:
                        return
        except VideoError:
            raise
        except Exception as e:
            raise VideoError(f"{p}: decoding failed at frame {expect} ({reason(e)})") from None
        if not restart:
            raise VideoError(f"{p}: only {expect} of {info.num_frames} frames could be decoded "
                             f"(truncated or corrupt file)")
        start = expect  # frames already yielded stay yielded
    raise VideoError(f"{p}: cannot position the decoder at frame {start}")


def iter_thumbnails(path, size: tuple[int, int] = (64, 36), fps=None, threads: int = 0) -> Iterator[np.ndarray]:
    """Every frame of `path` in presentation order as a small uint8 RGB picture (size = (W, H)), scaled by the
    decoder's converter straight from the decoded picture: the cheap pass scene-cut detection needs (no
    full-size RGB frame is made; not rotated or deinterlaced, which cut scores do not need). Raises VideoError
    like `iter_frames` when frames are missing."""
    p = os.fspath(path)
    info = probe(p, fps)
    w, h = int(size[0]), int(size[1])
    for frame, _ in _pyav_frames(p, info, 0, info.num_frames, threads):
        yield frame.reformat(width=w, height=h, format="rgb24", interpolation=Interpolation.AREA).to_ndarray()


def deinterlace_filter() -> str:
    """FFmpeg's bwdif where this build has it, else yadif."""
    from av.filter import filters_available

    return "bwdif" if "bwdif" in filters_available else "yadif"


def _deinterlaced(p: str, info: VideoInfo, start: int, stop: int,
                  threads: int = 0) -> Iterator[tuple["av.VideoFrame", int]]:
    """Frames [start, stop) deinterlaced one frame per frame (bwdif/yadif, mode send_frame). Each output frame
    depends on the frames before and after it only, so frames start-1 and stop are decoded too: a range gives
    exactly the frames of a whole pass. Parity: each frame's own flag where the frames are flagged, else the
    stream's declared field order."""
    from collections import deque

    a, b = max(0, start - 1), min(info.num_frames, stop + 1)
    if info.field_order == "interlaced":
        args = "mode=send_frame:parity=auto:deint=interlaced"
    else:
        args = f"mode=send_frame:parity={info.field_order}:deint=all"
    graph = sink = None
    pending: deque[int] = deque()

    def pulled():
        while pending:
            try:
                out = sink.pull()
            except (BlockingIOError, av.error.BlockingIOError):
                return
            except (EOFError, av.error.EOFError):
                return
            i = pending.popleft()
            if start <= i < stop:
                yield out, i

    for frame, i in _pyav_frames(p, info, a, b, threads):
        if graph is None:
            graph = av.filter.Graph()
            src = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                   time_base=frame.time_base or info.time_base)
            deint = graph.add(deinterlace_filter(), args)
            sink = graph.add("buffersink")
            src.link_to(deint)
            deint.link_to(sink)
            graph.configure()
        graph.push(frame)
        pending.append(i)
        yield from pulled()
    if graph is not None:
        graph.push(None)
        yield from pulled()
    if pending and any(start <= i < stop for i in pending):
        raise VideoError(f"{p}: the deinterlacer returned no frame for frame {pending[0]}")


# swscale's default fast path rounds YCbCr -> RGB 1-2 levels dark; these flags make it exact to +-1
_ACCURATE = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


def to_rgb(frame: "av.VideoFrame", info: VideoInfo, deep: bool = False) -> np.ndarray:
    """uint8 RGB (uint16 with `deep`) of a decoded (not yet rotated) frame, with the probed matrix and range."""
    fmt = "rgb48le" if deep else "rgb24"
    if is_rgb_format(frame.format.name):
        return frame.to_ndarray(format=fmt)
    c = info.colour
    out = frame.reformat(format=fmt, src_colorspace=SWS.get(c.matrix, 5), src_color_range=RANGES[c.range],
                         dst_color_range=RANGES["pc"], interpolation=_ACCURATE)
    return out.to_ndarray()


def _upright(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Turn (B, H, W, 3) stored pictures clockwise by `rotation` degrees, as a player shows them."""
    if not rotation:
        return frames
    return np.ascontiguousarray(np.rot90(frames, k=-(rotation // 90), axes=(1, 2)))
