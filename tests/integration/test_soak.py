"""Soak: 50 consecutive ``hostbatch.run()`` calls in one process leave nothing behind.

A program that embeds hostbatch (a deploy service, a scheduler) calls ``run()`` again and
again in one long-lived process, so whatever a run leaves behind adds up: a pipe not closed
is two file descriptors per run until ``EMFILE``, a thread or a worker process not ended
stays for the life of the service, and an object kept alive grows the heap.

The runs happen in a child Python process (this file run as a script), so the numbers are
those of a plain program and not of pytest with its fixtures, threads and fleets. After each
run the child samples, from ``/proc/self``: open file descriptors, threads (the kernel's
count, which includes threads that Python no longer lists), child processes (zombies
included: a worker not reaped is a leak too) and RSS. Each run reaches a few real sshd hosts
(one of them stopped, so the failure path runs too) and prints 20,000 lines per host.

The bounds, after 5 warm-up runs (imports, caches and the allocator's first arenas):

* file descriptors and threads: no growth at all. Each run opens a fixed set of them, so any
  growth is a leak; one pipe per run would already show as +90 descriptors.
* child processes: none left after any run (every worker is joined and reaped).
* RSS: at most ``RSS_GROWTH_KIB`` (4 MiB) over the 45 measured runs. Each run moves 60,000
  lines (~330 KB) through the parent, so keeping one run's output alive would grow it by
  about 15 MiB over 45 runs. Measured: +1.1 MiB over the 45 runs, and flat (within 1 MiB)
  over 300 runs, which is the allocator's noise.

Hosts of this module: 127.0.32.x.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

RUNS = 50
WARMUP = 5
RSS_GROWTH_KIB = 4 * 1024
LINES = 20_000
NAMES = ("soak01", "soak02", "soak03", "soak04")
STOPPED = "soak04"


# ------------------------------------------------------------------ the child: runs and samples


def _status_field(name: str) -> int:
    """An integer field of /proc/self/status (``Threads``, ``VmRSS`` in KiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise KeyError(name)


def _child_processes() -> int:
    """Processes whose parent is this one, zombies included."""
    me, count = os.getpid(), 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            data = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        if int(data.rsplit(b")", 1)[1].split()[1]) == me:
            count += 1
    return count


def _settled_threads(expected: int = 1, within: float = 2.0) -> int:
    """The kernel's thread count once it settles: a thread Python has joined can still be
    counted for a moment while the kernel tears it down (seen under load). A leaked thread
    never settles, so it is still reported."""
    deadline = time.monotonic() + within
    while True:
        threads = _status_field("Threads")
        if threads <= expected or time.monotonic() >= deadline:
            return threads
        time.sleep(0.01)


def sample() -> dict[str, int]:
    """What this process holds now."""
    return {"fds": len(os.listdir("/proc/self/fd")), "threads": _settled_threads(),
            "children": _child_processes(), "rss_kib": _status_field("VmRSS")}


def soak(inventory: Path, runs: int, home: str) -> list[dict[str, int]]:
    """Run ``runs`` times through the public API and sample after each run."""
    import hostbatch
    from hostbatch.engine.events import OutputLines

    hosts = hostbatch.select(hostbatch.load_inventory(inventory),
                             hostbatch.Selection(groups=["all"]))
    action = hostbatch.RunCommand(f"seq 1 {LINES}")
    settings = hostbatch.RunSettings(connect_timeout=10)
    samples = []
    for _ in range(runs):
        lines = 0

        def count(event: object) -> None:
            nonlocal lines
            if isinstance(event, OutputLines):
                lines += event.data.count(b"\n")

        result = hostbatch.run(hosts, action, settings, on_event=count, home=home)
        failed = {o.host: (o.failure, o.message) for o in result.outcomes.values() if not o.ok}
        assert list(failed) == [STOPPED], failed
        assert lines == LINES * (len(NAMES) - 1), lines
        samples.append(sample())
    return samples


def main(argv: list[str] | None = None) -> int:
    """``python test_soak.py INVENTORY RUNS HOME``: print one JSON sample per run."""
    parser = argparse.ArgumentParser()
    parser.add_argument("inventory", type=Path)
    parser.add_argument("runs", type=int)
    parser.add_argument("home")
    args = parser.parse_args(argv)
    for item in soak(args.inventory, args.runs, args.home):
        print(json.dumps(item), flush=True)
    return 0


# ------------------------------------------------------------------ the test


if __name__ != "__main__":
    from tests.integration.conftest import TEST_USER, fleet_host, write_inventory
    from tests.support.fleet import Fleet

    pytestmark = [pytest.mark.integration, pytest.mark.soak]

    @pytest.fixture(scope="module")
    def soak_fleet(test_user: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
        with Fleet(tmp_path_factory.mktemp("soak-fleet"), len(NAMES), names=NAMES,
                   first_address="127.0.32.10", user=test_user) as fleet:
            fleet.stop_host(STOPPED)
            yield fleet

    def test_fifty_library_runs_leak_no_fd_thread_process_or_memory(
            soak_fleet: Fleet, tmp_path: Path) -> None:
        inventory = write_inventory(tmp_path / "hosts.ini",
                                    {name: fleet_host(soak_fleet, name) for name in NAMES},
                                    defaults={"user": TEST_USER})
        home = tmp_path / "home"
        home.mkdir()
        proc = subprocess.run([sys.executable, __file__, str(inventory), str(RUNS), str(home)],
                              capture_output=True, text=True, timeout=300, check=False,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
        assert proc.returncode == 0, proc.stderr[-3000:]
        samples = [json.loads(line) for line in proc.stdout.splitlines()]
        assert len(samples) == RUNS
        base, last = samples[WARMUP - 1], samples[-1]
        table = "\n".join(f"{n + 1:3d} {s}" for n, s in enumerate(samples))
        print(f"soak: after run {WARMUP}: {base}; after run {RUNS}: {last}")
        for name in ("fds", "threads"):
            grown = [s[name] for s in samples[WARMUP:] if s[name] > base[name]]
            assert not grown, f"{name} grew past {base[name]}:\n{table}"
        assert all(s["children"] == 0 for s in samples), f"workers left behind:\n{table}"
        assert last["rss_kib"] - base["rss_kib"] <= RSS_GROWTH_KIB, table


if __name__ == "__main__":
    sys.exit(main())
