"""Every piece of shell text hostbatch sends to a host, in one place (pure functions).

* The kill wrapper: a command is sent as ``echo MARKER $$; COMMAND``. sshd starts each
  session's shell with ``setsid()``, so ``$$`` is the process group of the command and all its
  children; :func:`kill_group` signals that group from a second channel.
* ``--env K=V`` becomes ``export K='V';`` in the remote shell (quoted with :func:`shlex.quote`):
  sshd accepts client environment variables only where ``AcceptEnv`` allows, which stock
  configurations limit to ``LANG``/``LC_*``.
* ``--sudo`` runs ``sudo -S -p PROMPT -- /bin/sh -c SCRIPT``: sudo reads the password from
  stdin (``-S``) after writing the random ``PROMPT`` to stderr, so the worker sends the
  password only when asked and never on a command line. ``SCRIPT`` first writes a ``GO``
  line to stderr: everything sudo printed before it (prompts, "Sorry, try again") is sudo's,
  everything after it is the command's. sudo resets the environment, so the exports go
  inside ``SCRIPT``.
* ``--script FILE`` runs the uploaded copy through a descriptor after unlinking it (so its
  shebang is honoured and nothing stays on disk), with the arguments quoted.
* ``--verify`` checks a copied file with ``sha256sum`` on the host (:func:`sha256_command`).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_identifier(name: str) -> bool:
    """Whether ``name`` can be a shell variable name."""
    return bool(_IDENTIFIER.match(name))


@dataclass(frozen=True, slots=True)
class SudoMarkers:
    """The per-run random texts that frame sudo's conversation on stderr."""

    prompt: str
    go: str

    @classmethod
    def from_nonce(cls, nonce: str) -> SudoMarkers:
        """Markers built from a random ``nonce`` (hex: no ``%`` escapes for sudo's ``-p``)."""
        return cls(prompt=f"[hostbatch-sudo-{nonce}]", go=f"hostbatch-sudo-go-{nonce}")


def exports(env: Sequence[tuple[str, str]]) -> str:
    """``export K='V'; `` for each pair, or ``""``."""
    return "".join(f"export {key}={shlex.quote(value)}; " for key, value in env)


#: The descriptor an uploaded script is held open on while it runs (see script_invocation).
SCRIPT_FD = 9


def script_invocation(path: str, args: Sequence[str]) -> str:
    """Run the script at ``path`` with ``args`` (each quoted), removing the file first.

    The shell opens the script on descriptor :data:`SCRIPT_FD`, unlinks it, then executes it
    through ``/dev/fd/N`` (its shebang is honoured): once the command starts, nothing is left
    on the host's disk, even if the connection drops or the host reboots mid-script. The
    script sees ``/dev/fd/N`` as its ``$0``.
    """
    quoted = shlex.quote(path)
    words = " ".join(shlex.quote(word) for word in args)
    return (f"{{ rm -f -- {quoted}; exec /dev/fd/{SCRIPT_FD}{' ' + words if words else ''}; }}"
            f" {SCRIPT_FD}< {quoted}")


def sudo_wrap(inner: str, markers: SudoMarkers, shell: str = "/bin/sh") -> str:
    """``inner`` run as root through sudo, announcing its start with the ``go`` marker."""
    script = f"echo {markers.go} >&2; {inner}"
    return (f"sudo -S -p {shlex.quote(markers.prompt)} -- {shell} -c "
            f"{shlex.quote(script)}")


def sudo_kill(signal_name: str, pgid: int, markers: SudoMarkers) -> str:
    """Signal a process group as root: the commands of a ``--sudo`` run belong to root,
    whom the login user cannot signal (sudo relays a signal to its direct child only)."""
    return f"sudo -S -p {shlex.quote(markers.prompt)} -- kill -s {signal_name} -- -{pgid}"


def wrap_command(command: str, marker: str) -> str:
    """The command line sent to the server: report the process group, then run ``command``."""
    return f"echo {marker} $$; {command}"


def kill_group(signal_name: str, pgid: int) -> str:
    """Signal a process group the login user owns, silently (it may be gone already)."""
    return f"sh -c 'kill -s {signal_name} -- -{pgid}' >/dev/null 2>&1"


def sha256_command(path: str) -> str:
    """Print the SHA-256 of the remote file at ``path`` (``sha256sum`` format)."""
    return f"sha256sum -- {shlex.quote(path)}"


def build_command(command: str, env: Sequence[tuple[str, str]] = (), *,
                  sudo: SudoMarkers | None = None) -> str:
    """The command text for the login shell (before the kill wrapper is added)."""
    inner = exports(env) + command
    return sudo_wrap(inner, sudo) if sudo is not None else inner
