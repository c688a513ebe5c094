"""``hostbatch inventory explain HOST``: a host's effective settings and where each came from.

One line per setting, ``KEY  VALUE  (SOURCE)``, sources being ``command line``, ``host
section``, ``defaults``, ``ssh_config``, ``config file``, ``built-in`` (or ``proxy_jump of
HOST`` for a jump host's ``user@``/``:port``). The personal config file in use follows, with
the run-wide defaults it sets. Authentication is shown as the methods that will be tried, in
order; a password only ever as ``***``. Each jump host follows, with its own settings,
prefixed ``jumpN.``. Nothing connects.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from collections.abc import Sequence
from pathlib import Path

from hostbatch.cli.environment import Environment
from hostbatch.cli.failures import error_line, make_warn
from hostbatch.cli.options import (
    add_inventory_options,
    add_ssh_config_options,
    non_negative_seconds,
    positive_count,
    positive_seconds,
)
from hostbatch.cli.parser import Parser
from hostbatch.errors import HostbatchError, SelectionError, excerpt
from hostbatch.exit_status import ExitStatus
from hostbatch.inventory.resolve import BUILT_IN, Resolved
from hostbatch.render.output import SafeStream
from hostbatch.userconfig import UserConfig


def build_explain_parser() -> Parser:
    """The parser of ``hostbatch inventory explain``."""
    parser = Parser(prog="hostbatch inventory explain", add_help=False, allow_abbrev=False,
                    description="Show a host's effective settings and where each came from.")
    parser.add_argument("--help", action="store_true", help="show this help and exit")
    add_inventory_options(parser)
    add_ssh_config_options(parser)
    parser.add_argument("--connect-timeout", type=positive_seconds, metavar="S",
                        help="as for batch_run: overrides every other source")
    parser.add_argument("--keepalive", dest="keepalive_interval", type=non_negative_seconds,
                        metavar="S", help="as for batch_run: overrides every other source")
    parser.add_argument("--keepalive-count", dest="keepalive_count_max", type=positive_count,
                        metavar="N", help="as for batch_run: overrides every other source")
    parser.add_argument("host", metavar="HOST", help="an inventory host name")
    return parser


def auth_methods(resolved: Resolved) -> tuple[str, str]:
    """The authentication methods in the order they will be tried (the SSH layer's own order,
    :func:`hostbatch.ssh.methods.auth_order`), and the source that decided them."""
    from hostbatch.ssh.methods import describe_auth

    spec, sources = resolved.spec, resolved.sources
    decided_by = [key for key in ("identity_files", "password", "password_env", "password_cmd")
                  if sources.get(key) not in (None, BUILT_IN)]
    source = sources[decided_by[0]] if decided_by else BUILT_IN
    return ", ".join(describe_auth(spec)) or "none", source


def _keepalive_text(interval: float, count: int) -> str:
    """``every 15s, give up after 3 unanswered`` or ``off``."""
    if interval <= 0:
        return "off"
    return (f"probe after {interval:g}s of silence, give up after {count} unanswered "
            f"(about {interval * (count + 1):g}s)")


def _hop_text(hop: Resolved) -> str:
    spec = hop.spec
    return f"{spec.user}@{spec.hostname}:{spec.port}"


def route_text(resolved: Resolved) -> str:
    """``via relay1, fallback relay2`` (relays tried in order), or ``direct``."""
    names = [relay.spec.name for relay in resolved.relays]
    if not names:
        return "direct"
    fallback = f", fallback {', '.join(names[1:])}" if names[1:] else ""
    return f"via {names[0]}{fallback}"


def setting_lines(resolved: Resolved, env: Environment, prefix: str = "") -> list[tuple[str, str,
                                                                                         str]]:
    """(key, value, source) rows describing one resolved host."""
    spec, sources = resolved.spec, resolved.sources
    user_file = str(Path(env.home) / ".ssh" / "known_hosts")
    known = list(dict.fromkeys([*([spec.known_hosts] if spec.known_hosts else []), user_file]))
    auth, auth_source = auth_methods(resolved)
    rows = [
        ("address", spec.hostname, sources["hostname"]),
        ("port", str(spec.port), sources["port"]),
        ("user", spec.user, sources["user"]),
        ("auth", auth, auth_source),
        ("identities_only", "yes" if spec.identities_only else "no",
         sources["identities_only"]),
        ("known_hosts", ", ".join(known), sources["known_hosts"]),
        ("connect_timeout", f"{spec.connect_timeout:g}s", sources["connect_timeout"]),
        ("keepalive", _keepalive_text(spec.keepalive_interval, spec.keepalive_count_max),
         sources["keepalive_interval"]),
    ]
    if not prefix:
        chain = " -> ".join(f"{hop.spec.name} ({_hop_text(hop)})" for hop in resolved.hops)
        rows.append(("jump", chain or "none (direct)", sources["proxy_jump"]))
        rows.append(("route", route_text(resolved), sources.get("via", "built-in")))
    return [(prefix + key, value, source) for key, value, source in rows]


def config_file_rows(config: UserConfig, env: Environment) -> list[tuple[str, str, str]]:
    """The personal config file in use, then each run-wide default it sets."""
    from hostbatch.userconfig import CONFIG_ENV

    if config.path is None:
        return [("config_file", "none", "no $XDG_CONFIG_HOME/hostbatch/config.ini")]
    named = f"${CONFIG_ENV}" if env.environ.get(CONFIG_ENV) else "default"
    rows = [("config_file", config.path, named)]
    for key, value in config.run.items():
        if isinstance(value, bool):
            text = "on" if value else "off"
        else:
            text = f"{value:g}s" if key == "timeout" else str(value)
        rows.append((key, text, "config file; the command line wins"))
    return rows


def explain(args: argparse.Namespace, env: Environment, out: SafeStream,
            err: SafeStream) -> int:
    """Resolve ``args.host`` with every layer and print its settings."""
    from hostbatch.inventory.loader import load_inventory, locate_inventory
    from hostbatch.prepare import HostOverrides, host_resolver, ssh_config_path

    warn = make_warn("hostbatch inventory explain", err)

    # Explaining shows no secret, so a readable inventory only warns (as convert does): this
    # is where a user looks when a run refused it.
    inventory = load_inventory(locate_inventory(args.inventory, env.environ), warn=warn,
                               environ=env.environ, inventory_format=args.inventory_format,
                               insecure=True)
    if args.host not in inventory.hosts:
        close = difflib.get_close_matches(args.host, list(inventory.hosts), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise SelectionError(f"host {excerpt(args.host)} is not in {inventory.path}{hint}",
                             [args.host])
    # The same layers as a run (hostbatch.prepare), kept with their sources.
    overrides = HostOverrides(user=args.user, connect_timeout=args.connect_timeout,
                              keepalive_interval=args.keepalive_interval,
                              keepalive_count_max=args.keepalive_count_max,
                              ssh_config=args.ssh_config)
    from hostbatch.userconfig import load_user_config

    user_config = load_user_config(env.environ, env.home)
    overrides = dataclasses.replace(overrides, config_file=tuple(user_config.hosts.items()))
    resolved = host_resolver(inventory, overrides, env.home, warn).resolve(args.host)
    config = ssh_config_path(args.ssh_config, env.home)
    rows = [("host", args.host, inventory.path)]
    rows += setting_lines(resolved, env)
    for number, hop in enumerate(resolved.hops, 1):
        rows += setting_lines(hop, env, f"jump{number}.")
    rows.append(("ssh_config", str(config) if config else "none",
                 "-F" if args.ssh_config else "default"))
    rows += config_file_rows(user_config, env)
    from hostbatch.inventory.checks import host_findings

    for spec in (resolved.spec, *(hop.spec for hop in resolved.hops)):
        for finding in host_findings(spec, inventory.hosts, env.environ):
            warn(f"{spec.name}: {finding.key}: {finding.message}")
    width = max(len(key) for key, _, _ in rows) + 2
    out.write("".join(f"{key:<{width}}{value}  ({source})\n"
                      for key, value, source in rows).encode())
    return ExitStatus.OK


def explain_main(argv: Sequence[str], env: Environment) -> int:
    """``hostbatch inventory explain HOST``: exit 0, or 2 for a usage/inventory error."""
    out, err = SafeStream(env.stdout), SafeStream(env.stderr)
    try:
        parser = build_explain_parser()
        if "--help" in argv:
            out.write(parser.format_help().encode())
            return ExitStatus.OK
        return explain(parser.parse_args(list(argv)), env, out, err)
    except HostbatchError as exc:
        err.write(error_line("hostbatch inventory explain", exc))
        return ExitStatus.USAGE
    finally:
        out.flush()
        err.flush()
