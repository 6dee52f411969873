"""Results into the PACS: each completed study's structured report is delivered from the durable
outbox to `--results-destination`s, real peers on the other side: dcmtk's `storescp` by C-STORE
(also when it is down at first and comes up later: retried, delivered once up) and Debian's Orthanc
by STOW-RS, which then lists the SR in the original study. The delivered object is the one
`GET /v1/studies/{uid}/report` serves."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service  # noqa: E402
from service import Server, new_uid  # noqa: E402
from test_multi_series import DICOMWEB_PLUGIN, ORTHANC, Orthanc, free_port  # noqa: E402
from test_report import SERVER_ARGS, fetch, send, slices  # noqa: E402


def start_storescp(folder: Path, port: int) -> subprocess.Popen:
    assert shutil.which("storescp"), "dcmtk is not installed (make test installs it)"
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(["storescp", "-aet", "PACS", "-od", str(folder), str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return process


def wait_files(folder: Path, timeout: float) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(folder.glob("*"))
        if files:
            time.sleep(0.3)  # storescp renames the file when it is complete
            return sorted(folder.glob("*"))
        time.sleep(0.2)
    return []


def server_with(tmp_path: Path, *destinations: str) -> Server:
    args = [*SERVER_ARGS]
    for destination in destinations:
        args += ["--results-destination", destination]
    srv = Server(tmp_path / "data", service.test_bundle(), args=args)
    srv.tokens = {scope: srv.token(scope, name=f"test-{scope}") for scope in ("ingest", "read", "admin")}
    return srv.start()


def test_the_report_reaches_storescp_by_c_store(tmp_path):
    port = free_port()
    scp = start_storescp(tmp_path / "pacs", port)
    srv = server_with(tmp_path, f"dicom://PACS@127.0.0.1:{port}")
    try:
        uid = new_uid()
        send(srv, slices(uid, 4), uid)
        files = wait_files(tmp_path / "pacs", 30)
        assert len(files) == 1, files
        stored = pydicom.dcmread(files[0])
        report = pydicom.dcmread(io.BytesIO(fetch(srv, uid)))
        assert stored.SOPInstanceUID == report.SOPInstanceUID and stored.StudyInstanceUID == uid
        assert stored.Modality == "SR" and stored.ContentSequence == report.ContentSequence
        metrics = srv.client(srv.tokens["admin"]).get("/metrics").body.decode()
        assert 'ich_results_total{destination_kind="dicom",result="delivered"} 1' in metrics, metrics
        assert "ich_results_pending 0" in metrics
    finally:
        assert srv.stop() == 0, srv.log_tail()
        scp.terminate()


def test_a_destination_that_is_down_gets_the_report_once_it_is_up(tmp_path):
    port = free_port()
    srv = server_with(tmp_path, f"dicom://PACS@127.0.0.1:{port}")
    scp = None
    try:
        uid = new_uid()
        send(srv, slices(uid, 3), uid)
        time.sleep(2)  # the first attempt finds nobody listening
        assert "result delivery failed; will retry" in srv.log_text()
        # Restart in between: the queued object is in the database, not in memory.
        assert srv.stop() == 0
        scp = start_storescp(tmp_path / "pacs", port)
        srv.start()
        files = wait_files(tmp_path / "pacs", 30)  # the retry waits 5 s
        assert len(files) == 1 and pydicom.dcmread(files[0]).StudyInstanceUID == uid
    finally:
        if srv.running:
            assert srv.stop() == 0, srv.log_tail()
        if scp:
            scp.terminate()


def test_orthanc_lists_the_report_in_the_original_study_after_stow_rs(tmp_path):
    assert Path(ORTHANC).exists() and DICOMWEB_PLUGIN.exists(), "Debian's orthanc and orthanc-dicomweb (make test installs them)"
    (tmp_path / "orthanc").mkdir()
    orthanc = Orthanc(tmp_path / "orthanc", "http://127.0.0.1:1/unused/", "unused")
    srv = None
    try:
        srv = server_with(tmp_path, f"http://127.0.0.1:{orthanc.port}/dicom-web")
        uid = new_uid()
        send(srv, slices(uid, 4), uid)
        report = pydicom.dcmread(io.BytesIO(fetch(srv, uid)))
        deadline = time.monotonic() + 30
        while True:
            found = orthanc.request("POST", "/tools/find", b'{"Level": "Instance", "Query": {"Modality": "SR"}}')
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert len(found) == 1, srv.log_tail()
        tags = orthanc.get(f"/instances/{found[0]}/simplified-tags")
        assert tags["SOPInstanceUID"] == report.SOPInstanceUID and tags["StudyInstanceUID"] == uid
    finally:
        if srv:
            assert srv.stop() == 0, srv.log_tail()
        orthanc.close()


def test_a_bad_destination_is_refused_at_start(tmp_path):
    out = subprocess.run([str(service.server_binary()), "serve", "--data-dir", str(tmp_path / "d"), "--model",
                          str(service.test_bundle()), "--results-destination", "ftp://pacs"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "results-destination must be" in out.stderr
