"""Actions, jobs and events as versioned JSON: the format that crosses a machine boundary.

Worker processes of one run talk over a private pipe with pickle (fast, and both ends are
the same code). Anything that may reach another machine or another version of hostbatch (a
relay's stdin/stdout) uses this instead: one JSON object per message, never pickle, so a
peer of another version is detected by its ``"v"`` and refused with a clear error instead of
crashing or, worse, misreading the message.

Shape: ``{"v": 1, "type": "HostExited", "host": "web01", "exit_status": 0, ...}``; the fields
are the dataclass's own. Values that JSON lacks are tagged objects: ``{"$bytes": BASE64}``,
``{"$secret": VALUE}`` (only with ``secrets=True``: a password travels only inside an SSH
channel to a relay), nested dataclasses as ``{"type": NAME, ...}`` without ``"v"``, and enum
members by value (decoded from the field's declared type). Tuples travel as lists and come
back as tuples (every sequence field of these dataclasses is a tuple).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import typing
from typing import Any

from hostbatch import actions
from hostbatch.engine import events, jobs
from hostbatch.errors import HostbatchError
from hostbatch.inventory.model import HostSpec
from hostbatch.secrets import Secret

#: Bumped whenever a message's meaning changes; peers of another version are refused.
WIRE_VERSION = 1

_CLASSES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        *typing.get_args(actions.Action), actions.LocalEntry, actions.RunInput, actions.SyncOptions,
        *typing.get_args(events.Event), jobs.Job, HostSpec,
    )
}


_ENUM_FIELDS: dict[str, dict[str, type[enum.Enum]]] = {}


class WireError(HostbatchError, ValueError):
    """A message that is not valid JSON of this wire format, or of another version."""


def encode(obj: Any, *, secrets: bool = False) -> dict[str, Any]:
    """``obj`` (an action, job, event or host spec) as a JSON-ready dict with its version.

    A :class:`Secret` inside is written only with ``secrets=True``; otherwise encoding one
    is an error, so a password can never leak into a log through this function by accident.
    """
    encoded = _encode(obj, secrets)
    if not isinstance(encoded, dict) or "type" not in encoded:
        raise WireError(f"cannot send a {type(obj).__name__} on the wire")
    return {"v": WIRE_VERSION, **encoded}


def decode(message: dict[str, Any]) -> Any:
    """The object :func:`encode` made ``message`` from; :class:`WireError` if it is not one."""
    version = message.get("v") if isinstance(message, dict) else None
    if version != WIRE_VERSION:
        raise WireError(f"wire format version {version!r} is not {WIRE_VERSION}")
    body = {key: value for key, value in message.items() if key != "v"}
    try:
        return _decode_object(body)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WireError(f"malformed {body.get('type', 'message')!r}: {exc}") from None


def dumps(obj: Any, *, secrets: bool = False) -> bytes:
    """One message as a line of JSON (ASCII, ending in a newline)."""
    return json.dumps(encode(obj, secrets=secrets), separators=(",", ":")).encode() + b"\n"


def loads(line: bytes) -> Any:
    """The object in one line of :func:`dumps` output."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"not a JSON message: {exc}") from None
    return decode(message)


def encode_value(value: Any, *, secrets: bool = False) -> Any:
    """Any value this format carries (a dataclass, a tuple of them, bytes, a plain value) as
    JSON-ready data without the version: for messages that embed several objects (a relay's
    job), whose envelope carries the version once."""
    return _encode(value, secrets)


def decode_value(raw: Any) -> Any:
    """The value :func:`encode_value` made ``raw`` from; :class:`WireError` if malformed."""
    try:
        return _decode_value(raw)
    except WireError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WireError(f"malformed value: {exc}") from None


def _encode(value: Any, secrets: bool) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Secret):
        if not secrets:
            raise WireError("refusing to put a secret on the wire (secrets=False)")
        return {"$secret": value.reveal()}
    if isinstance(value, (tuple, list)):
        return [_encode(item, secrets) for item in value]
    if dataclasses.is_dataclass(value) and type(value).__name__ in _CLASSES:
        fields = {field.name: _encode(getattr(value, field.name), secrets)
                  for field in dataclasses.fields(value)}
        return {"type": type(value).__name__, **fields}
    raise WireError(f"cannot send a {type(value).__name__} on the wire")


def _decode_value(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_decode_value(item) for item in value)
    if isinstance(value, dict):
        if "$bytes" in value:
            return base64.b64decode(value["$bytes"], validate=True)
        if "$secret" in value:
            return Secret(str(value["$secret"]))
        return _decode_object(value)
    return value


def _decode_object(body: dict[str, Any]) -> Any:
    cls = _CLASSES.get(body.get("type", ""))
    if cls is None:
        raise WireError(f"unknown message type {body.get('type')!r}")
    hints = _enum_fields(cls)
    values = {}
    for name, raw in body.items():
        if name == "type":
            continue
        value = _decode_value(raw)
        values[name] = hints[name](value) if name in hints else value
    return cls(**values)


def _enum_fields(cls: type[Any]) -> dict[str, type[enum.Enum]]:
    """The fields of ``cls`` declared as an enum type, by name (computed once per class)."""
    found = _ENUM_FIELDS.get(cls.__name__)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = _ENUM_FIELDS[cls.__name__] = {
            name: hint for name, hint in hints.items()
            if isinstance(hint, type) and issubclass(hint, enum.Enum)}
    return found
