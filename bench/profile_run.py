#!/usr/bin/env python3
"""Profile ``batch_run`` (the parent and its workers) on an output-heavy run of a local fleet.

Starts a fleet of N real sshd hosts (``tests/support/fleet.py``), then for each output mode
(streaming, ``-b``, ``--json``; history on, as by default) runs ``batch_run`` once plainly,
to read its client CPU (user + system of it and its workers, from ``wait4``), and once under
``py-spy record --subprocesses`` (sampling every thread of every process), writing
collapsed stacks to WORKDIR/MODE.txt. ``--top`` prints the functions with the most samples,
self and inclusive, per process role.

Needs root and py-spy (``pip install py-spy``); bind loopback addresses, so run it alone::

    flock /tmp/hostbatch-integration.lock .venv/bin/python bench/profile_run.py --hosts 100
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.benchkit_proc import BENCH_USER, CURVE25519, ensure_bench_user  # noqa: E402
from tests.support.fleet import Fleet  # noqa: E402

COMMAND = "head -c 1000000 /dev/zero | base64"
MODES = {"stream": [], "b": ["-b"], "json": ["--json"]}


def _pss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else 0


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


class PssWatch:
    """Peak PSS of a process and of each of its children, sampled every 50 ms."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peaks: dict[int, int] = {}
        self.peak_sum = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            values = {pid: _pss_kb(pid) for pid in [self.root, *_children(self.root)]}
            for pid, kb in values.items():
                self.peaks[pid] = max(self.peaks.get(pid, 0), kb)
            self.peak_sum = max(self.peak_sum, sum(values.values()))

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        each = ", ".join(f"{kb / 1024:.0f}" for kb in self.peaks.values())
        return f"peak PSS {self.peak_sum / 1024:.0f} MB (per process: {each} MB)"


def run_timed(argv: list[str], out: Path, env: dict[str, str]) -> tuple[float, float, int, str]:
    """Run ``argv`` with stdout to ``out``; (wall, user + system CPU of its tree, status,
    peak PSS)."""
    started = time.monotonic()
    with open(out, "wb") as handle, open(f"{out}.err", "wb") as errors:
        process = subprocess.Popen(argv, stdout=handle, stderr=errors, env=env)
        watch = PssWatch(process.pid)
        _, status, usage = os.wait4(process.pid, 0)
    return time.monotonic() - started, usage.ru_utime + usage.ru_stime, status, watch.stop()


def top(stacks: Path, count: int) -> str:
    """The most sampled functions of a py-spy raw (collapsed) file, self and inclusive."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = stack.split(";")
        weight = int(samples)
        total += weight
        own[frames[-1]] += weight
        for frame in set(frames):
            inclusive[frame] += weight
    lines = [f"{total} samples"]
    for title, counter in (("self", own), ("inclusive", inclusive)):
        lines.append(f"-- {title}")
        lines += [f"{n / total:6.1%}  {name}" for name, n in counter.most_common(count)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--command", default=COMMAND)
    parser.add_argument("--workdir", type=Path, default=REPO / "bench" / "work" / "profile")
    parser.add_argument("--batch-run", default=str(Path(sys.executable).parent / "batch_run"))
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-spy", dest="spy", action="store_false")
    parser.add_argument("--gil", action="store_true",
                        help="sample only the thread holding the GIL (Python CPU time)")
    args = parser.parse_args(argv)
    ensure_bench_user()
    args.workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NO_COLOR": "1"}
    fleet = Fleet(args.workdir / f"fleet-{args.hosts}", args.hosts, user=BENCH_USER,
                  extra_sshd_config=f"KexAlgorithms {CURVE25519}")
    with fleet.start(timeout=max(60.0, args.hosts * 0.3)):
        inventory = fleet.write_inventory(args.workdir / "hosts.ini")
        for mode in args.modes.split(","):
            run = [args.batch_run, "-i", str(inventory), "-g", "all", "-f", "64", *MODES[mode],
                   "-cmd", args.command]
            wall, cpu, status, pss = run_timed(run, args.workdir / f"{mode}.out", env)
            print(f"{mode}: wall {wall:.2f} s, client CPU {cpu:.2f} s, status {status}, {pss}",
                  flush=True)
            if args.spy and shutil.which("py-spy", path=str(Path(sys.executable).parent)):
                stacks = args.workdir / f"{mode}.txt"
                spy = [str(Path(sys.executable).parent / "py-spy"), "record", "--subprocesses",
                       "--format", "raw", *(["--gil"] if args.gil else []),
                       "-r", str(args.rate), "-o", str(stacks), "--", *run]
                run_timed(spy, args.workdir / f"{mode}.spy.out", env)
                print(top(stacks, args.top), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
