"""The parsed command line as frozen, typed options: argparse's ``Namespace`` stops here.

``batch_run``, ``batch_scp`` and ``hostbatch keyscan`` parse with :mod:`.options`, and
:func:`run_options` converts the result once; everything after it (inputs, renderers,
history, the keyscan report) reads these dataclasses. Commands that lack a flag get its
default, so one conversion serves all three.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from hostbatch.history import DEFAULT_OUTPUT_CAP
from hostbatch.prepare import HostOverrides
from hostbatch.rollout import RolloutPolicy
from hostbatch.selection import Selection
from hostbatch.settings import RunSettings
from hostbatch.userconfig import load_user_config


@dataclass(frozen=True, slots=True)
class SelectionOptions:
    """Which inventory, and which hosts (``-i``, ``-h``, ``-g``, ``-H``, ``-x``, ``--list``)."""

    hosts: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    adhoc: tuple[str, ...] = ()
    inventory: str | None = None
    inventory_format: str = "auto"
    insecure_inventory: bool = False
    list_only: bool = False
    by_relay: bool = False

    @property
    def selection(self) -> Selection:
        """The host expressions, for :func:`hostbatch.selection.select`."""
        return Selection(list(self.hosts), list(self.groups), list(self.exclude),
                         list(self.adhoc))

    def as_recorded(self) -> dict[str, list[str]]:
        """The expressions as the history records them."""
        recorded = {"hosts": list(self.hosts), "groups": list(self.groups),
                    "exclude": list(self.exclude)}
        if self.adhoc:
            recorded["adhoc"] = list(self.adhoc)
        return recorded


@dataclass(frozen=True, slots=True)
class OutputOptions:
    """How results are shown: ``--json``, ``-q``, ``-b``, ``--diff``, ``-o``/``-e`` and
    keyscan's ``--yes``."""

    json: bool = False
    quiet: bool = False
    gather: bool = False
    diff: bool = False
    gather_stderr: bool = False
    outdir: str | None = None
    errdir: str | None = None
    yes: bool = False
    #: ``compact`` or ``full`` (``-v``, ``--summary``); ``None``: full with ``-q``, else compact.
    summary: str | None = None

    @property
    def full_summary(self) -> bool:
        """The summary lists every failed host on its own line: asked for, or ``-q`` (where
        no failure was printed as it happened)."""
        return self.summary == "full" if self.summary is not None else self.quiet

    @property
    def streams_lines(self) -> bool:
        """Output lines go to the terminal as they arrive (the default line mode)."""
        return not (self.quiet or self.gather or self.diff or self.json)


@dataclass(frozen=True, slots=True)
class HistoryOptions:
    """Whether and how much of the run the history keeps (``--no-history``,
    ``--history-cap``)."""

    enabled: bool = True
    cap: int = DEFAULT_OUTPUT_CAP


@dataclass(frozen=True, slots=True)
class InputOptions:
    """What every host reads: the local stdin unless ``--no-stdin``, and ``--script``."""

    read_stdin: bool = True
    script: str | None = None


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Everything one command line asked for besides the action itself."""

    selection: SelectionOptions = field(default_factory=SelectionOptions)
    hosts: HostOverrides = field(default_factory=HostOverrides)
    settings: RunSettings = field(default_factory=RunSettings)
    output: OutputOptions = field(default_factory=OutputOptions)
    history: HistoryOptions = field(default_factory=HistoryOptions)
    inputs: InputOptions = field(default_factory=InputOptions)
    confirm_over: int | None = None


def run_options(args: argparse.Namespace) -> RunOptions:
    """Convert the parsed arguments of ``batch_run``, ``batch_scp`` or ``keyscan``, once."""
    flag = _Flags(args)
    return RunOptions(
        selection=SelectionOptions(
            hosts=tuple(flag("hosts", [])), groups=tuple(flag("groups", [])),
            exclude=tuple(flag("exclude", [])), adhoc=tuple(flag("adhoc", [])),
            inventory=flag("inventory", None),
            inventory_format=flag("inventory_format", "auto"),
            insecure_inventory=flag("insecure_inventory", False),
            list_only=flag("list", False), by_relay=flag("by_relay", False)),
        hosts=HostOverrides(
            user=flag("user", None), connect_timeout=flag("connect_timeout", None),
            keepalive_interval=flag("keepalive_interval", None),
            keepalive_count_max=flag("keepalive_count_max", None),
            ssh_config=flag("ssh_config", None), ask_pass=flag("ask_pass", False),
            ask_sudo_pass=flag("ask_sudo_pass", False),
            config_file=tuple(flag("config_hosts", ())), via=flag("via", None)),
        settings=RunSettings(
            forks=args.forks, retries=args.retries,
            connect_timeout=flag("connect_timeout", None),
            command_timeout=flag("timeout", None), accept_new=flag("accept_new", False),
            workers=flag("workers", None),
            rollout=RolloutPolicy(canary=flag("canary", None) or 0, batch=flag("batch", None),
                                  max_fail=flag("max_fail", None))),
        output=output_options(args),
        history=HistoryOptions(enabled=not flag("no_history", False),
                               cap=flag("history_cap", DEFAULT_OUTPUT_CAP)),
        inputs=InputOptions(read_stdin=not flag("no_stdin", False),
                            script=flag("script", None)),
        confirm_over=flag("confirm_over", None),
    )


def output_options(args: argparse.Namespace) -> OutputOptions:
    """The output options of any command that shows results (``history show`` too)."""
    flag = _Flags(args)
    return OutputOptions(
        json=flag("json", False), quiet=flag("quiet", False), gather=flag("gather", False),
        diff=flag("diff", False), gather_stderr=flag("gather_stderr", False),
        outdir=flag("outdir", None), errdir=flag("errdir", None), yes=flag("yes", False),
        summary=flag("summary", None) or ("full" if flag("verbose", False) else None))


#: ``output = MODE`` of the config file: the flag's destination it stands for.
_OUTPUT_FLAGS = {"gather": "gather", "diff": "diff", "quiet": "quiet", "json": "json"}
#: Run-wide config keys set as parser defaults: key -> destination.
_DEFAULTS = {"forks": "forks", "retries": "retries", "timeout": "timeout"}


def with_user_config(parser: argparse.ArgumentParser, argv: list[str],
                     args: argparse.Namespace, environ: dict[str, str],
                     home: str) -> argparse.Namespace:
    """``args`` again, with the personal defaults of :mod:`hostbatch.userconfig` below the
    command line (a bad config file is a one-line usage error).

    Numbers become the parser's defaults, so a flag given wins; ``output`` applies only when
    the command line names no output mode, ``summary`` only without ``-v``/``--summary``;
    ``color = never`` sets ``NO_COLOR`` in ``environ``. Per-host values travel in
    ``config_hosts`` (they sit below the inventory and ssh_config). Keys for flags this
    command lacks are ignored.
    """
    config = load_user_config(environ, home)
    if config.path is None:
        return args
    run = config.run
    parser.set_defaults(**{dest: run[key] for key, dest in _DEFAULTS.items()
                           if key in run and hasattr(args, dest)})
    if run.get("history") is False and hasattr(args, "no_history"):
        parser.set_defaults(no_history=True)
    args = parser.parse_args(argv)
    mode = _OUTPUT_FLAGS.get(run.get("output", "lines"))
    if mode is not None and hasattr(args, mode) and not any(
            getattr(args, dest, False) for dest in _OUTPUT_FLAGS.values()):
        setattr(args, mode, True)
    if "summary" in run and getattr(args, "summary", "") is None and not args.verbose:
        args.summary = run["summary"]
    if run.get("color") == "never":
        environ["NO_COLOR"] = "1"
    args.config_hosts = tuple(config.hosts.items())
    return args


class _Flags:
    """Reads a flag from the namespace, or its default for a command that lacks it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args

    def __call__(self, name: str, default: Any) -> Any:
        value = getattr(self._args, name, default)
        return default if value is None and default is not None else value
