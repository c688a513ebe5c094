"""Read a server's host key after the key exchange: for ``hostbatch keyscan``.

The worker opens a session with ``Connector.open(spec, learn, key_only=True)`` (key exchange
only: no host-key check, no authentication; same deadlines, retries, cancellation and route as
any connection), reads the key with ``Session.scan_key`` and closes it like any other.

Like a first connection of hostbatch itself (and unlike ``ssh-keyscan``, which asks for every
key type), one key is fetched per host: of the types already recorded for the host in
known_hosts when there are any (so a recorded key is compared with a key of its own type),
else of the type the server prefers among those paramiko offers. That is exactly the key a
later run will be shown, so recording it makes the next run succeed.
"""

from __future__ import annotations

from dataclasses import dataclass

import paramiko

from hostbatch.known_hosts import fingerprint


@dataclass(frozen=True, slots=True)
class ScannedKey:
    """One server key: its type (``ssh-ed25519``), base64 blob and SHA256 fingerprint."""

    key_type: str
    key_b64: str
    fingerprint: str


def read_host_key(transport: paramiko.Transport) -> ScannedKey:
    """The key the server proved it holds during the key exchange on ``transport``."""
    key = transport.get_remote_server_key()
    key_b64 = key.get_base64()
    return ScannedKey(key.get_name(), key_b64, fingerprint(key_b64))
