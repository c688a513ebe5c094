"""What to do on every host: the vocabulary shared by the CLI, the SSH layer and the engine.

Actions (:class:`RunCommand`, :class:`PutFiles`, :class:`GetFiles`, :class:`ScanHostKey`) are
frozen plain data: they cross process boundaries and (as JSON) the wire to a relay. They sit
below the SSH layer, so ``hostbatch.ssh`` can perform them without importing the engine.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass
from typing import Literal

#: Which output stream of a remote command a block of bytes came from.
Stream = Literal["stdout", "stderr"]


@dataclass(frozen=True, slots=True)
class RunCommand:
    """Run ``command`` through the remote user's login shell, as ``ssh host command`` does.

    ``env`` is exported in the remote shell first. With ``sudo``, the command runs as root
    through ``sudo -S`` (the host's ``sudo_password`` answers its prompt). With ``script``
    (the local file's name, for messages), the script travelling in :class:`RunInput` is
    uploaded, run with ``script_args`` and removed; ``command`` is then ignored.
    """

    command: str
    env: tuple[tuple[str, str], ...] = ()
    sudo: bool = False
    script: str | None = None
    script_args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunInput:
    """Bytes every host gets the same: the local stdin to broadcast (``None``: none, as
    ``ssh -n``) and a script's content. They travel once per worker process, not per job."""

    stdin: bytes | None = None
    script: bytes | None = None


@dataclass(frozen=True, slots=True)
class LocalEntry:
    """One item of a local file tree to put, scanned once by the parent for every host.

    ``relpath`` is ``""`` for the top item, else a ``/``-separated path below it.
    """

    relpath: str
    kind: Literal["file", "dir", "link"]
    mode: int = 0o644
    size: int = 0
    mtime: float = 0.0
    atime: float = 0.0
    link_target: str = ""
    sha256: str = ""


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """Incremental copying (``--sync``): send only what differs from the destination's copy.

    ``enabled``: compare size and modification time (rsync's quick check), or with
    ``checksum`` SHA-256; ``delete`` also removes what the source does not have;
    ``dry_run`` only reports what would be sent and deleted.
    """

    enabled: bool = False
    checksum: bool = False
    delete: bool = False
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class PutFiles:
    """Copy the local ``source`` (a file, or with ``recursive`` a tree) to ``remote`` on each host.

    ``entries`` is the scanned tree, top item first, parents before children. ``more_sources``
    holds further sources in order (scp's ``SRC... DEST``), each path with its own entries;
    ``remote`` is then a directory that receives ``remote/BASENAME`` of each.
    """

    source: str
    remote: str
    entries: tuple[LocalEntry, ...]
    recursive: bool = False
    preserve_times: bool = False
    verify: bool = False
    mkdir: bool = False
    sync: SyncOptions = SyncOptions()
    #: Bytes per second per host (``--limit-rate``); 0: no limit.
    limit_rate: int = 0
    more_sources: tuple[tuple[str, tuple[LocalEntry, ...]], ...] = ()

    @property
    def sources(self) -> tuple[str, ...]:
        """Every local source, in order."""
        return (self.source, *(path for path, _ in self.more_sources))

    @property
    def total_size(self) -> int:
        """The bytes of every source's files: what one host receives."""
        return sum(e.size for e in self.entries) + sum(
            e.size for _, entries in self.more_sources for e in entries)

    def each_source(self) -> tuple[PutFiles, ...]:
        """One single-source action per source, in order; each into the directory
        ``remote/`` when there are several (a single-source action is itself)."""
        if not self.more_sources:
            return (self,)
        into = self.remote.rstrip("/") + "/"
        return tuple(dataclasses.replace(self, source=path, entries=entries, remote=into,
                                         more_sources=())
                     for path, entries in ((self.source, self.entries), *self.more_sources))


@dataclass(frozen=True, slots=True)
class GetFiles:
    """Copy ``remote`` (a file, or with ``recursive`` a tree) from each host to
    ``local_dir/HOST/BASENAME``; ``more_remotes``: further remote paths, in order (scp's
    ``:REMOTE... LOCALDIR``), each to ``local_dir/HOST/`` its own basename."""

    remote: str
    local_dir: str
    recursive: bool = False
    preserve_times: bool = False
    verify: bool = False
    sync: SyncOptions = SyncOptions()
    #: Bytes per second per host (``--limit-rate``); 0: no limit.
    limit_rate: int = 0
    more_remotes: tuple[str, ...] = ()

    @property
    def remotes(self) -> tuple[str, ...]:
        """Every remote path, in order."""
        return (self.remote, *self.more_remotes)

    def each_remote(self) -> tuple[GetFiles, ...]:
        """One single-path action per remote path, in order."""
        if not self.more_remotes:
            return (self,)
        return tuple(dataclasses.replace(self, remote=remote, more_remotes=())
                     for remote in self.remotes)


@dataclass(frozen=True, slots=True)
class ScanHostKey:
    """Fetch each host's SSH host key (key exchange only, no authentication): ``keyscan``."""


Action = RunCommand | PutFiles | GetFiles | ScanHostKey


def action_kind(action: Action) -> Literal["run", "put", "get", "keyscan"]:
    """The action's kind, as history records it and ``--json`` names it."""
    if isinstance(action, RunCommand):
        return "run"
    if isinstance(action, PutFiles):
        return "put"
    if isinstance(action, GetFiles):
        return "get"
    return "keyscan"


def describe(action: Action) -> str:
    """The action in a few words, as a shell would read it (``sudo K=V command``,
    ``script FILE ARGS``, ``SRC -> DEST``): the confirmation prompt and the history both
    show this text."""
    if isinstance(action, RunCommand):
        text = (action.command if action.script is None
                else "script " + shlex.join([action.script, *action.script_args]))
        if action.env:
            text = " ".join(f"{key}={shlex.quote(value)}" for key, value in action.env) + " " + text
        return f"sudo {text}" if action.sudo else text
    if isinstance(action, PutFiles):
        return f"{' '.join(action.sources)} -> {action.remote}"
    if isinstance(action, GetFiles):
        return f"{' '.join(action.remotes)} -> {action.local_dir}"
    return "keyscan"
