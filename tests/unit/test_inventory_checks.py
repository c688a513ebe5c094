"""What lint and explain check without connecting: missing or unreadable identity files,
known_hosts files that do not exist, jump hosts that are not hosts, unset password_env."""

from __future__ import annotations

import io
from pathlib import Path

from hostbatch.cli.environment import Environment
from hostbatch.cli.inventory import main as inventory_main
from hostbatch.inventory.lint import lint_inventory

from .conftest import WriteInventory


def _text(tmp_path: Path) -> str:
    key = tmp_path / "key"
    key.write_text("not really a key\n")
    return (f"[host:good]\nidentity_file = {key}\nknown_hosts = {key}\n"
            f"[host:bad]\nidentity_file = {tmp_path}/missing_key\n"
            f"known_hosts = {tmp_path}/no_known_hosts\nproxy_jump = bastoin\n"
            "password_env = HB_UNSET_PASSWORD\n"
            f"[host:dir]\nidentity_file = {tmp_path}\n"
            "[group:all_of_them]\nhosts = good, bad, dir\n")


def test_lint_reports_each_problem_once_with_its_severity(
        tmp_path: Path, write_inventory: WriteInventory) -> None:
    report = lint_inventory(write_inventory(_text(tmp_path)), environ={})
    found = {(p.severity, p.section, p.key) for p in report.problems}
    assert found == {("error", "host:bad", "identity_file"),
                     ("warning", "host:bad", "known_hosts"),
                     ("warning", "host:bad", "proxy_jump"),
                     ("warning", "host:bad", "password_env"),
                     ("error", "host:dir", "identity_file")}, report.problems
    messages = " | ".join(p.message for p in report.problems)
    assert "does not exist" in messages and "is a directory" in messages
    assert "bastoin is not an inventory host" in messages


def test_a_set_password_env_is_fine(tmp_path: Path, write_inventory: WriteInventory) -> None:
    report = lint_inventory(write_inventory(_text(tmp_path)),
                            environ={"HB_UNSET_PASSWORD": "x"})
    assert not [p for p in report.problems if p.key == "password_env"]


def test_explain_warns_about_the_host_it_shows(tmp_path: Path,
                                               write_inventory: WriteInventory) -> None:
    path = write_inventory(_text(tmp_path))
    out, err = io.BytesIO(), io.BytesIO()
    env = Environment(stdin=io.BytesIO(), stdout=out, stderr=err,
                      environ={"HOME": str(tmp_path)}, stdout_isatty=False,
                      stderr_isatty=False)
    assert inventory_main(["explain", "-i", str(path), "bad"], env) == 0
    warnings = err.getvalue().decode().splitlines()
    assert len(warnings) == 4 and all(": warning: bad: " in w for w in warnings), warnings
    assert "address" in out.getvalue().decode()
