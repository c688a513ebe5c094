"""hostbatch.inventory.loader: parsing, validation errors, warnings, and where the file is found."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from hostbatch.errors import HostbatchError, InventoryError
from hostbatch.inventory.loader import load_inventory, locate_inventory
from hostbatch.inventory.model import DEFAULT_CONNECT_TIMEOUT, DEFAULT_PORT, Inventory
from hostbatch.secrets import Secret

from .conftest import WriteInventory

SPEC_EXAMPLE = """
[defaults]
; optional, applies to every host
user = deploy
port = 22
identity_file = /keys/id_ed25519
connect_timeout = 10
; known_hosts = ~/.ssh/known_hosts   (default)

[host:web1]
hostname = 127.192.2.11
port = 2222
user = root
password = s3cret%#;x

[host:db1]
hostname = 127.192.2.21
identity_file = /keys/db_key

[group:web_clusters]
hosts = web1, web[02-10]
[group:db_servers]
hosts = db1
[group:everything]
children = web_clusters, db_servers
"""


def load(path: Path, warn: Callable[[str], None] | None = None) -> Inventory:
    return load_inventory(path, warn=warn, local_user="localme")


# --------------------------------------------------------------------------- parsing


def test_spec_example_loads(write_inventory: WriteInventory) -> None:
    inv = load(write_inventory(SPEC_EXAMPLE))
    web1 = inv.hosts["web1"]
    assert (web1.hostname, web1.port, web1.user) == ("127.192.2.11", 2222, "root")
    assert web1.identity_file == "/keys/id_ed25519"
    assert web1.password is not None and web1.password.reveal() == "s3cret%#;x"
    db1 = inv.hosts["db1"]
    assert (db1.hostname, db1.port, db1.user, db1.password) == ("127.192.2.21", 22, "deploy", None)
    assert db1.identity_file == "/keys/db_key"
    assert inv.group_members("web_clusters") == ["web1"] + [f"web{n:02d}" for n in range(2, 11)]
    assert inv.group_members("db_servers") == ["db1"]
    assert set(inv.group_members("everything")) == set(inv.hosts)


@pytest.mark.parametrize(
    "password",
    ["s3cret%#;x", "100%", "%(user)s", "%%", "a#b", "a;b", "a ; b # c", "#leading", "x$HOME"],
)
def test_password_is_literal(write_inventory: WriteInventory, password: str) -> None:
    path = write_inventory(f"[defaults]\nuser = u\n[host:h]\npassword = {password}\n")
    spec = load(path).hosts["h"]
    assert isinstance(spec.password, Secret)
    assert spec.password.reveal() == password


def test_percent_in_other_values_is_literal(write_inventory: WriteInventory) -> None:
    path = write_inventory("""
        [host:h]
        identity_file = /keys/%(user)s_key%
        known_hosts = /kh/%h
    """)
    spec = load(path).hosts["h"]
    assert spec.identity_file == "/keys/%(user)s_key%"
    assert spec.known_hosts == "/kh/%h"


def test_defaults_apply_and_host_sections_override(write_inventory: WriteInventory) -> None:
    path = write_inventory("""
        [defaults]
        user = deploy
        port = 2200
        connect_timeout = 3.5
        identity_file = /keys/default
        known_hosts = /kh/inventory_known_hosts

        [host:a]

        [host:b]
        user = admin
        port = 2201
        connect_timeout = 7
        identity_file = /keys/b
        known_hosts = /kh/b
    """)
    inv = load(path)
    a, b = inv.hosts["a"], inv.hosts["b"]
    assert (a.user, a.port, a.connect_timeout) == ("deploy", 2200, 3.5)
    assert (a.identity_file, a.known_hosts) == ("/keys/default", "/kh/inventory_known_hosts")
    assert (b.user, b.port, b.connect_timeout) == ("admin", 2201, 7.0)
    assert (b.identity_file, b.known_hosts) == ("/keys/b", "/kh/b")


def test_builtin_defaults_without_a_defaults_section(write_inventory: WriteInventory) -> None:
    spec = load(write_inventory("[host:h]\n")).hosts["h"]
    assert spec.port == DEFAULT_PORT == 22
    assert spec.connect_timeout == DEFAULT_CONNECT_TIMEOUT
    assert spec.user == "localme"  # like ssh, the local user name
    assert (spec.password, spec.identity_file, spec.known_hosts) == (None, None, None)


def test_local_user_defaults_to_the_login_name(write_inventory: WriteInventory) -> None:
    import getpass

    spec = load_inventory(write_inventory("[host:h]\n")).hosts["h"]
    assert spec.user == getpass.getuser()


def test_hostname_defaults_to_the_host_name(write_inventory: WriteInventory) -> None:
    inv = load(write_inventory("""
        [host:web1.example.com]
        port = 2222
        [host:db1]
        hostname = 127.100.0.5
    """))
    assert inv.hosts["web1.example.com"].hostname == "web1.example.com"
    assert inv.hosts["db1"].hostname == "127.100.0.5"


def test_values_are_stripped(write_inventory: WriteInventory) -> None:
    path = write_inventory("[host:h]\nhostname =    127.100.0.9   \nport =  2222  \nuser =  bob \n")
    spec = load(path).hosts["h"]
    assert (spec.hostname, spec.port, spec.user) == ("127.100.0.9", 2222, "bob")


def test_tilde_in_paths_is_expanded(write_inventory: WriteInventory) -> None:
    path = write_inventory("[host:h]\nidentity_file = ~/.ssh/k\nknown_hosts = ~/kh\n")
    spec = load(path).hosts["h"]
    assert spec.identity_file == os.path.expanduser("~/.ssh/k")
    assert spec.known_hosts == os.path.expanduser("~/kh")
    assert "~" not in spec.identity_file


def test_group_members_without_host_sections_become_hosts(write_inventory: WriteInventory) -> None:
    inv = load(write_inventory("""
        [defaults]
        user = deploy
        port = 2022
        [group:web]
        hosts = web[01-03], extra.example.com
    """))
    assert list(inv.hosts) == ["web01", "web02", "web03", "extra.example.com"]
    for name, spec in inv.hosts.items():
        assert spec.name == spec.hostname == name
        assert (spec.user, spec.port) == ("deploy", 2022)


def test_group_member_with_a_host_section_uses_that_section(
    write_inventory: WriteInventory,
) -> None:
    inv = load(write_inventory("""
        [group:web]
        hosts = web[1-2]
        [host:web2]
        hostname = 127.100.0.2
        port = 2202
    """))
    assert list(inv.hosts) == ["web1", "web2"]
    assert (inv.hosts["web2"].hostname, inv.hosts["web2"].port) == ("127.100.0.2", 2202)
    assert (inv.hosts["web1"].hostname, inv.hosts["web1"].port) == ("web1", 22)


def test_hosts_are_in_inventory_order(write_inventory: WriteInventory) -> None:
    inv = load(write_inventory("""
        [host:zeta]
        [group:g1]
        hosts = mid2, alpha, zeta, mid1
        [host:alpha]
        [group:g2]
        hosts = beta, mid2
        [host:omega]
    """))
    assert list(inv.hosts) == ["zeta", "mid2", "alpha", "mid1", "beta", "omega"]
    assert inv.group_members("g1") == ["zeta", "mid2", "alpha", "mid1"]
    assert inv.group_members("g2") == ["mid2", "beta"]


def test_duplicate_member_is_listed_once(write_inventory: WriteInventory) -> None:
    inv = load(write_inventory("[group:g]\nhosts = a, b, a, b[1-2], b1\n"))
    assert inv.groups["g"].hosts == ("a", "b", "b1", "b2")


def test_children_walk_transitively_in_inventory_order(write_inventory: WriteInventory) -> None:
    inv = load(write_inventory("""
        [group:top]
        children = mid, leaf2
        hosts = t1
        [group:mid]
        children = leaf1
        [group:leaf1]
        hosts = l1a, l1b
        [group:leaf2]
        hosts = l2, l1a
        [group:empty]
    """))
    assert inv.group_members("top") == ["t1", "l1a", "l1b", "l2"]
    assert inv.group_members("mid") == ["l1a", "l1b"]
    assert inv.group_members("empty") == []


def test_diamond_children_are_not_a_cycle(write_inventory: WriteInventory) -> None:
    inv = load(write_inventory("""
        [group:top]
        children = left, right
        [group:left]
        children = base
        [group:right]
        children = base
        [group:base]
        hosts = h1
    """))
    assert inv.group_members("top") == ["h1"]


def test_implicit_all_group(write_inventory: WriteInventory) -> None:
    inv = load(write_inventory("[host:b]\n[group:g]\nhosts = a\n[host:c]\n"))
    assert "all" not in inv.groups
    assert "all" in inv.group_names()
    assert inv.group_members("all") == ["b", "a", "c"]


def test_inventory_may_define_its_own_all(write_inventory: WriteInventory) -> None:
    inv = load(write_inventory("[host:b]\n[group:all]\nhosts = a\n[host:c]\n"))
    assert inv.group_members("all") == ["a"]
    assert inv.group_names().count("all") == 1


def test_empty_inventory_has_no_hosts(write_inventory: WriteInventory) -> None:
    inv = load(write_inventory("; nothing here\n"))
    assert inv.hosts == {} and inv.groups == {}


def test_inventory_records_its_path(write_inventory: WriteInventory) -> None:
    path = write_inventory("[host:h]\n")
    assert load(path).path == str(path)


# --------------------------------------------------------------------------- validation


ERROR_CASES = [
    # (id, ini text, section, key, fragments expected in the message)
    ("unknown-host-key", "[host:web1]\nhostnme = x\n", "host:web1", "hostnme",
     ["unknown key", "did you mean 'hostname'"]),
    ("unknown-default-key", "[defaults]\nprot = 22\n", "defaults", "prot",
     ["unknown key", "did you mean 'port'"]),
    ("unknown-group-key", "[group:g]\nhost = a\n", "group:g", "host",
     ["unknown key", "did you mean 'hosts'"]),
    ("unknown-group-key-child", "[group:g]\nchildren = \nchildern = x\n", "group:g",
     "childern", ["did you mean 'children'"]),
    ("host-key-in-group", "[group:g]\nport = 22\n", "group:g", "port", ["unknown key"]),
    ("port-not-a-number", "[host:h]\nport = ssh\n", "host:h", "port", ["not a number"]),
    ("port-float", "[host:h]\nport = 22.5\n", "host:h", "port", ["not a number"]),
    ("port-empty", "[host:h]\nport =\n", "host:h", "port", ["not a number"]),
    ("port-zero", "[host:h]\nport = 0\n", "host:h", "port", ["out of range", "1-65535"]),
    ("port-70000", "[host:h]\nport = 70000\n", "host:h", "port", ["out of range"]),
    ("port-65536", "[host:h]\nport = 65536\n", "host:h", "port", ["out of range"]),
    ("port-negative", "[host:h]\nport = -22\n", "host:h", "port", ["out of range"]),
    ("port-in-defaults", "[defaults]\nport = abc\n", "defaults", "port", ["not a number"]),
    ("port-inline-comment", "[host:h]\nport = 2222 ; ssh port\n", "host:h", "port",
     ["not a number", "comments after a value are not supported"]),
    ("port-hash-comment", "[host:h]\nport = 2222   # ssh port\n", "host:h", "port",
     ["comments after a value are not supported"]),
    ("hostname-inline-comment",
     "[host:web1]\nhostname = 127.192.2.11      ; defaults to the host's own name\n",
     "host:web1", "hostname", ["invalid hostname", "comments after a value are not supported"]),
    ("hostname-hash-comment", "[host:web1]\nhostname = 127.192.2.11 # web\n", "host:web1",
     "hostname", ["comments after a value are not supported"]),
    ("hosts-inline-comment", "[group:g]\nhosts = web1, web[02-10]   ; ranges expand\n",
     "group:g", "hosts", ["comments after a value are not supported"]),
    ("undefined-child", "[group:everything]\nchildren = web_clusters, db_servers\n"
     "[group:web_clusters]\nhosts = a\n", "group:everything", "children",
     ["'db_servers'", "not defined"]),
    ("undefined-child-suggest", "[group:top]\nchildren = webs\n[group:web]\nhosts = a\n",
     "group:top", "children", ["'webs'", "did you mean 'web'"]),
    ("cycle", "[group:a]\nchildren = b\n[group:b]\nchildren = a\n", None, "children",
     ["cycle", "a -> b -> a"]),
    ("cycle-3", "[group:a]\nchildren = b\n[group:b]\nchildren = c\n[group:c]\nchildren = a\n",
     None, "children", ["cycle"]),
    ("self-cycle", "[group:a]\nchildren = a\n", "group:a", "children", ["cycle", "a -> a"]),
    ("unknown-section", "[server:web1]\nhostname = x\n", "server:web1", None,
     ["unknown section"]),
    ("unknown-section-suggest", "[default]\nuser = x\n", "default", None,
     ["unknown section", "did you mean 'defaults'"]),
    ("DEFAULT-section", "[DEFAULT]\nuser = x\n", "DEFAULT", None, ["unknown section"]),
    ("host-without-name", "[host:]\n", "host:", None, ["unknown section"]),
    ("duplicate-section", "[host:a]\nport = 22\n[host:b]\n[host:a]\nport = 23\n", "host:a", None,
     ["twice"]),
    ("duplicate-key", "[host:a]\nport = 22\nport = 23\n", "host:a", "port", ["twice"]),
    ("bad-host-name", "[host:web 1]\n", "host:web 1", None, ["invalid host name"]),
    ("bad-member-name", "[group:g]\nhosts = a, b/c\n", "group:g", "hosts",
     ["invalid host name"]),
    ("backwards-range", "[group:g]\nhosts = web[10-2]\n", "group:g", "hosts", ["backwards"]),
    ("huge-range", "[group:g]\nhosts = web[1-99999999]\n", "group:g", "hosts", ["more than"]),
    ("connect-timeout-word", "[defaults]\nconnect_timeout = soon\n", "defaults",
     "connect_timeout", ["not a number"]),
    ("connect-timeout-zero", "[host:h]\nconnect_timeout = 0\n", "host:h", "connect_timeout",
     ["between"]),
    ("empty-user", "[host:h]\nuser =\n", "host:h", "user", ["empty"]),
    ("empty-identity", "[host:h]\nidentity_file =\n", "host:h", "identity_file", ["empty"]),
]


@pytest.mark.parametrize(
    ("text", "section", "key", "fragments"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_validation_error_names_file_section_and_key(
    write_inventory: WriteInventory,
    text: str,
    section: str | None,
    key: str | None,
    fragments: list[str],
) -> None:
    path = write_inventory(text)
    with pytest.raises(InventoryError) as caught:
        load(path)
    error = caught.value
    message = str(error)
    assert "\n" not in message, "errors are one line"
    assert error.path == str(path)
    assert message.startswith(str(path))
    if section is not None:
        assert error.section == section
        assert f"[{section}]" in message
    else:
        assert error.section is not None and error.section.startswith("group:")
    assert error.key == key
    if key is not None:
        assert f"] {key}:" in message
    for fragment in fragments:
        assert fragment in message


def test_inventory_error_is_a_hostbatch_error() -> None:
    assert issubclass(InventoryError, HostbatchError)


def test_unknown_key_lists_known_keys(write_inventory: WriteInventory) -> None:
    with pytest.raises(InventoryError) as caught:
        load(write_inventory("[host:h]\nfoo = bar\n"))
    message = str(caught.value)
    assert "did you mean" not in message  # nothing close to "foo"
    for known in ("hostname", "port", "user", "password", "identity_file"):
        assert known in message


def test_key_before_any_section(write_inventory: WriteInventory) -> None:
    path = write_inventory("user = x\n[host:h]\n")
    with pytest.raises(InventoryError) as caught:
        load(path)
    assert caught.value.path == str(path)
    assert "before any [section]" in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "hosts.ini"
    with pytest.raises(InventoryError) as caught:
        load(path)
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)
    assert "not found" in str(caught.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="directory"):
        load(tmp_path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_bytes(b"[host:h]\nuser = \xff\xfe\n")
    with pytest.raises(InventoryError, match="UTF-8"):
        load(path)


def test_secret_never_in_validation_errors(write_inventory: WriteInventory) -> None:
    path = write_inventory("[host:h]\npassword = hunter2-very-secret\nport = nope\n")
    with pytest.raises(InventoryError) as caught:
        load(path)
    assert "hunter2" not in str(caught.value)


# --------------------------------------------------------------------------- readable passwords


@pytest.mark.parametrize(
    ("mode", "text", "refused"),
    [
        (0o644, "password = pw%#;\n", True),
        (0o640, "password = pw%#;\n", True),
        (0o604, "password = pw%#;\n", True),
        (0o600, "password = pw%#;\n", False),
        (0o400, "password = pw%#;\n", False),
        (0o644, "", False),
        (0o644, "password_env = OPS_PW\n", False),
        (0o644, "password_cmd = pass show ops/web\n", False),
    ],
)
def test_readable_file_with_a_literal_password_is_refused(
    write_inventory: WriteInventory, warnings_seen: list[str], mode: int, text: str,
    refused: bool,
) -> None:
    path = write_inventory("[host:h]\nuser = u\n" + text, mode=mode)
    if not refused:
        load(path, warn=warnings_seen.append)
        assert warnings_seen == []
        return
    with pytest.raises(InventoryError) as caught:
        load(path, warn=warnings_seen.append)
    message = str(caught.value)
    assert "\n" not in message
    assert f"chmod 600 {path}" in message and "--insecure-inventory" in message
    assert f"{mode:04o}" in message
    assert "pw%#;" not in message
    inv = load_inventory(path, warn=warnings_seen.append, local_user="me", insecure=True)
    assert inv.hosts["h"].password == Secret("pw%#;")
    assert len(warnings_seen) == 1 and f"chmod 600 {path}" in warnings_seen[0]
    assert "pw%#;" not in warnings_seen[0]


def test_password_in_readable_defaults_is_refused_too(write_inventory: WriteInventory) -> None:
    path = write_inventory("[defaults]\npassword = x\n[group:g]\nhosts = a[1-3]\n", mode=0o644)
    with pytest.raises(InventoryError, match="chmod 600"):
        load(path)
    inv = load_inventory(path, local_user="me", insecure=True)
    assert all(spec.password == Secret("x") for spec in inv.hosts.values())


# --------------------------------------------------------------------------- password sources


def test_password_sources_are_kept_for_later(write_inventory: WriteInventory) -> None:
    path = write_inventory("""
        [defaults]
        password_cmd = pass show 'ops/web 1'
        [host:a]
        [host:b]
        password_env = B_PW
        [host:c]
        password = lit
        [host:d]
        password_env = D_PW
        identity_file = /k
        """)
    hosts = load(path).hosts
    assert (hosts["a"].password_cmd, hosts["a"].password_env, hosts["a"].password) == (
        "pass show 'ops/web 1'", None, None)
    # A [host:] password source replaces the [defaults] one entirely.
    assert (hosts["b"].password_cmd, hosts["b"].password_env) == (None, "B_PW")
    assert (hosts["c"].password_cmd, hosts["c"].password) == (None, Secret("lit"))
    assert hosts["d"].identity_file == "/k" and hosts["d"].password_env == "D_PW"


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        ("password = a\npassword_env = B\n", "password_env", "set only one of"),
        ("password_cmd = x\npassword_env = B\n", "password_cmd", "set only one of"),
        ("password_env = 1BAD\n", "password_env", "not an environment variable name"),
        ("password_env = A B\n", "password_env", "not an environment variable name"),
        ("password_cmd = pass show 'unclosed\n", "password_cmd", "cannot split"),
        ("password_cmd =\n", "password_cmd", "empty"),
    ],
)
def test_bad_password_sources(write_inventory: WriteInventory, body: str, key: str,
                              fragment: str) -> None:
    path = write_inventory("[host:h]\n" + body)
    with pytest.raises(InventoryError) as caught:
        load(path)
    assert caught.value.section == "host:h" and caught.value.key == key
    assert fragment in str(caught.value)


# --------------------------------------------------------------------------- location


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """An explicit file, an env file, ./hosts.ini and ~/.config/hostbatch/hosts.ini, all present."""
    cwd = tmp_path / "cwd"
    home = tmp_path / "home"
    config = home / ".config" / "hostbatch"
    config.mkdir(parents=True)
    cwd.mkdir()
    paths = {
        "explicit": tmp_path / "explicit.ini",
        "env": tmp_path / "env.ini",
        "cwd": cwd / "hosts.ini",
        "home": config / "hosts.ini",
    }
    for path in paths.values():
        path.write_text("[host:h]\n")
    monkeypatch.chdir(cwd)
    paths["home_dir"] = home
    return paths


def _resolved(path: Path) -> Path:
    return path.resolve()


def test_locate_explicit_beats_everything(places: dict[str, Path]) -> None:
    environ = {"HOSTBATCH_INVENTORY": str(places["env"]), "HOME": str(places["home_dir"])}
    assert locate_inventory(str(places["explicit"]), environ) == places["explicit"]


def test_locate_env_beats_cwd_and_home(places: dict[str, Path]) -> None:
    environ = {"HOSTBATCH_INVENTORY": str(places["env"]), "HOME": str(places["home_dir"])}
    assert locate_inventory(None, environ) == places["env"]


def test_locate_empty_env_is_ignored(places: dict[str, Path]) -> None:
    environ = {"HOSTBATCH_INVENTORY": "", "HOME": str(places["home_dir"])}
    assert _resolved(locate_inventory(None, environ)) == places["cwd"].resolve()


def test_locate_cwd_beats_home(places: dict[str, Path]) -> None:
    found = locate_inventory(None, {"HOME": str(places["home_dir"])})
    assert _resolved(found) == places["cwd"].resolve()


def test_locate_home_config_last(places: dict[str, Path]) -> None:
    places["cwd"].unlink()
    found = locate_inventory(None, {"HOME": str(places["home_dir"])})
    assert _resolved(found) == places["home"].resolve()


def test_locate_home_comes_from_the_given_environ(
    places: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    places["cwd"].unlink()
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    found = locate_inventory(None, {"HOME": str(places["home_dir"])})
    assert _resolved(found) == places["home"].resolve()


def test_locate_explicit_missing_file_is_returned_then_load_fails(
    places: dict[str, Path], tmp_path: Path,
) -> None:
    missing = tmp_path / "missing.ini"
    found = locate_inventory(str(missing), {"HOME": str(places["home_dir"])})
    assert found == missing
    with pytest.raises(InventoryError, match="not found"):
        load(found)


def test_locate_nothing_found(places: dict[str, Path]) -> None:
    places["cwd"].unlink()
    places["home"].unlink()
    with pytest.raises(InventoryError) as caught:
        locate_inventory(None, {"HOME": str(places["home_dir"])})
    message = str(caught.value)
    assert "hosts.ini" in message
    assert str(places["home"]) in message
    assert "-i" in message and "HOSTBATCH_INVENTORY" in message


def test_locate_directory_named_hosts_ini_is_skipped(places: dict[str, Path]) -> None:
    places["cwd"].unlink()
    places["cwd"].mkdir()
    found = locate_inventory(None, {"HOME": str(places["home_dir"])})
    assert _resolved(found) == places["home"].resolve()
