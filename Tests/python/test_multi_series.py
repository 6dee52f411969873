"""Whole head-CT studies as a scanner sends them, through `ich-server` and through Orthanc.

`Tools/phantoms.py --multi-series --rsna-uids` writes, per study, the axial brain
series and what comes with it (a scout, a bone kernel at the same positions, a
1.25 mm thin series, coronal and sagittal reformats, a dose SR, an RGB screen
capture), with RSNA 2019-style identifiers (ID_<hex>), and lists in series.csv
the role and reason the default series rules should give each series. The tests:

* post a whole study by STOW-RS: every instance is acknowledged, each series
  gets series.csv's role and reason, only triaged series reach the forward pass
  (`ich_batch_size_sum` grows by their slices alone), and the study's labels
  equal those of its brain series posted alone as a study of its own;
* a study of only a scout and reformats is not assessable, never negative;
* a real PACS: Debian's Orthanc 1.10 with its DICOMweb plugin stores a study and
  pushes it to us (`/dicom-web/servers/ich/stow`, 73-character boundaries); its
  job reports success and the study reads back complete with the same roles.
  Without the `Orthanc` binary (`make test` installs it) that test fails, it is
  not skipped.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service  # noqa: E402
from conftest import REPO_ROOT  # noqa: E402

GENERATOR = REPO_ROOT / "Tools" / "phantoms.py"
ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


class Study:
    """One phantom study: its files by series, and series.csv's rows."""

    def __init__(self, uid: str, folder: Path, rows: list[dict]):
        self.uid = uid
        self.series = {row["SeriesInstanceUID"]: row for row in rows}
        self.files: dict[str, list[bytes]] = defaultdict(list)
        import pydicom

        for path in sorted(folder.glob("*.dcm")):
            data = path.read_bytes()
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            self.files[str(ds.SeriesInstanceUID)].append(data)
        assert {s: len(f) for s, f in self.files.items()} == {s: int(r["instances"]) for s, r in self.series.items()}

    def of_kind(self, *kinds: str) -> list[bytes]:
        return [data for uid, row in self.series.items() if row["kind"] in kinds for data in self.files[uid]]

    @property
    def all_files(self) -> list[bytes]:
        return [data for files in self.files.values() for data in files]

    @property
    def triaged_instances(self) -> int:
        return sum(int(r["instances"]) for r in self.series.values() if r["role"] != "skipped")

    @property
    def primary(self) -> str:
        (uid,) = [uid for uid, row in self.series.items() if row["role"] == "primary"]
        return uid


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> list[Study]:
    out = tmp_path_factory.mktemp("multi-series")
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(out), "--studies", "3", "--seed", "15", "--size", "128",
                    "--slices-min", "5", "--slices-max", "6", "--multi-series", "--rsna-uids"],
                   check=True, capture_output=True, timeout=300)
    rows = defaultdict(list)
    with open(out / "series.csv", newline="") as f:
        for row in csv.DictReader(f):
            rows[row["StudyInstanceUID"]].append(row)
    return [Study(uid, out / uid, rows[uid]) for uid in rows]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    problem = service.binary_problem(service.server_binary())
    if problem:
        pytest.fail(problem, pytrace=False)
    folder = tmp_path_factory.mktemp("multi-series-server")
    srv = service.Server(folder / "data", service.test_bundle(), args=["--threads", "2", "--stable-age", "1"])
    srv.tokens = {scope: srv.token(scope) for scope in ("ingest", "read", "admin")}
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log_tail()


def batch_slices(server) -> float:
    text = server.client(server.tokens["admin"], validate=False).get("/metrics").body.decode()
    line = next(line for line in text.splitlines() if line.startswith("ich_batch_size_sum "))
    return float(line.split()[1])


def stow_all(server, files: list[bytes], per_request: int = 8) -> None:
    ingest = server.client(server.tokens["ingest"])
    for start in range(0, len(files), per_request):
        response = ingest.stow(files[start:start + per_request])
        assert response.status == 200, response.body[:600]
        body = response.json()
        assert "00081198" not in body, body  # no FailedSOPSequence
        assert len(body["00081199"]["Value"]) == len(files[start:start + per_request])


def assert_roles_match(result: dict, study: Study) -> None:
    got = {s["seriesInstanceUID"]: s for s in result["series"]}
    assert set(got) == set(study.series)
    for uid, row in study.series.items():
        item = got[uid]
        assert (item["role"], item["reason"] or "") == (row["role"], row["reason"]), (row["kind"], item)
        assert item["instances"] == int(row["instances"]) and item["seriesNumber"] == int(row["SeriesNumber"])
        assert (item.get("labels") is not None) == (row["role"] != "skipped"), item
    assert result["primarySeriesInstanceUID"] == study.primary
    assert result["assessable"] is True and result.get("notAssessableReason") is None


def test_whole_study_triages_the_brain_series_and_skips_the_rest(server, studies):
    study = studies[0]
    before = batch_slices(server)
    stow_all(server, study.all_files)
    result = server.client(server.tokens["read"]).wait_complete(study.uid)

    assert_roles_match(result, study)
    skipped = sum(int(r["instances"]) for r in study.series.values() if r["role"] == "skipped")
    assert result["counts"] == {"received": len(study.all_files), "processed": study.triaged_instances,
                                "failed": 0, "skipped": skipped, "queued": 0}
    # Skipped instances cost no forward pass.
    assert batch_slices(server) - before == study.triaged_instances
    metrics = server.client(server.tokens["admin"], validate=False).get("/metrics").body.decode()
    for reason in ("localizer", "derived", "not-image", "not-ct"):
        assert f'ich_instances_skipped_total{{reason="{reason}"}}' in metrics, reason
    # The study's labels are its primary series' labels.
    primary = next(s for s in result["series"] if s["role"] == "primary")
    assert result["labels"] == primary["labels"]
    # Slices: by series, then by position along the slice normal (z for the axial series).
    order = [s["seriesInstanceUID"] for s in result["slices"]]
    assert order == sorted(order, key=order.index) and len(set(order)) == len(study.series)


def test_study_result_equals_its_primary_series_alone(server, studies):
    import pydicom

    study = studies[0]
    whole = server.client(server.tokens["read"]).wait_complete(study.uid)
    alone_uid = "ID_" + service.new_uid()[-10:]
    copies = []
    for data in study.files[study.primary]:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.StudyInstanceUID = alone_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "ID_" + service.new_uid()[-12:]
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        copies.append(buffer.getvalue())
    stow_all(server, copies)
    alone = server.client(server.tokens["read"]).wait_complete(alone_uid)

    assert [s["role"] for s in alone["series"]] == ["primary"]
    for a, b in zip(whole["labels"], alone["labels"], strict=True):
        assert a["label"] == b["label"]
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-6)
        assert (a["positive"], a["slicesAboveThreshold"]) == (b["positive"], b["slicesAboveThreshold"])
        assert a["maxSlice"]["instanceNumber"] == b["maxSlice"]["instanceNumber"]


def test_scouts_and_reformats_alone_are_not_assessable(server, studies):
    study = studies[2]
    stow_all(server, study.of_kind("scout", "coronal", "sagittal"))
    reader = server.client(server.tokens["read"])
    result = reader.wait_complete(study.uid)
    assert result["assessable"] is False and result["notAssessableReason"] == "no-triageable-series"
    assert result["primarySeriesInstanceUID"] is None
    assert {s["reason"] for s in result["series"]} == {"localizer", "derived"}
    assert all(label.get("probability") is None and not label["positive"] for label in result["labels"]), result["labels"]
    listed = reader.get("/v1/studies?assessable=false&limit=200").json()["studies"]
    assert study.uid in {s["studyInstanceUID"] for s in listed}
    assert study.uid not in {s["studyInstanceUID"] for s in reader.get("/v1/studies?assessable=true&limit=200").json()["studies"]}


# --------------------------------------------------------------------------
# Orthanc pushes a study to us


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """A throw-away Orthanc with the DICOMweb plugin and our service as its STOW peer `ich`
    (and, given `dicom_port`, as its DICOM modality `ich`, AE title ICHTRIAGE)."""

    def __init__(self, folder: Path, peer_url: str, token: str, dicom_port: int | None = None):
        self.port = free_port()
        config = {
            "Name": "ICH-TEST", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
            "HttpPort": self.port, "DicomPort": free_port(), "RemoteAccessAllowed": False, "DicomAet": "ORTHANC",
            "DicomModalities": {"ich": ["ICHTRIAGE", "127.0.0.1", dicom_port]} if dicom_port else {},
            "AuthenticationEnabled": False, "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/",
                         "Servers": {"ich": {"Url": peer_url, "HttpHeaders": {"Authorization": f"Bearer {token}"}}}},
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log = open(folder / "orthanc.log", "wb")
        self.process = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.get("/system")
                break
            except OSError:
                assert self.process.poll() is None, (folder / "orthanc.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "Orthanc did not start in 60 s"
                time.sleep(0.2)

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method=method,
                                         headers={"Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def get(self, path: str):
        return self.request("GET", path)

    def run_job(self, path: str, resources: list[str], timeout: float = 120) -> dict:
        """Starts an asynchronous Orthanc job (a store, a STOW) and returns its final state."""
        job = self.request("POST", path, json.dumps({"Resources": resources, "Synchronous": False}).encode())
        deadline = time.monotonic() + timeout
        while (state := self.get(f"/jobs/{job['ID']}"))["State"] not in ("Success", "Failure"):
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        return state

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def test_orthanc_pushes_a_whole_study_by_stow_rs(server, studies, tmp_path):
    assert Path(ORTHANC).exists() and DICOMWEB_PLUGIN.exists(), "Debian's orthanc and orthanc-dicomweb (make test installs them)"
    study = studies[1]
    orthanc = Orthanc(tmp_path, server.base_url + "/dicomweb/", server.tokens["ingest"])
    try:
        parents = {orthanc.request("POST", "/instances", data, "application/dicom")["ParentStudy"] for data in study.all_files}
        (orthanc_study,) = parents
        state = orthanc.run_job("/dicom-web/servers/ich/stow", [orthanc_study])
        assert state["State"] == "Success", state
    finally:
        orthanc.close()

    result = server.client(server.tokens["read"]).wait_complete(study.uid)
    assert_roles_match(result, study)
    assert result["counts"]["received"] == len(study.all_files) and result["counts"]["failed"] == 0


def test_orthanc_pushes_a_whole_study_by_c_store(studies, tmp_path):
    """A PACS's usual route: DIMSE C-STORE to our AE title, every series (SR and captures included) in one association."""
    assert Path(ORTHANC).exists(), "Debian's orthanc (make test installs it)"
    study = studies[0]
    dicom_port = free_port()
    with service.Server(tmp_path / "data", service.test_bundle(), args=[
            "--threads", "2", "--stable-age", "1", "--dicom-port", str(dicom_port), "--dicom-peer", "ORTHANC@127.0.0.1"]) as srv:
        srv.tokens = {scope: srv.token(scope) for scope in ("read", "admin")}
        orthanc = Orthanc(tmp_path, srv.base_url + "/dicomweb/", "unused", dicom_port=dicom_port)
        try:
            parents = {orthanc.request("POST", "/instances", data, "application/dicom")["ParentStudy"] for data in study.all_files}
            (orthanc_study,) = parents
            assert orthanc.request("POST", "/modalities/ich/echo", b"{}") == {}
            state = orthanc.run_job("/modalities/ich/store", [orthanc_study])
            assert state["State"] == "Success", state
        finally:
            orthanc.close()
        result = srv.client(srv.tokens["read"]).wait_complete(study.uid)
        metrics = srv.client(srv.tokens["admin"], validate=False).get("/metrics").body.decode()
    assert_roles_match(result, study)
    assert result["counts"]["received"] == len(study.all_files) and result["counts"]["failed"] == 0
    assert f'ich_dimse_requests_total{{command="C-STORE",status="0000"}} {len(study.all_files)}' in metrics
    assert 'ich_dimse_requests_total{command="C-ECHO",status="0000"} 1' in metrics


# --------------------------------------------------------------------------
# An operator's rules file


def test_a_rules_file_replaces_the_default_rules(studies, tmp_path):
    """docs/SERIES_RULES.md's example: thin series are skipped as `thin`, the rest as by default."""
    rules = json.loads((REPO_ROOT / "docs" / "series-rules.json").read_text())
    rules["name"] = "5 mm only"
    rules["rules"].insert(-1, {"name": "thin", "when": {"sliceThickness": {"max": 3.9}}, "skip": "thin"})
    (tmp_path / "rules.json").write_text(json.dumps(rules))
    study = studies[2]
    with service.Server(tmp_path / "data", service.test_bundle(), args=[
            "--threads", "2", "--stable-age", "1", "--series-rules", str(tmp_path / "rules.json")]) as srv:
        srv.tokens = {scope: srv.token(scope) for scope in ("ingest", "read")}
        stow_all(srv, study.of_kind("brain", "thin"))
        result = srv.client(srv.tokens["read"]).wait_complete(study.uid)
    kinds = {uid: row["kind"] for uid, row in study.series.items()}
    assert {kinds[s["seriesInstanceUID"]]: (s["role"], s["reason"]) for s in result["series"]} == {
        "brain": ("primary", None), "thin": ("skipped", "thin")}


@pytest.mark.parametrize("setting, message", [
    (["--series-rules", "RULES"], "rule 1 ('scout'): unknown condition 'imagetype'"),
    (["--series-rules", "MISSING"], "the file cannot be read"),
    (["--scheduling", "fastest"], "scheduling must be study or arrival"),
])
def test_bad_settings_stop_the_start_with_a_clear_message(tmp_path, setting, message):
    (tmp_path / "rules.json").write_text(json.dumps({"rules": [
        {"name": "scout", "when": {"imagetype": ["LOCALIZER"]}, "skip": "localizer"}]}))
    paths = {"RULES": str(tmp_path / "rules.json"), "MISSING": str(tmp_path / "absent.json")}
    command = [str(service.server_binary()), "serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
               "--model", str(service.test_bundle())] + [paths.get(value, value) for value in setting]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "listening on" not in result.stdout
