"""Properties of host ranges (``inventory/ranges.py``, Ansible's ``[a:b:step]``), node sets
(``nodeset.py``) and ``-h``/``-x`` patterns (``selection.py``): any text ends in names, or in
one short error; no expansion past 100,000 names is ever built."""

from __future__ import annotations

import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hostbatch.errors import HostbatchError
from hostbatch.inventory.ansible_ini import AnsibleSyntaxError, expand_range
from hostbatch.inventory.model import HostSpec, Inventory
from hostbatch.inventory.ranges import MAX_EXPANSION, RangeError, expand, is_range, split_list
from hostbatch.nodeset import fold, fold_text
from hostbatch.selection import Selection, select

from .properties import (
    check_message,
    fast,
    forget_secrets,  # noqa: F401  (autouse fixture)
    junk,
    time_limit,
)

_NUMBER = st.one_of(st.integers(0, 30).map(str), st.integers(0, 10**12).map(str),
                    st.integers(0, 999).map(lambda n: f"{n:03d}"),
                    st.integers(4400, 6000).map(lambda n: "9" * n))


@st.composite
def _range_body(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        low = draw(_NUMBER)
        parts.append(low if draw(st.booleans()) else f"{low}-{draw(_NUMBER)}")
    return ",".join(parts)


@st.composite
def range_texts(draw: st.DrawFn) -> str:
    """A name with bracket groups: mostly ranges, sometimes junk, sometimes many of them."""
    pieces = [draw(st.text(string.ascii_lowercase + "-.", max_size=4))]
    for _ in range(draw(st.integers(0, 6))):
        body = draw(_range_body() | junk(8))
        pieces.append(f"[{body}]" if draw(st.integers(0, 9)) else f"[{body}")
        pieces.append(draw(st.text(string.ascii_lowercase, max_size=3)))
    if draw(st.integers(0, 9)) == 0:
        pieces.append("[1-3]" * draw(st.integers(20, 3000)))
    return "".join(pieces)


@pytest.mark.parametrize("text", [
    "web[1-100000000]",
    "a[1-1000]b[1-1000]",
    "a[1-99999]" * 200,
    "x[0-9]" * 6,
    "web[1-" + "9" * 5000 + "]",
    "web[" + ",".join(str(n) for n in range(0, 200_002, 2)) + "]",
])
def test_huge_hostbatch_ranges_are_one_line_errors(text: str) -> None:
    with time_limit(5), pytest.raises(RangeError) as raised:
        expand(text)
    check_message(str(raised.value))
    assert str(MAX_EXPANSION) in str(raised.value) or "number" in str(raised.value)


@given(range_texts())
@example("web[1-100000000]")
@example("a[1-1000]b[1-1000]")
@example("a[1-99999]" * 200)
@example("web[1-" + "9" * 5000 + "]")
@example("[" + "0" * 3000 + "-1]")
@example("web[" + "x" * 2000 + "]")
@example("web[" + "1-2," * 700 + "3]")
@fast(300)
def test_hostbatch_range_expands_or_raises_a_short_error(text: str) -> None:
    with time_limit(5):
        try:
            names = expand(text)
        except RangeError as exc:
            check_message(str(exc))
            return
    assert 1 <= len(names) <= MAX_EXPANSION
    if is_range(text):
        assert all("[" not in name for name in names)


@st.composite
def ansible_patterns(draw: st.DrawFn) -> str:
    """Ansible host patterns: ``[begin:end]``, ``[begin:end:step]``, letters, junk."""
    bound = st.one_of(_NUMBER, st.sampled_from([*list("aczAZ"), "", "ab", "-1", "0x1"]))
    pieces = [draw(st.text(string.ascii_lowercase, max_size=3))]
    for _ in range(draw(st.integers(0, 5))):
        body = f"{draw(bound)}:{draw(bound)}"
        if draw(st.booleans()):
            body += f":{draw(st.one_of(st.integers(-2, 5).map(str), _NUMBER, junk(3)))}"
        pieces.append(f"[{body}]" if draw(st.integers(0, 9)) else draw(junk(6)))
        pieces.append(draw(st.text(string.ascii_lowercase, max_size=3)))
    if draw(st.integers(0, 9)) == 0:
        pieces.append("[0:0]" * draw(st.integers(100, 3000)))
    return "".join(pieces)


@given(ansible_patterns())
@example("web[1:100000000]")
@example("web[1:100000000:2]")
@example("web[1:400000:3]")
@example("a[1:1000]b[1:1000]")
@example("a[1:400]b[1:400]c[1:400]")
@example("a[0:0]" * 3000)
@example("a[a:Z]" * 4)
@example("web[1:" + "9" * 5000 + "]")
@example("web[" + "x" * 2000 + ":1]")
@fast(300)
def test_ansible_range_expands_or_raises_a_short_error(pattern: str) -> None:
    with time_limit(5):
        try:
            names = expand_range(pattern)
        except AnsibleSyntaxError as exc:
            check_message(str(exc))
            return
    assert len(names) <= MAX_EXPANSION  # [5:1] expands to nothing, as in Ansible


_HOST_NAME = st.builds(
    lambda prefix, number, suffix: f"{prefix}{number}{suffix}",
    st.sampled_from(["web", "db", "rack1-n", "a.b", "", "x_"]),
    st.one_of(st.integers(0, 120).map(str), st.integers(0, 120).map(lambda n: f"{n:03d}"),
              st.just("")),
    st.sampled_from(["", ".lan", "-a", "b"]),
).filter(bool)


@given(st.lists(_HOST_NAME, max_size=40))
@fast(300)
def test_folded_names_expand_back_to_the_same_names(names: list[str]) -> None:
    folded = fold(names)
    expanded = [name for item in split_list(",".join(folded)) for name in expand(item)]
    assert sorted(expanded) == sorted(set(names))
    assert fold_text(reversed(names)) == ",".join(folded)


def _inventory(count: int) -> Inventory:
    hosts = {f"web{n:02d}": HostSpec(f"web{n:02d}", f"10.0.0.{n}") for n in range(1, count + 1)}
    return Inventory(path="hosts.ini", hosts=hosts)


@given(st.lists(st.one_of(range_texts(), junk(30), st.sampled_from(["web*", "web[01-03]", "*"])),
                min_size=1, max_size=3),
       st.lists(st.one_of(range_texts(), junk(12)), max_size=2))
@example(["web[1-100000000]"], [])
@example(["web[01-02]"], ["web[1-100000000]"])
@example(["web" + "[1-9]" * 8], [])
@example(["w" + "*" * 2000 + "b"], [])
@fast(200)
def test_selection_patterns_select_or_raise_a_short_error(hosts: list[str],
                                                          exclude: list[str]) -> None:
    warnings: list[str] = []
    with time_limit(5):
        try:
            chosen = select(_inventory(12), Selection(hosts=hosts, exclude=exclude),
                            warn=warnings.append)
        except HostbatchError as exc:
            check_message(str(exc))
            return
        finally:
            for warning in warnings:
                check_message(warning)
    assert chosen
