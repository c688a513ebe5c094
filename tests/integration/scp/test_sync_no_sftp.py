"""A ``--sync`` tree put into the copy already on a host runs one remote command and opens
no SFTP session (issue 11: an unchanged sync costs little more than connecting): the host's
SFTP server is a wrapper that notes every start, so a session that should not be there
fails the test. What it changes is still right: the one changed file lands, a dry run
changes nothing, and a target placed by the general rules (a fresh one) still works."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.scp.scpkit import TEST_USER, Cli
from tests.support.cli import Result
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration

NOTED_ADDRESS = "127.0.9.32"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


@pytest.fixture(scope="module")
def noted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory every user may write: the wrapper's log of SFTP starts goes there."""
    directory = tmp_path_factory.mktemp("sftp-noted")
    directory.chmod(0o777)
    for path in directory.parents:
        if path != Path("/"):
            path.chmod(path.stat().st_mode | 0o005)
    return directory


@pytest.fixture(scope="module")
def noted_fleet(noted: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One host whose SFTP server writes a line to ``noted/starts`` each time it starts."""
    if not os.access(SFTP_SERVER, os.X_OK):
        pytest.skip(f"no {SFTP_SERVER}")
    wrapper = noted / "sftp-wrapper"
    wrapper.write_text(f"#!/bin/sh\necho started >> {noted / 'starts'}\n"
                       f"exec {SFTP_SERVER} \"$@\"\n")
    wrapper.chmod(0o755)
    with Fleet(tmp_path_factory.mktemp("noted-fleet"), 1, names=["noted"],
               first_address=NOTED_ADDRESS, user=TEST_USER, private_tmp=True,
               extra_sshd_config=f"Subsystem sftp {wrapper}") as fleet:
        yield fleet


def starts(noted: Path) -> int:
    """SFTP sessions started since the last call (the log is emptied)."""
    log = noted / "starts"
    if not log.exists():
        return 0
    count = len(log.read_text().splitlines())
    log.write_text("")
    return count


def done_counts(result: Result) -> tuple[object, ...]:
    done = result.terminals(["noted"])["noted"]
    return done["sent"], done["unchanged"], done["deleted"], done["method"]


def test_sync_into_an_existing_tree_opens_no_sftp(
        cli: Cli, noted_fleet: Fleet, noted: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    for number in range(10):
        (tree / ("sub" if number % 2 else "") / f"f{number}.txt").write_bytes(
            f"file {number}\n".encode() * 40)
    inventory = noted_fleet.write_inventory(tmp_path / "hosts.ini", {})
    remote = f"/srv/hostbatch-fleet/noted-{secrets.token_hex(3)}"
    assert noted_fleet.ssh("noted", f"mkdir {remote}", timeout=30).returncode == 0
    args = ("-i", inventory, "-h", "noted", "-r", "--sync", "--json", "-action", "put",
            "-local", tree, "-remote", remote)

    first = cli.run(*args)
    assert first.returncode == 0, first
    assert done_counts(first) == (10, 0, 0, "stream"), first.stdout
    assert starts(noted) >= 1  # a fresh target is placed over SFTP: the wrapper works

    again = cli.run(*args)
    assert again.returncode == 0, again
    assert done_counts(again) == (0, 10, 0, "stream"), again.stdout
    assert starts(noted) == 0, "an unchanged sync opened an SFTP session"

    (tree / "f0.txt").write_bytes(b"changed\n")
    extra = noted_fleet.ssh("noted", f"echo extra > {remote}/tree/extra", timeout=30)
    assert extra.returncode == 0, extra
    dry = cli.run(*args[:5], "--delete", "--dry-run", *args[5:])
    assert dry.returncode == 0, dry
    assert done_counts(dry) == (1, 9, 1, "stream"), dry.stdout
    listing = noted_fleet.ssh("noted", f"cat {remote}/tree/f0.txt {remote}/tree/extra")
    assert listing.stdout == "file 0\n" * 40 + "extra\n", listing

    real = cli.run(*args[:5], "--delete", *args[5:])
    assert real.returncode == 0, real
    assert done_counts(real) == (1, 9, 1, "stream"), real.stdout
    after = noted_fleet.ssh("noted", f"cat {remote}/tree/f0.txt; ls -a {remote}/tree")
    assert after.stdout.split("\n", 1) == ["changed", ".\n..\nf0.txt\nf2.txt\nf4.txt\n"
                                           "f6.txt\nf8.txt\nsub\n"], after
    assert starts(noted) == 0, "a sync that sent one file opened an SFTP session"
