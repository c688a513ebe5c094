"""hostbatch.credentials, hostbatch.prepare.unlock_keys and hostbatch.ssh.keys: password sources,
prompts, key passphrases.

Commands and keys are real (a shell script, ``ssh-keygen``); only the terminal prompt is a
function that answers from a list, as the CLI's terminal prompt would.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hostbatch.credentials import resolve_passwords, run_password_cmd
from hostbatch.errors import InventoryError, UsageError
from hostbatch.inventory.model import HostSpec
from hostbatch.prepare import unlock_keys
from hostbatch.secrets import Secret, redact
from hostbatch.ssh import keys

from .conftest import Answers

PASSPHRASE = "Key pass;#% phrase"


def hosts(*specs: tuple[str, dict[str, object]]) -> list[HostSpec]:
    return [HostSpec(name=name, hostname=name, **options) for name, options in specs]  # type: ignore[arg-type]



# --------------------------------------------------------------------------- password_env


def test_password_env_reads_the_variable() -> None:
    specs = hosts(("a", {"password_env": "A_PW"}), ("b", {}))
    out = resolve_passwords(specs, {"A_PW": "from env %#"})
    assert out[0].password == Secret("from env %#") and out[0].password_env is None
    assert out[1] is specs[1]


@pytest.mark.parametrize("environ", [{}, {"A_PW": ""}])
def test_password_env_missing_or_empty_is_one_line_error(environ: dict[str, str]) -> None:
    with pytest.raises(InventoryError) as caught:
        resolve_passwords(hosts(("a", {"password_env": "A_PW"})), environ, inventory="inv.ini")
    message = str(caught.value)
    assert "\n" not in message
    assert "[host:a]" in message and "A_PW" in message and "inv.ini" in message


# --------------------------------------------------------------------------- password_cmd


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "secret-tool.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_password_cmd_runs_once_per_distinct_command(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    tool = _script(tmp_path, f'echo "$@" >> {log}\nprintf "pw-for-%s\\nsecond line\\n" "$1"\n')
    specs = hosts(("a", {"password_cmd": f"{tool} 'ops/web 1'"}),
                  ("b", {"password_cmd": f"{tool} 'ops/web 1'"}),
                  ("c", {"password_cmd": f"{tool} ops/db"}),
                  ("d", {"password": Secret("lit")}))
    out = resolve_passwords(specs, {})
    assert [s.password for s in out] == [Secret("pw-for-ops/web 1"), Secret("pw-for-ops/web 1"),
                                         Secret("pw-for-ops/db"), Secret("lit")]
    assert log.read_text().splitlines() == ["ops/web 1", "ops/db"]  # quoted word kept whole
    assert redact("<<pw-for-ops/db>>") == "<<***>>"


def test_password_cmd_is_not_run_through_a_shell(tmp_path: Path) -> None:
    tool = _script(tmp_path, 'printf "%s\\n" "$1"\n')
    out = resolve_passwords(hosts(("a", {"password_cmd": f"{tool} $HOME;ls"})), {})
    assert out[0].password == Secret("$HOME;ls")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('echo "leaked-out-1"\nexit 3\n', "exited with status 3"),
        ('printf "\\nleaked-out-2\\n"\n', "empty first line"),
        ("", "empty first line"),
    ],
)
def test_password_cmd_failures_never_echo_output(tmp_path: Path, body: str,
                                                 fragment: str) -> None:
    tool = _script(tmp_path, body)
    with pytest.raises(InventoryError) as caught:
        resolve_passwords(hosts(("web1", {"password_cmd": str(tool)})), {})
    message = str(caught.value)
    assert fragment in message and "[host:web1]" in message and "\n" not in message
    assert "leaked-out" not in message


def test_password_cmd_missing_program_and_timeout(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="not found"):
        resolve_passwords(hosts(("a", {"password_cmd": "/no/such/prog x"})), {})
    with pytest.raises(ValueError, match=r"did not finish within 0\.5s"):
        run_password_cmd(f"{shutil.which('sleep')} 30", timeout=0.5)


# --------------------------------------------------------------------------- --ask-pass


def test_ask_pass_asks_once_for_hosts_without_a_password() -> None:
    specs = hosts(("a", {}), ("b", {"identity_file": "/k"}), ("c", {"password": Secret("x")}),
                  ("d", {"password_env": "D"}))
    prompt = Answers("typed pw")
    out = resolve_passwords(specs, {"D": "dee"}, ask_pass=True, prompt=prompt)
    assert len(prompt.questions) == 1
    assert [s.password for s in out] == [Secret("typed pw"), Secret("typed pw"), Secret("x"),
                                         Secret("dee")]


def test_ask_pass_not_asked_when_every_host_has_a_password() -> None:
    prompt = Answers()
    resolve_passwords(hosts(("a", {"password": Secret("x")})), {}, ask_pass=True, prompt=prompt)
    assert prompt.questions == []


@pytest.mark.parametrize("prompt", [None, Answers(), Answers("")])
def test_ask_pass_without_terminal_or_answer_is_usage_error(prompt: Answers | None) -> None:
    with pytest.raises(UsageError):
        resolve_passwords(hosts(("a", {})), {}, ask_pass=True, prompt=prompt)


# --------------------------------------------------------------------------- keys


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    directory = tmp_path_factory.mktemp("keys")
    made = {}
    for name, args in {"plain": ["-t", "ed25519", "-N", ""],
                       "enc": ["-t", "ed25519", "-N", PASSPHRASE],
                       "rsa_enc": ["-t", "rsa", "-b", "2048", "-N", PASSPHRASE],
                       "ecdsa_pem_enc": ["-t", "ecdsa", "-m", "PEM", "-N", PASSPHRASE]}.items():
        path = directory / name
        subprocess.run(["ssh-keygen", "-q", *args, "-f", str(path)], check=True,
                       capture_output=True, timeout=60)
        made[name] = path
    return made


def test_key_files_are_told_apart(key_files: dict[str, Path]) -> None:
    assert not keys.is_encrypted(str(key_files["plain"]))
    for name in ("enc", "rsa_enc", "ecdsa_pem_enc"):
        path = str(key_files[name])
        assert keys.is_encrypted(path), name
        assert keys.check_passphrase(path, PASSPHRASE) is keys.PassphraseCheck.RIGHT, name
        assert keys.check_passphrase(path, "nope") is keys.PassphraseCheck.WRONG, name
        with pytest.raises(keys.PassphraseNeeded):
            keys.load_private_key(path)
    assert not keys.is_encrypted("/no/such/key")
    assert keys.key_type(key_files["rsa_enc"].read_text()) == "rsa"


def test_paramiko_stays_out_of_the_parent_for_plain_keys(key_files: dict[str, Path]) -> None:
    code = ("import sys; from hostbatch.prepare import unlock_keys; "
            "from hostbatch.inventory.model import HostSpec; "
            f"unlock_keys([HostSpec('a', 'a', identity_file={str(key_files['plain'])!r})], None, "
            "print);"
            "assert 'paramiko' not in sys.modules, 'paramiko imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _unlock(specs: list[HostSpec], prompt: Callable[[str], str] | None,
            monkeypatch: pytest.MonkeyPatch) -> tuple[list[HostSpec], list[str]]:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    warnings: list[str] = []
    return unlock_keys(specs, prompt, warnings.append), warnings


def test_passphrase_asked_once_per_key(key_files: dict[str, Path],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    enc, plain = str(key_files["enc"]), str(key_files["plain"])
    specs = hosts(*((f"h{n}", {"identity_file": enc}) for n in range(5)),
                  ("p", {"identity_file": plain}), ("n", {}))
    prompt = Answers("wrong one", PASSPHRASE)
    out, warnings = _unlock(specs, prompt, monkeypatch)
    assert len(prompt.questions) == 2 and "Wrong passphrase" in prompt.questions[1]
    assert all(enc in q for q in prompt.questions)
    assert [s.key_passphrases for s in out] == [((enc, Secret(PASSPHRASE)),)] * 5 + [(), ()]
    assert warnings == []
    assert redact(f"<<{PASSPHRASE}>>") == "<<***>>"


def test_passphrase_wrong_three_times_goes_to_the_workers(
        key_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    enc = str(key_files["enc"])
    prompt = Answers("w1", "w2", "w3", "never asked")
    out, _ = _unlock(hosts(("a", {"identity_file": enc})), prompt, monkeypatch)
    assert len(prompt.questions) == 3
    passphrase = keys.passphrase_for(out[0], enc)
    assert passphrase == "w3"
    with pytest.raises(keys.PassphraseWrong, match=f"passphrase for {enc} is wrong"):
        keys.load_private_key(enc, passphrase)


def test_no_terminal_warns_once_per_key(key_files: dict[str, Path],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    enc = str(key_files["enc"])
    out, warnings = _unlock(hosts(("a", {"identity_file": enc}), ("b", {"identity_file": enc})),
                            None, monkeypatch)
    assert [s.key_passphrases for s in out] == [(), ()]
    assert len(warnings) == 1 and enc in warnings[0] and "ssh-agent" in warnings[0]


def test_empty_passphrase_gives_up(key_files: dict[str, Path],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    prompt = Answers("")
    out, _ = _unlock(hosts(("a", {"identity_file": str(key_files["enc"])})), prompt,
                     monkeypatch)
    assert len(prompt.questions) == 1 and out[0].key_passphrases == ()


def test_library_run_resolves_password_sources_before_connecting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from hostbatch import api
    from hostbatch.actions import RunCommand

    monkeypatch.delenv("HB_UNIT_NO_SUCH_VAR", raising=False)
    spec = HostSpec("a", "127.192.2.1", password_env="HB_UNIT_NO_SUCH_VAR")
    with pytest.raises(InventoryError, match="HB_UNIT_NO_SUCH_VAR"):
        api.run([spec], RunCommand("true"), handle_signals=False)


# --------------------------------------------------------------------------- order of methods


@pytest.mark.parametrize(
    ("options", "order"),
    [
        ({}, ["agent", "default_keys"]),
        ({"password": Secret("Sekret-9")}, ["password"]),  # never the agent's or ~/.ssh keys first
        ({"password_env": "V"}, ["password"]),
        ({"password_cmd": "pass x"}, ["password"]),
        ({"identity_file": "/k"}, ["identity_file"]),
        ({"identity_file": "/k", "password": Secret("Sekret-9")}, ["identity_file", "password"]),
    ],
)
def test_one_order_of_methods(options: dict[str, object], order: list[str]) -> None:
    from hostbatch.ssh.methods import auth_order, describe_auth

    (spec,) = hosts(("h", options))
    assert [method.value for method, _ in auth_order(spec)] == order
    described = describe_auth(spec)
    assert len(described) == len(order)
    assert "Sekret-9" not in " ".join(described)
    if "password_env" in options:
        assert described == ["password from $V"]
    if "identity_file" in options:
        assert described[0] == "identity file /k (or the ssh-agent's copy of it)"
