"""A wrapper that keeps passwords out of reprs, logs, tracebacks and JSON.

Every :class:`Secret` made in this process also registers its value, so text that may have
picked one up by other routes (a command line, a remote program echoing it, an exception
message) can be scrubbed with :func:`redact` before it is printed or stored.
"""

from __future__ import annotations

from collections.abc import Iterable

#: What a secret is replaced with wherever it is shown.
MASK = "***"
_known_values: set[str] = set()


class Secret:
    """Holds a secret string; every way of printing it shows ``***``.

    Only the SSH layer calls :meth:`reveal`, at the moment the value goes on the wire.
    Pickling keeps the value (workers need it), which is safe because only the parent and
    its own worker processes ever exchange pickles, over private pipes.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if value:
            _known_values.add(value)

    def reveal(self) -> str:
        """Return the secret itself; for the SSH layer only."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))


def known_secrets() -> tuple[Secret, ...]:
    """Every secret value made in this process, each as a :class:`Secret`.

    The parent hands them to its workers, so each worker masks all of the run's secrets, not
    only those of the hosts it happened to run.
    """
    return tuple(Secret(value) for value in sorted(_known_values))


class Masker:
    """Replaces a fixed set of secret values with ``***``; built once, used per output block.

    Longer values are replaced first, so a secret that contains another is masked whole.
    """

    __slots__ = ("_encoded", "_values")

    def __init__(self, values: Iterable[str]) -> None:
        self._values = sorted({value for value in values if value}, key=len, reverse=True)
        self._encoded = [value.encode() for value in self._values]

    def text(self, text: str) -> str:
        """``text`` with every value masked."""
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def bytes(self, data: bytes) -> bytes:
        """Raw output with every value masked (matched by its UTF-8 encoding)."""
        for encoded in self._encoded:
            if encoded in data:
                data = data.replace(encoded, _MASK_BYTES)
        return data


_MASK_BYTES = MASK.encode()
_everything: tuple[int, Masker] = (0, Masker(()))


def _process_masker() -> Masker:
    global _everything
    if _everything[0] != len(_known_values):
        _everything = (len(_known_values), Masker(_known_values))
    return _everything[1]


def redact(text: str) -> str:
    """``text`` with the value of every :class:`Secret` made in this process replaced by ``***``.

    Longer values are replaced first, so a secret that contains another is masked whole.
    """
    return _process_masker().text(text)


def redact_bytes(data: bytes) -> bytes:
    """:func:`redact` for raw output: each secret is matched by its UTF-8 encoding."""
    return _process_masker().bytes(data)
