"""Everything the CLI takes from its surroundings, injectable so tests run it in-process."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import BinaryIO


@dataclass
class Environment:
    """Streams, environment variables and terminal facts for one CLI invocation.

    ``stdin`` is read only when a run broadcasts it, or to answer a confirmation prompt.
    """

    stdin: BinaryIO = field(default_factory=lambda: sys.stdin.buffer if sys.stdin
                            else io.BytesIO())
    stdout: BinaryIO = field(default_factory=lambda: sys.stdout.buffer)
    stderr: BinaryIO = field(default_factory=lambda: sys.stderr.buffer)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    stdout_isatty: bool | None = None
    stderr_isatty: bool | None = None
    stdin_isatty: bool | None = None

    def __post_init__(self) -> None:
        if self.stdin_isatty is None:
            self.stdin_isatty = _isatty(self.stdin)
        if self.stdout_isatty is None:
            self.stdout_isatty = _isatty(self.stdout)
        if self.stderr_isatty is None:
            self.stderr_isatty = _isatty(self.stderr)

    @property
    def home(self) -> str:
        """The user's home directory, honouring ``$HOME`` as ssh does."""
        return self.environ.get("HOME") or os.path.expanduser("~")


def _isatty(stream: BinaryIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
