"""`ichctl inspect` and `ichctl preprocess --stage modality` against pydicom.

* Every DICOM file shipped with pydicom and pydicom-data: what ichctl accepts
  must decode to exactly pydicom's modality LUT output (lossless syntaxes) and
  carry the same metadata; what it rejects must be rejected for a reason
  pydicom's own view of the file supports.
* The synthetic files of Tools/make_test_dicoms.py: each must give the outcome
  its manifest states.
"""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut
from pydicom.uid import UID

import reference_preprocess as ref
from conftest import (
    GENERATOR,
    REAL_FILES,
    UID_FIXED_SOURCES,
    RealFile,
    binary_problem,
    ichctl_path,
    is_valid_uid,
    load_generator,
    uid_fixed_name,
)

ERROR_TYPES = {
    "not-dicom", "truncated", "malformed", "no-pixel-data", "unsupported-transfer-syntax",
    "unsupported-photometric-interpretation", "unsupported-pixel-format", "multi-frame", "too-many-frames",
    "frame-out-of-range",
    "missing-attribute", "invalid-attribute", "malformed-uid", "absurd-dimensions",
    "pixel-data-too-short", "unreadable-file", "unsupported-modality-lut", "corrupt-pixel-data", "pixel-data-mismatch",
}  # fmt: skip
UNREADABLE = {"not-dicom", "truncated", "malformed"}

# Transfer syntaxes ichctl decodes (uncompressed, deflated, RLE, JPEG, JPEG-LS, JPEG 2000, HTJ2K).
HTJ2K_SYNTAXES = {"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}
SUPPORTED_SYNTAXES = {
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", *HTJ2K_SYNTAXES,
}  # fmt: skip
LOSSY_JPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}
# The syntaxes whose codestream may use the irreversible (floating-point) wavelet.
JPEG2000_LOSSY = {"1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.203"}
JPEG2000_SYNTAXES = {"1.2.840.10008.1.2.4.90", *JPEG2000_LOSSY, *HTJ2K_SYNTAXES}
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"

# At least this many real files must be accepted by ichctl and match pydicom.
MIN_REAL_COMPARED = 45
# Multi-frame among them: eCT_Supplemental.dcm (Enhanced CT, per-frame functional groups) and emri_small in
# J2K, JPEG-LS and RLE (compressed frames, one fragment each).
MUST_BE_COMPARED = {"CT_small.dcm", "693_UNCR.dcm", "693_J2KR.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm",
                    "eCT_Supplemental.dcm", "emri_small.dcm", "emri_small_jpeg_2k_lossless.dcm",
                    "emri_small_jpeg_ls_lossless.dcm", "emri_small_RLE.dcm", "emri_small_big_endian.dcm"}

_generator = load_generator()
SYNTHETIC_CASES = _generator.CASES
PLAIN_SYNTHETIC = _generator.PLAIN

# pydicom warns about every odd value it meets in these files; the odd values are the point.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")


# --------------------------------------------------------------------------
# pydicom's view of a file


@dataclass
class PydicomView:
    ds: Dataset | None
    read_error: str | None = None
    forced: bool = False  # no File Meta header / preamble: read with force=True
    messages: list[str] = field(default_factory=list)  # pydicom warnings while reading
    short_element: str | None = None  # an element whose value ends before its declared length

    @property
    def transfer_syntax(self) -> str | None:
        return ref.transfer_syntax(self.ds) if self.ds is not None else None


def _short_element(ds: Dataset) -> str | None:
    """First raw (not yet converted) element whose value is shorter than its length
    field: pydicom silently keeps what was left of a truncated file."""
    for tag, element in ds._dict.items():
        if isinstance(element, RawDataElement):
            if element.value is not None and element.length != 0xFFFFFFFF and len(element.value) < element.length:
                return f"{tag} holds {len(element.value)} of {element.length} bytes"
        elif element.VR == "SQ":
            for item in element.value:
                found = _short_element(item)
                if found:
                    return found
    return None


def pydicom_view(path: Path) -> PydicomView:
    pydicom_logger = logging.getLogger("pydicom")
    previous = pydicom_logger.level
    pydicom_logger.setLevel(logging.CRITICAL)  # the same messages arrive as warnings
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            forced = False
            try:
                try:
                    ds = pydicom.dcmread(path)
                except InvalidDicomError:
                    forced = True
                    ds = pydicom.dcmread(path, force=True)
            except Exception as error:  # noqa: BLE001 - any failure means "pydicom cannot read it"
                return PydicomView(None, read_error=f"{type(error).__name__}: {error}", forced=forced)
            short = _short_element(ds)  # before any element is converted
        view = PydicomView(ds, forced=forced, messages=[str(w.message) for w in caught], short_element=short)
    finally:
        pydicom_logger.setLevel(previous)
    # Give no-meta files the encoding pydicom detected, so pixel_array works.
    ds = ref.read_dataset(path) if forced else ds
    view.ds = ds
    return view


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return int(ref.first_value(value))


def _decimals(ds: Dataset, keyword: str) -> list[float] | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    values = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
    return [float(v) for v in values]


@dataclass
class Expectation:
    """`required`: pydicom shows a reason the file cannot be a supported slice, so
    ichctl must reject it with one of these types. `tolerated`: further types that
    are a fair reading of pydicom's view (it had to guess or salvage), not mandatory."""

    required: set[str] = field(default_factory=set)
    tolerated: set[str] = field(default_factory=set)

    @property
    def allowed(self) -> set[str]:
        return self.required | self.tolerated


def expectation(view: PydicomView) -> Expectation:
    """Which `ichctl inspect` error types pydicom's view of a file supports."""
    if view.ds is None:
        return Expectation(required=set(UNREADABLE))
    ds = view.ds
    found = Expectation()
    required, tolerated = found.required, found.tolerated

    known_elements = [e for e in ds if e.tag.group in (0x0008, 0x0010, 0x0018, 0x0020, 0x0028, 0x7FE0)]
    if view.forced and not known_elements:
        required |= UNREADABLE  # pydicom forced its way through bytes that hold no DICOM data set
        return found
    if view.short_element or any("End of file" in m for m in view.messages):
        required.add("truncated")
    if any("but found" in m and "VR" in m for m in view.messages):
        tolerated |= {"truncated", "malformed"}  # the encoding contradicts the transfer syntax
    if "PixelData" not in ds:
        required.add("no-pixel-data")
        return found

    samples = _int(ds, "SamplesPerPixel") or 1
    bits_allocated = _int(ds, "BitsAllocated")
    if bits_allocated is None:
        required.add("missing-attribute")
    elif samples != 1 or bits_allocated not in (8, 16):
        required.add("unsupported-pixel-format")
    photometric = ds.get("PhotometricInterpretation")
    if not photometric:
        required.add("missing-attribute")
    elif str(photometric).strip() not in ("MONOCHROME1", "MONOCHROME2"):
        required.add("unsupported-photometric-interpretation")
    frames = None
    try:
        frames = _int(ds, "NumberOfFrames")
        if frames is not None and frames > 4096:
            required.add("too-many-frames")
        elif frames is not None and frames < 1:
            required.add("invalid-attribute")
    except ValueError:
        required.add("invalid-attribute")

    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    if rows is None or columns is None:
        required.add("missing-attribute")
    elif not (1 <= rows <= 4096 and 1 <= columns <= 4096):
        required.add("absurd-dimensions")
    bits_stored = _int(ds, "BitsStored")
    if bits_allocated is not None and bits_stored is not None and not 1 <= bits_stored <= bits_allocated:
        required.add("invalid-attribute")
    if _int(ds, "PixelRepresentation") not in (None, 0, 1):
        required.add("invalid-attribute")

    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        uid = str(ds.get(keyword) or "").strip("\0 ")
        if not uid:
            required.add("missing-attribute")
        elif not is_valid_uid(uid):
            required.add("malformed-uid")
    sop_class = str(ds.get("SOPClassUID") or "").strip("\0 ")
    if sop_class and not is_valid_uid(sop_class):
        required.add("malformed-uid")

    try:
        slope, intercept = ref.rescale(ds)
        if slope == 0 or not math.isfinite(slope) or not math.isfinite(intercept):
            required.add("invalid-attribute")
        for keyword, count in (("ImagePositionPatient", 3), ("ImageOrientationPatient", 6), ("PixelSpacing", 2)):
            values = _decimals(ds, keyword)
            if values is not None and (len(values) != count or not all(map(math.isfinite, values))):
                required.add("invalid-attribute")
    except (ValueError, TypeError):
        required.add("invalid-attribute")

    if "ModalityLUTSequence" in ds:
        required.add("unsupported-modality-lut")  # a lookup table, not slope/intercept: refused

    syntax = view.transfer_syntax
    if syntax is not None and syntax not in SUPPORTED_SYNTAXES:
        required.add("unsupported-transfer-syntax")
    if syntax in JPEG2000_SYNTAXES and not required and rows and columns and bits_allocated:
        required |= jpeg2000_problems(ds, rows, columns, samples, bits_allocated)
    encapsulated = syntax is not None and pydicom.uid.UID(syntax).is_encapsulated
    if not encapsulated and rows and columns and bits_allocated in (8, 16):
        needed = rows * columns * samples * bits_allocated // 8 * max(1, frames or 1)
        if len(ds.PixelData) < needed:
            required |= {"pixel-data-too-short", "truncated"}
    return found


def jpeg2000_problems(ds: Dataset, rows: int, columns: int, samples: int, bits_allocated: int) -> set[str]:
    """What pylibjpeg-openjpeg (pydicom's JPEG 2000 plugin) sees in the frame's codestream: its
    header against the image attributes, then whether it decodes."""
    from openjpeg.utils import get_parameters

    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        header = get_parameters(frame)
    except Exception:
        return {"corrupt-pixel-data"}
    if (header["rows"], header["columns"], header["samples_per_pixel"]) != (rows, columns, samples) or \
            header["precision"] > bits_allocated:
        return {"pixel-data-mismatch"}
    try:
        ds.pixel_array
    except Exception:
        return {"corrupt-pixel-data"}
    return set()


# Files whose outcome the rules above cannot tell from pydicom's view, and why.
@dataclass(frozen=True)
class Odd:
    reason: str
    errors: frozenset[str] = frozenset()  # further acceptable error types
    reference: str | None = None  # compare the image with pydicom's decoding of this file instead


ODD_FILES = {
    "JPEG2000-embedded-sequence-delimiter.dcm": Odd(
        errors=frozenset({"corrupt-pixel-data"}),
        reason="a fragment holds the bytes of a Sequence Delimitation Item; DCMTK ends the pixel data there, "
        "so the codestream is cut short, where pydicom reads the fragment by its length",
    ),
    "JPEG-lossy.dcm": Odd(
        reference="JPGExtended.dcm",
        reason="pylibjpeg's libjpeg refuses this 12-bit lossy stream ('scan start must be zero and scan stop "
        "must be 63'), DCMTK's IJG decoder reads it; pydicom's README calls JPGExtended.dcm the fixed version "
        "of this file, so the image is compared with pydicom's decoding of that one",
    ),
}


# --------------------------------------------------------------------------
# Comparing one accepted file


def expected_metadata(ds: Dataset, syntax: str | None) -> dict:
    """What `ichctl inspect --json` must report, from pydicom's view."""
    slope, intercept = ref.rescale(ds)
    padding = None
    if ds.get("PixelPaddingValue") is not None:
        padding = ref.to_stored_domain(
            ref.first_value(ds.PixelPaddingValue), int(ds.get("BitsStored") or ds.BitsAllocated),
            _int(ds, "PixelRepresentation") == 1,
        )  # fmt: skip
    centers, widths = _decimals(ds, "WindowCenter"), _decimals(ds, "WindowWidth")
    text = lambda keyword: (str(ds.get(keyword) or "").strip("\0 ") or None)  # noqa: E731
    return {
        "study_instance_uid": text("StudyInstanceUID"),
        "series_instance_uid": text("SeriesInstanceUID"),
        "sop_instance_uid": text("SOPInstanceUID"),
        "sop_class_uid": text("SOPClassUID"),
        "modality": text("Modality"),
        "transfer_syntax_uid": syntax,
        "instance_number": _int(ds, "InstanceNumber"),
        "rows": _int(ds, "Rows"),
        "columns": _int(ds, "Columns"),
        "bits_allocated": _int(ds, "BitsAllocated"),
        "bits_stored": _int(ds, "BitsStored") or _int(ds, "BitsAllocated"),
        "pixel_representation": _int(ds, "PixelRepresentation") or 0,
        "photometric_interpretation": text("PhotometricInterpretation"),
        "rescale_slope": slope,
        "rescale_intercept": intercept,
        "pixel_padding_value": padding,
        "window": {"center": centers[0], "width": widths[0]} if centers and widths else None,
        "image_position_patient": _decimals(ds, "ImagePositionPatient"),
        "image_orientation_patient": _decimals(ds, "ImageOrientationPatient"),
        "pixel_spacing": _decimals(ds, "PixelSpacing"),
    }


def check_metadata(result: dict, ds: Dataset, syntax: str | None) -> None:
    expected = expected_metadata(ds, syntax)
    floats = {"rescale_slope", "rescale_intercept", "image_position_patient", "image_orientation_patient",
              "pixel_spacing", "window"}  # fmt: skip
    for key, value in expected.items():
        if key in floats and value is not None:
            # Decimal strings parse to the same double on both sides; approx only for JSON printing.
            assert result[key] == pytest.approx(value, rel=1e-12, abs=0), key
        else:
            assert result[key] == value, key


def near_parameter(ds: Dataset) -> int:
    """NEAR of a JPEG-LS near-lossless stream, from its first SOS marker segment."""
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    sos = frame.index(b"\xff\xda")
    components = frame[sos + 4]
    return frame[sos + 5 + 2 * components]


def modality_reference(ds: Dataset) -> np.ndarray:
    """pydicom's modality LUT output as float32. With a Modality LUT Sequence, or only
    one of the two rescale attributes, pydicom's apply_modality_lut does something
    else than ichctl's documented contract (stored * slope + intercept, defaults 1
    and 0); the contract is what is checked then."""
    linear_only = "ModalityLUTSequence" not in ds and (("RescaleSlope" in ds) == ("RescaleIntercept" in ds))
    if linear_only:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        assert np.array_equal(expected, ref.modality(ds)), "reference disagrees with apply_modality_lut"
        return expected
    return ref.modality(ds)


def check_modality(actual: np.ndarray, ds: Dataset, expected: np.ndarray, syntax: str | None) -> None:
    assert actual.shape == expected.shape
    slope = abs(ref.rescale(ds)[0])
    difference = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    if syntax in LOSSY_JPEG:
        # Lossy JPEG leaves the inverse DCT's rounding to the decoder: DCMTK (IJG) and
        # pylibjpeg (libjpeg) may differ by a stored unit here and there.
        assert difference.max() <= 2 * slope, f"max |diff| {difference.max()}"
        assert difference.mean() <= 0.1 * slope, f"mean |diff| {difference.mean()}"
    elif syntax in JPEG2000_LOSSY:
        # The irreversible wavelet is computed in floating point: our OpenJPEG (Debian's) and
        # pylibjpeg-openjpeg's own build may round a value differently (measured: identical).
        assert difference.max() <= slope, f"max |diff| {difference.max()}"
    elif syntax == JPEG_LS_NEAR_LOSSLESS:
        # Near-lossless JPEG-LS bounds each decoder's error by NEAR; decoding is fully
        # specified, so conforming decoders agree, but allow the bound on both sides.
        tolerance = 2 * near_parameter(ds) * slope
        assert difference.max() <= tolerance, f"max |diff| {difference.max()} > {tolerance}"
    else:
        mismatch = np.argwhere(actual != expected)
        assert mismatch.size == 0, (
            f"{len(mismatch)} pixels differ, first at {tuple(mismatch[0])}: "
            f"ichctl {actual[tuple(mismatch[0])]} vs pydicom {expected[tuple(mismatch[0])]}"
        )


def check_hu_statistics(result: dict, modality: np.ndarray) -> None:
    values = modality.astype(np.float64)
    assert result["hu"]["min"] == values.min()
    assert result["hu"]["max"] == values.max()
    assert result["hu"]["mean"] == pytest.approx(values.mean(), rel=1e-9, abs=1e-9)


# Functional group macros (PS3.3 C.7.6.16.2) and the attributes each carries for one frame.
FRAME_MACROS = {
    "PlanePositionSequence": ["ImagePositionPatient"],
    "PlaneOrientationSequence": ["ImageOrientationPatient"],
    "PixelMeasuresSequence": ["PixelSpacing", "SliceThickness"],
    "FrameVOILUTSequence": ["WindowCenter", "WindowWidth"],
    "PixelValueTransformationSequence": ["RescaleSlope", "RescaleIntercept"],
}


def frame_dataset(ds: Dataset, index: int, frames: np.ndarray) -> Dataset:
    """Frame `index` (0-based) of a multi-frame object as pydicom sees it, made a single-frame data set:
    each macro's attributes from the frame's Per-Frame Functional Groups item, else the Shared one, else
    the top level, and the frame's stored values (`frames`: pydicom's pixel_array) as native pixels."""
    flat = Dataset()
    for element in ds:
        if element.keyword not in ("PixelData", "NumberOfFrames", "PerFrameFunctionalGroupsSequence",
                                   "SharedFunctionalGroupsSequence"):
            flat.add(element)
    for macro, keywords in FRAME_MACROS.items():
        for keyword in keywords:
            for groups, item in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
                sequence = ds.get(groups)
                if sequence and len(sequence) > item and macro in sequence[item] and sequence[item][macro].value:
                    inner = sequence[item][macro].value[0]
                    if keyword in inner:
                        setattr(flat, keyword, inner[keyword].value)
                        break
    flat.file_meta = FileMetaDataset()
    flat.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1")
    bits = int(ds.BitsAllocated)
    signed = _int(ds, "PixelRepresentation") == 1
    dtype = {(8, False): "<u1", (8, True): "<i1", (16, False): "<u2", (16, True): "<i2"}[(bits, signed)]
    flat.PixelData = frames[index].astype(dtype).tobytes()
    return flat


def check_multi_frame(ichctl, path: Path, result: dict, ds: Dataset, syntax: str | None, out: Path) -> None:
    """Every frame's metadata and HU statistics in `inspect --json`, and the modality stage of up to four
    frames (`preprocess --frame`), against pydicom's frames and functional groups."""
    count = _int(ds, "NumberOfFrames")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames = np.asarray(ds.pixel_array)
    assert frames.shape[0] == count and result["number_of_frames"] == count
    assert [f["frame_number"] for f in result["frames"]] == list(range(1, count + 1))
    flats = [frame_dataset(ds, k, frames) for k in range(count)]
    check_metadata(result, flats[0], syntax)  # the top level is frame 1
    for k, (frame, flat) in enumerate(zip(result["frames"], flats)):
        expected = expected_metadata(flat, syntax)
        for key in ("image_position_patient", "image_orientation_patient", "rescale_slope", "rescale_intercept"):
            assert frame[key] == (pytest.approx(expected[key], rel=1e-12, abs=0) if expected[key] is not None else None), (k, key)
        check_hu_statistics(frame, ref.modality(flat))
    for k in sorted({0, 1, count // 2, count - 1}):
        actual = ichctl.preprocess(path, out, stage="modality", frame=k + 1)
        check_modality(actual, flats[k], modality_reference(flats[k]), syntax)


def check_accepted(ichctl, path: Path, result: dict, ds: Dataset, syntax: str | None, out: Path,
                   reference_ds: Dataset | None = None, prefetched=None) -> np.ndarray | None:
    """Metadata, HU statistics and the modality stage of an accepted file against pydicom (every frame
    of a multi-frame one). `prefetched`: the modality stage (or the exception) from `prefetch_modality`."""
    if (_int(ds, "NumberOfFrames") or 1) > 1:
        check_multi_frame(ichctl, path, result, reference_ds if reference_ds is not None else ds, syntax, out)
        return None
    check_metadata(result, ds, syntax)
    expected = modality_reference(reference_ds if reference_ds is not None else ds)
    if isinstance(prefetched, BaseException):
        raise prefetched
    actual = prefetched if prefetched is not None else ichctl.preprocess(path, out, stage="modality")
    check_modality(actual, ds, expected, syntax)
    check_hu_statistics(result, actual)
    return actual


def check_rejected(result: dict, allowed: set[str], syntax: str | None, what: str) -> None:
    error = result["error"]
    assert error["type"] in ERROR_TYPES, f"unknown error type {error['type']}"
    assert error["detail"], "empty detail"
    assert allowed, f"ichctl rejects {what} as {error['type']} ({error['detail']}), but pydicom sees no reason to"
    assert error["type"] in allowed, f"{error['type']} ({error['detail']}) is not one of {sorted(allowed)}"
    if error["type"] == "unsupported-transfer-syntax":
        assert syntax and syntax in error["detail"], f"detail does not name {syntax}: {error['detail']}"


def prefetch_modality(ichctl, files: dict[str, Path], results: dict[str, dict], out_dir: Path) -> dict:
    """`--stage modality` of every accepted file, run in parallel up front (ichctl
    processes dominate the run time); keyed like `files`."""
    accepted = [key for key in files if "error" not in results[key] and results[key]["number_of_frames"] == 1]
    jobs = [(files[key], out_dir / f"{i}.npy", {"stage": "modality"}) for i, key in enumerate(accepted)]
    return dict(zip(accepted, ichctl.preprocess_many(jobs)))


# --------------------------------------------------------------------------
# The binary


def test_ichctl_binary_present():
    problem = binary_problem(ichctl_path())
    assert problem is None, problem


# --------------------------------------------------------------------------
# Real files


@pytest.fixture(scope="session")
def real_inspect(ichctl) -> dict[str, dict]:
    results = ichctl.inspect(f.path for f in REAL_FILES)
    return {f.id: results[str(f.path)] for f in REAL_FILES}


@dataclass
class RealOutcomes:
    """Outcome per real file id ("compared", "rejected" or the exception), shared by the
    per-file tests and the coverage test (which also covers files deselected with -k)."""

    out_dir: Path
    modality: dict  # prefetched modality stage per accepted file id
    outcomes: dict[str, object] = field(default_factory=dict)


@pytest.fixture(scope="session")
def real_outcomes(ichctl, real_inspect, tmp_path_factory) -> RealOutcomes:
    out_dir = tmp_path_factory.mktemp("real_modality")
    files = {f.id: f.path for f in REAL_FILES}
    return RealOutcomes(out_dir, prefetch_modality(ichctl, files, real_inspect, out_dir))


def real_file_outcome(real: RealFile, ichctl, real_inspect, real_outcomes: RealOutcomes) -> str:
    outcomes = real_outcomes.outcomes
    if real.id not in outcomes:
        try:
            outcomes[real.id] = _check_real_file(
                real, ichctl, real_inspect[real.id], real_outcomes.out_dir, real_outcomes.modality.get(real.id)
            )
        except BaseException as error:  # noqa: BLE001 - replayed to whoever asks
            outcomes[real.id] = error
    outcome = outcomes[real.id]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _check_real_file(real: RealFile, ichctl, result: dict, out_dir: Path, prefetched) -> str:
    view = pydicom_view(real.path)
    expected = expectation(view)
    odd = ODD_FILES.get(real.id)
    if "error" in result:
        allowed = expected.allowed | (set(odd.errors) if odd else set())
        check_rejected(result, allowed, view.transfer_syntax, real.id)
        return "rejected"

    assert not expected.required, (
        f"ichctl accepts {real.id}, but pydicom's view says it must be one of {sorted(expected.required)}"
    )
    reference_ds = None
    if odd and odd.reference:
        reference_ds = pydicom_view(next(f.path for f in REAL_FILES if f.id == odd.reference)).ds
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                view.ds.pixel_array  # noqa: B018 - pydicom must decode what ichctl accepts
        except Exception as error:  # noqa: BLE001
            pytest.fail(f"ichctl accepts {real.id}, pydicom cannot decode it: {type(error).__name__}: {error}")
    out = out_dir / (real.id.replace("/", "_") + ".npy")
    check_accepted(ichctl, real.path, result, view.ds, view.transfer_syntax, out, reference_ds, prefetched)
    return "compared"


@pytest.mark.parametrize("real", REAL_FILES, ids=[f.id for f in REAL_FILES])
def test_real_file(real: RealFile, ichctl, real_inspect, real_outcomes):
    real_file_outcome(real, ichctl, real_inspect, real_outcomes)


def test_real_files_compared(ichctl, real_inspect, real_outcomes):
    """Not vacuous: many real files are decoded and match pydicom, the key CT ones among them."""
    compared = set()
    for real in REAL_FILES:
        try:
            if real_file_outcome(real, ichctl, real_inspect, real_outcomes) == "compared":
                compared.add(real.id)
        except AssertionError:
            pass  # reported by test_real_file
    missing = MUST_BE_COMPARED - compared
    assert not missing, f"not decoded and matched: {sorted(missing)}"
    assert len(compared) >= MIN_REAL_COMPARED, f"only {len(compared)} real files compared"
    print(f"{len(compared)} real files decoded by ichctl and matched pydicom")


def test_odd_table_is_current():
    ids = {f.id for f in REAL_FILES}
    assert set(ODD_FILES) <= ids
    assert all(odd.reference in ids for odd in ODD_FILES.values() if odd.reference)


# --- bad_sequence.dcm (hashed UIDs) and the JPEG-LS near-lossless samples, with valid UIDs


def test_bad_sequence_accepted_with_its_hashed_uids(real_inspect):
    """Anonymisers write hex-hash identifiers; archives hold them, so they are accepted as they are."""
    result = real_inspect["bad_sequence.dcm"]
    assert "error" not in result, result
    ds = ref.read_dataset(next(f.path for f in REAL_FILES if f.id == "bad_sequence.dcm"))
    assert result["sop_instance_uid"] == str(ds.SOPInstanceUID) and not str(ds.SOPInstanceUID).replace(".", "").isdigit()


@pytest.mark.parametrize("source", UID_FIXED_SOURCES, ids=[uid_fixed_name(s) for s in UID_FIXED_SOURCES])
def test_uid_fixed_copy(source, ichctl, uid_fixed_copies, tmp_path):
    path = uid_fixed_copies[uid_fixed_name(source)]
    result = ichctl.inspect([path])[str(path)]
    assert "error" not in result, result
    view = pydicom_view(path)
    assert not expectation(view).required
    check_accepted(ichctl, path, result, view.ds, view.transfer_syntax, tmp_path / "modality.npy")


def test_bad_sequence_with_valid_uids(ichctl, uid_fixed_copies, tmp_path):
    """Real 512x512 JPEG lossless CT, BitsStored 12 unsigned, intercept -1024: exact HU,
    and the RSNA correction must not fire (no padding value either), so the corrected
    image is max(modality, -1000)."""
    path = uid_fixed_copies[uid_fixed_name("bad_sequence.dcm")]
    ds = ref.read_dataset(path)
    assert (int(ds.BitsStored), int(ds.PixelRepresentation), float(ds.RescaleIntercept)) == (12, 0, -1024.0)
    assert "PixelPaddingValue" not in ds and not ref.has_rsna_defect(ds)
    modality = ichctl.preprocess(path, tmp_path / "m.npy", stage="modality")
    assert np.array_equal(modality, ref.modality(ds))
    hounsfield = ichctl.preprocess(path, tmp_path / "h.npy", stage="hounsfield")
    assert np.array_equal(hounsfield, np.maximum(modality, np.float32(-1000)))
    without_fix = ichctl.preprocess(path, tmp_path / "n.npy", stage="hounsfield", rsna_correction=False)
    assert np.array_equal(hounsfield, without_fix)


# --------------------------------------------------------------------------
# Synthetic files


def test_manifest_lists_every_case(synthetic_dir, synthetic_manifest):
    assert list(synthetic_manifest) == [c.name for c in SYNTHETIC_CASES]
    for name, entry in synthetic_manifest.items():
        assert (synthetic_dir / name).is_file(), name
        assert entry["expect"] == "ok" or entry["expect"] in ERROR_TYPES, entry
        assert entry["description"]
        for key in ("same_pixels_as", "restores"):
            if key in entry:
                assert synthetic_manifest[entry[key]]["expect"] == "ok"


def test_generator_is_deterministic(synthetic_dir, tmp_path):
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path)], check=True, capture_output=True)
    for path in sorted(synthetic_dir.iterdir()):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.fixture(scope="session")
def synthetic_modality(ichctl, synthetic_dir, synthetic_inspect, tmp_path_factory) -> dict:
    files = {name: synthetic_dir / name for name in synthetic_inspect}
    return prefetch_modality(ichctl, files, synthetic_inspect, tmp_path_factory.mktemp("synthetic_modality"))


@pytest.mark.parametrize("case", SYNTHETIC_CASES, ids=[c.name for c in SYNTHETIC_CASES])
def test_synthetic_file(case, ichctl, synthetic_dir, synthetic_manifest, synthetic_inspect, synthetic_modality,
                        tmp_path):
    entry = synthetic_manifest[case.name]
    result = synthetic_inspect[case.name]
    path = synthetic_dir / case.name
    view = pydicom_view(path)
    if entry["expect"] != "ok":
        assert "error" in result, f"expected {entry['expect']}, ichctl accepted it"
        check_rejected(result, {entry["expect"]}, view.transfer_syntax, case.name)
        # The generator's files must be what they claim in pydicom's eyes too.
        assert entry["expect"] in expectation(view).allowed, sorted(expectation(view).allowed)
        return
    assert "error" not in result, result["error"]
    assert not expectation(view).required, sorted(expectation(view).required)
    modality = check_accepted(ichctl, path, result, view.ds, view.transfer_syntax, tmp_path / "modality.npy",
                              prefetched=synthetic_modality.get(case.name))
    if "lossy_tolerance" in entry:
        assert view.transfer_syntax == JPEG_LS_NEAR_LOSSLESS
        assert 2 * near_parameter(view.ds) <= entry["lossy_tolerance"]
    if "same_pixels_as" in entry:
        source = ref.read_dataset(synthetic_dir / entry["same_pixels_as"])
        assert np.array_equal(ref.stored_values(view.ds), ref.stored_values(source)), "generator: pixels differ"
        assert np.array_equal(modality, ref.modality(source))
    if entry.get("openjph_reference"):
        # pydicom decodes HTJ2K with OpenJPEG too; OpenJPH is a second, independent decoder.
        stored = imagecodecs.htj2k_decode(next(generate_frames(view.ds.PixelData, number_of_frames=1)))
        slope, intercept = ref.rescale(view.ds)
        openjph = stored.astype(np.float64) * slope + intercept
        assert np.abs(modality - openjph).max() <= abs(slope)
        plain = ref.modality(ref.read_dataset(synthetic_dir / PLAIN_SYNTHETIC))
        assert not np.array_equal(modality, plain), "the lossy file decodes to the lossless image"


def test_inspect_exit_codes_and_order(ichctl, synthetic_dir):
    good = [synthetic_dir / "tiny_1x1.dcm", synthetic_dir / "odd_7x5.dcm"]
    objects, code = ichctl.inspect_batch(good)
    assert code == 0 and all("error" not in o for o in objects)
    mixed = [good[0], synthetic_dir / "empty.dcm", good[1]]
    objects, code = ichctl.inspect_batch(mixed)
    assert code == 1
    assert ["error" in o for o in objects] == [False, True, False]


def test_unreadable_files(ichctl, tmp_path):
    missing, directory = tmp_path / "does-not-exist.dcm", tmp_path / "a-directory.dcm"
    directory.mkdir()
    objects, code = ichctl.inspect_batch([missing, directory])
    assert code == 1
    assert [o["error"]["type"] for o in objects] == ["unreadable-file", "unreadable-file"]


@pytest.mark.parametrize("name", ["random_bytes.dcm", "truncated_in_pixel_data.dcm"])
def test_preprocess_refuses_bad_file(name, ichctl, synthetic_dir, synthetic_manifest, tmp_path):
    out = tmp_path / "out.npy"
    process = ichctl.run("preprocess", str(synthetic_dir / name), "--out", str(out))
    assert process.returncode != 0
    assert synthetic_manifest[name]["expect"] in process.stderr
    assert not out.exists()


@pytest.mark.parametrize(("frame", "error"), [(None, "multi-frame"), (0, "frame-out-of-range"), (3, "frame-out-of-range")])
def test_preprocess_needs_an_existing_frame_of_a_multi_frame_object(frame, error, ichctl, synthetic_dir, tmp_path):
    out = tmp_path / "out.npy"
    args = ["preprocess", str(synthetic_dir / "multi_frame.dcm"), "--out", str(out), "--stage", "modality"]
    process = ichctl.run(*args, *(["--frame", str(frame)] if frame is not None else []))
    assert process.returncode == 1 and f"error {error}:" in process.stderr, process.stderr
    assert not out.exists()
