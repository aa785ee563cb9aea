"""Segments live in `upsr_video.segments` (the local driver splits videos the same way); re-exported here."""
from upsr_video.segments import (DEFAULT_SEGMENT_FRAMES, MIN_SEGMENT_FRAMES, Segment,  # noqa: F401
                                 default_segment_frames, make_segments, split_frames)
