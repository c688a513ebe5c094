"""``put -r --sync`` into an existing tree with one remote command and, when nothing changed,
no SFTP session.

The general put (:func:`hostbatch.ssh.put.put`) places the tree with SFTP stats (is the
destination a directory, is the target in it one) and probes the tools before its listing:
on a tree that did not change, that costs about as much as the comparison itself. Here one
command tests the placement with the shell's ``[ -d ]``: when the destination is a directory
that already holds the tree (scp -r puts the tree inside it), it prints tar's version, lists
the tree (``find -printf``: GNU find shows itself by listing, no ``find --version``) and
waits; after ``go`` it makes the staging directory and takes the stream. Every other case
(a new target, a destination that is not a directory, ``--mkdir``'s work, a failed listing,
a host without GNU tar or find) ends the command and goes the general way, so its rules and
messages stay exactly as they are.
"""

from __future__ import annotations

import contextlib
import posixpath
import re

import paramiko

from hostbatch.actions import PutFiles
from hostbatch.ssh.remote_exec import RemoteProcess
from hostbatch.ssh.sftp import TransferState, close_quietly, expand_remote, open_sftp
from hostbatch.ssh.shell import (
    quote_path,
    stream_put_command,
    tree_listing_command,
)
from hostbatch.ssh.stream_put import (
    LISTING_MARK,
    Listed,
    own_names,
    put_tree,
    shell_path,
    stage_name,
    stage_token,
)

#: What the command prints after the probe when the tree is there (then its listing).
_FOUND = b"in\0"
#: The listing's first entry, the target itself, as GNU find's ``-printf`` writes it.
_TOP = re.compile(rb"in\0d \d+ \d+(\.\d+)? [0-7]+\0\0\0")
#: Prints GNU tar's version (nothing, or another tar's, elsewhere).
TAR_PROBE = b"tar --version 2>/dev/null"


def placed_listing_command(destination: str, target: str, stage: str) -> bytes:
    """Print tar's version, then list ``target`` only when ``destination`` and ``target``
    (inside it) are both directories, then the ``mark STATUS`` line; wait for ``go`` on
    stdin, make ``stage`` (mode 0700) and take the stream (:func:`stream_put_command`).

    GNU find shows itself by listing (``-printf``), so of the tools only tar is probed."""
    where, tree = quote_path(destination), quote_path(target)
    token = stage_token(stage)
    return (TAR_PROBE + b"; printf '\\0\\0\\0'; if [ -d " + where + b" ] && [ -d " + tree
            + b" ]; then printf 'in\\0'; " + tree_listing_command(target, top=True)
            + b"; else printf 'no\\0'; fi; printf '\\0\\0\\0hostbatch-listed-%s %s\\n' "
            + token.encode() + b" $?\n"
            b"read -r hb_go || exit 0\n[ \"$hb_go\" = go ] || exit 0\n"
            b"mkdir -m 700 -- " + quote_path(stage) + b" || exit 1\n"
            + stream_put_command(stage, own_names(token)[0], preserve_times=True))


def put_into_existing(transport: paramiko.Transport, action: PutFiles,
                      state: TransferState) -> bool:
    """Sync the tree of ``action`` into the copy already on the host, opening SFTP only if
    the comparison needs it; ``False`` (nothing done) when the general put must place it."""
    remote = expand_remote(action.remote)
    basename = posixpath.basename(action.source.rstrip("/")) or action.source
    destination = remote.rstrip("/") or "/"
    target = shell_path(posixpath.join(destination, basename))
    stage = stage_name(target)
    token = stage_token(stage)
    mark = f"\0\0\0hostbatch-listed-{token} ".encode()
    command = placed_listing_command(shell_path(destination), target, stage)
    listed = Listed(RemoteProcess(transport, command, state), stage, token)
    listed.makes_stage = True
    try:
        head, _, listing = listed.read_listing(mark).partition(LISTING_MARK)
    except BaseException:
        listed.close()
        raise
    if listed.status != 0 or b"GNU tar" not in head or not _TOP.match(listing):
        listed.close()  # no tree there, no GNU tar or find, or a failed listing
        return False
    listed.listing = listing[len(_FOUND):]
    sftp: list[paramiko.SFTPClient] = []

    def sftp_of() -> paramiko.SFTPClient:
        if not sftp:
            sftp.append(open_sftp(transport, state))
        return sftp[0]

    try:
        put_tree(transport, sftp_of, action, target, True, state, listed)
    finally:
        with contextlib.suppress(Exception):
            for session in sftp:
                close_quietly(session)
    return True
