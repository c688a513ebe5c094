"""What a console line means, and what TAB completes: pure functions, no terminal, no SSH.

A line is a shell command for every selected host, ``!CMD`` for the local shell, or a special
command with a leading ``:``. clush's one-character forms are accepted where clush has them
(``=`` toggles gathering, ``+HOSTS`` and ``-HOSTS`` change the selection) and ``@`` lists it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from hostbatch.errors import UsageError, excerpt


@dataclass(frozen=True, slots=True)
class Special:
    """One special command: its name (typed as ``:NAME``), short form, argument and help."""

    name: str
    short: str
    argument: str
    help: str


SPECIALS: tuple[Special, ...] = (
    Special("gather", "=", "", "toggle gathered output (as -b) / streamed HOST: LINE"),
    Special("hosts", "@", "", "the selection, folded, with each host's connection state"),
    Special("add", "+", "HOSTS", "add hosts: names, ranges, globs, @group, @failed, @ok"),
    Special("remove", "-", "HOSTS", "remove hosts (the same forms as :add)"),
    Special("failed", "", "", "keep only the hosts whose last command failed"),
    Special("ok", "", "", "keep only the hosts whose last command succeeded"),
    Special("all", "", "", "back to the starting selection"),
    Special("sudo", "", "", "toggle running commands through sudo (as --sudo)"),
    Special("timeout", "", "[S]", "kill a command after S seconds (0: no limit); no S: show"),
    Special("history", "", "[N]", "the last N lines typed (default 20)"),
    Special("help", "?", "", "this help"),
    Special("quit", "", "", "close every connection and leave (also Ctrl-D)"),
)
_BY_NAME = {special.name: special for special in SPECIALS}
_BY_SHORT = {special.short: special for special in SPECIALS if special.short}
#: ``@failed``, ``@failed:ID``, ``@ok``, ``@ok:ID``: host lists from the run history.
HISTORY_SHORTCUT = re.compile(r"^@(failed|ok)(?::\d+)?$")


@dataclass(frozen=True, slots=True)
class Line:
    """A parsed console line: ``kind`` says what to do with ``text``.

    ``special``: ``text`` is the special command's name and ``argument`` its argument;
    ``local``: run ``text`` in the local shell; ``remote``: run ``text`` on the hosts;
    ``empty``: nothing was typed.
    """

    kind: Literal["special", "local", "remote", "empty"]
    text: str = ""
    argument: str = ""


def parse_line(line: str) -> Line:
    """What ``line`` asks for; a :class:`UsageError` names an unknown special command."""
    stripped = line.strip()
    if not stripped:
        return Line("empty")
    if stripped.startswith("!"):
        return Line("local", stripped[1:].strip())
    if stripped.startswith(":"):
        name, _, argument = stripped[1:].partition(" ")
        special = _BY_NAME.get(name.lower())
        if special is None:
            close = difflib.get_close_matches(name.lower(), list(_BY_NAME), n=1, cutoff=0.5)
            hint = f" (did you mean :{close[0]}?)" if close else ""
            raise UsageError(f"unknown special command {excerpt(':' + name)}{hint}; "
                             ":help lists them")
        return Line("special", special.name, argument.strip())
    if stripped[0] in _BY_SHORT:
        special = _BY_SHORT[stripped[0]]
        argument = stripped[1:].strip()
        if special.argument == "HOSTS" or not argument:
            return Line("special", special.name, argument)
    return Line("remote", stripped)


def help_text() -> str:
    """The text ``:help`` prints."""
    rows = [(f":{s.name}" + (f" {s.argument}" if s.argument else "")
             + (f"  ({s.short}{s.argument if s.argument == 'HOSTS' else ''})"
                if s.short else ""), s.help) for s in SPECIALS]
    rows.append(("!CMD", "run CMD in the local shell"))
    rows.append(("anything else", "run it on every selected host"))
    width = max(len(left) for left, _ in rows)
    return "".join(f"  {left:<{width}}  {right}\n" for left, right in rows) + (
        "Ctrl-C stops the running command on every host (the connections stay); "
        "at the prompt it clears the line.\n")


def split_expressions(text: str) -> tuple[list[str], list[str]]:
    """``:add``/``:remove`` words as (``-h`` items, ``-g`` items): ``@NAME`` is a group,
    except the history shortcuts ``@failed``/``@ok``, which stay host items."""
    hosts: list[str] = []
    groups: list[str] = []
    for item in re.split(r"[\s,]+", text.strip()):
        if not item:
            continue
        if item.startswith("@") and not HISTORY_SHORTCUT.match(item):
            groups.append(item[1:])
        else:
            hosts.append(item)
    return hosts, groups


def candidates(before: str, word: str, hosts: Iterable[str], groups: Iterable[str]) -> list[str]:
    """TAB completions of ``word``, the word under the cursor; ``before``: the line before it.

    The first word completes special commands (``:na``); ``+``/``-``/``:add``/``:remove``
    complete host names, ``@group`` names and ``@failed``/``@ok``; any later word of a
    remote command completes host names (commands often name a host).
    """
    if not before.strip():
        if word.startswith(":"):
            return sorted(f":{name}" for name in _BY_NAME if name.startswith(word[1:]))
        if word[:1] in ("+", "-"):
            return [word[0] + name for name in _names(word[1:], hosts, groups, True)]
        return []
    first = before.split()[0]
    selecting = first in (":add", ":remove") or first[:1] in ("+", "-")
    return _names(word, hosts, groups, selecting)


def _names(word: str, hosts: Iterable[str], groups: Iterable[str],
           selecting: bool) -> list[str]:
    if word.startswith("@"):
        if not selecting:
            return []
        words = [f"@{group}" for group in groups] + ["@failed", "@ok"]
        return sorted(name for name in words if name.startswith(word))
    return [name for name in hosts if name.startswith(word)]
