"""``-h @failed``, ``@failed:ID``, ``@ok``, ``@ok:ID``: host lists taken from the history.

The shortcuts are replaced by plain host names before :func:`hostbatch.selection.select` runs,
so selection itself knows nothing of SQLite. ``@failed`` is every host of the run that did not
succeed (non-zero exit, unreachable, timed out, interrupted, skipped, or no result recorded);
``@ok`` every host that did. Without ``:ID`` the run is the newest one that has ended.
This module imports the database code only when a shortcut is actually used.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from hostbatch.errors import UsageError, excerpt
from hostbatch.inventory.ranges import split_list
from hostbatch.selection import Selection

if TYPE_CHECKING:
    from hostbatch.history.store import HistoryStore

_SHORTCUT = re.compile(r"^@(failed|ok)(?::(\d+))?$")


def uses_history(selection: Selection) -> bool:
    """True when a ``-h`` or ``-x`` item is an ``@`` shortcut (cheap: no database access)."""
    return any(item.startswith("@") for value in (*selection.hosts, *selection.exclude)
               for item in split_list(value))


class _Resolver:
    def __init__(self, path: Path, known: Collection[str], inventory_path: str) -> None:
        self.path = path
        self.known = known
        self.inventory_path = inventory_path
        self._store: HistoryStore | None = None

    def store(self) -> HistoryStore:
        if self._store is None:
            from hostbatch.history.store import READ_BUSY_TIMEOUT, HistoryStore

            self._store = HistoryStore.open(self.path, create=False,
                                            busy_timeout=READ_BUSY_TIMEOUT)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def expand(self, values: Sequence[str], option: str) -> list[str]:
        items: list[str] = []
        for value in values:
            for item in split_list(value):
                items.extend(self._names(item, option) if item.startswith("@") else [item])
        return items

    def _names(self, item: str, option: str) -> list[str]:
        match = _SHORTCUT.match(item)
        if match is None:
            raise UsageError(f"{option} {excerpt(item)}: unknown shortcut "
                             "(use @failed, @failed:ID, @ok or @ok:ID)")
        which, run_id = match.groups()
        store = self.store()
        run = store.run(int(run_id)) if run_id else store.last_run()
        names = [row.host for row in store.hosts(run.id) if row.ok == (which == "ok")]
        missing = [name for name in names if name not in self.known]
        if missing:
            raise UsageError(f"{option} {item}: host{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(missing)} of run {run.id} "
                             f"{'are' if len(missing) > 1 else 'is'} not in "
                             f"{self.inventory_path}")
        if not names and option == "-h":
            raise UsageError(f"{option} {item}: no host "
                             f"{'succeeded' if which == 'ok' else 'failed'} in run {run.id}")
        return names


def resolve_shortcuts(selection: Selection, history: Path, known: Collection[str],
                      inventory_path: str) -> Selection:
    """``selection`` with every ``@`` shortcut replaced by the host names it stands for.

    ``known`` are the inventory's host names: a host from the history that is no longer in
    the inventory is an error naming it (running on fewer hosts than asked would be silent).
    """
    import sqlite3

    from hostbatch.history.store import unusable

    resolver = _Resolver(history, known, inventory_path)
    try:
        return replace(selection, hosts=resolver.expand(selection.hosts, "-h"),
                       exclude=resolver.expand(selection.exclude, "-x"))
    except (sqlite3.Error, ValueError, TypeError, IndexError) as exc:
        raise unusable(history, exc) from None
    finally:
        resolver.close()
