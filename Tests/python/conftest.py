"""Shared fixtures for the ichctl decode/preprocess tests.

The binary under test is ``$ICHCTL`` (a relative path is taken from the
repository root), by default ``.build/debug/ichctl``; build it with
``swift build``. A missing binary fails the run instead of skipping it.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# reference_preprocess and conftest are imported by the test modules, whatever --import-mode says.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
GENERATOR = REPO_ROOT / "Tools" / "make_test_dicoms.py"
INSPECT_BATCH = 24  # files per `ichctl inspect` process
WORKERS = 2


def ichctl_path() -> Path:
    configured = os.environ.get("ICHCTL")
    path = Path(configured).expanduser() if configured else Path(".build/debug/ichctl")
    return path if path.is_absolute() else REPO_ROOT / path


@functools.lru_cache(maxsize=None)
def load_generator():
    """Tools/make_test_dicoms.py as a module (its case list names the synthetic files)."""
    spec = importlib.util.spec_from_file_location("make_test_dicoms", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_test_dicoms", module)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------
# Real files shipped with pydicom and pydicom-data


@dataclass(frozen=True)
class RealFile:
    id: str  # readable test id: the file name, or the path under test_files for dicomdirtests
    path: Path


def real_files() -> list[RealFile]:
    import data_store  # pydicom-data
    import pydicom.data

    test_files = Path(pydicom.data.__file__).parent / "test_files"
    data_store_dir = Path(data_store.__file__).parent / "data"
    found: list[RealFile] = []
    for root in (test_files, data_store_dir):
        for path in sorted(root.rglob("*")):
            if not path.is_file():
                continue
            relative = path.relative_to(root)
            extensionless_dicom = relative.parts[0] == "dicomdirtests" and path.suffix == "" and path.name != "README"
            if path.suffix == ".dcm" or extensionless_dicom:
                found.append(RealFile(relative.as_posix(), path))
    ids = [f.id for f in found]
    assert len(ids) == len(set(ids)), "duplicate file names between pydicom and pydicom-data"
    return found


REAL_FILES = real_files()


# --------------------------------------------------------------------------
# Running ichctl


class IchctlError(AssertionError):
    pass


class Ichctl:
    def __init__(self, path: Path):
        self.path = path

    def run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        process = subprocess.run([str(self.path), *args], capture_output=True, text=True, timeout=300)
        if check and process.returncode != 0:
            raise IchctlError(
                f"ichctl {' '.join(args)} exited with {process.returncode}:\n{process.stderr}{process.stdout}"
            )
        return process

    def inspect_batch(self, files: Sequence[Path]) -> tuple[list[dict], int]:
        """One `ichctl inspect --json` process: the JSON objects (in file order) and the exit code."""
        process = self.run("inspect", "--json", *map(str, files))
        lines = [line for line in process.stdout.splitlines() if line.strip()]
        assert len(lines) == len(files), f"expected {len(files)} JSON lines, got {len(lines)}:\n{process.stderr}"
        objects = [json.loads(line) for line in lines]
        for path, obj in zip(files, objects):
            assert obj["file"] == str(path), f"out of order or renamed: {obj['file']} != {path}"
        return objects, process.returncode

    def inspect(self, files: Iterable[Path], batch: int = INSPECT_BATCH) -> dict[str, dict]:
        """Inspect many files, `batch` per process, on WORKERS processes. Checks each
        process's exit code (1 if and only if one of its files failed)."""
        files = list(files)
        batches = [files[i : i + batch] for i in range(0, len(files), batch)]
        with ThreadPoolExecutor(WORKERS) as pool:
            results = list(pool.map(self.inspect_batch, batches))
        merged: dict[str, dict] = {}
        for objects, returncode in results:
            any_failed = any("error" in obj for obj in objects)
            assert returncode == (1 if any_failed else 0), f"exit code {returncode}, any_failed={any_failed}"
            merged.update((obj["file"], obj) for obj in objects)
        return merged

    def preprocess(
        self,
        file: Path,
        out: Path,
        *,
        stage: str | None = None,
        windows: str | None = None,
        size: int | None = None,
        order: str | None = None,
        resize: str | None = None,
        rsna_correction: bool = True,
        frame: int | None = None,
    ) -> np.ndarray:
        args = ["preprocess", str(file), "--out", str(out)]
        if frame is not None:
            args += ["--frame", str(frame)]
        if stage is not None:
            args += ["--stage", stage]
        if windows is not None:
            args.append(f"--windows={windows}")  # '=' form: a window centre may be negative
        if size is not None:
            args += ["--size", str(size)]
        if order is not None:
            args += ["--order", order]
        if resize is not None:
            args += ["--resize", resize]
        if not rsna_correction:
            args.append("--no-rsna-correction")
        self.run(*args, check=True)
        array = np.load(out, allow_pickle=False)
        assert array.dtype == np.float32, f"{out}: dtype {array.dtype}"
        return array


    def preprocess_many(self, jobs: Sequence[tuple[Path, Path, dict]]) -> list[np.ndarray | BaseException]:
        """Several `preprocess` runs (file, out, keyword options) on WORKERS processes;
        each result is the array or the exception its run raised."""

        def one(job):
            file, out, options = job
            try:
                return self.preprocess(file, out, **options)
            except BaseException as error:  # noqa: BLE001 - handed to the test that needs it
                return error

        with ThreadPoolExecutor(WORKERS) as pool:
            return list(pool.map(one, jobs))


def binary_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"ichctl binary not found at {path}: run `swift build` in {REPO_ROOT} or set ICHCTL"
    if not os.access(path, os.X_OK):
        return f"{path} is not executable"
    return None


def stale(binary: Path) -> bool:
    """A source file of a target named in Package.swift is newer than the binary."""
    package = REPO_ROOT / "Package.swift"
    if not package.is_file():
        return False
    manifest = package.read_text()
    built = binary.stat().st_mtime
    for target in (REPO_ROOT / "Sources").glob("*"):
        if target.is_dir() and f'"{target.name}"' in manifest:
            if any(p.stat().st_mtime > built for p in target.rglob("*") if p.is_file()):
                return True
    return False


@pytest.fixture(scope="session")
def ichctl() -> Ichctl:
    path = ichctl_path()
    problem = binary_problem(path)
    if problem:
        pytest.fail(problem, pytrace=False)
    if "ICHCTL" not in os.environ and stale(path):
        warnings.warn(f"{path} is older than its sources: run `swift build` to test the current code")
    return Ichctl(path)


# --------------------------------------------------------------------------
# Synthetic files


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """Runs Tools/make_test_dicoms.py once per session."""
    out = tmp_path_factory.mktemp("synthetic")
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def synthetic_manifest(synthetic_dir) -> dict[str, dict]:
    entries = json.loads((synthetic_dir / "manifest.json").read_text())["files"]
    return {entry["name"]: entry for entry in entries}


@pytest.fixture(scope="session")
def synthetic_inspect(ichctl, synthetic_dir, synthetic_manifest) -> dict[str, dict]:
    """`ichctl inspect --json` of every synthetic file, by file name."""
    results = ichctl.inspect(synthetic_dir / name for name in synthetic_manifest)
    return {Path(file).name: obj for file, obj in results.items()}


# --------------------------------------------------------------------------
# Real files made decodable


UID_FIXED_SOURCES = ("bad_sequence.dcm", "JPEGLSNearLossless_08.dcm", "JPEGLSNearLossless_16.dcm")


def is_valid_uid(uid: str) -> bool:
    """The identifiers ichctl and the service accept (issue "Real head-CT studies"): 1 to 64
    ASCII characters of [0-9A-Za-z._-], never "." or ".." alone. Wider than PS3.5 9.1 because
    archives hold RSNA-style (ID_0a1b2c3d4e) and hashed identifiers."""
    return re.fullmatch(r"[0-9A-Za-z._-]{1,64}", uid) is not None and uid not in (".", "..")


def is_dicom_uid(uid: str) -> bool:
    """PS3.5 9.1 proper: digits and dots, <= 64 chars, no empty component (what we write)."""
    return 0 < len(uid) <= 64 and all(part.isdigit() and part.isascii() for part in uid.split("."))


def uid_fixed_name(source: str) -> str:
    return Path(source).stem + "_valid_uids.dcm"


@pytest.fixture(scope="session")
def uid_fixed_copies(tmp_path_factory) -> dict[str, Path]:
    """Copies of real files that ichctl rejects only for their UIDs (the JPEG-LS near-lossless
    samples have no Study/Series UID), with valid UIDs derived from the old values; bad_sequence.dcm's
    hashed UIDs are accepted as they are, so its copy is the file re-saved. Pixel Data stays
    byte-for-byte the same. Keyed by the copy's file name."""
    import pydicom
    from pydicom.uid import generate_uid

    out = tmp_path_factory.mktemp("uid_fixed")
    sources = {f.id: f.path for f in REAL_FILES}
    copies: dict[str, Path] = {}
    for source in UID_FIXED_SOURCES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(sources[source])
            pixel_data = ds.PixelData
            for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
                old = str(ds.get(keyword) or "")
                if not is_valid_uid(old):
                    setattr(ds, keyword, generate_uid(entropy_srcs=[source, keyword, old]))
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            path = out / uid_fixed_name(source)
            ds.save_as(path)
            assert pydicom.dcmread(path).PixelData == pixel_data, f"{source}: Pixel Data changed on rewrite"
        copies[path.name] = path
    return copies
