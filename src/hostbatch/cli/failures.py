"""How every command's entry point reports problems: the one map from exceptions to exit
statuses, and the one ``warn``.

Expected errors (:class:`~hostbatch.errors.HostbatchError`) print one line and give exit 2;
Ctrl-C before the engine takes over gives 130; anything else is a bug and prints one line plus
a hint to rerun with ``--debug`` (which shows the traceback), exit 70. Every line passes
through :func:`~hostbatch.secrets.redact`, warnings included (:func:`make_warn`), and then
through :func:`one_line`: whatever an exception or a warning quotes (a pasted blob in argv, a
runaway inventory line, a path with a newline), what reaches stderr is one line of at most
:data:`LINE_LIMIT` characters. Messages quote input through :func:`hostbatch.errors.excerpt`
already; this is the cap for the ones that do not (argparse's own, a library's exception).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from typing import Protocol

from hostbatch.errors import HostbatchError, InventoryError
from hostbatch.exit_status import ExitStatus
from hostbatch.secrets import redact

#: Reports one problem that does not stop the command (one line on stderr).
Warn = Callable[[str], None]

#: The most characters of one error or warning line (after the ``PROG: error: `` lead). Room
#: for a long path and a quoted excerpt; far below what a pasted blob would print.
LINE_LIMIT = 500
#: How much of a message's end :func:`one_line` keeps when it cuts: the hint (``see --help``,
#: ``the run goes on``, ``mv FILE FILE.broken``) is there.
TAIL = 120


def one_line(text: str, limit: int = LINE_LIMIT) -> str:
    """``text`` as one printable line of at most ``limit`` characters.

    Characters that end a line (``\\n``, ``\\r``, form feed, U+2028 ...) or move the terminal
    (escape, tab) are written as their Python escapes; a longer text keeps its start and its
    last :data:`TAIL` characters around an ellipsis. Redact before calling: a cut could
    otherwise leave half a secret that :func:`~hostbatch.secrets.redact` no longer knows.
    """
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) <= limit:
        return text
    return text[:limit - TAIL - 1] + "\u2026" + text[-TAIL:]


def error_line(prog: str, message: object) -> bytes:
    """``PROG: error: MESSAGE`` redacted, on one bounded line: what exit status 2 prints."""
    return f"{prog}: error: {one_line(redact(str(message)))}\n".encode()


class Writable(Protocol):
    """A byte stream: what the entry points write their messages to."""

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


def make_warn(prog: str, stderr: Writable, *, label: str | None = "warning") -> Warn:
    """A ``warn`` writing ``PROG: LABEL: MESSAGE`` (``PROG: MESSAGE`` without a label) as one
    redacted, flushed line: a warning may quote an inventory line or a command's output, which
    can hold a secret, and it must not wait behind buffered output."""
    lead = f"{prog}: {label}: " if label else f"{prog}: "

    def warn(message: str) -> None:
        stderr.write(f"{lead}{one_line(redact(message))}\n".encode())
        stderr.flush()

    return warn


def _lint_hint(error: InventoryError) -> str:
    """Where in the file, and how to see every problem of it at once."""
    from hostbatch.inventory.source import line_of

    if not error.path or not error.section:
        return ""
    line = line_of(error.path, error.section, error.key)
    where = f" (line {line})" if line else ""
    return f"{where}; to see every problem at once: hostbatch inventory lint -i {error.path}"


def run_reporting_errors(prog: str, argv: Sequence[str], stdout: Writable, stderr: Writable,
                         body: Callable[[], int]) -> int:
    """Return ``body()``, or the exit status of the error it raised (reported on ``stderr``);
    both streams are flushed either way."""
    try:
        return body()
    except InventoryError as exc:
        stderr.write(error_line(prog, f"{exc}{_lint_hint(exc)}"))
        return ExitStatus.USAGE
    except HostbatchError as exc:
        stderr.write(error_line(prog, exc))
        return ExitStatus.USAGE
    except KeyboardInterrupt:
        stderr.write(f"{prog}: interrupted\n".encode())
        return ExitStatus.INTERRUPTED
    except Exception as exc:  # a bug: one line, the traceback only on request
        if "--debug" in argv:
            stderr.write(redact(traceback.format_exc()).encode())
        what = one_line(redact(f"{type(exc).__name__}: {exc}"))
        stderr.write(f"{prog}: internal error: {what} (rerun with --debug for a traceback)\n"
                     .encode())
        return ExitStatus.INTERNAL
    finally:
        stdout.flush()
        stderr.flush()
