"""Write an inventory (typically read from an Ansible INI file) as hostbatch INI text.

The output loads back, with :func:`hostbatch.inventory.loader.load_inventory`, into the same
hosts, groups and per-host settings. Values every host shares go to ``[defaults]``; a host
gets a ``[host:NAME]`` section only for what differs. A user nobody set is left out, so the
converted file keeps meaning "the local user" instead of freezing the converter's name.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from hostbatch.atomic import write_atomically
from hostbatch.errors import InventoryError, excerpt
from hostbatch.inventory.loader import load_inventory
from hostbatch.inventory.model import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_KEEPALIVE_COUNT_MAX,
    DEFAULT_KEEPALIVE_INTERVAL,
    DEFAULT_PORT,
    DEFAULT_RELAY_COMMAND,
    DEFAULT_RELAY_FORKS,
    HostSpec,
    Inventory,
)
from hostbatch.inventory.ranges import expand
from hostbatch.inventory.validate import HOST_KEYS, NAME
from hostbatch.secrets import Secret

#: The user given to hosts that set none while converting: never a real user name.
UNSET_USER = "\x00unset-user"

_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")
_BUILT_IN: dict[str, object] = {"port": DEFAULT_PORT, "connect_timeout": DEFAULT_CONNECT_TIMEOUT,
                                "user": UNSET_USER, "identities_only": True,
                                "keepalive_interval": DEFAULT_KEEPALIVE_INTERVAL,
                                "keepalive_count_max": DEFAULT_KEEPALIVE_COUNT_MAX,
                                "relay_command": DEFAULT_RELAY_COMMAND,
                                "relay_forks": DEFAULT_RELAY_FORKS, "forward_agent": False}


def _ini_value(spec: HostSpec, key: str) -> str | None:
    """The value of ``key`` for the file, or None when the host leaves it at its default."""
    value = getattr(spec, key)
    if key == "hostname":
        return None if value == spec.name else str(value)
    if value is None or value == () or value == _BUILT_IN.get(key):
        return None
    if isinstance(value, Secret):
        secret = value.reveal()
        if secret != secret.strip() or "\n" in secret or not secret:
            raise InventoryError(f"the {key} of host {spec.name} starts or ends with a space "
                                 "or is empty, which an INI value cannot hold")
        return secret
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return ", ".join(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def compress(names: Sequence[str]) -> list[str]:
    """Runs of consecutive numbered names as hostbatch ranges, order kept exactly:
    ``web01, web02, web03`` -> ``web[01-03]``. A run is only written as a range when the range
    expands back to exactly that run."""
    items: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if len(run) >= 3:
            first, last = _NUMBERED.match(run[0]), _NUMBERED.match(run[-1])
            assert first is not None and last is not None
            candidate = f"{first.group(1)}[{first.group(2)}-{last.group(2)}]{first.group(3)}"
            if "[" not in first.group(1) + first.group(3) and expand(candidate) == run:
                items.append(candidate)
                run.clear()
                return
        items.extend(run)
        run.clear()

    for name in names:
        match = _NUMBERED.match(name)
        if run and match:
            previous = _NUMBERED.match(run[-1])
            assert previous is not None
            digits, before = match.group(2), previous.group(2)
            same_width = len(digits) == len(before) or "0" not in (digits[0], before[0])
            if (match.group(1), match.group(3)) == (previous.group(1), previous.group(3)) and \
                    same_width and int(digits) == int(before) + 1:
                run.append(name)
                continue
        flush()
        if match:
            run.append(name)
        else:
            items.append(name)
    flush()
    return items


def _check_name(name: str, what: str) -> None:
    if not NAME.match(name):
        raise InventoryError(f"{what} {excerpt(name)} cannot be written in the hostbatch format "
                             "(names are letters, digits and _.:@%+-)")


def to_hostbatch_ini(inventory: Inventory, *, source: str = "",
                     warn: Callable[[str], None] | None = None) -> str:
    """The hostbatch INI text of ``inventory``.

    Settings the hostbatch format has no key for (in this version) are named in one warning.
    """
    keys = [k for k in HOST_KEYS if k in HostSpec.__dataclass_fields__]
    lost: set[str] = set()
    values = {name: {k: _ini_value(spec, k) for k in keys}
              for name, spec in inventory.hosts.items()}
    for spec in inventory.hosts.values():
        _check_name(spec.name, "host name")
        for extra in ("proxy_jump", "sudo_password"):
            if extra not in keys and getattr(spec, extra, None) not in (None, ()):
                lost.add(extra)
    shared: dict[str, str] = {}
    for key in keys:
        seen = {v[key] for v in values.values()}
        if key != "hostname" and len(seen) == 1 and None not in seen and len(values) > 1:
            shared[key] = str(seen.pop())
    lines = [f"# hostbatch inventory, converted from {source}" if source else
             "# hostbatch inventory", ""]
    if shared:
        lines += ["[defaults]", *(f"{k} = {v}" for k, v in shared.items()), ""]
    for name, host_values in values.items():
        own = [(k, v) for k, v in host_values.items() if v is not None and k not in shared]
        if own:
            lines += [f"[host:{name}]", *(f"{k} = {v}" for k, v in own), ""]
    for group in inventory.groups.values():
        _check_name(group.name, "group name")
        lines.append(f"[group:{group.name}]")
        if group.hosts:
            lines.append(f"hosts = {', '.join(compress(group.hosts))}")
        if group.children:
            lines.append(f"children = {', '.join(group.children)}")
        lines.append("")
    if lost and warn is not None:
        warn(f"not written (the hostbatch inventory format has no key for them yet): "
             f"{', '.join(sorted(lost))}")
    return "\n".join(lines)


def verify(text: str) -> Inventory:
    """Load ``text`` with the hostbatch loader, so a conversion never writes a file that would
    not load (an Ansible value the hostbatch format refuses, such as a user with spaces)."""
    with tempfile.TemporaryDirectory(prefix="hostbatch-convert-") as directory:
        path = Path(directory) / "converted.ini"
        write_atomically(path, text, 0o600)
        try:
            return load_inventory(path, local_user=UNSET_USER,
                                         inventory_format="hostbatch")
        except InventoryError as exc:
            where = " ".join(p for p in (f"[{exc.section}]" if exc.section else "",
                                         exc.key or "") if p)
            raise InventoryError(f"cannot convert: the hostbatch inventory would not load: "
                                 f"{where + ': ' if where else ''}{exc.reason}") from None


def has_secrets(inventory: Inventory) -> bool:
    """True when any host carries a password (the output must then be private)."""
    return any(s.password is not None or s.sudo_password is not None
               for s in inventory.hosts.values())
