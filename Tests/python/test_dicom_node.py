"""The DICOM node (issue 17, receiving): DCMTK's `echoscu`/`storescu`/`findscu` and raw
PDUs against `ich-server serve --dicom-port`.

Who may associate (called AE title, `--dicom-peer` AE@HOST, loopback by default),
stores going through the same ingest as STOW-RS (a study stored by C-STORE in JPEG
Lossless completes like one posted), Out of Resources when the queue is full,
the association cap, the ARTIM and DIMSE timeouts, and a clean SIGTERM with an
association open.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service  # noqa: E402
from service import Server, make_study  # noqa: E402

VERIFICATION = "1.2.840.10008.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"


@pytest.fixture(autouse=True)
def _tools():
    problem = service.binary_problem(service.server_binary())
    if problem:
        pytest.fail(problem, pytrace=False)
    for tool in ("echoscu", "storescu", "findscu"):
        assert shutil.which(tool), f"{tool} from Debian's dcmtk (make test installs it)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node(tmp_path: Path, *args: str) -> Server:
    port = free_port()
    srv = Server(tmp_path / "data", service.test_bundle(),
                 args=["--threads", "2", "--stable-age", "1", "--dicom-port", str(port), *args])
    srv.dicom_port = port
    srv.tokens = {scope: srv.token(scope) for scope in ("read", "admin")}
    return srv.start()


def dcmtk(tool: str, *args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env} if env else None)


def metrics(srv: Server) -> str:
    return srv.client(srv.tokens["admin"], validate=False).get("/metrics").body.decode()


# Raw PDUs (PS3.8 §9.3), for what the tools cannot do: hold an association, stay silent, read the AC.

def _item(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def associate_rq(called: str, calling: str, contexts: list[tuple[int, str, str]]) -> bytes:
    body = struct.pack(">HH", 1, 0) + called.ljust(16).encode() + calling.ljust(16).encode() + bytes(32)
    body += _item(0x10, b"1.2.840.10008.3.1.1.1")
    for context_id, abstract, transfer in contexts:
        body += _item(0x20, bytes([context_id, 0, 0, 0]) + _item(0x30, abstract.encode()) + _item(0x40, transfer.encode()))
    body += _item(0x50, _item(0x51, struct.pack(">I", 16384)))
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    head = b""
    while len(head) < 6:
        chunk = sock.recv(6 - len(head))
        if not chunk:
            return 0, b""
        head += chunk
    kind, _, length = struct.unpack(">BBI", head)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        assert chunk, "connection closed inside a PDU"
        body += chunk
    return kind, body


def context_results(ac: bytes) -> dict[int, int]:
    """Presentation context ID -> result (0 acceptance, 3 abstract syntax not supported, 4 transfer syntaxes not supported)."""
    results, offset = {}, 68
    while offset < len(ac):
        kind, length = ac[offset], struct.unpack(">H", ac[offset + 2:offset + 4])[0]
        if kind == 0x21:
            results[ac[offset + 4]] = ac[offset + 6]
        offset += 4 + length
    return results


def open_association(port: int, contexts=((1, VERIFICATION, IMPLICIT_LE),), called: str = "ICHTRIAGE") -> tuple[socket.socket, int, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(associate_rq(called, "RAWSCU", list(contexts)))
    kind, body = read_pdu(sock)
    return sock, kind, body


def test_echo_and_who_may_associate(tmp_path):
    srv = node(tmp_path)
    try:
        port = str(srv.dicom_port)
        assert dcmtk("echoscu", "-aec", "ICHTRIAGE", "127.0.0.1", port).returncode == 0
        wrong = dcmtk("echoscu", "-aec", "SOMEONE", "127.0.0.1", port)
        assert wrong.returncode != 0 and "Called AE Title Not Recognized" in wrong.stderr, wrong.stderr
    finally:
        srv.stop()
    log = srv.log_text()
    assert "dicom association rejected" in log and "reason=calledAETitle" in log
    listed = node(tmp_path, "--dicom-peer", "MODALITY@127.0.0.1", "--ae-title", "TRIAGE")
    try:
        port = str(listed.dicom_port)
        unlisted = dcmtk("echoscu", "-aec", "TRIAGE", "127.0.0.1", port)  # calling AE ECHOSCU
        assert unlisted.returncode != 0 and "Calling AE Title Not Recognized" in unlisted.stderr, unlisted.stderr
        assert dcmtk("echoscu", "-aet", "MODALITY", "-aec", "TRIAGE", "127.0.0.1", port).returncode == 0
        text = metrics(listed)
        assert 'ich_dicom_associations_rejected_total{reason="callingAETitle"} 1' in text
        assert 'ich_dimse_requests_total{command="C-ECHO",status="0000"} 1' in text
        ready = listed.client(validate=False).get("/readyz").json()
        assert ready["checks"]["dicom"] is True
    finally:
        listed.stop()


def test_a_study_stored_in_jpeg_lossless_completes_like_one_posted(tmp_path):
    files = make_study(5)
    folder = tmp_path / "study"
    folder.mkdir()
    for i, f in enumerate(files):
        (folder / f"{i}.dcm").write_bytes(f.data)
    srv = node(tmp_path)
    try:
        # -xs: storescu compresses each file to JPEG Lossless SV1 and proposes only that.
        stored = dcmtk("storescu", "-xs", "-aec", "ICHTRIAGE", "127.0.0.1", str(srv.dicom_port), *map(str, sorted(folder.iterdir())))
        assert stored.returncode == 0, stored.stderr
        again = dcmtk("storescu", "-aec", "ICHTRIAGE", "127.0.0.1", str(srv.dicom_port), str(folder / "0.dcm"))
        assert again.returncode == 0, again.stderr  # a repeat is a Success, stored once
        result = srv.client(srv.tokens["read"]).wait_complete(files[0].study)
        assert result["counts"] == {"received": 5, "processed": 5, "failed": 0, "skipped": 0, "queued": 0}
        assert result["assessable"] is True and len(result["labels"]) == 6
        text = metrics(srv)
        assert 'ich_dimse_requests_total{command="C-STORE",status="0000"} 6' in text
        assert 'ich_ingest_instances_total{result="duplicate"} 1' in text
    finally:
        srv.stop()


def test_a_full_queue_answers_out_of_resources_and_stores_nothing(tmp_path):
    files = make_study(1)
    (tmp_path / "one.dcm").write_bytes(files[0].data)
    srv = node(tmp_path, "--queue-hard-limit", "0")
    try:
        refused = dcmtk("storescu", "-v", "-aec", "ICHTRIAGE", "127.0.0.1", str(srv.dicom_port), str(tmp_path / "one.dcm"))
        assert "Refused: OutOfResources" in refused.stderr, refused.stderr
        assert 'ich_dimse_requests_total{command="C-STORE",status="a700"} 1' in metrics(srv)
        assert srv.client(srv.tokens["read"]).get(f"/v1/studies/{files[0].study}").status == 404
    finally:
        srv.stop()


def test_only_storage_and_verification_are_offered(tmp_path):
    srv = node(tmp_path)
    try:
        sock, kind, ac = open_association(srv.dicom_port, [(1, VERIFICATION, IMPLICIT_LE), (3, STUDY_ROOT_FIND, IMPLICIT_LE),
                                                           (5, "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.4.100")])
        assert kind == 0x02, kind  # A-ASSOCIATE-AC
        # Verification accepted; Q/R FIND not supported; CT with only an MPEG-2 syntax: no transfer syntax.
        assert context_results(ac) == {1: 0, 3: 3, 5: 4}
        sock.sendall(struct.pack(">BBI", 0x05, 0, 4) + bytes(4))  # A-RELEASE-RQ
        assert read_pdu(sock)[0] == 0x06  # A-RELEASE-RP
        sock.close()
        found = dcmtk("findscu", "-S", "-k", "QueryRetrieveLevel=STUDY", "-aec", "ICHTRIAGE", "127.0.0.1", str(srv.dicom_port))
        assert found.returncode != 0, found.stderr
    finally:
        srv.stop()


def test_the_association_cap_and_the_timeouts(tmp_path):
    srv = node(tmp_path, "--dicom-max-associations", "1", "--dicom-timeout", "2")
    try:
        held, kind, _ = open_association(srv.dicom_port)
        assert kind == 0x02
        busy = dcmtk("echoscu", "-aec", "ICHTRIAGE", "127.0.0.1", str(srv.dicom_port))
        assert busy.returncode != 0 and "Local Limit Exceeded" in busy.stderr, busy.stderr
        # The held association says nothing: aborted (A-ABORT) after the DIMSE timeout.
        started = time.monotonic()
        assert read_pdu(held)[0] in (0x07, 0)
        assert time.monotonic() - started < 10
        held.close()
        deadline = time.monotonic() + 10
        while dcmtk("echoscu", "-aec", "ICHTRIAGE", "127.0.0.1", str(srv.dicom_port)).returncode != 0:
            assert time.monotonic() < deadline, "the slot was not freed"
            time.sleep(0.2)
        # A connection that never sends its request is dropped by the ARTIM timer.
        silent = socket.create_connection(("127.0.0.1", srv.dicom_port), timeout=30)
        started = time.monotonic()
        assert silent.recv(1) == b""
        assert time.monotonic() - started < 10
        silent.close()
        assert 'ich_dicom_associations_rejected_total{reason="busy"} 1' in metrics(srv)
    finally:
        srv.stop()


def test_sigterm_with_an_association_open_exits_cleanly(tmp_path):
    srv = node(tmp_path, "--shutdown-timeout", "5")
    held, kind, _ = open_association(srv.dicom_port)
    assert kind == 0x02
    started = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - started < 5
    assert read_pdu(held)[0] in (0x07, 0)  # aborted, or the connection closed
    held.close()
    assert srv.log_text().rstrip().endswith("stopped")


def labels(result: dict) -> dict[str, float]:
    return {row["label"]: row["probability"] for row in result["labels"]}


def test_c_store_and_stow_rs_give_the_same_result_and_rates(tmp_path):
    """The same files by both routes, to two servers: the same per-label probabilities. Rates printed, not asserted."""
    count = 60
    files = make_study(count, rows=128, cols=128)
    folder = tmp_path / "study"
    folder.mkdir()
    for i, f in enumerate(files):
        (folder / f"{i:03}.dcm").write_bytes(f.data)
    by_dimse = node(tmp_path / "a")
    try:
        started = time.monotonic()
        # Debian's DCMTK keeps Nagle's algorithm on unless told: a sender without TCP_NODELAY=1 waits
        # for delayed ACKs (about 45 ms a store here); PACS senders set TCP_NODELAY themselves.
        stored = dcmtk("storescu", "-aec", "ICHTRIAGE", "127.0.0.1", str(by_dimse.dicom_port), str(folder), "+sd",
                       env={"TCP_NODELAY": "1"})
        dimse_seconds = time.monotonic() - started
        assert stored.returncode == 0, stored.stderr
        dimse = by_dimse.client(by_dimse.tokens["read"]).wait_complete(files[0].study)
    finally:
        by_dimse.stop()
    by_stow = Server(tmp_path / "b" / "data", service.test_bundle(), args=["--threads", "2", "--stable-age", "1"])
    by_stow.tokens = {scope: by_stow.token(scope) for scope in ("ingest", "read")}
    by_stow.start()
    try:
        ingest = by_stow.client(by_stow.tokens["ingest"])
        started = time.monotonic()
        for start in range(0, count, 10):
            assert ingest.stow([f.data for f in files[start:start + 10]]).status == 200
        stow_seconds = time.monotonic() - started
        stow = by_stow.client(by_stow.tokens["read"]).wait_complete(files[0].study)
    finally:
        by_stow.stop()
    assert dimse["counts"] == stow["counts"] and dimse["counts"]["processed"] == count
    # Equal up to float rounding: the two servers batch the slices differently.
    assert labels(dimse) == pytest.approx(labels(stow), abs=1e-5)
    print(f"\n{count} slices of 128x128: C-STORE (storescu, one association) {count / dimse_seconds:.0f} instances/s "
          f"(process start included), STOW-RS (10 per request) {count / stow_seconds:.0f} instances/s")


def test_kill_9_during_an_association_loses_no_instance_that_got_a_success(tmp_path):
    files = make_study(150)
    folder = tmp_path / "study"
    folder.mkdir()
    paths = []
    for i, f in enumerate(files):
        paths.append(folder / f"{i:03}.dcm")
        paths[-1].write_bytes(f.data)
    srv = node(tmp_path)
    sender = subprocess.Popen(["storescu", "-v", "-aec", "ICHTRIAGE", "127.0.0.1", str(srv.dicom_port), *map(str, paths)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Kill once some stores were answered, while the association still runs.
    answered = 0
    output = []
    for line in sender.stdout:
        output.append(line)
        if "Received Store Response (Success)" in line:
            answered += 1
            if answered == 40:
                srv.kill()
                break
    output += sender.stdout.readlines()
    sender.wait(60)
    successes = sum("Received Store Response (Success)" in line for line in output)
    assert 40 <= successes < len(files), successes
    srv.start()
    try:
        reader = srv.client(srv.tokens["read"])
        # storescu sends the files in the order given and each answer follows its request.
        missing = [f.sop for f in files[:successes] if reader.get(f"/v1/instances/{f.sop}").status != 200]
        assert missing == [], f"{len(missing)} acknowledged instances lost"
        result = reader.wait_complete(files[0].study)
        assert result["counts"]["received"] >= successes and result["counts"]["failed"] == 0
    finally:
        srv.stop()


def test_a_study_in_five_transfer_syntaxes_gives_the_stow_rs_result(tmp_path):
    """storescu recompresses each group on the fly to the one syntax it proposes; all are lossless, so the
    probabilities match those of the uncompressed files posted by STOW-RS to another server."""
    files = make_study(15, rows=128, cols=128)
    groups = {"-xs": "JPEG Lossless", "-xr": "RLE", "-xt": "JPEG-LS lossless", "-xd": "deflated", "-xi": "implicit VR"}
    by_dimse = node(tmp_path / "a")
    try:
        for k, flag in enumerate(groups):
            folder = tmp_path / flag
            folder.mkdir()
            for i, f in enumerate(files[k * 3:(k + 1) * 3]):
                (folder / f"{i}.dcm").write_bytes(f.data)
            sent = dcmtk("storescu", "-v", flag, "-aec", "ICHTRIAGE", "127.0.0.1", str(by_dimse.dicom_port), "+sd", str(folder),
                         env={"TCP_NODELAY": "1"})
            assert sent.returncode == 0 and sent.stderr.count("Received Store Response (Success)") == 3, (groups[flag], sent.stderr)
            # What went over the wire: storescu names the conversion it made for the accepted syntax.
            assert "Little Endian Explicit -> " in sent.stderr, (groups[flag], sent.stderr)
        dimse = by_dimse.client(by_dimse.tokens["read"]).wait_complete(files[0].study)
        syntaxes = by_dimse.log_text().count("dicom association accepted")
    finally:
        by_dimse.stop()
    assert syntaxes == len(groups)
    by_stow = Server(tmp_path / "b" / "data", service.test_bundle(), args=["--threads", "2", "--stable-age", "1"])
    by_stow.tokens = {scope: by_stow.token(scope) for scope in ("ingest", "read")}
    with by_stow:
        assert by_stow.client(by_stow.tokens["ingest"]).stow([f.data for f in files]).status == 200
        stow = by_stow.client(by_stow.tokens["read"]).wait_complete(files[0].study)
    assert dimse["counts"] == stow["counts"] == {"received": 15, "processed": 15, "failed": 0, "skipped": 0, "queued": 0}
    assert labels(dimse) == pytest.approx(labels(stow), abs=1e-5)
