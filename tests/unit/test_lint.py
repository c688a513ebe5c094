"""``hostbatch inventory lint``: every problem of a file at once, one a line, with exit statuses."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hostbatch.cli.environment import Environment
from hostbatch.cli.main import hostbatch_main
from hostbatch.errors import InventoryError
from hostbatch.inventory.lint import lint_inventory
from hostbatch.inventory.validate import find_group_cycles, undefined_children

from .conftest import WriteInventory

CLEAN = """
[defaults]
user = deploy

[host:web1]
hostname = 127.192.2.1

[host:web2]
hostname = 127.192.2.2
port = 2222

[group:web]
hosts = web1, web2, web[3-4]

[group:all_web]
children = web
"""

BROKEN = """
[defaults]
user = deploy
prot = 22

[host:web1]
hostname = 127.192.2.1
port = 70000
port = 22
password = s3cret

[host:web2]
hostname = 127.192.2.1

[host:web1]
user = again

[host:lonely]
hostname = 127.192.2.50
connect_timeout = soon

[hots:typo]
hostname = x

[group:web]
hosts = web1, web2, bad[3-1]
children = dbs, loop_a

[group:loop_a]
children = loop_b

[group:loop_b]
children = loop_a

[group:nothing]
this line has no equals sign
"""


def run_lint(path: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    env = Environment(stdout=out, stderr=err, environ={"HOME": str(path.parent)},
                      stdout_isatty=False, stderr_isatty=False)
    status = hostbatch_main(["inventory", "lint", str(path), *extra], env)
    return status, out.getvalue().decode(), err.getvalue().decode()


def test_clean_inventory_has_no_problems(write_inventory: WriteInventory) -> None:
    report = lint_inventory(write_inventory(CLEAN))
    assert report.problems == []


def test_every_problem_is_reported(write_inventory: WriteInventory) -> None:
    path = write_inventory(BROKEN, mode=0o640)
    report = lint_inventory(path)
    lines = [p.format("inv") for p in report.problems]
    expected_errors = [
        "inv: [defaults] prot: error: unknown key (did you mean 'port'?) (line 3)",
        "inv: [host:web1] port: error: key appears twice in the section (line 8)",
        "inv: [host:web1]: error: section appears twice (line 14)",
        "inv: [host:lonely] connect_timeout: error: connect_timeout 'soon' is not a number "
        "of seconds (line 19)",
        "inv: [hots:typo]: error: unknown section; sections are defaults, host:NAME, "
        "group:NAME (line 21)",
        "inv: [group:web] hosts: error: range [3-1] runs backwards (line 25)",
        "inv: [group:nothing]: error: not a 'key = value' line: 'this line has no equals "
        "sign' (line 35)",
        "inv: [group:web] children: error: child group 'dbs' is not defined",
        "inv: [group:loop_b] children: error: groups form a cycle: loop_a -> loop_b -> loop_a",
    ]
    for line in expected_errors:
        assert line in lines, (line, lines)
    assert any("holds passwords (web1) and is readable by others (mode 0640)" in line
               and ": error: " in line for line in lines), lines
    assert "inv: [host:web2] hostname: warning: hosts web1, web2 all reach 127.192.2.1" in lines
    assert "inv: [host:lonely]: warning: host is in no group (only in 'all')" in lines
    assert "inv: [group:nothing]: warning: group has no hosts" in lines
    assert "s3cret" not in "\n".join(lines)


def test_the_loader_stops_at_the_first_of_them(write_inventory: WriteInventory) -> None:
    from hostbatch.inventory.loader import load_inventory

    with pytest.raises(InventoryError):
        load_inventory(write_inventory(BROKEN))


def test_exit_statuses(write_inventory: WriteInventory, tmp_path: Path) -> None:
    status, out, err = run_lint(write_inventory(CLEAN, name="clean.ini"))
    assert (status, out) == (0, ""), err
    assert "0 error(s), 0 warning(s)" in err
    warn_only = write_inventory("[host:a]\nhostname = x\n", name="warn.ini")
    status, out, _ = run_lint(warn_only)
    assert status == 0 and ": warning: host is in no group" in out
    assert run_lint(warn_only, "--strict")[0] == 1
    status, out, err = run_lint(write_inventory(BROKEN, name="broken.ini"))
    assert status == 1 and out.count(": error: ") >= 9, out
    assert all(line.startswith(f"{tmp_path}/broken.ini: ") for line in out.splitlines())
    status, out, err = run_lint(tmp_path / "missing.ini")
    assert (status, out) == (2, ""), err
    assert err.startswith("hostbatch inventory lint: error: ") and "not found" in err


def test_ansible_inventory_is_linted_too(write_inventory: WriteInventory) -> None:
    path = write_inventory("""
        lonely ansible_password=pw
        [web]
        w1 ansible_host=127.100.0.1 ansible_become_method=su
        w2 ansible_host=127.100.0.1
        [empty]
        """, name="ansible.ini", mode=0o644)
    lines = [p.format("a") for p in lint_inventory(path).problems]
    assert "a: warning: Ansible variables not supported by hostbatch, ignored: " \
           "ansible_become_method" in lines, lines
    assert "a: [w2] hostname: warning: hosts w1, w2 all reach 127.100.0.1" in lines
    assert "a: [lonely]: warning: host is in no group (only in 'all')" in lines
    assert "a: [group:empty]: warning: group has no hosts" in lines
    assert any("holds passwords (lonely)" in line for line in lines)
    assert "pw" not in "\n".join(lines).replace("passwords", "")


def test_ansible_syntax_error_is_one_problem(write_inventory: WriteInventory) -> None:
    path = write_inventory("[web]\nw1\n[p:children]\nnope\n", name="bad.ini")
    report = lint_inventory(path)
    assert [p.severity for p in report.problems] == ["error"]
    assert "never defined" in report.problems[0].message


def test_a_password_quoted_in_a_problem_is_masked(write_inventory: WriteInventory) -> None:
    path = write_inventory("[host:a]\npassword = hunter2-secret\n[group:g]\nhosts = a\n"
                           "[group:h]\nhunter2-secret\n")
    lines = [p.format("inv") for p in lint_inventory(path).problems]
    assert "inv: [group:h]: error: not a 'key = value' line: '***' (line 6)" in lines, lines


def test_a_sudo_password_counts_as_a_password(write_inventory: WriteInventory) -> None:
    path = write_inventory("[g]\nh ansible_become_password=x\n", mode=0o604)
    assert [p.message for p in lint_inventory(path).errors] == [
        f"holds passwords (h) and is readable by others (mode 0604); run: chmod 600 {path}"]


def test_ansible_comment_in_a_vars_value_is_flagged(write_inventory: WriteInventory) -> None:
    path = write_inventory("[web]\nw1\n[web:vars]\nansible_user=deploy # the deploy user\n"
                           "ansible_password='quoted # fine'\n")
    problems = [p.format("a") for p in lint_inventory(path).problems]
    assert [p for p in problems if "Ansible keeps that" in p] == [
        "a: [web:vars] ansible_user: warning: the value goes on after whitespace and '#' or "
        "';': Ansible keeps that as part of the value (quote the value, or put the comment on a "
        "line of its own)"]


def test_run_keys_and_sudo_password_env_are_known(write_inventory: WriteInventory,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HB_LINT_SUDO", "x")
    path = write_inventory("[defaults]\nconfirm_over = 5\nsudo_password_env = HB_LINT_SUDO\n"
                           "[host:a]\nconfirm_over = 5\n[group:g]\nhosts = a\n")
    lines = [p.format("inv") for p in lint_inventory(path).problems]
    assert lines == ["inv: [host:a] confirm_over: error: unknown key (line 5)"]


def test_group_member_close_to_a_defined_host(write_inventory: WriteInventory) -> None:
    path = write_inventory("[host:web01]\nhostname = 127.192.2.1\n"
                           "[group:web]\nhosts = web1, web01, db[1-2]\n")
    lines = [p.format("inv") for p in lint_inventory(path).problems]
    assert lines == ["inv: [group:web] hosts: warning: 'web1' has no [host:web1] section, so "
                     "it is dialled as 'web1' (did you mean 'web01'?)"]


# ------------------------------------------------- the one group-cycle finder (loader and lint)


@pytest.mark.parametrize(("children", "expected"), [
    ({}, []),
    ({"a": ["b"], "b": []}, []),
    ({"top": ["l", "r"], "l": ["base"], "r": ["base"], "base": []}, []),  # a diamond
    ({"a": ["a"]}, [("a", ("a", "a"))]),
    ({"a": ["b"], "b": ["a"]}, [("b", ("a", "b", "a"))]),
    ({"a": ["b"], "b": ["c"], "c": ["a"]}, [("c", ("a", "b", "c", "a"))]),
    # Two cycles, met in file order; an undefined child is skipped, not followed.
    ({"x": ["nosuch", "y"], "y": ["x"], "p": ["q"], "q": ["p"]},
     [("y", ("x", "y", "x")), ("q", ("p", "q", "p"))]),
    # A cycle reached from a group outside it is named from where it closes.
    ({"outer": ["a"], "a": ["b"], "b": ["a"]}, [("b", ("a", "b", "a"))]),
])
def test_find_group_cycles(children: dict[str, list[str]],
                           expected: list[tuple[str, tuple[str, ...]]]) -> None:
    cycles = find_group_cycles(children)
    assert [(cycle.group, cycle.path) for cycle in cycles] == expected
    assert [str(cycle) for cycle in cycles] == [" -> ".join(path) for _, path in expected]


def test_find_group_cycles_walks_deep_chains_without_recursion() -> None:
    depth = 5000
    children = {f"g{n}": [f"g{n + 1}"] for n in range(depth)}
    children[f"g{depth}"] = ["g0"]
    [cycle] = find_group_cycles(children)
    assert cycle.group == f"g{depth}" and len(cycle.path) == depth + 2


def test_undefined_children_in_file_order() -> None:
    assert list(undefined_children({"a": ["x", "b"], "b": ["y"]})) == [("a", "x"), ("b", "y")]
