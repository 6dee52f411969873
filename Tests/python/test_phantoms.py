"""Tools/phantoms.py: the synthetic head-CT generator (issue 5).

Small runs at 512x512 (a few slices per study) check that the files read, that
their Hounsfield values are exactly what the generator drew (through every
storage quirk, with the reference preprocessing of reference_preprocess.py),
that the HU are plausible, that labels.csv says what is drawn, that the output
is deterministic and independent of --workers, and that `ichctl` decodes every
file (skipped when the release binary is missing; ``ICHCTL`` overrides the path).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import reference_preprocess as ref
from conftest import REPO_ROOT, is_dicom_uid

GENERATOR = REPO_ROOT / "Tools" / "phantoms.py"
SMALL = ["--size", "512", "--slices-min", "3", "--slices-max", "4"]
QUIRKY = dict(seed=7, studies=4, extra=["--quirk-fraction", "1", "--prevalence", "1"])
PLAIN = dict(seed=8, studies=3, extra=["--quirk-fraction", "0", "--prevalence", "1"])
NEGATIVE = dict(seed=9, studies=2, extra=["--quirk-fraction", "0", "--prevalence", "0"])

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")


def load_phantoms():
    spec = importlib.util.spec_from_file_location("phantoms", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("phantoms", module)
    spec.loader.exec_module(module)
    return module


P = load_phantoms()


def generate(out: Path, seed: int, studies: int, extra: list[str], workers: int = 1, small=SMALL) -> Path:
    command = [sys.executable, str(GENERATOR), "--out", str(out), "--studies", str(studies), "--seed", str(seed),
               "--workers", str(workers), *small, *extra]
    process = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr + process.stdout
    assert "intraparenchymal" in process.stdout  # the prevalence table
    return out


def options(extra: list[str]) -> "P.Options":
    args = dict(zip(extra[::2], extra[1::2]))
    return P.Options(size=512, slices_min=3, slices_max=4, prevalence=float(args["--prevalence"]),
                     quirk_fraction=float(args["--quirk-fraction"]))


class Run:
    """A generated folder and, for each of its studies, what the generator drew."""

    def __init__(self, out: Path, seed: int, studies: int, extra: list[str]):
        self.out = out
        self.studies = [P.sample_study(seed, i, options(extra)) for i in range(studies)]
        self._images: dict[tuple[int, int], object] = {}

    def image(self, i: int, k: int):
        if (i, k) not in self._images:
            self._images[i, k] = P.render_slice(self.studies[i], k)
        return self._images[i, k]

    def path(self, i: int, k: int) -> Path:
        study = self.studies[i]
        return self.out / study.study_uid / f"{study.sop_uids[k]}.dcm"

    def slices(self):
        for i, study in enumerate(self.studies):
            for k in range(study.n):
                yield i, k

    def files(self) -> list[Path]:
        return sorted(self.out.rglob("*.dcm"))

    def labels(self) -> dict[str, dict[str, int]]:
        with open(self.out / "labels.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["ID", "Label"]
        by_sop: dict[str, dict[str, int]] = {}
        for row_id, value in rows[1:]:
            prefix, rest = row_id.split("_", 1)
            sop, label = rest.rsplit("_", 1)
            assert prefix == "ID" and value in ("0", "1"), row_id
            by_sop.setdefault(sop, {})[label] = int(value)
        return by_sop


@pytest.fixture(scope="module")
def quirky(tmp_path_factory) -> Run:
    return Run(generate(tmp_path_factory.mktemp("quirky"), **QUIRKY), **QUIRKY)


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Run:
    return Run(generate(tmp_path_factory.mktemp("plain"), **PLAIN), **PLAIN)


@pytest.fixture(scope="module")
def negative(tmp_path_factory) -> Run:
    return Run(generate(tmp_path_factory.mktemp("negative"), **NEGATIVE), **NEGATIVE)


@pytest.fixture(scope="module", params=["quirky", "plain"])
def run(request) -> Run:
    return request.getfixturevalue(request.param)


def read(path: Path):
    return ref.read_dataset(path)


def tree_bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------
# Layout and tags


def test_layout_and_csv_files(run):
    files = run.files()
    expected = {run.path(i, k) for i, k in run.slices()}
    assert set(files) == expected
    labels = run.labels()
    with open(run.out / "labels.csv", newline="") as f:
        ids = [row[0] for row in list(csv.reader(f))[1:]]
    sops = [ids[j].rsplit("_", 1)[0][3:] for j in range(0, len(ids), 6)]
    for j, sop in enumerate(sops):  # six consecutive rows per SOP, in the challenge's order
        assert [ids[6 * j + m] for m in range(6)] == [f"ID_{sop}_{label}" for label in P.CSV_LABELS]
    assert sorted(sops) == sorted(p.stem for p in files)
    for sop, row in labels.items():
        assert row["any"] == max(row[label] for label in P.LABELS[1:]), sop
    with open(run.out / "studies.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["SOPInstanceUID"] for r in rows] == sops
    for r in rows:
        ds = read(run.out / r["StudyInstanceUID"] / f"{r['SOPInstanceUID']}.dcm")
        assert int(r["InstanceNumber"]) == ds.InstanceNumber
        assert float(r["z"]) == pytest.approx(float(ds.ImagePositionPatient[2]), abs=1e-6)


def test_tags(run):
    for i, study in enumerate(run.studies):
        datasets = [read(run.path(i, k)) for k in range(study.n)]
        zs = []
        for ds in datasets:
            assert ds.Modality == "CT" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
            for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.FrameOfReferenceUID):
                assert is_dicom_uid(uid) and uid.startswith("2.25."), uid
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert ds.StudyInstanceUID == study.study_uid and ds.SeriesInstanceUID == study.series_uid
            assert str(ds.PatientName) == f"PHANTOM^{i}"
            assert (ds.Rows, ds.Columns, ds.BitsAllocated) == (512, 512, 16)
            assert ds.BitsStored in (12, 16) and ds.HighBit == ds.BitsStored - 1
            assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
            spacing = [float(v) for v in ds.PixelSpacing]
            assert spacing[0] == spacing[1] and 0.4 <= spacing[0] <= 0.56
            assert "WindowCenter" in ds and "WindowWidth" in ds
            assert len(ds.StudyDate) == 8
            zs.append(float(ds.ImagePositionPatient[2]))
        assert len({ds.SOPInstanceUID for ds in datasets}) == study.n
        assert sorted(ds.InstanceNumber for ds in datasets) == list(range(1, study.n + 1))
        steps = np.diff(sorted(zs))
        assert np.allclose(steps, float(datasets[0].SliceThickness), atol=1e-4), steps


# --------------------------------------------------------------------------
# Pixels


def expected_hounsfield(run: Run, i: int, k: int) -> np.ndarray:
    """What reference_preprocess.hounsfield must give: the drawn HU, air at -1000, padding as air."""
    image = run.image(i, k)
    hu = np.maximum(image.hu.astype(np.float32), np.float32(ref.AIR_HU))
    if run.studies[i].padding:
        hu[image.outside_fov] = np.float32(ref.AIR_HU)
    return hu


def test_files_hold_the_drawn_hounsfield_values(run):
    from pydicom.pixels import apply_modality_lut

    for i, k in run.slices():
        ds = read(run.path(i, k))
        np.testing.assert_array_equal(ref.hounsfield(ds), expected_hounsfield(run, i, k), err_msg=str((i, k)))
        if not ref.has_rsna_defect(ds):  # pydicom's own modality LUT, where no correction is needed
            modality = apply_modality_lut(ds.pixel_array, ds)
            drawn = run.image(i, k).hu.astype(np.float64)
            if run.studies[i].padding:
                drawn[run.image(i, k).outside_fov] = -2000 * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            np.testing.assert_array_equal(modality, drawn)


def test_hounsfield_ranges(run):
    for i, study in enumerate(run.studies):
        bone_seen = 0
        for k in range(study.n):
            hu = ref.hounsfield(read(run.path(i, k)))
            image = run.image(i, k)
            classes = image.classes
            air = hu[classes == P.AIR]
            assert abs(np.median(air) - (-1000)) <= 5, (i, k)
            # away from bone (partial volume) and from any drawn blood
            away = cv2.erode((classes >= P.BRAIN).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            away &= image.labels == 0
            brain = hu[(classes == P.BRAIN) & away]
            if brain.size > 2000:
                assert 20 <= np.median(brain) <= 45, (i, k, np.median(brain))
                csf = hu[(classes >= P.CSF) & away]
                if csf.size > 500:
                    assert -5 <= np.median(csf) <= 20, (i, k, np.median(csf))
            bone_seen += int((hu > 500).sum())
            assert hu.max() < 3072
        assert bone_seen > 1000, i


def test_labels_match_what_is_drawn(run):
    labels = run.labels()
    minimum = P.min_pixels(512)
    positives = 0
    for i, k in run.slices():
        image = run.image(i, k)
        row = labels[run.studies[i].sop_uids[k]]
        hu = ref.hounsfield(read(run.path(i, k)))
        intracranial = image.classes >= P.BRAIN
        for code, name in enumerate(P.LABELS[1:], start=1):
            drawn = image.labels == code
            assert row[name] == int(drawn.sum() >= minimum), (i, k, name, int(drawn.sum()))
            if row[name]:
                positives += 1
                values = hu[drawn]
                assert 50 <= np.median(values) <= 90, (i, k, name, np.median(values))
                assert np.mean((values >= 50) & (values <= 90)) > 0.75, (i, k, name)
                assert intracranial[drawn].all(), (i, k, name)  # inside the skull
        if row["any"]:  # seen from the image alone: enough blood-density pixels inside the skull
            assert ((hu >= 50) & (hu <= 90) & intracranial).sum() >= minimum
    assert positives > 0, "no positive slice: the test would prove nothing"


def test_forced_negative_study_has_no_blood(negative):
    labels = negative.labels()
    assert labels and all(not any(row.values()) for row in labels.values())
    for i, k in negative.slices():
        image = negative.image(i, k)
        assert image.counts[1:].sum() == 0
        hu = ref.hounsfield(read(negative.path(i, k)))
        # inside the skull, away from bone by 2 mm (partial volume), a 5x5 mean (noise sd / 5)
        inner = cv2.erode((image.classes >= P.BRAIN).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        mean = cv2.blur(hu, (5, 5))
        assert int(((mean >= 50) & inner).sum()) == 0, (i, k, float(mean[inner].max()))


# --------------------------------------------------------------------------
# Determinism, workers, quirks


def test_same_seed_same_bytes_whatever_the_workers(quirky, tmp_path):
    """A second, independent run with two worker processes writes the very same bytes
    as the one-worker run of the fixture: deterministic and independent of --workers."""
    assert tree_bytes(generate(tmp_path / "two_workers", **QUIRKY, workers=2)) == tree_bytes(quirky.out)


def test_another_seed_gives_other_studies(quirky, tmp_path):
    other = generate(tmp_path / "other", **{**QUIRKY, "seed": QUIRKY["seed"] + 1, "studies": 2},
                     small=["--size", "512", "--slices-min", "2", "--slices-max", "2"])
    mine, theirs = tree_bytes(quirky.out), tree_bytes(other)
    assert not (set(mine) & set(theirs)) - {"labels.csv", "studies.csv"}  # new UIDs everywhere
    assert mine["labels.csv"] != theirs["labels.csv"]
    pixels = {read(p).PixelData for p in quirky.files()}
    assert not pixels & {read(p).PixelData for p in other.rglob("*.dcm")}


def quirks_of(ds) -> set[str]:
    found = set()
    if "PixelPaddingValue" in ds:
        found.add("padding")
    syntax = str(ds.file_meta.TransferSyntaxUID)
    if syntax == "1.2.840.10008.1.2.5":
        found.add("rle")
    elif syntax == "1.2.840.10008.1.2.4.80":
        found.add("jpegls")
    else:
        assert syntax == "1.2.840.10008.1.2.1", syntax
    if ref.has_rsna_defect(ds):
        found.add("rsna12")
    elif float(ds.RescaleSlope) != 1:
        found.add("slope")
    elif ds.PixelRepresentation == 0:
        found.add("unsigned")
    return found


def test_quirk_fraction_one_shows_every_quirk(quirky):
    seen = set()
    for i, study in enumerate(quirky.studies):
        per_file = [quirks_of(read(quirky.path(i, k))) for k in range(study.n)]
        assert all(q == per_file[0] for q in per_file), "quirks vary within a study"
        assert per_file[0] == set(study.quirks()) and per_file[0], i
        seen |= per_file[0]
        if study.padding:
            ds = read(quirky.path(i, 0))
            stored = ref.stored_values(ds)
            assert (stored[quirky.image(i, 0).outside_fov] == -2000).all() and ds.PixelPaddingValue == -2000
    assert seen == set(P.QUIRKS)


def test_quirk_fraction_zero_writes_plain_files(plain):
    for path in plain.files():
        assert quirks_of(read(path)) == set()


# --------------------------------------------------------------------------
# ichctl


def ichctl_binary() -> Path | None:
    configured = os.environ.get("ICHCTL")
    path = Path(configured).expanduser() if configured else Path(".build/release/ichctl")
    path = path if path.is_absolute() else REPO_ROOT / path
    return path if path.is_file() and os.access(path, os.X_OK) else None


def test_ichctl_decodes_every_file(quirky, plain, tmp_path):
    binary = ichctl_binary()
    if binary is None:
        pytest.skip("no ichctl binary (build with `swift build -c release --product ichctl` or set ICHCTL)")
    files = quirky.files() + plain.files()
    process = subprocess.run([str(binary), "inspect", "--json", *map(str, files)], capture_output=True, text=True,
                             timeout=300)
    assert process.returncode == 0, process.stderr
    objects = [json.loads(line) for line in process.stdout.splitlines() if line.strip()]
    assert len(objects) == len(files)
    for obj in objects:
        assert "error" not in obj, obj
        assert obj["modality"] == "CT" and obj["rows"] == 512
    # Hounsfield values through ichctl's own decoding and corrections: one file per quirky study
    for i, study in enumerate(quirky.studies):
        out = tmp_path / f"{i}.npy"
        subprocess.run([str(binary), "preprocess", str(quirky.path(i, 0)), "--out", str(out), "--stage",
                        "hounsfield"], check=True, capture_output=True, timeout=120)
        hu = np.load(out)
        hu = hu.reshape(hu.shape[0], hu.shape[1])
        np.testing.assert_array_equal(hu, expected_hounsfield(quirky, i, 0), err_msg=str(study.quirks()))
