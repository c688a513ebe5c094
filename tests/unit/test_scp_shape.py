"""``batch_scp SRC DEST`` and ``batch_scp :REMOTE LOCALDIR`` (scp's own shape) beside the
``-action/-local/-remote`` form; mixed or ambiguous forms are one-line usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostbatch.actions import GetFiles, PutFiles, describe
from hostbatch.cli import scp
from hostbatch.cli.options import build_scp_parser
from hostbatch.errors import UsageError


def action(*argv: str) -> PutFiles | GetFiles:
    args = build_scp_parser("batch_scp").parse_args(["-g", "all", *argv])
    scp.check_arguments(args)  # the CLI checks first, then builds the action
    return scp.action_from(args)


def test_src_dest_is_a_put(tmp_path: Path) -> None:
    source = tmp_path / "app.conf"
    source.write_text("x")
    put = action(str(source), "/etc/app/")
    assert isinstance(put, PutFiles)
    assert (put.source, put.remote) == (str(source), "/etc/app/")
    assert action(str(source), ":/etc/app/").remote == "/etc/app/"  # scp's host: habit


def test_colon_remote_localdir_is_a_get(tmp_path: Path) -> None:
    get = action("-r", ":/var/log/app", str(tmp_path / "logs"))
    assert isinstance(get, GetFiles)
    assert (get.remote, get.recursive) == ("/var/log/app", True)
    assert get.local_dir == str(tmp_path / "logs")


@pytest.mark.parametrize(("argv", "message"), [
    (["a", "b", "-action", "put"], "one way, not both"),
    (["a", "-remote", "/tmp"], "one way, not both"),
    (["only-one"], "a source and a destination"),
    ([":a", ":b"], "only one side may start with ':'"),
    (["a", ":b", "/tmp/"], "all be local .put. or all start with ':'"),
    ([":a", "b", "/tmp/"], "all be local .put. or all start with ':'"),
    ([":a", ":b", ":c"], "only one side may start with ':'"),
    ([], "nothing to copy"),
])
def test_mixed_or_ambiguous_forms_show_both_forms(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        action(*argv)
    text = str(caught.value)
    assert "SRC... DEST" in text and ":REMOTE... LOCALDIR" in text and "-action put|get" in text


def test_several_sources_put_into_one_directory(tmp_path: Path) -> None:
    names = ["a.conf", "b.conf", "c.conf"]
    for name in names:
        (tmp_path / name).write_text(name)
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "x").write_text("x")
    put = action("-r", *(str(tmp_path / n) for n in [*names, "tree"]), ":/etc/app")
    assert isinstance(put, PutFiles)
    assert put.sources == tuple(str(tmp_path / n) for n in [*names, "tree"])
    assert put.total_size == len("a.conf") * 3 + 1
    parts = put.each_source()
    assert [p.source for p in parts] == list(put.sources)
    assert {p.remote for p in parts} == {"/etc/app/"}  # each lands as /etc/app/NAME
    assert [len(p.entries) for p in parts] == [1, 1, 1, 2] and not parts[0].more_sources
    assert describe(put).endswith("c.conf " + str(tmp_path / "tree") + " -> /etc/app")
    single = action(str(tmp_path / "a.conf"), "/etc/app.conf")
    assert isinstance(single, PutFiles) and single.each_source() == (single,)


def test_several_remote_paths_get_into_one_directory(tmp_path: Path) -> None:
    get = action(":/etc/os-release", ":~/app.log", str(tmp_path / "got"))
    assert isinstance(get, GetFiles)
    assert get.remotes == ("/etc/os-release", "~/app.log")
    assert [p.remote for p in get.each_remote()] == ["/etc/os-release", "~/app.log"]
    assert {p.local_dir for p in get.each_remote()} == {str(tmp_path / "got")}


@pytest.mark.parametrize("argv", [
    [":/etc/hosts", ":/srv/hosts", "got"],
    ["one/app.conf", "two/app.conf/", "/etc/"],
])
def test_two_sources_with_one_name_are_refused(argv: list[str]) -> None:
    with pytest.raises(UsageError, match="would both land as"):
        action(*argv)


def test_every_source_is_checked_before_connecting(tmp_path: Path) -> None:
    (tmp_path / "here").write_text("x")
    with pytest.raises(UsageError, match="missing does not exist"):
        action(str(tmp_path / "here"), str(tmp_path / "missing"), "/etc/")
    with pytest.raises(UsageError, match="only ~ and ~/"):
        action(":/etc/hosts", ":~other/x", str(tmp_path))
