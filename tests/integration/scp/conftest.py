"""Fixtures and helpers for the ``batch_scp`` integration tests (issue 3).

The hosts are real OpenSSH ``sshd`` processes (``tests.support.fleet``) with
``private_tmp=True``: each host sees its own empty tmpfs at ``/srv/hostbatch-fleet``, inside a
mount namespace of its sshd.  The test process looks at a host's file system through
``/proc/PID/root`` of that sshd (same mount namespace, so exactly what the host sees), and
mounts a tiny tmpfs inside one host's namespace with ``nsenter`` for the disk-full test.

Logins use the plain user ``hbtest`` (root's ``~/.bashrc`` here is slow and noisy).  The
remote home ``/home/hbtest`` is *shared* by every host (only ``/srv/hostbatch-fleet`` is
private), so home-relative tests select a single host.

Address plan (disjoint from the batch_run tests, which use 127.0.10.x and up):

* 127.0.9.10-12   the scp fleet: scp1 scp2 scp3 (session)
* 127.0.9.200     SFTP fault servers (per test)
* 127.0.9.250     a silent listener: a host no local-error run may ever connect to

The CLI always runs as a subprocess with ``HOME`` set to an empty directory of the test and
without ``SSH_AUTH_SOCK``.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.scp.scpkit import (
    BATCH_SCP,
    BIG_SIZE,
    FIRST_ADDRESS,
    MID_SIZE,
    NAMES,
    SILENT_ADDRESS,
    TEST_PASSWORD,
    TEST_USER,
    Cli,
    Hosts,
    RemoteDir,
    random_file,
)
from tests.support.cli import require_environment
from tests.support.fleet import PRIVATE_DIR, Fleet, ensure_test_user


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A ``batch_scp`` runner whose HOME is an empty directory of this test.

    Runs may take 90 s (big files on a loaded machine); ``popen`` runs get a session of their
    own, so a test can interrupt a run's whole process group as a terminal's Ctrl-C does.
    """
    return Cli(tmp_path / "home", tmp_path / "cwd", command="scp", timeout=90, new_session=True)


@pytest.fixture(scope="session")
def scp_user() -> str:
    require_environment(BATCH_SCP, "sshd fleet, test user, mount namespaces")
    ensure_test_user(TEST_USER, TEST_PASSWORD)
    return TEST_USER


@pytest.fixture(scope="session")
def scp_fleet(scp_user: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(tmp_path_factory.mktemp("scp-fleet"), len(NAMES), names=NAMES,
               first_address=FIRST_ADDRESS, user=scp_user, private_tmp=True) as fleet:
        yield fleet


@pytest.fixture(scope="session")
def hosts(scp_fleet: Fleet) -> Hosts:
    return Hosts(scp_fleet)


@pytest.fixture(scope="session")
def inventory(scp_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scp1..scp3; group ``grp`` = scp2, scp3 (``all`` is implicit)."""
    return scp_fleet.write_inventory(tmp_path_factory.mktemp("scp-inventory") / "hosts.ini",
                                     {"grp": ["scp2", "scp3"]})


@pytest.fixture
def rdir(hosts: Hosts, request: pytest.FixtureRequest) -> Iterator[RemoteDir]:
    """``/srv/hostbatch-fleet/t-TEST-RANDOM`` on every host; removed (and unmounted) after."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:40].strip("-")
    path = f"{PRIVATE_DIR}/t-{slug}-{secrets.token_hex(3)}"
    directory = RemoteDir(path, hosts, [])
    for name in hosts.names:
        local = hosts.local(name, path)
        local.mkdir(mode=0o755)
        hosts.chown(local)
    try:
        yield directory
    finally:
        for name, remote in directory.mounts:
            hosts.nsenter(name, "umount", "-l", remote)
        for name in hosts.names:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(hosts.local(name, path))


@pytest.fixture(scope="session")
def silent_listener() -> Iterator[socket.socket]:
    """A listening socket that never answers: a run that connects to it would hang/fail."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((SILENT_ADDRESS, 0))
    sock.listen(16)
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture(scope="session")
def guarded_inventory(scp_fleet: Fleet, silent_listener: socket.socket,
                      tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fleet plus ``gone``: a host on the silent listener.  Local errors must be found
    before any connection is attempted (exit 2, and no connection on the listener)."""
    path = scp_fleet.write_inventory(
        tmp_path_factory.mktemp("guarded-inventory") / "hosts.ini", {"grp": ["scp2", "scp3"]})
    port = silent_listener.getsockname()[1]
    with open(path, "a") as handle:
        handle.write(f"\n[host:gone]\nhostname = {SILENT_ADDRESS}\nport = {port}\n")
    path.chmod(0o644)  # readable by the capability-dropped run of the unreadable-file test
    return path


@pytest.fixture(scope="session")
def mid_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_file(tmp_path_factory.mktemp("mid") / "mid.bin", MID_SIZE)


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_file(tmp_path_factory.mktemp("big") / "big.bin", BIG_SIZE)
