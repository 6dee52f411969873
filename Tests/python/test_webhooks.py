"""Critical-finding webhooks (issue 7): a local receiver checks what `ich-server` sends.

Each test starts its own server on a copy of the seeded test bundle whose
`any` threshold is 0 (every study is positive) or 1 (none is), with
--stable-age 0.5 and ICH_WEBHOOK_RETRY_BASE 0.2, and a receiver on
127.0.0.1 that answers from a script of statuses (200 once the script runs
out). The signature is checked with Python's hmac, the body against
openapi.yaml's `Notification` schema and the study resource.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service  # noqa: E402
from service import Server, contract, make_study  # noqa: E402

SECRET = "webhook-test-secret-0123456789"
PUBLIC_URL = "https://ich.example.org"
MARKER = "PATIENT^SECRET"


class Receiver:
    """An HTTP receiver that records each POST and answers from `statuses`."""

    def __init__(self, port: int = 0, statuses: list[int] | None = None, tls=None):
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.arrived:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.arrived.notify_all()
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        if tls is not None:  # an ssl.SSLContext: the receiver speaks HTTPS
            self.http.socket = tls.wrap_socket(self.http.socket, server_side=True)
        self.port = self.http.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/ich-hook?key=abc"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 60) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.requests)} of {count} notifications arrived in {timeout} s"
                self.arrived.wait(left)
            return list(self.requests)

    def close(self):
        self.http.shutdown()
        self.http.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    base = service.test_bundle()
    made = {}
    for name, threshold in (("positive", 0.0), ("negative", 1.0)):
        folder = tmp_path_factory.mktemp(name) / "bundle"
        shutil.copytree(base, folder)
        manifest = json.loads((folder / "model.json").read_text())
        manifest["thresholds"][0] = threshold
        (folder / "model.json").write_text(json.dumps(manifest))
        made[name] = folder
    return made


def webhook_server(tmp_path: Path, bundle: Path, urls: list[str], *, data: str = "data", extra_env: dict | None = None) -> Server:
    env = {"ICH_WEBHOOK_URLS": ",".join(urls), "ICH_WEBHOOK_SECRET": SECRET, "ICH_WEBHOOK_RETRY_BASE": "0.2",
           "ICH_PUBLIC_URL": PUBLIC_URL + "/", **(extra_env or {})}
    server = Server(tmp_path / data, bundle, args=["--stable-age", "0.5", "--threads", "2"], env=env)
    server.tokens = {scope: server.token(scope) for scope in ("ingest", "read", "admin")}
    return server


def post_study(server: Server, count: int, study: str | None = None) -> list:
    files = make_study(count, study=study)
    files[0].data = service.ct_bytes(study=files[0].study, series=files[0].series, sop=files[0].sop, instance=1,
                                     position=files[0].position, patient_name=MARKER)
    client = server.client(server.tokens["ingest"])
    for f in files:
        assert client.post_instance(f.data).status in (200, 202)
    return files


def check_notification(headers: dict[str, str], body: bytes, files) -> dict:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-ich-signature"], expected)
    assert headers["content-type"] == "application/json"
    note = json.loads(body)
    assert contract().schema_errors("/components/schemas/Notification", note) == []
    assert headers["x-ich-event-id"] == note["id"]
    assert note["studyInstanceUID"] == files[0].study
    assert note["link"] == f"{PUBLIC_URL}/v1/studies/{files[0].study}"
    assert note["model"]["clinicalUse"] is False and note["model"]["notice"]
    assert MARKER.encode() not in body
    return note


def test_positive_study_is_notified_once_signed_with_its_key_slices(tmp_path, bundles):
    receiver = Receiver()
    try:
        with webhook_server(tmp_path, bundles["positive"], [receiver.url]) as server:
            files = post_study(server, 4)
            (headers, body), = receiver.wait(1)
            note = check_notification(headers, body, files)
            assert note["event"] == "study.positive"
            assert note["counts"] == {"received": 4, "processed": 4, "failed": 0, "skipped": 0, "queued": 0}
            study = server.client(server.tokens["read"]).study(files[0].study).json()
            assert study["status"] == "complete"
            by_label = {label["label"]: label for label in study["labels"]}
            assert [p["label"] for p in note["positiveLabels"]] == [k for k, v in by_label.items() if v["positive"]]
            for label in note["positiveLabels"]:
                summary = by_label[label["label"]]
                assert label["keySlice"] == summary["maxSlice"]
                assert label["probability"] == pytest.approx(summary["probability"], abs=1e-6)
                assert label["slicesAboveThreshold"] == summary["slicesAboveThreshold"]
            time.sleep(2)
            assert len(receiver.requests) == 1, "a settled study is not notified again"
            metrics = server.client(server.tokens["admin"], validate=False).get("/metrics").body.decode()
            assert 'ich_notifications_total{result="delivered"} 1' in metrics
            assert 'ich_notifications_total{result="queued"} 1' in metrics

            # More slices reopen the study; completing again positive sends an update.
            post_study(server, 2, study=files[0].study)
            (_, second), = receiver.wait(2)[1:]
            update = json.loads(second)
            assert update["event"] == "study.positive.updated" and update["id"] != note["id"]
            assert update["counts"]["processed"] == 6
        assert "ich-hook" not in server.log_text(), "webhook URLs (which may carry keys) are not logged"
    finally:
        receiver.close()


def test_negative_study_sends_nothing(tmp_path, bundles):
    receiver = Receiver()
    try:
        with webhook_server(tmp_path, bundles["negative"], [receiver.url]) as server:
            files = post_study(server, 3)
            client = server.client(server.tokens["read"])
            assert client.wait_complete(files[0].study)["status"] == "complete"
            time.sleep(2)
            assert receiver.requests == []
    finally:
        receiver.close()


def test_study_with_nothing_to_triage_is_notified_not_assessable(tmp_path, bundles):
    """Sagittal slices only: no triageable series, so a radiologist is told to read it unaided,
    even by a model whose threshold makes every assessed study negative."""
    receiver = Receiver()
    try:
        with webhook_server(tmp_path, bundles["negative"], [receiver.url]) as server:
            study = service.new_uid()
            client = server.client(server.tokens["ingest"])
            files = []
            for k in range(3):
                data = service.ct_bytes(study=study, sop=service.new_uid(), instance=k + 1, position=(5.0 * k, 0, 0),
                                        orientation=(0, 1, 0, 0, 0, -1), patient_name=MARKER)
                files.append(service.SliceFile(sop="", study=study, series=study + ".1", instance=k + 1, position=None, data=data))
                response = client.post_instance(data)
                assert response.status == 200 and response.json()["reason"] == "not-axial", response.body
            (headers, body), = receiver.wait(1)
            note = check_notification(headers, body, files)
            assert note["event"] == "study.not_assessable"
            assert note["notAssessableReason"] == "no-triageable-series"
            assert note["counts"] == {"received": 3, "processed": 0, "failed": 0, "skipped": 3, "queued": 0}
            assert note["positiveLabels"] == []
            listed = server.client(server.tokens["read"]).get("/v1/studies?assessable=false").json()
            assert [s["studyInstanceUID"] for s in listed["studies"]] == [study]
    finally:
        receiver.close()


def test_failed_attempts_are_retried_with_the_same_notification(tmp_path, bundles):
    receiver = Receiver(statuses=[500, 503])
    other = Receiver()
    try:
        with webhook_server(tmp_path, bundles["positive"], [receiver.url, other.url]) as server:
            files = post_study(server, 2)
            attempts = receiver.wait(3)
            (_, delivered), = other.wait(1)
            assert len({body for _, body in attempts} | {delivered}) == 1, "every attempt and URL gets the same bytes"
            for headers, body in attempts:
                check_notification(headers, body, files)
            time.sleep(1.5)
            assert len(receiver.requests) == 3, "a 2xx ends the retries"
            metrics = server.client(server.tokens["admin"], validate=False).get("/metrics").body.decode()
            assert 'ich_notifications_total{result="retry"} 2' in metrics
            assert 'ich_notifications_total{result="delivered"} 2' in metrics
            assert "will retry" in server.log_text()
    finally:
        receiver.close()
        other.close()


def test_notifications_survive_a_crash_while_the_receiver_is_down(tmp_path, bundles):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    server = webhook_server(tmp_path, bundles["positive"], [url]).start()
    try:
        files = post_study(server, 2)
        deadline = time.monotonic() + 60
        while "will retry" not in server.log_text():
            assert time.monotonic() < deadline, "no failed attempt logged"
            time.sleep(0.1)
        server.kill()
        receiver = Receiver(port=port)
        try:
            server.start()
            (headers, body), = receiver.wait(1)
            check_notification(headers, body, files)
        finally:
            receiver.close()
    finally:
        server.stop()


def test_webhooks_without_a_secret_refuse_to_start(tmp_path, bundles):
    server = Server(tmp_path / "data", bundles["positive"], env={"ICH_WEBHOOK_URLS": "http://127.0.0.1:9/hook"})
    with pytest.raises(service.ServiceError):
        server.start()
    assert server.process.returncode not in (0, None)
    assert "webhooks need a secret" in server.log_text()
