"""``batch_scp SRC DEST`` and ``batch_scp :REMOTE LOCALDIR`` (scp's own shape) beside the
``-action/-local/-remote`` form; mixed or ambiguous forms are one-line usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostbatch.actions import GetFiles, PutFiles
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
    ([":a", ":b"], "only one path may start with ':'"),
    (["a", "b", "/tmp/"], "one source per copy"),
    ([], "nothing to copy"),
])
def test_mixed_or_ambiguous_forms_show_both_forms(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        action(*argv)
    text = str(caught.value)
    if message not in ("one source per copy",):
        assert "SRC DEST" in text and "-action put|get" in text
