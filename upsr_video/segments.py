"""Splitting a video into segments by exact frame index.

A segment is a descriptor (video path, [start, stop), index): workers decode their own frames, so no frame
ever travels through the object store. Output does not depend on the split (shot noise comes from
(seed, shot start), temporal context is decoded by `process_segment`), so boundaries are free to move: they
are snapped to nearby scene cuts where one is close, because a segment that starts on a cut needs no context
frames and its encoder starts on a natural keyframe.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass
from typing import Iterable, Optional, Sequence

DEFAULT_SEGMENT_FRAMES = 240  # ~8-10 s of video: a few seconds of work per segment on a GPU
MIN_SEGMENT_FRAMES = 8


@dataclass(frozen=True)
class Segment:
    video: str
    start: int
    stop: int
    index: int

    @property
    def frames(self) -> int:
        return self.stop - self.start

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Segment":
        return cls(str(d["video"]), int(d["start"]), int(d["stop"]), int(d["index"]))


def default_segment_frames(num_frames: int, workers: int = 1) -> int:
    """About three segments per worker for load balance, within [32, DEFAULT_SEGMENT_FRAMES] frames so the
    per-segment costs (context frames, encoder start, scheduling) stay small."""
    per = math.ceil(max(1, num_frames) / max(1, 3 * workers))
    return int(min(DEFAULT_SEGMENT_FRAMES, max(32, per)))


def split_frames(
    num_frames: int,
    segment_frames: int,
    cuts: Iterable[int] = (),
    tolerance: Optional[int] = None,
    min_frames: Optional[int] = None,
) -> list[tuple[int, int]]:
    """[0, num_frames) as consecutive (start, stop) ranges of about `segment_frames` frames.

    The count is ceil(num_frames / segment_frames) and the nominal boundaries are evenly spread (no short
    tail segment). Each boundary moves to the nearest cut within `tolerance` frames (default a quarter of
    the target) provided every segment keeps at least `min_frames` frames.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if segment_frames < 1:
        raise ValueError(f"segment length must be >= 1 frame, got {segment_frames}")
    if num_frames == 0:
        return []
    n = math.ceil(num_frames / segment_frames)
    nominal = [round(i * num_frames / n) for i in range(1, n)]
    tol = segment_frames // 4 if tolerance is None else max(0, int(tolerance))
    mn = max(1, min(segment_frames // 2, MIN_SEGMENT_FRAMES) if min_frames is None else int(min_frames))
    cut_list = sorted(set(int(c) for c in cuts if 0 < int(c) < num_frames))
    bounds = [0]
    for b in nominal:
        best = b
        if cut_list and tol > 0:
            i = bisect.bisect_left(cut_list, b)
            near = [c for c in cut_list[max(0, i - 1) : i + 1] if abs(c - b) <= tol]
            if near:
                best = min(near, key=lambda c: (abs(c - b), c))
        if best - bounds[-1] < mn or num_frames - best < mn:
            best = b  # snapping would leave a sliver: keep the nominal boundary
        if best <= bounds[-1]:
            continue
        bounds.append(best)
    bounds.append(num_frames)
    return list(zip(bounds[:-1], bounds[1:]))


def make_segments(
    video: str,
    num_frames: int,
    segment_frames: int,
    cuts: Sequence[int] = (),
    tolerance: Optional[int] = None,
) -> list[Segment]:
    return [Segment(str(video), a, b, i) for i, (a, b) in enumerate(split_frames(num_frames, segment_frames, cuts, tolerance))]
