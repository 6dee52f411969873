#!/usr/bin/env python3
"""JPEG 2000 decode speed on a real head CT: ichctl (DCMTK + OpenJPEG) against pydicom + pylibjpeg-openjpeg.

The Cranium series of Debian's invesalius-examples (108 slices of 256x256,
wrapped by Tools/real_ct.py) in explicit VR little endian, JPEG 2000 lossless
and HTJ2K lossless (OpenJPH's encoder). Both sides hold the files in memory and decode on one thread:
`ichctl bench-preprocess` reports its decode time apart from preprocessing;
pydicom runs `dcmread` + `pixel_array` per slice. Runs are interleaved and the
median of `--repeats` is reported.

    .venv/bin/python Benchmarks/decode_j2k.py --ichctl .build/release/ichctl
"""
import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Tools"))
import real_ct  # noqa: E402


def time_pydicom(blobs: list[bytes], iterations: int) -> float:
    for data in blobs:
        pydicom.dcmread(io.BytesIO(data)).pixel_array
    start = time.perf_counter()
    for _ in range(iterations):
        for data in blobs:
            pydicom.dcmread(io.BytesIO(data)).pixel_array
    return (time.perf_counter() - start) / (iterations * len(blobs)) * 1000


def time_ichctl(ichctl: str, paths: list[Path], iterations: int) -> float:
    out = subprocess.run([ichctl, "bench-preprocess", "--iterations", str(iterations), *map(str, paths)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["decode_ms_per_slice"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ichctl", default=".build/release/ichctl")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = []
        for syntax in ("explicit", "j2k", "htj2k"):
            paths = real_ct.write(syntax, Path(folder) / syntax)
            blobs = [p.read_bytes() for p in paths]
            ours, theirs = [], []
            for _ in range(args.repeats):
                ours.append(time_ichctl(args.ichctl, paths, args.iterations))
                theirs.append(time_pydicom(blobs, args.iterations))
            rows.append({"syntax": syntax, "slices": len(paths), "ichctl_decode_ms": statistics.median(ours),
                         "pydicom_decode_ms": statistics.median(theirs)})
    for row in rows:
        row["ichctl_over_pydicom"] = row["ichctl_decode_ms"] / row["pydicom_decode_ms"]
        print(json.dumps(row))


if __name__ == "__main__":
    main()
