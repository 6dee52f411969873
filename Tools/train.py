#!/usr/bin/env python3
"""Train an ICH classifier (InceptionV3 or ResNet50, Keras 3 on JAX) for a model bundle.

    python Tools/train.py --data DIR --out RUN_DIR [--arch inception_v3|resnet50]
        [--settings-from BUNDLE] [--size 256] [--windows 40/80,80/200,40/380]
        [--order window-then-resize|resize-then-window] [--resize linear|nearest]
        [--epochs 10] [--batch 64] [--lr 1e-3] [--schedule cosine|constant]
        [--val-fraction 0.1] [--seed 0] [--mixed-bfloat16] [--cache [DIR]]
        [--workers K] [--limit-steps N] [--no-augment] [--shift PX]
        [--precise-bn 50] [--target-sensitivity 0.95] [--export-f16 DIR] [--resume]
        [--time-budget SECONDS]

Data: a directory written by Tools/phantoms.py, or in the RSNA 2019 layout:
DICOM files anywhere below DIR and ``DIR/labels.csv`` in the format of the
challenge's ``stage_2_train.csv`` (``ID_<key>_<label>,0|1``; the file lists
``any`` last, and its rows are mapped to the model's output order by label
name). Studies come from ``DIR/studies.csv`` when present, else from the
files' StudyInstanceUID (read once and kept in ``RUN_DIR/studies.csv``).

Model: ``keras.applications.InceptionV3`` / ``ResNet50`` (``include_top=False,
weights=None``) + GlobalAveragePooling2D + Dense(6, sigmoid), the head of the
RSNA 2019 Kaggle baselines and what Tools/convert_keras.py converts. Outputs in
the project's label order: any, epidural, intraparenchymal, intraventricular,
subarachnoid, subdural. Trained from scratch (no pretrained weights can be
downloaded here): Keras's default initialisers (Glorot uniform kernels),
the head's bias set to the logit of each label's training prevalence.

Input: the function the tests hold the Swift preprocessing to
(Tools/preprocess.py, re-exported by Tests/python/reference_preprocess.py):
Hounsfield units with the RSNA 12-bit fix and air for padding, three CT
windows scaled to [0, 1], ``cv2.resize``. The settings are the bundle's: by
default Sources/Imaging's ``PreprocessSettings.rsnaBaseline`` (40/80, 80/200,
40/380, window then resize, linear, 256x256), or those of ``--settings-from
BUNDLE/model.json``; ``--size``, ``--windows``, ``--order`` and ``--resize``
override them. ``--cache`` stores every slice's input once, as float16, in a
``.npy`` memory map (built before the first epoch by ``--workers``
processes), so no epoch decodes DICOM; without it each batch is decoded by
the worker processes. Augmentation (on unless ``--no-augment``): left-right
flips and shifts of up to ``--shift`` pixels (default size/32), filled with
air. No up-down flip: the phantoms' (and real) blood levels lie along gravity.

Loss: binary cross-entropy per label, weighted 2 for ``any`` and 1 for the
others and divided by the weight sum (7), as the challenge's metric. Adam,
``--lr`` with a cosine decay to zero over the run (``--schedule``). The
validation split is by study (``--val-fraction`` of the studies, drawn with
``--seed``), so no study has slices on both sides.

Checkpoints: after every epoch, ``RUN_DIR/checkpoints/epoch_NNN.weights.h5``
(the model, BatchNorm statistics included) and ``epoch_NNN.optimizer.npz``
(Adam's moments and step count), then ``RUN_DIR/state.json`` (last epoch,
history, configuration) is replaced atomically. ``--resume`` reloads the last
checkpoint, optimizer state included, and continues with the next epoch (the
data order of an epoch depends on the seed and the epoch number only, so an
interrupted run ends where an uninterrupted one would, up to GPU
non-determinism). ``--limit-steps N`` caps the training steps and validation
batches of every epoch (and the default of ``--precise-bn``), for smoke runs.

Precise BatchNorm: after the last epoch, every BatchNormalization's moving
mean and variance are recomputed as the average of its batch statistics over
``--precise-bn`` (default 50) training batches run in training mode with the
final weights (Wu & Johnson 2021). Keras's moving averages (momentum 0.99)
trail weights that are still moving; in a short run they stay near their
initial values, and the model's inference-mode outputs barely depend on the
input. ``final.weights.h5`` holds the recomputed statistics; the per-epoch
checkpoints hold Keras's.

Precision: ``--mixed-bfloat16`` trains with Keras's ``mixed_bfloat16`` policy
(float32 weights, bfloat16 compute; the head stays float32). The final
validation predictions are always computed in float32 on inputs preprocessed
afresh from the DICOM files (not the float16 cache): they are what the Swift
service computes for these files.

``--time-budget SECONDS`` starts no epoch that would end, at the pace of the
last one, more than SECONDS after train.py started; the run then finishes as
after its last epoch (precise BatchNorm, thresholds, export) on a cosine
schedule that has not reached zero. A lease of fixed length (the device
machine) then still returns a model.

``--export-f16 DIR`` also writes the final weights in float16, in parts of
at most ``--part-mib`` (16) MiB: what the device machine can send back.

Outputs in RUN_DIR: ``final.weights.h5`` (Keras 3 weights of the last epoch),
``val_predictions.csv`` (``ID,StudyInstanceUID,file`` + six probabilities),
``val_report.json`` / ``.md`` (Tools/evaluate.py's figures on the
validation split), ``thresholds.json``, ``history.csv``, and the command that
makes a bundle (``convert_command.txt``, also printed).

Thresholds: per label, the highest threshold at which at least
``--target-sensitivity`` (default 0.95) of the validation studies positive
for that label are flagged, a study's probability being the maximum over
its slices (what the service compares with the threshold to set a study's
``positive`` and the worklist's filter). Why this rule for triage: the
service reorders a worklist that radiologists read in full anyway, so a
false alarm costs a study moved up the list, while a missed bleed delays a
time-critical read; the rule fixes the miss rate and takes the best
specificity that allows, where Youden's J (or 0.5) would weigh both errors
alike and, with prevalences near 1%, trade sensitivity for specificity. A
label with no positive validation study keeps 0.5 (say so in the model
card). Thresholds are rounded down to 6 significant digits, so the
sensitivity target still holds on the validation split; judge them on a
held-out set (evaluate.py).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import multiprocessing
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parent
REPO_ROOT = TOOLS.parent
sys.path.insert(0, str(TOOLS))
import evaluate  # noqa: E402  (numpy only: metrics and the labelled-set reader)
import preprocess  # noqa: E402  (the shared preprocessing)

LABELS = evaluate.LABELS
ARCHITECTURES = ("inception_v3", "resnet50")
MIN_SIZE = {"inception_v3": 75, "resnet50": 32}
STATE_FILE = "state.json"
STARTED = time.monotonic()  # --time-budget counts from here
CHECKPOINTS = "checkpoints"


# --------------------------------------------------------------------------
# Arguments and settings


def parse_windows(text: str) -> list[tuple[float, float]]:
    windows = []
    for part in text.split(","):
        try:
            center, width = part.split("/")
            windows.append((float(center), float(width)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: expected CENTER/WIDTH") from None
    return windows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="DICOM files + labels.csv (phantoms.py or RSNA layout)")
    p.add_argument("--labels", type=Path, help="labels CSV (default DATA/labels.csv)")
    p.add_argument("--studies", type=Path, help="StudyInstanceUID,SOPInstanceUID CSV (default DATA/studies.csv)")
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, outputs)")
    p.add_argument("--arch", choices=ARCHITECTURES, default="inception_v3")
    p.add_argument("--settings-from", type=Path, metavar="BUNDLE", help="take the preprocessing from BUNDLE/model.json")
    p.add_argument("--size", type=int, help="input height = width (default 256 or the bundle's)")
    p.add_argument("--windows", type=parse_windows, help="three CENTER/WIDTH windows, e.g. 40/80,80/200,40/380")
    p.add_argument("--order", choices=("window-then-resize", "resize-then-window"))
    p.add_argument("--resize", choices=("linear", "nearest"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    p.add_argument("--val-fraction", type=float, default=0.1, help="fraction of the studies held out (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixed-bfloat16", action="store_true", help="Keras mixed_bfloat16 policy (GPU)")
    p.add_argument("--cache", nargs="?", const="", metavar="DIR",
                   help="cache the inputs as a float16 .npy memory map (default DIR: RUN_DIR/cache)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes that decode DICOM")
    p.add_argument("--limit-steps", type=int, help="at most N training steps (and validation batches) per epoch")
    p.add_argument("--no-augment", action="store_true", help="no flips or shifts")
    p.add_argument("--shift", type=int, help="largest shift in pixels (default size/32)")
    p.add_argument("--oversample", type=parse_oversample, default={}, metavar="LABEL=K[,LABEL=K]",
                   help="show training slices positive for LABEL K times as often, e.g. epidural=3 (rare labels; "
                        "an epoch keeps its number of steps)")
    p.add_argument("--precise-bn", type=int, metavar="BATCHES",
                   help="recompute BatchNorm statistics over this many training batches at the end (default 50, "
                        "or --limit-steps when smaller; 0: keep Keras's moving averages)")
    p.add_argument("--target-sensitivity", type=float, default=0.95, help="study-level sensitivity for the thresholds")
    p.add_argument("--keep-checkpoints", type=int, default=2, help="checkpoints kept (the latest ones)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR's last checkpoint")
    p.add_argument("--export-f16", type=Path, metavar="DIR",
                   help="also write final.weights.h5 in float16, split into parts of at most --part-mib MiB "
                        "(to bring it back from the device machine)")
    p.add_argument("--part-mib", type=float, default=16.0)
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="start no epoch expected to end later than SECONDS after start-up")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto", help="JAX platform (default: auto)")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), help="Keras fit verbosity (default 1 on a terminal, else 2)")
    p.add_argument("--name", help="bundle name for the printed convert command (default ich-<arch>-<size>)")
    return p


def resolve_settings(args) -> preprocess.Settings:
    base = preprocess.Settings()
    if args.settings_from:
        manifest = json.loads((args.settings_from / "model.json").read_text())
        base = preprocess.Settings.from_manifest(manifest)
    windows = args.windows or base.windows
    if len(windows) != 3:
        raise SystemExit("train: error: the architectures take three channels: give three windows")
    return preprocess.Settings(windows, args.size or base.size, args.order or base.order, args.resize or base.mode,
                               base.rsna_correction, base.air)


# --------------------------------------------------------------------------
# Split, cache and loading (no Keras here: these run in worker processes too)


def parse_oversample(text: str) -> dict[str, int]:
    factors = {}
    for part in text.split(","):
        label, _, k = part.partition("=")
        if label not in LABELS or not k.isdigit() or int(k) < 1:
            raise argparse.ArgumentTypeError(f"expected LABEL=K with LABEL one of {', '.join(LABELS)} and K >= 1, "
                                             f"got {part!r}")
        factors[label] = int(k)
    return factors


def epoch_order(train_idx: np.ndarray, labels: np.ndarray, factors: dict[str, int], length: int,
                rng: np.random.Generator) -> np.ndarray:
    """`length` training indices in random order; a slice positive for an oversampled label appears as often as
    its largest factor says, relative to the others."""
    repeats = np.ones(len(train_idx), dtype=np.int64)
    for label, k in factors.items():
        positive = labels[train_idx, LABELS.index(label)] >= 0.5
        repeats[positive] = np.maximum(repeats[positive], k)
    return np.resize(rng.permutation(np.repeat(train_idx, repeats)), length)


def split_by_study(studies: list[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(train indices, validation indices, validation study ids): a seeded draw of studies."""
    ids = sorted(set(studies))
    n_val = int(round(fraction * len(ids)))
    if fraction > 0 and len(ids) >= 2:
        n_val = min(max(n_val, 1), len(ids) - 1)
    else:
        n_val = 0
    perm = np.random.default_rng(seed).permutation(len(ids))
    val_ids = sorted(ids[i] for i in perm[:n_val])
    val_set = set(val_ids)
    is_val = np.array([s in val_set for s in studies], dtype=bool)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val), val_ids


_worker_settings: preprocess.Settings | None = None
_worker_memmaps: dict[str, np.ndarray] = {}


def _init_worker(settings_dict: dict) -> None:
    global _worker_settings
    import cv2

    cv2.setNumThreads(1)
    s = settings_dict
    _worker_settings = preprocess.Settings([(w["center"], w["width"]) for w in s["windows"]], s["size"], s["order"],
                                           s["resize"], s["rsna_correction"], s["air_hu"])


def _load_one(path: str) -> np.ndarray:
    return preprocess.load_model_input(path, _worker_settings)


def _cache_one(job: tuple[str, int, str]) -> int:
    cache_path, index, path = job
    array = _worker_memmaps.get(cache_path)
    if array is None:
        array = _worker_memmaps[cache_path] = np.load(cache_path, mmap_mode="r+")
    array[index] = preprocess.load_model_input(path, _worker_settings).astype(np.float16)
    return index


class Inputs:
    """Model inputs by slice index: from the float16 cache, or decoded by the pool."""

    def __init__(self, files: list[Path], settings: preprocess.Settings, pool, cache: np.ndarray | None = None):
        self.files = [str(f) for f in files]
        self.settings = settings
        self.pool = pool
        self.cache = cache

    def get(self, indices: np.ndarray, *, fresh: bool = False) -> np.ndarray:
        """float32 [len(indices), S, S, 3]; ``fresh`` decodes even when cached (float32 exact)."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.cache is not None and not fresh:
            order = np.argsort(indices)
            out = np.empty((len(indices), *self.cache.shape[1:]), dtype=np.float32)
            out[order] = self.cache[indices[order]]
            return out
        paths = [self.files[i] for i in indices]
        if self.pool is None:
            arrays = [preprocess.load_model_input(p, self.settings) for p in paths]
        else:
            arrays = self.pool.map(_load_one, paths, chunksize=max(1, len(paths) // (4 * _pool_size(self.pool))))
        return np.stack(arrays).astype(np.float32, copy=False)


def _pool_size(pool) -> int:
    return getattr(pool, "_processes", 1) or 1


def build_cache(directory: Path, files: list[Path], keys: list[str], settings: preprocess.Settings, pool) -> np.ndarray:
    """The float16 memmap [N, S, S, 3] of every slice's input, filled where missing."""
    digest = hashlib.sha256(json.dumps({"settings": settings.as_dict(), "keys": keys}).encode()).hexdigest()[:16]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"inputs-{digest}.npy"
    filled_path = directory / f"inputs-{digest}.filled.npy"
    shape = (len(files), settings.size, settings.size, len(settings.windows))
    if not path.exists():
        np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=shape).flush()
        np.save(filled_path, np.zeros(len(files), dtype=bool))
        (directory / f"inputs-{digest}.json").write_text(json.dumps(
            {"settings": settings.as_dict(), "slices": len(files), "dtype": "float16"}, indent=2) + "\n")
    filled = np.load(filled_path)
    todo = np.flatnonzero(~filled)
    if len(todo):
        started = time.monotonic()
        print(f"cache: preprocessing {len(todo)} of {len(files)} slices into {path}", file=sys.stderr, flush=True)
        jobs = [(str(path), int(i), str(files[i])) for i in todo]
        if pool is None:
            _init_worker(settings.as_dict())
            done_iter = map(_cache_one, jobs)
        else:
            done_iter = pool.imap_unordered(_cache_one, jobs, chunksize=16)
        for n, index in enumerate(done_iter, start=1):
            filled[index] = True
            if n % 2000 == 0 or n == len(todo):
                np.save(filled_path, filled)  # rows are written through the shared file mapping
                rate = n / max(time.monotonic() - started, 1e-9)
                print(f"cache: {n}/{len(todo)} ({rate:.0f} slices/s)", file=sys.stderr, flush=True)
        _worker_memmaps.clear()
    return np.load(path, mmap_mode="r")


# --------------------------------------------------------------------------
# Keras (imported late: the worker processes are forked before JAX starts)


def import_keras(args):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    if args.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    elif args.device == "gpu":
        os.environ["JAX_PLATFORMS"] = "cuda"
    else:
        os.environ.setdefault("JAX_PLATFORMS", "")  # auto; keras_reference would default to cpu
    import keras
    import keras_reference  # noqa: F401  (fast_init, and the persistent JAX compilation cache)

    if keras.backend.backend() != "jax":
        print(f"train: warning: Keras backend is {keras.backend.backend()}, not jax", file=sys.stderr)
    return keras


def build_model(keras, arch: str, size: int, *, mixed: bool):
    """keras.applications body + GAP + Dense(6, sigmoid) (float32 head under mixed precision)."""
    import keras_reference
    from keras import layers

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if mixed else "float32")
    try:
        with keras_reference.fast_init():  # kernels are set below; skips one JAX compile per shape
            shape = (size, size, 3)
            if arch == "inception_v3":
                base = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=shape)
            else:
                base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=shape)
            x = layers.GlobalAveragePooling2D()(base.output)
            out = layers.Dense(len(LABELS), activation="sigmoid", dtype="float32")(x)
            model = keras.Model(base.input, out, name=f"{arch}_ich")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model


def initialise(model, keras, seed: int, prevalence: np.ndarray) -> None:
    """Keras's default initialisation done in numpy: Glorot uniform for every Conv2D and
    Dense kernel (BatchNorm and biases keep their constant initialisers); the head's
    bias = logit(prevalence), so the first steps do not spend themselves learning it."""
    rng = np.random.default_rng([seed, 17])
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            init = type(layer.kernel_initializer).__name__
            if init != "GlorotUniform":
                raise RuntimeError(f"{layer.name}: kernel initializer {init}, expected GlorotUniform")
            kernel = np.asarray(layer.kernel.value)
            receptive = int(np.prod(kernel.shape[:-2])) if kernel.ndim > 2 else 1
            fan_in, fan_out = kernel.shape[-2] * receptive, kernel.shape[-1] * receptive
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            layer.kernel.assign(rng.uniform(-limit, limit, kernel.shape).astype(np.float32))
    head = model.layers[-1]
    p = np.clip(prevalence.astype(np.float64), 1e-3, 1 - 1e-3)
    head.bias.assign(np.log(p / (1 - p)).astype(np.float32))


def weighted_bce(keras):
    """Per-sample loss: sum_j w_j * bce_j / sum_j w_j, w = (2, 1, 1, 1, 1, 1)."""
    ops = keras.ops
    weights = evaluate.LABEL_WEIGHTS.astype(np.float32)
    total = float(weights.sum())
    eps = 1e-7

    def loss(y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        p = ops.clip(ops.cast(y_pred, "float32"), eps, 1 - eps)
        bce = -(y_true * ops.log(p) + (1 - y_true) * ops.log(1 - p))
        return ops.sum(bce * ops.convert_to_tensor(weights), axis=-1) / total

    loss.__name__ = "weighted_bce"
    return loss


def make_optimizer(keras, args, total_steps: int):
    lr = args.lr
    if args.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=max(total_steps, 1))
    return keras.optimizers.Adam(learning_rate=lr)


def make_dataset(keras, inputs: Inputs, labels: np.ndarray, order: np.ndarray, batch: int, *, augment: bool,
                 shift: int, seed: int, epoch: int, workers: int):
    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max(8, 2 * workers))

        def __len__(self):
            return len(order) // batch

        def __getitem__(self, i):
            idx = order[i * batch:(i + 1) * batch]
            x = inputs.get(idx)
            if augment:
                x = augment_batch(x, np.random.default_rng([seed, epoch, i, 3]), shift)
            return x, labels[idx]

    return Batches()


def augment_batch(x: np.ndarray, rng: np.random.Generator, shift: int) -> np.ndarray:
    """Left-right flips (half the images) and integer shifts in [-shift, shift], filled with 0 (air)."""
    out = np.zeros_like(x)
    n, h, w = x.shape[:3]
    flips = rng.random(n) < 0.5
    moves = rng.integers(-shift, shift + 1, size=(n, 2)) if shift > 0 else np.zeros((n, 2), dtype=np.int64)
    for k in range(n):
        image = x[k, :, ::-1] if flips[k] else x[k]
        dy, dx = int(moves[k, 0]), int(moves[k, 1])
        out[k, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def precise_bn(keras, model, inputs: Inputs, indices: np.ndarray, batch: int, batches: int) -> int:
    """Replace every BatchNorm's moving mean and variance by their average over ``batches``
    batches of ``indices`` run through the model in training mode with the final weights
    ("precise BN", Wu & Johnson 2021). Keras's moving averages (momentum 0.99) trail
    weights that are still changing, which matters most in short runs. Returns the
    number of batches used."""
    import jax

    if batches <= 0 or len(indices) == 0:
        return 0
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    variables = model.non_trainable_variables
    if not all("moving_" in v.path for v in variables):
        raise RuntimeError("non-trainable variables other than BatchNorm statistics: "
                           + ", ".join(v.path for v in variables if "moving_" not in v.path))
    order = np.resize(np.random.default_rng(17).permutation(indices), batches * batch)
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0  # the training-mode call leaves each layer's batch statistics in its variables
    try:
        @jax.jit
        def batch_statistics(trainable, non_trainable, x):
            _, updated = model.stateless_call(trainable, non_trainable, x, training=True)
            return updated

        trainable = [v.value for v in model.trainable_variables]
        current = [v.value for v in variables]
        sums = [np.zeros(v.shape, dtype=np.float64) for v in variables]
        for k in range(batches):
            x = inputs.get(order[k * batch:(k + 1) * batch])
            for total, value in zip(sums, batch_statistics(trainable, current, x)):
                total += np.asarray(value, dtype=np.float64)
        for variable, total in zip(variables, sums):
            variable.assign((total / batches).astype(np.float32))
    finally:
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum
    return batches


def predict(model, inputs: Inputs, indices: np.ndarray, batch: int, *, fresh: bool = False,
            limit_batches: int | None = None, chunk_batches: int = 32) -> np.ndarray:
    """Probabilities [len(indices), 6]; every forward pass has the full batch (padded), so
    one compiled program serves all."""
    indices = np.asarray(indices, dtype=np.int64)
    if limit_batches is not None:
        indices = indices[: limit_batches * batch]
    out = np.zeros((len(indices), len(LABELS)), dtype=np.float32)
    step = batch * chunk_batches
    for start in range(0, len(indices), step):
        part = indices[start:start + step]
        x = inputs.get(part, fresh=fresh)
        padded = -(-len(part) // batch) * batch
        if padded != len(part):
            x = np.concatenate([x, np.zeros((padded - len(part), *x.shape[1:]), dtype=x.dtype)])
        out[start:start + len(part)] = model.predict(x, batch_size=batch, verbose=0)[: len(part)]
    return out


# --------------------------------------------------------------------------
# Checkpoints


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def weights_only(model):
    """An uncompiled twin sharing the model's layers: its .weights.h5 holds the layers'
    weights alone (a compiled model's also holds Adam's moments, three times the size)."""
    import keras

    return keras.Model(model.inputs, model.outputs, name=model.name)


def save_checkpoint(run: Path, epoch: int, model, state: dict, keep: int) -> None:
    folder = run / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"epoch_{epoch:03d}"
    weights_only(model).save_weights(folder / f"{stem}.weights.h5")
    variables = model.optimizer.variables
    np.savez(folder / f"{stem}.optimizer.npz", names=np.array([v.path for v in variables]),
             **{f"v{i}": np.asarray(v.value) for i, v in enumerate(variables)})
    state = dict(state, epoch=epoch, checkpoint=f"{CHECKPOINTS}/{stem}")
    atomic_write(run / STATE_FILE, json.dumps(state, indent=2) + "\n")
    kept = sorted(folder.glob("epoch_*.weights.h5"))
    for old in kept[: max(0, len(kept) - keep)]:
        old.unlink()
        old.with_name(old.name.replace(".weights.h5", ".optimizer.npz")).unlink(missing_ok=True)


def load_checkpoint(run: Path, model, state: dict) -> None:
    stem = run / state["checkpoint"]
    weights_only(model).load_weights(f"{stem}.weights.h5")
    saved = np.load(f"{stem}.optimizer.npz")
    model.optimizer.build(model.trainable_variables)
    variables = model.optimizer.variables
    names = list(saved["names"])
    if len(names) != len(variables):
        raise SystemExit(f"train: error: {stem}.optimizer.npz has {len(names)} optimizer variables, the model "
                         f"{len(variables)}: not this configuration")
    for i, variable in enumerate(variables):
        value = saved[f"v{i}"]
        if tuple(value.shape) != tuple(variable.shape):
            raise SystemExit(f"train: error: optimizer variable {names[i]} has shape {value.shape}, "
                             f"expected {tuple(variable.shape)}")
        variable.assign(value)


def export_float16(source: Path, out_dir: Path, part_bytes: int) -> list[Path]:
    """A float16 copy of a Keras .weights.h5 (same groups, attributes and names; only
    floating datasets narrowed), split into files of at most ``part_bytes``
    (``final.f16.weights.h5.part00``, ...; ``cat`` them back together). convert_keras.py
    reads the reassembled file as it reads the original (use ``--dtype f16``: the
    weights are already rounded)."""
    import h5py

    out_dir.mkdir(parents=True, exist_ok=True)
    whole = out_dir / "final.f16.weights.h5"
    with h5py.File(source, "r") as src, h5py.File(whole, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value

        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                target = dst.require_group(name)
            else:
                data = obj[()]
                if np.issubdtype(np.asarray(data).dtype, np.floating):
                    narrowed = np.asarray(data).astype(np.float16)
                    if not np.all(np.isfinite(narrowed)):
                        raise ValueError(f"{name} overflows float16")
                    data = narrowed
                target = dst.create_dataset(name, data=data)
            for key, value in obj.attrs.items():
                target.attrs[key] = value

        src.visititems(copy)
    if whole.stat().st_size <= part_bytes:
        return [whole]
    parts = []
    with open(whole, "rb") as f:
        for n, chunk in enumerate(iter(lambda: f.read(part_bytes), b"")):
            part = out_dir / f"{whole.name}.part{n:02d}"
            part.write_bytes(chunk)
            parts.append(part)
    whole.unlink()
    return parts


# --------------------------------------------------------------------------
# Thresholds and the convert command


def floor_significant(value: float, digits: int) -> float:
    """``value`` rounded down to ``digits`` significant digits (so that a threshold written
    with ``%.6g`` never lies above the score it was taken from)."""
    if value <= 0:
        return 0.0
    quantum = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    return math.floor(value / quantum) * quantum


def choose_thresholds(studies: list[str], y: np.ndarray, p: np.ndarray, target: float) -> dict:
    """Study-level rule (module docstring): per label the highest threshold with sensitivity >= target."""
    ids, ys, ps = evaluate.study_level(studies, y, p)
    chosen, per_label = [], {}
    for j, name in enumerate(LABELS):
        t = evaluate.threshold_for_sensitivity(ys[:, j], ps[:, j], target)
        note = None
        if t is None:
            t, note = 0.5, "no positive validation study: default 0.5"
        t = float(f"{min(max(floor_significant(t, 6), 1e-12), 0.999999):.6g}")
        study_c = evaluate.confusion(ys[:, j], ps[:, j], t)
        slice_c = evaluate.confusion(y[:, j], p[:, j], t)
        chosen.append(t)
        per_label[name] = {
            "threshold": t, "positive_studies": int(ys[:, j].sum()), "studies": len(ids),
            "study_sensitivity": study_c.sensitivity, "study_specificity": study_c.specificity,
            "slice_sensitivity": slice_c.sensitivity, "slice_specificity": slice_c.specificity,
            **({"note": note} if note else {}),
        }
    return {
        "labels": list(LABELS),
        "thresholds": chosen,
        "thresholds_argument": ",".join(f"{t:.6g}" for t in chosen),
        "rule": f"per label, the highest threshold at which at least {target:g} of the validation studies "
                f"positive for the label have a study probability (maximum over slices) >= threshold; "
                f"0.5 where the split has no positive study; rounded down to 6 significant digits",
        "level": "study",
        "target_sensitivity": target,
        "per_label": per_label,
    }


def phantom_info(path: Path | None) -> dict | None:
    """PatientID PHANTOM-<seed>-<index> marks Tools/phantoms.py output."""
    if path is None:
        return None
    try:
        ds = preprocess.read_dataset(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - a hint only
        return None
    pid = str(ds.get("PatientID", ""))
    if pid.startswith("PHANTOM-"):
        parts = pid.split("-")
        return {"seed": parts[1] if len(parts) > 2 else "?"}
    return None


def convert_command(args, run: Path, settings: preprocess.Settings, thresholds: list[float], trained_on: str,
                    synthetic: bool) -> str:
    name = args.name or f"ich-{args.arch.replace('_', '')}-{settings.size}"
    parts = [".venv/bin/python", "Tools/convert_keras.py", "--arch", args.arch,
             "--weights", str(run / "final.weights.h5"), "--input-size", str(settings.size),
             "--out", f"Models/{name}", "--name", name, "--golden", "4",
             "--thresholds", ",".join(f"{t:.6g}" for t in thresholds),
             "--trained-on", trained_on]
    if synthetic:
        parts.append("--synthetic-data")
    return " ".join(shlex.quote(p) for p in parts)


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = resolve_settings(args)
    if settings.size < MIN_SIZE[args.arch]:
        raise SystemExit(f"train: error: {args.arch} needs an input of at least {MIN_SIZE[args.arch]} pixels")
    run: Path = args.out
    run.mkdir(parents=True, exist_ok=True)
    state_path = run / STATE_FILE
    previous = json.loads(state_path.read_text()) if args.resume and state_path.exists() else None
    if args.resume and previous is None:
        print(f"train: no {state_path}: starting from scratch", file=sys.stderr)
    elif not args.resume and state_path.exists():
        raise SystemExit(f"train: error: {run} already holds a run ({STATE_FILE}); pass --resume or another --out")

    # Data, split.
    dataset = evaluate.load_labelled_set(args.data, labels_csv=args.labels, studies_csv=args.studies,
                                         workers=args.workers, study_cache=run / "studies.csv")
    for note in dataset.notes:
        print(f"train: note: {note}", file=sys.stderr)
    train_idx, val_idx, val_studies = split_by_study(dataset.studies, args.val_fraction, args.seed)
    if len(train_idx) == 0:
        raise SystemExit("train: error: no training slices")
    config = {
        "arch": args.arch, "settings": settings.as_dict(), "data": str(args.data.resolve()),
        "slices": len(dataset), "val_fraction": args.val_fraction, "seed": args.seed,
        "val_studies_sha256": hashlib.sha256("\n".join(val_studies).encode()).hexdigest(),
    }
    if previous is not None:
        different = {k: (previous["config"].get(k), v) for k, v in config.items() if previous["config"].get(k) != v}
        if different:
            raise SystemExit(f"train: error: --resume with a different configuration: {different}")
    shift = args.shift if args.shift is not None else max(settings.size // 32, 0)
    y = dataset.labels
    prevalence = y[train_idx].mean(axis=0)
    print(f"data: {len(dataset)} slices in {len(set(dataset.studies))} studies; training {len(train_idx)} slices, "
          f"validation {len(val_idx)} slices in {len(val_studies)} studies", file=sys.stderr)
    print("training prevalence: " + ", ".join(f"{n} {v:.2%}" for n, v in zip(LABELS, prevalence)), file=sys.stderr)
    print(f"input: {settings}", file=sys.stderr)

    # Worker processes, forked before JAX exists in this process.
    pool = None
    if args.workers > 1:
        pool = multiprocessing.get_context("fork").Pool(args.workers, _init_worker, (settings.as_dict(),))
    try:
        cache = None
        if args.cache is not None:
            cache = build_cache(Path(args.cache) if args.cache else run / "cache", dataset.files, dataset.keys,
                                settings, pool)
        inputs = Inputs(dataset.files, settings, pool, cache)
        return train(args, run, settings, dataset, train_idx, val_idx, config, previous, inputs, shift, prevalence)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def train(args, run, settings, dataset, train_idx, val_idx, config, previous, inputs, shift, prevalence) -> int:
    keras = import_keras(args)
    import jax

    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device(s)); "
          f"keras {keras.__version__}, policy {'mixed_bfloat16' if args.mixed_bfloat16 else 'float32'}",
          file=sys.stderr, flush=True)
    batch = args.batch
    steps = max(1, len(train_idx) // batch)
    if args.limit_steps:
        steps = min(steps, args.limit_steps)
    model = build_model(keras, args.arch, settings.size, mixed=args.mixed_bfloat16)
    initialise(model, keras, args.seed, prevalence)
    model.compile(optimizer=make_optimizer(keras, args, steps * args.epochs), loss=weighted_bce(keras))
    state = {"config": config, "history": [], "args": {k: str(v) for k, v in vars(args).items()}}
    start_epoch = 0
    if previous is not None:
        load_checkpoint(run, model, previous)
        state["history"] = previous.get("history", [])
        start_epoch = int(previous["epoch"])
        print(f"resumed from {previous['checkpoint']} (epoch {start_epoch}, optimizer step "
              f"{int(np.asarray(model.optimizer.iterations.value))})", file=sys.stderr)
    verbose = args.verbose if args.verbose is not None else (1 if sys.stderr.isatty() else 2)
    y = dataset.labels
    threads = max(4, min(8, args.workers // 2)) if inputs.cache is not None else 2  # batch loader threads
    for epoch in range(start_epoch, args.epochs):
        rng = np.random.default_rng([args.seed, epoch])
        order = epoch_order(train_idx, y, args.oversample, steps * batch, rng)
        data = make_dataset(keras, inputs, y, order, batch, augment=not args.no_augment, shift=shift,
                            seed=args.seed, epoch=epoch, workers=threads)
        started = time.monotonic()
        history = model.fit(data, epochs=epoch + 1, initial_epoch=epoch, shuffle=False, verbose=verbose)
        seconds = time.monotonic() - started
        entry = {"epoch": epoch + 1, "loss": float(history.history["loss"][-1]), "seconds": round(seconds, 2),
                 "images_per_second": round(steps * batch / seconds, 1)}
        if len(val_idx):
            p = predict(model, inputs, val_idx, batch, limit_batches=args.limit_steps)
            yv = y[val_idx[: len(p)]]
            entry["val_loss"] = evaluate.weighted_log_loss(yv, p)
            aucs = [a for a in (evaluate.roc_auc(yv[:, j], p[:, j]) for j in range(len(LABELS))) if a is not None]
            entry["val_mean_auc"] = float(np.mean(aucs)) if aucs else None
        state["history"].append(entry)
        print(f"epoch {epoch + 1}/{args.epochs}: " + ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items() if k != "epoch"),
            file=sys.stderr, flush=True)
        save_checkpoint(run, epoch + 1, model, state, args.keep_checkpoints)
        over = args.time_budget is not None and time.monotonic() - STARTED + seconds > args.time_budget
        if over and epoch + 1 < args.epochs:
            print(f"time budget: {args.time_budget:g} s would be exceeded by another epoch of {seconds:.0f} s; "
                  f"stopping after epoch {epoch + 1} of {args.epochs}", file=sys.stderr, flush=True)
            break
    write_history(run / "history.csv", state["history"])

    # Final weights (float32, precise BatchNorm statistics) and float32 validation
    # predictions on freshly preprocessed inputs.
    predictor = model
    if args.mixed_bfloat16:
        predictor = build_model(keras, args.arch, settings.size, mixed=False)
        predictor.set_weights(model.get_weights())
    bn_batches = args.precise_bn
    if bn_batches is None:
        bn_batches = min(50, args.limit_steps) if args.limit_steps else 50
    started = time.monotonic()
    used = precise_bn(keras, predictor, inputs, train_idx, batch, bn_batches)
    if used:
        print(f"precise BN: statistics from {used} batches of {batch} ({time.monotonic() - started:.1f} s)",
              file=sys.stderr)
    weights_only(predictor).save_weights(run / "final.weights.h5")
    outputs = {"final_weights": str(run / "final.weights.h5")}
    if args.export_f16:
        parts = export_float16(run / "final.weights.h5", args.export_f16, int(args.part_mib * 2**20))
        outputs["float16_parts"] = [str(part) for part in parts]
        print(f"float16 weights: {len(parts)} file(s) in {args.export_f16}"
              + (f"; reassemble with: cat {parts[0].name[:-2]}?? > final.f16.weights.h5" if len(parts) > 1 else ""),
              file=sys.stderr)
    if len(val_idx) == 0:
        print("train: no validation split: no thresholds chosen", file=sys.stderr)
        return 0
    p = predict(predictor, inputs, val_idx, batch, fresh=True)
    val = dataset.subset(val_idx)
    evaluate.write_predictions(run / "val_predictions.csv", val.keys, val.studies, p, val.files)
    choice = choose_thresholds(val.studies, val.labels, p, args.target_sensitivity)
    atomic_write(run / "thresholds.json", json.dumps(choice, indent=2) + "\n")
    doc = evaluate.report(val.keys, val.studies, val.labels, p, choice["thresholds"],
                          {"mode": "train.py validation split", "run": str(run)})
    atomic_write(run / "val_report.json", json.dumps(doc, indent=2) + "\n")
    (run / "val_report.md").write_text(evaluate.markdown(doc) + "\n")
    print(evaluate.markdown(doc), file=sys.stderr)

    phantom = phantom_info(dataset.files[0])
    n_train_studies = len({dataset.studies[i] for i in train_idx})
    what = (f"synthetic head-CT phantoms (Tools/phantoms.py, seed {phantom['seed']})" if phantom
            else f"{args.data.resolve().name}")
    trained_on = (f"{what}: {len(train_idx)} slices of {n_train_studies} studies, {len(val_idx)} slices of "
                  f"{len(set(val.studies))} studies held out for validation; Tools/train.py {args.arch} "
                  f"{settings.size}x{settings.size}, {len(state['history'])} epoch(s) of {steps} steps, batch {batch}, "
                  f"lr {args.lr:g}" + "".join(f", {label} slices shown {k}x" for label, k in args.oversample.items()))
    command = convert_command(args, run, settings, choice["thresholds"], trained_on, phantom is not None)
    text = command + "\n"
    if settings.manifest_preprocessing() != preprocess.Settings(size=settings.size).manifest_preprocessing():
        text += ("# convert_keras.py writes the default preprocessing: then set model.json's \"preprocessing\" to\n# "
                 + json.dumps(settings.manifest_preprocessing()) + "\n")
    (run / "convert_command.txt").write_text(text)
    outputs.update(val_predictions=str(run / "val_predictions.csv"), thresholds=str(run / "thresholds.json"))
    print(json.dumps({"outputs": outputs, "thresholds": choice["thresholds"]}))
    print("\nmake a bundle with:\n" + text, file=sys.stderr)
    return 0


def write_history(path: Path, history: list[dict]) -> None:
    columns = ["epoch", "loss", "val_loss", "val_mean_auc", "seconds", "images_per_second"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for entry in history:
            w.writerow([entry.get(c, "") for c in columns])


if __name__ == "__main__":
    sys.exit(main())
