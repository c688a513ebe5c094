"""Command-line options, declared once and shared by ``batch_run`` and ``hostbatch run``.

``-h`` selects hosts (as in pssh and clush), so help is ``--help`` only. Single-dash long
forms (``-cmd``) are kept because that is the documented seed syntax.
"""

from __future__ import annotations

import argparse
import os

from hostbatch.cli.parser import Parser
from hostbatch.errors import UsageError, excerpt
from hostbatch.exit_status import ExitStatus, exit_status_help
from hostbatch.history import DEFAULT_OUTPUT_CAP
from hostbatch.inventory.loader import INVENTORY_FORMATS
from hostbatch.inventory.model import DEFAULT_KEEPALIVE_COUNT_MAX, DEFAULT_KEEPALIVE_INTERVAL
from hostbatch.rollout import Amount
from hostbatch.settings import DEFAULT_FORKS, DEFAULT_RETRIES
from hostbatch.ssh.shell import is_identifier

#: What follows the exit statuses in the help of ``batch_run`` and ``batch_scp``.
RUN_NOTES = """
  A host skipped because a rollout stopped (--canary, --max-fail) makes the
  status at least 1.

inventory: -i FILE, else $HOSTBATCH_INVENTORY, else ./hosts.ini, else
~/.config/hostbatch/hosts.ini.  NO_COLOR disables colour.  Personal defaults
for options: $HOSTBATCH_CONFIG, else ~/.config/hostbatch/config.ini.

authentication, per host: its identity_file (or the ssh-agent's copy), then
its password; a host with neither tries the ssh-agent's keys, then ~/.ssh/id_*.
Passwords: password, password_env = VAR, password_cmd = COMMAND, --ask-pass.
An encrypted identity_file the agent lacks: its passphrase is asked once."""


RUN_OUTPUT_HELP = """

output modes: lines stream as HOST: LINE unless -b, --diff, -q or --json.
-b/--diff group hosts by exact stdout bytes and by exit status; failed hosts
are grouped by reason.  On a terminal, when lines are not streamed to it, a
live progress line (done/running/failed/total, elapsed, ETA) is shown on
stderr; never when stderr is piped.  The summary lists failed hosts folded by
kind (timed out (3): web[04,07],db02); -v lists each with its reason."""

#: The last lines of ``batch_run --help`` (and of its man page's EXAMPLES).
RUN_EXAMPLES = """

examples:
  batch_run -g web -cmd 'systemctl is-active nginx'       # a group, streamed as HOST: LINE
  batch_run -g all -x 'db*' -b -cmd 'cat /etc/debian_version'   # identical outputs once
  batch_run -h @failed -cmd 'systemctl restart app'       # again, where the last run failed
"""

#: The last lines of ``batch_scp --help``.
SCP_EXAMPLES = """

examples:
  batch_scp -g web -action put -local app.conf -remote /etc/app/     # to every web host
  batch_scp -g all -action get -remote /etc/os-release -local ./got  # ./got/HOST/os-release
  batch_scp -h @failed -action put -local app.conf -remote /etc/app/ # retry the failures
"""


def _whole(text: str, minimum: int, too_small: str) -> int:
    """``text`` as a whole number of at least ``minimum``, else an argparse type error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{excerpt(text)} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{excerpt(text)} {too_small}")
    return value


def _seconds(text: str, *, zero: bool, most: float, out_of_range: str) -> float:
    """``text`` as seconds, over 0 (or from 0 with ``zero``) up to ``most``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{excerpt(text)} is not a number of seconds") from None
    if not (value >= 0 if zero else value > 0) or value > most:
        raise argparse.ArgumentTypeError(f"{excerpt(text)} {out_of_range}")
    return value


def positive_count(text: str) -> int:
    """An argparse type: a whole number, 1 or more (``-f``, ``--keepalive-count``)."""
    return _whole(text, 1, "must be at least 1")


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number, 0 or more (``--retries``, ``history prune --keep``)."""
    return _whole(text, 0, "must not be negative")


def positive_seconds(text: str) -> float:
    """An argparse type: a positive number of seconds, at most 10**7 (timeouts)."""
    return _seconds(text, zero=False, most=10**7,
                    out_of_range="must be a positive number of seconds")


def non_negative_seconds(text: str) -> float:
    """An argparse type: seconds, zero (off) up to a day (``--keepalive``)."""
    return _seconds(text, zero=True, most=86400,
                    out_of_range="must be between 0 and 86400 seconds")


def add_ssh_config_options(parser: argparse.ArgumentParser) -> None:
    """``-F`` (which ssh_config) and ``-l`` (login user for every selected host)."""
    parser.add_argument("-F", dest="ssh_config", metavar="FILE",
                        help="OpenSSH client config to honour (default: ~/.ssh/config if it "
                             "exists; -F none: no ssh_config)")
    parser.add_argument("-l", "--user", metavar="USER",
                        help="log in as USER on every selected host (not on jump hosts)")


def _amount(text: str) -> Amount:
    try:
        return Amount.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{excerpt(text)} is not NAME=VALUE")
    if not is_identifier(name):
        raise argparse.ArgumentTypeError(
            f"{excerpt(name)} is not a shell variable name (letters, digits, _; not starting "
            "with a digit)")
    return name, value


def add_rollout_options(parser: argparse.ArgumentParser) -> None:
    """``--canary``, ``--batch``, ``--max-fail`` and ``--confirm-over``."""
    rollout = parser.add_argument_group(
        "rollout (hosts in selection order; hosts never started are reported as skipped)")
    rollout.add_argument("--canary", type=positive_count, metavar="N",
                         help="run on the first N hosts alone first; stop there if any fails")
    rollout.add_argument("--batch", type=_amount, metavar="N|P%",
                         help="run the other hosts in waves of N hosts (or P%% of the hosts); "
                              "a wave starts when the previous one has ended")
    rollout.add_argument("--max-fail", type=_amount, metavar="N|P%",
                         help="start no new host once N hosts (or P%% of the hosts) have "
                              "failed (non-zero exit or error)")
    rollout.add_argument("--confirm-over", type=non_negative_int, metavar="N",
                         help="ask once before running on more than N hosts; refuse without "
                              "a terminal (default: inventory [defaults] confirm_over, else "
                              "never ask)")


def add_remote_execution_options(parser: argparse.ArgumentParser) -> None:
    """``--sudo``, ``--ask-sudo-pass``, ``--env``, ``--no-stdin`` and ``--script``."""
    remote = parser.add_argument_group("remote execution")
    remote.add_argument("--sudo", action="store_true",
                        help="run the command as root through sudo; the password (inventory "
                             "sudo_password or sudo_password_env, or --ask-sudo-pass) is "
                             "sent only when sudo asks for it")
    remote.add_argument("--ask-sudo-pass", action="store_true",
                        help="with --sudo: prompt once (no echo) for the sudo password of "
                             "hosts whose inventory sets none")
    remote.add_argument("--env", action="append", type=_env_pair, default=[],
                        metavar="NAME=VALUE",
                        help="export NAME=VALUE in the remote shell (repeatable; values are "
                             "not secret: they appear in the remote command line)")
    remote.add_argument("--no-stdin", action="store_true",
                        help="do not send local stdin to the hosts (default: when stdin is "
                             "not a terminal, all of it is read first and sent to every host)")
    remote.add_argument("--script", metavar="FILE",
                        help="copy the local script FILE to each host (private temporary "
                             "file), run it with the words after the options as arguments, "
                             "remove it")


def add_inventory_options(parser: argparse.ArgumentParser) -> None:
    """``-i FILE`` and ``--inventory-format``: every command that reads an inventory has both."""
    parser.add_argument("-i", "--inventory", metavar="FILE",
                        help="inventory file: hostbatch INI or Ansible INI")
    parser.add_argument("--inventory-format", choices=INVENTORY_FORMATS, default="auto",
                        help="how to read the inventory (default auto: Ansible INI when the "
                             "file looks like one, else hostbatch INI)")


def _via(text: str) -> tuple[str, ...]:
    """``--via``: relay names, comma-separated, or ``none``."""
    from hostbatch.inventory.resolve import relay_list

    names = relay_list(text)
    if not names and text.strip() != "none":
        raise argparse.ArgumentTypeError("give relay names or none")
    return names


def add_common_options(parser: argparse.ArgumentParser, *, accept_new: bool = True,
                       log_in: bool = True) -> None:
    """Inventory, selection and connection options common to every run command.

    ``accept_new=False`` leaves out ``--accept-new`` (keyscan records keys its own way);
    ``log_in=False`` leaves out ``--ask-pass`` (keyscan never authenticates).
    """
    parser.add_argument("--help", action="store_true", help="show this help and exit")
    parser.add_argument("--version", action="store_true", help="show the version and exit")
    add_inventory_options(parser)
    add_ssh_config_options(parser)
    _add_selection_options(parser)
    _add_connection_options(parser, accept_new=accept_new)
    _add_authentication_options(parser, log_in=log_in)


def _add_selection_options(parser: argparse.ArgumentParser) -> None:
    """``-h``, ``-H``, ``-g``, ``-x``, ``--list`` and ``--by-relay``."""
    select = parser.add_argument_group("host selection (the union of -h, -g and -H, minus -x)")
    select.add_argument("-h", "--hosts", action="append", default=[], metavar="HOSTS",
                        help="comma list of host names, globs (web*) or ranges (web[01-03])")
    select.add_argument("-H", "--adhoc", action="append", default=[], metavar="HOSTS",
                        help="hosts that are not in the inventory, as pssh -H: comma list of "
                             "[user@]host[:port], ranges allowed; they take [defaults] and "
                             "ssh_config (no inventory needed)")
    select.add_argument("-g", "--groups", action="append", default=[], metavar="GROUPS",
                        help="comma list of groups (implicit group: all)")
    select.add_argument("-x", "--exclude", action="append", default=[], metavar="HOSTS",
                        help="hosts to leave out; same forms as -h")
    select.add_argument("--list", action="store_true",
                        help="print the selected host names and exit without connecting")
    select.add_argument("--by-relay", action="store_true",
                        help="with --list: one line per route, the relays first (see via)")


def _add_connection_options(parser: argparse.ArgumentParser, *, accept_new: bool) -> None:
    """Fan-out, timeouts, keepalives, retries, ``--accept-new`` and ``--via``."""
    limits = parser.add_argument_group("connections")
    limits.add_argument("-f", "--forks", type=positive_count, default=DEFAULT_FORKS, metavar="N",
                        help=f"at most N hosts at once (default {DEFAULT_FORKS})")
    limits.add_argument("--connect-timeout", type=positive_seconds, metavar="S",
                        help="seconds for TCP connect + SSH handshake + authentication "
                             "(default: inventory connect_timeout, else 10)")
    limits.add_argument("--keepalive", dest="keepalive_interval", type=non_negative_seconds,
                        metavar="S",
                        help="probe a host silent for S seconds, as ssh's ServerAliveInterval "
                             f"(0: never; default: inventory keepalive_interval, ssh_config, "
                             f"else {DEFAULT_KEEPALIVE_INTERVAL:g})")
    limits.add_argument("--keepalive-count", dest="keepalive_count_max", type=positive_count,
                        metavar="N",
                        help="give a host up after N unanswered probes, as ServerAliveCountMax "
                             f"(default: inventory keepalive_count_max, ssh_config, else "
                             f"{DEFAULT_KEEPALIVE_COUNT_MAX})")
    limits.add_argument("--retries", type=non_negative_int, default=DEFAULT_RETRIES, metavar="N",
                        help="retry a connection closed during the handshake N times "
                             f"(default {DEFAULT_RETRIES})")
    if accept_new:
        limits.add_argument("--accept-new", action="store_true",
                            help="accept and record unknown host keys (changed keys are "
                                 "always refused)")
    limits.add_argument("--via", type=_via, metavar="RELAY[,RELAY]|none",
                        help="reach every selected host through these relays, tried in order "
                             "(none: directly), over the inventory's via")
    limits.add_argument("--workers", type=positive_count, metavar="N", help=argparse.SUPPRESS)


def _add_authentication_options(parser: argparse.ArgumentParser, *, log_in: bool) -> None:
    """``--ask-pass`` (unless ``log_in`` is false) and ``--insecure-inventory``."""
    auth = parser.add_argument_group("authentication")
    if log_in:
        auth.add_argument("--ask-pass", action="store_true",
                          help="ask one password (on the terminal, without echo) for every "
                               "selected host whose inventory gives none")
    auth.add_argument("--insecure-inventory", action="store_true",
                      help="use an inventory holding passwords even though group or others "
                           "can read it (default: refuse; fix: chmod 600 FILE)")


def add_output_options(parser: argparse.ArgumentParser, *, gather: bool) -> None:
    """Output modes. ``gather``: also the modes that need a command's output (``-b``,
    ``--diff``, ``-o``, ``-e``), which ``batch_run`` has and ``batch_scp`` does not."""
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true",
                        help="JSON Lines on stdout: one object per line and per host result")
    output.add_argument("-q", "--quiet", action="store_true",
                        help="print only the end-of-run summary (on stderr)")
    if gather:
        output.add_argument("-b", "--gather", action="store_true",
                            help="when all hosts are done, print each distinct output once "
                                 "under the folded list of its hosts, largest group first")
        output.add_argument("--diff", action="store_true",
                            help="print the most common output once, then every other as a "
                                 "unified diff against it")
        output.add_argument("--gather-stderr", action="store_true",
                            help="with -b/--diff: gather stderr too (printed to stderr after "
                                 "the run) instead of streaming it as HOST: LINE")
        output.add_argument("-o", "--outdir", metavar="DIR",
                            help="write each host's stdout to DIR/HOST and its result to "
                                 "DIR/HOST.status (created if missing)")
        output.add_argument("-e", "--errdir", metavar="DIR",
                            help="write each host's stderr to DIR/HOST and its result to "
                                 "DIR/HOST.status (created if missing)")
    output.add_argument("-v", "--verbose", action="store_true",
                        help="end with one summary line per failed host and its reason "
                             "(same as --summary full)")
    output.add_argument("--summary", choices=("compact", "full"),
                        help="how the summary lists failures: compact, one line per kind "
                             "with the folded hosts (default; each failure was printed as it "
                             "happened), or full, one line per host (the default with -q)")
    output.add_argument("--debug", action="store_true",
                        help="show a traceback for internal errors")


def check_output_options(args: argparse.Namespace) -> None:
    """Refuse contradictory output modes (before the inventory is read)."""
    gather, diff = getattr(args, "gather", False), getattr(args, "diff", False)
    if gather and diff:
        raise UsageError("-b/--gather and --diff are two views of the same output: give one")
    if args.json and (gather or diff or args.quiet):
        flag = "-q/--quiet" if args.quiet else "--diff" if diff else "-b/--gather"
        raise UsageError(f"--json and {flag} are different output modes: give one")
    if args.quiet and (gather or diff):
        raise UsageError(f"-q/--quiet prints only the summary; it cannot be combined with "
                         f"{'--diff' if diff else '-b/--gather'}")
    if getattr(args, "verbose", False) and getattr(args, "summary", None) == "compact":
        raise UsageError("-v asks for the full summary and --summary compact for the short "
                         "one: give one")
    if getattr(args, "gather_stderr", False) and not (gather or diff):
        raise UsageError("--gather-stderr needs -b/--gather or --diff")
    outdir, errdir = getattr(args, "outdir", None), getattr(args, "errdir", None)
    if outdir is not None and errdir is not None and (
            os.path.abspath(outdir) == os.path.abspath(errdir)):
        raise UsageError("-o and -e must name different directories (both write DIR/HOST)")


def _size(text: str) -> int:
    """A byte count such as ``1048576``, ``512K`` or ``4M`` (binary units)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    number, unit = text.strip(), ""
    if number and number[-1].upper() in "KMG":
        number, unit = number[:-1], number[-1].upper()
    try:
        value = int(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{excerpt(text)} is not a size (e.g. 1048576, 512K, 4M)"
                                         ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{excerpt(text)} must not be negative")
    return value


def add_history_options(parser: argparse.ArgumentParser) -> None:
    """Whether and how much of the run is recorded in the history."""
    history = parser.add_argument_group(
        "history", "Every run is recorded in $XDG_STATE_HOME/hostbatch/history.db (see\n"
                   "'hostbatch history --help'). -h and -x also take @failed (the hosts\n"
                   "that did not succeed in the last run), @failed:ID, @ok and @ok:ID.")
    history.add_argument("--no-history", action="store_true",
                         help="do not record this run in the history")
    history.add_argument("--history-cap", type=_size, default=DEFAULT_OUTPUT_CAP,
                         metavar="SIZE",
                         help="keep at most SIZE bytes of each host's output in the history "
                              "(K, M suffixes; default 1M); the cut is marked")


def build_run_parser(prog: str) -> Parser:
    """The parser for ``batch_run`` / ``hostbatch run``."""
    parser = Parser(
        prog=prog,
        add_help=False,
        allow_abbrev=False,
        description="Run a shell command on many hosts over SSH, in parallel, streaming each "
                    "line as HOST: LINE.",
        epilog=exit_status_help() + RUN_NOTES + RUN_OUTPUT_HELP + RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_options(parser)
    add_output_options(parser, gather=True)
    add_history_options(parser)
    add_rollout_options(parser)
    add_remote_execution_options(parser)
    parser.add_argument("-cmd", "--cmd", dest="command", metavar="COMMAND",
                        help="the command, run by each remote user's shell")
    parser.add_argument("--timeout", type=positive_seconds, metavar="S",
                        help="kill the command on a host after S seconds (default: none)")
    parser.add_argument("words", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                        help="the command may also follow the options")
    return parser


def build_scp_parser(prog: str) -> Parser:
    """The parser for ``batch_scp`` / ``hostbatch scp``."""
    parser = Parser(
        prog=prog,
        add_help=False,
        allow_abbrev=False,
        description="Copy files to (put) or from (get) many hosts, in parallel: files over "
                    "SFTP, trees (-r) as one tar stream per host (SFTP where the host lacks "
                    "GNU tar). Everything lands via a temporary name or a staging directory "
                    "and atomic renames; a get writes LOCAL/HOST/NAME for each host.",
        epilog=exit_status_help(meanings={
            ExitStatus.COMMAND_FAILED: "a transfer failed on some host"}) + RUN_NOTES
        + SCP_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_options(parser)
    add_output_options(parser, gather=False)
    add_history_options(parser)
    add_rollout_options(parser)
    copy = parser.add_argument_group("copy")
    copy.add_argument("paths", nargs="*", metavar="PATH",
                      help="scp's own shape instead of -action/-local/-remote: SRC DEST puts "
                           "SRC on every host as DEST; :REMOTE LOCALDIR gets REMOTE from every "
                           "host into LOCALDIR/HOST/; several sources (SRC... DIR, "
                           ":REMOTE... LOCALDIR) each go into the directory")
    copy.add_argument("-action", "--action", choices=("put", "get"),
                      help="put: local -> hosts; get: hosts -> LOCAL/HOST/")
    copy.add_argument("-local", "--local", metavar="PATH",
                      help="put: the file or tree to send; get: the directory to fill")
    copy.add_argument("-remote", "--remote", metavar="PATH",
                      help="put: target file or directory (DIR/ or an existing directory "
                           "receives DIR/NAME); get: the remote file or tree")
    copy.add_argument("-r", "--recursive", action="store_true", help="copy a directory tree")
    copy.add_argument("-p", "--preserve", action="store_true",
                      help="keep modification times (modes are always kept)")
    copy.add_argument("--verify", action="store_true",
                      help="compare SHA-256 checksums (computed on the host with sha256sum)")
    copy.add_argument("--mkdir", action="store_true",
                      help="put: create missing remote directories")
    copy.add_argument("--timeout", type=positive_seconds, metavar="S",
                      help="per-host deadline for the whole transfer (default: none)")
    sync = parser.add_argument_group("incremental copies")
    sync.add_argument("--sync", action="store_true",
                      help="send only files whose size, mode or modification time differ "
                           "from the destination's copy (keeps modification times)")
    sync.add_argument("--checksum", action="store_true",
                      help="with --sync: compare SHA-256 instead of modification times")
    sync.add_argument("--delete", action="store_true",
                      help="with --sync: remove files under the destination that the source "
                           "does not have (try --dry-run first)")
    sync.add_argument("--dry-run", action="store_true",
                      help="with --sync: list per host what would be sent and deleted; "
                           "change nothing")
    copy.add_argument("--limit-rate", type=_rate, metavar="RATE", default=0,
                      help="at most RATE bytes per second per host (e.g. 500K, 20M)")
    return parser


def _rate(text: str) -> int:
    """A transfer rate in bytes per second (``20M``, ``500K``; binary units), above 0."""
    value = _size(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive rate (e.g. 500K, 20M)")
    return value
