"""Output geometry: target presets, WxH, --scale, and --fit for aspect mismatch.

Presets name a height (720p, 1080p, 1440p/2k, 2160p/4k); the width follows the input's aspect, rounded to
even (yuv420p needs even sizes). An explicit WxH with a different aspect is resolved by --fit: pad (letterbox
inside WxH), crop (cover WxH and centre-crop) or stretch (non-uniform scale).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

PRESETS = {"720p": 720, "1080p": 1080, "1440p": 1440, "2k": 1440, "2160p": 2160, "4k": 2160}
MAX_SIDE = 16384


class TargetError(ValueError):
    pass


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


@dataclass(frozen=True)
class Geometry:
    """The model produces `content` (W, H) from the whole input frame; it is then placed into `canvas` (W, H):
    padded at `offset` (x, y) when content is smaller, centre-cropped when content is larger."""

    content: tuple[int, int]
    canvas: tuple[int, int]
    fit: str


def parse_target(target: str | None, scale: float | None) -> tuple[str, object]:
    """('height', H) | ('size', (W, H)) | ('scale', F)."""
    if (target is None) == (scale is None):
        raise TargetError("give exactly one of --target or --scale")
    if scale is not None:
        if not 1.0 <= scale <= 16.0:
            raise TargetError(f"--scale must be between 1 and 16, got {scale}")
        return "scale", float(scale)
    t = target.strip().lower()
    if t in PRESETS:
        return "height", PRESETS[t]
    m = re.fullmatch(r"(\d+)\s*[x:]\s*(\d+)", t)
    if m:
        w, h = int(m.group(1)), int(m.group(2))
        if not (16 <= w <= MAX_SIDE and 16 <= h <= MAX_SIDE):
            raise TargetError(f"target size {w}x{h} out of range (16..{MAX_SIDE})")
        return "size", (w, h)
    raise TargetError(f"unsupported target {target!r}: use 720p, 1080p, 1440p/2k, 2160p/4k, WxH or --scale F")


def output_geometry(in_w: int, in_h: int, target: str | None = None, scale: float | None = None, fit: str = "pad") -> Geometry:
    kind, val = parse_target(target, scale)
    if kind == "scale":
        size = (_even(in_w * val), _even(in_h * val))
        return Geometry(size, size, "stretch")
    if kind == "height":
        h = int(val)
        size = (_even(in_w * h / in_h), h if h % 2 == 0 else h + 1)
        return Geometry(size, size, "stretch")
    w, h = val
    if fit not in ("pad", "crop", "stretch"):
        raise TargetError(f"--fit must be pad, crop or stretch, got {fit!r}")
    cw, ch = _even(w), _even(h)
    if fit == "stretch" or in_w * h == in_h * w:
        return Geometry((cw, ch), (cw, ch), "stretch")
    s = min(w / in_w, h / in_h) if fit == "pad" else max(w / in_w, h / in_h)
    content = (_even(in_w * s), _even(in_h * s))
    if fit == "pad":
        content = (min(content[0], cw), min(content[1], ch))
    else:
        content = (max(content[0], cw), max(content[1], ch))
    return Geometry(content, (cw, ch), fit)


def place(frame, geom: Geometry):
    """Pad (black) or centre-crop an HWC numpy frame of size geom.content onto geom.canvas."""
    import numpy as np

    cw, ch = geom.canvas
    h, w = frame.shape[:2]
    if (w, h) == (cw, ch):
        return frame
    if geom.fit == "crop":
        y, x = (h - ch) // 2, (w - cw) // 2
        return np.ascontiguousarray(frame[y : y + ch, x : x + cw])
    out = np.zeros((ch, cw) + frame.shape[2:], dtype=frame.dtype)
    y, x = (ch - h) // 2, (cw - w) // 2
    out[y : y + h, x : x + w] = frame
    return out
