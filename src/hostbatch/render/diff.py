"""``--diff``: the configuration-drift view.

Groups exactly as ``-b`` does, then prints the most common output of the hosts that ran (the
reference) in full under its header, and every other group as a unified diff against it::

    ---- web[01-02],db01 (3) ----
    ...reference output...
    ---- web03 (1) ----
    --- web[01-02],db01
    +++ web03
    @@ -1,3 +1,3 @@
    ...

A group with the reference's output but another ending (exit status, failure) says
``(same output as the reference)``; a host that failed before producing output shows only its
header. Only the reference and one other group are in memory at a time.
"""

from __future__ import annotations

import difflib
import re

from hostbatch.nodeset import fold_text
from hostbatch.render.gather import GroupedRenderer, header, write_text
from hostbatch.render.output import SafeStream
from hostbatch.render.spool import OutputCollector, OutputGroup

_GREEN, _RED, _CYAN, _RESET = b"\x1b[32m", b"\x1b[31m", b"\x1b[36m", b"\x1b[0m"
SAME = b"(same output as the reference)\n"
#: Lines of context around each change, as diff -u.
CONTEXT = 3
#: Outputs larger than this are not diffed (difflib holds both in memory as lists of lines).
DIFF_MAX_BYTES = 16 * 1024 * 1024
_HUNK = re.compile(rb"([-+])(\d+)")


def _paint(line: bytes) -> bytes:
    """Colour one diff line the way ``git diff`` does."""
    if line.startswith((b"+++", b"---")):
        return line
    for mark, code in ((b"+", _GREEN), (b"-", _RED), (b"@@", _CYAN)):
        if line.startswith(mark):
            return code + line.rstrip(b"\n") + _RESET + b"\n"
    return line


def _common_affixes(a: list[bytes], b: list[bytes]) -> tuple[int, int]:
    """Lengths of the common leading and trailing runs of lines (not overlapping)."""
    limit = min(len(a), len(b))
    head = 0
    while head < limit and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < limit - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    return head, tail


def _shift_hunk(line: bytes, offset: int) -> bytes:
    """``@@ -A,B +C,D @@`` with both start lines moved down by ``offset``."""
    return _HUNK.sub(lambda m: b"%s%d" % (m.group(1), int(m.group(2)) + offset), line)


def unified(reference: bytes, other: bytes, from_name: str, to_name: str) -> list[bytes]:
    """The unified diff from ``reference`` to ``other``, as lines each ending in a newline.

    Configuration drift is mostly identical text: difflib's matcher is given only the part
    between the common leading and trailing lines (plus context), which keeps a one-line change
    in a long output cheap; the hunk headers are shifted back to the full line numbers.
    """
    a, b = reference.splitlines(keepends=True), other.splitlines(keepends=True)
    head, tail = _common_affixes(a, b)
    start = max(0, head - CONTEXT)
    stop = max(0, tail - CONTEXT)
    lines = list(difflib.diff_bytes(difflib.unified_diff, a[start:len(a) - stop],
                                    b[start:len(b) - stop], from_name.encode(),
                                    to_name.encode(), lineterm=b"\n", n=CONTEXT))
    lines[2:] = [_shift_hunk(line, start) if line.startswith(b"@@ ") else line
                 for line in lines[2:]]
    # A last line without a newline would run into the next diff line.
    return [line if line.endswith(b"\n") else line + b"\n" for line in lines]


class DiffRenderer(GroupedRenderer):
    """Reference output in full, then a unified diff per other group."""

    def report(self, collector: OutputCollector, stream: SafeStream, *, label: str,
               color: bool) -> None:
        """Write the reference group, then each other group as a diff against it."""
        groups = collector.groups()
        if not groups or not groups[0].ran:
            super().report(collector, stream, label=label, color=color)
            return
        reference_group = groups[0]
        reference = (collector.content(reference_group)
                     if reference_group.size <= DIFF_MAX_BYTES else b"")
        reference_name = fold_text(reference_group.sorted_hosts)
        stream.write(header(reference_group, label=label, color=color))
        write_text(stream, collector.chunks(reference_group))
        for group in groups[1:]:
            stream.write(header(group, label=label, color=color))
            if max(reference_group.size, group.size) > DIFF_MAX_BYTES:
                stream.write(b"(too large to diff: %d bytes against the reference's %d; "
                             b"write the outputs with -o DIR and diff the files)\n"
                             % (group.size, reference_group.size))
            else:
                self._write_diff(collector, group, reference, reference_name, stream, color)

    @staticmethod
    def _write_diff(collector: OutputCollector, group: OutputGroup, reference: bytes,
                    reference_name: str, stream: SafeStream, color: bool) -> None:
        if not group.ran and group.size == 0:
            return
        other = collector.content(group)
        if other == reference:
            stream.write(SAME)
            return
        for line in unified(reference, other, reference_name, fold_text(group.sorted_hosts)):
            text = line.decode("utf-8", "replace").encode()
            stream.write(_paint(text) if color else text)
