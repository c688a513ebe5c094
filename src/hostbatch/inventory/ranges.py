"""Expand host-name ranges such as ``web[02-10]`` or ``rack[1-2]-n[01-04,07]``.

Zero padding follows the written bounds (``[02-10]`` gives ``02 .. 10``), several bracket groups
expand as a cartesian product in written order, and a bracket whose content is not a numeric
range list (``web[abc]``) is not a range: callers treat such a name as a shell glob.
"""

from __future__ import annotations

import itertools
import re

from hostbatch.errors import excerpt

_RANGE_BODY = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_BRACKET = re.compile(r"\[([^\[\]]*)\]")

#: Refuse expansions past this many names: a typo like ``[1-9999999]`` must not eat memory.
MAX_EXPANSION = 100_000


class RangeError(ValueError):
    """A bracket expression looks like a range but cannot be expanded."""


def is_range(text: str) -> bool:
    """True when ``text`` holds at least one numeric bracket range (and no other brackets)."""
    bodies = _BRACKET.findall(text)
    if not bodies or not all(_RANGE_BODY.match(body) for body in bodies):
        return False
    return "[" not in _BRACKET.sub("", text) and "]" not in _BRACKET.sub("", text)


def _number(text: str, body: str) -> int:
    try:
        return int(text)
    except ValueError:  # more digits than int() reads (sys.get_int_max_str_digits)
        raise RangeError(f"range [{excerpt(body)[1:-1]}] holds a number too long to "
                         "read") from None


def _expand_body(body: str) -> list[str]:
    values: list[str] = []
    for part in body.split(","):
        low_text, _, high_text = part.partition("-")
        high_text = high_text or low_text
        low, high = _number(low_text, body), _number(high_text, body)
        if low > high:
            raise RangeError(f"range [{excerpt(part)[1:-1]}] runs backwards")
        padded = len(low_text) == len(high_text) or low_text.startswith("0")
        width = len(low_text) if padded else 0
        if high - low + len(values) >= MAX_EXPANSION:
            raise RangeError(f"range [{excerpt(body)[1:-1]}] expands to more than "
                             f"{MAX_EXPANSION} names")
        values.extend(str(n).zfill(width) for n in range(low, high + 1))
    return values


def expand(text: str) -> list[str]:
    """Expand every numeric bracket group in ``text``; a plain name expands to itself.

    More than :data:`MAX_EXPANSION` names is a :class:`RangeError`, raised before they are
    built: each bracket's values are counted as they are read, and so is their product.
    """
    if not is_range(text):
        if ("[" in text or "]" in text) and _BRACKET.search(text) is None:
            raise RangeError(f"unbalanced bracket in {excerpt(text)}")
        return [text]
    pieces = _BRACKET.split(text)
    # split() alternates literal, body, literal, body, ... literal
    literals = pieces[0::2]
    choices: list[list[str]] = []
    total = 1
    for body in pieces[1::2]:
        choices.append(_expand_body(body))
        total *= len(choices[-1])
        if total > MAX_EXPANSION:
            raise RangeError(f"{excerpt(text)} expands to more than {MAX_EXPANSION} names")
    return combine(literals, choices)


def combine(literals: list[str], choices: list[list[str]]) -> list[str]:
    """Every name made by putting one value of each choice between the literals around it
    (``literals`` has one item more than ``choices``), in order."""
    names = []
    for combo in itertools.product(*choices):
        parts = [literals[0]]
        for value, literal in zip(combo, literals[1:], strict=True):
            parts.append(value)
            parts.append(literal)
        names.append("".join(parts))
    return names


def split_list(text: str) -> list[str]:
    """Split a comma list at top-level commas only, so ``web[1-3,7],db1`` is two items."""
    items: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    items.append("".join(current).strip())
    return [item for item in items if item]
