"""``batch_scp -action put`` of single files: where they land, checksums, syntax variants,
missing directories, permission denied and disk full on one host."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

from tests.integration.scp.scpkit import (
    NAMES,
    Cli,
    Hosts,
    RemoteDir,
    assert_size_text,
    sha256_file,
    split_lines,
)

pytestmark = pytest.mark.integration


def remote_sha256(hosts: Hosts, name: str, path: str) -> str:
    """``sha256sum`` run on the host itself, over ssh."""
    proc = hosts.ssh(name, f"sha256sum -- '{path}'")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[0]


@pytest.fixture
def payload(cli: Cli) -> Path:
    path = cli.cwd / "test.py"
    path.write_bytes(b"print('hello')\n" + secrets.token_bytes(70_000))
    return path


def test_put_into_dir_with_trailing_slash_checksums_on_every_host(
        cli: Cli, inventory: Path, hosts: Hosts, rdir: RemoteDir, payload: Path) -> None:
    # The seed syntax of the issue: single dashes, -h and -g together, a relative local path.
    result = cli.run("-i", inventory, "-h", "scp1", "-g", "grp", "-action", "put",
                     "-local", "test.py", "-remote", rdir.path + "/")
    assert result.returncode == 0, result
    expected = sha256_file(payload)
    for name in NAMES:
        assert remote_sha256(hosts, name, rdir / "test.py") == expected, name
        assert not rdir.local(name, "test.py").is_symlink()
    lines = result.file_lines()
    assert sorted(m["host"] for m in lines) == sorted(NAMES), result
    for match in lines:
        assert match["action"] == "put"
        assert match["source"] == "test.py"
        assert match["destination"] == rdir / "test.py"
        assert_size_text(match["size"], payload.stat().st_size)
    assert rdir.temp_files() == {}


def test_put_into_existing_dir_without_slash(
        cli: Cli, inventory: Path, hosts: Hosts, rdir: RemoteDir, payload: Path) -> None:
    for name in NAMES:
        rdir.mkdir(name, "existing")
    result = cli.run("-i", inventory, "-g", "all", "--action", "put", "--local", payload,
                     "--remote", rdir / "existing")
    assert result.returncode == 0, result
    for name in NAMES:
        landed = rdir.local(name, "existing/test.py")
        assert landed.is_file(), name
        assert remote_sha256(hosts, name, rdir / "existing/test.py") == sha256_file(payload)
        assert sorted(os.listdir(rdir.local(name, "existing"))) == ["test.py"]


def test_put_to_a_new_file_path_names_the_target(
        cli: Cli, inventory: Path, hosts: Hosts, rdir: RemoteDir, payload: Path) -> None:
    result = cli.run("-i", inventory, "-g", "all", "-action", "put", "-local", payload,
                     "-remote", rdir / "renamed.py")
    assert result.returncode == 0, result
    for name in NAMES:
        assert remote_sha256(hosts, name, rdir / "renamed.py") == sha256_file(payload)
        assert sorted(os.listdir(rdir.local(name))) == ["renamed.py"]


def test_put_replaces_an_existing_file(
        cli: Cli, inventory: Path, hosts: Hosts, rdir: RemoteDir, payload: Path) -> None:
    rdir.write_all("target", b"old content\n" * 10_000)
    result = cli.run("-i", inventory, "-g", "all", "-action", "put", "-local", payload,
                     "-remote", rdir / "target")
    assert result.returncode == 0, result
    for name in NAMES:
        assert remote_sha256(hosts, name, rdir / "target") == sha256_file(payload)
    assert rdir.temp_files() == {}


@pytest.mark.parametrize("form", ["~/NAME", "NAME", "~", "~/"])
def test_home_relative_remote_paths(
        cli: Cli, inventory: Path, hosts: Hosts, payload: Path, form: str) -> None:
    """``~/x``, ``x``, ``~`` and ``~/`` are in the remote user's home (shared by all hosts
    here, so one host only)."""
    name = f"hb-scp-{secrets.token_hex(4)}.py"
    local = cli.cwd / name
    local.write_bytes(payload.read_bytes())
    remote = form.replace("NAME", name)
    home_copy = Path("/home/hbtest") / name
    try:
        result = cli.run("-i", inventory, "-h", "scp2", "-action", "put", "-local", name,
                         "-remote", remote)
        assert result.returncode == 0, result
        proc = hosts.ssh("scp2", f"sha256sum -- ~/{name}")
        assert proc.returncode == 0, (proc.stderr, result)
        assert proc.stdout.split()[0] == sha256_file(local)
        assert home_copy.is_file()
    finally:
        home_copy.unlink(missing_ok=True)


def test_hostbatch_scp_is_batch_scp(
        cli: Cli, inventory: Path, hosts: Hosts, rdir: RemoteDir, payload: Path) -> None:
    args = ("-i", inventory, "-h", "scp[1-2]", "-action", "put", "-local", "test.py",
            "-remote")
    for name in NAMES:
        rdir.mkdir(name, "one")
        rdir.mkdir(name, "two")
    one = cli.run(*args, rdir / "one/", via="batch_scp")
    two = cli.run(*args, rdir / "two/", via="hostbatch")
    assert one.returncode == two.returncode == 0, (one, two)
    shape_one = sorted((m["host"], m["source"], m["destination"].replace("/one/", "/X/"))
                       for m in one.file_lines())
    shape_two = sorted((m["host"], m["source"], m["destination"].replace("/two/", "/X/"))
                       for m in two.file_lines())
    assert shape_one == shape_two
    assert [h for h, _, _ in shape_one] == ["scp1", "scp2"]
    for name in ("scp1", "scp2"):
        for sub in ("one", "two"):
            assert sha256_file(rdir.local(name, f"{sub}/test.py")) == sha256_file(payload)
    assert not rdir.local("scp3", "one/test.py").exists()


def test_missing_remote_directory_is_an_error_naming_the_path(
        cli: Cli, inventory: Path, rdir: RemoteDir, payload: Path) -> None:
    for remote in (rdir / "nodir/", rdir / "nodir/file.py"):
        result = cli.run("-i", inventory, "-g", "all", "--json", "-action", "put",
                         "-local", payload, "-remote", remote)
        assert result.returncode == 1, result
        for name, event in result.terminals(NAMES).items():
            assert event["event"] == "error", event
            assert event["kind"] == "transfer", event
            assert rdir / "nodir" in event["error"], event
            assert not rdir.local(name, "nodir").exists()


def test_mkdir_creates_nested_directories(
        cli: Cli, inventory: Path, rdir: RemoteDir, payload: Path) -> None:
    result = cli.run("-i", inventory, "-g", "all", "--mkdir", "-action", "put", "-local",
                     payload, "-remote", rdir / "a/b/c/")
    assert result.returncode == 0, result
    result = cli.run("-i", inventory, "-g", "all", "--mkdir", "-action", "put", "-local",
                     payload, "-remote", rdir / "x/y/named.py")
    assert result.returncode == 0, result
    for name in NAMES:
        assert sha256_file(rdir.local(name, "a/b/c/test.py")) == sha256_file(payload)
        assert sha256_file(rdir.local(name, "x/y/named.py")) == sha256_file(payload)
        assert rdir.local(name, "a/b").is_dir()


def test_awkward_file_name_with_verify(
        cli: Cli, inventory: Path, hosts: Hosts, rdir: RemoteDir) -> None:
    """Quotes, spaces, non-ASCII, a leading dash and shell syntax in the name, with --verify
    (the one remote shell command, sha256sum, gets the temporary name)."""
    name = "-rf it's \"日本\" é $(touch pwned) `id`.txt"
    local = cli.cwd / name
    local.write_bytes(secrets.token_bytes(50_000))
    result = cli.run("-i", inventory, "-g", "all", "--verify", "-action", "put", "-local",
                     f"./{name}", "-remote", rdir.path + "/")
    assert result.returncode == 0, result
    for host in NAMES:
        assert sha256_file(rdir.local(host, name)) == sha256_file(local), host
        assert sorted(os.listdir(rdir.local(host))) == [name], host
    assert not (cli.cwd / "pwned").exists()
    assert not Path("/home/hbtest/pwned").exists()


def test_permission_denied_on_one_host(
        cli: Cli, inventory: Path, hosts: Hosts, rdir: RemoteDir, payload: Path) -> None:
    rdir.write_all("target", b"old\n")
    os.chmod(rdir.local("scp2"), 0o555)  # hbtest can no longer create files there
    result = cli.run("-i", inventory, "-g", "all", "--json", "-action", "put", "-local",
                     payload, "-remote", rdir / "target")
    assert result.returncode == 1, result
    terminals = result.terminals(NAMES)
    assert terminals["scp2"]["event"] == "error", terminals
    assert terminals["scp2"]["kind"] == "transfer", terminals
    assert "permission" in terminals["scp2"]["error"].lower(), terminals
    assert terminals["scp1"]["event"] == terminals["scp3"]["event"] == "done", terminals
    assert rdir.local("scp2", "target").read_bytes() == b"old\n"
    for name in ("scp1", "scp3"):
        assert sha256_file(rdir.local(name, "target")) == sha256_file(payload)
    assert rdir.temp_files() == {}
    assert "hostbatch: scp2: transfer:" in cli.run(
        "-i", inventory, "-h", "scp2", "-action", "put", "-local", payload, "-remote",
        rdir / "target").stderr


def test_disk_full_on_one_host_keeps_the_old_file(
        cli: Cli, inventory: Path, hosts: Hosts, rdir: RemoteDir) -> None:
    """A 1 MiB tmpfs on scp3 only (mounted inside its mount namespace)."""
    for name in ("scp1", "scp2"):
        rdir.mkdir(name, "small")
    rdir.mount_tiny("scp3", "small", "1m")
    rdir.write_all("small/target", b"old but precious\n")
    big = cli.cwd / "big.bin"
    big.write_bytes(secrets.token_bytes(3 * 1024 * 1024))
    result = cli.run("-i", inventory, "-g", "all", "--json", "-action", "put", "-local", big,
                     "-remote", rdir / "small/target")
    assert result.returncode == 1, result
    terminals = result.terminals(NAMES)
    assert terminals["scp3"]["event"] == "error", terminals
    assert terminals["scp3"]["kind"] == "transfer", terminals
    assert terminals["scp1"]["event"] == terminals["scp2"]["event"] == "done", terminals
    assert rdir.local("scp3", "small/target").read_bytes() == b"old but precious\n"
    assert os.listdir(rdir.local("scp3", "small")) == ["target"]
    for name in ("scp1", "scp2"):
        assert sha256_file(rdir.local(name, "small/target")) == sha256_file(big)
    assert rdir.temp_files() == {}


def test_mtime_is_now_without_p_and_kept_with_p(
        cli: Cli, inventory: Path, hosts: Hosts, rdir: RemoteDir, payload: Path) -> None:
    os.utime(payload, (1_000_000_000, 1_000_000_000))
    os.chmod(payload, 0o640)
    before = time.time()
    result = cli.run("-i", inventory, "-g", "all", "-action", "put", "-local", payload,
                     "-remote", rdir / "plain")
    after = time.time()
    assert result.returncode == 0, result
    result = cli.run("-i", inventory, "-g", "all", "-p", "-action", "put", "-local", payload,
                     "-remote", rdir / "kept")
    assert result.returncode == 0, result
    for name in NAMES:
        proc = hosts.ssh(name, f"stat -c '%Y %a' {rdir / 'plain'} {rdir / 'kept'}")
        assert proc.returncode == 0, proc.stderr
        (plain_mtime, plain_mode), (kept_mtime, kept_mode) = (
            line.split() for line in split_lines(proc.stdout))
        assert before - 2 <= int(plain_mtime) <= after + 2, (name, plain_mtime)
        assert int(kept_mtime) == 1_000_000_000, name
        assert plain_mode == kept_mode == "640", name


def test_file_modes_are_kept(cli: Cli, inventory: Path, rdir: RemoteDir) -> None:
    for mode in (0o750, 0o600, 0o444, 0o755):
        local = cli.cwd / f"m{mode:o}"
        local.write_bytes(b"mode\n")
        os.chmod(local, mode)
        result = cli.run("-i", inventory, "-g", "all", "-action", "put", "-local", local,
                         "-remote", rdir.path)
        assert result.returncode == 0, result
        for name in NAMES:
            assert (rdir.local(name, local.name).stat().st_mode & 0o7777) == mode, (name, mode)


def test_verify_put_on_good_copies(
        cli: Cli, inventory: Path, hosts: Hosts, rdir: RemoteDir, payload: Path) -> None:
    result = cli.run("-i", inventory, "-g", "all", "--verify", "--json", "-action", "put",
                     "-local", payload, "-remote", rdir.path + "/")
    assert result.returncode == 0, result
    for name, event in result.terminals(NAMES).items():
        assert event["event"] == "done", event
        assert event["files"] == 1 and event["bytes"] == payload.stat().st_size, event
        assert remote_sha256(hosts, name, rdir / "test.py") == sha256_file(payload)
    assert rdir.temp_files() == {}


def test_empty_file(cli: Cli, inventory: Path, rdir: RemoteDir) -> None:
    empty = cli.cwd / "empty"
    empty.write_bytes(b"")
    result = cli.run("-i", inventory, "-g", "all", "--verify", "-action", "put", "-local",
                     empty, "-remote", rdir.path + "/")
    assert result.returncode == 0, result
    for name in NAMES:
        assert rdir.local(name, "empty").read_bytes() == b""
