"""``hostbatch keyscan``: fetch every selected host's key, compare, and record the new ones.

The workers only read keys (key exchange, no authentication); :mod:`hostbatch.keyscan` judges
them against known_hosts and finds hosts that share one key (cloned images). This module
prints one table, warns, asks once and appends the new keys with
:func:`hostbatch.known_hosts.append_lines` (an exclusive ``flock`` and one ``O_APPEND`` write,
as ``--accept-new`` does). Changed and revoked keys are never written.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence

from hostbatch.actions import Action, ScanHostKey
from hostbatch.cli.arguments import RunOptions
from hostbatch.cli.confirm import YES
from hostbatch.cli.environment import Environment
from hostbatch.cli.failures import make_warn
from hostbatch.cli.options import add_common_options
from hostbatch.cli.parser import Parser
from hostbatch.engine.events import Event, HostFailed, HostKeyScanned
from hostbatch.engine.launcher import WorkerLauncher
from hostbatch.exit_status import ExitStatus, exit_status_help
from hostbatch.inventory.model import HostSpec
from hostbatch.keyscan import (
    HostKeyCheck,
    compare,
    lines_by_file,
    mark_shared,
    needs_attention,
    new_keys,
)
from hostbatch.known_hosts import KeyStatus, append_lines
from hostbatch.render.output import SafeStream

#: Asks the user one yes/no question; ``None`` when there is no terminal to ask on.
Confirm = Callable[[str], bool]

EPILOG = """\
Each host's key is read with a key exchange only (no login). When known_hosts already holds
keys for the host, a key of one of those types is asked for (so it is compared with its own
type); otherwise the type the server prefers. Status: new, known, CHANGED (differs from
known_hosts: never recorded), REVOKED (@revoked: never recorded), unreachable.

New keys are recorded, after ONE confirmation on the terminal (question on stderr, answer on
stdin, both terminals) or with --yes, in the inventory's known_hosts file if it sets one, else
~/.ssh/known_hosts, under a file lock. Without a terminal and without --yes nothing is written.

"""

#: What each status means for keyscan (the generic words speak of commands).
KEYSCAN_STATUSES = {
    ExitStatus.OK: "every host answered and every key is known or was recorded",
    ExitStatus.COMMAND_FAILED: "new keys were left unrecorded (declined, or no terminal and no "
                               "--yes)",
    ExitStatus.USAGE: "usage or inventory error: nothing was scanned",
    ExitStatus.UNREACHABLE: "some key CHANGED or is revoked, or some host was unreachable "
                            "(wins over 1)",
    ExitStatus.INTERRUPTED: "interrupted by Ctrl-C: nothing is written",
    ExitStatus.TERMINATED: "ended by SIGTERM: nothing is written",
    ExitStatus.HANGUP: "ended by SIGHUP: nothing is written",
}


def build_parser(prog: str) -> Parser:
    """The parser of ``hostbatch keyscan``."""
    parser = Parser(prog=prog, add_help=False, allow_abbrev=False,
                    description="Fetch the SSH host key of every selected host, compare it "
                                "with known_hosts and record the new ones.",
                    epilog=EPILOG + exit_status_help(list(KEYSCAN_STATUSES), KEYSCAN_STATUSES),
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_options(parser, accept_new=False, log_in=False)
    output = parser.add_argument_group("keys and output")
    output.add_argument("-y", "--yes", action="store_true",
                        help="record new keys without asking")
    output.add_argument("--json", action="store_true",
                        help="JSON Lines on stdout: one object per host instead of the table")
    output.add_argument("--debug", action="store_true",
                        help="show a traceback for internal errors")
    parser.set_defaults(quiet=False)  # the shared output checks ask; keyscan has one mode
    return parser


def checks(args: argparse.Namespace) -> Callable[[], Action]:
    """Nothing to check beyond the common options: the action is always the same."""
    return ScanHostKey


#: How the table and ``--json`` name each verdict (``--json`` in lower case).
STATUS_LABELS = {KeyStatus.KNOWN: "known", KeyStatus.UNKNOWN: "new",
                 KeyStatus.CHANGED: "CHANGED", KeyStatus.REVOKED: "REVOKED"}


def label(check: HostKeyCheck) -> str:
    """The STATUS column: new, known, CHANGED, REVOKED or unreachable."""
    return "unreachable" if check.status is None else STATUS_LABELS[check.status]


def to_json(check: HostKeyCheck) -> dict[str, object]:
    """One ``--json`` line."""
    if check.status is None:
        return {"host": check.host, "event": "error", "kind": check.kind,
                "error": check.reason}
    return {"host": check.host, "event": "hostkey", "entry": check.entry,
            "key_type": check.key_type, "fingerprint": check.fingerprint,
            "key": check.key_b64, "status": label(check).lower(),
            "shared_with": check.shared_with}


def table(rows: Sequence[HostKeyCheck]) -> str:
    """Plain aligned columns (no colour, no box): readable on a terminal, clean in a pipe."""
    lines = [("HOST", "TYPE", "FINGERPRINT", "STATUS")]
    for row in rows:
        if row.unreachable:
            lines.append((row.host, "-", "-", f"unreachable ({row.kind}): {row.reason}"))
        else:
            shared = " (shared key)" if row.shared_with else ""
            lines.append((row.host, row.key_type, row.fingerprint, label(row) + shared))
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    return "".join(
        f"{host:<{widths[0]}}  {kind:<{widths[1]}}  {fp:<{widths[2]}}  {status}\n"
        for host, kind, fp, status in lines)


def terminal_confirm(env: Environment) -> Confirm | None:
    """A y/N question on the terminal (prompt on stderr, answer from stdin, both terminals,
    as for ``--confirm-over``), or None when nobody can answer."""
    if not (env.stdin_isatty and env.stderr_isatty):
        return None

    def ask(question: str) -> bool:
        env.stderr.write(f"{question} [y/N] ".encode())
        env.stderr.flush()
        answer = env.stdin.readline().decode("utf-8", "replace")
        return answer.strip().lower() in YES

    return ask


def _record(new: Sequence[HostKeyCheck], stderr: SafeStream, prog: str) -> bool:
    """Append the new keys, grouped by file; True when every file was written."""
    ok = True
    for path, lines in lines_by_file(new).items():
        try:
            written = append_lines(path, lines)
        except OSError as exc:
            stderr.write(f"{prog}: error: cannot write {path}: {exc.strerror or exc}\n".encode())
            ok = False
            continue
        stderr.write(f"{prog}: recorded {written} new host key(s) in {path}\n".encode())
    return ok


def _report(rows: Sequence[HostKeyCheck], shared: list[list[HostKeyCheck]], stderr: SafeStream,
            prog: str) -> None:
    for group in shared:
        names = ", ".join(row.host for row in group)
        stderr.write(f"{prog}: warning: {names} show the same host key "
                     f"({group[0].fingerprint}): cloned machine images? Each host should have "
                     "its own key (regenerate with ssh-keygen -A after removing the old "
                     "ones)\n".encode())
    for row in rows:
        if row.status is KeyStatus.CHANGED:
            stderr.write(f"{prog}: warning: REMOTE HOST KEY HAS CHANGED for {row.host} "
                         f"({row.entry}): now {row.key_type} {row.fingerprint}; possible "
                         "man-in-the-middle attack; not recorded (remove the old key with "
                         f"ssh-keygen -R '{row.entry}' once you know why it changed)\n".encode())
        elif row.status is KeyStatus.REVOKED:
            stderr.write(f"{prog}: warning: {row.host} ({row.entry}) shows a key marked "
                         "@revoked; not recorded\n".encode())


def perform(hosts: list[HostSpec], action: Action, options: RunOptions, env: Environment,
            stdout: SafeStream, stderr: SafeStream, launcher: WorkerLauncher | None, *,
            confirm: Confirm | None = None) -> int:
    """Scan, print, ask, record; returns the documented exit status."""
    from hostbatch import api

    prog = "hostbatch keyscan"
    events: dict[str, Event] = {}

    def collect(event: Event) -> None:
        if isinstance(event, HostKeyScanned | HostFailed):
            events[event.host] = event

    warn = make_warn(prog, stderr, label=None)

    result = api.run(hosts, action, options.settings, on_event=collect, warn=warn, home=env.home,
                     launcher=launcher)
    rows = compare(hosts, events, env.home)
    shared = mark_shared(rows)
    if options.output.json:
        stdout.write("".join(json.dumps(to_json(row)) + "\n" for row in rows).encode())
    else:
        stdout.write(table(rows).encode())
    stdout.flush()
    _report(rows, shared, stderr, prog)
    if result.interrupted:
        stderr.write(f"{prog}: interrupted: nothing recorded\n".encode())
        return result.exit_status
    new = new_keys(rows)
    recorded = not new or _ask_and_record(new, options.output.yes,
                                          confirm or terminal_confirm(env),
                                          stderr, prog)
    if needs_attention(rows):
        return ExitStatus.UNREACHABLE
    return ExitStatus.OK if recorded else ExitStatus.COMMAND_FAILED


def _ask_and_record(new: Sequence[HostKeyCheck], yes: bool, ask: Confirm | None,
                    stderr: SafeStream, prog: str) -> bool:
    """Record the new keys if ``--yes`` or the one question allows it; True if recorded."""
    if yes:
        return _record(new, stderr, prog)
    if ask is None:
        stderr.write(f"{prog}: {len(new)} new host key(s) not recorded: no terminal to "
                     "confirm on (rerun with --yes to record them)\n".encode())
        return False
    stderr.flush()
    files = ", ".join(dict.fromkeys(row.record_file for row in new))
    if ask(f"{prog}: record {len(new)} new host key(s) in {files}?"):
        return _record(new, stderr, prog)
    stderr.write(f"{prog}: nothing recorded\n".encode())
    return False
