"""The order in which a host tries authentication methods, as plain data.

One function decides it, :func:`auth_order`; the worker follows it
(:func:`hostbatch.ssh.auth.authenticate`) and anything that explains a host's settings can
show it without importing paramiko:

1. each of its identity files (or the ssh-agent's copy of one, matched through ``FILE.pub``),
   then, with ``identities_only`` off (``IdentitiesOnly no``), the ssh-agent's keys;
2. only for a host with neither an identity file nor a password: the ssh-agent's keys, then
   ``~/.ssh/id_ed25519``, ``id_ecdsa``, ``id_rsa``;
3. its password (from ``password``, ``password_env``, ``password_cmd`` or ``--ask-pass``).

A host with a password and no identity file therefore tries the password alone: offering the
agent's and every ``~/.ssh`` key first makes servers cut the connection with "Too many
authentication failures".
"""

from __future__ import annotations

import enum

from hostbatch.inventory.model import HostSpec
from hostbatch.ssh.keys import identity_files

#: Private keys tried, in this order, when a host has no identity file and no password.
DEFAULT_KEY_NAMES = ("id_ed25519", "id_ecdsa", "id_rsa")


class Method(enum.Enum):
    """One step of a host's authentication."""

    IDENTITY_FILE = "identity_file"
    AGENT = "agent"
    DEFAULT_KEYS = "default_keys"
    PASSWORD = "password"


def has_password(spec: HostSpec) -> bool:
    """True if the host has a password or a source for one (resolved before connecting)."""
    return (spec.password is not None or spec.password_env is not None
            or spec.password_cmd is not None)


def auth_order(spec: HostSpec) -> list[tuple[Method, str | None]]:
    """The methods ``spec`` tries, in order; an identity file step carries its path."""
    files = identity_files(spec)
    steps: list[tuple[Method, str | None]] = [(Method.IDENTITY_FILE, path) for path in files]
    if files and not spec.identities_only:
        steps.append((Method.AGENT, None))  # IdentitiesOnly no: the agent's keys after the files
    if not files and not has_password(spec):
        steps += [(Method.AGENT, None), (Method.DEFAULT_KEYS, None)]
    if has_password(spec):
        steps.append((Method.PASSWORD, None))
    return steps


def describe_auth(spec: HostSpec) -> list[str]:
    """:func:`auth_order` in words, one line per step (passwords never shown)."""
    where = ("" if spec.password is not None
             else f" from ${spec.password_env}" if spec.password_env is not None
             else f" from the output of `{spec.password_cmd}`" if spec.password_cmd is not None
             else "")
    words = {
        Method.AGENT: "the ssh-agent's keys",
        Method.DEFAULT_KEYS: "~/.ssh/" + ", ~/.ssh/".join(DEFAULT_KEY_NAMES),
        Method.PASSWORD: f"password{where}",
    }
    return [f"identity file {path} (or the ssh-agent's copy of it)"
            if method is Method.IDENTITY_FILE else words[method]
            for method, path in auth_order(spec)]
