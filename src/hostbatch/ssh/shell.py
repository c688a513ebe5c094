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
* The console's resident shell: :data:`RESIDENT_SHELL`, :func:`resident_probe`,
  :func:`resident_line`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hostbatch.ssh.sync import Stat

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


# The console's resident shell (:mod:`hostbatch.ssh.resident`): one login shell per host,
# started once, reading command lines from its channel. Each command runs in a subshell (cd,
# variables and options stay there), as a background job of its own process group (``set
# -m``; ``kill_group`` stops it), with stdin from /dev/null, then the shell frames its end.
# The work is a function defined once, so each line is short: bash reads a script from a pipe
# one byte per read(2), which made a 200-byte line cost more than the command (0.7 ms).

#: The channel's command: the login shell reading its script from stdin. Its own stderr
#: (job notices such as "Terminated") goes to /dev/null; a command's goes to descriptor 3,
#: the channel's stderr.
RESIDENT_SHELL = 'exec "$SHELL" -s 3>&2 2>/dev/null'

#: Runs ``$__hostbatch_cmd`` for the frame nonce ``$1`` (see :func:`resident_line`).
_RESIDENT_RUN = (
    "__hostbatch_run() { ( set --; eval \"$__hostbatch_cmd\" ) </dev/null 2>&3 3>&- & "
    "printf '%s %d\\n' \"hostbatch-start-$1\" \"$!\"; wait \"$!\"; __hostbatch_status=$?; "
    "printf '%s %d\\n' \"hostbatch-end-$1\" \"$__hostbatch_status\"; "
    "printf '%s 0\\n' \"hostbatch-end-$1\" >&3; }")


def frame_prefix(kind: str, nonce: str) -> str:
    """The text that opens a resident shell's frame line ``PREFIX NUMBER``: ``kind`` is
    ``ready``, ``start`` (the job's process group) or ``end`` (its exit status)."""
    return f"hostbatch-{kind}-{nonce}"


def resident_probe(nonce: str) -> str:
    """The first line a resident shell gets: define the runner, turn on job control and say
    whether that worked (``ready 1``; ``ready 0`` on a shell without job control without a
    terminal, e.g. dash)."""
    ready = frame_prefix("ready", nonce)
    return (f"{_RESIDENT_RUN}\nset -m; case $- in *m*) printf '%s 1\\n' {ready};; "
            f"*) printf '%s 0\\n' {ready};; esac\n")


def resident_line(command: str, nonce: str) -> str:
    """The line that runs ``command`` in a resident shell: a subshell job (no positional
    parameters) with stdin from /dev/null and stderr on descriptor 3; the shell prints the
    job's process group (the ``start`` frame), waits, then the ``end`` frame with the exit
    status on stdout and on stderr, after everything the command wrote to either."""
    return f"__hostbatch_cmd={shlex.quote(command)}; __hostbatch_run {nonce}\n"


def sha256_command(path: str) -> bytes:
    """Print the SHA-256 of the remote file at ``path`` (``sha256sum`` format)."""
    return b"sha256sum -- " + quote_path(path)


def build_command(command: str, env: Sequence[tuple[str, str]] = (), *,
                  sudo: SudoMarkers | None = None) -> str:
    """The command text for the login shell (before the kill wrapper is added)."""
    inner = exports(env) + command
    return sudo_wrap(inner, sudo) if sudo is not None else inner


# Tree streams (``batch_scp -r``). Paths may hold any byte but NUL (a name that is not UTF-8
# arrives here as a str with surrogate escapes), so these builders return bytes, each path
# quoted with shlex.quote on its surrogate-escaped text: single quotes pass every byte as is.

def quote_path(path: str) -> bytes:
    """``path`` quoted for a POSIX shell, as the bytes the host's file system uses."""
    return shlex.quote(path).encode("utf-8", "surrogateescape")


#: Prints the versions of the GNU tools a tree stream needs; a host where this prints less
#: falls back to SFTP. Whole, not cut with ``head``: two processes fewer on every host.
STREAM_PROBE = (b"tar --version 2>/dev/null; "
                b"find --version 2>/dev/null")


def stream_tools_usable(probe_output: bytes) -> bool:
    """Whether :data:`STREAM_PROBE`'s output shows GNU tar and GNU find."""
    return b"GNU tar" in probe_output and b"GNU findutils" in probe_output


def _tar_extract(stage: str, preserve_times: bool) -> bytes:
    """``tar -x`` of stdin into the existing directory ``stage``.

    ``-p`` keeps modes exactly (no umask), ``--delay-directory-restore`` sets a directory's
    mode only at the end (a read-only one still fills, whatever the member order),
    ``--no-same-owner`` makes the login user own everything even as root (as an SFTP upload
    does), ``-m`` drops mtimes unless kept (``-p`` of batch_scp)."""
    touch = b"" if preserve_times else b" -m"
    return (b"tar -x -p --no-same-owner --delay-directory-restore" + touch + b" -f - -C "
            + quote_path(stage))


def stream_put_command(stage: str, script: str, *, preserve_times: bool) -> bytes:
    """A whole tree put in one remote process: unpack the stream into the existing directory
    ``stage``, then run the replace script that came as the stream's last member (``script``,
    a name at the stage's top; see :func:`replace_tree_script`).

    The script is the proof that the stream arrived whole: tar also ends without an error
    when a stream is cut at a member boundary, so a missing script means nothing may be
    replaced. On any failure (tar's, a missing script, the script's own) the host removes
    the staging directory itself and exits non-zero; the old files stay as they were unless
    the script had begun moving complete, verified files into place.
    """
    quoted_script = quote_path(f"{stage}/{script}")
    return (_tar_extract(stage, preserve_times) + b"; s=$?\n"
            b"if [ $s -eq 0 ]; then if [ -f " + quoted_script + b" ]; then sh "
            + quoted_script + b"; s=$?; else echo 'hostbatch: the stream ended early' >&2; "
            b"s=1; fi; fi\n"
            b"[ $s -eq 0 ] || { " + remove_tree_command(stage) + b"; }\n"
            b"exit $s\n")


def sha256_list(files: Sequence[tuple[str, str]]) -> tuple[bytes, bytes]:
    """For (relpath, SHA-256) pairs: the NUL-separated names ``xargs -0`` feeds to
    ``sha256sum -z`` in the staging directory, and the exact output expected of it."""
    names = b"".join(quote_free(f"./{rel}") + b"\0" for rel, _ in files)
    sums = b"".join(digest.encode("ascii") + b"  " + quote_free(f"./{rel}") + b"\0"
                    for rel, digest in files)
    return names, sums


def quote_free(path: str) -> bytes:
    """``path`` as the host's bytes, unquoted (for data, never for a command line)."""
    return path.encode("utf-8", "surrogateescape")


def tar_create_command(path: str, names_on_stdin: bool) -> bytes:
    """Write the tree at ``path`` (its contents, members ``./...``) as a tar stream on stdout;
    with ``names_on_stdin`` only the NUL-separated members read from stdin, not recursing."""
    if names_on_stdin:
        return (b"tar -c -f - --format=gnu --no-recursion -C " + quote_path(path)
                + b" --null -T -")  # -C first: it applies to the names that follow it
    return b"tar -c -f - --format=gnu -C " + quote_path(path) + b" ."


def tree_listing_command(path: str, *, top: bool = False) -> bytes:
    """Everything below ``path`` (with ``top``, ``path`` itself too, as relpath ``""``): per
    entry ``TYPE SIZE MTIME MODE\\0RELPATH\\0LINK\\0``."""
    return (b"find " + quote_path(path) + (b" -mindepth 0" if top else b" -mindepth 1")
            + b" -printf '%y %s %T@ %m\\0%P\\0%l\\0'")


def sha256_tree_command(path: str) -> bytes:
    """SHA-256 of files below ``path`` named NUL-separated on stdin (so no command line grows
    with the tree), as NUL-terminated ``sha256sum -z`` records."""
    return (b"cd " + quote_path(path) + b" && xargs -0 -r sha256sum -z --")


def remove_tree_command(path: str) -> bytes:
    """Remove ``path`` and everything in it, read-only directories included; silent."""
    quoted = quote_path(path)
    return b"chmod -R u+rwx -- " + quoted + b" 2>/dev/null || :; rm -rf -- " + quoted


#: Bytes of arguments per generated command line, far below any host's ARG_MAX.
_ARGS_PER_LINE = 64 * 1024


def _batched(command: bytes, args: Sequence[bytes], tail: bytes = b"") -> list[bytes]:
    """``command ARGS... tail`` lines, as few as keep each line's arguments short."""
    lines: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for arg in args:
        if batch and size + len(arg) > _ARGS_PER_LINE:
            lines.append(b" ".join([command, *batch, tail]).rstrip())
            batch, size = [], 0
        batch.append(arg)
        size += len(arg) + 1
    if batch:
        lines.append(b" ".join([command, *batch, tail]).rstrip())
    return lines


@dataclass(frozen=True, slots=True)
class TreeReplace:
    """What :func:`replace_tree_script` does once a tree is staged and verified.

    ``dirs``: (relpath, mode, mtime) of every directory of the tree, ``""`` the top;
    ``moves``: staged files and links to rename into place; ``deletions``: (relpath, whether
    it is a directory) to remove afterwards (``--delete``); ``fresh``: the target does not
    exist, so the staging directory itself is renamed into place; ``chmods``: (relpath, mode)
    of files already in place whose mode alone changes (``--sync``); ``own``: hostbatch's
    own files at the stage's top (the script itself, the ``--verify`` lists); ``verify``:
    the names and expected sums files of :func:`sha256_list`, checked before anything moves;
    ``dest``: the target's listing (``--sync``, ``""`` the top), so that directories already
    as wanted cost no command.
    """

    stage: str
    target: str
    dirs: Sequence[tuple[str, int, float]]
    moves: Sequence[str]
    deletions: Sequence[tuple[str, bool]] = ()
    preserve_times: bool = False
    fresh: bool = False
    chmods: Sequence[tuple[str, int]] = ()
    own: Sequence[str] = ()
    verify: tuple[str, str] | None = None
    dest: Mapping[str, Stat] | None = None

    def under(self, root: str, rel: str) -> bytes:
        """``rel`` below ``root`` (``""``: ``root`` itself), quoted."""
        return quote_path(f"{root}/{rel}" if rel else root)


def replace_tree_script(plan: TreeReplace) -> bytes:
    """The ``sh`` script that moves a staged tree into place: every file by ``rename(2)``
    (atomic per file), grouped into one ``mv`` per directory, then modes that alone changed,
    deletions, the directories' modes (and times with ``-p``), then the staging directory
    goes. Each line is a process on the host, so nothing already as wanted gets one."""
    lines = [b"set -e"]
    if plan.verify is not None:
        names, sums = plan.verify
        lines.append(b"(cd " + quote_path(plan.stage) + b" && xargs -0 -r sha256sum -z -- < "
                     + quote_path(names) + b" | cmp -s - " + quote_path(sums) + b") || { echo "
                     b"'hostbatch: SHA-256 mismatch after transfer' >&2; exit 1; }")
    if plan.fresh:
        lines += _batched(b"rm -f --", [plan.under(plan.stage, name) for name in plan.own])
        lines.append(b"mv -T -- " + quote_path(plan.stage) + b" " + quote_path(plan.target))
        lines += _dir_attributes(plan, [rel for rel, _, _ in plan.dirs],
                                 [rel for rel, _, _ in plan.dirs])
    else:
        lines += _replace_in_place(plan)
        stage = quote_path(plan.stage)
        lines.append(b"cd / && { rm -rf -- " + stage + b" 2>/dev/null || { "
                     + remove_tree_command(plan.stage) + b"; }; }")
    return b"\n".join(lines) + b"\n"


def _replace_in_place(plan: TreeReplace) -> list[bytes]:
    """Into an existing target: directories made, files moved, modes changed, deletions,
    then the directories' modes and times (only those that need it, when the target's
    listing is known)."""
    dest = plan.dest
    wanted = {rel: (mode & 0o7777, int(mtime)) for rel, mode, mtime in plan.dirs}
    # The target's directories as listed (None: missing, or not known without a listing).
    have: dict[str, Stat | None] = {}
    for rel in wanted:
        found = dest.get(rel) if dest is not None else None
        have[rel] = found if found is not None and found.kind == "dir" else None
    missing = [rel for rel in wanted if have[rel] is None]
    locked = [rel for rel, found in have.items()
              if dest is None or (found is not None and found.mode & 0o700 != 0o700)]
    lines = _batched(b"mkdir -p --", [plan.under(plan.target, rel) for rel in missing])
    lines += [line + b" 2>/dev/null || true" for line in _batched(
        b"chmod u+rwx --", [plan.under(plan.target, rel) for rel in locked])]
    by_dir: dict[str, list[str]] = {}
    for rel in plan.moves:
        by_dir.setdefault(rel.rpartition("/")[0], []).append(rel)
    for parent, rels in by_dir.items():
        lines += _batched(b"mv -f --", [plan.under(plan.stage, rel) for rel in rels],
                          plan.under(plan.target, parent))
    file_modes: dict[int, list[bytes]] = {}
    for rel, mode in plan.chmods:
        file_modes.setdefault(mode & 0o7777, []).append(plan.under(plan.target, rel))
    for mode, paths in file_modes.items():
        lines += _batched(f"chmod {mode:o} --".encode(), paths)
    doomed = [plan.under(plan.target, rel) for rel, _ in plan.deletions]
    # Only directories: chmod follows a symlink named on its command line.
    doomed_dirs = [plan.under(plan.target, rel) for rel, is_dir in plan.deletions if is_dir]
    lines += [line + b" 2>/dev/null || :" for line in _batched(b"chmod -R u+rwx --",
                                                                doomed_dirs)]
    lines += _batched(b"rm -rf --", doomed)
    if dest is None:
        return lines + _dir_attributes(plan, list(wanted), list(wanted))
    # A directory's mtime changes when an entry in it is added, renamed or removed.
    touched = {rel.rpartition("/")[0] for rel in [*plan.moves, *missing] if rel}
    touched |= {rel.rpartition("/")[0] for rel, _ in plan.deletions}
    listed = {rel: (stat.mode, int(stat.mtime)) for rel, stat in have.items() if stat}
    modes = [rel for rel in wanted if rel in missing or rel in locked
             or listed[rel][0] != wanted[rel][0]]
    times = [rel for rel in wanted if rel in missing or rel in touched
             or listed[rel][1] != wanted[rel][1]]
    return lines + _dir_attributes(plan, modes, times)


def _dir_attributes(plan: TreeReplace, modes: list[str], times: list[str]) -> list[bytes]:
    """``chmod`` the directories ``modes`` and (with ``-p``) ``touch`` the ``times`` ones,
    one command per distinct mode or mtime."""
    wanted = {rel: (mode, mtime) for rel, mode, mtime in plan.dirs}
    by_mode: dict[int, list[bytes]] = {}
    by_time: dict[int, list[bytes]] = {}
    for rel in modes:
        by_mode.setdefault(wanted[rel][0] & 0o7777, []).append(plan.under(plan.target, rel))
    for rel in times:
        by_time.setdefault(int(wanted[rel][1]), []).append(plan.under(plan.target, rel))
    lines: list[bytes] = []
    for mode, paths in by_mode.items():
        lines += _batched(f"chmod {mode:o} --".encode(), paths)
    if plan.preserve_times:
        for mtime, paths in by_time.items():
            lines += _batched(f"touch -m -d @{mtime} --".encode(), paths)
    return lines
