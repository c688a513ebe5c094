"""Follow sudo's conversation on a command's stderr: answer its prompt once, spot refusals.

Pure bytes in, decisions out (no paramiko), so it is table-tested. The command runs as
``sudo -S -p PROMPT -- /bin/sh -c 'echo GO >&2; ...'`` (see :mod:`hostbatch.ssh.shell`):

* each ``PROMPT`` on stderr is sudo asking for the password: the first one is answered (if a
  password is known), a second one means the password was wrong, and the host fails;
* the ``GO`` line means sudo let the command start: what follows on stderr is the command's;
* the stream ending before ``GO`` means sudo refused; its last line is the reason.

Nothing sudo writes before ``GO`` is shown as output: it is sudo's own chatter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hostbatch.secrets import Secret, redact
from hostbatch.ssh.shell import SudoMarkers

#: sudo's chatter kept before ``GO`` (a lecture, prompts, errors); more is not sudo's.
CHATTER_MAX = 64 * 1024


@dataclass
class SudoWatch:
    """The state of sudo's conversation on one host's stderr."""

    markers: SudoMarkers
    has_password: bool
    started: bool = False
    prompts: int = 0
    failure: str | None = None
    _chatter: bytes = field(default=b"", repr=False)

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Take stderr ``data``; return the command's own stderr bytes in it, and whether the
        password must be sent now."""
        if self.started:
            return data, False
        self._chatter += data
        go = self.markers.go.encode() + b"\n"
        at = self._chatter.find(go)
        chatter = self._chatter if at < 0 else self._chatter[:at]
        send = self._count_prompts(chatter)
        if at >= 0:
            self.started = True
            rest = self._chatter[at + len(go):]
            self._chatter = b""
            return rest, send and self.failure is None
        if len(self._chatter) > CHATTER_MAX:
            self.started = True  # not sudo any more: hand everything on
            rest, self._chatter = self._chatter, b""
            return rest, False
        return b"", send and self.failure is None

    def _count_prompts(self, chatter: bytes) -> bool:
        prompts = chatter.count(self.markers.prompt.encode())
        new = prompts - self.prompts
        self.prompts = prompts
        if new <= 0 or self.failure is not None:
            return False
        if not self.has_password:
            self.failure = ("sudo asked for a password and none is set (inventory "
                            "sudo_password or sudo_password_env, or --ask-sudo-pass)")
            return False
        if prompts > 1:
            self.failure = "sudo: incorrect password"
            return False
        return True

    def refusal(self) -> str:
        """Why the command never started: a failure seen, or sudo's last words."""
        if self.failure is not None:
            return self.failure
        text = self._chatter.decode("utf-8", "replace").replace(self.markers.prompt, "")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        reason = lines[-1] if lines else "sudo ended without running the command"
        return redact(reason if reason.startswith("sudo") else f"sudo: {reason}")


@dataclass(frozen=True, slots=True)
class SudoAuth:
    """What a ``--sudo`` command needs on one host: the markers, and the password if known."""

    markers: SudoMarkers
    password: Secret | None = None

    def watch(self) -> SudoWatch:
        """A fresh watcher for one sudo invocation."""
        return SudoWatch(self.markers, has_password=self.password is not None)

    def answer(self) -> bytes:
        """The password line to send when sudo asks."""
        assert self.password is not None
        return self.password.reveal().encode() + b"\n"
