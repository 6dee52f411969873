"""The training and evaluation pipeline (issue 5): train.py -> convert_keras.py -> Swift.

One small run closes the loop: Tools/phantoms.py writes 6 studies of 4 slices
(128x128, every scanner quirk, every study bleeding), Tools/train.py trains
the real InceptionV3 for 2 steps of 4 slices on CPU at 160x160 and recomputes
its BatchNorm statistics on all 16 training slices (precise BN, without which
a 2-step model's outputs hardly depend on the input), Tools/convert_keras.py
makes a bundle with one golden vector, and then:

* ``ichctl predict`` on the validation DICOM files gives the probabilities
  Keras gave in train.py on the same files preprocessed by Tools/preprocess.py
  (``val_predictions.csv``), within 1e-4; the probabilities differ between
  slices by far more than that, so the comparison means something. (A model
  trained for 2 steps is badly conditioned: its BatchNorm statistics come from
  16 slices, so float32 rounding differences grow more than in a trained
  model. 160x160, whose deepest feature maps are 3x3, and 16 slices keep the
  difference near 1.6e-5 here; at 96x96, 1x1 maps, it reached 8e-5.)
* Tools/evaluate.py gives the same slice probabilities through ``ichctl``
  (``--bundle``), through Keras on the bundle's tensors (``--keras``, all 24
  files) and end to end through ``ich-server`` (``--service``), and its report
  from ``--predictions`` equals train.py's own;
* the metrics are checked against numbers computed by hand here.

The run takes 35-60 s on 2 cores (JAX compiles the InceptionV3 training step
once; XLA's backend optimisation is turned down for the subprocesses, which
makes compiling faster and running slower, a good trade for two steps).
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT

TOOLS = REPO_ROOT / "Tools"
sys.path.insert(0, str(TOOLS))
import evaluate  # noqa: E402
import preprocess  # noqa: E402
import train  # noqa: E402  (no Keras at import time)

LABELS = ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
SIZE = 160
TOLERANCE = 1e-4  # Swift against Keras, probabilities
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")


def binary(variable: str, default: str) -> Path:
    configured = os.environ.get(variable)
    path = Path(configured).expanduser() if configured else Path(default)
    return path if path.is_absolute() else REPO_ROOT / path


ICHCTL = binary("ICHCTL", ".build/release/ichctl")


def run(command: list[str], *, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    process = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=str(REPO_ROOT),
                             env={**os.environ, **(env or {})})
    assert process.returncode == 0, (f"{' '.join(map(str, command))} exited with {process.returncode}:\n"
                                     f"{process.stderr[-4000:]}\n{process.stdout[-2000:]}")
    return process


def require_ichctl() -> None:
    if not ICHCTL.is_file():
        pytest.fail(f"{ICHCTL} not found: swift build -c release --product ichctl (or set ICHCTL)", pytrace=False)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def probabilities_of(rows: list[dict]) -> dict[str, np.ndarray]:
    return {r["ID"][3:]: np.array([float(r[name]) for name in LABELS]) for r in rows}


def ichctl_predict(bundle: Path, files: list[str]) -> dict[str, np.ndarray]:
    process = subprocess.run([str(ICHCTL), "predict", "--model", str(bundle), *files], capture_output=True,
                             text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    out = {}
    for line in process.stdout.splitlines():
        obj = json.loads(line)
        out[obj["input"]] = np.array([obj["probabilities"][name] for name in LABELS])
    return out


# --------------------------------------------------------------------------
# The run (once per module)


class Pipeline:
    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.run = root / "run"
        self.bundle = root / "bundle"
        self.timings: dict[str, float] = {}
        self.train: subprocess.CompletedProcess | None = None

    def timed(self, name: str, command: list[str], **kwargs) -> subprocess.CompletedProcess:
        started = time.monotonic()
        process = run(command, **kwargs)
        self.timings[name] = round(time.monotonic() - started, 1)
        return process


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Pipeline:
    require_ichctl()
    p = Pipeline(tmp_path_factory.mktemp("training"))
    p.timed("phantoms", [sys.executable, str(TOOLS / "phantoms.py"), "--out", str(p.data), "--studies", "6",
                         "--seed", "5", "--size", "128", "--slices-min", "4", "--slices-max", "4",
                         "--prevalence", "1", "--quirk-fraction", "1"])
    p.train = p.timed("train", [
        sys.executable, str(TOOLS / "train.py"), "--data", str(p.data), "--out", str(p.run),
        "--arch", "inception_v3", "--size", str(SIZE), "--epochs", "3", "--time-budget", "0", "--batch", "4",
        "--limit-steps", "2", "--precise-bn", "4", "--val-fraction", "0.25", "--cache", "--workers", "2",
        "--device", "cpu", "--verbose", "2",
    ], env={"XLA_FLAGS": FAST_COMPILE})
    thresholds = json.loads((p.run / "thresholds.json").read_text())["thresholds_argument"]
    p.timed("convert", [
        sys.executable, str(TOOLS / "convert_keras.py"), "--arch", "inception_v3",
        "--weights", str(p.run / "final.weights.h5"), "--input-size", str(SIZE), "--out", str(p.bundle),
        "--golden", "1", "--thresholds", thresholds, "--synthetic-data",
        "--trained-on", "test phantoms",
    ], env={"XLA_FLAGS": FAST_COMPILE})
    print(f"timings (s): {p.timings}")
    return p


# --------------------------------------------------------------------------
# train.py's outputs


def test_run_outputs(pipeline):
    run_dir = pipeline.run
    for name in ("final.weights.h5", "val_predictions.csv", "thresholds.json", "val_report.json", "val_report.md",
                 "history.csv", "state.json", "convert_command.txt"):
        assert (run_dir / name).is_file(), name
    # The layers' weights only (no Adam moments): InceptionV3 is 21.8 M float32 numbers.
    assert (run_dir / "final.weights.h5").stat().st_size < 100e6
    state = json.loads((run_dir / "state.json").read_text())
    # --time-budget 0 lets the first of 3 epochs run, then the run finishes as if it were the last.
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert "stopping after epoch 1 of 3" in pipeline.train.stderr
    assert (run_dir / f"{state['checkpoint']}.weights.h5").is_file()
    assert (run_dir / f"{state['checkpoint']}.optimizer.npz").is_file()

    # The split is by study: 2 of 6 studies held out, none on both sides.
    rows = read_rows(run_dir / "val_predictions.csv")
    studies = {r["StudyInstanceUID"] for r in rows}
    assert len(studies) == 2 and len(rows) == 8
    all_rows = read_rows(pipeline.data / "studies.csv")
    assert sum(r["StudyInstanceUID"] in studies for r in all_rows) == len(rows)

    choice = json.loads((run_dir / "thresholds.json").read_text())
    assert choice["labels"] == LABELS and len(choice["thresholds"]) == 6
    assert all(0 < t < 1 for t in choice["thresholds"])
    assert choice["level"] == "study" and choice["target_sensitivity"] == 0.95

    command = (run_dir / "convert_command.txt").read_text()
    assert "Tools/convert_keras.py" in command and "--synthetic-data" in command
    assert f"--input-size {SIZE}" in command and "phantoms.py, seed 5" in command
    assert choice["thresholds_argument"] == ",".join(f"{t:.6g}" for t in choice["thresholds"])
    assert f"--thresholds {choice['thresholds_argument']}" in command
    summary = json.loads(pipeline.train.stdout.strip().splitlines()[-1])
    assert summary["thresholds"] == choice["thresholds"]

    manifest = json.loads((pipeline.bundle / "model.json").read_text())
    assert manifest["provenance"]["synthetic_data"] is True
    assert manifest["thresholds"] == choice["thresholds"]
    # The rule: at the chosen thresholds every label with a positive validation study keeps its
    # study-level sensitivity >= 0.95 (here: all of them, 2 studies at most).
    for name, entry in choice["per_label"].items():
        if entry["positive_studies"]:
            assert entry["study_sensitivity"] >= 0.95, name


def test_cache_holds_the_shared_preprocessing(pipeline):
    """The float16 cache train.py trained from is Tools/preprocess.py's input, rounded."""
    dataset = evaluate.load_labelled_set(pipeline.data)
    caches = [c for c in (pipeline.run / "cache").glob("inputs-*.npy") if not c.name.endswith(".filled.npy")]
    assert len(caches) == 1
    cache = np.load(caches[0], mmap_mode="r")
    assert cache.shape == (len(dataset), SIZE, SIZE, 3) and cache.dtype == np.float16
    settings = preprocess.Settings(size=SIZE)
    for i in (0, len(dataset) - 1):
        expected = preprocess.load_model_input(dataset.files[i], settings)
        np.testing.assert_allclose(cache[i].astype(np.float32), expected, atol=5e-4, rtol=0)


def test_swift_input_equals_the_training_input(pipeline, tmp_path):
    """ichctl's preprocessing of a validation file (with the bundle's size) equals what train.py fed Keras."""
    rows = read_rows(pipeline.run / "val_predictions.csv")
    for row in rows[:2]:
        out = tmp_path / "input.npy"
        run([str(ICHCTL), "preprocess", row["file"], "--out", str(out), "--size", str(SIZE)])
        expected = preprocess.load_model_input(row["file"], preprocess.Settings(size=SIZE))
        np.testing.assert_allclose(np.load(out), expected, atol=1e-5, rtol=0)


def test_swift_equals_keras(pipeline):
    """train -> convert -> Swift: ichctl's probabilities on the DICOM files are Keras's."""
    rows = read_rows(pipeline.run / "val_predictions.csv")
    keras_p = np.array([[float(r[name]) for name in LABELS] for r in rows])
    swift = ichctl_predict(pipeline.bundle, [r["file"] for r in rows])
    swift_p = np.array([swift[r["file"]] for r in rows])
    difference = np.abs(swift_p - keras_p).max()
    spread = (keras_p.max(axis=0) - keras_p.min(axis=0)).max()
    print(f"max |Swift - Keras| = {difference:.2e}; largest spread of a label over the slices {spread:.3f}")
    assert difference <= TOLERANCE
    # The outputs depend on the input (precise BN): a wrong preprocessing or weight would show.
    assert spread > 100 * TOLERANCE


def test_evaluate_bundle_mode(pipeline, tmp_path):
    report_path, saved = tmp_path / "report.json", tmp_path / "predictions.csv"
    run([sys.executable, str(TOOLS / "evaluate.py"), "--data", str(pipeline.data), "--bundle", str(pipeline.bundle),
         "--ichctl", str(ICHCTL), "--json", str(report_path), "--markdown", str(tmp_path / "report.md"),
         "--save-predictions", str(saved)])
    doc = json.loads(report_path.read_text())
    assert doc["slices"]["count"] == 24 and doc["studies"]["count"] == 6 and doc["failures"] == 0
    assert doc["thresholds"] == json.loads((pipeline.bundle / "model.json").read_text())["thresholds"]
    assert doc["source"]["mode"] == "bundle" and doc["source"]["synthetic_data"] is True
    assert set(doc["slices"]["labels"]) == set(LABELS)
    assert "| any |" in (tmp_path / "report.md").read_text()
    keras_p = probabilities_of(read_rows(pipeline.run / "val_predictions.csv"))
    swift_p = probabilities_of(read_rows(saved))
    assert len(swift_p) == 24
    for key, expected in keras_p.items():
        assert np.abs(swift_p[key] - expected).max() <= TOLERANCE, key


def test_evaluate_keras_mode_equals_swift(pipeline, tmp_path):
    """--keras runs Keras on the bundle's own tensors: on all 24 files, training and
    validation slices alike, it gives what ichctl gives."""
    report_path, saved = tmp_path / "report.json", tmp_path / "keras.csv"
    run([sys.executable, str(TOOLS / "evaluate.py"), "--data", str(pipeline.data), "--keras", str(pipeline.bundle),
         "--batch", "4", "--workers", "2", "--json", str(report_path), "--save-predictions", str(saved),
         "--compare-with", str(pipeline.run / "val_predictions.csv")], env={"XLA_FLAGS": FAST_COMPILE})
    doc = json.loads(report_path.read_text())
    assert doc["source"]["mode"] == "keras" and doc["slices"]["count"] == 24
    # The bundle holds the trained float32 weights: Keras here is Keras in train.py.
    assert doc["comparison"]["slices"] == 8 and doc["comparison"]["max_abs_diff"] <= 1e-5
    keras_p = probabilities_of(read_rows(saved))
    swift = ichctl_predict(pipeline.bundle, [r["file"] for r in read_rows(saved)])
    for row in read_rows(saved):
        assert np.abs(swift[row["file"]] - keras_p[row["ID"][3:]]).max() <= TOLERANCE, row["ID"]


def test_evaluate_predictions_mode_matches_train(pipeline, tmp_path):
    report_path = tmp_path / "report.json"
    run([sys.executable, str(TOOLS / "evaluate.py"), "--data", str(pipeline.data),
         "--predictions", str(pipeline.run / "val_predictions.csv"),
         "--thresholds-from", str(pipeline.run / "thresholds.json"), "--json", str(report_path)])
    doc = json.loads(report_path.read_text())
    ours = json.loads((pipeline.run / "val_report.json").read_text())
    for level in ("slices", "studies"):
        assert doc[level]["count"] == ours[level]["count"]
        assert doc[level]["weighted_log_loss"] == pytest.approx(ours[level]["weighted_log_loss"], rel=1e-6)
        for name in LABELS:
            assert doc[level]["labels"][name]["sensitivity"] == ours[level]["labels"][name]["sensitivity"]
    # And the weighted log loss recomputed here from the CSV and the labels.
    labels, _ = evaluate.read_labels(pipeline.data / "labels.csv")
    rows = read_rows(pipeline.run / "val_predictions.csv")
    total = 0.0
    for r in rows:
        y = labels[r["ID"][3:]]
        per_label = []
        for j, name in enumerate(LABELS):
            p = min(max(float(r[name]), 1e-15), 1 - 1e-15)
            per_label.append(-math.log(p) if y[j] == 1 else -math.log(1 - p))
        total += (2 * per_label[0] + sum(per_label[1:])) / 7
    assert doc["slices"]["weighted_log_loss"] == pytest.approx(total / len(rows), rel=1e-9)


def test_evaluate_service_mode(pipeline, tmp_path):
    """End to end: every file posted to ich-server, results read from /v1/studies."""
    from service import Server, binary_problem, server_binary

    problem = binary_problem(server_binary())
    if problem:
        pytest.fail(problem, pytrace=False)
    server = Server(tmp_path / "server", pipeline.bundle, args=["--threads", "2", "--stable-age", "1"])
    token = server.token("admin")
    server.start()
    try:
        report_path, saved = tmp_path / "report.json", tmp_path / "predictions.csv"
        run([sys.executable, str(TOOLS / "evaluate.py"), "--data", str(pipeline.data), "--service", server.base_url,
             "--token", token, "--wait", "20", "--timeout", "120", "--json", str(report_path),
             "--save-predictions", str(saved)], timeout=200)
    finally:
        assert server.stop() == 0, server.log_tail()
    doc = json.loads(report_path.read_text())
    assert doc["source"]["mode"] == "service" and doc["failures"] == 0
    assert doc["slices"]["count"] == 24 and doc["studies"]["count"] == 6
    assert doc["source"]["model"]["clinicalUse"] is False and doc["source"]["model"]["notice"]
    assert doc["source"]["study_max_vs_slices_max_abs_diff"] <= 1e-6
    assert doc["thresholds"] == pytest.approx(json.loads((pipeline.bundle / "model.json").read_text())["thresholds"])
    service_p = probabilities_of(read_rows(saved))
    for key, expected in probabilities_of(read_rows(pipeline.run / "val_predictions.csv")).items():
        assert np.abs(service_p[key] - expected).max() <= TOLERANCE, key


def test_resume_refuses_another_configuration(pipeline):
    process = subprocess.run([sys.executable, str(TOOLS / "train.py"), "--data", str(pipeline.data),
                              "--out", str(pipeline.run), "--size", "96", "--val-fraction", "0.25", "--resume",
                              "--workers", "1"], capture_output=True, text=True, timeout=120)
    assert process.returncode != 0 and "different configuration" in process.stderr
    process = subprocess.run([sys.executable, str(TOOLS / "train.py"), "--data", str(pipeline.data),
                              "--out", str(pipeline.run), "--workers", "1"], capture_output=True, text=True,
                             timeout=120)
    assert process.returncode != 0 and "--resume" in process.stderr


# --------------------------------------------------------------------------
# Metrics by hand (no run needed)


def test_weighted_log_loss_by_hand():
    # One slice, six labels in the project order (any first, weight 2):
    y1 = [1, 0, 1, 0, 0, 1]
    p1 = [0.9, 0.3, 0.4, 0.4, 0.2, 0.8]
    # -ln 0.9 = 0.105361, -ln 0.7 = 0.356675, -ln 0.4 = 0.916291, -ln 0.6 = 0.510826,
    # -ln 0.8 = 0.223144 (twice); weighted: (2 * 0.105361 + 0.356675 + 0.916291 + 0.510826
    # + 0.223144 + 0.223144) / 7 = 2.440801 / 7 = 0.348686
    one = (2 * -math.log(0.9) - math.log(0.7) - math.log(0.4) - math.log(0.6) - 2 * math.log(0.8)) / 7
    assert one == pytest.approx(0.348686, abs=1e-6)
    assert evaluate.weighted_log_loss(np.array([y1]), np.array([p1])) == pytest.approx(one, rel=1e-12)
    # A second slice, all negative, all 0.5: ln 2 = 0.693147 whatever the weights; the metric is the mean.
    y = np.array([y1, [0] * 6])
    p = np.array([p1, [0.5] * 6])
    assert evaluate.weighted_log_loss(y, p) == pytest.approx((0.348686 + 0.693147) / 2, abs=1e-6)
    # A probability of 0 is clipped to 1e-15: -ln(1e-15) = 34.538776 for `any`, and the five
    # negatives at 0 cost -ln(1 - 1e-15) ~ 1e-15 each: 2 * 34.538776 / 7 = 9.868222.
    assert evaluate.weighted_log_loss(np.array([[1, 0, 0, 0, 0, 0]]), np.zeros((1, 6))) == \
        pytest.approx(9.868222, abs=1e-6)


def test_auc_by_hand():
    # Positives score 0.9, 0.4, 0.8; negatives 0.3, 0.4, 0.2. Of the 9 pairs, 0.9 and 0.8 beat all
    # three negatives (6), 0.4 beats 0.3 and 0.2 (2) and ties 0.4 (1/2): AUC = 8.5 / 9.
    y = np.array([1, 0, 1, 0, 0, 1])
    s = np.array([0.9, 0.3, 0.4, 0.4, 0.2, 0.8])
    assert evaluate.roc_auc(y, s) == pytest.approx(8.5 / 9, rel=1e-12)
    assert evaluate.roc_auc(1 - y, s) == pytest.approx(0.5 / 9, rel=1e-12)
    assert evaluate.roc_auc(np.zeros(6), s) is None
    assert evaluate.roc_auc(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5


def test_sensitivity_specificity_and_threshold_rule_by_hand():
    y = np.array([1, 0, 1, 0, 0, 1])
    s = np.array([0.9, 0.3, 0.4, 0.4, 0.2, 0.8])
    c = evaluate.confusion(y, s, 0.4)  # called: 0.9, 0.4, 0.4, 0.8 -> tp 3, fp 1
    assert (c.tp, c.fn, c.tn, c.fp) == (3, 0, 2, 1)
    assert c.sensitivity == 1.0 and c.specificity == pytest.approx(2 / 3)
    # Sensitivity >= 0.95 of 3 positives needs all 3: the lowest positive score, 0.4.
    assert evaluate.threshold_for_sensitivity(y, s, 0.95) == 0.4
    # >= 0.6 needs 2 of 3: the second highest positive, 0.8.
    assert evaluate.threshold_for_sensitivity(y, s, 0.6) == 0.8
    assert evaluate.threshold_for_sensitivity(np.zeros(6), s, 0.95) is None


def test_study_level_by_hand():
    studies = ["b", "a", "b", "a"]
    y = np.array([[0] * 6, [1, 0, 0, 0, 0, 1], [1, 1, 0, 0, 0, 0], [0] * 6])
    p = np.array([[0.1] * 6, [0.2] * 6, [0.7] * 6, [0.3] * 6])
    ids, ys, ps = evaluate.study_level(studies, y, p)
    assert ids == ["a", "b"]
    assert ys.tolist() == [[1, 0, 0, 0, 0, 1], [1, 1, 0, 0, 0, 0]]
    assert ps[:, 0].tolist() == [0.3, 0.7]


def test_labels_csv_is_mapped_by_name(tmp_path):
    """stage_2_train.csv lists `any` last; the arrays are in the project's order (any first)."""
    path = tmp_path / "labels.csv"
    csv_order = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"]
    values = {"epidural": 0, "intraparenchymal": 1, "intraventricular": 0, "subarachnoid": 0, "subdural": 1,
              "any": 1}
    lines = ["ID,Label"] + [f"ID_abc123_{name},{values[name]}" for name in csv_order]
    lines += ["ID_abc123_any,1"]  # a duplicate row, as the real file has a few
    lines += [f"ID_def456_{name},0" for name in csv_order]
    path.write_text("\n".join(lines) + "\n")
    labels, notes = evaluate.read_labels(path)
    assert labels["abc123"].tolist() == [1, 0, 1, 0, 0, 1]
    assert labels["def456"].tolist() == [0] * 6
    assert notes and "duplicate" in notes[0]
    assert evaluate.key_of("ID_abc123.dcm") == "abc123" and evaluate.key_of("/x/2.25.7.dcm") == "2.25.7"


def test_split_by_study_is_seeded_and_disjoint():
    studies = [f"s{i // 3}" for i in range(30)]  # 10 studies of 3 slices
    train_idx, val_idx, val_ids = train.split_by_study(studies, 0.2, seed=3)
    assert len(val_ids) == 2 and len(val_idx) == 6 and len(train_idx) == 24
    assert not {studies[i] for i in train_idx} & {studies[i] for i in val_idx}
    again = train.split_by_study(studies, 0.2, seed=3)
    assert again[2] == val_ids


def test_oversampling_repeats_rare_positives_and_keeps_the_epoch_length():
    labels = np.zeros((100, 6), dtype=np.float32)
    labels[:10, 1] = 1  # epidural
    labels[5:10, 4] = 1  # subarachnoid as well: the larger factor wins, not the product
    train_idx = np.arange(20, 100).tolist() + list(range(10))
    order = train.epoch_order(np.array(train_idx), labels, {"epidural": 3, "subarachnoid": 2}, 500,
                              np.random.default_rng(0))
    assert len(order) == 500 and set(order) == set(train_idx)
    one_pass = order[: 80 + 10 * 3]
    counts = np.bincount(one_pass, minlength=100)
    assert (counts[:10] == 3).all() and (counts[20:] == 1).all() and (counts[10:20] == 0).all()
    plain = train.epoch_order(np.array(train_idx), labels, {}, 90, np.random.default_rng(0))
    assert sorted(plain) == sorted(train_idx)
    with pytest.raises(Exception, match="LABEL=K"):
        train.parse_oversample("edh=3")
    assert train.parse_oversample("epidural=3,subarachnoid=2") == {"epidural": 3, "subarachnoid": 2}


def test_augmentation_flips_and_shifts_with_air():
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3) + 1
    out = train.augment_batch(x, np.random.default_rng(0), shift=1)
    assert out.shape == x.shape
    for k in range(2):
        candidates = []
        for image in (x[k], x[k, :, ::-1]):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    shifted = np.zeros_like(image)
                    shifted[max(dy, 0):4 + min(dy, 0), max(dx, 0):4 + min(dx, 0)] = \
                        image[max(-dy, 0):4 + min(-dy, 0), max(-dx, 0):4 + min(-dx, 0)]
                    candidates.append(shifted)
        assert any(np.array_equal(out[k], c) for c in candidates)


# Keras 3.15's get_weights() calls np.array on its variables, which numpy 2 warns about.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_checkpoint_restores_weights_and_optimizer_state(tmp_path):
    """save_checkpoint / load_checkpoint (what --resume uses), on a small model: a run
    interrupted after 2 steps and resumed ends where the uninterrupted one does."""
    import types

    keras = train.import_keras(types.SimpleNamespace(device="cpu"))
    options = types.SimpleNamespace(lr=0.01, schedule="cosine")

    def small_model():
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(4, 3)(inputs)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(6, activation="sigmoid")(x))
        model.compile(optimizer=train.make_optimizer(keras, options, 8), loss=train.weighted_bce(keras))
        return model

    rng = np.random.default_rng(0)
    x = rng.random((8, 8, 8, 3)).astype(np.float32)
    y = (rng.random((8, 6)) < 0.3).astype(np.float32)
    first = small_model()
    first.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)  # 2 steps
    train.save_checkpoint(tmp_path, 1, first, {"config": {}, "history": []}, keep=2)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["epoch"] == 1 and state["checkpoint"] == "checkpoints/epoch_001"

    second = small_model()
    train.load_checkpoint(tmp_path, second, state)
    assert int(np.asarray(second.optimizer.iterations.value)) == 2
    for a, b in zip(first.optimizer.variables, second.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a.value), np.asarray(b.value))
    for model in (first, second):
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert int(np.asarray(second.optimizer.iterations.value)) == 4


def test_export_float16_splits_and_reassembles(tmp_path):
    """--export-f16: the same HDF5 layout in float16, in parts that cat back together."""
    import h5py

    source = tmp_path / "model.weights.h5"
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(64, 64, 3, 3)).astype(np.float32)
    with h5py.File(source, "w") as f:
        f.attrs["note"] = "root"
        group = f.create_group("layers/conv2d/vars")
        group.attrs["name"] = "conv2d"
        group.create_dataset("0", data=kernel)
        f.create_dataset("layers/conv2d/counter", data=np.arange(3, dtype=np.int64))
    parts = train.export_float16(source, tmp_path / "out", part_bytes=20_000)
    assert len(parts) > 1 and all(p.stat().st_size <= 20_000 for p in parts)
    assert [p.name for p in parts] == sorted(p.name for p in parts)
    whole = tmp_path / "whole.h5"
    whole.write_bytes(b"".join(p.read_bytes() for p in parts))
    with h5py.File(whole, "r") as f:
        assert f.attrs["note"] == "root" and f["layers/conv2d/vars"].attrs["name"] == "conv2d"
        assert f["layers/conv2d/vars/0"].dtype == np.float16
        np.testing.assert_array_equal(f["layers/conv2d/vars/0"][()], kernel.astype(np.float16))
        assert f["layers/conv2d/counter"].dtype == np.int64
