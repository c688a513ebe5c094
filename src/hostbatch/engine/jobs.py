"""What to do on every host: actions, and jobs pairing an action with one host."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from hostbatch.inventory.model import HostSpec


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
class PutFiles:
    """Copy the local ``source`` (a file, or with ``recursive`` a tree) to ``remote`` on each host.

    ``entries`` is the scanned tree, top item first, parents before children.
    """

    source: str
    remote: str
    entries: tuple[LocalEntry, ...]
    recursive: bool = False
    preserve_times: bool = False
    verify: bool = False
    mkdir: bool = False


@dataclass(frozen=True, slots=True)
class GetFiles:
    """Copy ``remote`` (a file, or with ``recursive`` a tree) from each host to
    ``local_dir/HOST/BASENAME``."""

    remote: str
    local_dir: str
    recursive: bool = False
    preserve_times: bool = False
    verify: bool = False


@dataclass(frozen=True, slots=True)
class ScanHostKey:
    """Fetch each host's SSH host key (key exchange only, no authentication): ``keyscan``."""


Action = RunCommand | PutFiles | GetFiles | ScanHostKey


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of work: an action on one host. Plain data, so it crosses process boundaries."""

    host: HostSpec
    action: Action


def plan(hosts: Sequence[HostSpec], action: Action) -> list[Job]:
    """One job per host, in selection order."""
    return [Job(host, action) for host in hosts]
