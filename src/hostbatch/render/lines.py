"""The default output: every line as ``HOST: LINE``, stdout to stdout and stderr to stderr."""

from __future__ import annotations

from hostbatch.engine.events import Event, HostFailed, OutputLines
from hostbatch.render.output import SafeStream

_CYAN, _YELLOW, _RED, _RESET = b"\x1b[36m", b"\x1b[33m", b"\x1b[31m", b"\x1b[0m"


def _as_utf8(lines: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """The lines themselves when valid UTF-8 (the common, fast case), else with U+FFFD."""
    try:
        b"\n".join(lines).decode("utf-8")
        return lines
    except UnicodeDecodeError:
        return tuple(line.decode("utf-8", "replace").encode("utf-8") for line in lines)


class LineRenderer:
    """Streams lines the moment they are complete, prefixed with the host name."""

    def __init__(self, stdout: SafeStream, stderr: SafeStream, *, color_stdout: bool,
                 color_stderr: bool) -> None:
        self.stdout = stdout
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
            target.write(b"".join(prefix + line + b"\n" for line in _as_utf8(event.lines)))
            target.flush()
        elif isinstance(event, HostFailed):
            text = f"hostbatch: {event.host}: {event.kind.value}: {event.message}\n".encode()
            self.stderr.write(_RED + text[:-1] + _RESET + b"\n" if self.color_stderr else text)
            self.stderr.flush()

    def close(self) -> None:
        """Flush both streams."""
        self.stdout.flush()
        self.stderr.flush()
