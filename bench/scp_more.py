"""Issue 11's extra ``bench_scp.py`` scenarios: ``--sync`` of a tree, tree get, their peers.

* ``sync-same``: every host already holds the tree (``cp -a`` of the source on the host, so
  sizes, modes and mtimes match); the tool is run again with ``--sync`` (hostbatch) or
  ``rsync -a`` (``parallel-rsync``, Debian's pssh) and should send nothing.
* ``sync-one``: the same, but one file of each host's copy was appended to (other size, newer
  mtime): the sync sends that one file back.
* ``get``: every host holds the tree; the tool fetches it from every host into a local
  directory (``batch_scp -action get -r``, ``clush --rcopy``), where each copy is checked.

Seeding happens before the timer starts, on the host itself (``cp -a`` from the benchmark's
work directory, which every host can read), so no tool pays for it.
"""

from __future__ import annotations

import functools
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

#: Scenarios whose hosts are seeded with the tree before the run.
SEEDED = ("sync-same", "sync-one", "get")
SYNC = ("sync-same", "sync-one")
#: The file each host's copy has appended to in ``sync-one`` (relative to the tree).
CHANGED = "d00/f0000.dat"


def seed_command(dest: str, source: Path, scenario: str) -> str:
    """Shell command that empties ``dest`` and, for a seeded scenario, fills it with a copy
    of ``source`` (modes and mtimes kept), changing one file for ``sync-one``."""
    quoted = shlex.quote(dest)
    command = f"rm -rf -- {quoted} && mkdir -- {quoted}"
    if scenario in SEEDED:
        command += f" && cp -a -- {shlex.quote(str(source))} {quoted}/"
    if scenario == "sync-one":
        changed = shlex.quote(f"{dest}/{source.name}/{CHANGED}")
        command += f" && printf x >> {changed}"
    return command


#: Where ``get`` fetches to: a tmpfs, as the hosts' destinations are. On the work directory's
#: disk (ext4) writing 50,000 small files cost both tools 35-45 s of system CPU per run after
#: the first, which measured the local file system rather than the copy.
GET_TMPFS = Path("/dev/shm")


def get_dir(workdir: Path) -> Path:
    """The local directory the ``get`` scenario fetches into (on :data:`GET_TMPFS` when the
    machine has it, else in the work directory)."""
    if GET_TMPFS.is_dir():
        return GET_TMPFS / f"hostbatch-bench-scp-get-{workdir.name}"
    return workdir / "get-out"


def clear_get_dir(workdir: Path) -> None:
    """Empty the local get directory (before every run)."""
    shutil.rmtree(get_dir(workdir), ignore_errors=True)
    get_dir(workdir).mkdir(parents=True)


def fetched_copy(workdir: Path, tool: str, host: str, tree: str) -> Path:
    """Where ``tool`` leaves the tree fetched from ``host``: hostbatch writes ``DIR/HOST/NAME``,
    ``clush --rcopy`` writes ``DIR/NAME.HOST``."""
    if tool.startswith("hostbatch"):
        return get_dir(workdir) / host / tree
    return get_dir(workdir) / f"{tree}.{host}"


@functools.lru_cache(maxsize=4)
def tree_manifest(source: Path, script: str) -> str:
    """The manifest script's report of the tree itself (its contents, not its holder)."""
    return subprocess.run(["/bin/sh", "-c", script, "manifest", str(source)],
                          capture_output=True, text=True, check=True).stdout


def verify_fetched(workdir: Path, tool: str, names: Sequence[str], source: Path,
                   script: str) -> str:
    """"" when every host's fetched copy of ``source`` is exact, else what is wrong."""
    expected = tree_manifest(source, script)
    wrong = []
    for name in names:
        copy = fetched_copy(workdir, tool, name, source.name)
        proc = subprocess.run(["/bin/sh", "-c", script, "manifest", str(copy)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0 or proc.stdout != expected:
            wrong.append(name)
    if not wrong:
        return ""
    return (f"{len(wrong)} of {len(names)} fetched copies are wrong or missing, e.g. "
            f"{fetched_copy(workdir, tool, wrong[0], source.name)}")


def prsync_argv(hostfile: Path, fanout: int, ssh_config: Path, source: Path,
                dest: str) -> list[str]:
    """``parallel-rsync -a -r`` of ``source`` into ``dest/`` on every host of ``hostfile``."""
    return ["parallel-rsync", "-h", str(hostfile), "-p", str(fanout), "-t", "0", "-a", "-r",
            "-S", f"-F {ssh_config}", str(source), dest + "/"]


_SYNC_SUMMARY = re.compile(rb"^  sync: (\d+) sent .*, (\d+) unchanged, ", re.M)


def check_sync_summary(stderr: bytes, scenario: str, hosts: int) -> str:
    """"" when hostbatch's sync summary sent what the scenario changed: nothing for
    ``sync-same``, one file per host for ``sync-one`` (a sync that resends everything would
    still leave exact copies, so the copies alone cannot tell)."""
    if scenario not in SYNC:
        return ""
    match = _SYNC_SUMMARY.search(stderr)
    want = 0 if scenario == "sync-same" else hosts
    if match is None or int(match[1]) != want:
        return f"sync summary does not say {want} sent: {match[0] if match else 'none'!r}"
    return ""


Row = tuple[str, str, str]


def sync_and_get_targets(wall: Callable[[str, int, str], float | None],
                         rate: Callable[[str, int, str], float | None],
                         verdict: Callable[[bool | None], str]) -> list[Row]:
    """Issue 11's rows for ``--sync`` and tree get, at 50 hosts, from this run's medians.

    ``wall`` and ``rate`` give a cell's median wall (s) and aggregate MiB/s, or ``None``.
    """
    rows: list[Row] = []
    full = wall("tree", 50, "hostbatch")
    same, prsync = wall("sync-same", 50, "hostbatch"), wall("sync-same", 50, "prsync")
    label = "unchanged tree, `--sync`, 50 hosts: wall <= 0.15x hostbatch's full put"
    if same is not None and full is not None:
        rows.append((label, f"{same:.2f} s vs {full:.2f} s = {same / full:.2f}x",
                     verdict(same <= 0.15 * full)))
    else:
        rows.append((label, "n/a", verdict(None)))
    label = "unchanged tree, `--sync`, 50 hosts: faster than parallel-rsync"
    if same is not None and prsync is not None:
        rows.append((label, f"{same:.2f} s vs {prsync:.2f} s = {same / prsync:.2f}x",
                     verdict(same < prsync)))
    else:
        rows.append((label, "n/a", verdict(None)))
    one = wall("sync-one", 50, "hostbatch")
    label = "one file changed, `--sync`, 50 hosts: wall <= 0.2x hostbatch's full put"
    if one is not None and full is not None:
        rows.append((label, f"{one:.2f} s vs {full:.2f} s = {one / full:.2f}x",
                     verdict(one <= 0.2 * full)))
    else:
        rows.append((label, "n/a", verdict(None)))
    mine, clush = rate("get", 50, "hostbatch"), rate("get", 50, "clush")
    label = "tree get from 50 hosts: aggregate throughput >= 1.5x clush --rcopy"
    if mine is not None and clush is not None:
        rows.append((label, f"{mine:.0f} vs {clush:.0f} MiB/s = {mine / clush:.2f}x",
                     verdict(mine >= 1.5 * clush)))
    else:
        rows.append((label, "n/a", verdict(None)))
    return rows
