"""Shell completion: the word logic of ``hostbatch __complete``, and the generated scripts
sourced in real bash, zsh and fish (zsh and fish tests skip, saying why, when absent)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hostbatch.cli import catalog
from hostbatch.cli.completion import Candidate, complete, format_reply, script
from hostbatch.cli.environment import Environment
from hostbatch.cli.main import hostbatch_main

from .conftest import WriteInventory

INVENTORY = """
[defaults]
password = only-0600-files-may-hold-this

[host:web01]
[host:web02]
[host:db01]

[group:web_clusters]
hosts = web01, web02

[group:workers]
hosts = db01

[group:db_servers]
hosts = db01
"""

BIN = Path(sys.executable).parent


@pytest.fixture
def inventory(write_inventory: WriteInventory) -> Path:
    # 0644 with a password: a run refuses it; completion still lists the names
    return write_inventory(INVENTORY, mode=0o644)


def words_of(*words: str, inventory: Path | None = None, environ: dict[str, str] | None = None
             ) -> list[str]:
    env = dict(environ or {})
    if inventory is not None:
        env["HOSTBATCH_INVENTORY"] = str(inventory)
    reply = complete(list(words), env)
    return [c.word for c in reply.candidates] if reply.paths is None else [f":{reply.paths}"]


def test_groups_and_hosts_come_from_the_inventory(inventory: Path) -> None:
    assert words_of("batch_run", "-g", "w", inventory=inventory) == ["web_clusters", "workers"]
    assert words_of("batch_run", "-g", "", inventory=inventory) == [
        "web_clusters", "workers", "db_servers", "all"]
    assert words_of("batch_scp", "-h", "", inventory=inventory) == [
        "web01", "web02", "db01", "@failed", "@ok"]
    assert words_of("batch_run", "-x", "d", inventory=inventory) == ["db01"]


def test_a_comma_list_completes_its_last_item(inventory: Path) -> None:
    assert words_of("batch_run", "-h", "web01,", inventory=inventory) == [
        "web01,web02", "web01,db01", "web01,@failed", "web01,@ok"]
    assert words_of("batch_run", "--groups", "db_servers,w", inventory=inventory) == [
        "db_servers,web_clusters", "db_servers,workers"]


def test_the_inventory_on_the_line_wins(inventory: Path, write_inventory: WriteInventory
                                        ) -> None:
    other = write_inventory("[host:other1]\n[group:odd]\nhosts = other1\n", name="other.ini")
    for option in (["-i", str(other)], [f"--inventory={other}"], ["--inventory", "=", str(other)]):
        assert words_of("batch_run", *option, "-g", "", inventory=inventory) == ["odd", "all"]


def test_the_usual_lookup_finds_hosts_ini(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    home = tmp_path / "home"
    (home / ".config" / "hostbatch").mkdir(parents=True)
    (home / ".config" / "hostbatch" / "hosts.ini").write_text("[group:from_home]\nhosts = a\n")
    monkeypatch.chdir(tmp_path)
    assert words_of("batch_run", "-g", "", environ={"HOME": str(home)}) == ["from_home", "all"]
    (tmp_path / "hosts.ini").write_text("[group:from_cwd]\nhosts = b\n")
    assert words_of("batch_run", "-g", "", environ={"HOME": str(home)}) == ["from_cwd", "all"]


def test_no_inventory_or_a_broken_one_offers_nothing(tmp_path: Path,
                                                     write_inventory: WriteInventory) -> None:
    broken = write_inventory("[nonsense\n", name="broken.ini")
    assert words_of("batch_run", "-i", str(broken), "-g", "") == []
    assert words_of("batch_run", "-g", "", environ={"HOME": str(tmp_path)}) == []


def test_options_come_from_the_parsers() -> None:
    assert words_of("batch_run", "--no-h") == ["--no-history"]
    assert words_of("batch_scp", "--ver") == ["--version", "--verbose", "--verify"]
    assert "--workers" not in words_of("batch_run", "--")  # hidden options stay hidden
    parser = catalog.program_parser("batch_run")
    offered = set(words_of("batch_run", "-"))
    assert offered == {o for a in parser._actions if a.help != "==SUPPRESS=="
                       for o in a.option_strings}


def test_subcommands_and_their_options() -> None:
    assert words_of("hostbatch", "") == [c.name for c in catalog.COMMANDS]
    assert words_of("hostbatch", "inventory", "") == ["lint", "convert", "explain"]
    assert words_of("hostbatch", "history", "") == ["show", "diff", "prune"]
    assert words_of("hostbatch", "help", "") == [
        c.name for c in catalog.COMMANDS if c.name != "help"]
    assert words_of("hostbatch", "help", "inventory", "") == ["lint", "convert", "explain"]
    assert words_of("hostbatch", "man", "") == list(catalog.MAN_PAGES)
    assert words_of("hostbatch", "completion", "z") == ["zsh"]
    assert words_of("hostbatch", "keyscan", "--y") == ["--yes"]
    assert words_of("hostbatch", "history", "prune", "--k") == ["--keep"]
    assert words_of("hostbatch", "inventory", "lint", "--st") == ["--strict"]
    assert words_of("hostbatch", "run", "--canary") == ["--canary"]


def test_paths_are_left_to_the_shell(inventory: Path) -> None:
    assert words_of("batch_run", "-i", "") == [":files"]
    assert words_of("batch_run", "-o", "") == [":dirs"]
    assert words_of("batch_scp", "-local", "") == [":files"]
    assert words_of("batch_scp", "-remote", "") == []
    assert words_of("hostbatch", "inventory", "lint", "") == [":files"]
    assert words_of("hostbatch", "inventory", "explain", "w", inventory=inventory) == [
        "web01", "web02"]
    assert words_of("batch_run", "--inventory-format", "") == ["auto", "hostbatch", "ansible"]


def test_reply_formats_per_shell() -> None:
    from hostbatch.cli.completion import Reply

    reply = Reply((Candidate("a:b", "the a"), Candidate("c")))
    assert list(format_reply(reply, "bash")) == ["a:b", "c"]
    assert list(format_reply(reply, "zsh")) == ["a\\:b:the a", "c"]
    assert list(format_reply(reply, "fish")) == ["a:b\tthe a", "c"]


def test_complete_never_fails_loudly() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    env = Environment(stdout=out, stderr=err, environ={}, stdin=io.BytesIO())
    assert hostbatch_main(["__complete"], env) == 0
    assert hostbatch_main(["__complete", "bash", "--"], env) == 0
    assert out.getvalue() == err.getvalue() == b""


def test_completion_command_writes_each_script() -> None:
    for shell in catalog.SHELLS:
        out = io.BytesIO()
        env = Environment(stdout=out, stderr=io.BytesIO(), environ={}, stdin=io.BytesIO())
        assert hostbatch_main(["completion", shell], env) == 0
        assert out.getvalue().decode() == script(shell)
        assert "__complete" in script(shell)


# ---------------------------------------------------------------- the scripts, in real shells


def _shell_env(inventory: Path) -> dict[str, str]:
    return {"PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(inventory.parent), "HOSTBATCH_INVENTORY": str(inventory)}


def _run(argv: list[str], inventory: Path) -> list[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          env=_shell_env(inventory), cwd=inventory.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _bash(inventory: Path, *words: str) -> list[str]:
    """COMPREPLY after sourcing the bash script and completing the last of ``words``."""
    line = " ".join(f"'{w}'" for w in words)
    code = (f'source <(hostbatch completion bash)\nCOMP_WORDS=({line})\n'
            f'COMP_CWORD={len(words) - 1}\n_hostbatch_complete\n'
            'printf "%s\\n" "${COMPREPLY[@]}"\n')
    return [w for w in _run(["bash", "--norc", "--noprofile", "-c", code], inventory) if w]


def test_bash_completes_a_group_of_a_real_inventory(inventory: Path) -> None:
    assert _bash(inventory, "batch_run", "-g", "w") == ["web_clusters", "workers"]
    other = inventory.parent / "other.ini"
    other.write_text("[group:wide]\nhosts = x1\n")
    assert _bash(inventory, "batch_run", "-i", str(other), "-g", "w") == ["wide"]
    assert _bash(inventory, f"{BIN}/batch_run", "-g", "db") == ["db_servers"]


def test_bash_completes_options_and_files(inventory: Path) -> None:
    assert _bash(inventory, "batch_run", "--no-h") == ["--no-history"]
    assert _bash(inventory, "hostbatch", "inventory", "ex") == ["explain"]
    assert _bash(inventory, "batch_scp", "-local", "hos") == ["hosts.ini"]


def test_zsh_completes_options_and_groups(inventory: Path) -> None:
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed (apt-get install zsh)")
    # compinit's machinery needs a terminal; the script's own function runs in a real zsh
    # with _describe/_files standing in for zsh's, printing what they were given.
    code = ('compdef() { print -r -- "compdef $*" }\n'
            '_describe() { print -rl -- "${(@P)4}" }\n'
            '_files() { print -r -- "FILES $*" }\n'
            'source <(hostbatch completion zsh)\n'
            'words=(batch_run --no-h); CURRENT=2; PREFIX=--no-h; _hostbatch\n'
            'words=(batch_run -g w); CURRENT=3; PREFIX=w; _hostbatch\n'
            'words=(batch_run -o x); CURRENT=3; PREFIX=x; _hostbatch\n')
    assert _run(["zsh", "-f", "-c", code], inventory) == [
        "compdef _hostbatch batch_run batch_scp hostbatch",
        "--no-history:do not record this run in the history",
        "web_clusters", "workers", "FILES -/"]
    assert subprocess.run(["zsh", "-n", "-c", script("zsh")], check=False).returncode == 0


def test_fish_completes_options_and_groups(inventory: Path) -> None:
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed (apt-get install fish)")
    code = ('hostbatch completion fish | source\n'
            'complete -C "batch_run --no-h"\ncomplete -C "batch_run -g w"\n'
            'complete -C "hostbatch inv"\n')
    assert _run(["fish", "--no-config", "-c", code], inventory) == [
        "--no-history\tdo not record this run in the history", "web_clusters", "workers",
        "inventory\tinventory tools: lint, convert, explain"]


def test_complete_never_imports_paramiko(inventory: Path) -> None:
    code = ("import sys\nfrom hostbatch.cli import scripts\n"
            "sys.argv = ['hostbatch', '__complete', 'bash', '--', 'batch_run', '-g', 'w']\n"
            "try:\n    scripts.hostbatch()\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write(str('paramiko' in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                          env=_shell_env(inventory))
    assert done.stdout.decode().split() == ["web_clusters", "workers"]
    assert done.stderr.decode() == "False"
