"""Video I/O: probe, decode (decord, PyAV where decord is not exact), encode and mux (PyAV), scene cuts.

Knows nothing about models: frames in and out are uint8 RGB arrays (H, W, 3), upright, indexed in presentation
order, with exact per-frame timestamps. Every failure a user can cause raises `VideoError` (one-line message).
"""
from .colour import ColourInfo
from .errors import VideoError
from .mux import finalize
from .probe import VideoInfo, probe
from .reader import iter_frames
from .scenes import SceneCutDetector
from .writer import VideoWriter

__all__ = ["ColourInfo", "SceneCutDetector", "VideoError", "VideoInfo", "VideoWriter", "finalize", "iter_frames",
           "probe"]
