#!/usr/bin/env python3
"""Write synthetic DICOM files for the decoder and preprocessing edge cases.

    python Tools/make_test_dicoms.py --out DIR

Every file is built with pydicom from seeded NumPy data, so the output is
byte-for-byte deterministic. ``DIR/manifest.json`` lists each file with the
outcome ``ichctl inspect`` must report: ``"ok"`` or the expected error type.

Manifest entries carry, besides ``name``, ``expect`` and ``description``,
optional hints for the tests:

``same_pixels_as``
    The file holds the same image as that file (another transfer syntax, or
    MONOCHROME1): modality, hounsfield and input stages must be identical.
``lossy_tolerance``
    Maximum absolute stored-value difference allowed between two decoders
    (JPEG-LS near-lossless: 2 * NEAR).
``rsna_fix``
    ``true`` when the RSNA 2019 12-bit correction must fire, ``false`` when a
    file looks similar but it must not.
``restores``
    For the RSNA defect file: corrected HU must equal ``max(HU, -1000)`` of
    this file's modality LUT output (the image the defect was made from).
``openjph_reference``
    Lossy HTJ2K: the image must also match OpenJPH's decoding (imagecodecs), not only pydicom's.
``background_zero``
    The image corners are padding or out-of-field: every input channel must
    be exactly 0 there.

The phantom is a head-like ellipse: skull ~1000 HU, brain ~35 HU, ventricles
~5 HU, a ~65 HU bleed, air (-1000 HU with noise, so some values lie below
-1000) and, outside a circular field of view, -3024 HU like real scanners.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import imagecodecs
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2K,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    UID,
    generate_uid,
)

SEED = 20191
STUDY_UID = generate_uid(entropy_srcs=["ich-triage synthetic study"])
SERIES_UID = generate_uid(entropy_srcs=["ich-triage synthetic series"])
PLAIN = "ct_plain_explicit_le.dcm"

# JPEG-LS near-lossless error bound used for the lossy synthetic file.
JLS_NEAR = 3


# --------------------------------------------------------------------------
# Images


def phantom_hu(rows: int = 512, cols: int = 512, seed: int = SEED) -> np.ndarray:
    """A head-like CT slice in integer HU (int16)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    cy, cx = (rows - 1) / 2, (cols - 1) / 2

    def ellipse(ry: float, rx: float, oy: float = 0.0, ox: float = 0.0) -> np.ndarray:
        return ((y - cy - oy * rows) / (ry * rows)) ** 2 + ((x - cx - ox * cols) / (rx * cols)) ** 2 <= 1

    hu = np.full((rows, cols), -1000.0)
    hu[ellipse(0.44, 0.37)] = 1000.0  # skull
    hu[ellipse(0.41, 0.34)] = 35.0  # brain
    hu[ellipse(0.08, 0.03, -0.05, -0.05)] = 5.0  # ventricles
    hu[ellipse(0.08, 0.03, -0.05, 0.05)] = 5.0
    hu[ellipse(0.05, 0.07, 0.18, 0.12)] = 65.0  # intraparenchymal bleed
    hu += rng.normal(0.0, 6.0, size=hu.shape)
    outside_fov = (y - cy) ** 2 + (x - cx) ** 2 > (0.5 * min(rows, cols)) ** 2
    hu[outside_fov] = -3024.0
    return np.rint(hu).astype(np.int16)


def out_of_field(rows: int = 512, cols: int = 512) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    return (y - cy) ** 2 + (x - cx) ** 2 > (0.5 * min(rows, cols)) ** 2


# --------------------------------------------------------------------------
# Datasets


def ct_dataset(
    name: str,
    stored: np.ndarray,
    *,
    bits_allocated: int = 16,
    bits_stored: int | None = None,
    pixel_representation: int = 1,
    slope: str | None = "1",
    intercept: str | None = "-1024",
    photometric: str = "MONOCHROME2",
    transfer_syntax: UID = ExplicitVRLittleEndian,
    instance: int = 1,
    raw_words: np.ndarray | None = None,
) -> Dataset:
    """A single-frame CT dataset; `stored` gives the pixel values (or pass
    `raw_words` to control the exact bits written)."""
    rows, cols = stored.shape
    bits_stored = bits_allocated if bits_stored is None else bits_stored
    sop_uid = generate_uid(entropy_srcs=["ich-triage synthetic", name])

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.ImplementationClassUID = generate_uid(entropy_srcs=["ich-triage make_test_dicoms"])
    ds.file_meta.ImplementationVersionName = "ICH_TESTGEN_1"

    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = "20240101"
    ds.Modality = "CT"
    ds.Manufacturer = "SYNTHETIC"
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "PHANTOM-001"
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = SERIES_UID
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [-125.0, -125.0, float(5 * instance)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = 5
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = [0.48828125, 0.48828125]
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = pixel_representation
    ds.WindowCenter = 40
    ds.WindowWidth = 80
    if intercept is not None:
        ds.RescaleIntercept = intercept
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None or slope is not None:
        ds.RescaleType = "HU"

    if raw_words is None:
        dtype = {(8, 0): np.uint8, (8, 1): np.int8, (16, 0): np.uint16, (16, 1): np.int16}[
            (bits_allocated, pixel_representation)
        ]
        info = np.iinfo(dtype)
        assert stored.min() >= info.min and stored.max() <= info.max, f"{name}: values do not fit {dtype}"
        raw_words = stored.astype(dtype)
    big_endian = transfer_syntax == ExplicitVRBigEndian
    byte_order = ">" if big_endian else "<"
    ds.PixelData = raw_words.astype(raw_words.dtype.newbyteorder(byte_order)).tobytes()
    ds["PixelData"].VR = "OW" if bits_allocated > 8 else "OB"
    return ds


def to_bytes(ds: Dataset, *, enforce_file_format: bool = True, implicit_vr: bool | None = None,
             little_endian: bool | None = None) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kwargs = {}
        if implicit_vr is not None:
            kwargs = {"implicit_vr": implicit_vr, "little_endian": little_endian}
        pydicom.dcmwrite(buffer, ds, enforce_file_format=enforce_file_format, **kwargs)
    return buffer.getvalue()


def plain_stored() -> np.ndarray:
    return phantom_hu().astype(np.int32) + 1024  # intercept -1024


def rsna_defect_stored() -> np.ndarray:
    """The RSNA 2019 defect: 12-bit unsigned values holding HU modulo 4096
    with a bogus intercept. The correction (stored + 1000, wrap at 4096,
    intercept -1000) returns HU exactly for HU in [-1000, 3095]."""
    hu = np.clip(phantom_hu().astype(np.int32), -1000, 3095)
    return np.mod(hu, 4096)


# --------------------------------------------------------------------------
# Cases


@dataclass
class Case:
    name: str
    expect: str
    description: str
    build: Callable[[], bytes]
    hints: dict = field(default_factory=dict)


CASES: list[Case] = []


def case(name: str, expect: str, description: str, **hints):
    def register(build: Callable[[], bytes]) -> Callable[[], bytes]:
        assert all(c.name != name for c in CASES), name
        CASES.append(Case(name, expect, description, build, hints))
        return build

    return register


def case_names() -> list[str]:
    return [c.name for c in CASES]


# Same image, every supported encoding ------------------------------------------------


@case(PLAIN, "ok", "512x512 int16 head phantom, explicit VR little endian, intercept -1024; "
      "out-of-field pixels at -3024 HU without a padding value", background_zero=True)
def _plain() -> bytes:
    return to_bytes(ct_dataset(PLAIN, plain_stored()))


@case("ct_implicit_le.dcm", "ok", "the plain phantom in implicit VR little endian", same_pixels_as=PLAIN)
def _implicit() -> bytes:
    return to_bytes(ct_dataset("ct_implicit_le.dcm", plain_stored(), transfer_syntax=ImplicitVRLittleEndian))


@case("ct_explicit_be.dcm", "ok", "the plain phantom in explicit VR big endian (retired syntax)",
      same_pixels_as=PLAIN)
def _big_endian() -> bytes:
    return to_bytes(ct_dataset("ct_explicit_be.dcm", plain_stored(), transfer_syntax=ExplicitVRBigEndian))


@case("ct_deflated.dcm", "ok", "the plain phantom in deflated explicit VR little endian", same_pixels_as=PLAIN)
def _deflated() -> bytes:
    return to_bytes(ct_dataset("ct_deflated.dcm", plain_stored(), transfer_syntax=DeflatedExplicitVRLittleEndian))


@case("ct_rle.dcm", "ok", "the plain phantom, RLE lossless (pydicom's encoder)", same_pixels_as=PLAIN)
def _rle() -> bytes:
    ds = ct_dataset("ct_rle.dcm", plain_stored())
    ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    return to_bytes(ds)


@case("ct_jpegls_lossless.dcm", "ok", "the plain phantom, JPEG-LS lossless (pyjpegls/CharLS)",
      same_pixels_as=PLAIN)
def _jpegls() -> bytes:
    ds = ct_dataset("ct_jpegls_lossless.dcm", plain_stored())
    ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls", generate_instance_uid=False)
    return to_bytes(ds)


@case("ct_jpeg2000_lossless.dcm", "ok", "the plain phantom, JPEG 2000 lossless (pylibjpeg-openjpeg)",
      same_pixels_as=PLAIN)
def _jpeg2000_lossless() -> bytes:
    ds = ct_dataset("ct_jpeg2000_lossless.dcm", plain_stored())
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    return to_bytes(ds)


@case("jpeg2000_size_mismatch.dcm", "pixel-data-mismatch", "a 64x64 JPEG 2000 codestream in an object "
      "whose Rows say 32: refused before decoding")
def _jpeg2000_mismatch() -> bytes:
    # 64 pixels: the encoder's default six resolution levels need at least 32.
    ds = ct_dataset("jpeg2000_size_mismatch.dcm", np.zeros((64, 64), np.int32))
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    ds.Rows = 32
    return to_bytes(ds)


def htj2k_dataset(name: str, stored: np.ndarray, transfer_syntax: UID, *, fragments: int = 1, **encode) -> Dataset:
    """`stored` as one HTJ2K codestream from OpenJPH (imagecodecs), an encoder independent of the
    OpenJPEG that decodes it, split into `fragments` items."""
    ds = ct_dataset(name, stored, transfer_syntax=transfer_syntax)
    codestream = imagecodecs.htj2k_encode(stored.astype(np.int16), **encode)
    ds.PixelData = encapsulate([codestream], fragments_per_frame=fragments)
    ds["PixelData"].VR = "OB"
    return ds


@case("ct_htj2k_lossless.dcm", "ok", "the plain phantom, HTJ2K lossless (1.2.840.10008.1.2.4.201, OpenJPH)",
      same_pixels_as=PLAIN)
def _htj2k_lossless() -> bytes:
    return to_bytes(htj2k_dataset("ct_htj2k_lossless.dcm", plain_stored(), HTJ2KLossless, reversible=True))


@case("ct_htj2k_rpcl_fragments.dcm", "ok", "the plain phantom, HTJ2K lossless RPCL with TLM markers "
      "(1.2.840.10008.1.2.4.202), the codestream split over three fragments", same_pixels_as=PLAIN)
def _htj2k_rpcl() -> bytes:
    return to_bytes(htj2k_dataset("ct_htj2k_rpcl_fragments.dcm", plain_stored(), HTJ2KLosslessRPCL,
                                  fragments=3, reversible=True, tlm=True))


@case("ct_htj2k_lossy.dcm", "ok", "the plain phantom, HTJ2K (1.2.840.10008.1.2.4.203) with the irreversible "
      "wavelet and quantisation", openjph_reference=True)
def _htj2k_lossy() -> bytes:
    return to_bytes(htj2k_dataset("ct_htj2k_lossy.dcm", plain_stored(), HTJ2K, reversible=False, level=0.0005))


@case("htj2k_truncated.dcm", "corrupt-pixel-data", "HTJ2K lossless whose codestream stops half-way")
def _htj2k_truncated() -> bytes:
    ds = htj2k_dataset("htj2k_truncated.dcm", plain_stored(), HTJ2KLossless, reversible=True)
    codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([codestream[: len(codestream) // 2]])
    return to_bytes(ds)


@case("htj2k_size_mismatch.dcm", "pixel-data-mismatch", "a 64x64 HTJ2K codestream in an object whose "
      "Columns say 48: refused before decoding")
def _htj2k_mismatch() -> bytes:
    ds = htj2k_dataset("htj2k_size_mismatch.dcm", np.full((64, 64), 1000, np.int32), HTJ2KLossless, reversible=True)
    ds.Columns = 48
    return to_bytes(ds)


@case("ct_no_meta_implicit.dcm", "ok", "the plain phantom as a bare implicit VR little endian data set: "
      "no preamble, no 'DICM', no file meta header", same_pixels_as=PLAIN)
def _no_meta() -> bytes:
    ds = ct_dataset("ct_no_meta_implicit.dcm", plain_stored(), transfer_syntax=ImplicitVRLittleEndian)
    del ds.file_meta
    data = to_bytes(ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert data[:4] == b"\x08\x00\x05\x00" and b"DICM" not in data[:200], "expected a bare data set"
    return data


@case("ct_monochrome1.dcm", "ok", "the plain phantom labelled MONOCHROME1: Hounsfield values must not be "
      "inverted", same_pixels_as=PLAIN)
def _mono1() -> bytes:
    return to_bytes(ct_dataset("ct_monochrome1.dcm", plain_stored(), photometric="MONOCHROME1"))


@case("ct_jpegls_near_lossless.dcm", "ok", f"the phantom stored unsigned (intercept -1024), JPEG-LS "
      f"near-lossless with NEAR={JLS_NEAR}", lossy_tolerance=2 * JLS_NEAR)
def _jpegls_near() -> bytes:
    stored = np.clip(plain_stored(), 0, None)
    ds = ct_dataset("ct_jpegls_near_lossless.dcm", stored, pixel_representation=0)
    ds.compress(JPEGLSNearLossless, encoding_plugin="pyjpegls", jls_error=JLS_NEAR,
                generate_instance_uid=False)
    return to_bytes(ds)


# RSNA 2019 12-bit defect -----------------------------------------------------------


@case("rsna_12bit_defect.dcm", "ok", "RSNA 2019 defect: BitsStored 12, unsigned, stored = HU mod 4096 "
      "(HU clipped to [-1000, 3095]), RescaleIntercept 1; the correction must restore the phantom's HU",
      rsna_fix=True, restores=PLAIN)
def _rsna_defect() -> bytes:
    return to_bytes(ct_dataset("rsna_12bit_defect.dcm", rsna_defect_stored(), bits_stored=12,
                               pixel_representation=0, intercept="1"))


@case("rsna_12bit_intercept_-1024.dcm", "ok", "BitsStored 12, unsigned, intercept -1024 (a normal 12-bit "
      "CT): the RSNA correction must not fire", rsna_fix=False)
def _rsna_normal() -> bytes:
    stored = np.clip(plain_stored(), 0, 4095)
    return to_bytes(ct_dataset("rsna_12bit_intercept_-1024.dcm", stored, bits_stored=12,
                               pixel_representation=0, intercept="-1024"))


@case("rsna_intercept_-99.5.dcm", "ok", "defect pixels with intercept -99.5: int(-99.5) = -99 > -100 "
      "(Python truncation), so the correction fires", rsna_fix=True, restores=PLAIN)
def _rsna_boundary_fires() -> bytes:
    return to_bytes(ct_dataset("rsna_intercept_-99.5.dcm", rsna_defect_stored(), bits_stored=12,
                               pixel_representation=0, intercept="-99.5"))


@case("rsna_intercept_-100.dcm", "ok", "defect pixels with intercept -100: int(-100) is not > -100, "
      "so the correction must not fire", rsna_fix=False)
def _rsna_boundary_silent() -> bytes:
    return to_bytes(ct_dataset("rsna_intercept_-100.dcm", rsna_defect_stored(), bits_stored=12,
                               pixel_representation=0, intercept="-100"))


# Padding -----------------------------------------------------------------------------


@case("padding_signed_-2000.dcm", "ok", "signed 16-bit, PixelPaddingValue -2000 (SS), out-of-field "
      "pixels stored as -2000", background_zero=True)
def _padding_signed() -> bytes:
    stored = plain_stored()
    stored[out_of_field()] = -2000
    ds = ct_dataset("padding_signed_-2000.dcm", stored)
    ds.PixelPaddingValue = -2000
    ds["PixelPaddingValue"].VR = "SS"
    return to_bytes(ds)


@case("padding_unsigned_65535.dcm", "ok", "unsigned 16-bit, intercept -1024, PixelPaddingValue 65535 (US): "
      "padding would be 64511 HU (white) if it were not masked", background_zero=True)
def _padding_unsigned() -> bytes:
    stored = np.clip(plain_stored(), 0, None)
    stored[out_of_field()] = 65535
    ds = ct_dataset("padding_unsigned_65535.dcm", stored, pixel_representation=0)
    ds.PixelPaddingValue = 65535
    ds["PixelPaddingValue"].VR = "US"
    return to_bytes(ds)


@case("padding_range.dcm", "ok", "unsigned 16-bit, PixelPaddingValue 60010 with PixelPaddingRangeLimit "
      "60000 (limit below the value); the out-of-field background holds every value of [60000, 60010]; "
      "two bottom-right corner pixels hold 59999 and 60011, just outside the range", background_zero=True)
def _padding_range() -> bytes:
    rng = np.random.default_rng(SEED + 1)
    stored = np.clip(plain_stored(), 0, None)
    mask = out_of_field()
    stored[mask] = rng.integers(60000, 60011, size=int(mask.sum()))  # inclusive of 60010
    stored[0, 0] = 60000
    stored[0, 1] = 60010
    stored[511, 511] = 59999  # just outside the range: not padding (bright)
    stored[511, 510] = 60011
    ds = ct_dataset("padding_range.dcm", stored, pixel_representation=0)
    ds.PixelPaddingValue = 60010
    ds["PixelPaddingValue"].VR = "US"
    ds.PixelPaddingRangeLimit = 60000
    ds["PixelPaddingRangeLimit"].VR = "US"
    return to_bytes(ds)


@case("padding_12bit_signed_garbage.dcm", "ok", "BitsStored 12 signed in 16-bit words with random high "
      "bits, intercept 0, PixelPaddingValue -2000 (SS): padding must be compared after masking and "
      "sign extension", background_zero=True)
def _padding_12bit() -> bytes:
    rng = np.random.default_rng(SEED + 2)
    stored = np.clip(phantom_hu().astype(np.int32), -2048, 2047)
    stored[out_of_field()] = -2000
    words = (stored & 0x0FFF) | (rng.integers(0, 16, size=stored.shape) << 12)
    ds = ct_dataset("padding_12bit_signed_garbage.dcm", stored, bits_stored=12, intercept="0",
                    raw_words=words.astype(np.uint16))
    ds.PixelPaddingValue = -2000
    ds["PixelPaddingValue"].VR = "SS"
    return to_bytes(ds)


# Storage and rescale variants -------------------------------------------------------


@case("unsigned_intercept_-1024.dcm", "ok", "PixelRepresentation 0, BitsStored 16, intercept -1024 "
      "(out-of-field stored as 0, i.e. -1024 HU)")
def _unsigned() -> bytes:
    return to_bytes(ct_dataset("unsigned_intercept_-1024.dcm", np.clip(plain_stored(), 0, None),
                               pixel_representation=0))


@case("slope_2.dcm", "ok", "RescaleSlope 2, intercept -1024; two stored windows (first one reported)")
def _slope2() -> bytes:
    ds = ct_dataset("slope_2.dcm", np.floor_divide(plain_stored(), 2), slope="2")
    ds.WindowCenter = [40, 400]
    ds.WindowWidth = [80, 2000]
    return to_bytes(ds)


@case("slope_0.5_intercept_-1024.5.dcm", "ok", "RescaleSlope 0.5 with a non-integer intercept -1024.5: "
      "stored = 2 * (HU + 1024), so every value is HU - 0.5")
def _slope_half() -> bytes:
    return to_bytes(ct_dataset("slope_0.5_intercept_-1024.5.dcm", plain_stored() * 2,
                               slope="0.5", intercept="-1024.5"))


@case("garbage_high_bits_12bit_unsigned.dcm", "ok", "BitsStored 12 unsigned in 16-bit words with random "
      "high nibbles, intercept -1024: values must be masked to 12 bits", rsna_fix=False)
def _garbage_unsigned() -> bytes:
    rng = np.random.default_rng(SEED + 3)
    stored = np.clip(plain_stored(), 0, 4095)
    words = stored | (rng.integers(0, 16, size=stored.shape) << 12)
    return to_bytes(ct_dataset("garbage_high_bits_12bit_unsigned.dcm", stored, bits_stored=12,
                               pixel_representation=0, raw_words=words.astype(np.uint16)))


@case("eight_bit_unsigned.dcm", "ok", "BitsAllocated 8 unsigned, slope 10, intercept -1000")
def _eight_bit() -> bytes:
    hu = np.clip(phantom_hu(), -1000, 1550).astype(np.int32)
    stored = np.rint((hu + 1000) / 10).astype(np.int32)
    return to_bytes(ct_dataset("eight_bit_unsigned.dcm", stored, bits_allocated=8, pixel_representation=0,
                               slope="10", intercept="-1000"))


@case("tiny_1x1.dcm", "ok", "a 1x1 image (40 HU)")
def _tiny() -> bytes:
    return to_bytes(ct_dataset("tiny_1x1.dcm", np.array([[40 + 1024]])))


@case("odd_7x5.dcm", "ok", "7 rows x 5 columns of random HU in [-1100, 1200], upsampled to 256: checks "
      "the resize coefficients")
def _odd() -> bytes:
    rng = np.random.default_rng(SEED + 4)
    hu = rng.integers(-1100, 1201, size=(7, 5))
    hu[0, 0], hu[6, 4] = 40, 80  # window edges
    return to_bytes(ct_dataset("odd_7x5.dcm", hu + 1024))


@case("no_rescale_tags.dcm", "ok", "no RescaleSlope/RescaleIntercept: the modality LUT is the identity "
      "(stored values are HU, signed)")
def _no_rescale() -> bytes:
    return to_bytes(ct_dataset("no_rescale_tags.dcm", phantom_hu().astype(np.int32), slope=None, intercept=None))


# Errors ---------------------------------------------------------------------------


@case("no_pixel_data.dcm", "no-pixel-data", "a CT header without (7FE0,0010)")
def _no_pixels() -> bytes:
    ds = ct_dataset("no_pixel_data.dcm", np.zeros((16, 16), np.int32))
    del ds.PixelData
    return to_bytes(ds)


def _pixel_data_offset(data: bytes) -> int:
    """Offset of the first Pixel Data value byte in an explicit VR LE file."""
    tag = data.rfind(b"\xe0\x7f\x10\x00OW")
    assert tag > 0
    return tag + 12


@case("truncated_in_pixel_data.dcm", "truncated", "the plain file cut in the middle of its Pixel Data")
def _truncated_pixels() -> bytes:
    data = _plain()
    start = _pixel_data_offset(data)
    return data[: start + (len(data) - start) // 2 + 1]


@case("truncated_in_header.dcm", "truncated", "the plain file cut in the middle of the Patient's Name value")
def _truncated_header() -> bytes:
    data = _plain()
    value = data.index(b"Synthetic^Phantom")
    return data[: value + 5]


@case("random_bytes.dcm", "not-dicom", "8 KiB of seeded random bytes")
def _random() -> bytes:
    data = np.random.default_rng(SEED + 5).integers(0, 256, size=8192, dtype=np.uint8).tobytes()
    assert data[128:132] != b"DICM" and data[:2] not in (b"\x02\x00", b"\x08\x00", b"\x00\x08")
    return data


@case("empty.dcm", "not-dicom", "a zero-byte file")
def _empty() -> bytes:
    return b""


@case("multi_frame.dcm", "ok", "NumberOfFrames 2 (two 64x64 frames, top-level rescale): a slice per frame")
def _multi_frame() -> bytes:
    frames = np.stack([phantom_hu(64, 64), phantom_hu(64, 64, seed=SEED + 6)]).astype(np.int32) + 1024
    ds = ct_dataset("multi_frame.dcm", frames[0])
    ds.NumberOfFrames = 2
    ds.PixelData = frames.astype("<i2").tobytes()
    return to_bytes(ds)


@case("absurd_dimensions.dcm", "absurd-dimensions", "Rows 60000 with 1 KiB of Pixel Data")
def _absurd() -> bytes:
    ds = ct_dataset("absurd_dimensions.dcm", np.zeros((16, 32), np.int32))
    ds.Rows = 60000
    return to_bytes(ds)


@case("zero_columns.dcm", "absurd-dimensions", "Columns 0")
def _zero_columns() -> bytes:
    ds = ct_dataset("zero_columns.dcm", np.zeros((16, 16), np.int32))
    ds.Columns = 0
    return to_bytes(ds)


@case("pixel_data_too_short.dcm", "pixel-data-too-short", "512x512x16-bit declared, half the Pixel Data "
      "present (the element itself is complete)")
def _too_short() -> bytes:
    ds = ct_dataset("pixel_data_too_short.dcm", plain_stored())
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    return to_bytes(ds)


@case("missing_study_uid.dcm", "missing-attribute", "no StudyInstanceUID")
def _missing_study() -> bytes:
    ds = ct_dataset("missing_study_uid.dcm", np.zeros((16, 16), np.int32))
    del ds.StudyInstanceUID
    return to_bytes(ds)


@case("malformed_sop_uid.dcm", "malformed-uid", "SOPInstanceUID with a slash (1.2.840.ab/c.7)")
def _malformed_uid() -> bytes:
    ds = ct_dataset("malformed_sop_uid.dcm", np.zeros((16, 16), np.int32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid UI value
        ds.SOPInstanceUID = "1.2.840.ab/c.7"
        ds.file_meta.MediaStorageSOPInstanceUID = "1.2.840.ab/c.7"
    return to_bytes(ds)


@case("rgb.dcm", "unsupported-pixel-format", "SamplesPerPixel 3, RGB, 8-bit secondary capture")
def _rgb() -> bytes:
    rng = np.random.default_rng(SEED + 7)
    ds = ct_dataset("rgb.dcm", np.zeros((16, 16), np.int32), bits_allocated=8, pixel_representation=0,
                    slope=None, intercept=None)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.Modality = "OT"
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.PixelData = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8).tobytes()
    return to_bytes(ds)


@case("bits_allocated_32.dcm", "unsupported-pixel-format", "one sample of 32 bits")
def _bits32() -> bytes:
    ds = ct_dataset("bits_allocated_32.dcm", np.zeros((16, 16), np.int32))
    ds.BitsAllocated = 32
    ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelData = (np.arange(256, dtype="<i4") - 1024).tobytes()
    return to_bytes(ds)


@case("palette_color.dcm", "unsupported-photometric-interpretation", "PALETTE COLOR, 8-bit, with LUTs")
def _palette() -> bytes:
    ds = ct_dataset("palette_color.dcm", np.arange(256).reshape(16, 16), bits_allocated=8,
                    pixel_representation=0, slope=None, intercept=None)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.Modality = "OT"
    ds.PhotometricInterpretation = "PALETTE COLOR"
    lut = (np.arange(256, dtype="<u2") * 257).tobytes()
    for colour in ("Red", "Green", "Blue"):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", lut)
    return to_bytes(ds)


@case("jpeg2000_stub.dcm", "corrupt-pixel-data", "declares JPEG 2000 lossless (1.2.840.10008.1.2.4.90) "
      "with a codestream stub that ends inside its SIZ marker")
def _jpeg2000() -> bytes:
    ds = ct_dataset("jpeg2000_stub.dcm", np.zeros((16, 16), np.int32), transfer_syntax=JPEG2000Lossless)
    # SOC + the start of a SIZ marker, then nothing a decoder can use.
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51\x00\x29" + bytes(42) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    return to_bytes(ds)


@case("bits_stored_17.dcm", "invalid-attribute", "BitsStored 17 with BitsAllocated 16")
def _bits_stored_17() -> bytes:
    ds = ct_dataset("bits_stored_17.dcm", np.zeros((16, 16), np.int32))
    ds.BitsStored = 17
    ds.HighBit = 16
    return to_bytes(ds)


@case("pixel_representation_2.dcm", "invalid-attribute", "PixelRepresentation 2")
def _pixel_representation_2() -> bytes:
    ds = ct_dataset("pixel_representation_2.dcm", np.zeros((16, 16), np.int32))
    ds.PixelRepresentation = 2
    return to_bytes(ds)


@case("rescale_slope_0.dcm", "invalid-attribute", "RescaleSlope 0")
def _slope_zero() -> bytes:
    return to_bytes(ct_dataset("rescale_slope_0.dcm", np.zeros((16, 16), np.int32), slope="0"))


# --------------------------------------------------------------------------


def manifest_entry(c: Case) -> dict:
    return {"name": c.name, "expect": c.expect, "description": c.description, **c.hints}


def write_all(out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for c in CASES:
        (out / c.name).write_bytes(c.build())
        entries.append(manifest_entry(c))
    (out / "manifest.json").write_text(json.dumps({"files": entries}, indent=2) + "\n")
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="directory to write the files into")
    args = parser.parse_args(argv)
    entries = write_all(args.out)
    print(f"wrote {len(entries)} files and manifest.json to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
