"""Personal defaults for command-line options: ``~/.config/hostbatch/config.ini``.

Found at ``$HOSTBATCH_CONFIG`` (an explicit path: a missing file is an error), else
``$XDG_CONFIG_HOME/hostbatch/config.ini`` (``~/.config`` when unset or relative); no file means
no personal defaults. One ``[defaults]`` section::

    [defaults]
    forks = 32
    connect_timeout = 5
    output = gather

Precedence, highest first. Run-wide options (``forks``, ``retries``, ``timeout``, ``output``,
``history``, ``color``, ``summary``): command line > this file > built-in. Per-host connection
settings (``connect_timeout``, ``keepalive``, ``keepalive_count``): command line > ``[host:]``
> inventory ``[defaults]`` > ssh_config > this file > built-in, so the file is the user's own
built-in default and never overrides what an inventory says about a host.

Errors are one line naming the file and key, an unknown key or section with the nearest
real one (exit 2, like the inventory's).
"""

from __future__ import annotations

import configparser
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostbatch.errors import UsageError, excerpt
from hostbatch.inventory.validate import suggest

CONFIG_ENV = "HOSTBATCH_CONFIG"
SECTION = "defaults"
#: What ``output`` may say: the default line mode, or the flag it stands for.
OUTPUT_MODES = ("lines", "gather", "diff", "quiet", "json")
_ON = {"on": True, "yes": True, "true": True, "1": True,
       "off": False, "no": False, "false": False, "0": False}


def _number(kind: Callable[[str], float], low: float, high: float, closed: bool, what: str
            ) -> Callable[[str], Any]:
    """A parser for a number from ``low`` (excluded unless ``closed``) to ``high``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"{excerpt(text)} is not {what}") from None
        if not math.isfinite(value) or value > high or (value < low if closed
                                                         else value <= low):
            raise ValueError(f"{excerpt(text)} is out of range ({what})")
        return value

    return parse


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(f"{excerpt(text)} is not one of {', '.join(choices)}"
                             f"{suggest(text.lower(), choices)}")
        return text.lower()

    return parse


def _switch(text: str) -> bool:
    if text.lower() not in _ON:
        raise ValueError(f"{excerpt(text)} is not on or off")
    return _ON[text.lower()]


#: Run-wide keys: the value's parser.
RUN_KEYS: dict[str, Callable[[str], Any]] = {
    "forks": _number(int, 1, 10**6, True, "a whole number, at least 1"),
    "retries": _number(int, 0, 100, True, "a whole number from 0"),
    "timeout": _number(float, 0, 10**7, False, "a positive number of seconds"),
    "output": _choice(OUTPUT_MODES),
    "history": _switch,
    "color": _choice(("auto", "never")),
    "summary": _choice(("compact", "full")),
}
#: Per-host keys: (the HostSpec field it sets, the value's parser).
HOST_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "connect_timeout": ("connect_timeout",
                        _number(float, 0, 10**7, False, "a positive number of seconds")),
    "keepalive": ("keepalive_interval", _number(float, 0, 86400, True, "0 to 86400 seconds")),
    "keepalive_count": ("keepalive_count_max",
                        _number(int, 1, 10**6, True, "a whole number, at least 1")),
}


@dataclass(frozen=True)
class UserConfig:
    """The personal defaults in force: ``path`` (``None``: no file), its run-wide values by
    key, and its per-host values by HostSpec field."""

    path: str | None = None
    run: Mapping[str, Any] = field(default_factory=dict)
    hosts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """How a value from this file is named: ``config file PATH``."""
        return f"config file {self.path}"


def config_path(environ: Mapping[str, str], home: str) -> tuple[Path | None, bool]:
    """The config file to read and whether it was named explicitly (``$HOSTBATCH_CONFIG``).

    An implicit file that does not exist is ``None``: no personal defaults.
    """
    explicit = environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser(), True
    base = environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path(home) / ".config"
    path = root / "hostbatch" / "config.ini"
    return (path if path.is_file() else None), False


def load_user_config(environ: Mapping[str, str], home: str) -> UserConfig:
    """The personal defaults (empty without a file); a bad file is a one-line UsageError."""
    path, explicit = config_path(environ, home)
    if path is None:
        return UserConfig()
    if explicit and not path.is_file():
        raise UsageError(f"config file {path} (${CONFIG_ENV}) does not exist")
    # No value here can hold " #", so comments may follow a value (unlike the inventory's).
    parser = configparser.RawConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"),
                                          strict=True, default_section="\x00none")
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"config file {path}: cannot read it: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    except configparser.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise UsageError(f"config file {path}: not INI: {first}") from None
    return _typed(path, parser)


def _typed(path: Path, parser: configparser.RawConfigParser) -> UserConfig:
    """The parsed file's values, checked and typed."""
    for section in parser.sections():
        if section != SECTION:
            raise UsageError(f"config file {path}: unknown section [{section}]"
                             f"{suggest(section, [SECTION])}; personal defaults go in "
                             f"[{SECTION}]")
    run: dict[str, Any] = {}
    hosts: dict[str, Any] = {}
    known = [*RUN_KEYS, *HOST_KEYS]
    items = parser.items(SECTION) if parser.has_section(SECTION) else []
    for raw_key, text in items:
        key = raw_key.replace("-", "_")
        try:
            if key in RUN_KEYS:
                run[key] = RUN_KEYS[key](text.strip())
            elif key in HOST_KEYS:
                name, parse = HOST_KEYS[key]
                hosts[name] = parse(text.strip())
            else:
                raise UsageError(f"config file {path}: [{SECTION}] {raw_key} is not "
                                 f"a setting{suggest(key, known)} (settings: "
                                 f"{', '.join(known)})")
        except ValueError as exc:
            raise UsageError(f"config file {path}: [{SECTION}] {raw_key}: {exc}") from None
    return UserConfig(str(path), run, hosts)
