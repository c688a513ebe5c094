"""Properties of the ssh_config reader (``hostbatch.ssh.config``): any file loads and answers
lookups, or fails with one short ``UsageError`` line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hostbatch.errors import HostbatchError
from hostbatch.ssh.config import SshConfig

from .properties import (
    check_message,
    fast,
    forget_secrets,  # noqa: F401  (autouse fixture)
    junk,
    long_token,
    time_limit,
)

_KEYS = ["Host", "Match", "HostName", "User", "Port", "IdentityFile", "ProxyJump",
         "ConnectTimeout", "UserKnownHostsFile", "IdentitiesOnly", "Include"]


@st.composite
def ssh_configs(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 10))):
        key = draw(st.sampled_from(_KEYS) | junk(8))
        value = draw(st.sampled_from(["*", "web*", "!db", '"a b', "~/k", "0", "-1", "22",
                                      "yes", "exec true", "host a", "none"])
                     | junk(20) | long_token())
        lines.append(f"{draw(st.sampled_from(['', '  ']))}{key}{draw(st.sampled_from([' ', '=']))}"
                     f"{value}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ssh_config")


@given(ssh_configs(), st.sampled_from(["web1", "db", "h", "x" * 300]))
@example('Host "abc\n  User x\n', "abc")
@example("Include \"nosuch\n", "h")
@example("Port " + "9" * 3000 + "\n", "h")
@fast(150)
def test_ssh_config_loads_or_fails_in_one_short_line(workdir: Path, text: str, host: str
                                                     ) -> None:
    path = workdir / "config"
    path.write_text(text, encoding="utf-8")
    with time_limit(5):
        try:
            SshConfig.load(path, str(workdir)).lookup(host)
        except HostbatchError as exc:
            check_message(str(exc))
