"""The console's terminal side, on the standard library's ``readline``: line editing, a
persistent history of the lines typed, TAB completion, and the idle timeout.

The history file is ``$XDG_STATE_HOME/hostbatch/console_history`` (default
``~/.local/state/hostbatch/``), private (mode 600), at most :data:`HISTORY_LENGTH` lines; a
line is appended as soon as it is typed (a killed console loses nothing), with every known
secret masked first.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType

from hostbatch.console.specials import candidates
from hostbatch.secrets import redact

HISTORY_LENGTH = 1000
HISTORY_FILE = "console_history"


class SessionEnd(Exception):
    """The session must end while waiting at the prompt: ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def history_file(environ: Mapping[str, str], home: str) -> Path:
    """Where the lines typed are kept (beside the run history)."""
    state = environ.get("XDG_STATE_HOME", "")
    base = Path(state) if state and os.path.isabs(state) else Path(home) / ".local" / "state"
    return base / "hostbatch" / HISTORY_FILE


class Terminal:
    """Reads lines with readline; completes with the names ``names()`` returns at TAB time."""

    def __init__(self, history: Path, names: Callable[[], tuple[list[str], list[str]]],
                 warn: Callable[[str], None]) -> None:
        import readline

        self._readline = readline
        self.history = history
        self.names = names
        self.warn = warn
        self._writable = True
        readline.set_history_length(HISTORY_LENGTH)
        with contextlib.suppress(OSError):
            readline.read_history_file(history)
        readline.set_completer_delims(" \t\n,;|&")
        readline.set_completer(self._complete)
        binding = ("bind ^I rl_complete" if "libedit" in (readline.__doc__ or "")
                   else "tab: complete")
        readline.parse_and_bind(binding)
        self._matches: list[str] = []

    def _complete(self, word: str, state: int) -> str | None:
        if state == 0:
            line = self._readline.get_line_buffer()
            before = line[:self._readline.get_begidx()]
            hosts, groups = self.names()
            self._matches = candidates(before, word, hosts, groups)
        return self._matches[state] if state < len(self._matches) else None

    def read(self, prompt: str, idle_timeout: float) -> str:
        """One line typed at ``prompt``; ``EOFError`` on Ctrl-D, ``KeyboardInterrupt`` on
        Ctrl-C, :class:`SessionEnd` when nothing was entered for ``idle_timeout`` seconds
        or on SIGTERM or SIGHUP (so the connections are closed, not dropped)."""
        with _ending_signals(idle_timeout):
            line = input(prompt)
        self._remember(line)
        return line

    def _remember(self, line: str) -> None:
        """Mask secrets in the history entry just added, and append it to the file."""
        readline = self._readline
        length = readline.get_current_history_length()
        if not line.strip() or length == 0:
            return
        masked = redact(line)
        if masked != line:
            readline.replace_history_item(length - 1, masked)
        if not self._writable:
            return
        try:
            self.history.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.history.exists():
                self.history.touch(mode=0o600)
            readline.append_history_file(1, self.history)
            readline.set_history_length(HISTORY_LENGTH)
        except OSError as exc:
            self._writable = False
            self.warn(f"the lines typed are not kept ({self.history}: {exc.strerror})")

    def recent(self, count: int) -> list[tuple[int, str]]:
        """The last ``count`` lines typed, numbered as readline numbers them."""
        readline = self._readline
        length = readline.get_current_history_length()
        first = max(1, length - count + 1)
        return [(n, readline.get_history_item(n) or "") for n in range(first, length + 1)]


_REASONS: dict[int, str] = {signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


@contextlib.contextmanager
def _ending_signals(idle_seconds: float) -> Iterator[None]:
    """While waiting at the prompt: raise :class:`SessionEnd` on SIGTERM or SIGHUP, and
    after ``idle_seconds`` (0: never) through SIGALRM."""

    def end(signum: int, frame: FrameType | None) -> None:
        raise SessionEnd(_REASONS.get(signum) or f"nothing typed for {idle_seconds:g}s")

    watched = (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)
    previous = {signum: signal.signal(signum, end) for signum in watched}
    if idle_seconds > 0:
        signal.setitimer(signal.ITIMER_REAL, idle_seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
