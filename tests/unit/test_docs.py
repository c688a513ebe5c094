"""The docs: the library example in docs/library.md is the tested file, and the README
links only to files inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_library_page_shows_the_example_file_verbatim() -> None:
    page = (ROOT / "docs" / "library.md").read_text(encoding="utf-8")
    example = (ROOT / "docs" / "examples" / "library_run.py").read_text(encoding="utf-8")
    assert f"```python\n{example}```" in page
    compile(example, "library_run.py", "exec")


def test_readme_links_stay_inside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)]+)\)", readme)
    assert targets, "the README links to the docs pages"
    for target in targets:
        assert "://" not in target and not target.startswith(("/", "mailto:")), target
        path = target.split("#", 1)[0]
        assert path and (ROOT / path).exists(), target


def test_every_docs_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert pages == set(re.findall(r"(\S+\.md)", nav))
