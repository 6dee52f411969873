"""`GET /v1/studies/{uid}/report`: the study's result as a DICOM structured report (TID 1500).

Checked against independent readers: pydicom parses the object and walks its content tree,
and dicom3tools' `dciodvfy` (the reference IOD validator) must report no error. The report
must carry the original study's identity, one measurement group per label whose evaluation
and probability equal the JSON API's, the key slice as the source of each measurement, the
model as the algorithm, and say that a synthetic-trained model is not for clinical use.
"""

from __future__ import annotations

import io
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service  # noqa: E402
from service import LABELS, Server, assert_problem, ct_dataset, dataset_bytes, new_uid  # noqa: E402

SERVER_ARGS = ["--max-batch", "8", "--max-delay-ms", "10", "--threads", "2", "--stable-age", "1"]
ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
PRESENT, ABSENT = ("52101004", "SCT"), ("272519000", "SCT")
PATIENT = {"PatientName": "Report^Test", "PatientID": "RPT-001", "PatientBirthDate": "19700101", "PatientSex": "F",
           "AccessionNumber": "ACC-42", "StudyID": "S7", "ReferringPhysicianName": "Referrer^Ray",
           "StudyDate": "20261201", "StudyTime": "101500", "StudyDescription": "CT HEAD WO"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    problem = service.binary_problem(service.server_binary())
    if problem:
        pytest.fail(problem, pytrace=False)
    folder = tmp_path_factory.mktemp("report")
    srv = Server(folder / "data", service.test_bundle(), args=SERVER_ARGS)
    srv.tokens = {scope: srv.token(scope, name=f"test-{scope}") for scope in ("ingest", "read")}
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log_tail()


def slices(study: str, count: int, *, first: int = 0) -> list[bytes]:
    out = []
    for k in range(first, first + count):
        ds = ct_dataset(study=study, instance=k + 1, position=(-125.0, -125.0, 5.0 * k), seed=k)
        for keyword, value in PATIENT.items():
            setattr(ds, keyword, value)
        out.append(dataset_bytes(ds))
    return out


def send(server, files: list[bytes], study: str) -> dict:
    ingest = server.client(server.tokens["ingest"])
    for data in files:
        assert ingest.post_instance(data).status in (200, 202)
    return server.client(server.tokens["read"]).wait_complete(study)


def fetch(server, study: str) -> bytes:
    response = server.client(server.tokens["read"]).get(f"/v1/studies/{study}/report")
    assert response.status == 200, response.body[:300]
    assert response.media_type == "application/dicom"
    return response.body


def items(node, relationship: str | None = None):
    for item in node.get("ContentSequence", []):
        if relationship is None or item.RelationshipType == relationship:
            yield item


def concept(item) -> tuple[str, str]:
    code = item.ConceptNameCodeSequence[0]
    return str(code.CodeValue), str(code.CodingSchemeDesignator)


def find(node, value: str, scheme: str = "DCM"):
    """Depth-first: every content item whose concept name is (value, scheme)."""
    for item in items(node):
        if concept(item) == (value, scheme):
            yield item
        yield from find(item, value, scheme)


def groups(ds) -> dict[str, object]:
    """Measurement groups (DCM 125007) by tracking identifier."""
    found = {}
    for group in find(ds, "125007"):
        tracking = next(find(group, "112039"))
        found[str(tracking.TextValue)] = group
    return found


@pytest.fixture(scope="module")
def study(server) -> dict:
    uid = new_uid()
    result = send(server, slices(uid, 6), uid)
    return {"uid": uid, "result": result, "bytes": fetch(server, uid)}


def test_the_report_is_an_sr_of_the_original_study(study):
    ds = pydicom.dcmread(io.BytesIO(study["bytes"]))
    assert ds.SOPClassUID in (ENHANCED_SR, COMPREHENSIVE_SR)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.Modality == "SR" and ds.StudyInstanceUID == study["uid"]
    series = {s["seriesInstanceUID"] for s in study["result"]["series"]}
    assert ds.SeriesInstanceUID not in series and ds.SOPInstanceUID != ds.SeriesInstanceUID
    for keyword, value in PATIENT.items():
        assert str(ds.get(keyword)) == value, keyword
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert concept(ds) == ("126000", "DCM")  # Imaging Measurement Report
    assert ds.CompletionFlag == "PARTIAL" and ds.VerificationFlag == "UNVERIFIED"


def test_each_label_is_a_measurement_group_equal_to_the_api(study):
    ds = pydicom.dcmread(io.BytesIO(study["bytes"]))
    found = groups(ds)
    labels = {label["label"]: label for label in study["result"]["labels"]}
    assert set(found) == {f"ICH triage {name}" for name in LABELS}
    model = study["result"]["model"]
    for name, label in labels.items():
        group = found[f"ICH triage {name}"]
        finding = next(find(group, "121071")).ConceptCodeSequence[0]
        evaluations = [i for i in items(group, "CONTAINS") if i.ValueType == "CODE" and concept(i) ==
                       (str(finding.CodeValue), str(finding.CodingSchemeDesignator))]
        assert len(evaluations) == 1, name
        answer = evaluations[0].ConceptCodeSequence[0]
        assert (str(answer.CodeValue), str(answer.CodingSchemeDesignator)) == (PRESENT if label["positive"] else ABSENT)
        probability = next(find(group, "122157"))
        measured = probability.MeasuredValueSequence[0]
        assert float(measured.NumericValue) == pytest.approx(label["probability"], abs=1e-6), name
        assert measured.MeasurementUnitsCodeSequence[0].CodeValue == "1"
        assert str(next(find(probability, "111001")).TextValue) == model["name"]
        assert str(next(find(probability, "111003")).TextValue) == model["version"]
        source = next(find(probability, "121112"))  # Source of Measurement
        assert source.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == label["maxSlice"]["sopInstanceUID"]
    assert found["ICH triage any"].ContentSequence[0]  # the group is not empty
    any_finding = next(find(found["ICH triage any"], "121071")).ConceptCodeSequence[0]
    assert (any_finding.CodeValue, any_finding.CodingSchemeDesignator) == ("1386000", "SCT")


def test_evidence_lists_every_referenced_slice(study):
    ds = pydicom.dcmread(io.BytesIO(study["bytes"]))
    evidence = {sop.ReferencedSOPInstanceUID for s in ds.CurrentRequestedProcedureEvidenceSequence
                for series in s.ReferencedSeriesSequence for sop in series.ReferencedSOPSequence}
    assert evidence == {label["maxSlice"]["sopInstanceUID"] for label in study["result"]["labels"]}


def test_a_synthetic_model_says_it_is_not_for_clinical_use(study):
    ds = pydicom.dcmread(io.BytesIO(study["bytes"]))
    assert study["result"]["model"]["clinicalUse"] is False
    comments = [str(i.TextValue) for i in find(ds, "121106")]
    assert any("NOT FOR CLINICAL USE" in c and "synthetic" in c for c in comments), comments


def test_dciodvfy_finds_no_error(study, tmp_path):
    assert shutil.which("dciodvfy"), "dicom3tools is not installed (make test installs it)"
    path = tmp_path / "report.dcm"
    path.write_bytes(study["bytes"])
    out = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True)
    text = out.stdout + out.stderr
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    assert not errors, text


def test_the_same_result_gives_the_same_object(server, study):
    assert fetch(server, study["uid"]) == study["bytes"]


def test_each_fetch_is_audited(server, study):
    """The report holds PHI: every fetch is a `read-report` row naming the study."""
    connection = sqlite3.connect(f"file:{server.data_dir / 'ich.sqlite'}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT action FROM audit WHERE study_instance_uid = ?", (study["uid"],)).fetchall()
    finally:
        connection.close()
    assert [r[0] for r in rows].count("read-report") >= 1


def test_a_late_slice_makes_a_new_instance_in_the_same_series(server):
    uid = new_uid()
    send(server, slices(uid, 4), uid)
    first = pydicom.dcmread(io.BytesIO(fetch(server, uid)))
    send(server, slices(uid, 1, first=4), uid)
    second = pydicom.dcmread(io.BytesIO(fetch(server, uid)))
    assert second.SeriesInstanceUID == first.SeriesInstanceUID
    assert second.SOPInstanceUID != first.SOPInstanceUID
    assert int(second.InstanceNumber) > int(first.InstanceNumber)


def test_a_study_without_a_triageable_series_reports_indeterminate(server):
    uid = new_uid()
    ds = ct_dataset(study=uid, modality="MR")
    result = send(server, [dataset_bytes(ds)], uid)
    assert result["assessable"] is False
    report = pydicom.dcmread(io.BytesIO(fetch(server, uid)))
    assert groups(report) == {}
    evaluation = next(find(report, "1386000", "SCT"))
    assert evaluation.ConceptCodeSequence[0].CodeValue == "82334004"  # Indeterminate
    assert any("Not assessable" in str(i.TextValue) for i in find(report, "121106"))


def test_unknown_incomplete_and_unauthorised(server):
    read = server.client(server.tokens["read"])
    assert_problem(read.get(f"/v1/studies/{new_uid()}/report"), 404, "study-not-found")
    assert_problem(server.client(server.tokens["ingest"]).get(f"/v1/studies/{new_uid()}/report"), 403)
    uid = new_uid()
    # Received but not yet stable (stable age 1 s): the report is refused until the study completes.
    assert server.client(server.tokens["ingest"]).post_instance(slices(uid, 1)[0]).status in (200, 202)
    response = read.get(f"/v1/studies/{uid}/report")
    if response.status != 200:
        assert_problem(response, 409, "study-incomplete")
