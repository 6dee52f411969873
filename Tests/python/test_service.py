"""`ich-server` over real sockets: the HTTP behaviour of issue 4 and what needs the real model or process.

Routing, tokens and scopes, upload and STOW-RS errors, query parameters, the
worklist, deletion and restart recovery are tested in-process by Swift
(Tests/ServiceTests, `ServiceHarness`); this file keeps what needs sockets,
separate processes, signals or the real forward pass.

One server (module scope) serves most tests: the small seeded InceptionV3
bundle (128x128, `service.test_bundle`), --max-batch 8, --max-delay-ms 10,
--threads 2, --stable-age 1, --max-body-bytes 8 MiB. Restart, overload and
SIGTERM tests start their own servers. Slices are 64x64 synthetic CT files
unless a test needs more (the Keras parity test uses the 512x512 files of
Tools/make_test_dicoms.py).

Every response read through `service.Client` is checked against openapi.yaml
(status documented for the operation, media type, JSON schema, required
headers); raw-socket tests check theirs explicitly.

The binary is `$ICH_SERVER` (default `.build/release/ich-server`); a missing
binary fails the run.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service  # noqa: E402
from service import (  # noqa: E402
    LABELS,
    RawConnection,
    Server,
    assert_problem,
    build_request,
    chunked,
    contract,
    ct_bytes,
    make_study,
    multipart_related,
    new_uid,
)

MAX_BODY = 8 * 1024 * 1024
# No failed-authentication limit: the auth tests fail on purpose, many times a minute.
SERVER_ARGS = ["--max-batch", "8", "--max-delay-ms", "10", "--threads", "2", "--stable-age", "1",
               "--max-body-bytes", str(MAX_BODY), "--auth-failure-limit", "0"]
MARKER = "PATIENT^SECRET"
UNKNOWN_UID = "1.2.826.0.1.3680043.8.498.999999999"


# --------------------------------------------------------------------------
# Fixtures


def require_server_binary() -> None:
    problem = service.binary_problem(service.server_binary())
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def bundle() -> Path:
    return service.test_bundle()


@pytest.fixture(scope="module")
def server(bundle, tmp_path_factory):
    require_server_binary()
    folder = tmp_path_factory.mktemp("server")
    srv = Server(folder / "data", bundle, args=SERVER_ARGS)
    # Tokens made before the start (test_token_created_while_running covers the other case)
    srv.tokens = {scope: srv.token(scope, name=f"test-{scope}") for scope in ("ingest", "read", "admin")}
    srv.start()
    yield srv
    code = srv.stop()
    assert code == 0, f"SIGTERM: exit status {code}\n{srv.log_tail()}"


@pytest.fixture(scope="module")
def tokens(server) -> dict[str, str]:
    return server.tokens


@pytest.fixture(scope="module")
def admin(server, tokens):
    return server.client(tokens["admin"])


@pytest.fixture(scope="module")
def ingest(server, tokens):
    return server.client(tokens["ingest"])


@pytest.fixture(scope="module")
def reader(server, tokens):
    return server.client(tokens["read"])


@pytest.fixture
def fresh_server(bundle, tmp_path):
    """Factory for servers of one test (own data dir); each is killed at teardown if still running."""
    require_server_binary()
    started: list[Server] = []

    def make(args=(), data_dir: Path | None = None) -> Server:
        srv = Server(data_dir or tmp_path / "data", bundle, args=list(args),
                     log_path=tmp_path / f"server-{len(started)}.log")
        started.append(srv)
        return srv

    yield make
    for srv in started:
        if srv.running:
            srv.kill()


def readable(sock, timeout: float) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


def send_until_answered(conn: RawConnection, head: bytes, pieces, *, first_wait: float = 0.5) -> None:
    """Sends the head, then body pieces while the server has not answered (it may
    answer early, e.g. 413 from Content-Length, and close)."""
    conn.send(head)
    if readable(conn.sock, first_wait):
        return
    for piece in pieces:
        if readable(conn.sock, 0) or not conn.try_send(piece):
            return


def uids_in(text: str) -> set[str]:
    return set(re.findall(r"\b\d+(?:\.\d+){3,}\b", text))


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def post_study(client, files, *, stow: bool = True) -> None:
    if stow:
        response = client.stow([f.data for f in files])
        assert response.status == 200, repr(response)
    else:
        for f in files:
            response = client.post_instance(f.data)
            assert response.status == 202, repr(response)


def check_study_aggregate(study: dict) -> None:
    """The study's labels, counts and order follow from its slices (openapi.yaml Study, LabelResult)."""
    slices = study["slices"]

    def order_key(s):
        return (s["position"] is None, s["position"] if s["position"] is not None else 0,
                s["instanceNumber"] is None, s["instanceNumber"] if s["instanceNumber"] is not None else 0,
                s["sopInstanceUID"])

    assert [s["sopInstanceUID"] for s in slices] == [s["sopInstanceUID"] for s in sorted(slices, key=order_key)]
    done = [s for s in slices if s["status"] == "done"]
    failed = [s for s in slices if s["status"] == "failed"]
    for s in slices:
        assert (s["probabilities"] is not None) == (s["status"] == "done"), s
        assert (s["error"] is not None) == (s["status"] == "failed"), s
    counts = study["counts"]
    assert counts["received"] == len(slices)
    assert counts["processed"] == len(done) + len(failed)
    assert counts["failed"] == len(failed)
    assert counts["queued"] == counts["received"] - counts["processed"]
    assert [entry["label"] for entry in study["labels"]] == LABELS
    for entry in study["labels"]:
        values = [s["probabilities"][entry["label"]] for s in done]
        if not values:
            assert entry["probability"] is None and entry["positive"] is None and entry["maxSlice"] is None
            assert entry["slicesAboveThreshold"] == 0
            continue
        top = max(values)
        first = next(s for s in done if s["probabilities"][entry["label"]] == top)  # the first in order on ties
        assert entry["probability"] == top, entry
        assert entry["maxSlice"] == {"sopInstanceUID": first["sopInstanceUID"], "frameNumber": first["frameNumber"],
                                     "instanceNumber": first["instanceNumber"]}, entry
        assert entry["slicesAboveThreshold"] == sum(v >= entry["threshold"] for v in values), entry
        assert entry["positive"] == (top >= entry["threshold"]), entry


# --------------------------------------------------------------------------
# Routing


def test_head_is_allowed_wherever_get_is(server, reader):
    for client, target in ((server.client(), "/healthz"), (server.client(), "/readyz"), (reader, "/v1/studies")):
        head = client.request("HEAD", target)
        get = client.get(target)
        assert head.status == get.status == 200, (head, get)
        assert head.body == b""
        assert head.media_type == get.media_type


# --------------------------------------------------------------------------
# Tokens


def test_token_created_while_running_is_accepted(server):
    """`ich-server token create` against the data directory of a running server: the
    new token works at once (operators create tokens without a restart)."""
    token = server.token("read", name="made-while-running")
    response = server.client(token).get("/v1/studies?limit=1")
    assert response.status == 200, repr(response)


# --------------------------------------------------------------------------
# POST /v1/instances


def test_post_instance_multi_frame_is_a_slice_per_frame(ingest, reader):
    """Each frame of a multi-frame object is triaged as a slice, with the result the same frame gets
    when it arrives as a single-frame object of its own (pydicom writes that copy)."""
    import pydicom

    data = service.case_bytes("multi_frame.dcm")
    ds = pydicom.dcmread(io.BytesIO(data))
    sop = str(ds.SOPInstanceUID)
    response = ingest.post_instance(data)
    assert response.status in (200, 202), repr(response)  # another run of this test may have stored it first
    instance = reader.wait_instance_done(sop)
    assert instance["status"] == "done" and instance["numberOfFrames"] == 2, instance
    frames = instance["frames"]
    assert [f["frameNumber"] for f in frames] == [1, 2] and all(f["status"] == "done" for f in frames)
    for label, p in instance["probabilities"].items():
        assert p == max(f["probabilities"][label] for f in frames), label

    single = ds.copy()
    single.PixelData = ds.pixel_array[1].astype("<i2" if ds.PixelRepresentation else "<u2").tobytes()
    del single.NumberOfFrames
    single.StudyInstanceUID, single.SeriesInstanceUID, single.SOPInstanceUID = (service.new_uid() for _ in range(3))
    buffer = io.BytesIO()
    single.save_as(buffer, enforce_file_format=True)
    assert ingest.post_instance(buffer.getvalue()).status == 202
    alone = reader.wait_instance_done(str(single.SOPInstanceUID))
    for label, p in alone["probabilities"].items():
        assert p == pytest.approx(frames[1]["probabilities"][label], abs=1e-5), label


# Well-formed DICOM that the series rules do not triage: acknowledged, with the reason.
SKIPPED = {"not-ct": "not-ct", "unsupported-transfer-syntax": "unsupported-image",
           "unsupported-photometric-interpretation": "unsupported-image", "unsupported-pixel-format": "unsupported-image",
           "unsupported-modality-lut": "unsupported-image", "no-pixel-data": "not-image"}
# Well-formed headers whose compressed pixels are found bad only when the batch decodes them:
# acknowledged, then the slice fails with the decoder's error type.
DECODED_IN_BATCH = {"corrupt-pixel-data", "pixel-data-mismatch"}


def decoder_error_cases() -> list[tuple[str, str]]:
    generator = service._generator()
    return [(c.name, c.expect) for c in generator.CASES if c.expect != "ok" and c.name != "empty.dcm"]


@pytest.mark.parametrize("name,slug", decoder_error_cases(), ids=[n for n, _ in decoder_error_cases()])
def test_post_instance_bad_input_gets_the_decoders_slug(ingest, reader, name, slug):
    """Each kind of odd file of Tools/make_test_dicoms.py: stored and skipped with the series
    rules' reason when it is well-formed DICOM the model cannot use, stored and failed in the
    batch when only its compressed pixels are bad, 400 with the decoder's error type as the
    slug when it is malformed."""
    data = service.case_bytes(name)
    response = ingest.post_instance(data)
    if slug in SKIPPED:
        import pydicom

        if str(pydicom.dcmread(io.BytesIO(data), force=True).get("Modality", "")) != "CT":
            slug = "not-ct"
        assert response.status == 200, repr(response)
        accepted = response.json()
        # Another test may have stored the same file first: then it is a duplicate of a skipped instance.
        assert accepted["status"] in ("skipped", "duplicate") and accepted.get("reason", SKIPPED[slug]) == SKIPPED[slug]
        instance = reader.request("GET", accepted["instance"]).json()
        assert instance["status"] == "skipped" and instance["skipReason"] == SKIPPED[slug]
    elif slug in DECODED_IN_BATCH:
        assert response.status in (200, 202), repr(response)
        instance = reader.wait_instance_done(response.json()["sopInstanceUID"])
        assert instance["status"] == "failed" and instance["error"]["type"] == slug, instance
    else:
        assert_problem(response, 400, slug)


def test_an_htj2k_codestream_that_aborts_openjpeg_fails_its_slices_not_the_server(server, ingest, reader):
    """FuzzDICOM found an HTJ2K codestream on which OpenJPEG's HT decoder fails an assert() and aborts;
    the shim decodes HTJ2K in a forked child, so the frames fail as corrupt and the server serves on."""
    import pydicom

    data = (service.REPO_ROOT / "Fuzz" / "corpus" / "dicom" / "htj2k_openjpeg_assert.dcm").read_bytes()
    response = ingest.post_instance(data)
    assert response.status in (200, 202), repr(response)
    instance = reader.wait_instance_done(str(pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID))
    assert any(f["status"] == "failed" and f["error"]["type"] == "corrupt-pixel-data" for f in instance["frames"]), instance
    assert server.running and reader.get("/healthz").status == 200
    assert "Assertion" not in server.log_text() and "Program crashed" not in server.log_text()


def test_archive_style_uids_work_everywhere(ingest, reader):
    """RSNA 2019 writes ID_<hex> UIDs and anonymisers write hashes: accepted in STOW, single
    uploads and every API path."""
    study, series = "ID_" + uuid.uuid4().hex[:10], uuid.uuid4().hex
    sops = ["ID_" + uuid.uuid4().hex[:10] for _ in range(2)]
    files = [service.ct_bytes(study=study, series=series, sop=sop, instance=k + 1, position=(0, 0, 5 * k))
             for k, sop in enumerate(sops)]
    assert ingest.post_instance(files[0]).status == 202
    response = ingest.stow([files[1]], study)
    assert response.status == 200, repr(response)
    result = reader.study(study, wait=30).json()
    assert result["status"] == "complete" and result["primarySeriesInstanceUID"] == series
    assert [s["sopInstanceUID"] for s in result["slices"]] == sops
    assert reader.request("GET", f"/v1/instances/{sops[0]}").json()["status"] == "done"


# --------------------------------------------------------------------------
# STOW-RS


def referenced(body: dict) -> list[dict]:
    return body.get("00081199", {}).get("Value", [])


def value(item: dict, tag: str):
    return item[tag]["Value"][0]


def test_stow_chunked_as_dicomweb_client_sends_it(ingest, reader):
    """Chunked body, quoted boundary, Connection: Keep-Alive (docs: dicomweb-facts.md)."""
    files = make_study(3)
    content_type, body = multipart_related([f.data for f in files], boundary=str(__import__("uuid").uuid4()))
    response = ingest.request("POST", "/dicomweb/studies", body, content_type=content_type, chunk_sizes=(1000, 4093, 7),
                              headers={"Accept": "*/*"})
    assert response.status == 200, repr(response)
    assert len(referenced(response.json())) == 3
    study = reader.wait_complete(files[0].study)
    assert {s["sopInstanceUID"] for s in study["slices"]} == {f.sop for f in files}


# --------------------------------------------------------------------------
# HTTP/1.1 on one connection


def test_keep_alive_several_requests_on_one_connection(server, tokens):
    auth = [("Authorization", f"Bearer {tokens['admin']}")]
    f = make_study(1)[0]
    with server.client().connection() as conn:
        for _ in range(3):
            conn.send(build_request("GET", "/healthz"))
            response = conn.read_response(target="/healthz")
            assert response.status == 200 and not response.closes
        conn.send(build_request("POST", "/v1/instances", headers=auth + [("Content-Type", "application/dicom")],
                                body=f.data))
        response = conn.read_response(method="POST", target="/v1/instances")
        assert response.status == 202, repr(response)
        contract().assert_conforms(response)
        conn.send(build_request("GET", f"/v1/instances/{f.sop}", headers=auth))
        response = conn.read_response(target=f"/v1/instances/{f.sop}")
        assert response.status == 200 and response.json()["sopInstanceUID"] == f.sop
        contract().assert_conforms(response)
        conn.send(build_request("GET", "/nope", headers=auth))  # an error keeps the connection too
        assert conn.read_response(target="/nope").status == 404
        conn.send(build_request("GET", "/healthz", headers=[("Connection", "close")]))
        assert conn.read_response(target="/healthz").status == 200
        assert conn.is_closed(), "Connection: close must close the connection after the response"


def test_pipelined_requests_are_answered_in_order(server, tokens):
    auth = [("Authorization", f"Bearer {tokens['admin']}")]
    f = make_study(1)[0]
    requests = [
        ("GET", "/healthz", build_request("GET", "/healthz")),
        ("POST", "/v1/instances", build_request("POST", "/v1/instances", body=f.data,
                                                 headers=auth + [("Content-Type", "application/dicom")])),
        ("GET", f"/v1/instances/{f.sop}", build_request("GET", f"/v1/instances/{f.sop}", headers=auth)),
        ("GET", f"/v1/studies/{UNKNOWN_UID}", build_request("GET", f"/v1/studies/{UNKNOWN_UID}", headers=auth)),
        ("GET", "/readyz", build_request("GET", "/readyz")),
    ]
    with server.client().connection() as conn:
        conn.send(b"".join(r for _, _, r in requests))
        responses = [conn.read_response(method=m, target=t) for m, t, _ in requests]
    assert [r.status for r in responses] == [200, 202, 200, 404, 200], responses
    for response in responses:
        contract().assert_conforms(response)
    assert responses[2].json()["sopInstanceUID"] == f.sop


def test_chunked_request_body_sent_slowly(server, tokens, reader):
    f = make_study(1)[0]
    body = chunked(f.data, (1, 7, 1000, 333, 65536))
    head = build_request("POST", "/v1/instances", headers=[("Authorization", f"Bearer {tokens['ingest']}"),
                                                           ("Content-Type", "application/dicom"),
                                                           ("Transfer-Encoding", "chunked")])
    with server.client().connection() as conn:
        conn.send(head)
        for start in range(0, len(body), 1500):  # pieces cut across chunk-size lines and CRLFs
            conn.send(body[start:start + 1500])
            time.sleep(0.002)
        response = conn.read_response(method="POST", target="/v1/instances")
    assert response.status == 202, repr(response)
    contract().assert_conforms(response)
    assert reader.wait_instance_done(f.sop)["status"] == "done"


def test_chunked_with_extensions_and_trailer(server, tokens):
    f = make_study(1)[0]
    body = chunked(f.data, (4096,), extension=";name=value", trailer=b"X-Trailer: yes\r\n")
    with server.client().connection() as conn:
        conn.send(build_request("POST", "/v1/instances", body=body,
                                headers=[("Authorization", f"Bearer {tokens['ingest']}"),
                                         ("Content-Type", "application/dicom"), ("Transfer-Encoding", "chunked")]))
        response = conn.read_response(method="POST", target="/v1/instances")
        assert response.status == 202, repr(response)
        conn.send(build_request("GET", "/healthz"))  # the trailer was consumed: the connection is still in sync
        assert conn.read_response(target="/healthz").status == 200


def test_expect_100_continue(server, tokens):
    f = make_study(1)[0]
    head = build_request("POST", "/v1/instances", headers=[
        ("Authorization", f"Bearer {tokens['ingest']}"), ("Content-Type", "application/dicom"),
        ("Content-Length", str(len(f.data))), ("Expect", "100-continue")])
    with server.client().connection() as conn:
        conn.send(head)
        interim = conn.read_response(method="POST", target="/v1/instances", timeout=10, skip_informational=False)
        assert interim.status == 100, repr(interim)
        conn.send(f.data)
        response = conn.read_response(method="POST", target="/v1/instances")
        assert response.status == 202, repr(response)
        contract().assert_conforms(response)
        conn.send(build_request("GET", "/healthz"))
        assert conn.read_response(target="/healthz").status == 200


def test_expect_100_continue_refused_before_the_body(server):
    """A request that will be refused (no token) is answered at once, without 100 Continue."""
    head = build_request("POST", "/v1/instances", headers=[
        ("Content-Type", "application/dicom"), ("Content-Length", str(MAX_BODY // 2)), ("Expect", "100-continue")])
    with server.client().connection() as conn:
        conn.send(head)
        response = conn.read_response(method="POST", target="/v1/instances", timeout=10, skip_informational=False)
    assert response.status == 401, repr(response)
    contract().assert_conforms(response)


def test_concurrent_uploads(server, ingest, reader):
    studies = [make_study(4, seed=100 + i) for i in range(6)]

    def upload(index):
        files = studies[index]
        if index % 2:
            return [ingest.stow([f.data for f in files]).status]
        return [ingest.post_instance(f.data).status for f in files]

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(upload, range(len(studies))))
    assert statuses == [[202] * 4 if i % 2 == 0 else [200] for i in range(len(studies))]
    for files in studies:
        study = reader.wait_complete(files[0].study)
        assert study["counts"] == {"received": 4, "processed": 4, "failed": 0, "skipped": 0, "queued": 0}
        check_study_aggregate(study)


def test_concurrent_duplicates_are_stored_once(ingest, reader):
    f = make_study(1, seed=150)[0]
    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(r.status for r in pool.map(lambda _: ingest.post_instance(f.data), range(6)))
    assert statuses == [200] * 5 + [202], statuses
    files = make_study(2, seed=151)
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: ingest.stow([g.data for g in files]), range(4)))
    assert sorted(r.status for r in responses) == [200, 202, 202, 202]
    study = reader.wait_complete(files[0].study)
    assert study["counts"] == {"received": 2, "processed": 2, "failed": 0, "skipped": 0, "queued": 0}
    assert reader.wait_complete(f.study)["counts"]["received"] == 1


# --------------------------------------------------------------------------
# Framing, limits


def framing_requests(token: str) -> dict[str, bytes]:
    auth = f"Authorization: Bearer {token}\r\n"
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    return {
        "te-and-cl": (b"POST /v1/instances HTTP/1.1\r\nHost: x\r\n" + auth.encode()
                      + b"Content-Type: application/dicom\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + b"0\r\n\r\n" + smuggled),
        "cl-and-te": (b"POST /v1/instances HTTP/1.1\r\nHost: x\r\n" + auth.encode()
                      + b"Transfer-Encoding: chunked\r\nContent-Type: application/dicom\r\nContent-Length: 40\r\n\r\n"
                      + b"0\r\n\r\n" + smuggled),
        "two-content-lengths": (b"POST /v1/instances HTTP/1.1\r\nHost: x\r\n" + auth.encode()
                                + b"Content-Type: application/dicom\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\n"
                                + b"abcd" + smuggled),
        "content-length-list": (b"POST /v1/instances HTTP/1.1\r\nHost: x\r\n" + auth.encode()
                                + b"Content-Type: application/dicom\r\nContent-Length: 4, 40\r\n\r\nabcd" + smuggled),
        "bad-chunk-size": (b"POST /v1/instances HTTP/1.1\r\nHost: x\r\n" + auth.encode()
                           + b"Content-Type: application/dicom\r\nTransfer-Encoding: chunked\r\n\r\n"
                           + b"zz\r\nabc\r\n0\r\n\r\n" + smuggled),
        "chunk-size-overflow": (b"POST /v1/instances HTTP/1.1\r\nHost: x\r\n" + auth.encode()
                                + b"Content-Type: application/dicom\r\nTransfer-Encoding: chunked\r\n\r\n"
                                + b"1000000000000000000000004\r\nabcd\r\n0\r\n\r\n" + smuggled),
        "obs-fold": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Folded: first\r\n  continued\r\n\r\n" + smuggled),
        "negative-content-length": (b"POST /v1/instances HTTP/1.1\r\nHost: x\r\n" + auth.encode()
                                    + b"Content-Type: application/dicom\r\nContent-Length: -4\r\n\r\nabcd" + smuggled),
    }


FRAMING_SLUGS = {"te-and-cl": "ambiguous-framing", "cl-and-te": "ambiguous-framing",
                 "two-content-lengths": "ambiguous-framing", "bad-chunk-size": "bad-chunk",
                 "chunk-size-overflow": "bad-chunk"}


@pytest.mark.parametrize("name", list(framing_requests("t")))
def test_ambiguous_framing_is_400_and_closes(server, tokens, name):
    data = framing_requests(tokens["admin"])[name]
    with server.client().connection(timeout=10) as conn:
        conn.send(data)
        response = conn.read_response(method="POST", target="/v1/instances")
        assert_problem(response, 400, FRAMING_SLUGS.get(name))
        contract().assert_conforms(response, "GET", "/healthz")  # any-route 400
        assert conn.is_closed(), "the connection must be closed after a framing error (no smuggled request)"


def test_bad_request_line_is_400(server):
    for line in (b"GET\r\n\r\n", b"G\x00T /healthz HTTP/1.1\r\n\r\n", b"GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n",
                 b"GET healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /healthz HTTP/1.1\r\n\r\n"):
        with server.client().connection(timeout=10) as conn:
            conn.send(line)
            response = conn.read_response(target="/healthz")
            assert_problem(response, 400)


def test_body_over_the_limit_is_413(server, tokens):
    auth = ("Authorization", f"Bearer {tokens['ingest']}")
    size = MAX_BODY + 1024 * 1024
    piece = b"\0" * (256 * 1024)
    # Declared by Content-Length
    with server.client().connection(timeout=30) as conn:
        head = build_request("POST", "/v1/instances", headers=[auth, ("Content-Type", "application/dicom"),
                                                               ("Content-Length", str(size))])
        send_until_answered(conn, head, [piece] * (size // len(piece)))
        response = conn.read_response(method="POST", target="/v1/instances")
    assert_problem(response, 413, "body-too-large")
    contract().assert_conforms(response, "POST", "/v1/instances")
    # Chunked: found out while reading
    chunk = chunked(piece, (len(piece),))[:-5]  # one chunk, without the last-chunk
    with server.client().connection(timeout=30) as conn:
        head = build_request("POST", "/dicomweb/studies", headers=[
            auth, ("Content-Type", 'multipart/related; type="application/dicom"; boundary=x'),
            ("Transfer-Encoding", "chunked")])
        send_until_answered(conn, head, [chunk] * (size // len(piece)))
        response = conn.read_response(method="POST", target="/dicomweb/studies")
    assert_problem(response, 413, "body-too-large")
    contract().assert_conforms(response, "POST", "/dicomweb/studies")


def test_header_over_the_limit_is_431(server, tokens):
    big = "x" * (256 * 1024)
    head = (f"GET /v1/studies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tokens['read']}\r\nX-Big: ").encode()
    with server.client().connection(timeout=30) as conn:
        send_until_answered(conn, head, [big[i:i + 8192].encode() for i in range(0, len(big), 8192)] + [b"\r\n\r\n"],
                            first_wait=0.1)
        response = conn.read_response(target="/v1/studies")
    assert_problem(response, 431, "header-too-large")
    contract().assert_conforms(response, "GET", "/v1/studies")


def test_too_many_headers_is_431(server):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(200)) + b"\r\n"
    with server.client().connection(timeout=30) as conn:
        send_until_answered(conn, head, [])
        response = conn.read_response(target="/healthz")
    assert response.status == 431, repr(response)
    contract().assert_conforms(response, "GET", "/healthz")


def test_header_read_timeout_is_408(server):
    """A head that stops arriving gets 408 after the header-read timeout (10 s by default) and a close."""
    with server.client().connection(timeout=30) as conn:
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        response = conn.read_response(target="/healthz", timeout=30)
        elapsed = time.monotonic() - started
        assert_problem(response, 408, "request-timeout")
        contract().assert_conforms(response, "GET", "/healthz")
        assert conn.is_closed()
    assert 5 <= elapsed <= 25, elapsed


# HTTP features the server does not implement: answered before routing with the status RFC 9110/9112
# gives them (documented in openapi.yaml as ProtocolNotSupported), and the connection is closed.
UNSUPPORTED = {
    "http-version-2.0": (b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "transfer-coding-gzip-chunked": (b"POST /v1/instances HTTP/1.1\r\nHost: x\r\nContent-Type: application/dicom\r\n"
                                     b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    "expect-other-than-100-continue": (b"POST /v1/instances HTTP/1.1\r\nHost: x\r\nContent-Type: application/dicom\r\n"
                                       b"Content-Length: 4\r\nExpect: 200-ok\r\n\r\nabcd", 417),
}


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_unsupported_protocol_features_answer_documented_statuses(server, tokens, name):
    data, status = UNSUPPORTED[name]
    data = data.replace(b"Host: x\r\n", b"Host: x\r\nAuthorization: Bearer " + tokens["ingest"].encode() + b"\r\n")
    with server.client().connection(timeout=10) as conn:
        conn.send(data)
        response = conn.read_response(method="GET" if data.startswith(b"GET") else "POST",
                                      target="/healthz" if data.startswith(b"GET") else "/v1/instances")
        assert conn.is_closed()
    assert response.status == status, repr(response)
    contract().assert_conforms(response)


# --------------------------------------------------------------------------
# Results


def test_study_results_slices_ordered_and_aggregated(ingest, reader):
    """Slices uploaded out of order come back by position; each label's
    probability is the maximum over the slices, with its slice and the count
    of slices at or above the threshold."""
    files = make_study(6, order=[3, 0, 5, 1, 4, 2], seed=7)
    post_study(ingest, files[:3], stow=False)
    early = reader.study(files[0].study).json()
    assert early["status"] != "complete"  # received < stable age ago
    assert early["counts"]["received"] == 3
    check_study_aggregate(early)
    post_study(ingest, files[3:], stow=True)
    study = reader.wait_complete(files[0].study)
    assert study["studyInstanceUID"] == files[0].study
    assert study["counts"] == {"received": 6, "processed": 6, "failed": 0, "skipped": 0, "queued": 0}
    assert study["stableAfterSeconds"] == 1
    assert [s["instanceNumber"] for s in study["slices"]] == [1, 2, 3, 4, 5, 6]
    assert [s["position"] for s in study["slices"]] == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    assert all(s["seriesInstanceUID"] == files[0].series for s in study["slices"])
    check_study_aggregate(study)
    assert parse_time(study["firstReceivedAt"]) <= parse_time(study["lastReceivedAt"])
    model = study["model"]
    assert model["architecture"] == "inception_v3" and model["clinicalUse"] is False
    assert model["trainedOn"] == "test fixture: seeded random weights"
    assert "synthetic" in model["notice"].lower() and "not for clinical use" in model["notice"].lower()
    # Per instance: the same probabilities as the study's slice
    for s in study["slices"]:
        instance = reader.get(f"/v1/instances/{s['sopInstanceUID']}").json()
        assert instance["probabilities"] == s["probabilities"]
        assert (instance["instanceNumber"], instance["position"], instance["status"]) == (
            s["instanceNumber"], s["position"], "done")
        assert instance["studyInstanceUID"] == files[0].study
        assert instance["model"] == model
        assert parse_time(study["firstReceivedAt"]) <= parse_time(instance["receivedAt"])
    # the six probabilities of different slices differ (else "max" would prove little)
    assert len({s["probabilities"]["any"] for s in study["slices"]}) > 1


def test_slice_position_is_along_the_patient_axis(ingest, reader):
    """Tilted acquisition: position = ImagePositionPatient projected on the
    normal of ImageOrientationPatient; slices without a position come last."""
    study_uid = new_uid()
    angle = np.deg2rad(18)  # a tilted gantry, still axial (within 20 degrees)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, np.cos(angle), -np.sin(angle)])
    normal = np.cross(row, col)
    expected = {}
    uploads = []
    for k, (number, step) in enumerate([(3, 2.0), (1, 0.0), (4, 3.0), (2, 1.0)]):
        # z alone would order them 1, 2, 3, 4 in reverse: y moves against the normal faster than z
        ipp = np.array([-100.0, 40.0 - 30.0 * step, 5.0 * step])
        sop = new_uid()
        expected[sop] = float(ipp @ normal)
        uploads.append(ct_bytes(study=study_uid, sop=sop, instance=number, position=ipp,
                                orientation=[*row, *col], seed=50 + k))
    no_position = [new_uid(), new_uid()]
    uploads.append(ct_bytes(study=study_uid, sop=no_position[0], instance=9, position=None, seed=60))
    uploads.append(ct_bytes(study=study_uid, sop=no_position[1], instance=8, position=None, seed=61))
    for data in uploads:
        assert ingest.post_instance(data).status == 202
    study = reader.wait_complete(study_uid)
    slices = study["slices"]
    by_position = sorted(expected, key=expected.get)
    assert [s["sopInstanceUID"] for s in slices[:4]] == by_position
    for s in slices[:4]:
        assert s["position"] == pytest.approx(expected[s["sopInstanceUID"]], abs=1e-6)
    assert [s["sopInstanceUID"] for s in slices[4:]] == [no_position[1], no_position[0]]  # then by InstanceNumber
    assert [s["position"] for s in slices[4:]] == [None, None]
    check_study_aggregate(study)


def test_wait_returns_the_current_state_when_the_time_runs_out(ingest, reader):
    f = make_study(1)[0]
    assert ingest.post_instance(f.data).status == 202
    started = time.monotonic()
    response = reader.study(f.study, wait=0.3)
    elapsed = time.monotonic() - started
    assert response.status == 200
    assert response.json()["status"] != "complete"  # the stable age (1 s) has not passed
    assert 0.25 <= elapsed < 5, elapsed


# --------------------------------------------------------------------------
# Worklist


def all_pages(reader, query: str, limit: int) -> list[dict]:
    studies, cursor, pages = [], None, 0
    while True:
        target = f"/v1/studies?limit={limit}" + (f"&{query}" if query else "") + (f"&cursor={cursor}" if cursor else "")
        page = reader.get(target).json()
        assert len(page["studies"]) <= limit
        studies += page["studies"]
        cursor = page["nextCursor"]
        pages += 1
        assert pages < 1000
        if cursor is None:
            return studies


def test_since_a_studys_own_last_received_at_includes_it(ingest, reader):
    """openapi.yaml: `since` keeps studies whose lastReceivedAt is at or after it; a client
    passing back a lastReceivedAt it was shown must get that study (16 studies: all of them)."""
    missing = []
    for _ in range(16):
        f = make_study(1, rows=32, cols=32)[0]
        assert ingest.post_instance(f.data).status == 202
        shown = reader.study(f.study).json()["lastReceivedAt"]
        got = [s["studyInstanceUID"] for s in all_pages(reader, f"since={shown.replace('+', '%2B')}", 200)]
        if f.study not in got:
            missing.append(shown)
    assert not missing, f"since=<own lastReceivedAt> left the study out for {len(missing)} of 16: {missing}"


# --------------------------------------------------------------------------
# Metrics


METRIC_NAMES = ["ich_http_requests_total", "ich_http_request_duration_seconds", "ich_batch_size", "ich_queue_depth",
                "ich_inference_duration_seconds", "ich_instances_processed_total", "ich_errors_total",
                "ich_ingest_instances_total", "ich_model_info"]


def test_metrics(server, admin, reader):
    f = make_study(1, seed=400)[0]
    assert admin.post_instance(f.data).status == 202
    reader.wait_instance_done(f.sop)
    reader.get(f"/v1/studies/{f.study}")
    response = admin.get("/metrics")
    assert response.status == 200
    content_type = response.header("Content-Type").replace(" ", "")
    assert content_type.startswith("text/plain;version=0.0.4"), content_type
    text = response.body.decode()
    for name in METRIC_NAMES:
        assert re.search(rf"^{name}(_bucket|_count|_sum)?[{{ ]", text, re.M), f"{name} missing"
    routes = set(re.findall(r'^ich_http_requests_total\{[^}]*route="([^"]*)"', text, re.M))
    assert any("{" in r for r in routes), f"no route template among {routes}"
    assert any(r.startswith("/v1/instances") for r in routes) and any(r.startswith("/v1/studies/") for r in routes)
    for r in routes:
        assert not re.search(r"\d+\.\d+", r), f"a raw path (UID) as a route label: {r}"
    sent = uids_in(" ".join(r.target for r in server.recorder)) | {f.sop, f.study}
    leaked = uids_in(text) & sent
    assert not leaked, f"UIDs in /metrics: {leaked}"
    assert re.search(r'^ich_model_info\{[^}]*architecture="inception_v3"[^}]*\} 1(\.0)?$', text, re.M)
    assert re.search(r'^ich_ingest_instances_total\{result="stored"\} [1-9]', text, re.M)
    assert re.search(r'^ich_instances_processed_total\{result="done"\} [1-9]', text, re.M)


# --------------------------------------------------------------------------
# Nothing echoes request bytes or patient data


def test_no_error_echoes_request_bytes_or_patient_data(server, tokens, ingest):
    admin_auth = f"Authorization: Bearer {tokens['admin']}\r\n".encode()
    marker = MARKER.encode()
    study = new_uid()
    mr = service.ct_bytes(study=study, modality="MR", patient_name=MARKER, position=(0, 0, 0))
    ct = service.ct_bytes(study=study, patient_name=MARKER, position=(0, 0, 0))
    client = server.client()
    first = len(server.recorder)
    responses = [
        client.get(f"/v1/studies/{MARKER}", token=tokens["read"]),
        client.get("/v1/studies/PATIENT%5ESECRET", token=tokens["read"]),
        client.get(f"/v1/studies?since={MARKER}", token=tokens["read"]),
        client.get(f"/v1/studies?cursor={MARKER}", token=tokens["read"]),
        client.get(f"/{MARKER}", token=None),
        client.get("/v1/studies", headers={"Authorization": f"Bearer {MARKER}"}, token=None),
        client.get("/v1/studies", headers={"Authorization": MARKER}, token=None),
        ingest.post_instance(marker * 50),
        ingest.post_instance(mr),
        ingest.request("POST", "/v1/instances", marker, content_type=f"application/{MARKER}"),
        ingest.request("POST", "/dicomweb/studies", marker * 10, content_type=f"multipart/related; boundary={MARKER}"),
        ingest.request("POST", "/dicomweb/studies", marker * 10,
                       content_type=f'multipart/related; type="application/dicom"; boundary="{MARKER}"'),
        ingest.request("POST", "/dicomweb/studies", b"x", content_type=f'multipart/related; type="{MARKER}"; boundary=x'),
        ingest.stow([mr, ct, marker * 20]),
    ]
    raw = [
        b"POST /v1/instances HTTP/1.1\r\nHost: x\r\n" + admin_auth
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\nX-Note: " + marker + b"\r\n\r\n0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: " + marker + b"\r\n " + marker + b"\r\n\r\n",
        b"POST /v1/instances HTTP/1.1\r\nHost: x\r\n" + admin_auth
        + b"Content-Type: application/dicom\r\nTransfer-Encoding: chunked\r\n\r\n" + marker + b"\r\n",
        b"GET /" + marker + b" HTTP/1.1\r\n\r\n",
        b"GET /healthz " + marker + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + marker * 20000 + b"\r\n\r\n",
    ]
    for data in raw:
        with server.client().connection(timeout=15) as conn:
            send_until_answered(conn, data[:200], [data[i:i + 8192] for i in range(200, len(data), 8192)])
            try:
                responses.append(conn.read_response())
            except ConnectionError:
                pass  # closing without an answer echoes nothing either
    time.sleep(0.5)  # let the log catch up
    for response in server.recorder[first:]:
        assert marker not in response.raw and b"PATIENT%5ESECRET" not in response.raw, repr(response)
    log = server.log_text()
    assert MARKER not in log and "PATIENT%5ESECRET" not in log, \
        "the server log holds request bytes or patient data: " + log[max(0, log.find(MARKER) - 300):][:600]
    assert len(responses) >= 15


def test_stow_into_a_study_url_that_is_not_a_uid(server, ingest):
    """The URL's study is not a UID (openapi.yaml: StudyInstanceUID is a Uid). Whatever the
    status, the response conforms to the contract (RetrieveURL values are UIDs) and does
    not carry the URL's bytes back."""
    ct = service.ct_bytes(study=new_uid(), position=(0, 0, 0))
    response = ingest.stow([ct], f"1.2.3.{MARKER}", validate=False)
    assert MARKER.encode() not in response.raw, repr(response)
    contract().assert_conforms(response)


# --------------------------------------------------------------------------
# Restart with pending jobs, overload, graceful shutdown


def test_restart_resumes_pending_jobs_and_overload(fresh_server):
    """Nothing runs (a batch waits 60 s for 16 slices), so jobs stay queued;
    the queue passes its marks; SIGKILL; a restart processes them."""
    srv = fresh_server(["--max-batch", "16", "--max-delay-ms", "60000", "--threads", "2", "--stable-age", "1",
                        "--queue-high-water", "2", "--queue-hard-limit", "3"]).start()
    admin = srv.client(srv.token("admin"))
    files = make_study(3, seed=500)
    other = make_study(1, seed=501)[0]
    assert admin.post_instance(files[0].data).status == 202
    assert admin.post_instance(files[1].data).status == 202
    ready = srv.client().get("/readyz", token=None)
    assert ready.status == 503, "the queue is at its high-water mark"
    assert ready.json() == {"status": "not-ready", "checks": {"model": True, "database": True, "storage": True, "queue": False}}
    assert admin.post_instance(other.data).status == 202
    for attempt in (lambda: admin.post_instance(files[2].data), lambda: admin.stow([files[2].data])):
        response = attempt()
        assert_problem(response, 503, "overloaded")
        assert int(response.header("Retry-After")) >= 0
    assert_problem(admin.get(f"/v1/instances/{files[2].sop}"), 404, "instance-not-found")
    assert admin.get(f"/v1/instances/{files[0].sop}").json()["status"] == "queued"
    assert admin.study(files[0].study).json()["status"] == "pending"
    assert admin.request("DELETE", f"/v1/studies/{other.study}").status == 204  # a pending study can be deleted
    spool = srv.data_dir / "spool"
    assert len(list(spool.glob("*.dcm"))) == 2, "acknowledged uploads are in the spool"
    assert srv.kill() == -signal.SIGKILL

    srv2 = fresh_server(["--threads", "2", "--stable-age", "1"], data_dir=srv.data_dir).start()
    admin = srv2.client(admin.token)
    study = admin.wait_complete(files[0].study, timeout=60)
    assert study["counts"] == {"received": 2, "processed": 2, "failed": 0, "skipped": 0, "queued": 0}
    assert {s["sopInstanceUID"] for s in study["slices"]} == {files[0].sop, files[1].sop}
    check_study_aggregate(study)
    assert_problem(admin.get(f"/v1/instances/{files[2].sop}"), 404, "instance-not-found")
    assert_problem(admin.get(f"/v1/studies/{other.study}"), 404, "study-not-found")
    deadline = time.monotonic() + 10
    while list(spool.glob("*.dcm")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(spool.glob("*.dcm")), "spool files must be deleted once their results are stored"
    assert srv2.stop() == 0


def test_sigterm_finishes_an_in_flight_upload(fresh_server):
    srv = fresh_server(["--threads", "2", "--stable-age", "1"]).start()
    token = srv.token("admin")
    f = make_study(1, seed=600)[0]
    head = build_request("POST", "/v1/instances", headers=[("Authorization", f"Bearer {token}"),
                                                           ("Content-Type", "application/dicom"),
                                                           ("Content-Length", str(len(f.data)))])
    half = len(f.data) // 2
    with RawConnection(srv.host, srv.port, timeout=60) as conn:
        conn.send(head + f.data[:half])
        time.sleep(0.5)
        srv.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert srv.running, "the server exited with a request in flight"
        conn.send(f.data[half:])
        response = conn.read_response(method="POST", target="/v1/instances")
    assert response.status == 202, repr(response)
    contract().assert_conforms(response)
    assert srv.stop(timeout=60) == 0
    assert "shutting down" in srv.log_text()
    # The acknowledged upload survived the shutdown
    srv2 = fresh_server(["--threads", "2", "--stable-age", "1"], data_dir=srv.data_dir).start()
    instance = srv2.client(token).wait_instance_done(f.sop, timeout=60)
    assert instance["status"] == "done"
    assert srv2.stop() == 0


def test_sigterm_stops_accepting(fresh_server):
    srv = fresh_server(["--threads", "2"]).start()
    with RawConnection(srv.host, srv.port, timeout=30) as idle:
        idle.send(build_request("GET", "/healthz"))
        assert idle.read_response().status == 200
        started = time.monotonic()
        srv.process.send_signal(signal.SIGTERM)
        assert srv.process.wait(60) == 0, srv.log_tail()
        elapsed = time.monotonic() - started
    # An idle keep-alive connection is not an in-flight request: it must not hold up the shutdown.
    assert elapsed < 10, f"SIGTERM took {elapsed:.1f} s with one idle keep-alive connection"
    with pytest.raises(OSError):
        RawConnection(srv.host, srv.port, timeout=5).send(build_request("GET", "/healthz"))


def test_sigterm_answers_a_long_poll_at_once(fresh_server):
    """Graceful shutdown finishes in-flight requests: a long-poll gets the study's
    current state (openapi.yaml: returned either way) and the server exits promptly."""
    srv = fresh_server(["--threads", "2", "--stable-age", "100"]).start()
    client = srv.client(srv.token("admin"))
    f = make_study(1, seed=700)[0]
    assert client.post_instance(f.data).status == 202
    outcome: dict = {}

    def long_poll():
        try:
            outcome["response"] = client.study(f.study, wait=60, timeout=90)
        except Exception as error:  # noqa: BLE001 - reported below
            outcome["error"] = error

    thread = threading.Thread(target=long_poll)
    thread.start()
    time.sleep(1)
    started = time.monotonic()
    srv.process.send_signal(signal.SIGTERM)
    code = srv.process.wait(90)
    elapsed = time.monotonic() - started
    thread.join(90)
    assert "error" not in outcome, f"the long-poll got no response: {outcome.get('error')!r} (exit after {elapsed:.1f} s)"
    response = outcome["response"]
    assert response.status == 200 and response.json()["status"] != "complete"
    assert code == 0 and elapsed < 10, f"exit {code} after {elapsed:.1f} s"


def test_connection_limit_answer_is_documented(fresh_server):
    srv = fresh_server(["--threads", "2", "--max-connections", "1"]).start()
    token = srv.token("ingest")
    with srv.client().connection() as held:
        # Busy with a body: an idle keep-alive would be closed to make room instead.
        held.send(f"POST /v1/instances HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                  "Content-Type: application/dicom\r\nContent-Length: 100\r\n\r\nab".encode())
        time.sleep(0.2)
        with srv.client().connection() as refused:
            refused.send(build_request("POST", "/v1/instances", body=make_study(1)[0].data,
                                       headers=[("Authorization", f"Bearer {token}"),
                                                ("Content-Type", "application/dicom")]))
            response = refused.read_response(method="POST", target="/v1/instances")
    assert response.status == 503, repr(response)
    contract().assert_conforms(response)


def test_http_1_0_request_is_answered_and_closed(server):
    with server.client().connection(timeout=10) as conn:
        conn.send(b"GET /healthz HTTP/1.0\r\n\r\n")
        response = conn.read_response(target="/healthz")
        assert response.status == 200 and response.json() == {"status": "alive"}
        assert conn.is_closed()
    with server.client().connection(timeout=10) as conn:  # HTTP/1.0 keep-alive on request
        conn.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert conn.read_response(target="/healthz").status == 200
        conn.send(b"GET /readyz HTTP/1.0\r\n\r\n")
        assert conn.read_response(target="/readyz").status == 200


# --------------------------------------------------------------------------
# Probabilities against Keras, end to end


PARITY_FILES = ["ct_plain_explicit_le.dcm", "ct_explicit_be.dcm", "ct_rle.dcm", "ct_jpegls_lossless.dcm",
                "rsna_12bit_defect.dcm", "padding_unsigned_65535.dcm", "slope_0.5_intercept_-1024.5.dcm",
                "eight_bit_unsigned.dcm", "odd_7x5.dcm", "garbage_high_bits_12bit_unsigned.dcm"]

# |service - Keras| <= 1e-4 for each probability. The two sides compute the same
# function in float32 with different summation orders (our im2col/GEMM and
# Winograd convolutions vs XLA's), and the preprocessing (decode, HU, windows,
# bilinear resize) agrees with reference_preprocess.py to ~1e-6; over InceptionV3's
# ~95 layers these differences reach ~1e-6..1e-5 in the logits. 1e-4 is the
# bundle's golden tolerance and test_keras_parity.py's limit for `ichctl predict`;
# the JSON carries each Float32 probability in its shortest round-trip form, so
# the serialization adds no error.
PROBABILITY_TOLERANCE = 1e-4


def test_probabilities_match_keras_end_to_end(ingest, reader, bundle, tmp_path):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    pytest.importorskip("keras")
    sys.path.insert(0, str(service.TOOLS))
    import bundle as bundle_module
    import keras_reference
    import reference_preprocess as ref

    paths, sops = [], []
    for name in PARITY_FILES:
        path = tmp_path / name
        path.write_bytes(service.case_bytes(name))
        paths.append(path)
        sops.append(str(ref.read_dataset(path, stop_before_pixels=True).SOPInstanceUID))
    # One STOW request: the slices reach the batcher together (batches of up to 8)
    response = ingest.stow([p.read_bytes() for p in paths])
    assert response.status == 200, repr(response)
    assert [value(i, "00081155") for i in referenced(response.json())] == sops

    manifest = json.loads((bundle / "model.json").read_text())
    size = manifest["input"]["height"]
    p = manifest["preprocessing"]
    windows = [(w["center"], w["width"]) for w in p["windows"]]
    x = np.stack([ref.model_input(ref.read_dataset(path), windows=windows, size=size, order=p["order"],
                                  mode=p["resize"], rsna_correction=p["rsna_correction"]) for path in paths])
    x = x * manifest["input_scale"] + manifest["input_offset"]
    model = keras_reference.build(manifest["architecture"], size, seed=0)
    # The in-process model is the one the bundle was converted from: it reproduces the bundle's golden outputs.
    golden, _ = bundle_module.read_safetensors(bundle / "golden.safetensors")
    golden_out, _ = keras_reference.predict(model, golden["inputs"], batch_size=len(golden["inputs"]))
    np.testing.assert_allclose(golden_out, golden["outputs"], atol=1e-5, rtol=0)
    expected, _ = keras_reference.predict(model, x.astype(np.float32), batch_size=len(x))

    got = []
    for sop in sops:
        instance = reader.wait_instance_done(sop, timeout=120)
        assert instance["status"] == "done", instance
        got.append([instance["probabilities"][label] for label in LABELS])
    got = np.array(got)
    error = np.abs(got - expected)
    worst = np.unravel_index(error.argmax(), error.shape)
    detail = (f"max |service - keras| = {error.max():.2e} at {PARITY_FILES[worst[0]]} / {LABELS[worst[1]]} "
              f"(limit {PROBABILITY_TOLERANCE:.0e})")
    print(detail)
    assert error.max() <= PROBABILITY_TOLERANCE, detail
    # informative: the files do not all give the same output
    assert np.ptp(expected[:, 0]) > 1e-4


def test_threads_reach_the_engine(bundle, tmp_path):
    """`--threads` sizes OpenBLAS's pool in the server (it used to reach only ichctl): the engine's own
    count is logged at start and exported as `ich_compute_threads`."""
    require_server_binary()
    srv = Server(tmp_path / "data", bundle, args=["--threads", "1"])
    token = srv.token("admin")
    srv.start()
    try:
        text = srv.client(token).get("/metrics").body.decode()
        assert re.search(r"^ich_compute_threads 1(\.0)?$", text, re.M), [l for l in text.splitlines() if "thread" in l]
        assert re.search(r"compute_threads=1\b", srv.log_text()), srv.log_tail()
    finally:
        assert srv.stop() == 0, srv.log_tail()
