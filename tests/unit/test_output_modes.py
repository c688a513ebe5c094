"""Gather, diff and per-host file renderers, and the spool behind them, fed events directly."""

from __future__ import annotations

import io
import os
import random
import stat
from pathlib import Path

import pytest

from hostbatch.engine.events import Event, HostExited, HostFailed, HostStarted, OutputLines
from hostbatch.errors import FailureKind
from hostbatch.render import spool
from hostbatch.render.diff import SAME, DiffRenderer
from hostbatch.render.files import HostFilesRenderer, status_text
from hostbatch.render.gather import GroupedRenderer
from hostbatch.render.output import SafeStream
from hostbatch.render.spool import OutputCollector


def out(host: str, text: str, stream: str = "stdout") -> OutputLines:
    return OutputLines(host, stream, text.encode())  # type: ignore[arg-type]


def grouped(kind: type[GroupedRenderer], events: list[Event], *,
            gather_stderr: bool = False) -> tuple[str, str]:
    stdout, stderr = io.BytesIO(), io.BytesIO()
    renderer = kind(SafeStream(stdout), SafeStream(stderr), gather_stderr=gather_stderr,
                    color_stdout=False, color_stderr=False,
                    addresses={"down1": "127.109.9.1", "down2": "127.109.9.2"})
    for event in events:
        renderer.handle(event)
    renderer.close()
    return stdout.getvalue().decode(), stderr.getvalue().decode()


def refused(host: str) -> HostFailed:
    address = {"down1": "127.109.9.1", "down2": "127.109.9.2"}[host]
    return HostFailed(host, FailureKind.CONNECT, f"connection refused by {address} port 22")


RUN = [
    out("web01", "a\nb\n"), out("web02", "a\n"), out("web03", "a\nb\n"), out("web02", "b\n"),
    out("db1", "b\na\n"), out("web03", "warn\n", "stderr"),
    HostExited("web01", 0, 0.1), HostExited("web02", 0, 0.2), HostExited("web03", 0, 0.1),
    HostExited("db1", 0, 0.1), out("web04", "a\nb\n"), HostExited("web04", 2, 0.1),
    refused("down1"), refused("down2"),
    HostFailed("db2", FailureKind.TIMEOUT, "command timed out after 1s", 1.0),
]


def test_gather_groups_identical_bytes_largest_first() -> None:
    stdout, stderr = grouped(GroupedRenderer, RUN)
    assert stdout == (
        "---- web[01-03] (3) ----\na\nb\n"
        "---- db1 (1) ----\nb\na\n"
        "---- web04 (1) exit status 2 ----\na\nb\n"
        "---- down[1-2] (2) connect: connection refused by <host> port 22 ----\n"
        "---- db2 (1) timeout: command timed out after 1s ----\n")
    assert stderr == "web03: warn\n"  # streamed, not gathered


def test_gather_stderr_groups_stderr_on_stderr() -> None:
    events = [out("h1", "x\n"), out("h2", "x\n"), out("h1", "e\n", "stderr"),
              out("h2", "e\n", "stderr"), HostExited("h1", 0, 0.1), HostExited("h2", 1, 0.1),
              HostExited("h3", 0, 0.1)]
    stdout, stderr = grouped(GroupedRenderer, events, gather_stderr=True)
    # Same stdout, different exit status: two groups; equal sizes in natural host order.
    assert stdout == "---- h1 (1) ----\nx\n---- h2 (1) exit status 1 ----\nx\n---- h3 (1) ----\n"
    assert stderr == "---- h[1-2] (2) stderr ----\ne\n"


def test_gather_keeps_big_outputs_on_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool, "SPOOL_LIMIT", 100)
    monkeypatch.setattr(spool, "KEEP_IN_MEMORY", 10)
    monkeypatch.setattr(spool, "CHUNK", 7)
    big = "".join(f"line é {n}\n" for n in range(200))
    other = big.replace("line é 150", "line X 150")
    events: list[Event] = []
    for host in ("h1", "h2", "h3"):
        events += [out(host, big[:500]), out(host, big[500:])]
    events += [out("h4", other), *(HostExited(h, 0, 0.1) for h in ("h1", "h2", "h3", "h4"))]
    stdout, _ = grouped(GroupedRenderer, events)
    assert stdout == f"---- h[1-3] (3) ----\n{big}---- h4 (1) ----\n{other}"


def test_collector_drops_duplicate_content() -> None:
    collector = OutputCollector()
    for host in ("a1", "a2"):
        collector.add(host, b"same\n")
        collector.finish(HostExited(host, 0, 0.1))
    (group,) = collector.groups()
    assert group.hosts == ["a1", "a2"] and collector.content(group) == b"same\n"
    collector.close()


def test_diff_shows_reference_then_unified_diffs() -> None:
    stdout, _ = grouped(DiffRenderer, RUN)
    assert stdout == (
        "---- web[01-03] (3) ----\na\nb\n"
        "---- db1 (1) ----\n--- web[01-03]\n+++ db1\n@@ -1,2 +1,2 @@\n+b\n a\n-b\n"
        f"---- web04 (1) exit status 2 ----\n{SAME.decode()}"
        "---- down[1-2] (2) connect: connection refused by <host> port 22 ----\n"
        "---- db2 (1) timeout: command timed out after 1s ----\n")


def test_diff_without_any_host_that_ran_prints_the_groups() -> None:
    stdout, _ = grouped(DiffRenderer, [refused("down1")])
    assert stdout == "---- down1 (1) connect: connection refused by <host> port 22 ----\n"


# --------------------------------------------------------------------------- -o / -e


def test_host_files_are_atomic_and_complete(tmp_path: Path) -> None:
    outdir, errdir = tmp_path / "out", tmp_path / "err"
    outdir.mkdir()
    errdir.mkdir()
    warnings: list[str] = []
    renderer = HostFilesRenderer(outdir, errdir, warn=warnings.append)
    renderer.handle(HostStarted("h1", 0))
    renderer.handle(out("h1", "one\n"))
    assert not (outdir / "h1").exists()  # never visible half-written
    assert len(os.listdir(outdir)) == 1 and os.listdir(outdir)[0].endswith(".part")
    renderer.handle(out("h1", "e\n", "stderr"))
    renderer.handle(out("h1", "two\n"))
    renderer.handle(HostExited("h1", 3, 0.1))
    renderer.handle(refused("down1"))
    renderer.close()
    assert (outdir / "h1").read_bytes() == b"one\ntwo\n"
    assert (errdir / "h1").read_bytes() == b"e\n"
    assert (outdir / "h1.status").read_text() == (errdir / "h1.status").read_text() == "3\n"
    assert (outdir / "down1").read_bytes() == b""
    assert (outdir / "down1.status").read_text() == (
        "error connect: connection refused by 127.109.9.1 port 22\n")
    assert sorted(os.listdir(outdir)) == ["down1", "down1.status", "h1", "h1.status"]
    assert stat.S_IMODE((outdir / "h1").stat().st_mode) == 0o600
    assert warnings == []


def test_host_files_write_error_is_a_warning(tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    outdir.mkdir()
    warnings: list[str] = []
    renderer = HostFilesRenderer(outdir, None, warn=warnings.append)
    renderer.handle(out("h1", "one\n"))
    for name in os.listdir(outdir):
        os.unlink(outdir / name)
    outdir.rmdir()
    renderer.handle(HostExited("h1", 0, 0.1))
    renderer.handle(HostExited("h2", 0, 0.1))
    renderer.close()
    # Each host's output and its status file are written (and warned about) separately.
    assert [w.split(": cannot write ")[0] for w in warnings] == ["h1", "h1", "h2", "h2"], warnings
    assert warnings[1].endswith("h1.status: No such file or directory"), warnings


def test_status_text_is_one_line() -> None:
    assert status_text(HostExited("h", 0, 0.1)) == "0\n"
    assert status_text(HostFailed("h", FailureKind.AUTH, "a\nb")) == "error auth: a b\n"


def test_summary_lists_every_failed_host_on_one_line_each() -> None:
    from hostbatch.engine.outcome import BatchResult
    from hostbatch.render.summary import format_summary

    hosts = [f"h{n:03d}" for n in range(40)]
    result = BatchResult(hosts)
    for host in hosts:
        result.record(HostFailed(host, FailureKind.AUTH, "denied\nby policy", 0.1))
    text = format_summary(result, 1.0, color=False, full=True)
    lines = text.splitlines()
    assert len(lines) == 41, text  # the count line, then all 40 hosts: never truncated
    assert all(line.endswith("auth: denied by policy") for line in lines[1:]), text
    # Compact (the default): one line for the kind, every host named in the folded list.
    assert format_summary(result, 1.0, color=False).splitlines()[1:] == [
        "  auth failed (40): h[000-039]"]


@pytest.mark.parametrize(
    ("address", "message", "expected"),
    [
        ("127.100.0.1", "connection refused by 127.100.0.1 port 22",
         "connect: connection refused by <host> port 22"),
        ("a", "cannot connect to a port 22: a b", "connect: cannot connect to <host> port 22: "
                                                  "<host> b"),
        ("a", "cannot resolve 'a': Name unknown", "connect: cannot resolve '<host>': Name unknown"),
        ("127.100.0.1", "refused by 127.100.0.10 port 22",
         "connect: refused by 127.100.0.10 port 22"),
        ("web1", "reset by web1.lan.", "connect: reset by web1.lan."),
        ("web1", "reset by web1.", "connect: reset by <host>."),
    ],
)
def test_failure_reason_names_the_address_generically(address: str, message: str,
                                                       expected: str) -> None:
    event = HostFailed("x", FailureKind.CONNECT, message)
    assert spool.ending_of(event, address) == expected


def apply_unified(a: list[str], diff: list[str]) -> list[str]:
    """Apply a unified diff (our output) to ``a``; checks every context and removed line."""
    result: list[str] = []
    position = 0  # next line of a not yet copied
    for line in diff[2:]:
        if line.startswith("@@ "):
            start = int(line.split()[1].split(",")[0].lstrip("-"))
            length = int(line.split()[1].split(",")[1]) if "," in line.split()[1] else 1
            target = start - 1 if length else start
            result += a[position:target]
            position = target
        elif line.startswith(" ") or line.startswith("-"):
            assert a[position] == line[1:], (a[position], line)
            if line.startswith(" "):
                result.append(line[1:])
            position += 1
        else:
            assert line.startswith("+"), line
            result.append(line[1:])
    return result + a[position:]


@pytest.mark.parametrize("seed", range(200))
def test_trimmed_diff_is_a_correct_patch(seed: int) -> None:
    from hostbatch.render.diff import unified

    rng = random.Random(seed)
    a = [f"l{rng.randrange(8)}\n" for _ in range(rng.randrange(0, 40))]
    b = list(a)
    for _ in range(rng.randrange(1, 4)):
        where = rng.randrange(len(b) + 1)
        if rng.random() < 0.5 and where < len(b):
            del b[where]
        else:
            b.insert(where, f"new{rng.randrange(3)}\n")
    if a == b:
        return
    diff = [line.decode() for line in unified("".join(a).encode(), "".join(b).encode(),
                                              "ref", "other")]
    assert diff[:2] == ["--- ref\n", "+++ other\n"]
    assert apply_unified(a, diff) == b


def test_diff_of_a_long_output_names_the_real_line_numbers() -> None:
    from hostbatch.render.diff import unified

    a = "".join(f"{n}\n" for n in range(1, 100001)).encode()
    b = a.replace(b"\n50000\n", b"\nfifty thousand\n")
    assert unified(a, b, "r", "o") == [
        b"--- r\n", b"+++ o\n", b"@@ -49997,7 +49997,7 @@\n", b" 49997\n", b" 49998\n",
        b" 49999\n", b"-50000\n", b"+fifty thousand\n", b" 50001\n", b" 50002\n", b" 50003\n"]


def test_diff_refuses_outputs_too_big_to_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    from hostbatch.render import diff

    monkeypatch.setattr(diff, "DIFF_MAX_BYTES", 10)
    stdout, _ = grouped(DiffRenderer, [out("h1", "short\n"), out("h2", "a longer line\n"),
                                       out("h3", "short\n"), *(HostExited(h, 0, 0.1)
                                                               for h in ("h1", "h2", "h3"))])
    assert stdout == ("---- h[1,3] (2) ----\nshort\n---- h2 (1) ----\n(too large to diff: 14 "
                      "bytes against the reference's 6; write the outputs with -o DIR and diff "
                      "the files)\n")


def test_run_progress_counts_hosts() -> None:
    from hostbatch.render.progress import RunProgressRenderer

    terminal = io.BytesIO()
    progress = RunProgressRenderer(terminal, hosts=4, color=False)  # type: ignore[arg-type]
    events: list[Event] = [HostStarted("a", 0), HostStarted("b", 0), HostStarted("c", 0),
                           HostExited("a", 0, 0.1), HostExited("b", 1, 0.1),
                           refused("down1")]
    for event in events:
        progress.handle(event)
    assert progress._describe() == "done 3 / running 1 / failed 2 / total 4"
    progress.close()
    drawn = terminal.getvalue().decode()
    assert "total 4" in drawn and "\x1b[3" not in drawn  # drawn, without colour


def test_failure_messages_never_show_a_secret() -> None:
    from hostbatch.secrets import Secret

    secret = Secret("pw-Zq81-unique")
    event = HostFailed("h", FailureKind.AUTH, f"rejected {secret.reveal()}\nagain")
    assert status_text(event) == "error auth: rejected *** again\n"
    assert spool.ending_of(event) == "auth: rejected *** again"


def test_waiting_names_the_longest_running_hosts_once_few_remain() -> None:
    from hostbatch.render.progress import WAITING_WHEN, waiting_text

    started = {"web07": 100.0, "web09": 109.0, "db01": 104.0, "db02": 110.0}
    assert waiting_text(started, 4, 112.0) == (
        "waiting: web07 (12s), db01 (8s), web09 (3s) and 1 more")
    assert waiting_text({"web07": 100.0}, 1, 112.4) == "waiting: web07 (12s)"
    assert waiting_text(started, WAITING_WHEN + 1, 112.0) == ""  # many remain: counts only
    assert waiting_text({}, 3, 112.0) == ""  # none started yet (a rollout between waves)
    assert waiting_text({"a": 0.0}, 0, 1.0) == ""


@pytest.mark.parametrize(("done", "hosts", "staged", "shown"), [
    (2, 4, False, False),  # too few hosts done for a rate
    (3, 500, False, False),  # 3 of 500: not yet 5%
    (25, 500, False, True),
    (400, 500, True, False),  # --canary / --batch: waves wait for each other
])
def test_eta_only_when_meaningful(done: int, hosts: int, staged: bool, shown: bool) -> None:
    from hostbatch.render.progress import eta_meaningful

    assert eta_meaningful(done, hosts, staged=staged) is shown


def test_run_progress_waits_for_stragglers_instead_of_an_eta() -> None:
    from hostbatch.render.progress import RunProgressRenderer

    now = [1000.0]
    terminal = io.BytesIO()
    progress = RunProgressRenderer(terminal, hosts=40, color=False,  # type: ignore[arg-type]
                                   clock=lambda: now[0])
    for n in range(40):
        progress.handle(HostStarted(f"h{n:02d}", 0))
    assert progress.waiting() == "" and not progress.shows_eta()  # nothing done yet
    for n in range(20):
        progress.handle(HostExited(f"h{n:02d}", 0, 0.1))
    assert progress.shows_eta() and progress.waiting() == ""
    now[0] += 30
    for n in range(20, 38):
        progress.handle(HostExited(f"h{n:02d}", 0, 0.1))
    assert progress.waiting() == "waiting: h38 (30s), h39 (30s)"
    assert not progress.shows_eta()
    progress.progress.refresh()
    drawn = terminal.getvalue().decode()
    assert "waiting: h38 (30s), h39 (30s)" in drawn and "eta" not in drawn, drawn[-300:]
    progress.close()
    staged = RunProgressRenderer(io.BytesIO(), hosts=40, color=False,  # type: ignore[arg-type]
                                 staged=True)
    for n in range(20):
        staged.handle(HostStarted(f"h{n:02d}", 0))
        staged.handle(HostExited(f"h{n:02d}", 0, 0.1))
    assert not staged.shows_eta()
    staged.close()
