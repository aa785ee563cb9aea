"""The manifest lives in `upsr_video.manifest` (the local driver resumes with it too); re-exported here."""
from upsr_video.manifest import (DONE, FAILED, PENDING, RUNNING, SCHEMA_VERSION, Manifest, ManifestError,  # noqa: F401
                                 SegmentRecord, VideoRecord)
