"""`ichctl predict` against Keras: the Swift forward pass on converted bundles.

For ResNet50 (256x256 and 224x224), the legacy keras-applications ResNet50
(256x256, BatchNorm epsilon 1e-3) and InceptionV3 (256x256 and 299x299): a
seeded reference model (Tools/keras_reference.py) is saved, converted with
Tools/convert_keras.py --golden 2, and ``ichctl predict --logits`` runs on
seeded .npy inputs with --batch 1 and --batch 8. Limits:

* probabilities: |ours - Keras| <= 1e-4;
* logits: |ours - Keras| <= 1e-3 * max(|Keras|, 1);
* --batch 1 against --batch 8: <= 1e-5 (logits: relative to max(|z|, 1)).

The 256x256 ResNet50 and InceptionV3 cases run 8 inputs (one full batch of
8); the others 4 inputs with --batch 8 (a partial batch) or 5 with --batch 3
(a full batch and a remainder). The two ichctl runs of a case run side by
side, as a debug build spends most of its time single-threaded.

The golden tests check, without ichctl, that the golden outputs the converter
stored equal the original model's outputs. The binary is ``$ICHCTL`` (default
``.build/debug/ichctl``; a release build is much faster); a missing binary or a
binary without ``predict`` fails the ichctl tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / "Tools"
sys.path.insert(0, str(TOOLS))

pytest.importorskip("keras")
pytest.importorskip("h5py")

import bundle  # noqa: E402
import keras_reference  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

LABELS = bundle.LABELS
GOLDEN = 2
PROBABILITY_TOLERANCE = 1e-4
LOGIT_TOLERANCE = 1e-3  # relative to max(|logit|, 1)
BATCH_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Case:
    id: str
    arch: str
    legacy: bool
    size: int
    format: str  # how the reference model is saved: exercises each converter path once more
    inputs: int = 8
    batch: int = 8  # compared with --batch 1

    @property
    def model_key(self) -> tuple[str, bool]:
        return self.arch, self.legacy


CASES = [
    Case("resnet50-256", "resnet50", False, 256, "weights.h5"),
    Case("inception_v3-256", "inception_v3", False, 256, "keras"),
    Case("resnet50-legacy-256", "resnet50", True, 256, "h5", inputs=4),
    Case("resnet50-224", "resnet50", False, 224, "weights.h5", inputs=5, batch=3),
    Case("inception_v3-299", "inception_v3", False, 299, "keras", inputs=5, batch=3),
]
SEEDS = {("resnet50", False): 0, ("resnet50", True): 1, ("inception_v3", False): 0}


def ichctl_path() -> Path:
    configured = os.environ.get("ICHCTL")
    path = Path(configured).expanduser() if configured else Path(".build/debug/ichctl")
    return path if path.is_absolute() else REPO_ROOT / path


# --------------------------------------------------------------------------
# Fixtures: one Keras model per architecture (any input size), one bundle per case


@pytest.fixture(scope="session")
def parity_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("parity")


@pytest.fixture(scope="session")
def reference_models():
    cache: dict[tuple[str, bool], object] = {}

    def get(key: tuple[str, bool]):
        if key not in cache:
            arch, legacy = key
            cache[key] = keras_reference.build(arch, None, SEEDS[key], legacy)
        return cache[key]

    return get


@dataclass
class CaseData:
    case: Case
    bundle: Path
    manifest: dict
    inputs: list[Path]  # .npy [H, W, 3]
    probabilities: np.ndarray  # Keras, [inputs, 6]
    logits: np.ndarray
    golden_inputs: np.ndarray
    golden_outputs: np.ndarray
    golden_reference: np.ndarray  # the original model on the golden inputs


@pytest.fixture(scope="session")
def case_data(reference_models, parity_dir):
    cache: dict[str, CaseData] = {}
    saved: dict[tuple, Path] = {}

    def get(case: Case) -> CaseData:
        if case.id in cache:
            return cache[case.id]
        model = reference_models(case.model_key)
        key = (case.model_key, case.format)
        if key not in saved:
            name = f"{case.arch}{'-legacy' if case.legacy else ''}.{case.format}"
            saved[key] = parity_dir / name
            keras_reference.save(model, saved[key])
        folder = parity_dir / case.id
        result = subprocess.run(
            [sys.executable, str(TOOLS / "convert_keras.py"), "--arch", case.arch, "--weights", str(saved[key]),
             "--out", str(folder / "bundle"), "--golden", str(GOLDEN), "--input-size", str(case.size),
             "--name", f"parity-{case.id}", "--trained-on", "seeded random weights", "--synthetic-data"],
            capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        golden, _ = bundle.read_safetensors(folder / "bundle" / "golden.safetensors")
        x = bundle.seeded_inputs(case.inputs, case.size, case.size, seed=1000 + case.size + 7 * case.legacy)
        paths = []
        for i, image in enumerate(x):
            paths.append(folder / f"input{i}.npy")
            np.save(paths[-1], image)
        n = case.inputs
        probabilities, logits = keras_reference.predict(model, np.concatenate([x, golden["inputs"]]), batch_size=n + GOLDEN)
        cache[case.id] = CaseData(
            case, folder / "bundle", json.loads((folder / "bundle" / "model.json").read_text()), paths,
            probabilities[:n], logits[:n], golden["inputs"], golden["outputs"], probabilities[n:])
        return cache[case.id]

    return get


@pytest.fixture(scope="session")
def ichctl() -> Path:
    path = ichctl_path()
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"ichctl binary not found at {path}: run `swift build` in {REPO_ROOT} or set ICHCTL", pytrace=False)
    probe = subprocess.run([str(path), "predict", "--help"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0 or "--model" not in probe.stdout + probe.stderr:
        pytest.fail(f"{path} has no `predict` command (exit {probe.returncode}): {probe.stderr.strip()[:300]}", pytrace=False)
    return path


def start_predict(ichctl: Path, model: Path, inputs: list[Path], batch: int) -> tuple[list[str], subprocess.Popen]:
    args = [str(ichctl), "predict", "--model", str(model), "--logits", "--batch", str(batch), *map(str, inputs)]
    return args, subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_predict(args: list[str], process: subprocess.Popen, inputs: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    try:
        stdout, stderr = process.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, f"{' '.join(args[:8])} ... exited {process.returncode}:\n{stderr[-2000:]}"
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert [line["input"] for line in lines] == [str(p) for p in inputs], "outputs missing or out of order"
    for line in lines:
        assert set(line["probabilities"]) == set(LABELS) and set(line["logits"]) == set(LABELS)
    probabilities = np.array([[line["probabilities"][k] for k in LABELS] for line in lines])
    logits = np.array([[line["logits"][k] for k in LABELS] for line in lines])
    return probabilities, logits


def assert_close_to_keras(data: CaseData, probabilities: np.ndarray, logits: np.ndarray, what: str) -> None:
    p_err = np.abs(probabilities - data.probabilities)
    z_err = np.abs(logits - data.logits) / np.maximum(np.abs(data.logits), 1.0)
    detail = (f"{data.case.id} {what}: max |dp| = {p_err.max():.2e} (limit {PROBABILITY_TOLERANCE:.0e}), "
              f"max relative |dz| = {z_err.max():.2e} (limit {LOGIT_TOLERANCE:.0e})")
    print(detail)  # shown with pytest -s
    assert p_err.max() <= PROBABILITY_TOLERANCE and z_err.max() <= LOGIT_TOLERANCE, detail
    # the outputs must be sigmoid(logits)
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-logits)), atol=1e-6)


# --------------------------------------------------------------------------
# Without ichctl


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_golden_matches_original_model(case, case_data):
    data = case_data(case)
    doc = data.manifest
    assert doc["input"] == {"height": case.size, "width": case.size, "channels": 3}
    assert doc["batch_norm_epsilon"] == (1e-3 if case.legacy or case.arch == "inception_v3" else 1.001e-5)
    assert doc["golden"] == {"file": "golden.safetensors", "tolerance": 1e-4}
    assert doc["provenance"]["synthetic_data"] is True and doc["provenance"]["clinical_use"] is False
    assert data.golden_inputs.shape == (GOLDEN, case.size, case.size, 3)
    assert data.golden_outputs.shape == (GOLDEN, 6) and data.golden_outputs.dtype == np.float32
    np.testing.assert_allclose(data.golden_outputs, data.golden_reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", CASES[:3], ids=[c.id for c in CASES[:3]])
def test_reference_outputs_are_informative(case, case_data):
    """The seeded weights give O(1) logits, unsaturated probabilities that differ
    between inputs (a parity test on constant outputs would prove little)."""
    data = case_data(case)
    assert np.all(np.abs(data.logits) < 12)
    assert 0.01 < np.median(data.probabilities) < 0.99
    assert np.mean((data.probabilities > 0.02) & (data.probabilities < 0.98)) > 0.5
    assert data.logits.std(axis=0).max() > 0.02  # per class, across the inputs


# --------------------------------------------------------------------------
# ichctl predict


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_predict_matches_keras(case, case_data, ichctl):
    data = case_data(case)
    single = start_predict(ichctl, data.bundle, data.inputs, 1)
    batched = start_predict(ichctl, data.bundle, data.inputs, case.batch)
    p1, z1 = finish_predict(*single, data.inputs)
    pb, zb = finish_predict(*batched, data.inputs)
    assert_close_to_keras(data, p1, z1, "--batch 1")
    assert_close_to_keras(data, pb, zb, f"--batch {case.batch}")
    p_diff = np.abs(p1 - pb).max()
    z_diff = (np.abs(z1 - zb) / np.maximum(np.abs(z1), 1.0)).max()
    assert p_diff <= BATCH_TOLERANCE, f"batch 1 vs {case.batch}: max |dp| = {p_diff:.2e}"
    assert z_diff <= BATCH_TOLERANCE, f"batch 1 vs {case.batch}: max relative |dz| = {z_diff:.2e}"


def _small_bundle(data: CaseData, folder: Path, size: int = 32) -> tuple[Path, Path]:
    """A copy of a ResNet50 bundle made for size x size inputs (its weights file a
    link), with one golden input: cheap to load, even for a debug build. Returns
    (bundle, an input .npy)."""
    folder.mkdir()
    (folder / "weights.safetensors").symlink_to(data.bundle / "weights.safetensors")
    doc = dict(data.manifest, input={"height": size, "width": size, "channels": 3})
    (folder / "model.json").write_text(json.dumps(doc))
    x = bundle.seeded_inputs(1, size, size, seed=5)
    np.save(folder / "input.npy", x[0])
    return folder, folder / "input.npy"


def test_ichctl_refuses_wrong_golden(case_data, ichctl, tmp_path):
    data = case_data(CASES[0])
    folder, image = _small_bundle(data, tmp_path / "bad-golden")
    inputs = bundle.seeded_inputs(1, 32, 32, seed=5)
    bundle.write_safetensors(folder / "golden.safetensors", {"inputs": inputs, "outputs": np.full((1, 6), 0.5, np.float32)})
    result = subprocess.run([str(ichctl), "predict", "--model", str(folder), str(image)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "golden" in (result.stderr + result.stdout).lower(), result.stderr


def test_ichctl_refuses_wrong_sha256(case_data, ichctl, tmp_path):
    data = case_data(CASES[0])
    folder, image = _small_bundle(data, tmp_path / "bad-sha")
    doc = json.loads((folder / "model.json").read_text())
    doc["weights"]["sha256"] = "0" * 64
    doc.pop("golden", None)
    (folder / "model.json").write_text(json.dumps(doc))
    result = subprocess.run([str(ichctl), "predict", "--model", str(folder), str(image)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "sha256" in (result.stderr + result.stdout).lower(), result.stderr
