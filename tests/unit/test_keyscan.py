"""keyscan's parent side: comparing scanned keys with known_hosts, clones, the table."""

from __future__ import annotations

import base64
from pathlib import Path

from hostbatch.cli.keyscan import label, table, to_json
from hostbatch.engine.events import Event, HostFailed, HostKeyScanned
from hostbatch.engine.outcome import BatchResult
from hostbatch.errors import FailureKind
from hostbatch.inventory.model import HostSpec
from hostbatch.keyscan import compare, lines_by_file, mark_shared, needs_attention, new_keys
from hostbatch.known_hosts import KeyStatus, fingerprint


def key(seed: str) -> str:
    return base64.b64encode(f"key-{seed}".encode()).decode()


def scanned(spec: HostSpec, blob: str) -> HostKeyScanned:
    entry = spec.hostname if spec.port == 22 else f"[{spec.hostname}]:{spec.port}"
    return HostKeyScanned(spec.name, entry, "ssh-ed25519", blob, fingerprint(blob), 0.1)


def test_statuses_against_both_files(tmp_path: Path) -> None:
    inventory_file = tmp_path / "inv_known_hosts"
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    a = HostSpec("a", "127.100.0.1", known_hosts=str(inventory_file))
    b = HostSpec("b", "127.100.0.2", port=2222, known_hosts=str(inventory_file))
    c = HostSpec("c", "127.100.0.3", known_hosts=str(inventory_file))
    d = HostSpec("d", "127.100.0.4")
    e = HostSpec("e", "127.100.0.5")
    inventory_file.write_text(f"127.100.0.1 ssh-ed25519 {key('a')}\n"
                              f"[127.100.0.2]:2222 ssh-ed25519 {key('old')}\n")
    (home / ".ssh" / "known_hosts").write_text(f"@revoked * ssh-ed25519 {key('bad')}\n")
    events: dict[str, Event] = {
        "a": scanned(a, key("a")), "b": scanned(b, key("b")), "c": scanned(c, key("c")),
        "d": scanned(d, key("bad")),
        "e": HostFailed("e", FailureKind.CONNECT, "connection refused", 0.0),
    }
    rows = compare([a, b, c, d, e], events, str(home))
    assert [(r.host, r.status) for r in rows] == [
        ("a", KeyStatus.KNOWN), ("b", KeyStatus.CHANGED), ("c", KeyStatus.UNKNOWN),
        ("d", KeyStatus.REVOKED), ("e", None)]
    assert [label(r) for r in rows] == ["known", "CHANGED", "new", "REVOKED", "unreachable"]
    assert [to_json(r)["status"] for r in rows[:4]] == ["known", "changed", "new", "revoked"]
    assert to_json(rows[4])["event"] == "error" and rows[4].unreachable
    assert new_keys(rows) == [rows[2]] and needs_attention(rows)
    assert not needs_attention([rows[0], rows[2]])
    assert lines_by_file(new_keys(rows)) == {
        str(inventory_file): [f"127.100.0.3 ssh-ed25519 {key('c')}"]}
    assert rows[2].record_file == str(inventory_file)
    assert rows[3].record_file == str(home / ".ssh" / "known_hosts")
    assert rows[1].entry == "[127.100.0.2]:2222"


def test_clones_are_hosts_with_different_entries_and_one_key(tmp_path: Path) -> None:
    specs = [HostSpec("x1", "127.100.0.1"), HostSpec("x2", "127.100.0.2"),
             HostSpec("x3", "127.100.0.3"), HostSpec("alias", "127.100.0.3")]
    events: dict[str, Event] = {
        "x1": scanned(specs[0], key("same")), "x2": scanned(specs[1], key("same")),
        "x3": scanned(specs[2], key("own")), "alias": scanned(specs[3], key("own"))}
    rows = compare(specs, events, str(tmp_path))
    groups = mark_shared(rows)
    assert [[r.host for r in g] for g in groups] == [["x1", "x2"]]
    assert rows[0].shared_with == ["x2"] and rows[2].shared_with == []
    text = table(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["HOST", "TYPE", "FINGERPRINT", "STATUS"]
    assert lines[1].endswith("new (shared key)") and lines[3].endswith("  new")
    assert len({line.index("ssh-ed25519") for line in lines[1:]}) == 1  # aligned columns
    assert "\x1b" not in text


def test_a_scan_counts_as_a_completed_host() -> None:
    result = BatchResult(["a"])
    result.record(HostKeyScanned("a", "a", "ssh-ed25519", key("a"), fingerprint(key("a")), 0.2))
    assert result.exit_status == 0 and [o.host for o in result.ok] == ["a"]
    assert HostKeyScanned("a", "a", "t", "k", "f", 0.25).to_json()["event"] == "hostkey"


def _cli(args: list[str], tmp_path: Path) -> tuple[int, str, str]:
    import io

    from hostbatch.cli.environment import Environment
    from hostbatch.cli.main import hostbatch_main

    out, err = io.BytesIO(), io.BytesIO()
    env = Environment(stdout=out, stderr=err, environ={"HOME": str(tmp_path)},
                      stdout_isatty=False, stderr_isatty=False)
    return hostbatch_main(args, env), out.getvalue().decode(), err.getvalue().decode()


def test_keyscan_and_inventory_commands_are_dispatched(tmp_path: Path) -> None:
    status, out, _ = _cli(["--help"], tmp_path)
    assert status == 0 and "keyscan" in out and "inventory" in out
    status, out, _ = _cli(["keyscan", "--help"], tmp_path)
    assert status == 0 and "--yes" in out and "--json" in out and "--accept-new" not in out
    assert "1    new keys were left unrecorded" in out
    status, _, err = _cli(["keyscan", "-i", str(tmp_path / "none.ini")], tmp_path)
    assert status == 2 and "no hosts selected" in err
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[web]\nw1\nw2\n")
    status, out, _ = _cli(["keyscan", "-i", str(inventory), "-g", "web", "--list"], tmp_path)
    assert (status, out) == (0, "w1\nw2\n")
    status, out, err = _cli(["inventory"], tmp_path)
    assert status == 2 and "lint" in err and "convert" in err
