"""The daemon as a user meets it (issue 10, Why 10, daemon part): one daemon per home,
`serve` errors as one line with a documented exit code, `peer rm` closes the live
connection, and `peer ls` shows the entries a peer has not acknowledged (0 when in sync).
"""

from __future__ import annotations

import socket

import pytest

from tests.conftest import MOSAIC_CMD

from .conftest import HOST, Cluster, cli_env, run_cli, wait_until

pytestmark = pytest.mark.slow  # daemons as subprocesses


def _one_line_error(r, code: int) -> str:  # noqa: ANN001
    assert r.rc == code, str(r)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mosaic: error: "), lines
    assert "Traceback" not in r.err
    return lines[0]


def test_second_serve_on_a_home_exits_7(cluster: Cluster) -> None:
    (a,) = cluster.add_nodes("A")
    cluster.start()
    r = run_cli(["--home", a.home, "serve", "--listen", f"{HOST}:0"], timeout=30)
    line = _one_line_error(r, 7)
    assert "daemon is already running" in line
    assert a.running


def test_serve_on_a_bad_port_exits_2(cluster: Cluster) -> None:
    (a,) = cluster.add_nodes("A")
    for listen in (f"{HOST}:99999", f"{HOST}:123456", "nohost", f"{HOST}:-1"):
        r = run_cli(["--home", a.home, "serve", "--listen", listen], timeout=30)
        line = _one_line_error(r, 2)
        assert "HOST:PORT" in line, line


def test_serve_on_an_address_in_use_exits_7(cluster: Cluster) -> None:
    (a,) = cluster.add_nodes("A")
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli(["--home", a.home, "serve", "--listen", f"{HOST}:{port}"], timeout=30)
    line = _one_line_error(r, 7)
    assert f"cannot listen on {HOST}:{port}" in line, line
    assert not (a.home / "daemon.json").exists()


def test_peer_rm_closes_the_connection_and_lag_goes_to_zero(cluster: Cluster) -> None:
    a, b = cluster.add_nodes("A", "B")
    cluster.link((a, b))
    cluster.start()
    wait_until(lambda: a.connected_to(b) and b.connected_to(a), 15, "the A-B session",
               diagnose=cluster.logs)
    for i in range(3):
        a.put_bytes(f"file {i}\n".encode() * 50, f"lag/{i}.txt")
    wait_until(lambda: len(b.ls()) == 3, 15, "B to have A's files", diagnose=cluster.logs)

    def lag_of(node, other) -> int | None:  # noqa: ANN001
        rows = {r["node_id"]: r for r in node.doc("peer", "ls")}
        return rows[other.id]["lag_entries"]

    # both sides acknowledge what they applied: the lag comes back to 0 (it only grew before)
    wait_until(lambda: lag_of(a, b) == 0 and lag_of(b, a) == 0, 15, "lag 0 on both sides",
               diagnose=cluster.logs)

    a.ok("peer", "rm", b.id)
    wait_until(lambda: a.log_lines("was removed; closing"), 10, "A to close B's connection",
               diagnose=cluster.logs)
    wait_until(lambda: b.log_lines(f"peer {a.log_tag}: connection closed")
               or b.log_lines(f"refused|{a.log_tag}.*ended"), 10, "B to see it closed",
               diagnose=cluster.logs)
    # B keeps dialling A, which refuses it now: no new session on A
    start = len(a.log_lines(f"peer {b.log_tag} connected"))
    wait_until(lambda: a.log_lines("refused"), 15, "A to refuse B's next dial", diagnose=cluster.logs)
    assert len(a.log_lines(f"peer {b.log_tag} connected")) == start


def test_serve_errors_are_documented_with_the_cli() -> None:
    """The exit codes are the ones of node/errors.py (2 usage, 7 busy)."""
    from mosaic.node.cluster.daemon import BadAddress, CannotListen
    assert BadAddress.exit_code == 2 and CannotListen.exit_code == 7
    assert MOSAIC_CMD and cli_env()
