"""Authenticate one SSH connection, following the host's order of methods.

The order is decided in :func:`hostbatch.ssh.methods.auth_order` (identity files, then, for a
host with neither a key nor a password, the agent's keys and ``~/.ssh/id_*``, then the
password). Each method that fails adds a reason ("key rejected: FILE", "wrong password",
"passphrase for FILE is wrong", "server allows only: publickey"), and a host whose methods all
fail gets one AUTH failure listing them.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import paramiko

from hostbatch.errors import FailureKind
from hostbatch.inventory.model import HostSpec
from hostbatch.secrets import Secret
from hostbatch.ssh.errors import HostJobError
from hostbatch.ssh.keys import (
    KeyFileError,
    PassphraseNeeded,
    PassphraseWrong,
    load_private_key,
    passphrase_for,
    public_blob,
)
from hostbatch.ssh.methods import DEFAULT_KEY_NAMES, Method, auth_order

NO_METHOD = "no usable authentication method (no password, no key, no agent)"


class KeyStore:
    """Per-worker private keys: each file loaded (and decrypted) once, shared by all threads.

    A passphrase comes with the host (``HostSpec.key_passphrases``): the parent asked for
    it once per file and checked it.
    """

    def __init__(self, home: str) -> None:
        self.home = Path(home)
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, str | None], paramiko.PKey | HostJobError] = {}

    def identity(self, path: str, passphrase: str | None = None) -> paramiko.PKey:
        """The key of ``path``, or a :class:`HostJobError` (AUTH) saying why it is unusable."""
        with self._lock:
            cached = self._keys.get((path, passphrase))
        if cached is None:
            cached = _load(path, passphrase)
            with self._lock:
                self._keys[path, passphrase] = cached
        if isinstance(cached, HostJobError):
            raise cached
        return cached

    def default_keys(self) -> list[tuple[str, paramiko.PKey]]:
        """The usable ``~/.ssh/id_*`` keys; ones that cannot be loaded are skipped, as ssh
        skips them (an encrypted one is used through the agent, if it holds it)."""
        found = []
        for name in DEFAULT_KEY_NAMES:
            path = str(self.home / ".ssh" / name)
            if os.path.exists(path):
                try:
                    found.append((path, self.identity(path)))
                except HostJobError:
                    continue
        return found


def _load(path: str, passphrase: str | None) -> paramiko.PKey | HostJobError:
    try:
        return load_private_key(path, passphrase)
    except FileNotFoundError:
        return HostJobError(FailureKind.AUTH, f"identity file {path} does not exist")
    except PermissionError:
        return HostJobError(FailureKind.AUTH, f"identity file {path} is not readable")
    except PassphraseNeeded:
        return HostJobError(FailureKind.AUTH, f"encrypted key {path} needs a passphrase: none "
                           "was given and no ssh-agent holds it (load it with ssh-add)")
    except (PassphraseWrong, KeyFileError) as exc:
        return HostJobError(FailureKind.AUTH, str(exc))
    except OSError as exc:
        return HostJobError(FailureKind.AUTH, f"cannot read identity file {path}: "
                           f"{exc.strerror or exc}")


class _Agent:
    """The ssh-agent's keys, fetched on first use; the connection closes with :meth:`close`."""

    def __init__(self) -> None:
        self._agent: paramiko.Agent | None = None
        self._keys: list[paramiko.PKey] | None = None

    def keys(self) -> list[paramiko.PKey]:
        if self._keys is None:
            self._keys = []
            if os.environ.get("SSH_AUTH_SOCK"):
                try:
                    self._agent = paramiko.Agent()
                    self._keys = list(self._agent.get_keys())
                except (paramiko.SSHException, OSError):
                    self._keys = []
        return self._keys

    def copy_of(self, identity_file: str) -> paramiko.PKey | None:
        """The agent's key whose public half is ``identity_file``.pub, if it holds it."""
        public = public_blob(identity_file + ".pub")
        if public is None:
            return None
        return next((key for key in self.keys() if key.asbytes() == public), None)

    def close(self) -> None:
        if self._agent is not None:
            self._agent.close()


class _Attempt:
    """One host's authentication: the transport, the deadline and the reasons gathered."""

    def __init__(self, transport: paramiko.Transport, spec: HostSpec, deadline: float) -> None:
        self.transport = transport
        self.spec = spec
        self.deadline = deadline
        self.reasons: list[str] = []
        self.allowed: list[str] | None = None  # what the server said it accepts, once known
        self.tried = False

    def _set_timeout(self) -> None:
        self.transport.auth_timeout = max(0.01, self.deadline - time.monotonic())

    def _failed(self, exc: paramiko.AuthenticationException) -> None:
        if "timeout" in str(exc).lower():
            raise HostJobError(FailureKind.TIMEOUT, f"authentication got no answer within "
                              f"{self.spec.connect_timeout:g}s") from None

    def _closed(self) -> HostJobError:
        return HostJobError(FailureKind.AUTH, f"the server closed the connection during "
                           f"authentication of user {self.spec.user} (too many authentication "
                           "failures?)")

    def _done(self, remaining: list[str]) -> bool:
        if remaining:
            raise HostJobError(FailureKind.AUTH, f"server requires further authentication "
                              f"({', '.join(remaining)}), which is not supported")
        return True

    def key(self, key: paramiko.PKey) -> bool:
        """Offer ``key``; True if it logged us in, False if the server rejected it."""
        if self.allowed is not None and "publickey" not in self.allowed:
            return False
        self.tried = True
        self._set_timeout()
        try:
            return self._done(self.transport.auth_publickey(self.spec.user, key))
        except paramiko.BadAuthenticationType as exc:
            self.allowed = list(exc.allowed_types)
            self.reasons.append(f"server allows only: {', '.join(exc.allowed_types)}")
            return False
        except paramiko.AuthenticationException as exc:
            self._failed(exc)
            return False
        except paramiko.SSHException:
            raise self._closed() from None

    def password(self, password: Secret) -> bool:
        """Send the password; True if it logged us in."""
        if self.allowed is not None and "password" not in self.allowed:
            return False
        self.tried = True
        self._set_timeout()
        try:
            return self._done(self.transport.auth_password(self.spec.user, password.reveal()))
        except paramiko.BadAuthenticationType as exc:
            self.reasons.append(f"server allows only: {', '.join(exc.allowed_types)}")
            return False
        except paramiko.AuthenticationException as exc:
            self._failed(exc)
            self.reasons.append("wrong password")
            return False
        except paramiko.SSHException:
            raise self._closed() from None


def _try_identity(attempt: _Attempt, path: str, keys: KeyStore, agent: _Agent) -> bool:
    try:
        key = keys.identity(path, passphrase_for(attempt.spec, path))
    except HostJobError as failure:
        copy = agent.copy_of(path)
        if copy is None:
            attempt.reasons.append(failure.message)
            return False
        key = copy
    if attempt.key(key):
        return True
    if attempt.allowed is None or "publickey" in attempt.allowed:
        attempt.reasons.append(f"key rejected: {path}")
    return False


def _try_agent(attempt: _Attempt, agent: _Agent) -> bool:
    agent_keys = agent.keys()
    for key in agent_keys:
        if attempt.key(key):
            return True
    if agent_keys and (attempt.allowed is None or "publickey" in attempt.allowed):
        attempt.reasons.append(f"ssh-agent keys rejected ({len(agent_keys)})")
    return False


def _try_default_keys(attempt: _Attempt, keys: KeyStore) -> bool:
    for path, key in keys.default_keys():
        if attempt.key(key):
            return True
        if attempt.allowed is None or "publickey" in attempt.allowed:
            attempt.reasons.append(f"key rejected: {path}")
    return False


def authenticate(transport: paramiko.Transport, spec: HostSpec, deadline: float,
                 keys: KeyStore) -> None:
    """Log in as ``spec.user`` trying the host's methods in the module's order; a host whose
    methods all fail raises one AUTH :class:`HostJobError` naming each reason."""
    attempt = _Attempt(transport, spec, deadline)
    agent = _Agent()
    try:
        for method, path in auth_order(spec):
            if method is Method.IDENTITY_FILE and path is not None:
                done = _try_identity(attempt, path, keys, agent)
            elif method is Method.AGENT:
                done = _try_agent(attempt, agent)
            elif method is Method.DEFAULT_KEYS:
                done = _try_default_keys(attempt, keys)
            else:
                done = spec.password is not None and attempt.password(spec.password)
            if done:
                return
    finally:
        agent.close()
    if not attempt.tried and not attempt.reasons:
        raise HostJobError(FailureKind.AUTH, NO_METHOD)
    reasons = "; ".join(dict.fromkeys(attempt.reasons)) or "authentication failed"
    raise HostJobError(FailureKind.AUTH, f"{reasons} (user {spec.user})")
