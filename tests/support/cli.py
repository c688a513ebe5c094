"""Run hostbatch's command-line programs as subprocesses, and read what they print.

Both integration suites (``batch_run`` in ``tests/integration`` and ``batch_scp`` in
``tests/integration/scp``) drive the real installed entry points, never the Python API, so
that argument parsing, exit statuses and output streams are tested as a user meets them.
This module is the one runner they share:

* :class:`Cli` runs a program with a controlled environment: ``HOME`` is a directory of the
  test (so ``~/.ssh`` is empty unless the test fills it), the variables in
  :data:`SCRUBBED_ENV` are never inherited from the developer's shell, and the working
  directory is a directory of the test.  Each run gets a session of its own, so a hung run is
  killed together with every worker process it started.
* :class:`Result` is a finished run; its ``--json`` output is parsed strictly by
  :func:`parse_jsonl` (every stdout line one object with a ``host`` and an ``event``).
* :func:`terminal_events` checks that every selected host ends with exactly one terminal
  event of the right shape (``exit``/``error`` for ``run``, ``done``/``error`` for ``scp``).

The programs are looked up next to the running interpreter (the venv's ``bin``), so the
suites test the hostbatch installed in the interpreter that runs pytest.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: The directory of the running interpreter, where the venv installed the entry points.
BIN = Path(sys.executable).parent
#: ``batch_run``, the single-purpose remote-command program.
BATCH_RUN = str(BIN / "batch_run")
#: ``batch_scp``, the single-purpose file-copy program.
BATCH_SCP = str(BIN / "batch_scp")
#: ``hostbatch``, the program with ``run`` and ``scp`` subcommands.
HOSTBATCH = str(BIN / "hostbatch")
#: The subcommands of ``hostbatch`` that :class:`Cli` knows how to run.
COMMANDS = ("run", "scp")

#: Environment variables a test run never inherits from the developer's shell: an agent,
#: colour switches, a default inventory and terminal sizes would all change what the
#: programs print or which keys they try.
SCRUBBED_ENV = ("SSH_AUTH_SOCK", "SSH_AGENT_PID", "NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE",
                "HOSTBATCH_INVENTORY", "HOSTBATCH_CONFIG", "XDG_CONFIG_HOME", "COLUMNS", "LINES")

#: The terminal events of each subcommand's ``--json`` output: the success event first.
TERMINAL_EVENTS: Mapping[str, tuple[str, str]] = {"run": ("exit", "error"),
                                                  "scp": ("done", "error")}

#: Fields (and their types) that a success event of each subcommand must carry.
_SUCCESS_FIELDS: Mapping[str, Mapping[str, type | tuple[type, ...]]] = {
    "run": {"exit_status": int, "duration": (int, float)},
    "scp": {"files": int, "bytes": int, "duration": (int, float)},
}

#: ``HOST: put LOCAL -> REMOTE (SIZE, RATE)`` (also ``get``): a per-file line of ``scp``.
UNIT = r"(?:\d+ B|\d+\.\d (?:KiB|MiB|GiB|TiB))"
FILE_LINE = re.compile(
    rf"^(?P<host>[^:\s]+): (?P<action>put|get) (?P<source>.+) -> (?P<destination>.+) "
    rf"\((?P<size>{UNIT}), (?P<rate>{UNIT}/s)\)$")


# ------------------------------------------------------------------ parsing output


def split_lines(text: str) -> list[str]:
    """Lines of ``text`` split on ``\\n`` only (a final newline does not start a new line).

    Unlike :meth:`str.splitlines`, a ``\\r`` or other Unicode line break inside a line (as a
    remote command may print) stays part of that line.
    """
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def parse_jsonl(text: str) -> list[dict[str, Any]]:
    """Parse JSON Lines strictly: every line is a JSON object with a host and an event."""
    events = []
    for number, line in enumerate(split_lines(text), 1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"stdout line {number} is not JSON: {line[:300]!r}") from exc
        assert isinstance(obj, dict), line
        assert isinstance(obj.get("host"), str), line
        assert isinstance(obj.get("event"), str), line
        events.append(obj)
    return events


def terminal_events(events: Iterable[Mapping[str, Any]], hosts: Iterable[str],
                    command: str = "run") -> dict[str, dict[str, Any]]:
    """The terminal event of each host; exactly one per selected host, none for others.

    ``command`` (``run`` or ``scp``) says which events are terminal and which fields a
    success event must have; every ``error`` event must have a ``kind`` and an ``error``.
    """
    success, failure = TERMINAL_EVENTS[command]
    found: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event["event"] in (success, failure):
            found.setdefault(event["host"], []).append(dict(event))
    wanted = set(hosts)
    assert set(found) == wanted, f"terminal events for {sorted(found)}, expected {sorted(wanted)}"
    for host, items in found.items():
        assert len(items) == 1, f"{host} has {len(items)} terminal events: {items}"
        item = items[0]
        if item["event"] == success:
            for name, kind in _SUCCESS_FIELDS[command].items():
                assert isinstance(item[name], kind), item
        else:
            assert isinstance(item["kind"], str), item
            assert isinstance(item["error"], str), item
    return {host: items[0] for host, items in found.items()}


def json_lines(events: Iterable[Mapping[str, Any]], host: str, stream: str) -> list[str]:
    """The ``data`` of every ``stream`` event (``stdout``/``stderr``) of ``host``, in order."""
    return [e["data"] for e in events if e["host"] == host and e["event"] == stream]


def host_lines(text: str, hosts: Iterable[str], *, strict: bool = True) -> dict[str, list[str]]:
    """Group ``HOST: LINE`` lines by host.  With ``strict``, every line must be a host line."""
    hosts = list(hosts)
    result: dict[str, list[str]] = {host: [] for host in hosts}
    for line in split_lines(text):
        host, sep, rest = line.partition(": ")
        if sep and host in result:
            result[host].append(rest)
        elif strict:
            raise AssertionError(f"line is not 'HOST: LINE' for a selected host: {line[:200]!r}")
    return result


# ------------------------------------------------------------------ results


@dataclass
class Result:
    """A finished CLI run: what ran, how it ended, what it printed and how long it took.

    ``command`` is the subcommand that ran (``run`` or ``scp``); it decides which events
    :meth:`terminals` treats as terminal.  ``str(result)`` is meant for assertion messages.
    """

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration: float
    command: str = "run"

    def __str__(self) -> str:
        return (f"argv={self.argv}\nstatus={self.returncode} after {self.duration:.2f}s\n"
                f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}")

    def events(self) -> list[dict[str, Any]]:
        """The ``--json`` events; every stdout line must be one JSON object."""
        return parse_jsonl(self.stdout)

    def terminals(self, hosts: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Exactly one terminal event per selected host, none for others (see
        :func:`terminal_events`)."""
        return terminal_events(self.events(), hosts, self.command)

    def file_lines(self) -> list[re.Match[str]]:
        """Every stdout line, each parsed as an ``scp`` per-file line (:data:`FILE_LINE`)."""
        matches = []
        for line in split_lines(self.stdout):
            match = FILE_LINE.match(line)
            assert match, f"stdout line is not 'HOST: put|get SRC -> DST (SIZE, RATE)': {line!r}"
            matches.append(match)
        return matches


def assert_no_traceback(result: Result) -> None:
    """Neither output stream of ``result`` holds a Python traceback (an unhandled error)."""
    assert "Traceback" not in result.stderr, str(result)
    assert "Traceback" not in result.stdout, str(result)


# ------------------------------------------------------------------ the runner


class Cli:
    """Runs one hostbatch subcommand (``run`` or ``scp``) as a subprocess in a controlled
    environment (see the module docstring).

    ``via`` picks the entry point for a run:

    * ``"batch_run"`` / ``"batch_scp"``: the single-purpose program of ``command`` (default);
    * ``"hostbatch"``: ``hostbatch COMMAND``;
    * ``"module"``: ``python -m hostbatch COMMAND``.

    ``timeout`` is the default limit of :meth:`run`, after which the run counts as hung and
    is killed with its whole process group.  ``new_session`` is the default of
    ``start_new_session`` for :meth:`popen` (runs from :meth:`run` always get a session).
    """

    def __init__(self, home: Path, cwd: Path, *, command: str = "run", timeout: float = 60,
                 new_session: bool = False) -> None:
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}, not one of {COMMANDS}")
        self.home = home
        self.cwd = cwd
        self.command = command
        self.timeout = timeout
        self.new_session = new_session
        home.mkdir(parents=True, exist_ok=True)
        cwd.mkdir(parents=True, exist_ok=True)

    @property
    def program(self) -> str:
        """Path of the single-purpose program (``batch_run`` or ``batch_scp``)."""
        return str(BIN / f"batch_{self.command}")

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a run: this process's, scrubbed, with ``HOME`` and ``extra``."""
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        env["HOME"] = str(self.home)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra or {})
        return env

    def argv(self, args: Sequence[str | Path], via: str | None = None) -> list[str]:
        """The command line running ``args`` through entry point ``via`` (see the class)."""
        words = [str(a) for a in args]
        if via is None or via == f"batch_{self.command}":
            return [self.program, *words]
        if via == "hostbatch":
            return [HOSTBATCH, self.command, *words]
        if via == "module":
            return [sys.executable, "-m", "hostbatch", self.command, *words]
        raise ValueError(via)

    def run(self, *args: str | Path, via: str | None = None,
            env: Mapping[str, str] | None = None, timeout: float | None = None,
            wrapper: Sequence[str] = ()) -> Result:
        """Run to completion (stdin is ``/dev/null``) and return the :class:`Result`.

        ``wrapper`` is prepended to the command line (``/usr/bin/time -v``, ``setpriv ...``).
        A run still going after ``timeout`` seconds is killed and fails the test as hung.
        """
        limit = self.timeout if timeout is None else timeout
        argv = [*wrapper, *self.argv(args, via)]
        start = time.monotonic()
        # A session of its own, so a hung run can be killed with all its worker processes.
        proc = subprocess.Popen(argv, env=self.env(env), cwd=self.cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise AssertionError(
                f"hostbatch did not finish within {limit}s (hung); argv={argv}\n"
                f"last stdout: {stdout[-800:]!r}\nlast stderr: {stderr[-800:]!r}") from None
        duration = time.monotonic() - start
        return Result(argv, proc.returncode, stdout.decode("utf-8"), stderr.decode("utf-8"),
                      duration, self.command)

    def popen(self, *args: str | Path, via: str | None = None,
              env: Mapping[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a run and return it unfinished, for tests that signal or read it live.

        stdout and stderr default to pipes and stdin to ``/dev/null``; ``kwargs`` go to
        :class:`subprocess.Popen` (``start_new_session`` defaults to ``new_session``).
        The caller must wait for (or kill) the process.
        """
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("start_new_session", self.new_session)
        return subprocess.Popen(self.argv(args, via), env=self.env(env), cwd=self.cwd, **kwargs)


# ------------------------------------------------------------------ environment checks


def require_environment(program: str, why: str = "sshd fleet, test user") -> None:
    """Skip the calling test unless it can run: root, OpenSSH ``sshd`` and ``program``.

    ``why`` says what root is needed for (it is shown in the skip reason).
    """
    if os.geteuid() != 0:
        pytest.skip(f"integration tests need root ({why})")
    if shutil.which("sshd", path="/usr/sbin:/usr/bin:/sbin") is None:
        pytest.skip("OpenSSH sshd is not installed")
    if not Path(program).exists():
        pytest.skip(f"{program} is missing: install hostbatch into this interpreter's venv")


def run_with_pty_stderr(cli: Cli, *args: str | Path, env: Mapping[str, str] | None = None,
                        timeout: float = 60) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (120x30) and stdout on a pipe."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    proc = cli.popen(*args, stdout=subprocess.PIPE, stderr=slave, start_new_session=True,
                     env={"TERM": "xterm-256color", **(env or {})})
    os.close(slave)
    assert proc.stdout is not None
    stdout_fd = proc.stdout.fileno()
    out, err = b"", b""
    open_fds = {stdout_fd, master}
    deadline = time.monotonic() + timeout
    try:
        while open_fds:
            assert time.monotonic() < deadline, f"hung: {err[-500:]!r}"
            ready, _, _ = select.select(list(open_fds), [], [], 0.5)
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError as exc:  # EIO: the pty's last writer is gone
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    open_fds.discard(fd)
                elif fd == master:
                    err += data
                else:
                    out += data
        status = proc.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        os.close(master)
        proc.stdout.close()
    return status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def answer_prompt_on_pty(cli: Cli, prompt: bytes, typed: bytes,
                         *args: str | Path) -> tuple[int, bytes, str]:
    """Run with stdin and stderr on a pseudo-terminal, type ``typed`` once ``prompt`` shows;
    return the exit status, everything the terminal showed, and stdout."""
    master, slave = pty.openpty()
    try:
        proc = cli.popen(*args, stdin=slave, stderr=slave, start_new_session=True)
    finally:
        os.close(slave)
    shown = b""
    try:
        deadline = time.monotonic() + 30
        while prompt not in shown and time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                shown += os.read(master, 4096)
        assert prompt in shown, shown
        os.write(master, typed)
        assert proc.stdout is not None
        stdout = proc.stdout.read().decode()
        status = proc.wait(timeout=30)
        while select.select([master], [], [], 0.2)[0]:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            shown += data
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return status, shown, stdout
