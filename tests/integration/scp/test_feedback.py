"""Feedback: ``--json`` events (progress at a bounded rate, per-file, one terminal event per
host), per-file lines, and the live progress display only on a terminal."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.integration.scp.scpkit import (
    NAMES,
    Cli,
    RemoteDir,
    assert_size_text,
    sha256_file,
    split_lines,
)
from tests.support.cli import run_with_pty_stderr

pytestmark = pytest.mark.integration

#: Cursor movement / line erasing / cursor hiding, as a live display redraws itself.
CURSOR_CODES = re.compile(r"\x1b\[(?:\d*[ABCDK]|\?25[lh]|2K)")


def test_json_events_for_a_put(cli: Cli, inventory: Path, rdir: RemoteDir,
                               mid_file: Path) -> None:
    result = cli.run("-i", inventory, "-g", "all", "--json", "-action", "put", "-local",
                     mid_file, "-remote", rdir.path + "/")
    assert result.returncode == 0, result
    events = result.events()  # every stdout line is a JSON object
    size = mid_file.stat().st_size
    target = rdir / "mid.bin"
    assert {e["event"] for e in events} == {"progress", "file", "done"}, events[:5]
    for host in NAMES:
        mine = [e for e in events if e["host"] == host]
        progress = [e for e in mine if e["event"] == "progress"]
        files = [e for e in mine if e["event"] == "file"]
        # Order: progress events, then the file, then the terminal event last.
        assert mine[-1]["event"] == "done", mine[-3:]
        assert mine.index(files[0]) > mine.index(progress[-1]), host
        assert len(files) == 1, files
        file_event = files[0]
        assert file_event == {
            "host": host, "event": "file", "action": "put", "source": str(mid_file),
            "destination": target, "bytes": size, "duration": file_event["duration"]}
        assert isinstance(file_event["duration"], int | float) and file_event["duration"] > 0
        for event in progress:
            assert set(event) == {"host", "event", "path", "bytes", "total"}, event
            assert event["path"] == target, event
            assert event["total"] == size, event
        counts = [e["bytes"] for e in progress]
        assert counts == sorted(counts), counts
        assert 0 < counts[0] < size and counts[-1] == size, counts
        # At most a few a second: 4/s documented, plus the first and the final one.
        allowed = 4 * file_event["duration"] + 2
        assert len(progress) <= allowed + 1, (host, len(progress), file_event["duration"])
        done = mine[-1]
        assert done["files"] == 1 and done["bytes"] == size, done
        assert isinstance(done["duration"], int | float)
        assert done["duration"] >= file_event["duration"], done
        assert set(done) == {"host", "event", "files", "sent", "unchanged", "deleted", "modes",
                             "bytes", "method", "duration"}, done
        assert (done["sent"], done["unchanged"], done["deleted"]) == (1, 0, 0), done
        # A big single file's content streams into cat on the host (small ones: SFTP).
        assert done["method"] == "stream", done
    result.terminals(NAMES)
    for host in NAMES:
        assert sha256_file(rdir.local(host, "mid.bin")) == sha256_file(mid_file)
    # The summary still goes to stderr.
    assert "3 ok" in result.stderr, result


def test_json_terminal_events_for_a_tree_and_a_failure(
        cli: Cli, inventory: Path, rdir: RemoteDir) -> None:
    tree = cli.cwd / "t"
    (tree / "d").mkdir(parents=True)
    for number in range(5):
        (tree / "d" / f"f{number}").write_bytes(b"x" * (number + 1) * 1000)
    os.chmod(rdir.local("scp3"), 0o555)
    result = cli.run("-i", inventory, "-g", "all", "--json", "-r", "-action", "put",
                     "-local", tree, "-remote", rdir.path)
    assert result.returncode == 1, result
    terminals = result.terminals(NAMES)
    for host in ("scp1", "scp2"):
        assert terminals[host]["event"] == "done", terminals
        assert terminals[host]["files"] == 5, terminals
        assert terminals[host]["bytes"] == 15000, terminals
    assert terminals["scp3"]["event"] == "error", terminals
    assert terminals["scp3"]["kind"] == "transfer", terminals
    assert isinstance(terminals["scp3"]["duration"], int | float), terminals
    events = result.events()
    assert [e for e in events if e["host"] == "scp3" and e["event"] == "file"] == []
    files = [e for e in events if e["event"] == "file"]
    assert len(files) == 10 and all(e["action"] == "put" for e in files)


def test_json_for_a_get(cli: Cli, inventory: Path, rdir: RemoteDir) -> None:
    rdir.write_all("g.txt", b"get me\n")
    result = cli.run("-i", inventory, "-g", "all", "--json", "-action", "get", "-remote",
                     rdir / "g.txt", "-local", "out")
    assert result.returncode == 0, result
    events = result.events()
    for host, event in result.terminals(NAMES).items():
        assert event["event"] == "done" and event["files"] == 1 and event["bytes"] == 7
        (file_event,) = [e for e in events if e["host"] == host and e["event"] == "file"]
        assert file_event["action"] == "get"
        assert file_event["source"] == rdir / "g.txt"
        assert file_event["destination"] == str(cli.cwd / "out" / host / "g.txt")


def test_piped_output_has_no_escape_codes(cli: Cli, inventory: Path, rdir: RemoteDir,
                                          mid_file: Path) -> None:
    os.chmod(rdir.local("scp2"), 0o555)  # a failure too, reported on stderr
    result = cli.run("-i", inventory, "-g", "all", "-action", "put", "-local", mid_file,
                     "-remote", rdir.path + "/")
    assert result.returncode == 1, result
    assert "\x1b" not in result.stdout, result
    assert "\x1b" not in result.stderr, result
    assert "\r" not in result.stdout + result.stderr, result
    lines = result.file_lines()  # every stdout line is a per-file line
    assert sorted(m["host"] for m in lines) == ["scp1", "scp3"]
    for match in lines:
        assert_size_text(match["size"], mid_file.stat().st_size)
        assert match["rate"].endswith("/s")
    assert "hostbatch: scp2: transfer:" in result.stderr, result


def test_live_progress_on_a_terminal_only(cli: Cli, inventory: Path, rdir: RemoteDir,
                                          mid_file: Path) -> None:
    status, out, err = run_with_pty_stderr(
        cli, "-i", inventory, "-g", "all", "-action", "put", "-local", mid_file, "-remote",
        rdir.path + "/")
    assert status == 0, (out, err)
    assert CURSOR_CODES.search(err), f"no live display drawn on the terminal: {err[-1500:]!r}"
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err)
    assert "total" in plain, plain[-1500:]
    assert re.search(r"scp\d .*mid\.bin", plain), plain[-1500:]
    assert "MiB" in plain, plain[-1500:]
    # stdout is a pipe: only the per-file lines, no drawing.
    assert "\x1b" not in out, out
    lines = split_lines(out)
    assert len(lines) == 3, out
    assert sorted(line.split(":")[0] for line in lines) == sorted(NAMES)
    for host in NAMES:
        assert sha256_file(rdir.local(host, "mid.bin")) == sha256_file(mid_file)
