"""HTTPS on the server's own socket (issue 19, item 4), against real TLS peers.

Certificates come from the `openssl` command (a CA, server and client
certificates, a second CA nobody trusts); the clients are Python's `ssl`,
`curl` and `openssl s_client`, none of them ours except `ichctl`. What is
checked: TLS 1.2 and 1.3 served, 1.0 and 1.1 refused, plain HTTP to the TLS
port a 400 problem, bad files refused at start, mutual TLS with a token still
required, a SIGHUP reload under load that drops nothing, and that `ichctl` and
webhooks verify the peer's certificate (with `--cacert` for a private CA).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service  # noqa: E402
from service import Server, build_request  # noqa: E402
from test_ichctl_client import ichctl  # noqa: E402
from test_webhooks import Receiver, bundles, post_study, webhook_server  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _binary():
    problem = service.binary_problem(service.server_binary())
    if problem:
        pytest.fail(problem, pytrace=False)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class PKI:
    """A private CA, the certificates it signs, and a second CA that nobody trusts."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for ca in ("ca", "rogue-ca"):
            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "30", "-subj", f"/CN={ca}", cwd=root)
        self.ca = root / "ca.pem"

    def issue(self, name: str, *, ca: str = "ca", client: bool = False, days: int = 30) -> tuple[Path, Path]:
        """A leaf certificate and its key, for localhost/127.0.0.1 (server) or a client."""
        usage = "clientAuth" if client else "serverAuth"
        (self.root / f"{name}.ext").write_text(
            f"subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage={usage}\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=self.root)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", str(days), "-extfile", f"{name}.ext", cwd=self.root)
        return self.root / f"{name}.pem", self.root / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    pki = PKI(tmp_path_factory.mktemp("pki"))
    pki.issue("server")
    pki.issue("renewed", days=90)
    pki.issue("rogue-server", ca="rogue-ca")
    pki.issue("client", client=True)
    pki.issue("rogue-client", ca="rogue-ca", client=True)
    return pki


def tls_server(tmp_path: Path, pki: PKI, *args: str, cert: str = "server") -> Server:
    """A server on copies of the PKI's files (a reload test overwrites them); ready when /healthz answers over TLS."""
    for suffix in ("pem", "key"):
        (tmp_path / f"served.{suffix}").write_bytes((pki.root / f"{cert}.{suffix}").read_bytes())
    srv = Server(tmp_path / "data", service.test_bundle(), args=[
        "--threads", "2", "--tls-cert", str(tmp_path / "served.pem"), "--tls-key", str(tmp_path / "served.key"), *args])
    srv.tokens = {scope: srv.token(scope) for scope in ("read", "admin")}
    srv.start(ready=False)  # the harness's readiness probe speaks plain HTTP
    return srv


def context(pki: PKI, *, version: ssl.TLSVersion | None = None, client: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    if client:
        ctx.load_cert_chain(pki.root / f"{client}.pem", pki.root / f"{client}.key")
    return ctx


def get(srv: Server, ctx: ssl.SSLContext, path: str = "/healthz", token: str | None = None,
        conn: http.client.HTTPSConnection | None = None) -> tuple[int, bytes, http.client.HTTPSConnection]:
    conn = conn or http.client.HTTPSConnection("localhost", srv.port, context=ctx, timeout=30)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    return response.status, response.read(), conn


def wait_ready(srv: Server, pki: PKI, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert srv.running, srv.log_tail()
        try:
            status, _, conn = get(srv, context(pki), "/readyz")
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"/readyz not 200 over TLS after {timeout} s:\n{srv.log_tail()}")


def metric(srv: Server, pki: PKI, name: str, labels: str, client: str | None = None) -> float:
    _, body, conn = get(srv, context(pki, client=client), "/metrics", srv.tokens["admin"])
    conn.close()
    match = re.search(r"^%s\{%s\} (\S+)$" % (re.escape(name), re.escape(labels)), body.decode(), re.M)
    return float(match.group(1)) if match else 0.0


def legacy_handshake(port: int, version: ssl.TLSVersion) -> None:
    """A client that offers only `version`; OpenSSL's own security level would refuse it before the server could."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = version
    ctx.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost"):
            pass


def test_tls_1_2_and_1_3_are_served_and_1_0_and_1_1_refused(tmp_path, pki):
    srv = tls_server(tmp_path, pki)
    try:
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            status, body, conn = get(srv, context(pki, version=version))
            assert (status, json.loads(body)) == (200, {"status": "alive"})
            assert conn.sock.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
            if version == ssl.TLSVersion.TLSv1_2:
                assert "GCM" in conn.sock.cipher()[0] or "CHACHA20" in conn.sock.cipher()[0], conn.sock.cipher()
            conn.close()
        for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            with pytest.raises(ssl.SSLError):
                legacy_handshake(srv.port, version)
        # curl, another TLS stack's view of the same: 1.1 at most is refused (exit 35, a handshake failure).
        old = subprocess.run(["curl", "-sS", "--cacert", str(pki.ca), "--tlsv1.0", "--tls-max", "1.1",
                              f"https://localhost:{srv.port}/healthz"], capture_output=True, text=True, timeout=30)
        assert old.returncode == 35, old.stderr
        new = subprocess.run(["curl", "-sS", "--cacert", str(pki.ca), f"https://localhost:{srv.port}/healthz"],
                             capture_output=True, text=True, timeout=30)
        assert new.returncode == 0 and json.loads(new.stdout) == {"status": "alive"}, new.stderr
        assert metric(srv, pki, "ich_http_connections_refused_total", 'reason="tls_handshake"') >= 3
        assert "tls handshake failed" in srv.log_text()
    finally:
        srv.stop()


def test_plain_http_to_the_tls_port_gets_a_400_problem_and_the_server_goes_on(tmp_path, pki):
    srv = tls_server(tmp_path, pki)
    try:
        with service.RawConnection("127.0.0.1", srv.port) as conn:
            conn.send(build_request("GET", "/healthz"))
            response = conn.read_response()
        problem = service.assert_problem(response, 400, "https-required")
        assert "HTTPS" in problem["detail"]
        status, _, https = get(srv, context(pki))
        assert status == 200
        https.close()
    finally:
        srv.stop()


def test_clients_refuse_a_certificate_their_ca_did_not_sign(tmp_path, pki):
    srv = tls_server(tmp_path, pki, cert="rogue-server")
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            get(srv, context(pki))
        curl = subprocess.run(["curl", "-sS", "--cacert", str(pki.ca), f"https://localhost:{srv.port}/healthz"],
                              capture_output=True, text=True, timeout=30)
        assert curl.returncode == 60, curl.stderr  # peer certificate cannot be authenticated
        listed = ichctl("worklist", "--json", "--server", f"https://localhost:{srv.port}", "--token", srv.tokens["read"],
                        "--cacert", str(pki.ca))
        assert listed.returncode == 2 and "Cannot reach the server" in listed.stderr, listed.stderr
    finally:
        srv.stop()


def test_ichctl_verifies_the_server_with_cacert_and_refuses_it_without(tmp_path, pki):
    srv = tls_server(tmp_path, pki)
    try:
        wait_ready(srv, pki)
        url = f"https://localhost:{srv.port}"
        listed = ichctl("worklist", "--json", "--server", url, "--token", srv.tokens["read"], "--cacert", str(pki.ca))
        assert listed.returncode == 0, listed.stderr
        assert "studies" in json.loads(listed.stdout)
        unverified = ichctl("worklist", "--json", "--server", url, "--token", srv.tokens["read"])
        assert unverified.returncode == 2 and "libcurl error 60" in unverified.stderr, unverified.stderr
    finally:
        srv.stop()


@pytest.mark.parametrize("case", ["mismatched key", "encrypted key", "missing certificate", "key without certificate",
                                  "client CA without certificate"])
def test_unusable_tls_settings_stop_the_start_with_a_reason(tmp_path, pki, case):
    server, key = pki.root / "server.pem", pki.root / "server.key"
    encrypted = tmp_path / "encrypted.key"
    openssl("pkey", "-in", str(key), "-out", str(encrypted), "-aes256", "-passout", "pass:secret", cwd=tmp_path)
    args, expected = {
        "mismatched key": (["--tls-cert", str(server), "--tls-key", str(pki.root / "client.key")], "does not match"),
        "encrypted key": (["--tls-cert", str(server), "--tls-key", str(encrypted)], "reading the private key"),
        "missing certificate": (["--tls-cert", str(tmp_path / "absent.pem"), "--tls-key", str(key)], "absent.pem"),
        "key without certificate": (["--tls-key", str(key)], "go together"),
        "client CA without certificate": (["--tls-client-ca", str(pki.ca)], "needs tls-cert"),
    }[case]
    command = [str(service.server_binary()), "serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
               "--model", str(service.test_bundle()), *args]
    # stdin closed: an encrypted key must fail, never wait for a passphrase on a terminal.
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode != 0, result.stderr
    assert expected in result.stderr, result.stderr
    assert "listening on" not in result.stdout
    assert "BEGIN" not in result.stderr  # no key material in the message


def test_mutual_tls_requires_a_client_certificate_from_the_ca_and_still_a_token(tmp_path, pki):
    srv = tls_server(tmp_path, pki, "--tls-client-ca", str(pki.ca))
    try:
        for client in (None, "rogue-client"):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                # TLS 1.3 reports a refused client certificate at the first read, not in the handshake.
                get(srv, context(pki, client=client))
        status, body, conn = get(srv, context(pki, client="client"), "/v1/studies")
        assert status == 401, body
        status, body, _ = get(srv, context(pki, client="client"), "/v1/studies", srv.tokens["read"], conn=conn)
        assert status == 200, body
        conn.close()
        curl = subprocess.run(["curl", "-sS", "--cacert", str(pki.ca), "--cert", str(pki.root / "client.pem"),
                               "--key", str(pki.root / "client.key"), f"https://localhost:{srv.port}/healthz"],
                              capture_output=True, text=True, timeout=30)
        assert curl.returncode == 0, curl.stderr
        assert metric(srv, pki, "ich_http_connections_refused_total", 'reason="tls_handshake"', "client") >= 2
    finally:
        srv.stop()


def served_certificate(port: int) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


def der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_sighup_reloads_the_certificate_under_load_without_dropping_a_request(tmp_path, pki):
    srv = tls_server(tmp_path, pki)
    errors: list[str] = []
    served = [0]
    stop = threading.Event()

    def keep_alive_client():
        conn = None
        while not stop.is_set():
            try:
                status, _, conn = get(srv, context(pki), conn=conn)
                if status != 200:
                    errors.append(f"status {status}")
                served[0] += 1
            except Exception as error:  # noqa: BLE001 - every failure is the finding
                errors.append(repr(error))
                conn = None

    def new_connection_client():
        while not stop.is_set():
            try:
                status, _, conn = get(srv, context(pki))
                conn.close()
                if status != 200:
                    errors.append(f"status {status}")
                served[0] += 1
            except Exception as error:  # noqa: BLE001
                errors.append(repr(error))

    try:
        wait_ready(srv, pki)
        assert served_certificate(srv.port) == der(pki.root / "server.pem")
        threads = [threading.Thread(target=f, daemon=True) for f in (keep_alive_client, keep_alive_client,
                                                                      new_connection_client, new_connection_client)]
        for t in threads:
            t.start()
        time.sleep(1)
        for round_, cert in enumerate(["renewed", "server", "renewed"]):
            for suffix in ("pem", "key"):
                (tmp_path / f"served.{suffix}").write_bytes((pki.root / f"{cert}.{suffix}").read_bytes())
            srv.process.send_signal(1)  # SIGHUP
            deadline = time.monotonic() + 10
            while served_certificate(srv.port) != der(pki.root / f"{cert}.pem"):
                assert time.monotonic() < deadline, f"round {round_}: the new certificate is not served"
                time.sleep(0.05)
            time.sleep(0.5)
        # A broken renewal keeps the certificate that works.
        (tmp_path / "served.pem").write_text("not a certificate\n")
        srv.process.send_signal(1)
        time.sleep(1)
        stop.set()
        for t in threads:
            t.join(30)
        assert errors == [], errors[:5]
        assert served[0] > 100, served[0]
        assert served_certificate(srv.port) == der(pki.root / "renewed.pem")
        assert metric(srv, pki, "ich_tls_reloads_total", 'result="reloaded"') == 3
        assert metric(srv, pki, "ich_tls_reloads_total", 'result="failed"') == 1
        log = srv.log_text()
        assert "tls reload failed; the previous certificate stays in use" in log and "not a certificate" not in log
        print(f"\nreload under load: {served[0]} requests over 4 clients, 3 reloads and 1 refused, 0 errors")
    finally:
        stop.set()
        srv.stop()
    assert srv.process.returncode == 0


def test_a_stalled_handshake_is_cut_at_the_head_deadline(tmp_path, pki):
    srv = tls_server(tmp_path, pki)
    try:
        wait_ready(srv, pki)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as raw:
            raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello, then nothing
            started = time.monotonic()
            assert raw.recv(1) == b""
            waited = time.monotonic() - started
        assert 8 < waited < 20, waited
        assert metric(srv, pki, "ich_http_connections_refused_total", 'reason="head_timeout"') >= 1
    finally:
        srv.stop()


def test_webhooks_verify_the_receiver_and_reach_one_a_private_ca_signed(tmp_path, pki, bundles):  # noqa: F811
    receiver_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    receiver_tls.load_cert_chain(pki.root / "server.pem", pki.root / "server.key")
    receiver = Receiver(tls=receiver_tls)
    url = receiver.url
    try:
        untrusting = webhook_server(tmp_path, bundles["positive"], [url], data="untrusting")
        with untrusting:
            post_study(untrusting, 2)
            deadline = time.monotonic() + 30
            while "webhook delivery failed; will retry" not in untrusting.log_text():
                assert time.monotonic() < deadline, untrusting.log_tail()
                time.sleep(0.2)
        assert receiver.requests == []
        trusting = webhook_server(tmp_path, bundles["positive"], [url], data="trusting",
                                  extra_env={"ICH_WEBHOOK_CACERT": str(pki.ca)})
        with trusting:
            files = post_study(trusting, 2)
            headers, body = receiver.wait(1)[0]
            assert json.loads(body)["studyInstanceUID"] == files[0].study
    finally:
        receiver.close()


def test_listening_beyond_loopback_without_tls_is_warned_about(tmp_path, pki):
    warning = "listening beyond loopback without TLS"
    plain = Server(tmp_path / "plain", service.test_bundle(), args=["--threads", "2"])
    plain.host = "0.0.0.0"
    plain.start(ready=False)
    plain.stop()
    assert warning in plain.log_text()
    loopback = Server(tmp_path / "loopback", service.test_bundle(), args=["--threads", "2"])
    loopback.start(ready=False)
    loopback.stop()
    assert warning not in loopback.log_text()
    secured = tls_server(tmp_path, pki, "--host", "0.0.0.0")
    secured.stop()
    assert "host=0.0.0.0" in secured.log_text() and "tls=true" in secured.log_text()
    assert warning not in secured.log_text()


def test_a_connection_refused_at_the_accept_gets_its_answer_over_tls(tmp_path, pki):
    """The 429 is written before the client's first byte: the write drives the handshake."""
    srv = tls_server(tmp_path, pki, "--max-connections-per-client", "1")
    try:
        held = http.client.HTTPSConnection("localhost", srv.port, context=context(pki), timeout=30)
        held.connect()
        status, body, refused = get(srv, context(pki))
        assert status == 429 and json.loads(body)["type"].endswith("too-many-connections-from-client")
        refused.close()
        status, _, _ = get(srv, context(pki), conn=held)
        assert status == 200
        held.close()
    finally:
        srv.stop()
