"""Turn the user's ``-h``/``-g``/``-H``/``-x`` expressions into the list of hosts to run on.

The selection is the union of the ``-h`` hosts, the ``-g`` groups and the ``-H`` ad-hoc hosts
(:mod:`hostbatch.inventory.adhoc`), minus the ``-x`` hosts, each host once, in inventory order
(ad-hoc hosts last, as given). A ``-h`` item is an exact name, a numeric range
(``web[01-03]``) or a shell glob (``web*``); a ``-g`` item is a group name or glob. Anything that
matches nothing is an error with the nearest names suggested, so a typo never silently shrinks a
rollout.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from hostbatch.errors import SelectionError, UsageError, excerpt
from hostbatch.inventory.adhoc import adhoc_sections
from hostbatch.inventory.model import HostSpec, Inventory
from hostbatch.inventory.ranges import RangeError, expand, is_range, split_list

_GLOB_CHARS = frozenset("*?[")
#: The error when no host expression was given at all.
NOTHING_SELECTED = ("no hosts selected: give -h HOSTS, -g GROUPS (-g all for every host) or "
                    "-H HOSTS (hosts not in the inventory)")


@dataclass(frozen=True)
class Selection:
    """The user's selection expressions, each a list of comma-list strings as typed."""

    hosts: Sequence[str] = ()
    groups: Sequence[str] = ()
    exclude: Sequence[str] = ()
    adhoc: Sequence[str] = ()

    def is_empty(self) -> bool:
        """True when no hosts, groups or ad-hoc hosts were asked for."""
        return not any(split_list(item) for item in (*self.hosts, *self.groups, *self.adhoc))

    @property
    def adhoc_only(self) -> bool:
        """Only ``-H`` hosts were asked for: no inventory is needed."""
        return not any(split_list(item) for item in (*self.hosts, *self.groups))


def _items(values: Iterable[str]) -> list[str]:
    return [item for value in values for item in split_list(value)]


def _suggestion(word: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(names), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _match_hosts(item: str, inventory: Inventory) -> list[str]:
    """Host names matched by one ``-h``/``-x`` item."""
    if item in inventory.hosts:
        return [item]
    patterns = [item]
    if is_range(item):
        try:
            patterns = expand(item)
        except RangeError as exc:
            raise UsageError(f"bad host range {excerpt(item)}: {exc}") from None
    exact = {p for p in patterns if not _GLOB_CHARS & set(p)}
    globs = [p for p in patterns if _GLOB_CHARS & set(p)]
    return [name for name in inventory.hosts
            if name in exact or any(fnmatch.fnmatchcase(name, g) for g in globs)]


def _match_groups(item: str, inventory: Inventory) -> list[str]:
    """Group names matched by one ``-g`` item."""
    names = inventory.group_names()
    if item in names:
        return [item]
    if _GLOB_CHARS & set(item):
        return [name for name in names if fnmatch.fnmatchcase(name, item)]
    return []


def select(
    inventory: Inventory,
    selection: Selection,
    *,
    warn: Callable[[str], None] | None = None,
) -> list[HostSpec]:
    """Resolve ``selection`` against ``inventory``; raise if anything matches nothing."""
    if selection.is_empty():
        raise UsageError(NOTHING_SELECTED)
    chosen: set[str] = set(adhoc_sections(selection.adhoc))
    for item in _items(selection.hosts):
        matched = _match_hosts(item, inventory)
        if not matched:
            raise SelectionError(
                f"host {excerpt(item)} is not in {inventory.path}"
                f"{_suggestion(item, inventory.hosts)}; use -H NAME for a host that is not in "
                "the inventory",
                [item],
            )
        chosen.update(matched)
    for item in _items(selection.groups):
        groups = _match_groups(item, inventory)
        if not groups:
            raise SelectionError(
                f"group {excerpt(item)} is not in {inventory.path}"
                f"{_suggestion(item, inventory.group_names())}",
                [item],
            )
        chosen.update(inventory.members_of(groups))
    chosen_before_exclude = bool(chosen)
    for item in _items(selection.exclude):
        matched = _match_hosts(item, inventory)
        if not matched and warn is not None:
            warn(f"-x {excerpt(item)} matches no host{_suggestion(item, inventory.hosts)}")
        chosen.difference_update(matched)
    hosts = [spec for name, spec in inventory.hosts.items() if name in chosen]
    if not hosts:
        reason = ("-x excluded every selected host" if chosen_before_exclude
                  else "the selected groups have no hosts")
        raise SelectionError(f"the selection is empty: {reason}")
    return hosts
