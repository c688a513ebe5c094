"""How every command's entry point reports problems: the one map from exceptions to exit
statuses, and the one ``warn``.

Expected errors (:class:`~hostbatch.errors.HostbatchError`) print one line and give exit 2;
Ctrl-C before the engine takes over gives 130; anything else is a bug and prints one line plus
a hint to rerun with ``--debug`` (which shows the traceback), exit 70. Every line passes
through :func:`~hostbatch.secrets.redact`, warnings included (:func:`make_warn`).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from typing import Protocol

from hostbatch.errors import HostbatchError
from hostbatch.exit_status import ExitStatus
from hostbatch.secrets import redact

#: Reports one problem that does not stop the command (one line on stderr).
Warn = Callable[[str], None]


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
        stderr.write(redact(f"{lead}{message}\n").encode())
        stderr.flush()

    return warn


def run_reporting_errors(prog: str, argv: Sequence[str], stdout: Writable, stderr: Writable,
                         body: Callable[[], int]) -> int:
    """Return ``body()``, or the exit status of the error it raised (reported on ``stderr``);
    both streams are flushed either way."""
    try:
        return body()
    except HostbatchError as exc:
        stderr.write(redact(f"{prog}: error: {exc}\n").encode())
        return ExitStatus.USAGE
    except KeyboardInterrupt:
        stderr.write(f"{prog}: interrupted\n".encode())
        return ExitStatus.INTERRUPTED
    except Exception as exc:  # a bug: one line, the traceback only on request
        if "--debug" in argv:
            stderr.write(redact(traceback.format_exc()).encode())
        stderr.write(redact(f"{prog}: internal error: {type(exc).__name__}: {exc} "
                            "(rerun with --debug for a traceback)\n").encode())
        return ExitStatus.INTERNAL
    finally:
        stdout.flush()
        stderr.flush()
