"""Finish the selected hosts before anything connects: settings, then credentials.

:func:`prepare_hosts` is the one place a host becomes the final, immutable
:class:`~hostbatch.inventory.model.HostSpec` the engine runs. It does two steps, each also
public, because the CLI asks its ``--confirm-over`` question between them (nothing is asked
and no ``password_cmd`` runs for a run the user then declines):

1. :func:`resolve_settings`: every setting in one order, highest first: command line
   (:class:`HostOverrides`: ``-l USER``, ``--connect-timeout``) > ``[host:NAME]`` >
   ``[defaults]`` > ssh_config > the user's config file (``HostOverrides.config_file``) >
   built-in (:mod:`hostbatch.inventory.resolve` merges them).
2. :func:`settle_credentials`: password sources become passwords (``password_env``,
   ``password_cmd``, ``--ask-pass``: :mod:`hostbatch.credentials`), encrypted identity files get
   their passphrases (:func:`unlock_keys`), and ``--ask-sudo-pass`` asks the sudo password.

Fast path: without an ssh_config file and without ``-l``, the loader's hosts are already
resolved, and step 1 only applies ``--connect-timeout`` if given.

This module sits above :mod:`hostbatch.ssh` and imports it lazily, so paramiko reaches the
parent process in two cases only: an ssh_config file is in use (it is parsed with paramiko's
``SSHConfig``), and an identity file is encrypted (the agent is asked about it, and a typed
passphrase is checked). Plain keys are recognised from their header without paramiko. No
paramiko object outlives these calls.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostbatch.credentials import Prompt, Warn, every_spec, resolve_passwords, with_hops
from hostbatch.errors import UsageError
from hostbatch.inventory.model import HostSpec, Inventory
from hostbatch.inventory.resolve import Resolver, SshLookup, jump_list
from hostbatch.secrets import Secret

#: Passphrase prompts per encrypted key before its hosts go on without it.
PASSPHRASE_TRIES = 3


@dataclass(frozen=True, slots=True)
class HostOverrides:
    """What the command line says about hosts, above every other layer.

    ``user`` (``-l``) applies to the selected hosts, not to their jump hosts (as with ssh);
    ``connect_timeout`` and the keepalive settings (``--keepalive``, ``--keepalive-count``)
    apply to both. ``ssh_config`` is ``-F FILE``: ``"none"`` for no file,
    ``None`` for ``~/.ssh/config`` if it exists. ``ask_pass`` asks one password for hosts
    without one; ``ask_sudo_pass`` one sudo password for hosts without one.
    """

    user: str | None = None
    connect_timeout: float | None = None
    keepalive_interval: float | None = None
    keepalive_count_max: int | None = None
    ssh_config: str | None = None
    ask_pass: bool = False
    ask_sudo_pass: bool = False
    #: Per-host defaults of the user's config file (:mod:`hostbatch.userconfig`), as
    #: (HostSpec field, value): not the command line's, but they travel with it; they sit
    #: just above the built-in defaults.
    config_file: tuple[tuple[str, Any], ...] = ()
    #: ``--via``: relays for every selected host (``()``: direct), None when not given.
    via: tuple[str, ...] | None = None

    def command_line_layer(self) -> dict[str, Any]:
        """The per-host values given, as the highest layer of :class:`Resolver`."""
        layer: dict[str, Any] = self.every_hop()
        if self.user:
            layer["user"] = self.user
        if self.via is not None:
            layer["via"] = self.via
        return layer

    def every_hop(self) -> dict[str, Any]:
        """The values given that apply to jump hosts as well as to the selected hosts."""
        given = {"connect_timeout": self.connect_timeout,
                 "keepalive_interval": self.keepalive_interval,
                 "keepalive_count_max": self.keepalive_count_max}
        return {key: value for key, value in given.items() if value is not None}


def home_of(environ: Mapping[str, str]) -> str:
    """The user's home directory, honouring ``$HOME`` as ssh does."""
    return environ.get("HOME") or os.path.expanduser("~")


def prepare_hosts(inventory: Inventory | None, hosts: Sequence[HostSpec],
                  overrides: HostOverrides | None = None,
                  environ: Mapping[str, str] | None = None, *,
                  prompt: Prompt | None = None, warn: Warn | None = None) -> list[HostSpec]:
    """``hosts`` (selected from ``inventory``) finished: every setting and credential final.

    ``environ`` (default ``os.environ``) supplies ``password_env`` variables and ``$HOME``.
    ``prompt`` asks on the user's terminal (None: there is none, so nothing is asked);
    ``warn`` hears non-fatal findings. Without an ``inventory`` the hosts are taken as
    resolved: only the command-line layer is put on top (ssh_config sits below the
    inventory's layers, so it is not read). Errors are one-line :class:`UsageError` /
    :class:`~hostbatch.errors.InventoryError`.
    """
    overrides = overrides or HostOverrides()
    environ = os.environ if environ is None else environ
    settled = resolve_settings(inventory, hosts, overrides, environ, warn)
    return settle_credentials(settled, overrides, environ, prompt=prompt, warn=warn,
                              inventory_path=inventory.path if inventory is not None else None)


# ----------------------------------------------------------------------------- settings


def ssh_config_path(explicit: str | None, home: str) -> Path | None:
    """The ssh_config file in use: ``-F FILE`` (``none``: no file), else ``~/.ssh/config`` if
    it exists. A ``-F`` file that does not exist is a usage error."""
    if explicit is not None:
        if explicit == "none":
            return None
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UsageError(f"ssh_config file {explicit} does not exist (-F)")
        return path
    default = Path(home) / ".ssh" / "config"
    return default if default.is_file() else None


def ssh_config_lookup(explicit: str | None, home: str,
                      warn: Warn | None = None) -> SshLookup | None:
    """The ssh_config layer (a host name's settings), or None when no file is in use.

    Only with a file is :mod:`hostbatch.ssh.config` (and so paramiko) imported. Its
    ``ProxyJump`` text is checked here with the rules of an inventory's ``proxy_jump``.
    """
    path = ssh_config_path(explicit, home)
    if path is None:
        return None
    from hostbatch.ssh.config import SshConfig

    config = SshConfig.load(path, home)
    if warn is not None:
        for note in config.notes:
            warn(note)

    def lookup(name: str) -> Mapping[str, Any]:
        found = config.lookup(name)
        if "proxy_jump" in found:
            try:
                found["proxy_jump"] = jump_list(found["proxy_jump"])
            except UsageError as exc:
                raise UsageError(f"ssh_config {config.path}: ProxyJump for {name}: {exc}"
                                 ) from None
        return found

    return lookup


def host_resolver(inventory: Inventory, overrides: HostOverrides, home: str,
                  warn: Warn | None = None) -> Resolver:
    """A resolver with every layer: command line, inventory, ssh_config, built-in (what
    ``hostbatch inventory explain`` shows, with each value's source)."""
    return Resolver.for_inventory(inventory, command_line=overrides.command_line_layer(),
                                  ssh_lookup=ssh_config_lookup(overrides.ssh_config, home, warn),
                                  user_config=dict(overrides.config_file))


def resolve_settings(inventory: Inventory | None, hosts: Sequence[HostSpec],
                     overrides: HostOverrides, environ: Mapping[str, str],
                     warn: Warn | None = None) -> list[HostSpec]:
    """``hosts`` with the command-line and ssh_config layers in their place.

    The loader already resolved the inventory's own layers; with no ssh_config in use and no
    ``-l``, that is the answer once ``--connect-timeout`` is on, so the common case does no
    more work than that.
    """
    if inventory is None:
        return _command_line_on_top(hosts, overrides)
    lookup = ssh_config_lookup(overrides.ssh_config, home_of(environ), warn)
    if lookup is None and not overrides.user and not overrides.config_file \
            and overrides.via is None:
        return _command_line_on_top(hosts, overrides)
    unknown = [name for name in overrides.via or () if name not in inventory.hosts]
    if unknown:
        raise UsageError(f"--via: relay {unknown[0]!r} is not a host of {inventory.path}")
    resolver = Resolver.for_inventory(inventory, command_line=overrides.command_line_layer(),
                                      ssh_lookup=lookup, user_config=dict(overrides.config_file))
    return [resolver.resolve(spec.name).spec for spec in hosts]


def _command_line_on_top(hosts: Sequence[HostSpec], overrides: HostOverrides) -> list[HostSpec]:
    """The command-line layer put on resolved hosts: it is the highest layer, so its values
    simply replace theirs. A host that already has them is kept as it is (the same object)."""
    values, user = overrides.every_hop(), overrides.user
    if not values and not user:
        return list(hosts)

    def applied(spec: HostSpec) -> HostSpec:
        hops = tuple(applied(hop) for hop in spec.jump_chain)
        same = all(getattr(spec, key) == value for key, value in values.items())
        if same and all(new is old for new, old in zip(hops, spec.jump_chain, strict=True)):
            return spec
        return dataclasses.replace(spec, **values, jump_chain=hops)

    finished = []
    for spec in hosts:
        spec = applied(spec)
        if user and spec.user != user:
            spec = dataclasses.replace(spec, user=user)
        finished.append(spec)
    return finished


# -------------------------------------------------------------------------- credentials


def settle_credentials(hosts: Sequence[HostSpec], overrides: HostOverrides,
                       environ: Mapping[str, str], *, prompt: Prompt | None = None,
                       warn: Warn | None = None, inventory_path: str | None = None,
                       sudo_prompt: Prompt | None = None) -> list[HostSpec]:
    """``hosts`` with passwords, key passphrases and the sudo password settled.

    In this order: password sources, then ``--ask-pass`` (one prompt), then the passphrase
    of each encrypted identity file the agent lacks (one prompt per file; without a
    ``prompt`` only ``warn`` hears of it, and without either the workers report it), then
    ``--ask-sudo-pass`` (asked with ``sudo_prompt``, default ``prompt``: the CLI also takes
    the sudo password from a terminal on stdin when it has no controlling one).
    ``inventory_path`` names the file in errors about its sources.
    """
    finished = list(hosts)
    if overrides.ask_pass or any(spec.password_env is not None or spec.password_cmd is not None
                                 for spec in every_spec(finished)):
        finished = resolve_passwords(finished, environ, ask_pass=overrides.ask_pass,
                                     prompt=prompt, inventory=inventory_path)
    if prompt is not None or warn is not None:
        finished = unlock_keys(finished, prompt, warn)
    if overrides.ask_sudo_pass:
        finished = ask_sudo_password(finished, sudo_prompt or prompt)
    return finished


def ask_sudo_password(hosts: Sequence[HostSpec], prompt: Prompt | None) -> list[HostSpec]:
    """One prompt, whose answer goes to every host without a sudo password (not to jump
    hosts: sudo runs on the targets). Without a ``prompt`` it is a usage error: reading it
    from a redirected stdin would swallow the data meant for the hosts."""
    if all(host.sudo_password is not None for host in hosts):
        return list(hosts)
    if prompt is None:
        raise UsageError("--ask-sudo-pass needs a terminal to prompt on; set sudo_password_env "
                         "in the inventory instead")
    try:
        password = Secret(prompt("sudo password: "))
    except EOFError:
        raise UsageError("no sudo password given") from None
    return [host if host.sudo_password is not None
            else dataclasses.replace(host, sudo_password=password) for host in hosts]


def unlock_keys(hosts: Sequence[HostSpec], prompt: Prompt | None,
                warn: Warn | None = None) -> list[HostSpec]:
    """``hosts`` with the passphrase of each encrypted identity file the agent lacks.

    Each such file is asked for once, whatever the number of hosts using it. Without a
    ``prompt`` (no terminal), ``warn`` hears about each file once and its hosts go on with
    their other methods (their failure names the key). Hosts without identity files cost no
    import of the SSH layer.
    """
    every = every_spec(hosts)
    if not any(spec.identity_files for spec in every):
        return list(hosts)
    from hostbatch.ssh import keys

    files = dict.fromkeys(path for spec in every for path in keys.identity_files(spec))
    passphrases: dict[str, Secret] = {}
    for path in files:
        if not keys.is_encrypted(path) or keys.agent_holds(path):
            continue
        if prompt is None:
            if warn is not None:
                warn(f"encrypted key {path} needs a passphrase and there is no terminal to "
                     "ask on (load it into ssh-agent); its hosts try their other methods")
            continue
        passphrase = _ask_passphrase(path, prompt)
        if passphrase is not None:
            passphrases[path] = passphrase
    if not passphrases:
        return list(hosts)

    def with_passphrases(spec: HostSpec) -> HostSpec:
        found = tuple((path, passphrases[path]) for path in keys.identity_files(spec)
                      if path in passphrases)
        return dataclasses.replace(spec, key_passphrases=found) if found else spec

    return [with_hops(spec, with_passphrases) for spec in hosts]


def _ask_passphrase(path: str, prompt: Prompt) -> Secret | None:
    """The passphrase of ``path`` after at most three tries; a wrong one after the last try
    (the workers then report "passphrase for FILE is wrong"); None if the user gave none."""
    from hostbatch.ssh import keys

    typed: Secret | None = None
    for attempt in range(PASSPHRASE_TRIES):
        again = "" if attempt == 0 else "Wrong passphrase. "
        try:
            text = prompt(f"{again}Enter passphrase for key {path}: ")
        except EOFError:
            return None
        if not text:
            return None
        typed = Secret(text)
        if keys.check_passphrase(path, text) is not keys.PassphraseCheck.WRONG:
            return typed  # right, or unusable for a reason the workers will report
    return typed
