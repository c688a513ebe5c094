"""Password sources, settled in the parent before anything connects.

* ``password_env = VAR``: the variable's value (missing or empty: a one-line error).
* ``password_cmd = COMMAND``: the first line of the command's output. The command is split
  into words like a shell would (``shlex``) but run without one, so nothing in it is expanded
  or globbed; a pipeline needs an explicit ``sh -c '...'``. Each distinct command runs once
  per run, with the user's terminal as its stdin (``/dev/null`` if stdin is not a terminal:
  that data is for the hosts) and stderr (a password manager may prompt there), and its
  stdout captured. A failure never shows what the command printed.
* ``--ask-pass``: one prompt, whose answer is the password of every selected host that has
  no password source of its own.

Every value becomes a :class:`~hostbatch.secrets.Secret`. Pure password logic, below the SSH
layer: key passphrases, which need :mod:`hostbatch.ssh.keys`, are asked by
:func:`hostbatch.prepare.unlock_keys`, and :func:`hostbatch.prepare.prepare_hosts` calls both.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence

from hostbatch.errors import InventoryError, UsageError
from hostbatch.inventory.model import HostSpec
from hostbatch.secrets import Secret

#: Seconds a password_cmd may take; generous, since a password manager may prompt the user.
PASSWORD_CMD_TIMEOUT = 120.0

#: Shows its argument on the terminal and returns what the user typed (without echo).
Prompt = Callable[[str], str]
Warn = Callable[[str], None]


def _fail(message: str, spec: HostSpec, key: str, inventory: str | None) -> InventoryError:
    return InventoryError(message, path=inventory, section=f"host:{spec.name}", key=key)


def run_password_cmd(command: str, *, timeout: float = PASSWORD_CMD_TIMEOUT) -> str:
    """The first line of what ``command`` prints; raises ``ValueError`` saying what went wrong
    (never including the output)."""
    argv = shlex.split(command)
    try:
        # A stdin that is not a terminal holds data for the hosts: the command must not eat it.
        stdin = None if os.isatty(0) else subprocess.DEVNULL
        proc = subprocess.run(argv, stdin=stdin, stdout=subprocess.PIPE, timeout=timeout,
                              check=False)
    except FileNotFoundError:
        raise ValueError(f"program {argv[0]!r} not found") from None
    except subprocess.TimeoutExpired:
        raise ValueError(f"did not finish within {timeout:g}s") from None
    except OSError as exc:
        raise ValueError(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        raise ValueError(f"exited with status {proc.returncode} (its output is not shown)")
    first = proc.stdout.split(b"\n", 1)[0].removesuffix(b"\r")
    try:
        password = first.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("printed a first line that is not UTF-8 text") from None
    if not password:
        raise ValueError("printed an empty first line")
    return password


def _password_of(spec: HostSpec, environ: Mapping[str, str], commands: dict[str, Secret],
                 inventory: str | None, timeout: float) -> Secret | None:
    if spec.password_env is not None:
        value = environ.get(spec.password_env)
        if not value:
            raise _fail(f"environment variable {spec.password_env} is not set or is empty",
                        spec, "password_env", inventory)
        return Secret(value)
    if spec.password_cmd is not None:
        secret = commands.get(spec.password_cmd)
        if secret is None:
            try:
                secret = Secret(run_password_cmd(spec.password_cmd, timeout=timeout))
            except ValueError as exc:
                raise _fail(f"command {spec.password_cmd!r} {exc}", spec, "password_cmd",
                            inventory) from None
            commands[spec.password_cmd] = secret
        return secret
    return spec.password


def resolve_passwords(hosts: Sequence[HostSpec], environ: Mapping[str, str], *,
                      ask_pass: bool = False, prompt: Prompt | None = None,
                      inventory: str | None = None,
                      timeout: float = PASSWORD_CMD_TIMEOUT) -> list[HostSpec]:
    """``hosts`` with every password source turned into ``password``.

    With ``ask_pass``, ``prompt`` asks one password for the hosts that have none (no prompt
    if every host has one). Errors are one-line :class:`InventoryError` / :class:`UsageError`.
    """
    commands: dict[str, Secret] = {}

    def settle(spec: HostSpec) -> HostSpec:
        if spec.password_env is None and spec.password_cmd is None:
            return spec
        password = _password_of(spec, environ, commands, inventory, timeout)
        return dataclasses.replace(spec, password=password, password_env=None,
                                   password_cmd=None)

    resolved = [with_hops(spec, settle) for spec in hosts]
    if ask_pass and any(spec.password is None for spec in every_spec(resolved)):
        if prompt is None:
            raise UsageError("--ask-pass needs a terminal to ask on (or set password_env or "
                             "password_cmd in the inventory)")
        try:
            typed = prompt("Password for hosts without one: ")
        except EOFError:
            raise UsageError("--ask-pass: no password given") from None
        if not typed:
            raise UsageError("--ask-pass: no password given")
        asked = Secret(typed)
        resolved = [with_hops(spec, lambda one: one if one.password is not None
                              else dataclasses.replace(one, password=asked))
                    for spec in resolved]
    return resolved


def every_spec(hosts: Sequence[HostSpec]) -> list[HostSpec]:
    """``hosts`` and the jump hosts and relays they go through (which need credentials
    too)."""
    return [spec for host in hosts
            for spec in (*host.jump_chain, *every_spec(host.relays), host)]


def with_hops(spec: HostSpec, settle: Callable[[HostSpec], HostSpec]) -> HostSpec:
    """``settle`` applied to ``spec`` and to each of its jump hosts, by the same rules (equal
    jump hosts stay equal, so targets behind one still share its connection)."""
    settled = settle(spec)
    if not spec.jump_chain and not spec.relays:
        return settled
    return dataclasses.replace(settled, jump_chain=tuple(with_hops(hop, settle)
                                                         for hop in spec.jump_chain),
                               relays=tuple(with_hops(relay, settle) for relay in spec.relays))
