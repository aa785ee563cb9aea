"""Real video-codec compression of training crops (H.264, MPEG-4 Part 2, MPEG-2) through PyAV.

Web and archive video reaches users with block, ringing and mosquito artefacts and 4:2:0 chroma; JPEG only
imitates the first. Each LR crop is encoded as a tiny clip with an in-memory codec context (no container) and
decoded back: RGB -> yuv420p (swscale, BT.601 limited range, the conversion a decoder's RGB output inverts) ->
encoder -> decoder -> RGB. With `motion` the crop is encoded after a reference frame shifted by a few pixels,
and the returned frame is the P-frame, which carries the motion-compensated residual artefacts of
inter-coded video. Single-threaded encoders, fixed quantisers: the same inputs give the same bytes.
"""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

CODECS = ("h264", "mpeg4", "mpeg2")
_ENCODERS = {"h264": "libx264", "mpeg4": "mpeg4", "mpeg2": "mpeg2video"}


def _encoder(name: str, width: int, height: int, quality: int):
    ctx = av.CodecContext.create(_ENCODERS[name], "w")
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 25)
    ctx.framerate = Fraction(25, 1)
    ctx.thread_count = 1
    if name == "h264":
        ctx.options = {"crf": str(int(quality)), "preset": "veryfast", "bframes": "0", "threads": "1"}
    else:  # fixed quantiser for the MPEG codecs (qscale 2 = best .. 31 = worst)
        ctx.options = {"qmin": str(int(quality)), "qmax": str(int(quality)), "bf": "0"}
        ctx.bit_rate = 10_000_000
    ctx.open()
    return ctx


def compress(img: np.ndarray, codec: str, quality: int, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """HWC uint8 RGB -> the same picture after an encode/decode round trip (same shape).

    quality: CRF for h264 (0..51), the quantiser for mpeg4/mpeg2 (2..31). shift != (0, 0) encodes a reference
    frame (the picture moved by shift, edge-replicated) first and returns the inter-coded second frame.
    Odd sizes (and sides under 16) are edge-padded for 4:2:0 and cropped back.
    """
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r} (one of {', '.join(CODECS)})")
    h, w = img.shape[:2]
    hh, ww = max(16, h + h % 2), max(16, w + w % 2)  # even, and at least one macroblock
    src = np.pad(img, ((0, hh - h), (0, ww - w), (0, 0)), mode="edge")
    frames = [src]
    if shift != (0, 0):
        dy, dx = shift
        big = np.pad(src, ((abs(dy), abs(dy)), (abs(dx), abs(dx)), (0, 0)), mode="edge")
        ref = big[abs(dy) + dy : abs(dy) + dy + hh, abs(dx) + dx : abs(dx) + dx + ww]
        frames = [np.ascontiguousarray(ref), src]
    enc = _encoder(codec, ww, hh, quality)
    packets = []
    for i, f in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
        vf.pts = i
        packets += enc.encode(vf)
    packets += enc.encode(None)
    dec = av.CodecContext.create({"h264": "h264", "mpeg4": "mpeg4", "mpeg2": "mpeg2video"}[codec], "r")
    dec.thread_count = 1
    out = []
    for p in packets:
        out += dec.decode(p)
    out += dec.decode(None)
    if len(out) != len(frames):
        raise RuntimeError(f"{codec} round trip returned {len(out)} frames for {len(frames)}")
    rgb = out[-1].to_ndarray(format="rgb24")
    return np.ascontiguousarray(rgb[:h, :w])
