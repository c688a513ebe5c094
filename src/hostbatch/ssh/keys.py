"""Private key files: is one encrypted, does the agent hold it, load it with a passphrase.

The parent asks, per identity file of the selected hosts, whether it is encrypted, whether the
running ssh-agent already holds it, and whether a typed passphrase is right; workers load keys
with :func:`load_private_key`. Telling whether a key is encrypted reads only the file's header
(standard library), so plain keys never make the parent import paramiko; the other
functions import it on first use and keep no paramiko object after they return (workers
may still be forked afterwards).
"""

from __future__ import annotations

import base64
import binascii
import enum
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import paramiko

    from hostbatch.inventory.model import HostSpec

_OPENSSH_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"
_OPENSSH_END = "-----END OPENSSH PRIVATE KEY-----"
_OPENSSH_MAGIC = b"openssh-key-v1\x00"
#: Private key files are small; reading more than this would not be a key we can use.
_MAX_KEY_FILE = 1024 * 1024


class PassphraseCheck(enum.Enum):
    """The result of trying a passphrase on a key file."""

    RIGHT = "right"
    WRONG = "wrong"
    UNUSABLE = "unusable"  # the file cannot be loaded for another reason: the worker says why


class KeyFileError(Exception):
    """A private key file that cannot be used; the message says why, naming the file."""


class PassphraseNeeded(KeyFileError):
    """The key is encrypted and no passphrase was given."""


class PassphraseWrong(KeyFileError):
    """The passphrase given does not decrypt the key."""


def identity_files(spec: HostSpec) -> tuple[str, ...]:
    """The identity files a host offers, in order (the one place that knows where they are)."""
    return spec.identity_files


def passphrase_for(spec: HostSpec, path: str) -> str | None:
    """The passphrase the parent got for ``path`` of this host, if any (for the SSH layer)."""
    return next((secret.reveal() for file, secret in spec.key_passphrases if file == path),
                None)


def _read_head(path: str) -> str:
    with open(path, "rb") as handle:
        return handle.read(_MAX_KEY_FILE).decode("ascii", errors="replace")


def _openssh_blob(text: str) -> bytes | None:
    if _OPENSSH_BEGIN not in text:
        return None
    body = text.split(_OPENSSH_BEGIN, 1)[1].split(_OPENSSH_END, 1)[0]
    try:
        blob = base64.b64decode("".join(body.split()))
    except (binascii.Error, ValueError):
        return None
    return blob if blob.startswith(_OPENSSH_MAGIC) else None


def _strings(blob: bytes, offset: int, count: int) -> list[bytes]:
    """``count`` SSH wire-format strings (uint32 length, then bytes) from ``offset``."""
    found = []
    for _ in range(count):
        length = int.from_bytes(blob[offset:offset + 4], "big")
        found.append(blob[offset + 4:offset + 4 + length])
        offset += 4 + length
    return found


def is_encrypted(path: str) -> bool:
    """True if the private key at ``path`` needs a passphrase.

    Recognises OpenSSH's own format (its cipher name is ``none`` when plain), PEM keys with
    ``Proc-Type: 4,ENCRYPTED`` and PKCS#8 ``ENCRYPTED PRIVATE KEY``. A file that cannot be
    read counts as not encrypted: the worker reports the real problem for each host.
    """
    try:
        text = _read_head(path)
    except OSError:
        return False
    blob = _openssh_blob(text)
    if blob is not None:
        return _strings(blob, len(_OPENSSH_MAGIC), 1)[0] != b"none"
    return "Proc-Type: 4,ENCRYPTED" in text or "BEGIN ENCRYPTED PRIVATE KEY" in text


def key_type(text: str) -> str | None:
    """``rsa``, ``ecdsa`` or ``ed25519`` for a private key file's text; None if unknown.

    OpenSSH's format keeps the public key, and so the type, outside the encrypted part.
    """
    blob = _openssh_blob(text)
    if blob is not None:
        # magic, cipher, kdf name, kdf options, uint32 key count, public key (type first)
        cipher, kdf, options = _strings(blob, len(_OPENSSH_MAGIC), 3)
        offset = len(_OPENSSH_MAGIC) + 12 + len(cipher) + len(kdf) + len(options) + 4
        public = _strings(blob, offset, 1)[0]
        name = _strings(public, 0, 1)[0].decode("ascii", errors="replace")
        if name == "ssh-ed25519":
            return "ed25519"
        if name.startswith("ecdsa-sha2-"):
            return "ecdsa"
        return "rsa" if name == "ssh-rsa" else None
    if "BEGIN RSA PRIVATE KEY" in text:
        return "rsa"
    if "BEGIN EC PRIVATE KEY" in text:
        return "ecdsa"
    return None


def load_private_key(path: str, passphrase: str | None = None) -> paramiko.PKey:
    """Load the private key at ``path``, decrypting it with ``passphrase`` if it is encrypted.

    Raises :class:`PassphraseNeeded`, :class:`PassphraseWrong`, :class:`KeyFileError`, or
    ``OSError`` when the file cannot be read. The key class is chosen from the file because
    paramiko's ``PKey.from_path`` reports a wrong passphrase as an unrelated parse error.
    """
    import paramiko

    text = _read_head(path)
    classes: dict[str, type[paramiko.PKey]] = {
        "rsa": paramiko.RSAKey, "ecdsa": paramiko.ECDSAKey, "ed25519": paramiko.Ed25519Key}
    kind = key_type(text)
    if kind is None:
        raise KeyFileError(f"cannot use identity file {path}: not an OpenSSH, RSA or EC "
                           "private key")
    encrypted = is_encrypted(path)
    if encrypted and not passphrase:
        raise PassphraseNeeded(f"identity file {path} is encrypted")
    try:
        key = classes[kind].from_private_key_file(path, password=passphrase if encrypted
                                                  else None)
    except paramiko.PasswordRequiredException:
        raise PassphraseNeeded(f"identity file {path} is encrypted") from None
    except (paramiko.SSHException, ValueError) as exc:
        if encrypted:
            raise PassphraseWrong(f"passphrase for {path} is wrong") from None
        raise KeyFileError(f"cannot use identity file {path}: {exc}") from None
    certificate = path + "-cert.pub"
    if os.path.exists(certificate):  # as ssh and paramiko's from_path: KEY-cert.pub goes along
        try:
            key.load_certificate(certificate)
        except (paramiko.SSHException, ValueError, OSError) as exc:
            raise KeyFileError(f"cannot use certificate {certificate}: {exc}") from None
    return key


def check_passphrase(identity_file: str, passphrase: str) -> PassphraseCheck:
    """Whether ``passphrase`` decrypts ``identity_file``."""
    try:
        load_private_key(identity_file, passphrase)
    except (PassphraseNeeded, PassphraseWrong):
        return PassphraseCheck.WRONG
    except (KeyFileError, OSError):
        return PassphraseCheck.UNUSABLE
    return PassphraseCheck.RIGHT


def public_blob(path: str) -> bytes | None:
    """The key blob of an OpenSSH ``.pub`` file, or None if it is missing or malformed."""
    try:
        fields = Path(path).read_text().split()
        return base64.b64decode(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def agent_holds(identity_file: str) -> bool:
    """True if the ssh-agent of ``$SSH_AUTH_SOCK`` holds the key of ``identity_file``.

    The key is matched through ``IDENTITY_FILE.pub`` (the private half is encrypted, so it
    cannot tell its own public key); without that file the answer is False.
    """
    wanted = public_blob(identity_file + ".pub")
    if wanted is None or not os.environ.get("SSH_AUTH_SOCK"):
        return False
    import paramiko

    try:
        agent = paramiko.Agent()
    except (paramiko.SSHException, OSError):
        return False
    try:
        return any(key.asbytes() == wanted for key in agent.get_keys())
    finally:
        agent.close()
