"""Renderers (lines, JSON Lines, summary) and SafeStream, on in-memory byte streams."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest

from hostbatch.engine.events import (
    Event,
    HostExited,
    HostFailed,
    HostKeyLearned,
    HostStarted,
    OutputLines,
    TransferDone,
)
from hostbatch.engine.outcome import BatchResult
from hostbatch.errors import FailureKind
from hostbatch.render.jsonl import JsonRenderer
from hostbatch.render.lines import LineRenderer
from hostbatch.render.output import PLAIN_WIDTH, SafeStream, line_width, use_color
from hostbatch.render.summary import format_summary, write_summary

ESC = b"\x1b["


class Streams:
    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.err = io.BytesIO()
        self.stdout = SafeStream(self.out)
        self.stderr = SafeStream(self.err)


def line_renderer(streams: Streams, color: bool = False) -> LineRenderer:
    return LineRenderer(streams.stdout, streams.stderr, color_stdout=color, color_stderr=color)


def feed(renderer: LineRenderer | JsonRenderer, events: list[Event]) -> None:
    for event in events:
        renderer.handle(event)
    renderer.close()


# --------------------------------------------------------------------------- LineRenderer


def test_stdout_lines_as_host_colon_line() -> None:
    s = Streams()
    feed(line_renderer(s),
         [OutputLines.from_lines("web1", "stdout", (b"Filesystem  Size", b"/dev/sda1 9G"))])
    assert s.out.getvalue() == b"web1: Filesystem  Size\nweb1: /dev/sda1 9G\n"
    assert s.err.getvalue() == b""


def test_stderr_lines_go_to_stderr() -> None:
    s = Streams()
    feed(line_renderer(s), [OutputLines.from_lines("db1", "stderr", (b"warning: x",))])
    assert s.err.getvalue() == b"db1: warning: x\n"
    assert s.out.getvalue() == b""


def test_interleaved_hosts_and_streams_keep_arrival_order() -> None:
    s = Streams()
    feed(line_renderer(s), [
        OutputLines.from_lines("a", "stdout", (b"1",)),
        OutputLines.from_lines("b", "stderr", (b"e1",)),
        OutputLines.from_lines("b", "stdout", (b"2",)),
        OutputLines.from_lines("a", "stderr", (b"e2",)),
        OutputLines.from_lines("a", "stdout", (b"3", b"")),
    ])
    assert s.out.getvalue() == b"a: 1\nb: 2\na: 3\na: \n"
    assert s.err.getvalue() == b"b: e1\na: e2\n"


def test_lines_are_flushed_as_they_arrive() -> None:
    class Recorder(io.BytesIO):
        flushes = 0

        def flush(self) -> None:
            Recorder.flushes += 1

    out = Recorder()
    renderer = LineRenderer(SafeStream(out), SafeStream(io.BytesIO()), color_stdout=False,
                            color_stderr=False)
    renderer.handle(OutputLines.from_lines("a", "stdout", (b"1",)))
    assert out.getvalue() == b"a: 1\n" and Recorder.flushes >= 1


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"bad \xff byte", "bad \ufffd byte".encode()),
        (b"\xc3", "\ufffd".encode()),
        (b"caf\xc3\xa9", "caf\u00e9".encode()),
    ],
)
def test_invalid_utf8_is_replaced(raw: bytes, shown: bytes) -> None:
    s = Streams()
    feed(line_renderer(s), [OutputLines.from_lines("h", "stdout", (b"ok", raw))])
    assert s.out.getvalue() == b"h: ok\nh: " + shown + b"\n"
    s.out.getvalue().decode("utf-8")  # always valid UTF-8


def test_no_ansi_escapes_without_color() -> None:
    s = Streams()
    feed(line_renderer(s, color=False), [
        HostStarted("h", 0),
        OutputLines.from_lines("h", "stdout", (b"out",)),
        OutputLines.from_lines("h", "stderr", (b"err",)),
        HostFailed("g", FailureKind.CONNECT, "Connection refused"),
        HostExited("h", 0, 0.1),
    ])
    assert ESC not in s.out.getvalue()
    assert ESC not in s.err.getvalue()


def test_color_only_colors_the_prefix() -> None:
    s = Streams()
    feed(line_renderer(s, color=True), [OutputLines.from_lines("h", "stdout", (b"out",)),
                                        OutputLines.from_lines("h", "stderr", (b"err",))])
    assert ESC in s.out.getvalue() and s.out.getvalue().endswith(b": out\n")
    assert ESC in s.err.getvalue() and s.err.getvalue().endswith(b": err\n")


def test_host_failure_reported_on_stderr() -> None:
    s = Streams()
    feed(line_renderer(s), [HostFailed("web1", FailureKind.TIMEOUT, "timed out after 5s")])
    assert s.err.getvalue() == b"hostbatch: web1: timeout: timed out after 5s\n"
    assert s.out.getvalue() == b""


def test_long_failure_message_never_wraps_the_host_line() -> None:
    s = Streams()
    renderer = LineRenderer(s.stdout, s.stderr, color_stdout=False, color_stderr=False,
                            width=50)
    feed(renderer, [HostFailed("web1", FailureKind.CONNECT, "refused\n" + "y" * 300)])
    (line,) = s.err.getvalue().decode().splitlines()
    assert len(line) == 50 and line.startswith("hostbatch: web1: connect: refused yyy"), line
    assert line.endswith("\u2026")


@pytest.mark.parametrize(("isatty", "environ", "expected"), [
    (False, {"COLUMNS": "90"}, PLAIN_WIDTH),  # a log or a pipe: a fixed, generous limit
    (True, {"COLUMNS": "90"}, 90),
    (True, {"COLUMNS": "5"}, 40),  # never absurdly narrow
])
def test_line_width(isatty: bool, environ: dict[str, str], expected: int) -> None:
    assert line_width(isatty, io.BytesIO(), environ) == expected


@pytest.mark.parametrize(
    "event",
    [HostStarted("h", 0), HostExited("h", 3, 1.0),
     HostKeyLearned("h", "/kh", "h ssh-ed25519 AAAA", "SHA256:x")],
    ids=lambda e: type(e).__name__,
)
def test_other_events_print_nothing(event: Event) -> None:
    s = Streams()
    feed(line_renderer(s), [event])
    assert s.out.getvalue() == s.err.getvalue() == b""


# --------------------------------------------------------------------------- JsonRenderer


def json_lines(data: bytes) -> list[dict[str, object]]:
    text = data.decode("utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_json_stream() -> None:
    s = Streams()
    feed(JsonRenderer(s.stdout), [
        HostStarted("web1", 0),
        OutputLines.from_lines("web1", "stdout", (b"hello", b"w\xc3\xb6rld")),
        OutputLines.from_lines("web1", "stderr", (b"oops \xff",)),
        HostExited("web1", 0, 0.31),
        HostFailed("db1", FailureKind.AUTH, "Authentication failed"),
        HostKeyLearned("web1", "/kh", "line", "SHA256:x"),
    ])
    objects = json_lines(s.out.getvalue())
    assert objects[:4] == [
        {"host": "web1", "event": "stdout", "data": "hello"},
        {"host": "web1", "event": "stdout", "data": "w\u00f6rld"},
        {"host": "web1", "event": "stderr", "data": "oops \ufffd"},
        {"host": "web1", "event": "exit", "exit_status": 0, "duration": 0.31},
    ]
    error = objects[4]
    assert {k: error[k] for k in ("host", "event", "kind", "error")} == {
        "host": "db1", "event": "error", "kind": "auth", "error": "Authentication failed"}
    assert len(objects) == 5
    assert s.err.getvalue() == b""


def test_json_lines_are_one_object_per_line_even_with_newlines_in_data() -> None:
    s = Streams()
    feed(JsonRenderer(s.stdout),
         [OutputLines.from_lines("h", "stdout", (b"a\rb\x00c\x1b[0m\"q\"",)),
          HostFailed("h", FailureKind.PROTOCOL, "two\nlines")])
    objects = json_lines(s.out.getvalue())
    assert len(objects) == 2
    assert objects[0]["data"] == "a\rb\x00c\x1b[0m\"q\""
    assert objects[1]["error"] == "two\nlines"


# --------------------------------------------------------------------------- summary


def summary_result() -> BatchResult:
    result = BatchResult(["ok1", "bad1", "down1", "ok2", "slow", "nokey", "bad2"])
    events: list[Event] = [
        HostExited("ok1", 0, 0.5),
        HostExited("bad1", 2, 0.7),
        HostFailed("down1", FailureKind.CONNECT, "Connection refused", 0.01),
        HostExited("ok2", 0, 0.2),
        HostFailed("slow", FailureKind.TIMEOUT, "command timed out after 5s", 5.0),
        HostFailed("nokey", FailureKind.HOSTKEY, "unknown host key for nokey", 0.1),
        HostExited("bad2", 255, 3.0, note="ended without an exit status"),
    ]
    for event in events:
        result.record(event)
    return result


def test_full_summary_names_every_failed_host_with_its_reason() -> None:
    text = format_summary(summary_result(), 5.25, color=False, full=True)
    lines = text.splitlines()
    assert "7 hosts" in lines[0] and "5.25s" in lines[0]
    assert lines[0].endswith(": 2 ok, 2 failed, 1 unreachable, 1 host key, 1 timed out"), lines
    assert "slow 5.00s" in text  # a host that timed out can be the slowest

    def line_for(host: str) -> str:
        (found,) = [line for line in lines[1:] if f" {host} " in line and "slowest" not in line]
        return found

    assert "exit status 2" in line_for("bad1")
    assert "exit status 255" in line_for("bad2")
    assert "ended without an exit status" in line_for("bad2")
    assert "connect: Connection refused" in line_for("down1")
    assert "timeout: command timed out after 5s" in line_for("slow")
    assert "hostkey: unknown host key" in line_for("nokey")
    assert not any(" ok1 " in line or " ok2 " in line for line in lines[1:]
                   if "slowest" not in line)
    assert "\x1b[" not in text
    assert text.endswith("\n")


def test_compact_summary_has_one_line_per_kind_with_the_folded_hosts() -> None:
    result = BatchResult([f"web{n:02d}" for n in range(1, 9)] + ["db02", "db03"])
    for host in ("web04", "web07", "db02"):
        result.record(HostFailed(host, FailureKind.TIMEOUT, "command timed out after 5s", 5.0))
    for host in ("web01", "web02", "web03"):
        result.record(HostExited(host, 2, 0.1))
    result.record(HostExited("web05", 1, 0.1))
    result.record(HostFailed("web06", FailureKind.CONNECT, "connection refused", 0.0))
    result.record(HostFailed("db03", FailureKind.TRANSFER, "no space left on device", 0.3))
    result.record(HostExited("web08", 0, 0.1))
    lines = format_summary(result, 5.25, color=False).splitlines()
    assert lines[0].endswith(": 1 ok, 5 failed, 1 unreachable, 3 timed out"), lines
    # In selection order of each kind's first host; reasons were printed live, not again.
    assert lines[1:-1] == ["  exit 2 (3): web[01-03]", "  timed out (3): db02,web[04,07]",
                           "  exit 1 (1): web05", "  unreachable (1): web06",
                           "  transfer failed (1): db03"], lines
    assert lines[-1].startswith("  slowest: ")


def test_full_summary_cuts_long_reasons_to_the_width() -> None:
    result = BatchResult(["web01", "web02"])
    result.record(HostFailed("web01", FailureKind.CONNECT, "x" * 500, 0.0))
    result.record(HostFailed("web02", FailureKind.CONNECT, "short", 0.0))
    lines = format_summary(result, 1.0, color=False, full=True, width=60).splitlines()
    assert len(lines[1]) == 60 and lines[1].endswith("x\u2026"), lines
    assert lines[2].endswith("connect: short")
    assert "x" * 500 in format_summary(result, 1.0, color=False, full=True)  # no width: all


def test_summary_slowest_hosts() -> None:
    text = format_summary(summary_result(), 5.25, color=False)
    slowest = [line for line in text.splitlines() if "slowest" in line]
    assert len(slowest) == 1
    assert slowest[0].index("slow") < slowest[0].index("bad2") < slowest[0].index("bad1")


def test_summary_all_ok() -> None:
    result = BatchResult(["a"])
    result.record(HostExited("a", 0, 0.1))
    text = format_summary(result, 0.1, color=False)
    assert text.splitlines() == [text.rstrip("\n")]  # one line: nothing failed, no slowest list
    assert "1 host " in text and "1 ok" in text and "0.10s" in text
    assert "failed" not in text and "unreachable" not in text


def test_sync_lines_count_modes_changed_only_when_there_are_some() -> None:
    streams = Streams()
    renderer = line_renderer(streams)
    events = [TransferDone("a", 0, 0, 0.1, unchanged=5, sync=True, modes=1),
              TransferDone("b", 1, 2048, 0.1, unchanged=6, deleted=1, sync=True),
              TransferDone("c", 0, 0, 0.1, sync=True, dry_run=True, modes=2)]
    result = BatchResult(["a", "b", "c"])
    for event in events:
        renderer.handle(event)
        result.record(event)
    assert streams.out.getvalue().decode().splitlines() == [
        "a: sync: 0 sent (0 B), 5 unchanged, 1 mode changed, 0 deleted",
        "b: sync: 1 sent (2.0 KiB), 6 unchanged, 1 deleted",
        "c: sync: 0 would send (0 B), 0 unchanged, 2 modes to change, 0 to delete"]
    assert "  sync: 1 sent (2.0 KiB), 11 unchanged, 3 modes changed, 1 deleted on 3 hosts" \
        in format_summary(result, 0.1, color=False).splitlines()


def test_summary_interrupted_lists_hosts_that_did_not_finish() -> None:
    result = BatchResult(["a", "b", "c"])
    result.record(HostExited("a", 0, 0.1))
    result.record(HostFailed("b", FailureKind.INTERRUPTED, "interrupted", 1.0))
    result.record(HostFailed("c", FailureKind.SKIPPED, "never started"))
    result.interrupted = True
    text = format_summary(result, 1.0, color=False)
    lines = text.splitlines()
    assert "1 ok" in lines[0]
    assert lines[1:] == ["  interrupted (1): b", "  skipped (1): c"], lines
    lines = format_summary(result, 1.0, color=False, full=True).splitlines()
    assert any(" b " in line and "interrupted" in line for line in lines[1:])
    assert any(" c " in line and "skipped" in line for line in lines[1:])
    assert not any(" a " in line for line in lines[1:])


def test_summary_names_a_stopped_rollout() -> None:
    result = BatchResult(["a", "b", "c"])
    result.record(HostExited("a", 1, 0.1))
    for host in ("b", "c"):
        result.record(HostFailed(host, FailureKind.SKIPPED, "not started: --max-fail 1 reached"))
    result.stop_reason = "--max-fail 1 reached"
    lines = format_summary(result, 1.0, color=False).splitlines()
    assert "2 skipped" in lines[0] and "1 failed" in lines[0]
    assert "  rollout stopped: --max-fail 1 reached; 2 hosts not started" in lines
    assert result.exit_status == 1


def test_summary_color() -> None:
    text = format_summary(summary_result(), 1.0, color=True)
    assert "\x1b[" in text


def test_write_summary_to_safe_stream() -> None:
    s = Streams()
    write_summary(s.stderr, summary_result(), 1.0, color=False)
    assert s.err.getvalue().decode() == format_summary(summary_result(), 1.0, color=False)


# --------------------------------------------------------------------------- colour and SafeStream


@pytest.mark.parametrize(
    ("isatty", "environ", "expected"),
    [
        (True, {}, True),
        (False, {}, False),
        (True, {"NO_COLOR": "1"}, False),
        (False, {"NO_COLOR": "1"}, False),
        (True, {"TERM": "dumb"}, False),
        (True, {"TERM": "xterm-256color"}, True),
    ],
)
def test_use_color(isatty: bool, environ: dict[str, str], expected: bool) -> None:
    assert use_color(isatty, environ) is expected


class BrokenPipe(io.BytesIO):
    writes = 0

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes += 1
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_safe_stream_swallows_broken_pipe_on_write() -> None:
    inner = BrokenPipe()
    stream = SafeStream(inner)
    stream.write(b"x")
    assert stream.broken
    stream.write(b"y")
    stream.flush()
    assert inner.writes == 1  # nothing more is attempted once the reader is gone


def test_safe_stream_swallows_broken_pipe_on_flush() -> None:
    class FlushBreaks(io.BytesIO):
        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    stream = SafeStream(FlushBreaks())
    stream.write(b"x")
    stream.flush()
    assert stream.broken


def test_safe_stream_passes_other_errors_on() -> None:
    class Full(io.BytesIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        SafeStream(Full()).write(b"x")


def test_safe_stream_on_a_real_closed_pipe_points_fd_at_devnull() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    with open(write_fd, "wb", buffering=0) as raw:
        stream = SafeStream(raw)
        stream.write(b"line\n")
        assert stream.broken
        devnull = os.stat(os.devnull)
        now = os.fstat(write_fd)
        assert stat.S_ISCHR(now.st_mode) and now.st_rdev == devnull.st_rdev
        os.write(write_fd, b"the interpreter's final flush is now harmless")


def test_line_renderer_survives_a_closed_stdout() -> None:
    err = io.BytesIO()
    renderer = LineRenderer(SafeStream(BrokenPipe()), SafeStream(err), color_stdout=False,
                            color_stderr=False)
    feed(renderer, [OutputLines.from_lines("h", "stdout", (b"lost",)),
                    OutputLines.from_lines("h", "stderr", (b"e",))])
    assert err.getvalue() == b"h: e\n"
