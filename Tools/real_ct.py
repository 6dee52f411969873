#!/usr/bin/env python3
"""Wraps the real head CT of Debian's `invesalius-examples` as a DICOM series.

`Cranium.inv3` (GPL-2, /usr/share/doc/invesalius-examples/examples/) is a tar.gz
holding a 108x256x256 int16 volume in Hounsfield units (0.957 mm pixels, 1.5 mm
slices) from a non-contrast adult head CT, in InVesalius's own format. This
tool writes it as a CT Image Storage series: real pixels, a synthetic header
(deterministic UIDs, the same in every transfer syntax, as after lossless
transcoding), stored as HU + 1024 in 12 unsigned bits with intercept -1024.
Nothing of it is committed; tests run this at test time.

With `--enhanced` the volume is one Enhanced CT Image Storage object instead, a
frame per slice: orientation, pixel measures and rescale in the Shared
Functional Groups, each frame's position and stack position in its Per-Frame
Functional Groups item (a study and series of its own), compressed one
fragment per frame behind a Basic Offset Table as a scanner writes it.

    .venv/bin/python Tools/real_ct.py --syntax j2k --out DIR [--inv3 FILE] [--enhanced]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import plistlib
import sys
import tarfile
from pathlib import Path

import imagecodecs
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    JPEG2000Lossless,
    JPEGLSLossless,
    PYDICOM_IMPLEMENTATION_UID,
    RLELossless,
)

DEFAULT_INV3 = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
SYNTAXES = {
    "explicit": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpegls": JPEGLSLossless,
    "j2k": JPEG2000Lossless,
    "htj2k": HTJ2KLossless,
    "deflate": DeflatedExplicitVRLittleEndian,
}
# Encoders of pydicom 3's plugins: pyjpegls for JPEG-LS, pylibjpeg-openjpeg for JPEG 2000. pydicom has
# no HTJ2K encoder; OpenJPH (imagecodecs) writes those codestreams.
PLUGINS = {"jpegls": "pyjpegls", "j2k": "pylibjpeg"}


def uid(*parts: object) -> str:
    """A 2.25 UID from a hash of the parts: the same series whatever the syntax."""
    digest = hashlib.sha256("/".join(map(str, ("invesalius-cranium",) + parts)).encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def load(inv3: Path) -> tuple[np.ndarray, list[float]]:
    """The volume in HU (slices, rows, columns), rows anterior first, and the spacing (x, y, z) in mm."""
    with tarfile.open(inv3, "r:gz") as archive:
        members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
        main = plistlib.load(archive.extractfile(members["main.plist"]))
        matrix = main["matrix"]
        raw = archive.extractfile(members[matrix["filename"]]).read()
    volume = np.frombuffer(raw, dtype="<i2").reshape(matrix["shape"])
    # InVesalius keeps rows posterior first; DICOM's first row is anterior for an axial head-first scan.
    return volume[:, ::-1, :].copy(), [float(v) for v in main["spacing"]]


def slice_dataset(hu: np.ndarray, index: int, spacing: list[float]) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid("sop", index)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = uid("sop", index)
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.FrameOfReferenceUID = uid("frame")
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SeriesDescription = "Cranium (invesalius-examples): real pixels, synthetic header"
    ds.StudyDescription = "CT HEAD WO CONTRAST"
    ds.BodyPartExamined = "HEAD"
    ds.PatientName = "Cranium^Invesalius"
    ds.PatientID = "INVESALIUS-CRANIUM"
    ds.PatientPosition = "HFS"
    ds.SeriesNumber = 2
    ds.InstanceNumber = index + 1
    ds.SliceThickness = f"{spacing[2]:g}"
    ds.PixelSpacing = [f"{spacing[1]:.7g}", f"{spacing[0]:.7g}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.ImagePositionPatient = ["-122.5", "-122.5", f"{index * spacing[2]:g}"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = hu.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.WindowCenter = "40"
    ds.WindowWidth = "80"
    stored = np.clip(hu.astype(np.int32) + 1024, 0, 4095).astype("<u2")
    ds.PixelData = stored.tobytes()
    return ds


def item(**attributes: object) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def enhanced_dataset(volume: np.ndarray, spacing: list[float]) -> Dataset:
    """The whole volume as one Enhanced CT object: the single-frame header's patient, study and image
    attributes, with the per-slice ones moved into functional groups (PS3.3 A.38)."""
    ds = slice_dataset(volume[0], 0, spacing)
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                    "RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth"):
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid("enhanced", "sop")
    ds.StudyInstanceUID = uid("enhanced", "study")
    ds.SeriesInstanceUID = uid("enhanced", "series")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = volume.shape[0]
    ds.SharedFunctionalGroupsSequence = Sequence([item(
        PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=["1", "0", "0", "0", "1", "0"])]),
        PixelMeasuresSequence=Sequence([item(PixelSpacing=[f"{spacing[1]:.7g}", f"{spacing[0]:.7g}"],
                                             SliceThickness=f"{spacing[2]:g}")]),
        PixelValueTransformationSequence=Sequence([item(RescaleIntercept="-1024", RescaleSlope="1",
                                                        RescaleType="HU")]),
        FrameVOILUTSequence=Sequence([item(WindowCenter="40", WindowWidth="80")]),
    )])
    ds.PerFrameFunctionalGroupsSequence = Sequence([
        item(FrameContentSequence=Sequence([item(InStackPositionNumber=k + 1, DimensionIndexValues=[1, k + 1])]),
             PlanePositionSequence=Sequence([item(ImagePositionPatient=["-122.5", "-122.5", f"{k * spacing[2]:g}"])]))
        for k in range(volume.shape[0])
    ])
    stored = np.clip(volume.astype(np.int32) + 1024, 0, 4095).astype("<u2")
    ds.PixelData = stored.tobytes()
    return ds


def encode(ds: Dataset, syntax: str) -> None:
    target = SYNTAXES[syntax]
    if syntax in PLUGINS or syntax == "rle":
        ds.compress(target, encoding_plugin=PLUGINS.get(syntax, "pydicom"), generate_instance_uid=False)
    elif syntax == "htj2k":
        frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
        ds.PixelData = encapsulate([imagecodecs.htj2k_encode(frame, reversible=True) for frame in frames],
                                   has_bot=len(frames) > 1)
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = target
    elif syntax == "deflate":
        ds.file_meta.TransferSyntaxUID = target


def write(syntax: str, out: Path, inv3: Path = DEFAULT_INV3, enhanced: bool = False) -> list[Path]:
    volume, spacing = load(inv3)
    out.mkdir(parents=True, exist_ok=True)
    if enhanced:
        datasets = [("enhanced.dcm", enhanced_dataset(volume, spacing))]
    else:
        datasets = [(f"CT{index + 1:03d}.dcm", slice_dataset(volume[index], index, spacing))
                    for index in range(volume.shape[0])]
    paths = []
    for name, ds in datasets:
        encode(ds, syntax)
        ds.save_as(out / name, enforce_file_format=True)
        paths.append(out / name)
    prefix = ("enhanced",) if enhanced else ()
    (out / "series.json").write_text(json.dumps({
        "syntax": str(SYNTAXES[syntax]), "slices": volume.shape[0], "study": uid(*prefix, "study"),
        "series": uid(*prefix, "series"), "spacing": spacing, "source": str(inv3), "enhanced": enhanced,
    }, indent=2))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syntax", choices=sorted(SYNTAXES), default="explicit")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--inv3", type=Path, default=DEFAULT_INV3)
    parser.add_argument("--enhanced", action="store_true", help="one Enhanced CT object, a frame per slice")
    args = parser.parse_args(argv)
    if not args.inv3.is_file():
        print(f"{args.inv3} not found: install Debian's invesalius-examples or pass --inv3", file=sys.stderr)
        return 2
    paths = write(args.syntax, args.out, args.inv3, args.enhanced)
    what = "one Enhanced CT object" if args.enhanced else f"{len(paths)} slices"
    print(f"{what} in {args.out} ({SYNTAXES[args.syntax]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
