"""``-b/--gather``: once every host is done, each distinct output once, under its hosts.

Hosts are grouped by the exact bytes of their stdout and by how they ended (a host with the
same output but another exit status is a group of its own, with the status in the header), so
a glance shows which hosts agree. The header folds the host list into ranges::

    ---- web[01-40],db[1-3] (43) ----
    ---- web07 (1) exit status 2 ----
    ---- down[1-2] (2) connect: connection refused by <host> port 22 ----

Hosts that ran come first, then hosts that failed (grouped by reason); within each part the
largest group first. stderr streams as ``HOST: LINE`` while the run goes on, unless
``--gather-stderr`` gathers it too (printed on stderr after the stdout groups, headers marked
``stderr``, hosts without stderr left out).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Mapping

from hostbatch.engine.events import Event, HostExited, HostFailed, OutputLines
from hostbatch.nodeset import fold_text
from hostbatch.render.lines import LineRenderer
from hostbatch.render.output import SafeStream
from hostbatch.render.spool import OutputCollector, OutputGroup

_CYAN, _RED, _RESET = b"\x1b[36m", b"\x1b[31m", b"\x1b[0m"


class StderrLines(LineRenderer):
    """Streams only stderr lines as ``HOST: LINE`` (stdout is being gathered)."""

    def handle(self, event: Event) -> None:
        """Write stderr lines; everything else is the gathering renderer's business."""
        if isinstance(event, OutputLines) and event.stream == "stderr":
            super().handle(event)


def header(group: OutputGroup, *, label: str = "", color: bool = False) -> bytes:
    """``---- HOSTS (N) [ENDING] [LABEL]----``, painted red for a group that did not succeed."""
    words = [fold_text(group.sorted_hosts), f"({len(group.hosts)})"]
    words += [w for w in (group.ending, label) if w]
    line = f"---- {' '.join(words)} ----".encode()
    if color:
        line = (_CYAN if not group.ending else _RED) + line + _RESET
    return line + b"\n"


def write_text(stream: SafeStream, chunks: Iterable[bytes]) -> None:
    """Write output chunks as UTF-8, invalid bytes as U+FFFD. The decoder is incremental, so a
    character split between two chunks is not replaced. Output that ends without a newline
    gets one on screen, so the next header starts on a line of its own."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    last = b"\n"
    for chunk in chunks:
        if chunk:
            last = chunk[-1:]
        stream.write(decoder.decode(chunk).encode())
    stream.write(decoder.decode(b"", final=True).encode())
    if last != b"\n":
        stream.write(b"\n")


class GroupedRenderer:
    """Collects stdout (and stderr with ``gather_stderr``) of every host; prints at close."""

    def __init__(self, stdout: SafeStream, stderr: SafeStream, *, gather_stderr: bool,
                 color_stdout: bool, color_stderr: bool,
                 addresses: Mapping[str, str] | None = None) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.color_stdout = color_stdout
        self.color_stderr = color_stderr
        self.out = OutputCollector(addresses)
        self.err = OutputCollector(addresses, by_ending=False) if gather_stderr else None
        self._stderr_lines = None if gather_stderr else StderrLines(
            stdout, stderr, color_stdout=color_stdout, color_stderr=color_stderr)

    def handle(self, event: Event) -> None:
        """Collect output; file each host under its group when it ends."""
        if isinstance(event, OutputLines):
            if event.stream == "stdout":
                self.out.add(event.host, event.exact_data)
            elif self.err is not None:
                self.err.add(event.host, event.exact_data)
            elif self._stderr_lines is not None:
                self._stderr_lines.handle(event)
        elif isinstance(event, HostExited | HostFailed):
            self.out.finish(event)
            if self.err is not None and self.err.has_output(event.host):
                self.err.finish(event)

    def report(self, collector: OutputCollector, stream: SafeStream, *, label: str,
               color: bool) -> None:
        """Write every group of ``collector``: header, then its output."""
        for group in collector.groups():
            stream.write(header(group, label=label, color=color))
            write_text(stream, collector.chunks(group))

    def close(self) -> None:
        """Print the groups (stdout's on stdout, stderr's on stderr), then free the spools."""
        try:
            self.report(self.out, self.stdout, label="", color=self.color_stdout)
            self.stdout.flush()
            if self.err is not None:
                self.report(self.err, self.stderr, label="stderr", color=self.color_stderr)
                self.stderr.flush()
        finally:
            self.out.close()
            if self.err is not None:
                self.err.close()
