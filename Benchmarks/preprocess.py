#!/usr/bin/env python3
"""Decode + preprocess speed of 512x512 int16 CT slices: ichctl against pydicom + numpy + OpenCV.

Both sides read the files into memory first, then decode and preprocess each
slice to the 256x256x3 model input (RSNA baseline: correction, padding to air,
brain/subdural/soft-tissue windows, cv2 INTER_LINEAR). Runs are interleaved and
the median is reported, because this machine has slow episodes.

    .venv/bin/python Benchmarks/preprocess.py --ichctl .build/release/ichctl
"""
import argparse
import io
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

WINDOWS = [(40, 80), (80, 200), (40, 380)]


def write_slices(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-256:256, -256:256]
    radius = np.hypot(yy / 1.1, xx)
    study, series = generate_uid(), generate_uid()
    paths = []
    for i in range(count):
        hu = np.where(radius < 200, 35, -1000) + np.where((radius > 200) & (radius < 215), 1500, 0)
        hu = (hu + rng.normal(0, 8, hu.shape)).astype(np.int16)
        stored = np.where(radius > 250, -2000, hu + 1024).astype(np.int16)  # padding outside the field of view
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.file_meta.MediaStorageSOPInstanceUID = sop = generate_uid()
        ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, "CT"
        ds.InstanceNumber = i + 1
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.PixelPaddingValue = 1, -1024, -2000
        ds.PixelData = stored.tobytes()
        path = folder / f"{i:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def python_preprocess(data: bytes) -> np.ndarray:
    ds = pydicom.dcmread(io.BytesIO(data))
    stored = ds.pixel_array.astype(np.int32)
    if ds.BitsStored == 12 and ds.PixelRepresentation == 0 and int(ds.RescaleIntercept) > -100:
        stored = stored + 1000
        stored[stored >= 4096] -= 4096
        intercept = -1000.0
    else:
        intercept = float(ds.RescaleIntercept)
    hu = stored * float(ds.RescaleSlope) + intercept
    if "PixelPaddingValue" in ds:
        hu[stored == ds.PixelPaddingValue] = -1000
    hu = np.maximum(hu, -1000).astype(np.float32)
    channels = []
    for center, width in WINDOWS:
        lo, hi = center - width // 2, center + width // 2
        channels.append((np.clip(hu, lo, hi) - lo) / (hi - lo))
    return cv2.resize(np.stack(channels, axis=-1), (256, 256), interpolation=cv2.INTER_LINEAR)


def time_python(blobs: list[bytes], iterations: int) -> float:
    for blob in blobs:  # warm-up
        python_preprocess(blob)
    start = time.perf_counter()
    for _ in range(iterations):
        for blob in blobs:
            python_preprocess(blob)
    return len(blobs) * iterations / (time.perf_counter() - start)


def time_ichctl(ichctl: str, paths: list[Path], iterations: int) -> float:
    out = subprocess.run([ichctl, "bench-preprocess", "--iterations", str(iterations), *map(str, paths)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["slices_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ichctl", default=".build/release/ichctl")
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # ichctl bench-preprocess is single-threaded too

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_slices(Path(tmp), args.slices)
        blobs = [p.read_bytes() for p in paths]
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(time_ichctl(args.ichctl, paths, args.iterations))
            theirs.append(time_python(blobs, args.iterations))
    o, t = statistics.median(ours), statistics.median(theirs)
    print(json.dumps({
        "slices": args.slices, "size": "512x512 int16", "threads": 1,
        "ichctl_slices_per_second": round(o, 1),
        "pydicom_numpy_cv2_slices_per_second": round(t, 1),
        "ratio": round(o / t, 2),
    }))


if __name__ == "__main__":
    main()
