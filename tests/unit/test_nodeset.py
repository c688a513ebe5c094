"""hostbatch.nodeset: folding host names into ranges, and the round trip through ranges."""

from __future__ import annotations

import random

import pytest

from hostbatch.inventory.ranges import expand, split_list
from hostbatch.nodeset import fold, fold_text, natural_key


def unfold(text: str) -> list[str]:
    """What our own range expansion makes of a folded text."""
    return [name for item in split_list(text) for name in expand(item)]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([], ""),
        (["db1"], "db1"),
        (["web01", "web02", "web03"], "web[01-03]"),
        (["web01", "web02", "web03", "web07"], "web[01-03,07]"),
        (["web1", "web2", "web3", "web7"], "web[1-3,7]"),
        (["web8", "web9", "web10", "web11"], "web[8-11]"),
        (["web09", "web10", "web11"], "web[09-11]"),
        (["web1", "web01"], "web1,web01"),
        (["web1", "web2", "web01", "web02"], "web[1-2],web[01-02]"),
        (["web001", "web1", "web01"], "web1,web01,web001"),
        (["n01-x", "n02-x", "n03-y"], "n[01-02]-x,n03-y"),
        (["rack1-n01", "rack1-n02", "rack2-n01"], "rack1-n[01-02],rack2-n01"),
        (["alpha", "beta", "web1"], "alpha,beta,web1"),
        (["web10", "web2", "web1"], "web[1-2,10]"),
        (["web1", "web1", "web2"], "web[1-2]"),
        (["db1", "db2", "db3", "web01", "web40"], "db[1-3],web[01,40]"),
        (["h0", "h1", "h2"], "h[0-2]"),
        (["h00", "h01"], "h[00-01]"),
        (["127.100.0.1", "127.100.0.2", "127.100.0.9"], "127.100.0.[1-2,9]"),
        (["a.example.com", "b1.example.com", "b2.example.com"],
         "a.example.com,b[1-2].example.com"),
        (["odd[1]", "odd,2"], "odd,2,odd[1]"),
    ],
)
def test_fold(names: list[str], expected: str) -> None:
    assert fold_text(names) == expected
    if "[" not in "".join(names) and "," not in "".join(names):
        assert sorted(unfold(expected)) == sorted(set(names))


def test_fold_ignores_input_order() -> None:
    names = [f"web{n:02d}" for n in range(1, 41)] + ["db1", "db2", "db3", "mail"]
    shuffled = names[:]
    random.Random(7).shuffle(shuffled)
    assert fold(shuffled) == fold(names) == ["db[1-3]", "mail", "web[01-40]"]


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["web10", "web2", "web1", "db3", "web01"]
    assert sorted(names, key=natural_key) == ["db3", "web1", "web01", "web2", "web10"]


def _random_name(rng: random.Random) -> str:
    prefix = rng.choice(["web", "db", "n", "rack1-n", "x.y", "", "a-"])
    suffix = rng.choice(["", "", "", ".lan", "-b", "x"])
    value = rng.randrange(0, 130)
    style = rng.randrange(3)
    number = (str(value) if style == 0 else f"{value:02d}" if style == 1 else f"{value:03d}")
    if rng.random() < 0.05:
        return rng.choice(["alpha", "beta", "gamma-x", "mail.lan"])
    return f"{prefix}{number}{suffix}" if prefix or suffix else f"h{number}"


@pytest.mark.parametrize("seed", range(300))
def test_round_trip_over_random_name_sets(seed: int) -> None:
    rng = random.Random(seed)
    names = [_random_name(rng) for _ in range(rng.randrange(1, 60))]
    folded = fold_text(names)
    expanded = unfold(folded)
    assert sorted(expanded) == sorted(set(names)), folded
    assert len(expanded) == len(set(expanded)), folded  # each name exactly once
    assert fold_text(expanded) == folded  # folding is stable
