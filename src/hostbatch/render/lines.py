"""The default output: every line as ``HOST: LINE``, stdout to stdout and stderr to stderr."""

from __future__ import annotations

from hostbatch.engine.events import (
    Event,
    FileTransferred,
    HostFailed,
    OutputLines,
    TransferDone,
    TransferPlanned,
)
from hostbatch.render.output import SafeStream, shorten

_CYAN, _YELLOW, _RED, _RESET = b"\x1b[36m", b"\x1b[33m", b"\x1b[31m", b"\x1b[0m"


def modes_changed(count: int, *, dry_run: bool = False) -> str:
    """The part of a ``sync:`` line that counts files whose mode alone changed in place
    (``1 mode changed, ``), empty when there were none, so that the usual line stays short."""
    if not count:
        return ""
    return f"{count} mode{'s' if count != 1 else ''} {'to change' if dry_run else 'changed'}, "


def format_size(size: float) -> str:
    """Bytes in binary units, as ``ls -h`` does: ``512 B``, ``1.5 KiB``, ``64.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def format_rate(size: int, seconds: float) -> str:
    """A transfer rate such as ``112.3 MiB/s``."""
    return f"{format_size(size / max(seconds, 1e-6))}/s"


def _as_utf8(data: bytes) -> bytes:
    """``data`` itself when valid UTF-8 (the common, fast case), else with U+FFFD."""
    if data.isascii():  # a vectorised scan, several times faster than a trial decode
        return data
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace").encode("utf-8")


def prefix_lines(prefix: bytes, data: bytes) -> bytes:
    """Put ``prefix`` before every line of ``data`` (complete lines, each ending in a newline)."""
    return prefix + data[:-1].replace(b"\n", b"\n" + prefix) + b"\n"


def failure_line(event: HostFailed, width: int | None, *, color: bool) -> bytes:
    """``hostbatch: HOST: KIND: MESSAGE`` on one line, cut to ``width`` columns, so a long
    message never wraps a host's line in two."""
    message = " ".join(event.message.splitlines())
    text = shorten(f"hostbatch: {event.host}: {event.kind.value}: {message}", width).encode()
    return (_RED + text + _RESET if color else text) + b"\n"


class LineRenderer:
    """Streams lines the moment they are complete, prefixed with the host name."""

    def __init__(self, stdout: SafeStream, stderr: SafeStream, *, color_stdout: bool,
                 color_stderr: bool, width: int | None = None) -> None:
        self.stdout = stdout
        #: A host's failure line is cut to this many columns (``None``: never cut).
        self.width = width
        self.stderr = stderr
        self.color_stdout = color_stdout
        self.color_stderr = color_stderr
        self._prefixes: dict[tuple[str, str], bytes] = {}

    def _prefix(self, host: str, stream: str) -> bytes:
        key = (host, stream)
        prefix = self._prefixes.get(key)
        if prefix is None:
            name = host.encode()
            color = self.color_stdout if stream == "stdout" else self.color_stderr
            if color:
                name = (_CYAN if stream == "stdout" else _YELLOW) + name + _RESET
            prefix = self._prefixes[key] = name + b": "
        return prefix

    def handle(self, event: Event) -> None:
        """Write output lines; report host failures on stderr as they happen."""
        if isinstance(event, OutputLines):
            prefix = self._prefix(event.host, event.stream)
            target = self.stdout if event.stream == "stdout" else self.stderr
            target.write(prefix_lines(prefix, _as_utf8(event.data)))
            target.flush()
        elif isinstance(event, FileTransferred):
            line = (f"{event.direction} {event.source} -> {event.destination} "
                    f"({format_size(event.size)}, {format_rate(event.size, event.duration)})")
            self._copy_line(event.host, line)
        elif isinstance(event, TransferPlanned):
            self._copy_line(event.host, f"would {event.change} {event.path}")
        elif isinstance(event, TransferDone) and event.sync:
            verb = "would send" if event.dry_run else "sent"
            self._copy_line(event.host, f"sync: {event.files} {verb} "
                            f"({format_size(event.bytes)}), {event.unchanged} unchanged, "
                            f"{modes_changed(event.modes, dry_run=event.dry_run)}"
                            f"{event.deleted} {'to delete' if event.dry_run else 'deleted'}")
        elif isinstance(event, HostFailed):
            self.stderr.write(failure_line(event, self.width, color=self.color_stderr))
            self.stderr.flush()

    def _copy_line(self, host: str, line: str) -> None:
        """One line of a copy on stdout; names that are not UTF-8 go out as their own bytes
        (surrogate escapes undone), as ``ls`` would print them."""
        self.stdout.write(self._prefix(host, "stdout") + line.encode("utf-8", "surrogateescape")
                          + b"\n")
        self.stdout.flush()

    def close(self) -> None:
        """Flush both streams."""
        self.stdout.flush()
        self.stderr.flush()
