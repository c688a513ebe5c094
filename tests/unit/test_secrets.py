"""hostbatch.secrets.Secret: never printed, but pickled intact for the workers."""

from __future__ import annotations

import copy
import json
import logging
import pickle

import pytest

from hostbatch.inventory.model import HostSpec
from hostbatch.secrets import Secret

VALUE = "s3cret%#;x"


def test_reveal_returns_the_value() -> None:
    assert Secret(VALUE).reveal() == VALUE


@pytest.mark.parametrize(
    "render",
    [
        repr,
        str,
        format,
        ascii,
        lambda s: f"{s}",
        lambda s: f"{s!r}",
        lambda s: f"{s!s}",
        lambda s: f"{s:>40}",
        lambda s: f"{s=}",
        # the old formatting styles on purpose: each has its own code path
        lambda s: "%s" % s,  # noqa: UP031
        lambda s: "%r" % s,  # noqa: UP031
        lambda s: "{}".format(s),  # noqa: UP032
        lambda s: "{0!r}".format(s),  # noqa: UP030, UP032
        lambda s: str([s, {"password": s}]),
        lambda s: json.dumps(str(s)),
        lambda s: repr(HostSpec("h", "h", password=s)),
        lambda s: str(HostSpec("h", "h", password=s)),
    ],
)
def test_never_revealed_when_printed(render: object) -> None:
    text = render(Secret(VALUE))  # type: ignore[operator]
    assert VALUE not in text
    assert "s3cret" not in text
    assert "***" in text


def test_not_in_log_records(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("hostbatch.test").info("password is %s / %r", Secret(VALUE),
                                                 Secret(VALUE))
    assert VALUE not in caplog.text


def test_not_in_exception_text() -> None:
    secret = Secret(VALUE)
    try:
        raise ValueError(f"login failed with {secret}", secret)
    except ValueError as exc:
        assert VALUE not in str(exc) and VALUE not in repr(exc)


def test_no_instance_dict_to_leak_through() -> None:
    secret = Secret(VALUE)
    assert not hasattr(secret, "__dict__")
    assert VALUE not in str(vars(type(secret)))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip(protocol: int) -> None:
    restored = pickle.loads(pickle.dumps(Secret(VALUE), protocol=protocol))
    assert isinstance(restored, Secret)
    assert restored.reveal() == VALUE
    assert restored == Secret(VALUE)


def test_host_spec_with_secret_pickles() -> None:
    spec = HostSpec("web1", "127.100.0.1", password=Secret(VALUE))
    restored = pickle.loads(pickle.dumps(spec))
    assert restored == spec
    assert restored.password is not None and restored.password.reveal() == VALUE


def test_copy_keeps_the_value() -> None:
    assert copy.deepcopy(Secret(VALUE)).reveal() == VALUE
    assert copy.copy(Secret(VALUE)).reveal() == VALUE


def test_equality_and_hash() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert hash(Secret("a")) == hash(Secret("a"))
    assert len({Secret("a"), Secret("a"), Secret("b")}) == 2


def test_redact_masks_every_secret_made_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from hostbatch import secrets
    from hostbatch.secrets import Secret, redact, redact_bytes

    monkeypatch.setattr(secrets, "_known_values", set())  # other tests made secrets too
    Secret("s3cr3t-pw")
    Secret("s3cr3t-pw-longer")
    assert redact("a s3cr3t-pw-longer b s3cr3t-pw c") == "a *** b *** c"
    assert redact_bytes(b"x=s3cr3t-pw\n") == b"x=***\n"
    assert redact("nothing here") == "nothing here"



def test_masker_masks_longest_first_and_leaves_other_text() -> None:
    from hostbatch.secrets import Masker

    mask = Masker(["pw", "pw-long", ""])
    assert mask.bytes(b"a pw-long b pw c") == b"a *** b *** c"
    assert mask.text("pw-long") == "***"
    assert Masker([]).bytes(b"pw") == b"pw"
