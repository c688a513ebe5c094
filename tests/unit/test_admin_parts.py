"""Pure parts of --sudo, --env, --script and --confirm-over: sudo's stderr conversation,
inventory keys and the confirmation prompt (no network; the command text is in test_shell)."""

from __future__ import annotations

import io

import pytest

from hostbatch.actions import PutFiles, RunCommand
from hostbatch.cli.confirm import confirm
from hostbatch.cli.environment import Environment
from hostbatch.errors import InventoryError, UsageError
from hostbatch.inventory.loader import load_inventory
from hostbatch.secrets import Secret
from hostbatch.ssh.shell import SudoMarkers
from hostbatch.ssh.sudo import SudoAuth, SudoWatch

from .conftest import WriteInventory

MARKERS = SudoMarkers.from_nonce("0123abcd")
PROMPT = MARKERS.prompt.encode()
GO = MARKERS.go.encode() + b"\n"


# ------------------------------------------------------------------ sudo's conversation


def feed_all(watch: SudoWatch, chunks: list[bytes]) -> tuple[bytes, int]:
    out, sends = b"", 0
    for chunk in chunks:
        data, send = watch.feed(chunk)
        out += data
        sends += send
    return out, sends


@pytest.mark.parametrize(("chunks", "has_password", "out", "sends", "started", "failure"), [
    # asked once, answered once, the command's stderr follows
    ([PROMPT, GO + b"err\n"], True, b"err\n", 1, True, None),
    # the prompt split across reads
    ([PROMPT[:5], PROMPT[5:], GO[:3], GO[3:] + b"x"], True, b"x", 1, True, None),
    # NOPASSWD: never asked, nothing sent
    ([GO + b"e\n"], True, b"e\n", 0, True, None),
    ([GO], False, b"", 0, True, None),
    # wrong password: asked again
    ([PROMPT, b"Sorry, try again.\n" + PROMPT], True, b"", 1, False,
     "sudo: incorrect password"),
    # asked with no password to give
    ([PROMPT], False, b"", 0, False, "sudo asked for a password and none is set"),
])
def test_sudo_watch(chunks: list[bytes], has_password: bool, out: bytes, sends: int,
                    started: bool, failure: str | None) -> None:
    watch = SudoWatch(MARKERS, has_password=has_password)
    assert feed_all(watch, chunks) == (out, sends)
    assert watch.started is started
    if failure is None:
        assert watch.failure is None
    else:
        assert watch.failure is not None and watch.failure.startswith(failure)


def test_sudo_refusal_is_sudos_last_line_without_the_prompt() -> None:
    watch = SudoWatch(MARKERS, has_password=True)
    watch.feed(PROMPT)
    watch.feed(b"hbtest is not in the sudoers file.\n")
    assert watch.refusal() == "sudo: hbtest is not in the sudoers file."
    watch = SudoWatch(MARKERS, has_password=True)
    watch.feed(b"sudo: a password is required\n")
    assert watch.refusal() == "sudo: a password is required"


def test_sudo_answer_and_secret() -> None:
    auth = SudoAuth(MARKERS, Secret("pw x"))
    assert auth.answer() == b"pw x\n"
    assert "pw x" not in repr(auth)


# ------------------------------------------------------------------ inventory keys


def test_sudo_password_keys(write_inventory: WriteInventory) -> None:
    path = write_inventory("""
        [defaults]
        sudo_password_env = HB_PW
        confirm_over = 5

        [host:a]
        sudo_password = literal %#;

        [host:b]
        """)
    inventory = load_inventory(path, environ={"HB_PW": "from-env"})
    assert inventory.confirm_over == 5
    a, b = inventory.hosts["a"].sudo_password, inventory.hosts["b"].sudo_password
    assert a is not None and a.reveal() == "literal %#;"
    assert b is not None and b.reveal() == "from-env"


@pytest.mark.parametrize(("text", "message"), [
    ("[defaults]\nsudo_password_env = HB_MISSING\n", "environment variable HB_MISSING is not set"),
    ("[host:a]\nconfirm_over = 3\n", "unknown key"),
    ("[defaults]\nconfirm_over = -1\n", "must not be negative"),
    ("[defaults]\nconfirm_over = many\n", "not a whole number"),
    ("[host:a]\nsudo_password = x\nsudo_password_env = Y\n", "not both"),
])
def test_sudo_and_confirm_key_errors(write_inventory: WriteInventory, text: str,
                                     message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        load_inventory(write_inventory(text), environ={})


# ------------------------------------------------------------------ confirmation


def env_with(answer: bytes, *, tty: bool) -> Environment:
    return Environment(stdin=io.BytesIO(answer), stdout=io.BytesIO(), stderr=io.BytesIO(),
                       environ={}, stdout_isatty=False, stderr_isatty=tty, stdin_isatty=tty)


def shown(env: Environment) -> str:
    assert isinstance(env.stderr, io.BytesIO)
    return env.stderr.getvalue().decode()


def test_confirm_not_needed() -> None:
    env = env_with(b"", tty=False)
    confirm(3, RunCommand("x"), None, env)
    confirm(3, RunCommand("x"), 3, env)
    assert shown(env) == ""


def test_confirm_refuses_without_terminal() -> None:
    env = env_with(b"y\n", tty=False)
    with pytest.raises(UsageError, match="without a terminal"):
        confirm(4, RunCommand("x"), 3, env)
    assert shown(env) == ""


@pytest.mark.parametrize(("answer", "ok"), [(b"y\n", True), (b"YES\n", True), (b"n\n", False),
                                            (b"", False), (b"yep\n", False)])
def test_confirm_asks_once(answer: bytes, ok: bool) -> None:
    env = env_with(answer, tty=True)
    action = RunCommand("systemctl restart nginx", sudo=True)
    if ok:
        confirm(10, action, 2, env)
    else:
        with pytest.raises(UsageError, match="not confirmed"):
            confirm(10, action, 2, env)
    text = shown(env)
    assert text.count("Continue? [y/N]") == 1
    assert "10 hosts" in text and "sudo systemctl restart nginx" in text


def test_confirm_describes_copies() -> None:
    env = env_with(b"y\n", tty=True)
    confirm(2, PutFiles("app.tar", "/srv/", ()), 1, env)
    assert "put app.tar -> /srv/" in shown(env)


