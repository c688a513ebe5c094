"""``--script``: put a local script on a host under a private, unpredictable name, and remove it.

The copy goes over SFTP into the remote user's home directory as
``.hostbatch-script-RANDOM-NAME``: created exclusively (``O_EXCL``, so a planted file or
symlink is refused, never followed), made mode 0700 before any content is written, and run by
its absolute path so its shebang line picks the interpreter. The home directory rather than
``/tmp``: ``/tmp`` is often mounted ``noexec``, and it is shared with every user.
"""

from __future__ import annotations

import contextlib
import os
import re

import paramiko

from hostbatch.errors import FailureKind
from hostbatch.ssh.errors import HostJobError

#: Seconds for each SFTP step of an upload or removal.
SCRIPT_SECONDS = 30.0
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _open(transport: paramiko.Transport) -> paramiko.SFTPClient:
    channel = transport.open_session(timeout=SCRIPT_SECONDS)
    channel.settimeout(SCRIPT_SECONDS)
    channel.invoke_subsystem("sftp")
    return paramiko.SFTPClient(channel)


def upload(transport: paramiko.Transport, content: bytes, name: str) -> str:
    """Write ``content`` to a new private file; return its absolute remote path."""
    label = _UNSAFE.sub("_", os.path.basename(name))[:40] or "script"
    try:
        sftp = _open(transport)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise HostJobError(FailureKind.TRANSFER, f"could not upload the script: {exc}") from None
    try:
        path = f"{sftp.normalize('.').rstrip('/')}/.hostbatch-script-{os.urandom(8).hex()}-{label}"
        with sftp.open(path, "wbx") as remote:
            sftp.chmod(path, 0o700)
            remote.write(content)
        return path
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise HostJobError(FailureKind.TRANSFER, f"could not upload the script: {exc}") from None
    finally:
        with contextlib.suppress(Exception):
            sftp.close()


def remove(transport: paramiko.Transport, path: str) -> None:
    """Remove the uploaded script, on a fresh SFTP channel (the run may have ended on a
    timeout or interruption); best effort: a dropped connection leaves it behind."""
    if not transport.is_active():
        return
    with contextlib.suppress(Exception):
        sftp = _open(transport)
        try:
            sftp.remove(path)
        finally:
            sftp.close()
