"""`VideoWriter`: RGB frames with exact timestamps into a video file, atomically.

The stream's time base is the caller's and every frame keeps the pts it is given, so variable frame rates
survive (a container may store them on its own clock: Matroska in milliseconds, MP4 on a multiple of the time
base; `finalize` restores the exact values). RGB (uint8, or uint16 for more than 8 bits per sample) is converted
to YCbCr with the colour's matrix and range and the stream is tagged with all four colour fields, so players show
what the decoder saw; HDR10 static metadata (mastering display, content light level) is written into the
bitstream by libx264/libx265 (`hdr_carried` says whether this encoder can). The file is written
under a temporary name in the same folder and renamed onto the target only when the `with` block ends without
an exception; otherwise the temporary file is removed and nothing appears at the target.
"""
from __future__ import annotations

import os
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Optional

import av
import numpy as np

from .colour import RANGES, SWS, ColourInfo, is_rgb_format
from .errors import VideoError, reason

FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".nut": "nut"}


def container_format(path) -> str:
    """FFmpeg muxer name for a file name's extension (VideoError for others)."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise VideoError(f"{os.fspath(path)}: unsupported container {ext or '(no extension)'}: "
                         f"use one of {', '.join(sorted(FORMATS))}")
    return FORMATS[ext]


def temp_path(path) -> Path:
    """`.<name>.tmp-<pid>` next to `path`: same file system, so the final rename is atomic."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp-{os.getpid()}")


def muxer_options(fmt: str) -> dict[str, str]:
    # the index up front: outputs start playing before they are fully downloaded
    return {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}


def chroma_shift(pix_fmt: str) -> tuple[int, int]:
    """(log2 horizontal, log2 vertical) chroma subsampling of a pixel format."""
    comps = av.VideoFormat(pix_fmt, 4, 4).components
    if len(comps) < 3 or not comps[1].is_chroma:
        return 0, 0
    return (4 // comps[1].width).bit_length() - 1, (4 // comps[1].height).bit_length() - 1


def _output_colour(colour: ColourInfo, pix_fmt: str, width: int, height: int) -> ColourInfo:
    """The colour to encode with: an RGB source's colour gets a YCbCr matrix for a YCbCr pixel format (BT.709
    for HD, BT.601 for SD, limited range); an RGB pixel format needs none."""
    if is_rgb_format(pix_fmt):
        return replace(colour, matrix="rgb", range="pc")
    if colour.matrix == "rgb":
        hd = width >= 1280 or height > 576
        return replace(colour, matrix="bt709" if hd else "smpte170m", range="tv")
    return colour


class VideoWriter:
    """Context manager: `with VideoWriter(path, w, h, tb) as w: w.write(rgb, pts)`.

    codec: libx264 (default), libx265, ffv1 (lossless, for intermediate parts) or another PyAV encoder;
    pix_fmt: yuv420p, yuv444p, yuv420p10le, ... (4:2:0 needs even sizes; ffv1 with bgr0 stores RGB exactly);
    colour: matrix, range and tags of the output (None: BT.709 limited range; an RGB source's colour gets a
    YCbCr matrix by frame size); threads: encoder threads (0: automatic); rate: nominal frame rate for the
    encoder's rate control (None: 1/time_base when that is a plausible rate, else 25)."""

    def __init__(self, path, width: int, height: int, time_base: Fraction, codec: str = "libx264", crf: int = 18,
                 preset: str = "medium", pix_fmt: str = "yuv420p", colour: Optional[ColourInfo] = None,
                 threads: int = 0, rate: Optional[Fraction | float] = None):
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.time_base = Fraction(time_base)
        self.colour = _output_colour(colour or ColourInfo(), pix_fmt, int(width), int(height))
        self.pix_fmt = pix_fmt
        self.frames = 0
        self._last_pts: Optional[int] = None
        self._closed = False
        fmt = container_format(self.path)
        if self.width < 1 or self.height < 1:
            raise VideoError(f"{self.path}: invalid frame size {self.width}x{self.height}")
        try:
            enc = av.Codec(codec, "w")
        except Exception:
            raise VideoError(f"encoder {codec!r} is not available in this PyAV build") from None
        if enc.type != "video":
            raise VideoError(f"{codec!r} is not a video encoder")
        try:
            sx, sy = chroma_shift(pix_fmt)
        except Exception:
            raise VideoError(f"unknown pixel format {pix_fmt!r}") from None
        if enc.video_formats and pix_fmt not in {f.name for f in enc.video_formats}:
            raise VideoError(f"encoder {codec} cannot write pixel format {pix_fmt}")
        if (sx and self.width % 2) or (sy and self.height % 2):
            raise VideoError(f"{pix_fmt} needs an even frame size, got {self.width}x{self.height} "
                             f"(use yuv444p or an even size)")
        if self.colour.matrix not in SWS and self.colour.matrix != "rgb":
            raise VideoError(f"cannot encode with colour matrix {self.colour.matrix!r}")
        if not self.path.parent.is_dir():
            raise VideoError(f"{self.path}: output folder does not exist")
        self.tmp = temp_path(self.path)
        if rate is None:
            inv = 1 / self.time_base
            rate = inv if 1 <= inv <= 240 else Fraction(25)
        try:
            self.container = av.open(str(self.tmp), "w", format=fmt, options=muxer_options(fmt))
        except Exception as e:
            _unlink(self.tmp)
            raise VideoError(f"cannot write {self.path}: {reason(e)}") from None
        try:
            opts: dict[str, str] = {}
            if codec in ("libx264", "libx265"):
                opts = {"crf": str(crf), "preset": str(preset)}
                params = _hdr_params(codec, self.colour)
                if codec == "libx265":
                    params = ["log-level=error"] + params
                if params:
                    opts["x265-params" if codec == "libx265" else "x264-params"] = ":".join(params)
            elif codec == "ffv1":
                opts = {"level": "3", "slicecrc": "1"}
            s = self.container.add_stream(codec, rate=Fraction(rate).limit_denominator(1001000), options=opts)
            s.width, s.height, s.pix_fmt = self.width, self.height, pix_fmt
            s.time_base = self.time_base
            cc = s.codec_context
            cc.time_base = self.time_base
            if codec == "ffv1":
                cc.gop_size = 1  # every frame a keyframe: exact seeking in intermediate parts
            if threads:
                cc.thread_count = int(threads)
            for k, v in self.colour.codes().items():
                setattr(cc, k, v)
            self.stream = s
        except Exception as e:
            self.abort()
            raise VideoError(f"cannot set up the {codec} encoder for {self.path}: {reason(e)}") from None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    @property
    def hdr_carried(self) -> bool:
        """Whether the source's HDR static metadata (if any) goes into this encoder's bitstream."""
        return self.stream.codec_context.name in ("libx264", "libx265")

    def write(self, frame: np.ndarray, pts: int) -> None:
        """Encode one RGB frame (H, W, 3), uint8 or uint16 (0..65535), shown at `pts` (time_base units,
        increasing)."""
        if self._closed:
            raise VideoError(f"{self.path}: write after close")
        if frame.dtype not in (np.uint8, np.uint16) or frame.shape != (self.height, self.width, 3):
            raise VideoError(f"frame must be uint8 or uint16 {self.height}x{self.width}x3 RGB, got "
                             f"{frame.dtype} {'x'.join(map(str, frame.shape))}")
        pts = int(pts)
        if self._last_pts is not None and pts <= self._last_pts:
            raise VideoError(f"{self.path}: frame pts {pts} is not after the previous {self._last_pts}")
        try:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame),
                                            format="rgb48le" if frame.dtype == np.uint16 else "rgb24")
            c = self.colour
            if c.matrix == "rgb":
                vf = vf.reformat(format=self.pix_fmt)
            else:
                vf = vf.reformat(format=self.pix_fmt, dst_colorspace=SWS[c.matrix],
                                 dst_color_range=RANGES[c.range])
            codes = c.codes()
            vf.color_primaries, vf.color_trc = codes["color_primaries"], codes["color_trc"]
            vf.pts = pts
            vf.time_base = self.time_base
            for pkt in self.stream.encode(vf):
                self.container.mux(pkt)
        except Exception as e:
            raise VideoError(f"encoding frame {self.frames} of {self.path} failed: {reason(e)}") from None
        self._last_pts = pts
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder, close the file and rename it into place (VideoError, and no file, on failure)."""
        if self._closed:
            return
        try:
            for pkt in self.stream.encode(None):
                self.container.mux(pkt)
            self.container.close()
            self._closed = True
            os.replace(self.tmp, self.path)
        except Exception as e:
            self.abort()
            raise VideoError(f"cannot write {self.path}: {reason(e)}") from None

    def abort(self) -> None:
        """Drop everything written so far: close quietly and remove the temporary file."""
        self._closed = True
        try:
            self.container.close()
        except Exception:
            pass
        _unlink(self.tmp)


def _hdr_params(codec: str, colour: ColourInfo) -> list[str]:
    """x264/x265 parameters that write the source's mastering display and content light level SEI."""
    md, cll = colour.mastering_display(), colour.light
    out = []
    if md:
        out.append(("master-display=" if codec == "libx265" else "mastering-display=") + md)
    if cll and any(cll):
        out.append(("max-cll=" if codec == "libx265" else "cll=") + f"{cll[0]},{cll[1]}")
    return out


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
