"""Local source files read once per run, shared by every host's writer.

A put to many hosts sends the same bytes many times. Each worker process maps a source file
once (``mmap``: the pages come from the page cache, shared with the other workers and never
copied per host) and every host thread of that process sends slices of the same mapping;
the SHA-256 that ``--verify`` and ``--checksum`` compare is computed once, by the parent,
while it scans the tree. Small files are simply read: mapping costs more than it saves.
"""

from __future__ import annotations

import mmap
import os
import threading

#: Files at least this big are mapped and shared; smaller ones are read per host.
SHARE_AT = 1024 * 1024

_lock = threading.Lock()
_maps: dict[str, tuple[int, mmap.mmap]] = {}


class SourceChanged(OSError):
    """A source file's size changed between the parent's scan and the send."""


def source_bytes(path: str, size: int) -> memoryview | bytes:
    """The content of the local file ``path``, which the scan found ``size`` bytes long.

    Raises :class:`OSError` (``filename`` set) when it cannot be read, and
    :class:`SourceChanged` when it no longer has that size: what was scanned (its checksum
    included) must be what is sent.
    """
    if size < SHARE_AT:
        with open(path, "rb") as handle:
            data = handle.read()
        if len(data) != size:
            raise SourceChanged(0, f"changed while being copied ({size} -> {len(data)} "
                                "bytes)", path)
        return data
    with _lock:
        known = _maps.get(path)
        if known is None or known[0] != size:
            with open(path, "rb") as handle:
                actual = os.fstat(handle.fileno()).st_size
                if actual != size:
                    raise SourceChanged(0, f"changed while being copied ({size} -> {actual} "
                                        "bytes)", path)
                mapped = mmap.mmap(handle.fileno(), size, prot=mmap.PROT_READ)
            known = _maps[path] = (size, mapped)
    return memoryview(known[1])
