"""CT preprocessing in Python: DICOM -> Hounsfield units -> the model's input.

This is the project's one Python implementation of what the Swift service does
to a slice (Sources/Imaging), used by the tests as the reference
(Tests/python/reference_preprocess.py re-exports this module, and
test_preprocess.py checks ichctl against it) and by Tools/train.py and
Tools/evaluate.py to build training and evaluation inputs, so that a model is
trained on exactly the input the service will give it.

Written from the specification, with pydicom for decoding and NumPy/OpenCV for
the arithmetic; it shares no code with the Swift implementation.

* modality:   stored * RescaleSlope + RescaleIntercept (float64, then float32),
              what ``pydicom.pixels.apply_modality_lut`` gives for CT.
* hounsfield: (1) stored values inside the Pixel Padding range become air;
              (2) the RSNA 2019 12-bit fix (stored += 1000, wrap at 4096,
              intercept -1000) when BitsStored == 12, PixelRepresentation == 0
              and int(RescaleIntercept) > -100; (3) the rescale; (4) max(hu, air).
              MONOCHROME1 is never inverted.
* input:      per window (c, w): lo = c - w // 2, hi = c + w // 2,
              (clip(x, lo, hi) - lo) / (hi - lo); window then ``cv2.resize``,
              or resize then window.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

AIR_HU = -1000.0
DEFAULT_WINDOWS: tuple[tuple[float, float], ...] = ((40, 80), (80, 200), (40, 380))
RESIZE_MODES = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


# --------------------------------------------------------------------------
# Reading


def read_dataset(path: str | Path, *, stop_before_pixels: bool = False) -> Dataset:
    """pydicom's view of a file. Files without a File Meta header are read
    with ``force=True`` and get the transfer syntax pydicom detected, so
    that ``pixel_array`` works on them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=stop_before_pixels)
        if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
            implicit, little = ds.original_encoding
            if implicit is not None:
                ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
                ds.file_meta.TransferSyntaxUID = UID(
                    "1.2.840.10008.1.2" if implicit else ("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2")
                )
    return ds


def transfer_syntax(ds: Dataset) -> str | None:
    meta = getattr(ds, "file_meta", None)
    return str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None


def first_value(value):
    """First value of a possibly multi-valued element."""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return value[0]
    return value


# --------------------------------------------------------------------------
# Stored values and modality LUT


def stored_values(ds: Dataset) -> np.ndarray:
    """Stored values as int64: pydicom masks them to BitsStored and sign-extends
    them when PixelRepresentation is 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(ds.pixel_array).astype(np.int64)


def rescale(ds: Dataset) -> tuple[float, float]:
    slope = float(first_value(ds.RescaleSlope)) if "RescaleSlope" in ds and ds.RescaleSlope is not None else 1.0
    intercept = (
        float(first_value(ds.RescaleIntercept))
        if "RescaleIntercept" in ds and ds.RescaleIntercept is not None
        else 0.0
    )
    return slope, intercept


def modality(ds: Dataset) -> np.ndarray:
    """stored * slope + intercept in float64, as float32 (no corrections)."""
    slope, intercept = rescale(ds)
    return (stored_values(ds).astype(np.float64) * slope + intercept).astype(np.float32)


def to_stored_domain(value: int, bits_stored: int, signed: bool) -> int:
    """A padding attribute (US or SS, whatever the pixel representation) as
    the stored value it matches: masked to BitsStored and sign-extended."""
    masked = int(value) & ((1 << bits_stored) - 1)
    if signed and masked & (1 << (bits_stored - 1)):
        masked -= 1 << bits_stored
    return masked


def padding_range(ds: Dataset) -> tuple[int, int] | None:
    if "PixelPaddingValue" not in ds or ds.PixelPaddingValue is None:
        return None
    bits_stored = int(ds.get("BitsStored", ds.BitsAllocated))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    value = to_stored_domain(first_value(ds.PixelPaddingValue), bits_stored, signed)
    limit = value
    if "PixelPaddingRangeLimit" in ds and ds.PixelPaddingRangeLimit is not None:
        limit = to_stored_domain(first_value(ds.PixelPaddingRangeLimit), bits_stored, signed)
    return min(value, limit), max(value, limit)


def has_rsna_defect(ds: Dataset) -> bool:
    """The RSNA 2019 baseline's test, including Python's int() truncation."""
    _, intercept = rescale(ds)
    return (
        int(ds.get("BitsStored", ds.BitsAllocated)) == 12
        and int(ds.get("PixelRepresentation", 0)) == 0
        and int(intercept) > -100
    )


def hounsfield(ds: Dataset, *, rsna_correction: bool = True, air: float = AIR_HU) -> np.ndarray:
    """Corrected HU, float32, [rows, columns]."""
    stored = stored_values(ds)
    slope, intercept = rescale(ds)
    padding = padding_range(ds)
    is_padding = (
        np.zeros(stored.shape, dtype=bool) if padding is None else (stored >= padding[0]) & (stored <= padding[1])
    )
    if rsna_correction and has_rsna_defect(ds):
        stored = stored + 1000
        stored[stored >= 4096] -= 4096
        intercept = -1000.0
    hu = (stored.astype(np.float64) * slope + intercept).astype(np.float32)
    hu[is_padding] = np.float32(air)
    return np.maximum(hu, np.float32(air))


# --------------------------------------------------------------------------
# Model input


def window_bounds(center: float, width: float) -> tuple[float, float]:
    half = math.floor(width / 2)  # Python's width // 2
    return center - half, center + half


def apply_window(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    lo, hi = window_bounds(center, width)
    return ((np.clip(hu.astype(np.float64), lo, hi) - lo) / (hi - lo)).astype(np.float32)


def resize(image: np.ndarray, size: int, mode: str, *, ipp: bool = False) -> np.ndarray:
    """``cv2.resize`` on OpenCV's own code path.

    The opencv-python wheels for x86 route some float resizes to Intel IPP,
    whose linear interpolation deviates from OpenCV's generic implementation
    (measured up to 2.4e-5 after windowing and 3e-4 for resize-then-window,
    512 -> 224 or 299), and IPP is absent on other builds and CPUs. The
    reference pins the portable algorithm of ``imgproc/src/resize.cpp``;
    ``ipp=True`` gives the wheel's default instead. The IPP switch is per
    thread in OpenCV, so it is set around each call.
    """
    previous = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(ipp)
    try:
        out = cv2.resize(image, (size, size), interpolation=RESIZE_MODES[mode])
    finally:
        cv2.ipp.setUseIPP(previous)
    if image.ndim == 3 and out.ndim == 2:  # OpenCV drops a single channel axis
        out = out[:, :, None]
    return out


def model_input_from_hu(
    hu: np.ndarray,
    *,
    windows: Sequence[tuple[float, float]] = DEFAULT_WINDOWS,
    size: int = 256,
    order: str = "window-then-resize",
    mode: str = "linear",
    ipp: bool = False,
) -> np.ndarray:
    hu = np.ascontiguousarray(hu, dtype=np.float32)
    if order == "window-then-resize":
        channels = np.stack([apply_window(hu, c, w) for c, w in windows], axis=-1)
        out = resize(np.ascontiguousarray(channels), size, mode, ipp=ipp)
    elif order == "resize-then-window":
        resized = resize(hu, size, mode, ipp=ipp)
        out = np.stack([apply_window(resized, c, w) for c, w in windows], axis=-1)
    else:
        raise ValueError(order)
    return out.reshape(size, size, len(windows)).astype(np.float32)


def model_input(
    ds: Dataset,
    *,
    windows: Sequence[tuple[float, float]] = DEFAULT_WINDOWS,
    size: int = 256,
    order: str = "window-then-resize",
    mode: str = "linear",
    rsna_correction: bool = True,
    ipp: bool = False,
) -> np.ndarray:
    """float32 [size, size, len(windows)]."""
    return model_input_from_hu(
        hounsfield(ds, rsna_correction=rsna_correction), windows=windows, size=size, order=order, mode=mode, ipp=ipp
    )


def windows_argument(windows: Iterable[tuple[float, float]]) -> str:
    """The --windows option for these windows."""
    return ",".join(f"{c:g}/{w:g}" for c, w in windows)


# --------------------------------------------------------------------------
# Settings as a model bundle carries them (model.json "preprocessing" + "input")


DEFAULT_SIZE = 256  # PreprocessSettings.rsnaBaseline: 256x256
DEFAULT_ORDER = "window-then-resize"
DEFAULT_RESIZE = "linear"


class Settings:
    """Everything that decides the model's input, as in ``model.json``
    (``preprocessing`` and ``input``). The defaults are Sources/Imaging's
    ``PreprocessSettings.rsnaBaseline``: brain 40/80, subdural 80/200, soft
    tissue 40/380, window then ``cv2.resize`` linear to 256x256, the RSNA
    12-bit correction on, air -1000 HU."""

    def __init__(self, windows: Sequence[tuple[float, float]] = DEFAULT_WINDOWS, size: int = DEFAULT_SIZE,
                 order: str = DEFAULT_ORDER, mode: str = DEFAULT_RESIZE, rsna_correction: bool = True,
                 air: float = AIR_HU):
        if order not in ("window-then-resize", "resize-then-window"):
            raise ValueError(f"unknown order {order!r}")
        if mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {mode!r}")
        if not windows or any(window_bounds(c, w)[1] <= window_bounds(c, w)[0] for c, w in windows):
            raise ValueError(f"bad windows {windows!r}")
        self.windows = tuple((float(c), float(w)) for c, w in windows)
        self.size = int(size)
        self.order = order
        self.mode = mode
        self.rsna_correction = bool(rsna_correction)
        self.air = float(air)

    @classmethod
    def from_manifest(cls, doc: dict) -> "Settings":
        """From a parsed ``model.json``."""
        pre = doc.get("preprocessing", {})
        height, width = int(doc["input"]["height"]), int(doc["input"]["width"])
        if height != width:
            raise ValueError(f"input {height}x{width}: only square inputs are supported here")
        windows = [(w["center"], w["width"]) for w in pre.get("windows", [])] or DEFAULT_WINDOWS
        return cls(windows, height, pre.get("order", DEFAULT_ORDER), pre.get("resize", DEFAULT_RESIZE),
                   pre.get("rsna_correction", True), pre.get("air_hu", AIR_HU))

    def manifest_preprocessing(self) -> dict:
        """The ``preprocessing`` object of ``model.json`` for these settings."""
        return {
            "windows": [{"center": _number(c), "width": _number(w)} for c, w in self.windows],
            "order": self.order, "resize": self.mode, "rsna_correction": self.rsna_correction,
            "air_hu": _number(self.air),
        }

    def as_dict(self) -> dict:
        return {"size": self.size, **self.manifest_preprocessing()}

    def __eq__(self, other) -> bool:
        return isinstance(other, Settings) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return (f"Settings(windows={windows_argument(self.windows)}, size={self.size}, order={self.order}, "
                f"resize={self.mode}, rsna_correction={self.rsna_correction}, air={self.air:g})")


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def model_input_for(ds: Dataset, settings: Settings) -> np.ndarray:
    """float32 [size, size, channels]: ``model_input`` with a bundle's settings (including its air value)."""
    hu = hounsfield(ds, rsna_correction=settings.rsna_correction, air=settings.air)
    return model_input_from_hu(hu, windows=settings.windows, size=settings.size, order=settings.order,
                               mode=settings.mode)


def load_model_input(path: str | Path, settings: Settings) -> np.ndarray:
    """Read one DICOM file and build its model input."""
    return model_input_for(read_dataset(path), settings)
