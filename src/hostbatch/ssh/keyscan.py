"""Read a server's host key: the key exchange only, no host-key check, no authentication.

Like a first connection of hostbatch itself (and unlike ``ssh-keyscan``, which asks for every
key type), one key is fetched per host: of the types already recorded for the host in
known_hosts when there are any (so a recorded key is compared with a key of its own type),
else of the type the server prefers among those paramiko offers. That is exactly the key a
later run will be shown, so recording it makes the next run succeed.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostbatch.inventory.model import HostSpec
from hostbatch.known_hosts import fingerprint
from hostbatch.ssh.session import Connector


@dataclass(frozen=True, slots=True)
class ScannedKey:
    """One server key: its type (``ssh-ed25519``), base64 blob and SHA256 fingerprint."""

    key_type: str
    key_b64: str
    fingerprint: str


def _ignore_learned(path: str, line: str, print_fp: str) -> None:
    """Keys are never learned during a scan: the parent decides what to record."""


def scan_host_key(connector: Connector, spec: HostSpec) -> ScannedKey:
    """Fetch ``spec``'s host key with the connector's deadlines, retries and cancellation.

    Failures raise :class:`~hostbatch.ssh.errors.HostFailure`, as connecting does.
    """
    transport = connector.connect(spec, _ignore_learned, key_only=True)
    try:
        key = transport.get_remote_server_key()
        key_b64 = key.get_base64()
        return ScannedKey(key.get_name(), key_b64, fingerprint(key_b64))
    finally:
        transport.close()
