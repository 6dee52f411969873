"""Slow and greedy clients (issue 19, item 2) against a real server.

With the defaults, 1,000 connections from one address that trickle a request
head must not keep a client from another address (127.0.0.2 on the loopback)
from being served; a full server closes the connection that has waited longest
for a head to make room; behind a PROXY-protocol balancer the client the
header names is the one counted; the file-descriptor limit is raised at start.
Latencies are printed for docs/RELIABILITY.md, never asserted.
"""

from __future__ import annotations

import re
import resource
import socket
import statistics
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service  # noqa: E402
from service import Server, assert_problem, build_request  # noqa: E402

HEAD_PREFIX = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "


@pytest.fixture(autouse=True)
def _binary():
    problem = service.binary_problem(service.server_binary())
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(autouse=True, scope="module")
def _descriptors():
    """A thousand client sockets in this process: soft RLIMIT_NOFILE up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def refused(srv: Server, reason: str) -> float:
    text = srv.client().get("/metrics", token=srv.tokens["admin"]).body.decode()
    match = re.search(r'^ich_http_connections_refused_total\{reason="%s"\} (\S+)$' % reason, text, re.M)
    return float(match.group(1)) if match else 0.0


def open_fds(srv: Server) -> int:
    return len(list(Path(f"/proc/{srv.process.pid}/fd").iterdir()))


def slow_sockets(port: int, count: int, source: str = "127.0.0.1", prefix: bytes = HEAD_PREFIX) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((source, 0))
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
            if prefix:
                s.sendall(prefix)
        except OSError:
            pass  # refused or dropped by the server: what the test is about
        s.setblocking(False)
        sockets.append(s)
    return sockets


def trickle(sockets: list[socket.socket]) -> None:
    for s in sockets:
        try:
            s.send(b"a")
        except OSError:
            pass


def timed_get(port: int, target: str, token: str | None, source: str) -> tuple[int, float]:
    headers = [("Authorization", f"Bearer {token}")] if token else []
    started = time.monotonic()
    with service.RawConnection("127.0.0.1", port, source=source, timeout=10) as c:
        c.send(build_request("GET", target, headers=headers))
        response = c.read_response(method="GET", target=target, timeout=10)
    return response.status, time.monotonic() - started


def start(tmp_path, args=()) -> Server:
    srv = Server(tmp_path / "data", service.test_bundle(), args=["--threads", "2", *args])
    srv.tokens = {scope: srv.token(scope) for scope in ("read", "admin")}
    return srv.start()


def test_a_thousand_slow_connections_from_one_address_do_not_starve_another(tmp_path):
    srv = start(tmp_path)
    try:
        baseline_fds = open_fds(srv)
        attack = slow_sockets(srv.port, 1000)
        try:
            held_fds = open_fds(srv) - baseline_fds
            latencies, statuses = [], []
            for probe in range(60):  # about 6 s, well inside the 10 s head deadline of the held ones
                if probe % 20 == 0:
                    trickle(attack)
                status, seconds = timed_get(srv.port, "/v1/studies", srv.tokens["read"], "127.0.0.2")
                statuses.append(status)
                latencies.append(seconds)
                time.sleep(0.1)
        finally:
            for s in attack:
                s.close()
        latencies.sort()
        print(f"\n1000 slow connections from 127.0.0.1: server held {held_fds} more descriptors; the client "
              f"from 127.0.0.2 got {statuses.count(200)}/{len(statuses)} 200s, p50 {statistics.median(latencies) * 1000:.1f} ms, "
              f"p99 {latencies[int(0.99 * (len(latencies) - 1))] * 1000:.1f} ms, worst {latencies[-1] * 1000:.1f} ms; "
              f"refused client_full {refused(srv, 'client_full'):.0f}, dropped {refused(srv, 'dropped'):.0f}")
        assert statuses == [200] * len(statuses), statuses
        assert refused(srv, "client_full") + refused(srv, "dropped") >= 1000 - 2 * 32
        assert held_fds <= 2 * 32 + 5, f"the server holds {held_fds} descriptors for one address"
    finally:
        srv.stop()


def test_a_full_server_closes_the_connection_waiting_longest(tmp_path):
    srv = start(tmp_path, ["--max-connections", "20", "--max-connections-per-client", "0"])
    try:
        silent = slow_sockets(srv.port, 40, prefix=b"")  # connected, nothing sent
        status, _ = timed_get(srv.port, "/v1/studies", srv.tokens["read"], "127.0.0.2")
        assert status == 200
        assert refused(srv, "evicted") >= 20, "each newcomer past 20 should have closed a silent connection"
        assert refused(srv, "server_full") == 0
        closed = 0
        for s in silent:
            try:
                closed += s.recv(1) == b""
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
            s.close()
        assert closed >= 20, f"only {closed} of the 40 silent connections were closed"
    finally:
        srv.stop()


def proxied(port: int, client: str, request: bytes, version: int = 1) -> tuple[service.RawConnection, service.Response]:
    if version == 1:
        header = f"PROXY TCP4 {client} 10.0.0.1 40000 8080\r\n".encode()
    else:
        address = bytes(int(part) for part in client.split(".")) + bytes([10, 0, 0, 1]) + (40000).to_bytes(2, "big") + (8080).to_bytes(2, "big")
        header = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + len(address).to_bytes(2, "big") + address
    conn = service.RawConnection("127.0.0.1", port, timeout=10)
    conn.send(header + request)
    return conn, conn.read_response(target="/healthz", timeout=10)


def test_behind_a_proxy_protocol_balancer_the_named_client_is_counted(tmp_path):
    srv = Server(tmp_path / "data", service.test_bundle(),
                 args=["--threads", "2", "--proxy-protocol", "--max-connections-per-client", "2", "--auth-failure-limit", "2"])
    srv.tokens = {"read": srv.token("read")}
    srv.start(ready=False)  # the fixture's readiness probe speaks no PROXY protocol
    held = []
    try:
        for version in (1, 2):
            conn, response = proxied(srv.port, "192.0.2.7", build_request("GET", "/healthz"), version)
            assert response.status == 200
            held.append(conn)
        conn, response = proxied(srv.port, "192.0.2.7", build_request("GET", "/healthz"))
        held.append(conn)
        assert_problem(response, 429, "too-many-connections-from-client")
        conn, response = proxied(srv.port, "192.0.2.8", build_request("GET", "/healthz"))
        held.append(conn)
        assert response.status == 200, "another client behind the same balancer has its own count"
        # The failed-authentication limit follows the named client too.
        for _ in range(3):
            conn, response = proxied(srv.port, "198.51.100.3", build_request("GET", "/v1/studies", headers=[("Authorization", "Bearer ich_wrong")]))
            conn.close()
        assert_problem(response, 429, "too-many-auth-failures")
        conn, response = proxied(srv.port, "198.51.100.4", build_request("GET", "/v1/studies", headers=[("Authorization", f"Bearer {srv.tokens['read']}")]))
        conn.close()
        assert response.status == 200
        with service.RawConnection("127.0.0.1", srv.port, timeout=10) as direct:
            direct.send(build_request("GET", "/healthz"))
            assert_problem(direct.read_response(target="/healthz"), 400, "bad-proxy-header")
    finally:
        for conn in held:
            conn.close()
        srv.stop()


def test_the_descriptor_limit_is_raised_and_the_cap_fits_under_it(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4096:
        pytest.skip(f"the hard RLIMIT_NOFILE is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # what systemd and Docker give; the child inherits it
    try:
        srv = Server(tmp_path / "data", service.test_bundle(), args=["--threads", "2", "--max-connections", str(hard)])
        srv.start(ready=False)
        srv.stop()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    log = srv.log_text()
    cap = (hard - 128) // 2
    assert f"fd_limit={hard}" in log and "fd_limit_before=1024" in log, log[-2000:]
    assert f"max_connections={cap}" in log and "max-connections lowered to fit the file-descriptor limit" in log, log[-2000:]


def test_ipv6_clients_are_counted_by_address_on_an_ipv6_listener(tmp_path):
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    srv = Server(tmp_path / "data", service.test_bundle(), args=["--threads", "2", "--max-connections-per-client", "2"])
    srv.host = "::1"
    srv.tokens = {"admin": srv.token("admin")}
    srv.start()
    held = []
    try:
        for _ in range(2):
            held.append(service.RawConnection("::1", srv.port, timeout=10))
        with service.RawConnection("::1", srv.port, timeout=10) as third:
            assert_problem(third.read_response(target="/healthz", timeout=10), 429, "too-many-connections-from-client")
        for conn in held:
            conn.close()
        time.sleep(0.2)
        assert refused(srv, "client_full") == 1
    finally:
        srv.stop()
