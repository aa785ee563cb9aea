"""Colour metadata (matrix, range, primaries, transfer): what a stream states, the defaults where it does not.

Names are FFmpeg's (`bt709`, `smpte170m`, `tv`/`pc`, ...). A stream that states nothing gets the defaults players
use: BT.709 for HD (width >= 1280 or height > 576), BT.601 for SD (bt470bg for 576/288-line PAL sizes,
smpte170m otherwise), limited ('tv') range except for the full-range `yuvj*` formats. Frames are decoded to
RGB with the resolved matrix and range and encoded back with the same, so an upscale keeps the picture's
colours and its tags. `rgb_to_yuv`/`yuv_to_rgb` are the textbook conversions, the tests' reference.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

MATRICES = {"rgb": 0, "bt709": 1, "unknown": 2, "fcc": 4, "bt470bg": 5, "smpte170m": 6, "smpte240m": 7,
            "ycgco": 8, "bt2020nc": 9, "bt2020c": 10}
RANGES = {"unknown": 0, "tv": 1, "pc": 2}
PRIMARIES = {"bt709": 1, "unknown": 2, "bt470m": 4, "bt470bg": 5, "smpte170m": 6, "smpte240m": 7, "film": 8,
             "bt2020": 9, "smpte428": 10, "smpte431": 11, "smpte432": 12, "ebu3213": 22}
TRANSFERS = {"bt709": 1, "unknown": 2, "gamma22": 4, "gamma28": 5, "smpte170m": 6, "smpte240m": 7, "linear": 8,
             "log100": 9, "log316": 10, "iec61966-2-4": 11, "bt1361e": 12, "iec61966-2-1": 13, "bt2020-10": 14,
             "bt2020-12": 15, "smpte2084": 16, "smpte428": 17, "arib-std-b67": 18}

# luma weights (Kr, Kb) of the YCbCr matrices; bt2020c (constant luminance) is approximated by its nc matrix
KR_KB = {"bt709": (0.2126, 0.0722), "fcc": (0.30, 0.11), "bt470bg": (0.299, 0.114), "smpte170m": (0.299, 0.114),
         "smpte240m": (0.212, 0.087), "bt2020nc": (0.2627, 0.0593), "bt2020c": (0.2627, 0.0593)}
# swscale's SWS_CS_* constants (what PyAV's reformat takes) for each matrix it implements
SWS = {"bt709": 1, "fcc": 4, "bt470bg": 5, "smpte170m": 5, "smpte240m": 7, "bt2020nc": 9, "bt2020c": 9}


def _name(table: dict[str, int], code: Optional[int]) -> str:
    for k, v in table.items():
        if v == code:
            return k
    return "unknown"


@dataclass(frozen=True)
class ColourInfo:
    """How a stream's samples map to colours. `tagged` names the fields the stream stated itself (the others are
    the defaults above), so a decoder that guesses differently can be corrected."""

    matrix: str = "bt709"
    range: str = "tv"
    primaries: str = "bt709"
    transfer: str = "bt709"
    tagged: tuple[str, ...] = ()
    # HDR static metadata as the decoder exports it: AVMasteringDisplayMetadata as 22 int32 (R, G, B, white
    # point x/y and min/max luminance as num/den pairs, has_primaries, has_luminance) and (MaxCLL, MaxFALL)
    mastering: Optional[tuple[int, ...]] = None
    light: Optional[tuple[int, int]] = None

    def mastering_display(self) -> Optional[str]:
        """The x264/x265 `G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)` string (0.00002 / 0.0001 cd/m2 units)."""
        m = self.mastering
        if not m or len(m) < 22 or not (m[20] and m[21]) or any(m[k] == 0 for k in range(1, 20, 2)):
            return None
        c = [round(m[k] / m[k + 1] * 50000) for k in range(0, 16, 2)]  # R, G, B, WP (x, y)
        lo, hi = (round(m[k] / m[k + 1] * 10000) for k in (16, 18))
        return f"G({c[2]},{c[3]})B({c[4]},{c[5]})R({c[0]},{c[1]})WP({c[6]},{c[7]})L({hi},{lo})"

    def codes(self) -> dict[str, int]:
        """AVCOL_* values for a codec context or frame."""
        return {"colorspace": MATRICES.get(self.matrix, 2), "color_range": RANGES.get(self.range, 0),
                "color_primaries": PRIMARIES.get(self.primaries, 2), "color_trc": TRANSFERS.get(self.transfer, 2)}


def is_rgb_format(pix_fmt: str) -> bool:
    return pix_fmt.startswith(("gbr", "rgb", "bgr", "argb", "abgr", "0rgb", "0bgr", "x2rgb", "x2bgr", "pal8"))


def resolve(width: int, height: int, pix_fmt: str, matrix: Optional[int] = None, range_: Optional[int] = None,
            primaries: Optional[int] = None, transfer: Optional[int] = None) -> ColourInfo:
    """ColourInfo from AVCOL_* codes (None/unspecified ones defaulted by frame size and pixel format)."""
    tagged = []
    if is_rgb_format(pix_fmt):
        m, r = "rgb", "pc"
    else:
        m = _name(MATRICES, matrix)
        if m in ("unknown", "rgb"):
            m = "bt709" if (width >= 1280 or height > 576) else ("bt470bg" if height in (576, 288) else "smpte170m")
        else:
            tagged.append("matrix")
        r = _name(RANGES, range_)
        if r == "unknown":
            r = "pc" if pix_fmt.startswith("yuvj") else "tv"
        else:
            tagged.append("range")
    p = _name(PRIMARIES, primaries)
    if p == "unknown":
        p = {"bt709": "bt709", "bt470bg": "bt470bg", "smpte170m": "smpte170m"}.get(m, "bt709")
    else:
        tagged.append("primaries")
    t = _name(TRANSFERS, transfer)
    if t == "unknown":
        t = "smpte170m" if m == "smpte170m" else "bt709"
    else:
        tagged.append("transfer")
    return ColourInfo(m, r, p, t, tuple(tagged))


def _encode_affine(matrix: str, range_: str) -> tuple[np.ndarray, np.ndarray]:
    """(A, o) with code = A @ rgb01 + o, codes on the 8-bit scale (the textbook definition, used by the tests
    as the reference conversion)."""
    kr, kb = KR_KB.get(matrix, KR_KB["bt470bg"])
    kg = 1.0 - kr - kb
    m = np.array([[kr, kg, kb],
                  [-kr / (2 * (1 - kb)), -kg / (2 * (1 - kb)), 0.5],
                  [0.5, -kg / (2 * (1 - kr)), -kb / (2 * (1 - kr))]])
    if range_ == "pc":
        s, o = np.diag([255.0, 255.0, 255.0]), np.array([0.0, 128.0, 128.0])
    else:
        s, o = np.diag([219.0, 224.0, 224.0]), np.array([16.0, 128.0, 128.0])
    return s @ m, o


def rgb_to_yuv(rgb: np.ndarray, colour: ColourInfo) -> np.ndarray:
    """Float YCbCr codes (8-bit scale) of uint8 RGB: the reference conversion the tests compare against."""
    a, o = _encode_affine(colour.matrix, colour.range)
    return rgb.astype(np.float64) / 255.0 @ a.T + o


def yuv_to_rgb(yuv: np.ndarray, colour: ColourInfo) -> np.ndarray:
    """Float RGB (0..255, unclipped) of YCbCr codes on the 8-bit scale."""
    a, o = _encode_affine(colour.matrix, colour.range)
    return (np.asarray(yuv, np.float64) - o) @ np.linalg.inv(a).T * 255.0
