"""Which hostbatch a batch benchmark measures: copies of ``src/hostbatch`` (the working tree as
it is, or any git revision) with a launcher for one of its console scripts, digests that show
whether the measured code changed, and how the checkout stands.

A long benchmark must not mix versions when the checkout is edited while it runs: the copy
keeps every run on the code as it was at the start.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def git_bytes(*args: str) -> bytes:
    """``git -C REPO ARGS``'s output; a failure ends the benchmark with git's message."""
    proc = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def git(*args: str) -> str:
    """:func:`git_bytes`, decoded."""
    return git_bytes(*args).decode()


def src_is_dirty() -> bool:
    """Whether ``src/`` has uncommitted changes (False when git cannot tell)."""
    try:
        return bool(git("status", "--porcelain", "--", "src").strip())
    except (SystemExit, OSError):
        return False


def source_digest(root: Path) -> str:
    """Short sha256 over the names and contents of the ``*.py`` files under ``root``."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def export_source(revision: str | None, target: Path) -> Path:
    """Copy ``src/hostbatch`` and ``pyproject.toml`` into ``target`` (emptied first): as they
    are in the working tree (``revision`` None) or as of a git revision (``git archive``, so
    uncommitted edits are left out). Returns the copied package directory."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    if revision is None:
        shutil.copytree(REPO / "src" / "hostbatch", target / "src" / "hostbatch",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "pyproject.toml", target / "pyproject.toml")
    else:
        archive = git_bytes("archive", "--format=tar", revision, "src/hostbatch",
                            "pyproject.toml")
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            for member in tar.getmembers():
                if member.isfile() or member.isdir():
                    tar.extract(member, target, filter="data")
    return target / "src" / "hostbatch"


def write_launcher(target: Path, script: str, comment: str) -> Path:
    """Write ``target/SCRIPT``: the console script ``script`` of the copy in ``target`` (see
    :func:`export_source`), run by this Python with the copy first on ``sys.path``. The entry
    point is read from the copy's ``pyproject.toml``: it moves when the CLI is reorganised."""
    project = tomllib.loads((target / "pyproject.toml").read_text())
    module, _, function = project["project"]["scripts"][script].partition(":")
    launcher = target / script
    launcher.write_text(f"#!{sys.executable}\n"
                        f"# {comment}\n"
                        "import sys\n\n"
                        f"sys.path.insert(0, {str(target / 'src')!r})\n"
                        f"from {module} import {function}  # noqa: E402\n\n"
                        f"sys.exit({function}())\n")
    launcher.chmod(0o755)
    return launcher


def installed_program(name: str) -> str | None:
    """The console script ``name`` next to this Python (its venv), else on PATH, else None."""
    sibling = Path(sys.executable).parent / name
    return str(sibling) if sibling.exists() else shutil.which(name)


def describe_checkout(package: Path) -> str:
    """``at commit abc1234`` (``+ uncommitted changes`` when src/ differs from it), when the
    package is this repository's ``src/hostbatch`` (an editable install)."""
    if package.resolve() != (REPO / "src" / "hostbatch").resolve():
        return f"installed at {package}"
    try:
        commit = git("rev-parse", "--short=10", "HEAD").strip()
    except (SystemExit, OSError):
        return f"editable install at {package}"
    dirty = " + uncommitted changes" if src_is_dirty() else ""
    return f"this checkout at commit {commit}{dirty}"


def snapshot_commit(rev: str, workdir: Path, script: str) -> tuple[str, Path, Path]:
    """Export ``src/hostbatch`` at git revision ``rev`` into the workdir (once per commit) and
    write a launcher of its console script ``script`` (see :func:`write_launcher`).

    Returns (full commit, launcher, package directory). The benchmark then measures exactly
    that commit, however the checkout changes while it runs.
    """
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}").strip()
    root = workdir / f"hostbatch-{commit[:12]}"
    stamp = root / ".complete"
    if not stamp.exists() or not (root / "pyproject.toml").exists():
        export_source(commit, root)
        stamp.write_text(commit + "\n")
    launcher = write_launcher(root, script, f"{script} of hostbatch at commit {commit}")
    return commit, launcher, root / "src" / "hostbatch"
