#!/usr/bin/env python3
"""Evaluate an ICH classifier on a labelled set of head-CT slices.

    python Tools/evaluate.py --data DIR (--predictions FILE | --bundle DIR [--ichctl PATH] |
                                         --keras DIR | --service URL --token T)
        [--labels CSV] [--studies CSV] [--thresholds 0.5,... | --thresholds-from FILE]
        [--json REPORT.json] [--markdown REPORT.md] [--save-predictions CSV] [--compare-with FILE]

``--data DIR`` is a directory in the layout of Tools/phantoms.py or the RSNA
2019 challenge: DICOM files anywhere below it and ``DIR/labels.csv`` (or
``--labels``) in the format of ``stage_2_train.csv`` (``ID,Label`` with rows
``ID_<key>_<label>``, in any label order). A slice's key is the middle of its
ID; its file is ``<key>.dcm`` (phantoms: the SOPInstanceUID) or
``ID_<key>.dcm`` (RSNA). Studies come from ``DIR/studies.csv`` (or
``--studies``: columns StudyInstanceUID and SOPInstanceUID or ID), else from
the files' StudyInstanceUID.

Where the probabilities come from (one of):

* ``--predictions FILE``: a CSV with a column ``ID`` (``ID_<key>``, or the key),
  ``SOPInstanceUID`` or ``file``, and one column per label (what
  Tools/train.py writes as ``val_predictions.csv``); or the challenge's
  submission layout (``ID_<key>_<label>,Label``); or the JSON lines that
  ``ichctl predict`` prints (``{"input": FILE, "probabilities": {...}}``).
  Only labelled slices that have a prediction are evaluated.
* ``--bundle DIR``: runs ``ichctl predict --model DIR`` (``--ichctl``, default
  ``.build/release/ichctl``) on every labelled file: the Swift forward pass
  with the bundle's own preprocessing.
* ``--keras DIR``: Keras (JAX) on the weights of the bundle DIR, on inputs made
  by Tools/preprocess.py with the bundle's settings: the training framework's
  view of the same model, to hold ``--bundle`` or ``--service`` results
  against (``--compare-with``).
* ``--service URL --token T``: end to end through a running ``ich-server``:
  posts every file to ``/v1/instances`` (``application/dicom``), then reads
  ``/v1/studies/{uid}?wait=...`` until each study is ``complete``. The token
  needs scopes ingest and read (``admin``). Files are keyed by the SOP
  Instance UID the service answers with (RSNA files, whose UIDs are
  ``ID_...``, are refused by the service as malformed UIDs).

``--compare-with FILE`` (predictions in any layout above) adds the largest
absolute difference between this run's probabilities and that file's, over
the slices both have, to the report (``comparison``).

Thresholds: the bundle's (``--bundle``, ``--keras``), the service's (``--service``), or
``--thresholds`` / ``--thresholds-from`` (a ``model.json`` or the
``thresholds.json`` of Tools/train.py); 0.5 otherwise.

Figures, per label, at slice level and at study level (a study's probability
is the maximum over its slices, its label is positive when any slice is):

* the challenge's weighted multi-label log loss: per slice, the weighted mean
  of the six binary log losses with weight 2 for ``any`` and 1 for the
  others, averaged over slices (the same as Kaggle's weighted mean over all
  ``ID_<key>_<label>`` rows), probabilities clipped to [1e-15, 1 - 1e-15];
* ROC AUC (the Mann-Whitney statistic, ties counted one half);
* sensitivity and specificity at the thresholds.

Writes a JSON report (``--json``) and a markdown table (``--markdown``; printed
to standard output in any case). ``--save-predictions`` writes the
probabilities obtained, in the CSV layout above. Exit status 0, 1 when no
slice could be evaluated or some files failed (``--allow-failures`` to accept
them), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
LABELS = ("any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")
LABEL_WEIGHTS = np.array([2.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # the challenge's weights, in LABELS order
LOG_LOSS_EPS = 1e-15
DEFAULT_THRESHOLD = 0.5
DEFAULT_ICHCTL = REPO_ROOT / ".build" / "release" / "ichctl"


class EvaluationError(Exception):
    pass


# --------------------------------------------------------------------------
# Metrics (numpy only)


def weighted_log_loss(y: np.ndarray, p: np.ndarray, weights: Sequence[float] = LABEL_WEIGHTS,
                      eps: float = LOG_LOSS_EPS) -> float:
    """The RSNA 2019 metric: mean over samples of sum_j w_j * bce_ij / sum_j w_j.

    ``y`` and ``p`` are [N, 6] in LABELS order."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    w = np.asarray(weights, dtype=np.float64)
    if y.ndim != 2 or y.shape != p.shape or y.shape[1] != len(w):
        raise ValueError(f"shapes {y.shape} and {p.shape} do not fit {len(w)} weights")
    if len(y) == 0:
        return float("nan")
    losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float(np.mean(losses @ w / w.sum()))


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = LOG_LOSS_EPS) -> float:
    """Mean binary log loss of one label."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    if len(y) == 0:
        return float("nan")
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


def midranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + 1 + end) / 2.0  # mean of ranks start+1 .. end
    return ranks


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties 1/2
    (Mann-Whitney U / (P * N)). None when there are no positives or no negatives."""
    y = np.asarray(y).astype(bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = midranks(scores)
    u = ranks[y].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


@dataclass
class Confusion:
    tp: int
    fn: int
    tn: int
    fp: int

    @property
    def sensitivity(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def specificity(self) -> float | None:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else None


def confusion(y: np.ndarray, scores: np.ndarray, threshold: float) -> Confusion:
    """Positive call: score >= threshold (as the service decides)."""
    y = np.asarray(y).astype(bool)
    called = np.asarray(scores) >= threshold
    return Confusion(int((called & y).sum()), int((~called & y).sum()), int((~called & ~y).sum()),
                     int((called & ~y).sum()))


def threshold_for_sensitivity(y: np.ndarray, scores: np.ndarray, target: float) -> float | None:
    """The highest threshold t with sensitivity(score >= t) >= target: the k-th highest
    positive score, k = ceil(target * positives). None without positives."""
    y = np.asarray(y).astype(bool)
    positive_scores = np.sort(np.asarray(scores, dtype=np.float64)[y])[::-1]
    if len(positive_scores) == 0:
        return None
    k = max(1, math.ceil(target * len(positive_scores) - 1e-9))
    return float(positive_scores[k - 1])


def study_level(studies: Sequence[str], y: np.ndarray, p: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(study ids, labels [S, 6], probabilities [S, 6]): per study, the maximum over its
    slices of the labels (a study is positive when any slice is) and of the probabilities."""
    ids = sorted(set(studies))
    index = {s: i for i, s in enumerate(ids)}
    rows = np.array([index[s] for s in studies], dtype=np.int64)
    ys = np.zeros((len(ids), y.shape[1]))
    ps = np.zeros((len(ids), p.shape[1]))
    np.maximum.at(ys, rows, np.asarray(y, dtype=np.float64))
    np.maximum.at(ps, rows, np.asarray(p, dtype=np.float64))
    return ids, ys, ps


def level_figures(y: np.ndarray, p: np.ndarray, thresholds: Sequence[float], *, with_log_loss: bool) -> dict:
    """Figures for one level (slices or studies)."""
    out: dict = {"count": int(len(y))}
    if with_log_loss:
        out["weighted_log_loss"] = weighted_log_loss(y, p) if len(y) else None
    labels = {}
    aucs = []
    for j, name in enumerate(LABELS):
        c = confusion(y[:, j], p[:, j], thresholds[j])
        auc = roc_auc(y[:, j], p[:, j])
        if auc is not None:
            aucs.append(auc)
        entry = {
            "positives": int(y[:, j].sum()),
            "negatives": int(len(y) - y[:, j].sum()),
            "auc": auc,
            "threshold": float(thresholds[j]),
            "sensitivity": c.sensitivity,
            "specificity": c.specificity,
            "tp": c.tp, "fn": c.fn, "tn": c.tn, "fp": c.fp,
        }
        if with_log_loss:
            entry["log_loss"] = log_loss(y[:, j], p[:, j]) if len(y) else None
        labels[name] = entry
    out["mean_auc"] = float(np.mean(aucs)) if aucs else None
    out["labels"] = labels
    return out


def report(keys: Sequence[str], studies: Sequence[str], y: np.ndarray, p: np.ndarray,
           thresholds: Sequence[float], source: dict | None = None) -> dict:
    """The whole report: slice level and study level."""
    y = np.asarray(y, dtype=np.float64).reshape(-1, len(LABELS))
    p = np.asarray(p, dtype=np.float64).reshape(-1, len(LABELS))
    _, ys, ps = study_level(studies, y, p)
    return {
        "labels": list(LABELS),
        "label_weights": LABEL_WEIGHTS.tolist(),
        "thresholds": [float(t) for t in thresholds],
        "source": source or {},
        "slices": level_figures(y, p, thresholds, with_log_loss=True),
        "studies": level_figures(ys, ps, thresholds, with_log_loss=True),
    }


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(doc: dict) -> str:
    """The report as markdown tables."""
    lines = []
    source = doc.get("source", {})
    if source:
        lines.append("Source: " + ", ".join(f"{k} {v}" for k, v in source.items() if not isinstance(v, (dict, list))))
        lines.append("")
    for level in ("slices", "studies"):
        figures = doc[level]
        title = "Slice level" if level == "slices" else "Study level (maximum over slices)"
        lines.append(f"**{title}**: {figures['count']} {level}, weighted log loss "
                     f"{_fmt(figures.get('weighted_log_loss'))}, mean ROC AUC {_fmt(figures.get('mean_auc'))}")
        lines.append("")
        lines.append("| label | positives | ROC AUC | log loss | threshold | sensitivity | specificity |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for name in LABELS:
            e = figures["labels"][name]
            lines.append(f"| {name} | {e['positives']}/{e['positives'] + e['negatives']} | {_fmt(e['auc'])} | "
                         f"{_fmt(e.get('log_loss'))} | {_fmt(e['threshold'], 6)} | {_fmt(e['sensitivity'])} | "
                         f"{_fmt(e['specificity'])} |")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Labelled data


@dataclass
class LabelledSet:
    """Slices in a fixed order: key, file (None when not found), labels in LABELS order, study."""

    keys: list[str]
    files: list[Path | None]
    labels: np.ndarray  # [N, 6] float32, LABELS order
    studies: list[str]
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, indices: Iterable[int]) -> "LabelledSet":
        indices = list(indices)
        return LabelledSet([self.keys[i] for i in indices], [self.files[i] for i in indices], self.labels[indices],
                           [self.studies[i] for i in indices], list(self.notes))


def key_of(text: str) -> str:
    """``ID_<key>`` or ``<key>`` (or a file name ``<key>.dcm``) -> ``<key>``."""
    name = Path(text).name if ("/" in text or text.endswith(".dcm") or text.endswith(".npy")) else text
    for suffix in (".dcm", ".npy"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name[3:] if name.startswith("ID_") else name


def read_labels(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """labels.csv (stage_2_train.csv format, any row order) -> {key: [6] in LABELS order}, notes.
    Duplicate rows (the real stage_2_train.csv has a few) are merged by maximum."""
    values: dict[str, np.ndarray] = {}
    seen: dict[str, np.ndarray] = {}
    duplicates = 0
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["ID", "Label"]:
            raise EvaluationError(f"{path}: expected the header ID,Label (stage_2_train.csv format), got {header}")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 2:
                raise EvaluationError(f"{path}:{line}: expected ID,Label")
            ident, label_text = row[0].strip(), row[1].strip()
            stem, _, label = ident.rpartition("_")
            if label not in LABELS or not stem.startswith("ID_"):
                raise EvaluationError(f"{path}:{line}: {ident!r} is not ID_<key>_<label> with a known label")
            key = stem[3:]
            try:
                value = float(label_text)
            except ValueError:
                raise EvaluationError(f"{path}:{line}: label {label_text!r} is not a number") from None
            j = LABELS.index(label)
            if key not in values:
                values[key] = np.zeros(len(LABELS), dtype=np.float32)
                seen[key] = np.zeros(len(LABELS), dtype=bool)
            if seen[key][j]:
                duplicates += 1
                value = max(value, float(values[key][j]))
            values[key][j] = value
            seen[key][j] = True
    incomplete = [k for k, s in seen.items() if not s.all()]
    if incomplete:
        missing = [LABELS[j] for j in np.flatnonzero(~seen[incomplete[0]])]
        raise EvaluationError(f"{path}: {len(incomplete)} slice(s) lack some labels, e.g. {incomplete[0]} "
                              f"has no {', '.join(missing)}")
    notes = [f"{duplicates} duplicate label rows merged by maximum"] if duplicates else []
    return values, notes


def read_studies_csv(path: Path) -> dict[str, str]:
    """key -> StudyInstanceUID from a CSV with StudyInstanceUID and SOPInstanceUID (or ID)."""
    out = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        column = "SOPInstanceUID" if "SOPInstanceUID" in fields else "ID" if "ID" in fields else None
        if "StudyInstanceUID" not in fields or column is None:
            raise EvaluationError(f"{path}: needs the columns StudyInstanceUID and SOPInstanceUID (or ID)")
        for row in reader:
            out[key_of(row[column])] = row["StudyInstanceUID"]
    return out


def find_files(data: Path) -> dict[str, Path]:
    """key -> DICOM file for every *.dcm below ``data``."""
    found: dict[str, Path] = {}
    for root, _, names in os.walk(data):
        for name in names:
            if name.endswith(".dcm"):
                found.setdefault(key_of(name), Path(root) / name)
    return found


def _study_uid_of(path: str) -> str:
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"], force=True)
    return str(ds.StudyInstanceUID)


def study_uids_from_headers(files: Sequence[Path], workers: int = 1) -> list[str]:
    """StudyInstanceUID of each file (header only)."""
    paths = [str(p) for p in files]
    if workers <= 1 or len(paths) < 64:
        return [_study_uid_of(p) for p in paths]
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(_study_uid_of, paths, chunksize=64)


def load_labelled_set(data: Path | None, *, labels_csv: Path | None = None, studies_csv: Path | None = None,
                      need_files: bool = True, workers: int = 1, study_cache: Path | None = None) -> LabelledSet:
    """The labelled slices of a directory, in a stable order (by study, then key).

    Slices whose file is missing are dropped when ``need_files`` (with a note)."""
    labels_csv = labels_csv or (data / "labels.csv" if data else None)
    if labels_csv is None or not labels_csv.is_file():
        raise EvaluationError(f"no labels file {labels_csv}")
    values, notes = read_labels(labels_csv)
    files = find_files(data) if data is not None and data.is_dir() else {}
    keys = sorted(values)
    if need_files:
        missing = [k for k in keys if k not in files]
        if missing:
            notes.append(f"{len(missing)} labelled slice(s) without a DICOM file were left out (e.g. {missing[0]})")
            keys = [k for k in keys if k in files]
        if not keys:
            raise EvaluationError(f"no labelled DICOM files under {data}")
    studies_csv = studies_csv or (data / "studies.csv" if data is not None and (data / "studies.csv").is_file() else None)
    if studies_csv is None and study_cache is not None and study_cache.is_file():
        studies_csv = study_cache
    study_of: dict[str, str] = read_studies_csv(studies_csv) if studies_csv else {}
    unknown = [k for k in keys if k not in study_of]
    if unknown:
        with_files = [k for k in unknown if k in files]
        if with_files:
            uids = study_uids_from_headers([files[k] for k in with_files], workers)
            study_of.update(zip(with_files, uids))
            if study_cache is not None:
                study_cache.parent.mkdir(parents=True, exist_ok=True)
                with open(study_cache, "w", newline="") as f:
                    w = csv.writer(f, lineterminator="\n")
                    w.writerow(["StudyInstanceUID", "SOPInstanceUID"])
                    for k in keys:
                        if k in study_of:
                            w.writerow([study_of[k], k])
        still = [k for k in keys if k not in study_of]
        if still:
            notes.append(f"{len(still)} slice(s) with no known study count as a study each")
            study_of.update((k, f"slice:{k}") for k in still)
    keys.sort(key=lambda k: (study_of[k], k))
    return LabelledSet(keys, [files.get(k) for k in keys], np.stack([values[k] for k in keys]).astype(np.float32),
                       [study_of[k] for k in keys], notes)


# --------------------------------------------------------------------------
# Predictions from a file


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    """key -> [6] probabilities in LABELS order, from any of the accepted layouts."""
    text = path.read_text()
    first = text.lstrip()[:1]
    out: dict[str, np.ndarray] = {}
    if first == "{":  # ichctl predict JSON lines
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            obj = json.loads(line)
            if "probabilities" not in obj:
                continue  # an error line
            out[key_of(obj["input"])] = np.array([obj["probabilities"][name] for name in LABELS], dtype=np.float64)
        return out
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise EvaluationError(f"{path}: empty")
    header = [h.strip() for h in rows[0]]
    if header[:2] == ["ID", "Label"]:  # submission layout
        partial: dict[str, dict[str, float]] = {}
        for row in rows[1:]:
            if not row:
                continue
            stem, _, label = row[0].strip().rpartition("_")
            if label not in LABELS:
                raise EvaluationError(f"{path}: {row[0]!r} is not ID_<key>_<label>")
            partial.setdefault(key_of(stem), {})[label] = float(row[1])
        for key, by_label in partial.items():
            if len(by_label) == len(LABELS):
                out[key] = np.array([by_label[name] for name in LABELS])
        return out
    id_column = next((c for c in ("ID", "SOPInstanceUID", "key", "file", "input") if c in header), None)
    if id_column is None or not all(name in header for name in LABELS):
        raise EvaluationError(f"{path}: expected a column ID (or SOPInstanceUID/file) and the columns "
                              f"{', '.join(LABELS)}; got {header}")
    ic = header.index(id_column)
    columns = [header.index(name) for name in LABELS]
    for row in rows[1:]:
        if row:
            out[key_of(row[ic].strip())] = np.array([float(row[c]) for c in columns])
    return out


def write_predictions(path: Path, keys: Sequence[str], studies: Sequence[str] | None, p: np.ndarray,
                      files: Sequence[Path | None] | None = None) -> None:
    """The wide CSV: ID_<key>, StudyInstanceUID, file, six probabilities (written exactly: the
    shortest decimal that reads back as the same double, so float32 outputs survive unrounded)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["ID", "StudyInstanceUID", "file", *LABELS])
        for i, key in enumerate(keys):
            w.writerow([f"ID_{key}", studies[i] if studies else "", str(files[i]) if files and files[i] else "",
                        *(repr(float(v)) for v in p[i])])


def thresholds_from_file(path: Path) -> list[float]:
    doc = json.loads(path.read_text())
    values = doc.get("thresholds")
    labels = doc.get("labels", list(LABELS))
    if not isinstance(values, list) or len(values) != len(LABELS):
        raise EvaluationError(f"{path}: no list of {len(LABELS)} thresholds")
    if list(labels) != list(LABELS):
        by_label = dict(zip(labels, values))
        values = [by_label[name] for name in LABELS]
    return [float(v) for v in values]


# --------------------------------------------------------------------------
# Predictions from a bundle through ichctl


def predict_with_ichctl(ichctl: Path, bundle: Path, files: Sequence[Path], *, batch: int = 8,
                        threads: int | None = None, chunk: int = 512) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """(path -> probabilities [6], path -> error) from ``ichctl predict``."""
    if not ichctl.is_file():
        raise EvaluationError(f"{ichctl}: no such binary (swift build -c release --product ichctl, or --ichctl)")
    probabilities: dict[str, np.ndarray] = {}
    errors: dict[str, dict] = {}
    for start in range(0, len(files), chunk):
        part = [str(p) for p in files[start:start + chunk]]
        command = [str(ichctl), "predict", "--model", str(bundle), "--batch", str(batch)]
        if threads:
            command += ["--threads", str(threads)]
        process = subprocess.run(command + part, capture_output=True, text=True)
        lines = [json.loads(line) for line in process.stdout.splitlines() if line.strip()]
        if process.returncode not in (0, 1) or (process.returncode == 1 and not lines):
            raise EvaluationError(f"ichctl predict exited with {process.returncode}:\n{process.stderr[-2000:]}")
        for obj in lines:
            if "probabilities" in obj:
                probabilities[obj["input"]] = np.array([obj["probabilities"][name] for name in LABELS])
            else:
                errors[obj["input"]] = obj.get("error", {})
        print(f"  ichctl predict: {min(start + chunk, len(files))}/{len(files)} files", file=sys.stderr, flush=True)
    return probabilities, errors


# --------------------------------------------------------------------------
# Predictions from Keras on a bundle's weights


def predict_with_keras(bundle_dir: Path, files: Sequence[Path], *, batch: int = 8,
                       workers: int = 1) -> dict[str, np.ndarray]:
    """path -> probabilities from Keras with the bundle's tensors (keras.applications graph,
    the manifest's BatchNorm epsilon), on Tools/preprocess.py inputs with the bundle's settings."""
    import multiprocessing
    import types

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bundle as bundle_io
    import preprocess
    import train  # its loaders and Keras set-up (imports this module: fine, it is loaded)

    doc, tensors = bundle_io.read_bundle(bundle_dir)
    settings = preprocess.Settings.from_manifest(doc)
    pool = None
    if workers > 1:  # forked before JAX starts in this process
        pool = multiprocessing.get_context("fork").Pool(workers, train._init_worker, (settings.as_dict(),))
    try:
        train.import_keras(types.SimpleNamespace(device="auto"))
        import keras_reference

        model = keras_reference.build_architecture(doc["architecture"], (settings.size, settings.size), False)
        for layer in model.layers:
            if isinstance(layer, keras_reference.layers.BatchNormalization):
                layer.epsilon = float(doc["batch_norm_epsilon"])
        keras_reference.set_bundle_tensors(model, tensors)
        scale, offset = float(doc.get("input_scale", 1.0)), float(doc.get("input_offset", 0.0))
        inputs = train.Inputs(list(files), settings, pool)
        out: dict[str, np.ndarray] = {}
        step = batch * 16
        for start in range(0, len(files), step):
            indices = np.arange(start, min(start + step, len(files)))
            x = inputs.get(indices) * np.float32(scale) + np.float32(offset)
            padded = -(-len(indices) // batch) * batch
            if padded != len(indices):
                x = np.concatenate([x, np.zeros((padded - len(indices), *x.shape[1:]), dtype=x.dtype)])
            p = model.predict(x, batch_size=batch, verbose=0)[: len(indices)]
            for i, row in zip(indices, p):
                out[str(files[i])] = np.asarray(row, dtype=np.float64)
            print(f"  keras: {indices[-1] + 1}/{len(files)} files", file=sys.stderr, flush=True)
        return out
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


# --------------------------------------------------------------------------
# Predictions end to end through the service


class ServiceClient:
    def __init__(self, url: str, token: str, timeout: float = 120.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str | None = None, timeout: float | None = None) -> tuple[int, dict, dict]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as response:
                data = response.read()
                return response.status, dict(response.headers), json.loads(data) if data else {}
        except urllib.error.HTTPError as error:
            data = error.read()
            try:
                parsed = json.loads(data) if data else {}
            except ValueError:
                parsed = {"detail": data[:200].decode("utf-8", "replace")}
            return error.code, dict(error.headers), parsed

    def post_instance(self, path: Path, retries: int = 20) -> dict:
        body = path.read_bytes()
        for _ in range(retries):
            status, headers, doc = self.request("POST", "/v1/instances", body, "application/dicom")
            if status == 503:
                time.sleep(float(headers.get("Retry-After", "1") or 1))
                continue
            if status in (200, 202):
                return doc
            raise EvaluationError(f"{path}: POST /v1/instances answered {status}: "
                                  f"{doc.get('type', '')} {doc.get('detail', '')}".strip())
        raise EvaluationError(f"{path}: the service stayed overloaded (503)")

    def study(self, uid: str, wait: float) -> dict:
        status, _, doc = self.request("GET", f"/v1/studies/{urllib.parse.quote(uid)}?wait={wait:g}",
                                      timeout=wait + 60)
        if status != 200:
            raise EvaluationError(f"GET /v1/studies/{uid} answered {status}: {doc.get('detail', '')}")
        return doc


def predict_with_service(url: str, token: str, files: Sequence[Path], *, concurrency: int = 4, wait: float = 30,
                         timeout: float = 3600) -> tuple[dict[str, np.ndarray], dict[str, dict], list[float], dict]:
    """(path -> probabilities, path -> error, thresholds, extra: model and study-level check)."""
    client = ServiceClient(url, token)
    accepted: dict[str, dict] = {}
    errors: dict[str, dict] = {}

    def post(path: Path):
        try:
            return str(path), client.post_instance(path), None
        except (EvaluationError, OSError) as error:
            return str(path), None, {"type": "ingest", "detail": str(error)}

    started = time.monotonic()
    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        for n, (path, doc, error) in enumerate(pool.map(post, files), start=1):
            if error:
                errors[path] = error
            else:
                accepted[path] = doc
            if n % 200 == 0 or n == len(files):
                print(f"  posted {n}/{len(files)} files", file=sys.stderr, flush=True)
    ingest_seconds = time.monotonic() - started
    by_sop = {doc["sopInstanceUID"]: path for path, doc in accepted.items()}
    study_uids = sorted({doc["studyInstanceUID"] for doc in accepted.values()})
    probabilities: dict[str, np.ndarray] = {}
    thresholds: list[float] | None = None
    model: dict | None = None
    service_study: dict[str, np.ndarray] = {}
    deadline = time.monotonic() + timeout
    for n, uid in enumerate(study_uids, start=1):
        while True:
            doc = client.study(uid, min(wait, 120))
            if doc["status"] == "complete":
                break
            if time.monotonic() > deadline:
                raise EvaluationError(f"study {uid} not complete after {timeout:g} s ({doc['counts']})")
        model = model or doc.get("model")
        study_thresholds = [float(e["threshold"]) for e in doc["labels"]]
        if [e["label"] for e in doc["labels"]] != list(LABELS):
            raise EvaluationError(f"study {uid}: labels {[e['label'] for e in doc['labels']]} not in the RSNA order")
        thresholds = thresholds or study_thresholds
        if study_thresholds != thresholds:
            raise EvaluationError(f"study {uid}: thresholds changed during the run (model reloaded?)")
        service_study[uid] = np.array([np.nan if e["probability"] is None else e["probability"] for e in doc["labels"]])
        for s in doc["slices"]:
            path = by_sop.get(s["sopInstanceUID"])
            if path is None:
                continue
            if s["status"] == "done":
                probabilities[path] = np.array([s["probabilities"][name] for name in LABELS])
            else:
                errors[path] = s.get("error") or {"type": s["status"]}
        if n % 50 == 0 or n == len(study_uids):
            print(f"  read {n}/{len(study_uids)} studies", file=sys.stderr, flush=True)
    missing = [p for p in accepted if p not in probabilities and p not in errors]
    for path in missing:
        errors[path] = {"type": "missing", "detail": "accepted, but not among its study's slices"}
    # The service's own study aggregate against the maximum of its slice results.
    worst = 0.0
    for uid in study_uids:
        paths = [p for p, d in accepted.items() if d["studyInstanceUID"] == uid and p in probabilities]
        if paths:
            ours = np.max([probabilities[p] for p in paths], axis=0)
            worst = max(worst, float(np.nanmax(np.abs(ours - service_study[uid]))))
    extra = {"model": model, "studies_posted": len(study_uids), "ingest_seconds": round(ingest_seconds, 3),
             "study_max_vs_slices_max_abs_diff": worst}
    return probabilities, errors, thresholds or [DEFAULT_THRESHOLD] * len(LABELS), extra


# --------------------------------------------------------------------------
# Command line


def parse_thresholds(text: str) -> list[float]:
    values = [float(v) for v in text.split(",")]
    if len(values) != len(LABELS) or not all(0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected {len(LABELS)} comma-separated values in (0, 1)")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="directory with the DICOM files (and labels.csv, studies.csv)")
    p.add_argument("--labels", type=Path, help="labels CSV (default DATA/labels.csv)")
    p.add_argument("--studies", type=Path, help="StudyInstanceUID,SOPInstanceUID CSV (default DATA/studies.csv)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", type=Path, help="predictions CSV or ichctl predict JSON lines")
    source.add_argument("--bundle", type=Path, help="model bundle directory, run with ichctl predict")
    source.add_argument("--keras", type=Path, metavar="BUNDLE", help="run Keras on this bundle's weights")
    source.add_argument("--service", help="base URL of a running ich-server, e.g. http://127.0.0.1:8080")
    p.add_argument("--ichctl", type=Path, default=DEFAULT_ICHCTL, help="ichctl binary (default %(default)s)")
    p.add_argument("--batch", type=int, default=8, help="batch of ichctl predict --batch and of --keras")
    p.add_argument("--threads", type=int, help="ichctl predict --threads")
    p.add_argument("--token", default=os.environ.get("ICH_TOKEN"), help="service token (ingest+read: admin); $ICH_TOKEN")
    p.add_argument("--concurrency", type=int, default=4, help="parallel uploads to the service")
    p.add_argument("--wait", type=float, default=30, help="seconds per /v1/studies long poll (at most 120)")
    p.add_argument("--timeout", type=float, default=3600, help="give up on the service after this many seconds")
    th = p.add_mutually_exclusive_group()
    th.add_argument("--thresholds", type=parse_thresholds, help="six comma-separated thresholds, LABELS order")
    th.add_argument("--thresholds-from", type=Path, help="model.json or train.py's thresholds.json")
    p.add_argument("--limit", type=int, help="evaluate only the first N studies (in StudyInstanceUID order)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes reading DICOM headers (and preprocessing, for --keras)")
    p.add_argument("--json", type=Path, dest="json_out", help="write the report as JSON")
    p.add_argument("--markdown", type=Path, help="write the markdown tables")
    p.add_argument("--save-predictions", type=Path, help="write the probabilities obtained (CSV)")
    p.add_argument("--compare-with", type=Path, metavar="FILE",
                   help="report the largest |difference| from these predictions (CSV or JSON lines)")
    p.add_argument("--allow-failures", action="store_true", help="exit 0 even when some files failed")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.data is None and args.labels is None:
        parser.error("--data (or --labels) is required")
    if args.service and not args.token:
        parser.error("--service needs --token (or $ICH_TOKEN)")
    try:
        dataset = load_labelled_set(args.data, labels_csv=args.labels, studies_csv=args.studies,
                                    need_files=args.predictions is None, workers=args.workers)
        if args.limit:
            chosen = set(sorted(set(dataset.studies))[: args.limit])
            dataset = dataset.subset(i for i, s in enumerate(dataset.studies) if s in chosen)
        thresholds = [DEFAULT_THRESHOLD] * len(LABELS)
        threshold_source = "default 0.5"
        source: dict = {}
        errors: dict[str, dict] = {}
        started = time.monotonic()
        if args.predictions:
            by_key = read_predictions(args.predictions)
            keep = [i for i, k in enumerate(dataset.keys) if k in by_key]
            if len(keep) < len(dataset):
                dataset.notes.append(f"{len(dataset) - len(keep)} labelled slice(s) have no prediction and were left out")
            dataset = dataset.subset(keep)
            p = np.stack([by_key[k] for k in dataset.keys]) if keep else np.zeros((0, len(LABELS)))
            source = {"mode": "predictions", "file": str(args.predictions)}
        else:
            files = [f for f in dataset.files]
            if args.bundle or args.keras:
                directory = args.bundle or args.keras
                doc = json.loads((directory / "model.json").read_text())
                thresholds, threshold_source = [float(t) for t in doc["thresholds"]], f"{directory}/model.json"
                if args.bundle:
                    by_path, errors = predict_with_ichctl(args.ichctl, args.bundle, files, batch=args.batch,
                                                         threads=args.threads)
                else:
                    by_path = predict_with_keras(args.keras, files, batch=args.batch, workers=args.workers)
                source = {"mode": "bundle" if args.bundle else "keras", "bundle": str(directory),
                          "name": doc.get("name"), "architecture": doc.get("architecture"),
                          **({"ichctl": str(args.ichctl)} if args.bundle else {}),
                          "synthetic_data": doc.get("provenance", {}).get("synthetic_data"),
                          "clinical_use": doc.get("provenance", {}).get("clinical_use")}
            else:
                by_path, errors, thresholds, extra = predict_with_service(
                    args.service, args.token, files, concurrency=args.concurrency, wait=args.wait,
                    timeout=args.timeout)
                threshold_source = "the service's study results"
                source = {"mode": "service", "url": args.service, **extra}
            keep = [i for i, f in enumerate(dataset.files) if str(f) in by_path]
            dataset_all = dataset
            dataset = dataset.subset(keep)
            p = np.stack([by_path[str(f)] for f in dataset.files]) if keep else np.zeros((0, len(LABELS)))
            if errors:
                dataset.notes.append(f"{len(errors)} file(s) failed: e.g. {next(iter(errors.items()))}")
            del dataset_all
        if args.thresholds:
            thresholds, threshold_source = args.thresholds, "--thresholds"
        elif args.thresholds_from:
            thresholds, threshold_source = thresholds_from_file(args.thresholds_from), str(args.thresholds_from)
        if len(dataset) == 0:
            raise EvaluationError("no slice to evaluate")
        source["thresholds_from"] = threshold_source
        source["seconds"] = round(time.monotonic() - started, 3)
        doc = report(dataset.keys, dataset.studies, dataset.labels, p, thresholds, source)
        if args.compare_with:
            other = read_predictions(args.compare_with)
            common = [i for i, k in enumerate(dataset.keys) if k in other]
            diffs = [float(np.max(np.abs(p[i] - other[dataset.keys[i]]))) for i in common]
            doc["comparison"] = {"file": str(args.compare_with), "slices": len(common),
                                 "max_abs_diff": max(diffs) if diffs else None}
        doc["failures"] = len(errors)
        doc["failed_files"] = {k: v for k, v in list(errors.items())[:50]}
        doc["notes"] = dataset.notes
        if args.save_predictions:
            write_predictions(args.save_predictions, dataset.keys, dataset.studies, p, dataset.files)
    except EvaluationError as error:
        print(f"evaluate: error: {error}", file=sys.stderr)
        return 1
    text = markdown(doc)
    if "comparison" in doc:
        c = doc["comparison"]
        text += (f"\nLargest |difference| from {c['file']} over {c['slices']} common slices: "
                 f"{_fmt(c['max_abs_diff'], 8) if c['max_abs_diff'] is not None else '–'}\n")
    for note in doc["notes"]:
        print(f"evaluate: note: {note}", file=sys.stderr)
    print(text)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(doc, indent=2) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")
    return 1 if errors and not args.allow_failures else 0


if __name__ == "__main__":
    sys.exit(main())
