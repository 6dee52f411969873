"""A real head CT, wrapped as DICOM at test time, in every transfer syntax we decode.

Debian's `invesalius-examples` ships `Cranium.inv3`, 108 axial slices of a real
non-contrast head CT (`make test` installs it; without it these tests fail, they
are not skipped). `Tools/real_ct.py` wraps it as a CT series (real pixels,
synthetic header) in explicit VR little endian, RLE, JPEG-LS lossless, JPEG 2000
lossless, HTJ2K lossless (OpenJPH's encoder) and deflate. The tests hold:

* every syntax decodes to the same Hounsfield units, equal to the source volume
  and to pydicom's decoding (pylibjpeg-openjpeg for JPEG 2000 and HTJ2K,
  pyjpegls for JPEG-LS);
* the JPEG 2000 series goes through `ich-server` as a study: all 108 slices
  processed, ordered by z, the series primary and the study assessable;
* the same volume as one Enhanced CT object (`--enhanced`, uncompressed,
  JPEG 2000 and HTJ2K one fragment per frame): every frame decodes to the source, and
  the service triages it frame by frame with the single-frame series' results;
* pydicom's real GE series (a 202.5 mm gap, scouts at one z, z falling as the
  instance number rises) get the right roles, order and warnings;
* what the synthetic-trained default model does on this real scan and on the
  real CQ500 haemorrhage slice is what its model card says.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service  # noqa: E402
from conftest import REPO_ROOT  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "Tools"))
import real_ct  # noqa: E402

# Every 9th slice, the first and the last: skull base, ventricles, vertex.
SAMPLE = sorted(set(range(0, 108, 9)) | {107})


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    if not real_ct.DEFAULT_INV3.is_file():
        pytest.fail(f"{real_ct.DEFAULT_INV3} is missing: `make test` installs invesalius-examples", pytrace=False)
    hu, spacing = real_ct.load(real_ct.DEFAULT_INV3)
    assert hu.shape == (108, 256, 256) and spacing == pytest.approx([0.957, 0.957, 1.5], abs=1e-3)
    return hu


@pytest.fixture(scope="module")
def series(volume, tmp_path_factory) -> dict[str, list[Path]]:
    out = tmp_path_factory.mktemp("cranium")
    return {syntax: real_ct.write(syntax, out / syntax) for syntax in real_ct.SYNTAXES}


@pytest.mark.parametrize("syntax", sorted(real_ct.SYNTAXES))
def test_every_syntax_decodes_to_the_source_hu(syntax, series, volume, ichctl, tmp_path):
    paths = [series[syntax][k] for k in SAMPLE]
    assert str(pydicom.dcmread(paths[0], stop_before_pixels=True).file_meta.TransferSyntaxUID) == real_ct.SYNTAXES[syntax]
    jobs = [(path, tmp_path / f"{k}.npy", {"stage": "modality"}) for k, path in zip(SAMPLE, paths)]
    for k, path, ours in zip(SAMPLE, paths, ichctl.preprocess_many(jobs)):
        if isinstance(ours, BaseException):
            raise ours
        ds = pydicom.dcmread(path)
        theirs = apply_modality_lut(ds.pixel_array, ds)
        ours = ours.reshape(theirs.shape)
        assert np.array_equal(ours, theirs), f"slice {k + 1}: max |diff| {np.abs(ours - theirs).max()} against pydicom"
        assert np.array_equal(ours, volume[k]), f"slice {k + 1} differs from the source volume"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    problem = service.binary_problem(service.server_binary())
    if problem:
        pytest.fail(problem, pytrace=False)
    srv = service.Server(tmp_path_factory.mktemp("real-ct") / "data", service.test_bundle(),
                         args=["--threads", "2", "--stable-age", "1"])
    srv.tokens = {scope: srv.token(scope) for scope in ("ingest", "read")}
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log_tail()


def stow(server, files: list[bytes], per_request: int = 12) -> None:
    ingest = server.client(server.tokens["ingest"])
    for start in range(0, len(files), per_request):
        response = ingest.stow(files[start:start + per_request])
        assert response.status == 200, response.body[:600]


@pytest.fixture(scope="module")
def single_frame_study(series, server) -> dict:
    stow(server, [path.read_bytes() for path in series["j2k"]])
    study = pydicom.dcmread(series["j2k"][0], stop_before_pixels=True)
    return server.client(server.tokens["read"]).wait_complete(str(study.StudyInstanceUID), timeout=300)


def test_a_jpeg2000_study_is_triaged_end_to_end(series, single_frame_study):
    study = pydicom.dcmread(series["j2k"][0], stop_before_pixels=True)
    result = single_frame_study
    assert result["counts"] == {"received": 108, "processed": 108, "failed": 0, "skipped": 0, "queued": 0}
    assert result["primarySeriesInstanceUID"] == str(study.SeriesInstanceUID) and result["assessable"] is True
    assert [s["position"] for s in result["slices"]] == pytest.approx([1.5 * k for k in range(108)])
    assert [s["instanceNumber"] for s in result["slices"]] == list(range(1, 109))


@pytest.fixture(scope="module")
def enhanced(volume, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("cranium-enhanced")
    return {syntax: real_ct.write(syntax, out / syntax, enhanced=True)[0] for syntax in ("explicit", "j2k", "htj2k")}


@pytest.mark.parametrize("syntax", ["explicit", "j2k", "htj2k"])
def test_every_frame_of_the_enhanced_object_decodes_to_the_source_hu(syntax, enhanced, volume, ichctl, tmp_path):
    path = enhanced[syntax]
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2.1" and int(ds.NumberOfFrames) == 108
    inspected = json.loads(ichctl.run("inspect", "--json", str(path), check=True).stdout)
    assert inspected["number_of_frames"] == 108
    assert [f["image_position_patient"][2] for f in inspected["frames"]] == pytest.approx([1.5 * k for k in range(108)])
    jobs = [(path, tmp_path / f"{k}.npy", {"stage": "modality", "frame": k + 1}) for k in SAMPLE]
    frames = ds.pixel_array
    for k, ours in zip(SAMPLE, ichctl.preprocess_many(jobs)):
        if isinstance(ours, BaseException):
            raise ours
        theirs = frames[k].astype(np.float32) - 1024  # the shared Pixel Value Transformation
        assert np.array_equal(ours, theirs), f"frame {k + 1}: max |diff| {np.abs(ours - theirs).max()} against pydicom"
        assert np.array_equal(ours, volume[k]), f"frame {k + 1} differs from the source volume"


def test_an_enhanced_ct_object_is_triaged_frame_by_frame(enhanced, single_frame_study, server):
    """One J2K Enhanced CT object of 108 frames is the same study as its 108 single-frame slices:
    each frame is a slice with its position, and gets the probabilities of its single-frame twin."""
    path = enhanced["j2k"]
    header = pydicom.dcmread(path, stop_before_pixels=True)
    stow(server, [path.read_bytes()])
    result = server.client(server.tokens["read"]).wait_complete(str(header.StudyInstanceUID), timeout=300)
    assert result["counts"] == {"received": 108, "processed": 108, "failed": 0, "skipped": 0, "queued": 0}
    assert result["primarySeriesInstanceUID"] == str(header.SeriesInstanceUID) and result["assessable"] is True
    series = result["series"][0]
    assert (series["instances"], series["slices"], series["role"]) == (1, 108, "primary")
    slices = result["slices"]
    assert {s["sopInstanceUID"] for s in slices} == {str(header.SOPInstanceUID)}
    assert [s["frameNumber"] for s in slices] == list(range(1, 109))
    assert [s["position"] for s in slices] == pytest.approx([1.5 * k for k in range(108)])
    twins = single_frame_study["slices"]
    for frame, twin in zip(slices, twins):
        for label, p in twin["probabilities"].items():
            assert frame["probabilities"][label] == pytest.approx(p, abs=1e-5), (frame["frameNumber"], label)
    for ours, theirs in zip(result["labels"], single_frame_study["labels"]):
        assert ours["slicesAboveThreshold"] == theirs["slicesAboveThreshold"], ours["label"]
        if ours["maxSlice"]:
            assert ours["maxSlice"]["frameNumber"] == theirs["maxSlice"]["instanceNumber"], ours["label"]
    instance = server.client(server.tokens["read"]).get(f"/v1/instances/{header.SOPInstanceUID}").json()
    assert instance["numberOfFrames"] == 108 and instance["status"] == "done"


def normal_position(ds) -> float:
    orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
    return float(np.dot([float(v) for v in ds.ImagePositionPatient], np.cross(orientation[:3], orientation[3:])))


def test_real_scanner_series_from_pydicom(server):
    """pydicom's dicomdirtests (real GE series cut to 16x16): a head CT whose 4 slices jump 202.5 mm,
    two scouts at the same z, and a gated series whose z falls as its instance number rises."""
    root = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests"
    folders = {"head": root / "77654033" / "CT2", "scouts": root / "98892001" / "CT2N", "gated": root / "98892001" / "CT5N"}
    datasets = {name: [pydicom.dcmread(p) for p in sorted(folder.iterdir())] for name, folder in folders.items()}
    stow(server, [p.read_bytes() for folder in folders.values() for p in sorted(folder.iterdir())])
    reader = server.client(server.tokens["read"])
    for name, other in (("head", None), ("gated", "scouts")):
        first = datasets[name][0]
        result = reader.wait_complete(str(first.StudyInstanceUID))
        roles = {s["seriesInstanceUID"]: (s["role"], s["reason"]) for s in result["series"]}
        assert roles[str(first.SeriesInstanceUID)] == ("primary", None)
        if other:
            assert roles[str(datasets[other][0].SeriesInstanceUID)] == ("skipped", "localizer")
        expected = sorted(datasets[name], key=normal_position)
        triaged = [s for s in result["slices"] if s["seriesInstanceUID"] == str(first.SeriesInstanceUID)]
        assert [s["sopInstanceUID"] for s in triaged] == [str(ds.SOPInstanceUID) for ds in expected]
        assert [s["position"] for s in triaged] == pytest.approx([normal_position(ds) for ds in expected], abs=1e-4)
        assert "few-slices" in result["warnings"]
        assert ("gap" in result["warnings"]) == (name == "head"), result["warnings"]


def test_the_demo_model_does_not_transfer_to_real_ct(series, ichctl, tmp_path):
    """Models/default learnt synthetic phantoms. Its model card states what it does on the real
    Cranium series (a normal head CT) and on the real CQ500 haemorrhage slice; this recomputes
    those figures with the shipped bundle and fails when the card no longer states them."""
    bundle = REPO_ROOT / "Models" / "default"
    manifest = json.loads((bundle / "model.json").read_text())
    cq500 = Path(get_testdata_file("693_UNCR.dcm"))
    out = subprocess.run([str(ichctl.path), "predict", "--model", str(bundle), "--batch", "8",
                          *map(str, series["explicit"]), str(cq500)], check=True, capture_output=True, text=True)
    rows = [json.loads(line)["probabilities"] for line in out.stdout.splitlines()]
    assert len(rows) == 109
    positive = {label: sum(row[label] >= threshold for row in rows[:108])
                for label, threshold in zip(manifest["labels"], manifest["thresholds"])}
    card = " ".join((bundle / "README.md").read_text().split())
    assert f"**{positive['any']} of the 108 slices** `any`-positive" in card, positive
    stated = ", ".join(f"{label} {positive[label]}" for label in manifest["labels"][1:])
    assert f"({stated})" in card, positive
    assert f"`any` {rows[108]['any']:.7f}" in card, rows[108]
    assert f"subdural {rows[108]['subdural']:.7f}" in card, rows[108]
    assert positive["any"] > 54, "a normal scan is flagged on most of its slices: the card's warning holds"
