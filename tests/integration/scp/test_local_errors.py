"""Local problems exit 2 before any connection: the selection always includes ``gone``, a host
on a listener that never answers; had hostbatch connected, the run would fail with exit 3
and the listener would hold a pending connection."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.scp.scpkit import Cli, RemoteDir, Result, connections_seen

pytestmark = pytest.mark.integration

Runner = Callable[..., Result]
#: Drop the capabilities that let root ignore file permissions (root is who we are).
AS_ORDINARY_ROOT = ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--")


def check_refused_locally(result: Result, listener: socket.socket, *needles: str) -> None:
    assert result.returncode == 2, result
    assert result.stdout == "", result
    assert connections_seen(listener) == 0, f"a connection was attempted: {result}"
    for needle in needles:
        assert needle in result.stderr, (needle, result)
    assert "Traceback" not in result.stderr, result


@pytest.fixture
def run(cli: Cli, guarded_inventory: Path, silent_listener: socket.socket) -> Runner:
    connections_seen(silent_listener)  # start from an empty backlog

    def run(*args: str | Path, wrapper: tuple[str, ...] = ()) -> Result:
        return cli.run("-i", guarded_inventory, "-h", "gone,scp1", "--connect-timeout", "1",
                       *args, wrapper=wrapper, timeout=30)

    return run


def test_guard_host_is_really_tried_when_nothing_is_wrong(
        run: Runner, cli: Cli, silent_listener: socket.socket, rdir: RemoteDir) -> None:
    """Control experiment: a valid put does connect to ``gone`` (and fails on it)."""
    (cli.cwd / "ok.txt").write_bytes(b"ok\n")
    result = run("-action", "put", "-local", "ok.txt", "-remote", rdir.path + "/")
    assert result.returncode == 3, result
    assert connections_seen(silent_listener) >= 1
    assert rdir.local("scp1", "ok.txt").read_bytes() == b"ok\n"


def test_local_file_missing(run: Runner, silent_listener: socket.socket) -> None:
    result = run("-action", "put", "-local", "no-such-file.txt", "-remote", "/tmp/")
    check_refused_locally(result, silent_listener, "no-such-file.txt")


def test_local_dangling_symlink(run: Runner, cli: Cli, silent_listener: socket.socket) -> None:
    os.symlink("nowhere", cli.cwd / "dangling")
    result = run("-action", "put", "-local", "dangling", "-remote", "/tmp/")
    check_refused_locally(result, silent_listener, "dangling")


def test_local_directory_without_r(run: Runner, cli: Cli, silent_listener: socket.socket) -> None:
    (cli.cwd / "adir").mkdir()
    result = run("-action", "put", "-local", "adir", "-remote", "/tmp/")
    check_refused_locally(result, silent_listener, "adir", "-r")


def test_local_file_unreadable(run: Runner, cli: Cli, silent_listener: socket.socket) -> None:
    """Root reads anything, so hostbatch runs without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH."""
    secret = cli.cwd / "secret.txt"
    secret.write_bytes(b"secret\n")
    secret.chmod(0o000)
    os.chown(secret, 65534, 65534)
    result = run("-action", "put", "-local", "secret.txt", "-remote", "/tmp/",
                 wrapper=AS_ORDINARY_ROOT)
    check_refused_locally(result, silent_listener, "secret.txt")


def test_local_unreadable_file_inside_a_tree(
        run: Runner, cli: Cli, silent_listener: socket.socket) -> None:
    tree = cli.cwd / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "hidden").write_bytes(b"x\n")
    (tree / "sub" / "hidden").chmod(0o000)
    os.chown(tree / "sub" / "hidden", 65534, 65534)
    result = run("-r", "-action", "put", "-local", "tree", "-remote", "/tmp/",
                 wrapper=AS_ORDINARY_ROOT)
    check_refused_locally(result, silent_listener, "hidden")


def test_get_into_a_path_whose_parent_is_missing(
        run: Runner, silent_listener: socket.socket) -> None:
    result = run("-action", "get", "-remote", "/etc/hostname", "-local", "missing/deeper")
    check_refused_locally(result, silent_listener, "missing")


def test_get_into_a_file(run: Runner, cli: Cli, silent_listener: socket.socket) -> None:
    (cli.cwd / "afile").write_bytes(b"not a directory\n")
    result = run("-action", "get", "-remote", "/etc/hostname", "-local", "afile")
    check_refused_locally(result, silent_listener, "afile")
    assert (cli.cwd / "afile").read_bytes() == b"not a directory\n"


def test_get_into_an_unwritable_directory(
        run: Runner, cli: Cli, silent_listener: socket.socket) -> None:
    locked = cli.cwd / "locked"
    locked.mkdir(mode=0o555)
    os.chown(locked, 65534, 65534)
    result = run("-action", "get", "-remote", "/etc/hostname", "-local", "locked",
                 wrapper=AS_ORDINARY_ROOT)
    check_refused_locally(result, silent_listener, "locked")
    assert os.listdir(locked) == []


def test_tilde_user_remote_path(run: Runner, cli: Cli, silent_listener: socket.socket) -> None:
    (cli.cwd / "ok.txt").write_bytes(b"ok\n")
    result = run("-action", "put", "-local", "ok.txt", "-remote", "~root/x")
    check_refused_locally(result, silent_listener, "~root")


@pytest.mark.parametrize("missing", ["-action", "-local", "-remote"])
def test_missing_option(run: Runner, silent_listener: socket.socket, missing: str) -> None:
    args = {"-action": "put", "-local": "x", "-remote": "/tmp/"}
    del args[missing]
    result = run(*(item for pair in args.items() for item in pair))
    check_refused_locally(result, silent_listener, missing.lstrip("-"))
