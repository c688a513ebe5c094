"""Find a resident shell's frame lines in a command's output stream, passing the rest on.

A resident shell (:mod:`hostbatch.ssh.resident`) shares its stdout and stderr with the
commands it runs, so it marks a command's start and end with lines ``PREFIX NUMBER`` whose
prefix holds a random per-command nonce (:func:`hostbatch.ssh.shell.frame_prefix`). The shell
writes each frame with one ``write(2)`` of a few bytes, which a pipe never splits or
interleaves; but the command's output around it may be anything: binary, no final newline
(``printf x`` then the end frame gives ``xhostbatch-end-...``), or text that looks like a
frame with another nonce. So a frame is searched anywhere in the stream, not only at line
starts, and only a possible beginning of the frame at the very end of what has arrived is
held back: everything else passes on at once, so streaming is not delayed by the scan.
"""

from __future__ import annotations

import re

#: The longest number a frame carries (a process group, an exit status); longer digit runs
#: after a prefix are not a frame.
MAX_DIGITS = 20
_NUMBER = re.compile(rb"(\d{1,%d})\n" % MAX_DIGITS)
_DIGITS_SO_FAR = re.compile(rb"\d{0,%d}" % MAX_DIGITS)


class FrameScanner:
    """Removes the first ``PREFIX NUMBER\\n`` line from a byte stream fed in pieces.

    :meth:`feed` returns the bytes before the frame (as they come); once the frame is found,
    :attr:`number` holds its number and :attr:`rest` the bytes that followed it in the same
    piece; later pieces pass through unchanged.
    """

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix.encode("ascii") + b" "
        self._held = b""
        self.number: int | None = None
        self.rest = b""

    @property
    def found(self) -> bool:
        """Whether the frame has been seen."""
        return self.number is not None

    def feed(self, data: bytes) -> bytes:
        """The bytes of ``data`` (and of what was held back) that are certainly not part of
        the frame, up to the frame once it is complete."""
        if self.number is not None:
            return data
        buffer = self._held + data
        self._held = b""
        prefix = self._prefix
        index = buffer.find(prefix)
        while index >= 0:
            after = index + len(prefix)
            match = _NUMBER.match(buffer, after)
            if match:
                self.number = int(match.group(1))
                self.rest = buffer[match.end():]
                return buffer[:index]
            if _DIGITS_SO_FAR.fullmatch(buffer, after):  # the frame's number is still coming
                self._held = buffer[index:]
                return buffer[:index]
            index = buffer.find(prefix, index + 1)
        keep = _partial_prefix(buffer, prefix)
        if keep:
            self._held = buffer[-keep:]
            return buffer[:-keep]
        return buffer

    def flush(self) -> bytes:
        """What is held back (the stream ended without the frame)."""
        held, self._held = self._held, b""
        return held


def _partial_prefix(buffer: bytes, prefix: bytes) -> int:
    """The length of the longest end of ``buffer`` that begins ``prefix`` (0: none)."""
    for size in range(min(len(buffer), len(prefix) - 1), 0, -1):
        if prefix.startswith(buffer[-size:]):
            return size
    return 0
