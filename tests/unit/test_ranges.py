"""hostbatch.inventory.ranges: expand, is_range, split_list."""

from __future__ import annotations

import pytest

from hostbatch.inventory import ranges
from hostbatch.inventory.ranges import MAX_EXPANSION, RangeError, expand, is_range, split_list


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web1", ["web1"]),
        ("web[1-3]", ["web1", "web2", "web3"]),
        ("web[02-04]", ["web02", "web03", "web04"]),
        ("web[1-3,7]", ["web1", "web2", "web3", "web7"]),
        ("web[7]", ["web7"]),
        ("web[8-10]", ["web8", "web9", "web10"]),
        ("web[008-010]", ["web008", "web009", "web010"]),
        ("n[01-02]-x", ["n01-x", "n02-x"]),
        ("[1-2]web", ["1web", "2web"]),
        (
            "rack[1-2]-n[01-02,07]",
            ["rack1-n01", "rack1-n02", "rack1-n07", "rack2-n01", "rack2-n02", "rack2-n07"],
        ),
        ("a[1-2]b[3-4]c", ["a1b3c", "a1b4c", "a2b3c", "a2b4c"]),
        ("web[0-0]", ["web0"]),
    ],
)
def test_expand(text: str, expected: list[str]) -> None:
    assert expand(text) == expected


def test_expand_zero_padding_follows_the_written_bounds() -> None:
    names = expand("web[02-10]")
    assert names == [f"web{n:02d}" for n in range(2, 11)]
    assert names[0] == "web02" and names[-1] == "web10"


@pytest.mark.parametrize(
    "text", ["web[abc]", "web[a-c]", "web[!1]", "web*", "db?", "web[1-3]x[ab]"]
)
def test_non_range_brackets_are_returned_unchanged(text: str) -> None:
    assert expand(text) == [text]


@pytest.mark.parametrize("text", ["web[10-2]", "web[3-1]", "web[1-3,9-8]"])
def test_backwards_range_is_an_error(text: str) -> None:
    with pytest.raises(RangeError, match="backwards"):
        expand(text)


@pytest.mark.parametrize(
    "text",
    [
        "web[1-9999999]",
        f"web[0-{MAX_EXPANSION}]",
        "a[1-1000]b[1-1000]",  # each group is small, the product is not
    ],
)
def test_huge_range_is_an_error(text: str) -> None:
    with pytest.raises(RangeError, match="more than"):
        expand(text)


def test_range_limit_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranges, "MAX_EXPANSION", 100)
    assert len(expand("h[1-100]")) == 100
    assert len(expand("h[1-10]x[1-10]")) == 100
    with pytest.raises(RangeError):
        expand("h[0-100]")
    with pytest.raises(RangeError):
        expand("h[1-10]x[0-10]")


@pytest.mark.parametrize("text", ["web[1-3", "web1-3]", "web]1["])
def test_unbalanced_bracket_is_an_error(text: str) -> None:
    with pytest.raises(RangeError):
        expand(text)


def test_range_error_is_a_value_error() -> None:
    assert issubclass(RangeError, ValueError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web[1-3]", True),
        ("web[02-10]", True),
        ("web[1-3,7]", True),
        ("web[7]", True),
        ("rack[1-2]-n[01-04]", True),
        ("web1", False),
        ("web*", False),
        ("web[abc]", False),
        ("web[1-3]x[ab]", False),
        ("web[1-3", False),
        ("web[[1-3]]", False),
        ("web[]", False),
        ("web[1-]", False),
        ("", False),
    ],
)
def test_is_range(text: str, expected: bool) -> None:
    assert is_range(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a,b,c", ["a", "b", "c"]),
        ("web[1-3,7],db1", ["web[1-3,7]", "db1"]),
        (" web1 , web[02-10] ", ["web1", "web[02-10]"]),
        ("a,,b,", ["a", "b"]),
        ("", []),
        ("   ", []),
        ("single", ["single"]),
        ("r[1-2]-n[01,03],x[5,6]", ["r[1-2]-n[01,03]", "x[5,6]"]),
    ],
)
def test_split_list_splits_at_top_level_commas_only(text: str, expected: list[str]) -> None:
    assert split_list(text) == expected
