"""hostbatch: run commands and copy files on groups of hosts over SSH, in parallel.

The library API mirrors the CLI's data flow: load an inventory, select hosts, run an action,
get a :class:`~hostbatch.engine.outcome.BatchResult` where each host's failure is a value.
Importing this is cheap: paramiko is imported by worker processes, and in the parent only
when an ssh_config file is in use or an identity file is encrypted (:mod:`hostbatch.prepare`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Amount",
    "BatchResult",
    "FailureKind",
    "GetFiles",
    "HostOverrides",
    "HostSpec",
    "HostbatchError",
    "Inventory",
    "PutFiles",
    "RolloutPolicy",
    "RunCommand",
    "RunInput",
    "RunSettings",
    "ScanHostKey",
    "Selection",
    "load_inventory",
    "prepare_hosts",
    "run",
    "select",
]

_LAZY = {
    "Amount": "hostbatch.rollout",
    "BatchResult": "hostbatch.engine.outcome",
    "FailureKind": "hostbatch.errors",
    "HostbatchError": "hostbatch.errors",
    "HostOverrides": "hostbatch.prepare",
    "HostSpec": "hostbatch.inventory.model",
    "Inventory": "hostbatch.inventory.model",
    "RolloutPolicy": "hostbatch.rollout",
    "GetFiles": "hostbatch.actions",
    "PutFiles": "hostbatch.actions",
    "RunCommand": "hostbatch.actions",
    "RunInput": "hostbatch.actions",
    "ScanHostKey": "hostbatch.actions",
    "RunSettings": "hostbatch.settings",
    "Selection": "hostbatch.selection",
    "load_inventory": "hostbatch.inventory.loader",
    "prepare_hosts": "hostbatch.prepare",
    "run": "hostbatch.api",
    "select": "hostbatch.selection",
}

if TYPE_CHECKING:
    from hostbatch.actions import GetFiles, PutFiles, RunCommand, RunInput, ScanHostKey
    from hostbatch.api import run
    from hostbatch.engine.outcome import BatchResult
    from hostbatch.errors import FailureKind, HostbatchError
    from hostbatch.inventory.loader import load_inventory
    from hostbatch.inventory.model import HostSpec, Inventory
    from hostbatch.prepare import HostOverrides, prepare_hosts
    from hostbatch.rollout import Amount, RolloutPolicy
    from hostbatch.selection import Selection, select
    from hostbatch.settings import RunSettings


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hostbatch' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
