"""`SceneCutDetector`: hard cuts from small frames, so the temporal runner can restart its state at a new shot.

The score of a frame against the previous one is the mean of three measures on a small (64 px wide) frame,
each in [0, 1]: the L1 distance of hue-saturation histograms (16x8 bins), of value histograms (16 bins), and
the mean absolute luma difference / 255. Histograms see a change of content regardless of motion; the luma
difference sees a cut between shots with similar colours. A frame starts a shot when its score reaches
`threshold` and is at least `ratio` times the mean score of the shot's recent frames (fast motion raises the
bar), and not within `min_gap` frames of the previous cut (a flash is one cut, not two).

Measured on 64x36 frames (the size `upscale.detect_cuts` uses; it has the decoder scale every frame straight to
it, `reader.iter_thumbnails`, and finds the same cuts on these clips), decoded by `iter_frames`: bikes.mp4 is an
edit of five shots, its cuts (frames 30, 76, 137, 187, 242) score 0.30-0.62 and its within-shot frames at
most 0.11; cockatoo.mp4 (one hand-held shot with fast head moves) scores at most 0.17, realshort.mp4 at most
0.04; a cut between any two of the three clips scores 0.32-0.53. The default threshold 0.22 finds exactly the
five bikes cuts and no cut elsewhere (tests/test_video_io.py checks this).
"""
from __future__ import annotations

from collections import deque
from typing import Optional

import numpy as np

DEFAULT_THRESHOLD = 0.22


def _features(frame: np.ndarray):
    import cv2

    f = np.asarray(frame)
    if f.ndim != 3 or f.shape[2] != 3:
        raise ValueError(f"expected an RGB frame (H, W, 3), got shape {f.shape}")
    f = np.ascontiguousarray(f, dtype=np.uint8)
    h, w = f.shape[:2]
    if w > 96:
        f = cv2.resize(f, (64, max(1, round(64 * h / w))), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(f, cv2.COLOR_RGB2HSV)
    hs = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).ravel()
    v = cv2.calcHist([hsv], [2], None, [16], [0, 256]).ravel()
    y = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return hs / max(hs.sum(), 1.0), v / max(v.sum(), 1.0), y


def frame_distance(a, b) -> float:
    """Score of features b against features a (see the module docstring), in [0, 1]."""
    hs = 0.5 * float(np.abs(a[0] - b[0]).sum())
    v = 0.5 * float(np.abs(a[1] - b[1]).sum())
    if a[2].shape == b[2].shape:
        mad = float(np.abs(a[2] - b[2]).mean()) / 255.0
    else:
        mad = 1.0
    return (hs + v + mad) / 3.0


class SceneCutDetector:
    """Feed frames in order with `update`; True means the frame starts a new shot (never the first frame)."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, ratio: float = 2.0, window: int = 8,
                 min_gap: int = 3):
        self.threshold = float(threshold)
        self.ratio = float(ratio)
        self.min_gap = int(min_gap)
        self.recent: deque[float] = deque(maxlen=max(1, int(window)))
        self.last_score: Optional[float] = None
        self._prev = None
        self._since_cut = 1 << 30  # the start of the video is no cut: a cut at frame 1 counts

    def reset(self) -> None:
        self.recent.clear()
        self._prev = None
        self.last_score = None
        self._since_cut = 1 << 30

    def update(self, frame: np.ndarray) -> bool:
        feats = _features(frame)
        prev, self._prev = self._prev, feats
        if prev is None:
            return False
        s = frame_distance(prev, feats)
        self.last_score = s
        self._since_cut += 1
        mean = sum(self.recent) / len(self.recent) if self.recent else 0.0
        cut = s >= self.threshold and s >= self.ratio * mean and self._since_cut >= self.min_gap
        if cut:
            self.recent.clear()
            self._since_cut = 0
        else:
            self.recent.append(s)
        return cut
