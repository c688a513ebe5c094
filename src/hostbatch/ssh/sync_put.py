"""``put -r --sync`` into an existing tree with one remote command and, when nothing changed,
no SFTP session and no process on the host but the shell and ``find``.

The general put (:func:`hostbatch.ssh.put.put`) places the tree with SFTP stats (is the
destination a directory, is the target in it one) and probes the tools before its listing:
on a tree that did not change, that costs about as much as the comparison itself. Here one
command tests the placement with the shell's ``[ -d ]``: when the destination is a directory
that already holds the tree (scp -r puts the tree inside it), it lists the tree (``find
-printf``: only GNU find lists) and waits. Only when something must be sent does it look at
tar (after ``go``), make the staging directory and take the stream. Every other case (a new
target, a destination that is not a directory, ``--mkdir``'s work, a failed listing, a host
without GNU find or tar) ends the command and goes the general way, so its rules and
messages stay as they are. A dry run probes both tools first, as the general way does.
"""

from __future__ import annotations

import contextlib
import posixpath

import paramiko

from hostbatch.actions import PutFiles
from hostbatch.ssh.remote_exec import RemoteProcess
from hostbatch.ssh.sftp import TransferState, close_quietly, expand_remote, open_sftp
from hostbatch.ssh.shell import (
    STREAM_PROBE,
    quote_path,
    stream_put_command,
    stream_tools_usable,
    tree_listing_command,
)
from hostbatch.ssh.stream_put import (
    LISTING_MARK,
    Listed,
    StreamUnusable,
    own_names,
    put_tree,
    shell_path,
    stage_name,
    stage_token,
)

#: What the command prints after the probe when the tree is there (then its listing).
_FOUND = b"in\0"


def placed_listing_command(destination: str, target: str, stage: str, *,
                           probe: bool) -> bytes:
    """List ``target`` only when ``destination`` and ``target`` (inside it) are both
    directories, then the ``mark STATUS`` line; wait for ``go`` on stdin, say whether tar is
    GNU tar, make ``stage`` (mode 0700) and take the stream (:func:`stream_put_command`).

    GNU find shows itself by listing (``-printf``); tar is looked at only once something
    must be sent, so an unchanged host starts no process but ``find``. ``probe``: print the
    tools' versions first anyway (``--dry-run`` sends nothing, yet fails as a real run would
    on a host without GNU tar)."""
    where, tree = quote_path(destination), quote_path(target)
    token = stage_token(stage)
    answer = b"hostbatch-tar-" + token.encode()
    return ((STREAM_PROBE if probe else b":") + b"; printf '\\0\\0\\0'; if [ -d " + where
            + b" ] && [ -d " + tree
            + b" ]; then printf 'in\\0'; " + tree_listing_command(target, top=True)
            + b"; else printf 'no\\0'; fi; printf '\\0\\0\\0hostbatch-listed-%s %s\\n' "
            + token.encode() + b" $?\n"
            b"read -r hb_go || exit 0\n[ \"$hb_go\" = go ] || exit 0\n"
            b"case $(tar --version 2>/dev/null) in *'GNU tar'*) echo '" + answer + b" 1';; "
            b"*) echo '" + answer + b" 0'; exit 0;; esac\n"
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
    probe = action.sync.dry_run
    command = placed_listing_command(shell_path(destination), target, stage, probe=probe)
    listed = Listed(RemoteProcess(transport, command, state), stage, token)
    listed.makes_stage = listed.checks_tar = True
    try:
        head, _, listing = listed.read_listing(mark).partition(LISTING_MARK)
    except BaseException:
        listed.close()
        raise
    if listed.status != 0 or not listing.startswith(_FOUND) or (
            probe and not stream_tools_usable(head)):
        listed.close()  # no tree there, no GNU find (or tar), or a failed listing
        return False
    listed.listing = listing[len(_FOUND):]
    sftp: list[paramiko.SFTPClient] = []

    def sftp_of() -> paramiko.SFTPClient:
        if not sftp:
            sftp.append(open_sftp(transport, state))
        return sftp[0]

    unchanged = state.unchanged
    try:
        put_tree(transport, sftp_of, action, target, True, state, listed)
    except StreamUnusable:
        state.unchanged = unchanged  # counted again by the general put
        return False
    finally:
        with contextlib.suppress(Exception):
            for session in sftp:
                close_quietly(session)
    return True
