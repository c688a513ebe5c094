"""What ``batch_run`` takes from this machine before connecting: stdin, a script, the sudo
password.

* stdin: when it is not a terminal (and without ``--no-stdin``), all of it is read once, here,
  and every host receives the same bytes, then EOF (as ``pssh -I`` and ``clush`` do). An open
  pipe that nobody writes to or closes makes the run wait, as it does for those tools. On a
  terminal nothing is read and the remote side sees EOF at once.
* ``--ask-sudo-pass``: one prompt, without echo, on the terminal (``/dev/tty``), for the hosts
  whose inventory gives no sudo password. Without a terminal it is a usage error: reading a
  password from a redirected stdin would swallow the data meant for the hosts.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from hostbatch.actions import Action, RunCommand, RunInput
from hostbatch.cli.environment import Environment
from hostbatch.cli.run import read_script
from hostbatch.errors import UsageError
from hostbatch.inventory.model import HostSpec
from hostbatch.secrets import Secret


def _has_terminal(env: Environment) -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return bool(env.stdin_isatty)
    os.close(fd)
    return True


def ask_sudo_password(hosts: list[HostSpec], env: Environment) -> list[HostSpec]:
    """Prompt once and give the answer to every host without a sudo password."""
    if all(host.sudo_password is not None for host in hosts):
        return hosts
    if not _has_terminal(env):
        raise UsageError("--ask-sudo-pass needs a terminal to prompt on; set sudo_password_env "
                         "in the inventory instead")
    import getpass

    try:
        password = Secret(getpass.getpass("sudo password: "))
    except EOFError:
        raise UsageError("no sudo password given") from None
    return [host if host.sudo_password is not None
            else dataclasses.replace(host, sudo_password=password) for host in hosts]


def read_stdin(args: argparse.Namespace, env: Environment) -> bytes | None:
    """The bytes to broadcast, or ``None`` for an empty stdin (EOF at once)."""
    if args.no_stdin or env.stdin_isatty:
        return None
    try:
        data = env.stdin.read()
    except OSError as exc:
        raise UsageError(f"cannot read stdin: {exc.strerror or exc} (use --no-stdin)") from None
    return data or None


def prepare(hosts: list[HostSpec], action: Action, args: argparse.Namespace,
            env: Environment) -> tuple[list[HostSpec], RunInput | None]:
    """Hosts (with an asked sudo password) and the inputs of a ``batch_run`` action."""
    if not isinstance(action, RunCommand):
        return hosts, None
    if action.sudo and args.ask_sudo_pass:
        hosts = ask_sudo_password(hosts, env)
    script = read_script(args.script) if action.script is not None else None
    return hosts, RunInput(stdin=read_stdin(args, env), script=script)
