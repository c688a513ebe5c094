"""The ``--sync`` listing of a tree (``find -printf``) parsed in one pass: kinds, sizes,
mtimes, modes, link targets and names that are not UTF-8, kept as their own bytes."""

from __future__ import annotations

import os

from hostbatch.ssh.sync import Stat, parse_listing


def test_parse_listing_reads_every_field_and_keeps_odd_names() -> None:
    output = (b"d 4096 1700000000.5000000000 755\0\0\0"
              b"f 12 1700000001.2500000000 640\0sub/a b\0\0"
              b"l 6 1700000002.0000000000 777\0link\0target\xff\0"
              b"f 0 1700000003.0000000000 600\0bad\xfe\nname\0\0"
              b"p 0 1700000004.0000000000 644\0fifo\0\0")
    listing = parse_listing(output)
    assert listing[""] == Stat("dir", 4096, 1700000000.5, 0o755, "")
    assert listing["sub/a b"] == Stat("file", 12, 1700000001.25, 0o640, "")
    assert listing["link"] == Stat("link", 6, 1700000002.0, 0o777,
                                   os.fsdecode(b"target\xff"))
    assert os.fsencode(next(k for k in listing if k.startswith("bad"))) == b"bad\xfe\nname"
    assert listing["fifo"].kind == "other"
    assert len(listing) == 5


def test_parse_listing_of_nothing_is_empty() -> None:
    assert parse_listing(b"") == {}
