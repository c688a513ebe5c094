"""The console's loop: read a line, run it on the selection or act on a special command.

The state of a session is small: the starting selection and the current one (host names in
inventory order), the output mode, ``sudo``, the command timeout, and the last command's
result (for ``:failed``, ``:ok`` and ``:hosts``). Connections live in the standing workers;
a host added with ``:add`` connects when the next command runs.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from hostbatch.actions import RunCommand
from hostbatch.console.command import (
    ENDING_SIGNALS,
    ConsoleIO,
    connect,
    failed_hosts,
    run_command,
    state_of,
)
from hostbatch.console.specials import help_text, parse_line, split_expressions
from hostbatch.console.terminal import SessionEnd, Terminal
from hostbatch.engine.outcome import BatchResult
from hostbatch.errors import HostbatchError, UsageError, excerpt
from hostbatch.exit_status import ExitStatus
from hostbatch.inventory.model import HostSpec, Inventory
from hostbatch.nodeset import fold_text
from hostbatch.secrets import redact
from hostbatch.selection import Selection, select

#: The longest folded selection shown in the prompt; a longer one is cut with "...".
PROMPT_WIDTH = 40
HISTORY_SHOWN = 20

#: Turns host names into finished hosts (settings resolved, credentials settled).
Resolve = Callable[[list[HostSpec]], list[HostSpec]]
#: Replaces ``@failed``/``@ok`` shortcuts of a selection with host names.
Shortcuts = Callable[[Selection], Selection]


@dataclass
class ConsoleSettings:
    """What the command line asked of the session."""

    sudo: bool = False
    env: tuple[tuple[str, str], ...] = ()
    idle_timeout: float = 1800.0


class Console:
    """One interactive session on ``hosts`` (already finished and settled)."""

    def __init__(self, io: ConsoleIO, inventory: Inventory, hosts: list[HostSpec],
                 terminal: Terminal, settings: ConsoleSettings, resolve: Resolve,
                 shortcuts: Shortcuts) -> None:
        self.io = io
        self.inventory = inventory
        self.terminal = terminal
        self.settings = settings
        self.resolve = resolve
        self.shortcuts = shortcuts
        self.specs = {spec.name: spec for spec in hosts}
        self.start = [spec.name for spec in hosts]
        self.selection = list(self.start)
        self.gather = io.options.output.gather
        self.sudo = settings.sudo
        self.timeout = io.options.settings.command_timeout
        self.last: BatchResult | None = None
        self.reasons: dict[str, str] = {}

    # --- the loop ---------------------------------------------------------------------
    def prompt(self) -> str:
        """``web[01-40] (40)> ``: the selection folded, its size, and ``sudo`` when on."""
        folded = fold_text(self.selection)
        if len(folded) > PROMPT_WIDTH:
            folded = folded[:PROMPT_WIDTH - 3] + "..."
        return f"{folded} ({len(self.selection)}){' sudo' if self.sudo else ''}> "

    def loop(self) -> int:
        """Connect, then read and run lines until :quit, Ctrl-D, the idle timeout or a
        SIGTERM/SIGHUP; returns the exit status (0)."""
        self._note(connect(self.io, [self.specs[name] for name in self.selection]))
        while True:
            try:
                line = self.terminal.read(self.prompt(), self.settings.idle_timeout)
            except EOFError:
                self._say("\n")
                return ExitStatus.OK
            except KeyboardInterrupt:
                self._say("\n")
                continue
            except SessionEnd as end:
                self._say(f"\nhostbatch: {end.reason}: closing the connections\n")
                return ExitStatus.OK
            try:
                if not self.handle(line):
                    return ExitStatus.OK
            except HostbatchError as exc:
                self._say(f"hostbatch: error: {redact(str(exc))}\n")

    def _say(self, text: str) -> None:
        self.io.stdout.flush()
        self.io.stderr.write(text.encode())
        self.io.stderr.flush()

    def handle(self, text: str) -> bool:
        """Act on one line; False when the session should end."""
        line = parse_line(text)
        if line.kind == "remote":
            return self.run(line.text)
        if line.kind == "local":
            self.local(line.text)
        elif line.kind == "special":
            return self.special(line.text, line.argument)
        return True

    # --- commands ---------------------------------------------------------------------
    def run(self, command: str) -> bool:
        """Run ``command`` on the selection; False if a SIGTERM/SIGHUP came meanwhile."""
        hosts = [self.specs[name] for name in self.selection]
        action = RunCommand(command, env=self.settings.env, sudo=self.sudo)
        output = dataclasses.replace(self.io.options.output, gather=self.gather)
        self.io.pool.revive()
        result, signum = run_command(self.io, hosts, action, output, self.timeout)
        self._note(result)
        self.last = result
        return signum not in ENDING_SIGNALS

    def _note(self, result: BatchResult) -> None:
        """Keep each host's latest connection failure, for ``:hosts``."""
        for host, outcome in result.outcomes.items():
            if outcome.exit_status is not None:
                self.reasons.pop(host, None)
            elif outcome.failure is not None:
                self.reasons[host] = f"{outcome.failure.value}: {' '.join(outcome.message.split())}"

    def local(self, command: str) -> None:
        """``!CMD``: run CMD in the local shell, on the console's terminal."""
        if not command:
            raise UsageError("!CMD: give a command to run locally")
        self.io.stdout.flush()
        # Ctrl-C belongs to the local command: a handler (not SIG_IGN, which it would
        # inherit) keeps the console alive meanwhile.
        previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
        try:
            # The user's own local shell line, as clush's `!`: /bin/sh parses it.
            status = subprocess.call(["/bin/sh", "-c", command], env=dict(self.io.env.environ))
        finally:
            signal.signal(signal.SIGINT, previous)
        if status != 0:
            self._say(f"hostbatch: local command exit status {status}\n")

    def special(self, name: str, argument: str) -> bool:
        """Act on a special command; False for :quit."""
        if name == "quit":
            return False
        actions: dict[str, Callable[[str], None]] = {
            "gather": self._gather, "hosts": self._hosts, "add": self._add,
            "remove": self._remove, "failed": self._narrow, "ok": self._narrow,
            "all": self._all, "sudo": self._sudo, "timeout": self._timeout,
            "history": self._history, "help": lambda _: self._say(help_text()),
        }
        if name in ("failed", "ok"):
            argument = name
        actions[name](argument)
        return True

    def _gather(self, _: str) -> None:
        self.gather = not self.gather
        self._say(f"output: {'gathered (as -b)' if self.gather else 'streamed HOST: LINE'}\n")

    def _sudo(self, _: str) -> None:
        self.sudo = not self.sudo
        self._say(f"sudo: {'on' if self.sudo else 'off'}\n")

    def _timeout(self, argument: str) -> None:
        if argument:
            try:
                seconds = float(argument)
            except ValueError:
                raise UsageError(f":timeout {excerpt(argument)}: give seconds, e.g. "
                                 ":timeout 30 (0: no limit)") from None
            if seconds < 0 or seconds != seconds:
                raise UsageError(":timeout: seconds must be 0 or more")
            self.timeout = seconds or None
        shown = "none" if self.timeout is None else f"{self.timeout:g}s"
        self._say(f"timeout: {shown}\n")

    def _history(self, argument: str) -> None:
        count = HISTORY_SHOWN
        if argument:
            if not argument.isdigit():
                raise UsageError(f":history {excerpt(argument)}: give a number of lines")
            count = int(argument)
        for number, line in self.terminal.recent(count):
            self._say(f"{number:5}  {line}\n")

    # --- the selection ----------------------------------------------------------------
    def _names(self, text: str, what: str) -> list[str]:
        hosts, groups = split_expressions(text)
        if not hosts and not groups:
            raise UsageError(f":{what} HOSTS: give names, ranges, globs, @group or @failed")
        selection = self.shortcuts(Selection(hosts, groups))
        return [spec.name for spec in select(self.inventory, selection)]

    def _set_selection(self, names: set[str], verb: str, changed: list[str]) -> None:
        if not names:
            raise UsageError("that would leave no host selected; the selection is unchanged")
        missing = [self.inventory.hosts[name] for name in names if name not in self.specs]
        if missing:
            self.specs.update((spec.name, spec) for spec in self.resolve(missing))
        order = list(self.inventory.hosts)
        self.selection = [name for name in order if name in names]
        listed = fold_text(changed) if changed else "no host"
        self._say(f"{verb} {listed}; selection: {fold_text(self.selection)} "
                  f"({len(self.selection)})\n")

    def _add(self, argument: str) -> None:
        names = self._names(argument, "add")
        added = [name for name in names if name not in self.selection]
        self._set_selection(set(self.selection) | set(names), "added", added)

    def _remove(self, argument: str) -> None:
        names = set(self._names(argument, "remove"))
        removed = [name for name in self.selection if name in names]
        self._set_selection(set(self.selection) - names, "removed", removed)

    def _narrow(self, which: str) -> None:
        if self.last is None:
            raise UsageError(f":{which}: no command has run yet")
        failed = set(failed_hosts(self.last))
        kept = [name for name in self.last.hosts if (name in failed) == (which == "failed")]
        if not kept:
            raise UsageError(f":{which}: no host {'failed' if which == 'failed' else 'succeeded'}"
                             " in the last command; the selection is unchanged")
        self._set_selection(set(kept), "kept", kept)

    def _all(self, _: str) -> None:
        self._set_selection(set(self.start), "restored", self.start)

    def _hosts(self, _: str) -> None:
        """The selection folded, then its hosts grouped by connection state."""
        states = self.io.pool.states()
        groups: dict[str, list[str]] = {}
        for name in self.selection:
            if states.get(name):
                label = "connected"
            else:
                label = "not connected" + (f" ({self.reasons[name]})"
                                           if name in self.reasons else "")
            if self.last is not None and name in self.last.outcomes:
                label += f", last command: {state_of(self.last, name)}"
            groups.setdefault(label, []).append(name)
        lines = [f"{fold_text(self.selection)} ({len(self.selection)} host"
                 f"{'s' if len(self.selection) != 1 else ''})"]
        lines += [f"  {fold_text(names)}: {label}" for label, names in groups.items()]
        self._say("\n".join(lines) + "\n")

