"""Man pages, ``hostbatch help COMMAND`` and the examples that end ``--help``.

The man pages are generated from the argparse parsers, so the check that matters is that
every option of every parser is in its page; groff (when present) checks that the roff is
well formed.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hostbatch.cli import catalog, man
from hostbatch.cli.environment import Environment
from hostbatch.cli.main import hostbatch_main, run_main, scp_main


def _env() -> Environment:
    return Environment(stdin=io.BytesIO(), stdout=io.BytesIO(), stderr=io.BytesIO(),
                       environ={}, stdin_isatty=False, stdout_isatty=False,
                       stderr_isatty=False)


def _out(main: object, argv: list[str]) -> tuple[int, str]:
    env = _env()
    status = main(argv, env)  # type: ignore[operator]
    assert isinstance(env.stdout, io.BytesIO)
    return status, env.stdout.getvalue().decode()


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [option for action in parser._actions if action.help != argparse.SUPPRESS
            for option in action.option_strings]


def _plain(roff: str) -> str:
    """The page's words as a reader sees them: roff's escaped hyphens made plain."""
    return roff.replace("\\-", "-").replace("\\e", "\\")


@pytest.mark.parametrize("program", ["batch_run", "batch_scp"])
def test_every_option_of_a_program_is_in_its_man_page(program: str) -> None:
    page = _plain(man.page(program))
    parser = catalog.program_parser(program)
    missing = [option for option in _option_strings(parser) if option not in page]
    assert not missing
    assert page.startswith(f".TH {program.upper()} 1")
    for action in parser._actions:
        if action.help and action.help != argparse.SUPPRESS:
            first_words = " ".join(action.help.split()[:3]).replace("%%", "%")
            assert first_words in page, action.dest


def test_every_option_of_every_subcommand_is_in_the_hostbatch_page() -> None:
    page = _plain(man.page("hostbatch"))
    subcommands = catalog.all_subcommands()
    assert ["history", "prune"] in subcommands and ["inventory", "explain"] in subcommands
    for words in subcommands:
        parser = catalog.subcommand_parser(words)
        assert parser is not None
        section = f".SS {parser.prog}"
        assert section in page, section
        if words[0] in ("run", "scp"):
            continue  # their options are in batch_run(1) and batch_scp(1)
        body = page.split(section, 1)[1].split("\n.SS ", 1)[0]
        missing = [option for option in _option_strings(parser) if option not in body]
        assert not missing, (words, missing)
    assert all(f".B {command.name}" in page for command in catalog.COMMANDS)


def test_captured_history_parsers_are_the_real_ones() -> None:
    """history's subcommands build their parsers inline; the catalog must see all of them."""
    from hostbatch.cli import history

    assert set(catalog.HISTORY_SUBCOMMANDS) == set(history._COMMANDS)
    from hostbatch.cli import inventory

    assert set(catalog.INVENTORY_SUBCOMMANDS) == set(inventory.SUBCOMMANDS)
    prune = catalog.subcommand_parser(["history", "prune"])
    assert prune is not None and "--keep" in _option_strings(prune)


@pytest.mark.parametrize("name", catalog.MAN_PAGES)
def test_man_command_writes_roff_that_groff_accepts(name: str) -> None:
    status, text = _out(hostbatch_main, ["man", name])
    assert status == 0 and text == man.page(name)
    assert ".SH EXAMPLES" in text and ".SH SEE ALSO" in text
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed: the roff was not rendered")
    done = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=text.encode(),
                          capture_output=True, check=False)
    assert done.returncode == 0 and done.stderr == b"", done.stderr.decode()


def test_man_install_writes_the_three_pages(tmp_path: Path) -> None:
    env = _env()
    assert hostbatch_main(["man", "--install", str(tmp_path / "man1")], env) == 0
    assert sorted(p.name for p in (tmp_path / "man1").iterdir()) == [
        "batch_run.1", "batch_scp.1", "hostbatch.1"]
    assert (tmp_path / "man1" / "hostbatch.1").read_text() == man.page("hostbatch")


def test_roff_escaping_keeps_text_from_being_requests() -> None:
    assert man.escape(".x\n'y\na-b\\c") == "\\&.x\n\\&'y\na\\-b\\ec"


@pytest.mark.parametrize(("main", "argv"), [(run_main, ["--help"]), (scp_main, ["--help"]),
                                            (hostbatch_main, ["--help"])])
def test_help_ends_with_three_examples(main: object, argv: list[str]) -> None:
    status, text = _out(main, argv)
    assert status == 0
    tail = text.rstrip("\n").rsplit("\nexamples:\n", 1)[1].split("\n")
    assert len(tail) == 3 and all(line.startswith("  ") for line in tail), tail


@pytest.mark.parametrize("command", [c.name for c in catalog.COMMANDS if c.name != "help"])
def test_help_command_shows_the_commands_own_help(command: str) -> None:
    status, via_help = _out(hostbatch_main, ["help", command])
    direct_status, direct = _out(hostbatch_main, [command, "--help"])
    assert status == direct_status == 0
    assert via_help == direct and via_help.startswith("usage: hostbatch")


@pytest.mark.parametrize("words", [["inventory", "lint"], ["history", "show"]])
def test_help_names_a_subcommand(words: list[str]) -> None:
    status, text = _out(hostbatch_main, ["help", *words])
    assert status == 0 and text.startswith(f"usage: hostbatch {' '.join(words)}")


def test_help_of_an_unknown_command_is_a_usage_error() -> None:
    env = _env()
    assert hostbatch_main(["help", "frobnicate"], env) == 2
    assert isinstance(env.stderr, io.BytesIO)
    assert b"frobnicate" in env.stderr.getvalue()
    status, text = _out(hostbatch_main, ["help"])
    assert status == 0 and "completion" in text and "man" in text


@pytest.mark.parametrize("argv", [["batch_run", "--help"], ["batch_scp", "--help"],
                                  ["hostbatch", "help", "run"], ["hostbatch", "man"]])
def test_help_and_man_never_import_paramiko(argv: list[str]) -> None:
    script = ("import sys\nfrom hostbatch.cli import scripts\n"
              f"sys.argv = {argv!r}\n"
              f"try:\n    scripts.{argv[0]}()\nexcept SystemExit as exc:\n"
              "    assert exc.code == 0, exc.code\n"
              "sys.stderr.write(str('paramiko' in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True)
    assert done.stderr.decode().endswith("False")
