"""Byte streams for renderers: colour decisions, and surviving a closed pipe (``| head``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import BinaryIO


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
