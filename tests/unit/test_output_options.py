"""Output-mode options: contradictory combinations are one-line usage errors (exit 2) found
before the inventory is read; batch_scp has only the modes that make sense for copies."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hostbatch.cli.environment import Environment
from hostbatch.cli.main import run_main, scp_main


def run(main: object, *argv: str, tmp_path: Path) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    env = Environment(stdout=out, stderr=err, environ={"HOME": str(tmp_path)},
                      stdout_isatty=False, stderr_isatty=False)
    status = main(list(argv), env)  # type: ignore[operator]
    return int(status), out.getvalue().decode(), err.getvalue().decode()


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--json", "-b"], "--json and -b/--gather"),
        (["--json", "--diff"], "--json and --diff"),
        (["--json", "-q"], "--json and -q/--quiet"),
        (["-b", "--diff"], "give one"),
        (["-q", "-b"], "-q/--quiet prints only the summary"),
        (["--quiet", "--diff"], "--diff"),
        (["--gather-stderr"], "--gather-stderr needs"),
        (["-o", "same", "-e", "./same"], "different directories"),
    ],
)
def test_contradictory_output_modes(tmp_path: Path, flags: list[str], fragment: str) -> None:
    missing = tmp_path / "missing.ini"  # the error comes before the inventory is read
    status, stdout, stderr = run(run_main, "-i", str(missing), "-h", "h1", *flags, "-cmd",
                                 "true", tmp_path=tmp_path)
    assert status == 2 and stdout == ""
    assert len(stderr.splitlines()) == 1 and fragment in stderr, stderr
    assert "missing.ini" not in stderr


@pytest.mark.parametrize("flag", ["-b", "--diff", "-o", "-e", "--gather-stderr"])
def test_scp_has_no_gathering_modes(tmp_path: Path, flag: str) -> None:
    status, _, stderr = run(scp_main, "-h", "h1", flag, "x", "-action", "put", "-local", "a",
                            "-remote", "/tmp/", tmp_path=tmp_path)
    assert status == 2 and "unrecognized arguments" in stderr, stderr


def test_help_documents_the_output_modes(tmp_path: Path) -> None:
    _, stdout, _ = run(run_main, "--help", tmp_path=tmp_path)
    for flag in ("-b, --gather", "--diff", "--gather-stderr", "-o DIR, --outdir DIR",
                 "-e DIR, --errdir DIR", "-q, --quiet", "--json"):
        assert flag in stdout, flag
    _, stdout, _ = run(scp_main, "--help", tmp_path=tmp_path)
    assert "-q, --quiet" in stdout and "--gather" not in stdout
