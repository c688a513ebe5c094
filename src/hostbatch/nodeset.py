"""Fold host names into ClusterShell-style ranges: ``web01 web02 web03 web07`` -> ``web[01-03,07]``.

The inverse of :mod:`hostbatch.inventory.ranges`: every folded text expands back, through
``split_list`` and ``expand``, to exactly the names it came from. Rules:

* Only the last run of digits in a name folds (``rack1-n01``, ``rack1-n02`` -> ``rack1-n[01-02]``);
  names without digits, and names holding ``[``, ``]`` or ``,`` (which would not expand back),
  stay as they are.
* Zero padding is kept: ``web01`` and ``web1`` are different hosts and never share a range.
  A number written without a leading zero joins a padded range of its own width
  (``web09``, ``web10`` -> ``web[09-10]``).
* A name that is alone in its pattern stays unbracketed (``db1``, not ``db[1]``).
* The output order is natural (``web2`` before ``web10``) and does not depend on input order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_LAST_NUMBER = re.compile(r"^(.*?)(\d+)(\D*)$", re.DOTALL)
_CHUNKS = re.compile(r"(\d+)")
_UNFOLDABLE = frozenset("[],")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key ordering digit runs by value: ``web2`` < ``web10``, ``web1`` < ``web01``."""
    key: list[tuple[int, int | str]] = []
    for index, chunk in enumerate(_CHUNKS.split(name)):
        if index % 2:
            key.append((1, int(chunk)))
            key.append((1, len(chunk)))
        elif chunk:
            key.append((0, chunk))
    return tuple(key)


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted, distinct ``values`` as ``(low, high)`` pairs."""
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def _bracket(values: list[int], width: int) -> str:
    """The bracket body for ``values``, each written ``width`` digits wide (0: as is)."""
    parts = []
    for low, high in _runs(sorted(set(values))):
        low_text, high_text = f"{low:0{width}d}", f"{high:0{width}d}"
        parts.append(low_text if low == high else f"{low_text}-{high_text}")
    return ",".join(parts)


def _split_by_width(numbers: list[str]) -> dict[int, list[int]]:
    """Group the digit strings of one pattern by padding: width ``n`` for zero-padded numbers
    (and unpadded ones of that length, which read the same), 0 for the rest."""
    padded_widths = {len(n) for n in numbers if len(n) > 1 and n.startswith("0")}
    groups: dict[int, list[int]] = {}
    for number in numbers:
        width = len(number) if len(number) in padded_widths else 0
        groups.setdefault(width, []).append(int(number))
    return groups


def fold(names: Iterable[str]) -> list[str]:
    """Fold ``names`` (duplicates ignored) into range items, in natural order."""
    patterns: dict[tuple[str, str], list[str]] = {}
    items: list[tuple[tuple[tuple[int, int | str], ...], str]] = []
    for name in dict.fromkeys(names):
        match = _LAST_NUMBER.match(name)
        if match is None or _UNFOLDABLE.intersection(name):
            items.append((natural_key(name), name))
            continue
        prefix, number, suffix = match.groups()
        patterns.setdefault((prefix, suffix), []).append(number)
    for (prefix, suffix), numbers in patterns.items():
        for width, values in _split_by_width(numbers).items():
            first = f"{prefix}{min(values):0{width}d}{suffix}"
            if len(set(values)) == 1:
                items.append((natural_key(first), first))
            else:
                items.append((natural_key(first),
                              f"{prefix}[{_bracket(values, width)}]{suffix}"))
    return [text for _, text in sorted(items)]


def fold_text(names: Iterable[str]) -> str:
    """The folded names as one comma list, as a header shows them: ``web[01-03],db1``."""
    return ",".join(fold(names))
