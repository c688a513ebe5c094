"""Properties of the inventory readers: hostbatch INI and Ansible INI files, through
``load_inventory`` and through ``batch_run --list`` / ``hostbatch inventory lint|explain|
convert``. Any file loads, or fails with one short line; groups nested 5,000 deep work
everywhere groups are walked."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hostbatch.cli.main import hostbatch_main, run_main
from hostbatch.errors import HostbatchError
from hostbatch.inventory.loader import load_inventory
from hostbatch.inventory.validate import GROUP_KEYS, HOST_KEYS
from hostbatch.selection import Selection, select

from .properties import (
    check_message,
    fast,
    forget_secrets,  # noqa: F401  (autouse fixture)
    junk,
    long_token,
    run_cli,
    time_limit,
)

_NAME = st.one_of(st.sampled_from(["web", "db1", "h1", "all", "g", "x.y", "a-b"]),
                  st.text(string.ascii_lowercase + string.digits + "._-", min_size=1, max_size=8))
_VALUE = st.one_of(
    _NAME, st.integers(-5, 70000).map(str), st.sampled_from(["yes", "no", "1.5", "", "~/k"]),
    st.builds(lambda n, a, b: f"{n}[{a}-{b}]", _NAME, st.integers(0, 30), st.integers(0, 10**9)),
    st.lists(_NAME, max_size=4).map(", ".join), junk(30), long_token(),
)


@st.composite
def hostbatch_ini(draw: st.DrawFn) -> str:
    """A hostbatch INI file: mostly well-formed sections and keys, with junk mixed in."""
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["defaults", "host", "group", "other"]))
        name = draw(_NAME | junk(10) | long_token())
        header = {"defaults": "[defaults]", "host": f"[host:{name}]",
                  "group": f"[group:{name}]", "other": f"[{name}]"}[kind]
        lines.append(header)
        keys = GROUP_KEYS if kind == "group" else HOST_KEYS
        for _ in range(draw(st.integers(0, 4))):
            key = draw(st.sampled_from(keys) | junk(8))
            lines.append(f"{key} = {draw(_VALUE)}")
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(junk(40) | long_token()))
    return "\n".join(lines) + "\n"


@st.composite
def ansible_ini(draw: st.DrawFn) -> str:
    """An Ansible INI file: groups, children, vars, host lines with ranges and variables."""
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 8))):
        name = draw(_NAME)
        state = draw(st.sampled_from(["", ":children", ":vars", ":hosts", ":junk"]))
        lines.append(f"[{name}{state}]")
        for _ in range(draw(st.integers(0, 4))):
            if state == ":children":
                lines.append(draw(_NAME | junk(10)))
            elif state == ":vars":
                lines.append(f"{draw(st.sampled_from(['ansible_port', 'ansible_host', 'x']))}"
                             f"={draw(_VALUE)}")
            else:
                host = draw(_NAME) + draw(st.sampled_from(
                    ["", "[1:3]", "[01:10:2]", "[a:c]", ":2222", "[1:100000000]", "[1:"]))
                variables = draw(st.lists(st.builds(
                    lambda k, v: f"{k}={v}", st.sampled_from(
                        ["ansible_port", "ansible_user", "ansible_ssh_common_args", "v"]),
                    _VALUE), max_size=2))
                lines.append(" ".join([host, *variables]))
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(junk(40) | long_token()))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inventories")


def _load(path: Path, inventory_format: str) -> None:
    warnings: list[str] = []
    with time_limit(10):
        try:
            inventory = load_inventory(path, warn=warnings.append, local_user="me", environ={},
                                       inventory_format=inventory_format)
            if inventory.hosts:
                select(inventory, Selection(groups=["all"]), warn=warnings.append)
        except HostbatchError as exc:
            check_message(str(exc))
    for warning in warnings:
        check_message(warning)


@given(hostbatch_ini())
@example("[group:a]\nhosts = web[1-100000000]\n")
@example("[group:a]\nhosts = a[1-1000]b[1-1000]\n")
@example("[host:h1]\nport = " + "9" * 3000 + "\n")
@example("[defaults]\nuser = " + "x y" * 500 + "\n")
@example("x" * 3000 + "\n")
@example("[group:" + "g" * 3000 + "]\nhosts = h1\n")
@fast(150)
def test_hostbatch_inventory_loads_or_fails_in_one_short_line(workdir: Path, text: str) -> None:
    path = workdir / "hosts.ini"
    path.write_text(text, encoding="utf-8")
    _load(path, "hostbatch")


@given(ansible_ini())
@example("[web]\nweb[1:100000000:2]\n")
@example("[web]\na[1:1000]b[1:1000]\n")
@example("[web]\nh1 ansible_port=" + "9" * 3000 + "\n")
@example("[web]\nh1 " + "x" * 3000 + "\n")
@example("[web:children]\n" + "g" * 3000 + "\n")
@example("[" + "w " * 1500 + "]\n")
@fast(150)
def test_ansible_inventory_loads_or_fails_in_one_short_line(workdir: Path, text: str) -> None:
    path = workdir / "hosts"
    path.write_text(text, encoding="utf-8")
    _load(path, "ansible")


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
@example(b"\xff\xfe[defaults]\n")
@example(b"[defaults]\x00\n")
@fast(100)
def test_any_bytes_load_or_fail_in_one_short_line(workdir: Path, data: bytes) -> None:
    path = workdir / "raw.ini"
    path.write_bytes(data)
    _load(path, "auto")


DEPTH = 5000


def _deep_hostbatch(path: Path, *, reverse: bool) -> Path:
    sections = ["[group:g0]\nhosts = h1\n"]
    sections += [f"[group:g{n}]\nchildren = g{n - 1}\n" for n in range(1, DEPTH)]
    path.write_text("\n".join(reversed(sections) if reverse else sections))
    return path


def _deep_ansible(path: Path, *, reverse: bool) -> Path:
    sections = ["[g0]\nh1\n"]
    sections += [f"[g{n}:children]\ng{n - 1}\n" for n in range(1, DEPTH)]
    path.write_text("\n".join(reversed(sections) if reverse else sections))
    return path


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("make", [_deep_hostbatch, _deep_ansible])
def test_groups_nested_5000_deep_work_everywhere(tmp_path: Path, make: object,
                                                reverse: bool) -> None:
    path = make(tmp_path / "hosts.ini", reverse=reverse)  # type: ignore[operator]
    environ = {"HOME": str(tmp_path)}
    for group in (f"g{DEPTH - 1}", "g0", "all", "g*"):
        listed = run_cli(run_main, ["-i", str(path), "-F", "none", "-g", group, "--list"],
                         environ, seconds=20)
        assert (listed.status, listed.stdout) == (0, "h1\n")
    for argv in (["inventory", "lint", "-i", str(path)],
                 ["inventory", "explain", "-i", str(path), "-F", "none", "h1"],
                 ["inventory", "convert", "-i", str(path)]):
        assert run_cli(hostbatch_main, argv, environ, seconds=20).status == 0, argv


@given(st.sampled_from(["hostbatch", "ansible"]), st.data())
@fast(60, seconds=5)
def test_inventory_tools_end_in_exit_0_or_one_short_error(workdir: Path, kind: str,
                                                           data: st.DataObject) -> None:
    text = data.draw(hostbatch_ini() if kind == "hostbatch" else ansible_ini())
    host = data.draw(_NAME)
    path = workdir / "tools.ini"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    environ = {"HOME": str(workdir)}
    fmt = ["--inventory-format", kind]
    run_cli(run_main, ["-i", str(path), *fmt, "-F", "none", "-g", "all", "--list"], environ)
    lint = run_cli(hostbatch_main, ["inventory", "lint", "-i", str(path), *fmt], environ,
                   statuses=(0, 1, 2))
    for line in lint.stdout.splitlines():  # one line per problem, each quoting the file
        check_message(line)
    run_cli(hostbatch_main, ["inventory", "explain", "-i", str(path), *fmt, "-F", "none",
                             host], environ)
    run_cli(hostbatch_main, ["inventory", "convert", "-i", str(path), *fmt], environ)
