"""Model bundle helpers shared by the converter, the tests and the benchmarks.

A bundle is a directory with ``model.json`` (the manifest), ``weights.safetensors``
and optionally ``golden.safetensors``; docs/BUNDLE.md is the format. This module
has no dependency beyond numpy: safetensors is written and read here directly
(8-byte little-endian header length, a JSON header, then the raw little-endian
tensor data).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Mapping

import numpy as np

FORMAT_VERSION = 1
LABELS = ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
DEFAULT_THRESHOLDS = [0.5] * len(LABELS)
DEFAULT_PREPROCESSING = {
    "windows": [{"center": 40, "width": 80}, {"center": 80, "width": 200}, {"center": 40, "width": 380}],
    "order": "window-then-resize",
    "resize": "linear",
    "rsna_correction": True,
    "air_hu": -1000,
}
WEIGHTS_FILE = "weights.safetensors"
GOLDEN_FILE = "golden.safetensors"
MANIFEST_FILE = "model.json"
DEFAULT_GOLDEN_TOLERANCE = 1e-4

_DTYPES = {  # safetensors dtype name -> numpy little-endian dtype
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES_BY_KIND = {(dtype.kind, dtype.itemsize): name for name, dtype in _DTYPES.items()}


class BundleError(Exception):
    pass


# --------------------------------------------------------------------------
# safetensors


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, np.ndarray],
                      metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` (in the given order) as a safetensors file.

    The header is padded with spaces to a multiple of 8 bytes, so every tensor
    starts 8-byte aligned (as the reference implementation does).
    """
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    arrays = []
    offset = 0
    for name, value in tensors.items():
        if name == "__metadata__":
            raise BundleError("a tensor may not be called __metadata__")
        array = np.asarray(value)
        dtype_name = _NAMES_BY_KIND.get((array.dtype.kind, array.dtype.itemsize))
        if dtype_name is None:
            raise BundleError(f"{name}: dtype {array.dtype} cannot be stored")
        array = np.ascontiguousarray(array, dtype=_DTYPES[dtype_name])
        size = array.nbytes
        header[name] = {"dtype": dtype_name, "shape": list(array.shape), "data_offsets": [offset, offset + size]}
        arrays.append(array)
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for array in arrays:
            f.write(array.tobytes(order="C"))
    os.replace(tmp, path)


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors in file order, metadata). Checks the offsets cover the data exactly."""
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise BundleError(f"{path}: too short for a safetensors file")
    (length,) = struct.unpack("<Q", data[:8])
    if 8 + length > len(data):
        raise BundleError(f"{path}: header length {length} exceeds the file")
    header = json.loads(data[8 : 8 + length].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    body = memoryview(data)[8 + length :]
    tensors: dict[str, np.ndarray] = {}
    spans = []
    for name, info in header.items():
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise BundleError(f"{path}: {name}: unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end - start != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize or end > len(body):
            raise BundleError(f"{path}: {name}: offsets {start}..{end} do not match shape {shape}")
        tensors[name] = np.frombuffer(body[start:end], dtype=dtype).reshape(shape).copy()
        spans.append((start, end))
    spans.sort()
    position = 0
    for start, end in spans:
        if start != position:
            raise BundleError(f"{path}: tensor data is not contiguous at byte {position}")
        position = end
    if position != len(body):
        raise BundleError(f"{path}: {len(body) - position} trailing bytes after the tensor data")
    return tensors, metadata


# --------------------------------------------------------------------------
# Files, manifest


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest(*, name: str, version: str, architecture: str, height: int, width: int, epsilon: float,
             weights_sha256: str, provenance: Mapping[str, object], input_scale: float = 1.0,
             input_offset: float = 0.0, thresholds: list[float] | None = None,
             preprocessing: Mapping[str, object] | None = None, golden_tolerance: float | None = None) -> dict:
    """The ``model.json`` object (key order as in docs/BUNDLE.md)."""
    doc = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "architecture": architecture,
        "convention": "keras",
        "input": {"height": int(height), "width": int(width), "channels": 3},
        "input_scale": float(input_scale),
        "input_offset": float(input_offset),
        "batch_norm_epsilon": float(epsilon),
        "labels": list(LABELS),
        "thresholds": list(thresholds if thresholds is not None else DEFAULT_THRESHOLDS),
        "preprocessing": dict(preprocessing if preprocessing is not None else DEFAULT_PREPROCESSING),
        "provenance": {
            "trained_on": "unknown",
            "synthetic_data": False,
            "clinical_use": False,
            "source": "",
            "notes": "",
            **provenance,
        },
        "weights": {"file": WEIGHTS_FILE, "sha256": weights_sha256},
    }
    if golden_tolerance is not None:
        doc["golden"] = {"file": GOLDEN_FILE, "tolerance": float(golden_tolerance)}
    return doc


def write_manifest(directory: str | os.PathLike, doc: Mapping[str, object]) -> Path:
    path = Path(directory) / MANIFEST_FILE
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def read_bundle(directory: str | os.PathLike, *, verify: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """(manifest, weights as float32). With ``verify`` the weights' sha256 must match."""
    directory = Path(directory)
    doc = json.loads((directory / MANIFEST_FILE).read_text())
    weights_path = directory / doc["weights"]["file"]
    if verify and sha256_file(weights_path) != doc["weights"]["sha256"]:
        raise BundleError(f"{weights_path}: sha256 does not match {MANIFEST_FILE}")
    tensors, _ = read_safetensors(weights_path)
    return doc, {k: v.astype(np.float32) for k, v in tensors.items()}


# --------------------------------------------------------------------------
# Seeded test inputs


def seeded_inputs(count: int, height: int, width: int, seed: int) -> np.ndarray:
    """``count`` float32 images [H, W, 3] in [0, 1]: smooth random blobs, a ring and
    fine noise, different enough that a classifier's outputs differ between them
    (plain uniform noise gives nearly identical global-average features)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    yy /= max(height - 1, 1)
    xx /= max(width - 1, 1)
    images = np.empty((count, height, width, 3), dtype=np.float32)
    for n in range(count):
        for c in range(3):
            field = np.zeros((height, width))
            for _ in range(4):
                cy, cx = rng.uniform(0.1, 0.9, 2)
                sy, sx = rng.uniform(0.05, 0.35, 2)
                field += rng.uniform(-1, 1) * np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
            fy, fx = rng.uniform(1, 6, 2)
            field += 0.3 * rng.uniform(-1, 1) * np.sin(2 * np.pi * (fy * yy + fx * xx + rng.uniform()))
            radius = np.hypot(yy - 0.5, xx - 0.5)
            field += rng.uniform(0, 1) * (np.abs(radius - rng.uniform(0.3, 0.45)) < 0.02)
            field += rng.normal(0, rng.uniform(0.01, 0.1), field.shape)
            low, high = np.percentile(field, [rng.uniform(0, 20), rng.uniform(80, 100)])
            images[n, :, :, c] = np.clip((field - low) / max(high - low, 1e-6), 0, 1)
    return images
