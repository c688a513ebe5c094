"""What can be checked about a host without connecting: files it names, its jump hosts, the
environment it reads. ``hostbatch inventory lint`` reports these for every host,
``inventory explain`` for the one it shows, so a typo is found before a run fails on it.
"""

from __future__ import annotations

import os
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass

from hostbatch.errors import clip
from hostbatch.inventory.model import HostSpec
from hostbatch.inventory.resolve import parse_jump


@dataclass(frozen=True, slots=True)
class HostFinding:
    """One problem of one host: ``severity`` is ``error`` or ``warning``."""

    severity: str
    key: str
    message: str


def host_findings(spec: HostSpec, inventory_hosts: Container[str],
                  environ: Mapping[str, str]) -> Iterator[HostFinding]:
    """The problems of ``spec`` that show without connecting."""
    for path in spec.identity_files:
        problem = _unreadable(path)
        if problem:
            yield HostFinding("error", "identity_file",
                              f"identity file {clip(path)} {problem}")
    if spec.known_hosts and not os.path.exists(spec.known_hosts):
        yield HostFinding("warning", "known_hosts",
                          f"known_hosts file {clip(spec.known_hosts)} does not exist (every "
                          "host key will be unknown; --accept-new creates it)")
    for hop in spec.proxy_jump:
        user, host, port = parse_jump(hop)
        if user is None and port is None and host not in inventory_hosts and "." not in host \
                and ":" not in host:
            yield HostFinding("warning", "proxy_jump",
                              f"jump host {clip(host)} is not an inventory host: it will be "
                              "dialled as an address")
    if spec.password_env and spec.password_env not in environ:
        yield HostFinding("warning", "password_env",
                          f"environment variable {clip(spec.password_env)} is not set (a run "
                          "would stop here)")


def _unreadable(path: str) -> str:
    """Why ``path`` cannot be read as a key file, or ``""``."""
    if not os.path.exists(path):
        return "does not exist"
    if os.path.isdir(path):
        return "is a directory"
    if not os.access(path, os.R_OK):
        return "is not readable"
    return ""
