"""Host settings resolution: the documented order, provenance, jump chains, ssh_config reading."""

from __future__ import annotations

import dataclasses
import os
import pickle
import textwrap
from pathlib import Path
from typing import Any

import pytest

from hostbatch.errors import InventoryError, UsageError
from hostbatch.inventory.loader import load_inventory
from hostbatch.inventory.model import HostSpec
from hostbatch.inventory.resolve import (
    BUILT_IN,
    COMMAND_LINE,
    DEFAULTS,
    HOST_SECTION,
    SSH_CONFIG,
    Resolver,
    jump_list,
    merge_layers,
    parse_jump,
)
from hostbatch.prepare import HostOverrides, prepare_hosts, ssh_config_lookup, ssh_config_path
from hostbatch.settings import RunSettings
from hostbatch.ssh.config import SshConfig


def resolver(ssh: dict[str, dict[str, Any]] | None = None, **kwargs: Any) -> Resolver:
    lookup = (lambda name: (ssh or {}).get(name, {})) if ssh is not None else None
    return Resolver(defaults=kwargs.get("defaults", {}), sections=kwargs.get("sections", {}),
                    local_user="me", command_line=kwargs.get("command_line"), ssh_lookup=lookup)


def test_merge_takes_each_key_from_the_first_layer_that_sets_it() -> None:
    values, sources = merge_layers([("a", {"x": 1}), ("b", {"x": 2, "y": 3}), ("c", {"z": 4})])
    assert values == {"x": 1, "y": 3, "z": 4}
    assert sources == {"x": "a", "y": "b", "z": "c"}


@pytest.mark.parametrize(("layers", "expected"), [
    ({}, ("me", BUILT_IN)),
    ({"ssh": "s"}, ("s", SSH_CONFIG)),
    ({"ssh": "s", "defaults": "d"}, ("d", DEFAULTS)),
    ({"ssh": "s", "defaults": "d", "section": "h"}, ("h", HOST_SECTION)),
    ({"ssh": "s", "defaults": "d", "section": "h", "cli": "c"}, ("c", COMMAND_LINE)),
])
def test_precedence_of_every_layer(layers: dict[str, str], expected: tuple[str, str]) -> None:
    r = resolver(
        ssh={"web": {"user": layers["ssh"]}} if "ssh" in layers else {},
        defaults={"user": layers["defaults"]} if "defaults" in layers else {},
        sections={"web": {"user": layers["section"]}} if "section" in layers else {},
        command_line={"user": layers["cli"]} if "cli" in layers else None,
    )
    resolved = r.resolve("web")
    assert (resolved.spec.user, resolved.sources["user"]) == expected


def test_identity_file_becomes_identity_files_and_both_views_agree() -> None:
    spec = resolver(sections={"web": {"identity_file": "/k"}}).resolve("web").spec
    assert spec.identity_files == ("/k",) and spec.identity_file == "/k"
    spec = resolver(ssh={"web": {"identity_files": ("/a", "/b")}}).resolve("web").spec
    assert spec.identity_file == "/a" and spec.identity_files == ("/a", "/b")
    assert HostSpec("h", "h", identity_file="/x").identity_files == ("/x",)
    several = HostSpec("h", "h", identity_files=("/a", "/b"))
    assert dataclasses.replace(several, port=2).identity_files == ("/a", "/b")
    replaced = dataclasses.replace(several, identity_file="/k")
    assert (replaced.identity_file, replaced.identity_files) == ("/k", ("/k",))


def test_jump_chain_is_resolved_hop_by_hop() -> None:
    r = resolver(ssh={"gw2": {"hostname": "127.100.0.2", "user": "sshuser"}},
                 sections={"gw1": {"hostname": "127.100.0.1", "port": 2200},
                           "web": {"proxy_jump": ("gw1", "admin@gw2:2022")}},
                 defaults={"user": "ops"}, command_line={"user": "cli", "connect_timeout": 3.0})
    resolved = r.resolve("web")
    gw1, gw2 = resolved.spec.jump_chain
    assert (gw1.hostname, gw1.port, gw1.user) == ("127.100.0.1", 2200, "ops")  # -l is not for hops
    assert (gw2.hostname, gw2.port, gw2.user) == ("127.100.0.2", 2022, "admin")
    assert gw2.jump_chain == (gw1,) and gw1.jump_chain == ()
    assert gw1.connect_timeout == gw2.connect_timeout == 3.0
    assert resolved.hops[1].sources["user"] == "proxy_jump of web"
    assert resolved.hops[1].sources["hostname"] == SSH_CONFIG
    assert pickle.loads(pickle.dumps(resolved.spec)) == resolved.spec
    assert hash(resolved.spec) == hash(pickle.loads(pickle.dumps(resolved.spec)))


def test_connect_timeout_override_reaches_jump_hosts() -> None:
    spec = resolver(sections={"web": {"proxy_jump": ("gw",)}}).resolve("web").spec
    [overridden] = prepare_hosts(None, [spec], HostOverrides(connect_timeout=2.5), {})
    assert overridden.connect_timeout == overridden.jump_chain[0].connect_timeout == 2.5


@pytest.mark.parametrize(("text", "expected"), [
    ("gw", (None, "gw", None)),
    ("u@gw:2200", ("u", "gw", 2200)),
    ("u@[::1]:22", ("u", "::1", 22)),
])
def test_parse_jump(text: str, expected: tuple[Any, ...]) -> None:
    assert parse_jump(text) == expected


@pytest.mark.parametrize("bad", ["a b", "u@", "gw:0", "gw:99999", "@gw"])
def test_bad_jumps_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        jump_list(bad)


def test_jump_list_none_and_commas() -> None:
    assert jump_list("none") == ()
    assert jump_list("a, b@c:1") == ("a", "b@c:1")


def test_loader_reads_proxy_jump_and_identities_only(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("[defaults]\nidentities_only = no\n[host:web]\nproxy_jump = gw, u@gw2:22\n"
                    "[host:gw]\nhostname = 127.100.0.1\n")
    inventory = load_inventory(path, local_user="me")
    web = inventory.hosts["web"]
    assert web.proxy_jump == ("gw", "u@gw2:22") and web.identities_only is False
    assert [hop.hostname for hop in web.jump_chain] == ["127.100.0.1", "gw2"]
    path.write_text("[host:web]\nproxy_jump = bad host\n")
    with pytest.raises(InventoryError, match="proxy_jump"):
        load_inventory(path)
    path.write_text("[host:web]\nidentities_only = maybe\n")
    with pytest.raises(InventoryError, match="identities_only"):
        load_inventory(path)


def test_ssh_config_path(tmp_path: Path) -> None:
    assert ssh_config_path(None, str(tmp_path)) is None
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("")
    assert ssh_config_path(None, str(tmp_path)) == tmp_path / ".ssh" / "config"
    assert ssh_config_path("none", str(tmp_path)) is None
    with pytest.raises(UsageError, match="does not exist"):
        ssh_config_path(str(tmp_path / "missing"), str(tmp_path))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_ssh_config_settings_wildcards_and_first_value_wins(tmp_path: Path) -> None:
    config = write(tmp_path / ".ssh" / "config", """\
        Host web1
            HostName 127.100.0.1
            IdentityFile ~/.ssh/one
        Host web* !web9
            User deploy
            Port 2222
            IdentityFile /abs/two
            ProxyJump gw,admin@gw2:22
            UserKnownHostsFile ~/kh /other
        Host *
            User nobody
            ConnectTimeout 4
            IdentitiesOnly no
        """)
    ssh = SshConfig.load(config, str(tmp_path))
    assert ssh.lookup("web1") == {
        "hostname": "127.100.0.1", "user": "deploy", "port": 2222,
        "identity_files": (f"{tmp_path}/.ssh/one", "/abs/two"), "identities_only": False,
        "proxy_jump": "gw,admin@gw2:22", "connect_timeout": 4.0,
        "known_hosts": f"{tmp_path}/kh"}
    lookup = ssh_config_lookup(str(config), str(tmp_path))
    assert lookup is not None and lookup("web1")["proxy_jump"] == ("gw", "admin@gw2:22")
    assert ssh.lookup("web9") == {"user": "nobody", "connect_timeout": 4.0,
                                  "identities_only": False}


def test_ssh_config_include_is_conditional_like_ssh(tmp_path: Path) -> None:
    write(tmp_path / ".ssh" / "conf.d" / "a.conf", "Host inc*\n    User inc\n")
    write(tmp_path / ".ssh" / "web.conf", "Port 2200\nHost other\n    User other\n")
    config = write(tmp_path / ".ssh" / "config", """\
        Include conf.d/*.conf
        Host web*
            Include web.conf
            User web
        Host *
            User any
        """)
    ssh = SshConfig.load(config, str(tmp_path))
    assert ssh.lookup("include1")["user"] == "inc"
    assert ssh.lookup("web1") == {"port": 2200, "user": "web"}
    # "Host other" sits in a file included under "Host web*": it applies to no other host.
    assert ssh.lookup("other")["user"] == "any"


def test_ssh_config_match_exec_never_matches_and_is_reported(tmp_path: Path) -> None:
    config = write(tmp_path / "cfg", 'Match exec "true"\n    User exec\nHost *\n    User all\n')
    ssh = SshConfig.load(config, str(tmp_path))
    assert ssh.lookup("web")["user"] == "all"
    assert len(ssh.notes) == 1 and "Match exec" in ssh.notes[0]


def test_ssh_config_errors_are_one_line_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="Port"):
        SshConfig.load(write(tmp_path / "c1", "Host *\n    Port abc\n"), str(tmp_path)
                       ).lookup("x")
    lookup = ssh_config_lookup(str(write(tmp_path / "c2", "Host *\n    ProxyJump a b@\n")),
                               str(tmp_path))
    assert lookup is not None
    with pytest.raises(UsageError, match="ProxyJump"):
        lookup("x")
    loop = write(tmp_path / "loop", f"Include {tmp_path}/loop\n")
    with pytest.raises(UsageError, match="nested"):
        SshConfig.load(loop, str(tmp_path))


def test_a_host_is_never_its_own_jump_host() -> None:
    r = resolver(defaults={"proxy_jump": ("bastion", "inner")},
                 sections={"bastion": {"hostname": "127.100.0.1"}})
    assert r.resolve("bastion").spec.jump_chain == ()
    assert [hop.name for hop in r.resolve("inner").spec.jump_chain] == ["bastion"]
    assert [hop.name for hop in r.resolve("web").spec.jump_chain] == ["bastion", "inner"]


def test_a_run_with_jump_hosts_uses_one_worker_process() -> None:
    from hostbatch.engine.pool import plan_workers

    settings = RunSettings(forks=64)
    assert len(plan_workers(500, settings)) > 1 or (os.cpu_count() or 1) == 1
    assert plan_workers(500, settings, jumping=True) == [64]
    assert plan_workers(3, settings, jumping=True) == [3]
    assert len(plan_workers(500, RunSettings(forks=64, workers=2), jumping=True)) == 2
