"""Run a command on a group with the library, then print each host's output and outcome.

Reads the inventory named by $HOSTBATCH_INVENTORY (else ./hosts.ini).
"""

import os
from collections import defaultdict
from pathlib import Path

from hostbatch import RunCommand, RunSettings, Selection, load_inventory, run, select
from hostbatch.engine.events import Event, OutputLines

inventory = load_inventory(Path(os.environ.get("HOSTBATCH_INVENTORY", "hosts.ini")))
hosts = select(inventory, Selection(groups=["all"]))
output: dict[str, bytearray] = defaultdict(bytearray)


def collect(event: Event) -> None:
    """Called in this process for every event as it arrives: keep each host's stdout."""
    if isinstance(event, OutputLines) and event.stream == "stdout":
        output[event.host] += event.data


result = run(hosts, RunCommand("uptime"), RunSettings(forks=32), on_event=collect)
for name in result.hosts:
    outcome = result.outcomes[name]
    if outcome.failure is None:
        ending = f"exit status {outcome.exit_status}"
    else:
        ending = f"{outcome.failure.value}: {outcome.message}"
    print(f"{name}: {ending} ({outcome.duration:.2f}s)")
    for line in output[name].decode(errors="replace").splitlines():
        print(f"    {line}")
print("exit status of the run:", int(result.exit_status))
