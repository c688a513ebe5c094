"""``put -r`` as one tar stream per host: staged beside the target, verified, then moved
into place, all by one remote command (one process start per host).

1. ``tar -x`` unpacks the stream into ``.NAME.hostbatch-RANDOM.stage`` beside the target
   (mode 0700, same file system, so moving out of it is a ``rename``).
2. The stream's last member is the ``sh`` script of step 3
   (:func:`~hostbatch.ssh.shell.replace_tree_script`); only when tar succeeded and that
   script arrived does the command run it. tar also succeeds on a stream cut at a member
   boundary: the script's arrival is what proves the stream whole.
3. The script checks every staged file with ``sha256sum`` (``--verify``), renames each file
   over its target (or the whole staging directory, for a new target), changes the modes
   that alone changed (``--sync``), deletes what ``--delete`` removes, and sets the
   directories' modes.

Any failure before step 3 (a full disk, a dropped connection, ``--timeout``, Ctrl-C, a
checksum mismatch) leaves every old file as it was; the host removes the staging directory
itself, and the controller removes it again on a fresh channel.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
import stat
from collections.abc import Callable

import paramiko

from hostbatch.actions import LocalEntry, PutFiles
from hostbatch.errors import FailureKind
from hostbatch.ssh.errors import HostJobError
from hostbatch.ssh.remote_exec import RemoteProcess, cleanup_remote, first_error_line, run_remote
from hostbatch.ssh.sftp import TransferState, sftp_failure, wire_path
from hostbatch.ssh.shared_source import source_bytes
from hostbatch.ssh.shell import (
    STREAM_PROBE,
    TreeReplace,
    remove_tree_command,
    replace_tree_script,
    sha256_list,
    sha256_tree_command,
    stream_put_command,
    stream_tools_usable,
    tree_listing_command,
)
from hostbatch.ssh.sync import (
    Stat,
    SyncPlan,
    checksum_candidates,
    compare,
    entry_stats,
    parse_listing,
)
from hostbatch.ssh.tarstream import Sent, write_tree


def shell_path(path: str) -> str:
    """A remote path as a shell argument can take it: relative ones start with ``./`` (so a
    name such as ``-x`` is never an option)."""
    return path if path.startswith("/") or path.startswith("./") or path == "." \
        else "./" + path


def stage_name(target: str) -> str:
    """The staging directory beside ``target``: hidden, named for it and for hostbatch."""
    directory, name = posixpath.split(target.rstrip("/"))
    return posixpath.join(directory or ".", f".{name}.hostbatch-{secrets.token_hex(4)}.stage")


def probe(transport: paramiko.Transport, state: TransferState) -> str:
    """``""`` when the host has the tools of a tree stream, else why it has not."""
    status, output, _ = run_remote(transport, STREAM_PROBE, state)
    if status == 0 and stream_tools_usable(output):
        return ""
    return "no GNU tar and find on the host: copied over SFTP"


#: Between the probe's text and a listing in one command's output (the probe prints no NUL).
LISTING_MARK = b"\0\0\0"


class Listed:
    """A ``--sync`` put's first remote command, still running once it has listed the
    target: it waits for one line on stdin, then either ends (nothing to send) or unpacks
    the tar stream that follows into ``stage`` and replaces (:func:`stream_put_command`).
    So a sync costs one remote command per host, as rsync's does."""

    def __init__(self, process: RemoteProcess, stage: str, token: str) -> None:
        self.process = process
        self.stage = stage
        self.token = token
        self.status = 0
        self.listing = b""
        self.errors = b""
        #: The command makes ``stage`` itself after ``go`` (:mod:`.sync_put`).
        self.makes_stage = False

    def read_listing(self, mark: bytes) -> bytes:
        """The probe's text and the listing, up to the line ``mark STATUS`` (kept)."""
        output = bytearray()
        while (end := output.find(mark)) < 0 or output.find(b"\n", end) < 0:
            block = self.process.read(65536)
            if not block:
                self.status, self.errors = self.process.finish()
                return bytes(output)
            output += block
        head, _, tail = bytes(output).partition(mark)
        self.status = int(tail.split(b"\n", 1)[0] or b"1")
        self.errors = self.process.errors
        return head

    def start(self) -> RemoteProcess:
        """Let the command go on to unpack a stream (``stage`` must exist by now)."""
        self.process.write(b"go\n")
        return self.process

    def close(self) -> None:
        """End the command before any stream (it sees end of input and exits)."""
        self.process.close()


def stage_token(stage: str) -> str:
    """The random part of a staging directory's name (it names hostbatch's own files)."""
    return stage.rpartition(".hostbatch-")[2].removesuffix(".stage")


def probe_and_list(transport: paramiko.Transport, target: str,
                   state: TransferState) -> tuple[str, Listed | None]:
    """:func:`probe`, the ``--sync`` listing of the existing ``target`` and the stream put
    after it, in one remote command (see :class:`Listed`): why the host cannot stream (or
    ``""``), and the command, paused after the listing (``None`` when it cannot stream)."""
    stage = stage_name(target)
    token = stage_token(stage)
    mark = f"\0\0\0hostbatch-listed-{token} ".encode()
    command = (STREAM_PROBE + b"; printf '\\0\\0\\0'; "
               + tree_listing_command(shell_path(target), top=True)
               + b"; printf '\\0\\0\\0hostbatch-listed-%s %s\\n' " + token.encode() + b" $?\n"
               + b"read -r hb_go || exit 0\n[ \"$hb_go\" = go ] || exit 0\n"
               + stream_put_command(stage, own_names(token)[0], preserve_times=True))
    listed = Listed(RemoteProcess(transport, command, state), stage, token)
    try:
        head, _, listing = listed.read_listing(mark).partition(LISTING_MARK)
    except BaseException:
        listed.close()
        raise
    if not stream_tools_usable(head):
        listed.close()
        return "no GNU tar and find on the host: copied over SFTP", None
    listed.listing = listing
    return "", listed


def own_names(token: str) -> tuple[str, str, str]:
    """hostbatch's files at the stage's top: the replace script, the ``--verify`` names and
    expected sums."""
    return (f".hostbatch-{token}.sh", f".hostbatch-{token}.names",
            f".hostbatch-{token}.sums")


def remote_sums(transport: paramiko.Transport, root: str, relpaths: list[str],
                state: TransferState) -> dict[str, str]:
    """SHA-256 of ``relpaths`` below ``root``, computed on the host."""
    if not relpaths:
        return {}
    names = b"".join(os.fsencode("./" + rel) + b"\0" for rel in relpaths)
    status, output, errors = run_remote(transport, sha256_tree_command(root), state, names)
    if status != 0:
        raise HostJobError(FailureKind.TRANSFER, f"sha256sum in {root}: "
                           f"{first_error_line(errors, status)}")
    sums: dict[str, str] = {}
    for record in output.split(b"\0"):
        digest, _, name = record.partition(b"  ")
        if name:
            sums[os.fsdecode(name).removeprefix("./")] = digest.decode("ascii").lstrip("\\")
    return sums


def sync_plan(transport: paramiko.Transport, action: PutFiles, target: str,
              state: TransferState, listed: Listed | None = None
              ) -> tuple[SyncPlan, dict[str, Stat]]:
    """What a ``--sync`` put sends and deletes (the target's tree compared with the source),
    and the target's listing it was compared with, its top as ``""`` (``listed``: already
    run, with the probe)."""
    status, output, errors = (listed.status, listed.listing, listed.errors) if listed \
        else run_remote(transport, tree_listing_command(target, top=True), state)
    if status != 0:
        raise HostJobError(FailureKind.TRANSFER, f"list {target}: "
                           f"{first_error_line(errors, status)}")
    source, listing = entry_stats(action.entries), parse_listing(output)
    dest = {rel: item for rel, item in listing.items() if rel}
    if not action.sync.checksum:
        return compare(source, dest, delete=action.sync.delete), listing
    wanted = checksum_candidates(source, dest)
    source_sums = {e.relpath: e.sha256 for e in action.entries if e.kind == "file"}
    return compare(source, dest, delete=action.sync.delete, source_sums=source_sums,
                   dest_sums=remote_sums(transport, target, wanted, state)), listing


#: The host's SFTP session, opened when first asked for (an unchanged sync needs none).
SftpOf = Callable[[], paramiko.SFTPClient]


def in_sync(sftp_of: SftpOf, action: PutFiles, target: str, plan: SyncPlan,
            dest: dict[str, Stat]) -> bool:
    """Whether a ``--sync`` has nothing to do: no file to send, delete or chmod, and every
    directory of the source (the top one included) already on the host with its mode and
    whole-second mtime. Then the stream (a remote process and a staging directory per host)
    is skipped: an unchanged tree costs one listing."""
    if plan.send or plan.delete or plan.chmod:
        return False
    for entry in action.entries:
        if entry.kind != "dir":
            continue
        have = dest.get(entry.relpath)
        if have is not None:
            if have.kind != "dir":
                return False
            mode, mtime = have.mode, have.mtime
        elif entry.relpath:
            return False
        else:
            try:
                attrs = sftp_of().stat(wire_path(target))
            except OSError as exc:
                raise sftp_failure("stat", target, exc) from None
            mode, mtime = stat.S_IMODE(attrs.st_mode or 0), attrs.st_mtime or 0
        if mode != entry.mode & 0o7777 or int(mtime) != int(entry.mtime):
            return False
    return True


def put_tree(transport: paramiko.Transport, sftp_of: SftpOf, action: PutFiles,
             target: str, exists: bool, state: TransferState,
             listed: Listed | None = None) -> None:
    """Put the scanned tree at ``target`` (``exists``: it is there already) as a stream;
    ``listed`` is the command :func:`probe_and_list` started (it goes on to take the stream,
    or ends)."""
    try:
        _put_tree(transport, sftp_of, action, shell_path(target), exists, state, listed)
    finally:
        if listed is not None:
            listed.close()


def _put_tree(transport: paramiko.Transport, sftp_of: SftpOf, action: PutFiles,
              target: str, exists: bool, state: TransferState, listed: Listed | None) -> None:
    state.method = "stream"
    everything = [e for e in action.entries[1:] if e.kind != "dir"]
    if action.sync.enabled and exists:
        plan, dest = sync_plan(transport, action, target, state, listed)
    else:
        plan, dest = SyncPlan(send=[e.relpath for e in everything]), {}
    state.unchanged += plan.unchanged
    if action.sync.dry_run:
        _report_plan(action, target, plan, state)
        return
    if action.sync.enabled and exists and in_sync(sftp_of, action, target, plan, dest):
        return
    chosen = set(plan.send)
    # Into an existing target the script makes the directories: staged ones stay writable.
    entries = [e for e in action.entries[1:]
               if (e.kind == "dir" and not exists) or e.relpath in chosen]
    tops = {e.relpath for e in action.entries if "/" not in e.relpath}
    if listed is not None and any(name in tops for name in own_names(listed.token)):
        listed.close()  # a name of the tree is hostbatch's own: another stage, another command
        listed = None
    stage = listed.stage if listed is not None else stage_name(target)
    while any(name in tops for name in own_names(stage_token(stage))):
        stage = stage_name(target)
    if listed is None or not listed.makes_stage:
        try:
            sftp_of().mkdir(stage, 0o700)
        except OSError as exc:
            raise sftp_failure("mkdir", stage, exc) from None
    replace = _replace_plan(action, entries, plan, stage, target, dest if action.sync.enabled
                            and exists else None, exists=exists)
    try:
        process = listed.process if listed is not None else RemoteProcess(
            transport, stream_put_command(stage, replace.own[0], preserve_times=action
                                          .preserve_times or action.sync.enabled), state)
        durations = _send(process, action, entries, target, state, replace,
                          b"go\n" if listed is not None else b"")
    except BaseException:
        cleanup_remote(transport, remove_tree_command(stage))
        raise
    state.deleted += len(plan.delete)
    state.changed_modes(len(plan.chmod))
    for sent_entry in (e for e in entries if e.kind == "file"):
        state.landed(os.path.join(action.source, *sent_entry.relpath.split("/")),
                     f"{target}/{sent_entry.relpath}", sent_entry.size,
                     durations.get(sent_entry.relpath, 0.0))


def _replace_plan(action: PutFiles, entries: list[LocalEntry], plan: SyncPlan, stage: str,
                  target: str, dest: dict[str, Stat] | None, *, exists: bool) -> TreeReplace:
    """What the host does once the stream is in: verify (``--verify``), move the sent files
    into place, change modes, delete, set the directories' modes and times (``dest``: the
    target's listing, when known)."""
    script, names, sums = own_names(stage_token(stage))
    own, verify = [script], None
    if action.verify:
        own += [names, sums]
        verify = (names, sums)
    dirs = [(e.relpath, e.mode, e.mtime) for e in action.entries if e.kind == "dir"]
    return TreeReplace(stage, target, dirs, [e.relpath for e in entries if e.kind != "dir"],
                       plan.delete, action.preserve_times or action.sync.enabled,
                       fresh=not exists, chmods=plan.chmod, own=own, verify=verify,
                       dest=dest)


def _report_plan(action: PutFiles, target: str, plan: SyncPlan, state: TransferState) -> None:
    """``--dry-run``: name every change, count it, change nothing."""
    sizes = {e.relpath: e.size for e in action.entries}
    for rel in plan.send:
        state.ctx.on_plan("send", f"{target}/{rel}")
        state.files += 1
        state.bytes += sizes.get(rel, 0)
    for rel, _ in plan.chmod:
        state.ctx.on_plan("chmod", f"{target}/{rel}")
    for rel, _ in plan.delete:
        state.ctx.on_plan("delete", f"{target}/{rel}")
    state.deleted += len(plan.delete)
    state.changed_modes(len(plan.chmod))


def _trailer(entries: list[LocalEntry], replace: TreeReplace) -> list[tuple[str, bytes]]:
    """The stream's last members: the ``--verify`` lists, then the replace script (whose
    arrival proves the stream complete)."""
    members: list[tuple[str, bytes]] = []
    if replace.verify is not None:
        names, sums = sha256_list([(e.relpath, e.sha256) for e in entries if e.kind == "file"])
        members += [(replace.verify[0], names), (replace.verify[1], sums)]
    return [*members, (replace.own[0], replace_tree_script(replace))]


def _send(process: RemoteProcess, action: PutFiles, entries: list[LocalEntry], target: str,
          state: TransferState, replace: TreeReplace, preamble: bytes) -> dict[str, float]:
    """Stream ``entries`` and the replace script (after ``preamble``) into the remote command
    that stages, verifies and replaces (:func:`~hostbatch.ssh.shell.stream_put_command`);
    raise with the host's reason on failure. Returns the seconds each file took to send, by
    relpath."""
    def content(entry: LocalEntry) -> memoryview | bytes:
        local = os.path.join(action.source, *entry.relpath.split("/"))
        try:
            return source_bytes(local, entry.size)
        except OSError as exc:
            raise HostJobError(FailureKind.TRANSFER, f"cannot read {local}: "
                               f"{exc.strerror}") from None

    def progress(entry: LocalEntry, done: int) -> None:
        state.progress(f"{target}/{entry.relpath}", done, entry.size)

    sent: list[Sent] = []
    try:
        with contextlib.suppress(BrokenPipeError):  # tar stopped reading: finish() says why
            if preamble:
                process.write(preamble)
            sent = write_tree(process, entries, content, progress, _trailer(entries, replace))
        status, errors = process.finish()
    finally:
        process.close()
    if status != 0 or len(sent) != sum(1 for e in entries if e.kind == "file"):
        raise HostJobError(FailureKind.TRANSFER, f"put {target}: "
                           f"{first_error_line(errors, status)}")
    return {item.entry.relpath: item.duration for item in sent}
