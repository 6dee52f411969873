"""`ichctl preprocess --stage hounsfield|input` against reference_preprocess.py.

Hounsfield values must equal the reference exactly (the same double-precision
rescale, cast to float32); model input may differ by at most 1e-5 (float
rounding in windowing and interpolation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import reference_preprocess as ref
from conftest import REAL_FILES, load_generator, uid_fixed_name

INPUT_TOLERANCE = 1e-5
AIR = np.float32(ref.AIR_HU)

# Single-frame cases: a multi-frame object's frames run through the same preprocessing (its per-frame modality
# stage is checked against pydicom in test_dicom_decode, its frames' results in test_service and test_real_ct).
SYNTHETIC_OK = [c for c in load_generator().CASES if c.expect == "ok" and c.name != "multi_frame.dcm"]
REAL_CT = ["CT_small.dcm", "693_UNCR.dcm"]
BAD_SEQUENCE = uid_fixed_name("bad_sequence.dcm")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")


@dataclass(frozen=True)
class Source:
    kind: str  # "synthetic", "real" or "uid-fixed"
    name: str

    def __str__(self) -> str:
        return self.name


ALL_FILES = (
    [Source("synthetic", c.name) for c in SYNTHETIC_OK]
    + [Source("real", name) for name in REAL_CT]
    + [Source("uid-fixed", BAD_SEQUENCE)]
)
SETTINGS_FILES = [
    Source("synthetic", name)
    for name in (
        "ct_plain_explicit_le.dcm", "odd_7x5.dcm", "tiny_1x1.dcm", "padding_range.dcm",
        "slope_0.5_intercept_-1024.5.dcm", "eight_bit_unsigned.dcm", "rsna_12bit_defect.dcm",
    )
] + [Source("real", name) for name in REAL_CT] + [Source("uid-fixed", BAD_SEQUENCE)]  # fmt: skip

# Non-default settings: (id, ichctl options / reference keyword arguments).
SETTINGS = [
    ("resize-then-window", {"order": "resize-then-window"}),
    ("nearest", {"mode": "nearest"}),
    ("nearest-resize-then-window", {"mode": "nearest", "order": "resize-then-window"}),
    ("size-224", {"size": 224}),
    ("size-299", {"size": 299}),
    ("windows-40_75-600_2800-neg50_101", {"windows": ((40, 75), (600, 2800), (-50, 101))}),
    ("one-window-40_81", {"windows": ((40, 81),)}),
    ("four-windows-299-resize-then-window",
     {"windows": ((40, 80), (80, 200), (40, 380), (600, 2800)), "size": 299, "order": "resize-then-window"}),
]  # fmt: skip


def manifest_entries(key: str) -> list[Source]:
    return [Source("synthetic", c.name) for c in SYNTHETIC_OK if key in c.hints]


# --------------------------------------------------------------------------
# Running and caching


class Runs:
    """ichctl outputs and pydicom datasets, each computed once per session."""

    def __init__(self, ichctl, out_dir: Path, synthetic_dir: Path, uid_fixed: dict[str, Path]):
        self.ichctl = ichctl
        self.out_dir = out_dir
        self.synthetic_dir = synthetic_dir
        self.uid_fixed = uid_fixed
        self.real = {f.id: f.path for f in REAL_FILES}
        self._outputs: dict[tuple, np.ndarray] = {}
        self._count = 0
        self._datasets: dict[Path, object] = {}

    def path(self, source: Source) -> Path:
        if source.kind == "synthetic":
            return self.synthetic_dir / source.name
        if source.kind == "real":
            return self.real[source.name]
        return self.uid_fixed[source.name]

    def dataset(self, source: Source):
        path = self.path(source)
        if path not in self._datasets:
            self._datasets[path] = ref.read_dataset(path)
        return self._datasets[path]

    @staticmethod
    def _key(source: Source, stage: str, rsna_correction: bool, settings: dict) -> tuple:
        return (source, stage, rsna_correction, tuple(sorted(settings.items())))

    def _job(self, source: Source, stage: str, rsna_correction: bool, settings: dict) -> tuple[Path, Path, dict]:
        options = {"stage": stage, "rsna_correction": rsna_correction}
        if "windows" in settings:
            options["windows"] = ref.windows_argument(settings["windows"])
        if "size" in settings:
            options["size"] = settings["size"]
        if "order" in settings:
            options["order"] = settings["order"]
        if "mode" in settings:
            options["resize"] = settings["mode"]
        self._count += 1
        return self.path(source), self.out_dir / f"{self._count}.npy", options

    def output(self, source: Source, stage: str = "input", rsna_correction: bool = True, **settings) -> np.ndarray:
        key = self._key(source, stage, rsna_correction, settings)
        if key not in self._outputs:
            file, out, options = self._job(source, stage, rsna_correction, settings)
            self._outputs[key] = self.ichctl.preprocess(file, out, **options)
        return self._outputs[key]

    def prefetch(self, planned: list[tuple[Source, str, bool, dict]]) -> None:
        """Make these outputs in parallel now; a failed run is left for its test to repeat."""
        wanted = {self._key(*p): p for p in planned}
        todo = [(key, p) for key, p in wanted.items() if key not in self._outputs]
        results = self.ichctl.preprocess_many([self._job(*p) for _, p in todo])
        for (key, _), result in zip(todo, results):
            if not isinstance(result, BaseException):
                self._outputs[key] = result


def planned_outputs(items) -> list[tuple[Source, str, bool, dict]]:
    """The ichctl outputs the selected tests of this module will ask for, so that they
    can be made in parallel up front (process start-up dominates the run time)."""
    planned = []
    for item in items:
        if getattr(item, "path", None) != Path(__file__) or not hasattr(item, "callspec"):
            continue
        params, name = item.callspec.params, item.originalname
        source, setting = params.get("source"), params.get("setting", {})
        if name == "test_hounsfield":
            planned.append((source, "hounsfield", True, {}))
        elif name in ("test_input_default_settings", "test_background_corner_is_exactly_zero"):
            planned.append((source, "input", True, {}))
        elif name in ("test_input_settings", "test_input_near_opencv_with_ipp"):
            planned.append((source, "input", True, setting))
        elif name == "test_input_without_rsna_correction":
            planned.append((source, "input", False, {}))
        elif name == "test_rsna_correction_fires_when_expected":
            planned += [(source, "hounsfield", True, {}), (source, "hounsfield", False, {})]
    return planned


@pytest.fixture(scope="session")
def runs(request, ichctl, tmp_path_factory, synthetic_dir, uid_fixed_copies) -> Runs:
    runs = Runs(ichctl, tmp_path_factory.mktemp("preprocess"), synthetic_dir, uid_fixed_copies)
    runs.prefetch(planned_outputs(request.session.items))
    return runs


def assert_input_close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    difference = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    worst = np.unravel_index(np.argmax(difference), difference.shape)
    assert difference.max() <= INPUT_TOLERANCE, (
        f"max |diff| {difference.max():.3g} at {worst}: ichctl {actual[worst]!r}, reference {expected[worst]!r}"
    )
    assert actual.min() >= 0 and actual.max() <= 1, f"input outside [0, 1]: {actual.min()} .. {actual.max()}"


def assert_hounsfield_equal(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    mismatch = np.argwhere(actual != expected)
    assert mismatch.size == 0, (
        f"{len(mismatch)} pixels differ, first at {tuple(mismatch[0])}: "
        f"ichctl {actual[tuple(mismatch[0])]!r}, reference {expected[tuple(mismatch[0])]!r}"
    )


# --------------------------------------------------------------------------
# Every file, default settings


@pytest.mark.parametrize("source", ALL_FILES, ids=str)
def test_hounsfield(source, runs):
    ds = runs.dataset(source)
    actual = runs.output(source, stage="hounsfield")
    assert_hounsfield_equal(actual, ref.hounsfield(ds))
    assert actual.min() >= AIR


@pytest.mark.parametrize("source", ALL_FILES, ids=str)
def test_input_default_settings(source, runs):
    actual = runs.output(source)
    assert actual.shape == (256, 256, 3)
    assert_input_close(actual, ref.model_input(runs.dataset(source)))


# --------------------------------------------------------------------------
# Non-default settings


@pytest.mark.parametrize("setting", [s for _, s in SETTINGS], ids=[i for i, _ in SETTINGS])
@pytest.mark.parametrize("source", SETTINGS_FILES, ids=str)
def test_input_settings(source, setting, runs):
    actual = runs.output(source, **setting)
    size, channels = setting.get("size", 256), len(setting.get("windows", ref.DEFAULT_WINDOWS))
    assert actual.shape == (size, size, channels)
    assert_input_close(actual, ref.model_input(runs.dataset(source), **setting))


IPP_SETTINGS = [
    ("size-224", {"size": 224}),
    ("size-299", {"size": 299}),
    ("size-299-resize-then-window", {"size": 299, "order": "resize-then-window"}),
]


@pytest.mark.parametrize("setting", [s for _, s in IPP_SETTINGS], ids=[i for i, _ in IPP_SETTINGS])
@pytest.mark.parametrize("source", [Source("synthetic", "ct_plain_explicit_le.dcm"), Source("real", "693_UNCR.dcm")],
                         ids=str)
def test_input_near_opencv_with_ipp(source, setting, runs):
    """The x86 opencv-python wheels resize floats with Intel IPP, which deviates from
    OpenCV's own algorithm (the reference) by up to ~3e-4 after windowing. Input
    prepared by such a cv2 (likely the RSNA baseline's) is still this close."""
    expected = ref.model_input(runs.dataset(source), ipp=True, **setting)
    difference = np.abs(runs.output(source, **setting).astype(np.float64) - expected)
    assert difference.max() <= 1e-3, difference.max()


def test_odd_width_window_bounds():
    """width // 2 floors: 40/75 spans [3, 77], 40/81 spans [0, 80]."""
    assert ref.window_bounds(40, 75) == (3, 77)
    assert ref.window_bounds(40, 81) == (0, 80)
    assert ref.window_bounds(-50, 101) == (-100, 0)


# --------------------------------------------------------------------------
# RSNA 2019 12-bit correction


@pytest.mark.parametrize("source", manifest_entries("rsna_fix"), ids=str)
def test_rsna_correction_fires_when_expected(source, runs, synthetic_manifest):
    fires = synthetic_manifest[source.name]["rsna_fix"]
    assert ref.has_rsna_defect(runs.dataset(source)) == fires, "generator and reference disagree"
    corrected = runs.output(source, stage="hounsfield")
    uncorrected = runs.output(source, stage="hounsfield", rsna_correction=False)
    assert_hounsfield_equal(uncorrected, ref.hounsfield(runs.dataset(source), rsna_correction=False))
    if fires:
        assert not np.array_equal(corrected, uncorrected)
    else:
        assert_hounsfield_equal(corrected, uncorrected)


@pytest.mark.parametrize("source", manifest_entries("rsna_fix"), ids=str)
def test_input_without_rsna_correction(source, runs):
    actual = runs.output(source, rsna_correction=False)
    assert_input_close(actual, ref.model_input(runs.dataset(source), rsna_correction=False))


@pytest.mark.parametrize("source", manifest_entries("restores"), ids=str)
def test_rsna_correction_restores_original_hu(source, runs, synthetic_manifest):
    """The defect file was made as HU mod 4096: corrected, it is the original image
    (with everything below air as air)."""
    original = runs.dataset(Source("synthetic", synthetic_manifest[source.name]["restores"]))
    expected = np.maximum(ref.modality(original), AIR)
    assert_hounsfield_equal(ref.hounsfield(runs.dataset(source)), expected)  # the reference agrees
    assert_hounsfield_equal(runs.output(source, stage="hounsfield"), expected)


# --------------------------------------------------------------------------
# Same image, other encodings; MONOCHROME1


@pytest.mark.parametrize("source", manifest_entries("same_pixels_as"), ids=str)
def test_same_image_same_output(source, runs, synthetic_manifest):
    original = Source("synthetic", synthetic_manifest[source.name]["same_pixels_as"])
    for stage in ("modality", "hounsfield", "input"):
        assert np.array_equal(runs.output(source, stage=stage), runs.output(original, stage=stage)), stage


@pytest.mark.parametrize("setting", [{}] + [s for _, s in SETTINGS[:3]], ids=["default"] + [i for i, _ in SETTINGS[:3]])
def test_monochrome1_equals_monochrome2(setting, runs):
    mono1, mono2 = Source("synthetic", "ct_monochrome1.dcm"), Source("synthetic", "ct_plain_explicit_le.dcm")
    assert runs.dataset(mono1).PhotometricInterpretation == "MONOCHROME1"
    assert np.array_equal(runs.output(mono1, **setting), runs.output(mono2, **setting))
    assert np.array_equal(runs.output(mono1, stage="hounsfield"), runs.output(mono2, stage="hounsfield"))


# --------------------------------------------------------------------------
# Padding and background


BACKGROUND_FILES = manifest_entries("background_zero") + [Source("real", "693_UNCR.dcm")]


@pytest.mark.parametrize("source", BACKGROUND_FILES, ids=str)
def test_background_corner_is_exactly_zero(source, runs):
    reference = ref.model_input(runs.dataset(source))
    assert np.all(reference[:8, :8, :] == 0), "the reference's corner is not background"
    actual = runs.output(source)
    assert np.all(actual[:8, :8, :] == 0), actual[:8, :8, :].max(axis=(0, 1))


@pytest.mark.parametrize("source", BACKGROUND_FILES, ids=str)
def test_padding_becomes_air(source, runs):
    ds = runs.dataset(source)
    padding = ref.padding_range(ds)
    hounsfield = runs.output(source, stage="hounsfield")
    if padding is None:  # out-of-field values below air
        below_air = ref.modality(ds) < AIR
        assert below_air.any() and np.all(hounsfield[below_air] == AIR)
        return
    stored = ref.stored_values(ds)
    is_padding = (stored >= padding[0]) & (stored <= padding[1])
    assert is_padding.any()
    assert np.all(hounsfield[is_padding] == AIR)


def test_padding_range_is_closed_and_ordered(runs):
    """PixelPaddingValue 60010 with PixelPaddingRangeLimit 60000: both ends are padding,
    59999 and 60011 are not (they stay bright)."""
    source = Source("synthetic", "padding_range.dcm")
    ds = runs.dataset(source)
    assert ref.padding_range(ds) == (60000, 60010)
    stored, hounsfield = ref.stored_values(ds), runs.output(source, stage="hounsfield")
    for value in (60000, 60010):
        assert np.all(hounsfield[stored == value] == AIR), value
    for value in (59999, 60011):
        assert np.all(hounsfield[stored == value] == value - 1024), value


def test_padding_compared_after_masking(runs):
    """12-bit signed values with garbage high bits: padding -2000 matches the masked,
    sign-extended stored values."""
    source = Source("synthetic", "padding_12bit_signed_garbage.dcm")
    ds = runs.dataset(source)
    assert ref.padding_range(ds) == (-2000, -2000)
    assert (ref.stored_values(ds) == -2000).sum() > 1000
    assert_hounsfield_equal(runs.output(source, stage="hounsfield"), ref.hounsfield(ds))


# --------------------------------------------------------------------------
# Invalid settings


@pytest.mark.parametrize(
    "options",
    [["--windows=40/1"], ["--windows=40"], ["--size", "0"], ["--order", "sideways"], ["--resize", "cubic"],
     ["--stage", "everything"]],
    ids=["window-width-1", "window-without-width", "size-0", "bad-order", "bad-resize", "bad-stage"],
)  # fmt: skip
def test_invalid_settings_are_refused(options, ichctl, synthetic_dir, tmp_path):
    out = tmp_path / "out.npy"
    process = ichctl.run("preprocess", str(synthetic_dir / "tiny_1x1.dcm"), "--out", str(out), *options)
    assert process.returncode != 0
    assert not out.exists()
