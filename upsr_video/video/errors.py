"""The one exception the video I/O raises: callers show its message to the user as is, so it is one line."""
from __future__ import annotations


class VideoError(Exception):
    """A user-facing video I/O failure with a one-line message (no traceback text, no library noise)."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


def one_line(text: object, limit: int = 300) -> str:
    """The first non-empty line of `text`, whitespace collapsed and cut to `limit` characters."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    s = " ".join(lines[0].split()) if lines else ""
    return s if len(s) <= limit else s[: limit - 3] + "..."


def reason(e: BaseException) -> str:
    """A short cause for an exception from PyAV, decord or the OS (strerror, not the repr)."""
    strerror = getattr(e, "strerror", None)  # OSError and PyAV's FFmpegError: the message without errno/path
    if strerror:
        return one_line(strerror, 160)
    return one_line(str(e) or type(e).__name__, 160)
