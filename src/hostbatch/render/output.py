"""Byte streams for renderers: colour decisions, and surviving a closed pipe (``| head``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import BinaryIO

#: The longest line a host's failure takes when stderr is not a terminal (a log, a pipe).
PLAIN_WIDTH = 200
#: Never cut a line shorter than this, however narrow the terminal claims to be.
MIN_WIDTH = 40


def line_width(isatty: bool, stream: object, environ: Mapping[str, str]) -> int:
    """How wide a host's line may be: the terminal's width (``$COLUMNS`` first, as ``ls``
    reads it), else :data:`PLAIN_WIDTH` when ``stream`` is not a terminal."""
    if not isatty:
        return PLAIN_WIDTH
    columns = environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return max(int(columns), MIN_WIDTH)
    try:
        return max(os.get_terminal_size(stream.fileno()).columns,  # type: ignore[attr-defined]
                   MIN_WIDTH)
    except (AttributeError, OSError, ValueError):
        return 80


def shorten(text: str, width: int | None) -> str:
    """``text`` cut to ``width`` characters, the cut marked with ``…`` (``None``: as is).

    A line one character too long would wrap on a terminal and split a host's line in two;
    the full text stays in ``--json`` and in the history.
    """
    if width is None or len(text) <= width:
        return text
    return text[:max(width - 1, 0)] + "\u2026"


def use_color(isatty: bool, environ: Mapping[str, str]) -> bool:
    """Colour only on a terminal, never with ``NO_COLOR`` set (https://no-color.org)."""
    return isatty and "NO_COLOR" not in environ and environ.get("TERM") != "dumb"


class SafeStream:
    """A binary output stream that goes quiet, instead of raising, once its reader is gone.

    When ``batch_run ... | head`` closes the pipe, the run still finishes honestly and the exit
    status still reflects every host; only the output nobody reads is dropped.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.broken = False

    def write(self, data: bytes) -> None:
        """Write ``data`` unless the reader has gone away."""
        if self.broken:
            return
        try:
            self.stream.write(data)
        except BrokenPipeError:
            self._mark_broken()

    def flush(self) -> None:
        """Flush, absorbing a closed pipe."""
        if self.broken:
            return
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._mark_broken()

    def _mark_broken(self) -> None:
        self.broken = True
        try:
            # Point the descriptor at /dev/null so the interpreter's own final flush is quiet.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
