"""The hostbatch error vocabulary.

Two kinds of failure exist and they never mix:

* a whole-run problem (bad arguments, a broken inventory, an empty selection) is raised as a
  :class:`HostbatchError` before anything connects, and the CLI turns it into exit status 2;
* a per-host problem (refused, timed out, wrong key, lost connection) is a *value*: a
  :class:`FailureKind` and a message carried by an event, so one host never stops the others.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

#: The most characters of user input an error or warning quotes back.
ECHO_LIMIT = 80


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis when it was longer."""
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def excerpt(text: object, limit: int = ECHO_LIMIT) -> str:
    """``text`` (a string, or anything turned into one) quoted as ``repr`` does, cut to
    ``limit`` characters with an ellipsis.

    Every message that quotes input goes through this, so a pasted blob or a runaway line
    still gives a short, one-line error (``repr`` also escapes line breaks).
    """
    return repr(clip(text if isinstance(text, str) else str(text), limit))


class FailureKind(enum.Enum):
    """Why one host did not run to completion; the values are the ``--json`` ``kind`` strings."""

    CONNECT = "connect"
    AUTH = "auth"
    HOSTKEY = "hostkey"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol"
    TRANSFER = "transfer"
    DISCONNECT = "disconnect"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"
    INTERNAL = "internal"
    #: Reached through a relay that could not be started, or that was lost mid-run (then the
    #: host's outcome is unknown: it is never re-run automatically).
    RELAY = "relay"


class HostbatchError(Exception):
    """Root of the errors that stop a whole run before any host is contacted."""


class UsageError(HostbatchError):
    """The command line is wrong: unknown flag, missing command, no hosts selected."""


class InventoryError(HostbatchError):
    """The inventory file is missing or invalid; names the file, section and key at fault."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        section: str | None = None,
        key: str | None = None,
    ) -> None:
        self.path = path
        self.section = section
        self.key = key
        self.reason = message
        where = []
        if path:
            where.append(path)
        if section:
            where.append(f"[{clip(section)}]")
        if key:
            where.append(clip(key))
        super().__init__(f"{' '.join(where)}: {message}" if where else message)


class SelectionError(HostbatchError, LookupError):
    """A host name, pattern or group matched nothing in the inventory."""

    def __init__(self, message: str, unmatched: Sequence[str] = ()) -> None:
        self.unmatched = tuple(unmatched)
        super().__init__(message)
