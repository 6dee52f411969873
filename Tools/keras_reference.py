#!/usr/bin/env python3
"""Reference Keras models with seeded random weights, for the converter and parity tests.

    python Tools/keras_reference.py --arch resnet50|inception_v3 [--legacy] --size 256 --seed 0 \\
        --out FILE(.weights.h5|.keras|.h5) [--h5-layout weights|model] \\
        [--inputs N --inputs-out X.npy --outputs-out Y.npy --logits-out L.npy]

The model is ``keras.applications.ResNet50`` or ``InceptionV3`` (``include_top=False,
weights=None``) followed by GlobalAveragePooling2D and Dense(6, sigmoid), the
head of the RSNA 2019 Kaggle baselines. ``--legacy`` builds the ResNet50 of
keras-applications 1.0.8 ``resnet50.py`` instead (layer names ``conv1``,
``bn_conv1``, ``res2a_branch2a``...; BatchNormalization epsilon 1e-3), written
here with Keras 3 layers.

Weights are seeded random with non-trivial BatchNorm statistics, scaled so that
activations neither explode nor vanish and the logits are O(1). They are drawn
in bundle-tensor order, so a seed gives the same tensors for the legacy and
the modern ResNet50 (the two then differ only in their BatchNorm epsilon).

Output formats, by the name of ``--out``:

* ``.weights.h5``: Keras 3 ``model.save_weights``;
* ``.keras``: Keras 3 ``model.save``;
* ``.h5``: the Keras 2 / tf.keras HDF5 layout, written here with h5py (Keras 3
  cannot write it): root attribute ``layer_names``, one group per layer with
  ``weight_names`` such as ``conv2d_1/kernel:0``. Automatic layer names are
  numbered from 1 as Keras 2 did. ``--h5-layout model`` writes what Keras 2's
  ``model.save`` wrote: the same under ``model_weights/`` plus ``model_config``.

``--inputs N`` also writes N seeded inputs [N, H, W, 3] in [0, 1]
(``bundle.seeded_inputs``) and Keras's sigmoid outputs and logits for them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import architectures  # noqa: E402
import bundle  # noqa: E402

import keras  # noqa: E402
from keras import layers  # noqa: E402


def _enable_compilation_cache() -> None:
    """JAX's persistent compilation cache, shared by every process that builds these
    models (tests, converter --golden, benchmark): compiling ResNet50 or InceptionV3
    takes 3-10 s per input shape, a cache hit about 1 s. Set JAX_COMPILATION_CACHE_DIR
    to choose the folder."""
    try:
        import jax

        if keras.backend.backend() == "jax" and not jax.config.jax_compilation_cache_dir:
            import tempfile

            uid = os.getuid() if hasattr(os, "getuid") else 0
            jax.config.update("jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), f"ich-jax-cache-{uid}"))
    except Exception:  # an optional speed-up only
        pass


_enable_compilation_cache()

INCEPTION_MIN_SIZE = 75
RESNET_MIN_SIZE = 32


# --------------------------------------------------------------------------
# Building


@contextlib.contextmanager
def fast_init():
    """Skip Keras's random initializers while building (every one compiles a JAX
    program per shape: ~15 s for ResNet50, ~40 s for InceptionV3); the weights are
    all overwritten afterwards. Falls back to the normal (slow) path if Keras's
    internals have moved."""
    try:
        from keras.src import backend as kbackend

        rnd = kbackend.random
        saved = {name: getattr(rnd, name) for name in ("uniform", "normal", "truncated_normal")}
    except (ImportError, AttributeError):
        yield
        return

    def zeros(shape, *args, dtype=None, **kwargs):
        return np.zeros(tuple(shape), dtype=dtype or "float32")

    for name in saved:
        setattr(rnd, name, zeros)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(rnd, name, fn)


def _legacy_resnet50_base(img_input):
    """keras-applications 1.0.8 resnet50.py (include_top=False, pooling=None), Keras 3 layers."""

    def block(x, stage, letter, filters, stride, shortcut):
        f1, f2, f3 = filters
        conv_base, bn_base = f"res{stage}{letter}_branch", f"bn{stage}{letter}_branch"
        y = layers.Conv2D(f1, (1, 1), strides=stride, name=conv_base + "2a")(x)
        y = layers.BatchNormalization(axis=3, name=bn_base + "2a")(y)
        y = layers.Activation("relu")(y)
        y = layers.Conv2D(f2, 3, padding="same", name=conv_base + "2b")(y)
        y = layers.BatchNormalization(axis=3, name=bn_base + "2b")(y)
        y = layers.Activation("relu")(y)
        y = layers.Conv2D(f3, (1, 1), name=conv_base + "2c")(y)
        y = layers.BatchNormalization(axis=3, name=bn_base + "2c")(y)
        if shortcut:
            s = layers.Conv2D(f3, (1, 1), strides=stride, name=conv_base + "1")(x)
            s = layers.BatchNormalization(axis=3, name=bn_base + "1")(s)
        else:
            s = x
        y = layers.add([y, s])
        return layers.Activation("relu")(y)

    x = layers.ZeroPadding2D(padding=(3, 3), name="conv1_pad")(img_input)
    x = layers.Conv2D(64, (7, 7), strides=(2, 2), padding="valid", name="conv1")(x)
    x = layers.BatchNormalization(axis=3, name="bn_conv1")(x)
    x = layers.Activation("relu")(x)
    x = layers.ZeroPadding2D(padding=(1, 1), name="pool1_pad")(x)
    x = layers.MaxPooling2D((3, 3), strides=(2, 2))(x)
    for stage, filters, blocks in architectures.RESNET50_STAGES:
        for b in range(1, blocks + 1):
            stride = (2, 2) if (b == 1 and stage > 2) else (1, 1)
            x = block(x, stage, architectures.legacy_block_letter(b), (filters, filters, 4 * filters), stride, b == 1)
    return x


def build_architecture(arch: str, input_size: int | tuple[int, int] | None = 256, legacy: bool = False) -> keras.Model:
    """The model with Keras's own (or, under fast_init, zero) weights. ``input_size``
    None gives a model that accepts any size."""
    if input_size is None:
        shape = (None, None, 3)
    else:
        h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
        minimum = INCEPTION_MIN_SIZE if arch == "inception_v3" else RESNET_MIN_SIZE
        if min(h, w) < minimum:
            raise ValueError(f"{arch} needs an input of at least {minimum}x{minimum}")
        shape = (h, w, 3)
    with fast_init():
        if arch == "resnet50" and legacy:
            inp = keras.Input(shape)
            x = _legacy_resnet50_base(inp)
        elif arch == "resnet50":
            base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=shape)
            inp, x = base.input, base.output
        elif arch == "inception_v3":
            if legacy:
                raise ValueError("--legacy applies to resnet50 only")
            base = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=shape)
            inp, x = base.input, base.output
        else:
            raise ValueError(f"unknown architecture {arch!r}")
        x = layers.GlobalAveragePooling2D()(x)
        out = layers.Dense(architectures.NUM_CLASSES, activation="sigmoid")(x)
        name = {"resnet50": "resnet50_legacy" if legacy else "resnet50", "inception_v3": "inception_v3"}[arch]
        model = keras.Model(inp, out, name=f"{name}_ich")
    model._ich_arch = (arch, legacy)  # used by layer_map()
    return model


# --------------------------------------------------------------------------
# Bundle tensor <-> Keras layer


def _auto_index(name: str, prefix: str) -> int | None:
    if name == prefix:
        return 0
    m = re.fullmatch(re.escape(prefix) + r"_(\d+)", name)
    return int(m.group(1)) if m else None


def creation_order(model: keras.Model, cls: type, prefix: str) -> list:
    """Automatically named layers of one class in creation order (Keras numbers
    automatic names with a per-prefix counter; the model may start above 0)."""
    found = []
    for layer in model.layers:
        if type(layer) is cls:
            n = _auto_index(layer.name, prefix)
            if n is None:
                raise ValueError(f"{layer.name}: not an automatic {prefix} name")
            found.append((n, layer))
    found.sort(key=lambda t: t[0])
    return [layer for _, layer in found]


def head_layer(model: keras.Model):
    dense = [l for l in model.layers if isinstance(l, layers.Dense) and l.units == architectures.NUM_CLASSES]
    if len(dense) != 1:
        raise ValueError(f"expected one Dense({architectures.NUM_CLASSES}) layer, found {len(dense)}")
    return dense[0]


def layer_map(model: keras.Model, arch: str | None = None, legacy: bool | None = None) -> dict[str, object]:
    """Bundle tensor prefix (``conv1_conv``, ``conv2d_5``, ``head``) -> Keras layer."""
    if arch is None:
        arch, legacy = model._ich_arch
    graph = architectures.build(arch, bool(legacy))
    result: dict[str, object] = {}
    if arch == "inception_v3":
        convs = creation_order(model, layers.Conv2D, "conv2d")
        bns = creation_order(model, layers.BatchNormalization, "batch_normalization")
        for node, layer in zip(graph.conv_nodes(), convs):
            result[node.tensor] = layer
        for node, layer in zip(graph.bn_nodes(), bns):
            result[node.tensor] = layer
    else:
        by_name = {l.name: l for l in model.layers}
        for node in graph.nodes:
            if node.kind in ("Conv2D", "BatchNormalization"):
                result[node.tensor] = by_name[node.keras_name]
    result["head"] = head_layer(model)
    return result


def _variable_names(layer) -> list[str]:
    if isinstance(layer, layers.BatchNormalization):
        return (["gamma"] if layer.scale else []) + (["beta"] if layer.center else []) + ["moving_mean", "moving_variance"]
    return ["kernel", "bias"] if layer.use_bias else ["kernel"]


def bundle_tensors(model: keras.Model) -> dict[str, np.ndarray]:
    """The model's weights under their bundle names."""
    out: dict[str, np.ndarray] = {}
    for prefix, layer in layer_map(model).items():
        for var, value in zip(_variable_names(layer), layer.get_weights()):
            out[f"{prefix}.{var}"] = np.asarray(value)
    return out


def set_bundle_tensors(model: keras.Model, tensors: dict[str, np.ndarray]) -> None:
    """Load bundle-named tensors into the model (every layer must be covered)."""
    for prefix, layer in layer_map(model).items():
        names = _variable_names(layer)
        missing = [f"{prefix}.{v}" for v in names if f"{prefix}.{v}" not in tensors]
        if missing:
            raise KeyError(f"missing tensor(s): {', '.join(missing)}")
        layer.set_weights([np.asarray(tensors[f"{prefix}.{v}"], dtype=np.float32) for v in names])


# --------------------------------------------------------------------------
# Seeded weights


def random_tensors(arch: str, seed: int) -> dict[str, np.ndarray]:
    """Seeded random bundle tensors (canonical names, modern creation order).

    Conv kernels: He-normal times a gain (0.5 on the last conv of a residual
    branch and on shortcut convs, so that 16 residual additions do not blow the
    activations up); BatchNorm: gamma ~ U(0.8, 1.2), beta ~ N(0, 0.1),
    moving_mean ~ N(0, 0.1), moving_variance ~ U(0.5, 1.5); conv biases ~
    N(0, 0.05); head kernel ~ N(0, 1/2048), bias ~ N(0, 0.5): logits within about
    +-6 on bundle.seeded_inputs, differing between images by 0.05-0.4.
    """
    rng = np.random.default_rng(seed)
    shapes = architectures.expected_tensors(architectures.build(arch, False))
    out: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        prefix, var = name.rsplit(".", 1)
        if prefix == "head":
            if var == "kernel":
                value = rng.normal(0, 1 / np.sqrt(shape[0]), shape)
            else:
                value = rng.normal(0, 0.5, shape)
        elif var == "kernel":
            fan_in = shape[0] * shape[1] * shape[2]
            gain = 0.5 if re.search(r"_[03]_conv$", prefix) else 1.0
            value = rng.normal(0, gain * np.sqrt(2.0 / fan_in), shape)
        elif var == "bias":
            value = rng.normal(0, 0.05, shape)
        elif var == "gamma":
            value = rng.uniform(0.8, 1.2, shape)
        elif var == "beta":
            value = rng.normal(0, 0.1, shape)
        elif var == "moving_mean":
            value = rng.normal(0, 0.1, shape)
        elif var == "moving_variance":
            value = rng.uniform(0.5, 1.5, shape)
        else:
            raise AssertionError(name)
        out[name] = value.astype(np.float32)
    return out


def build(arch: str, input_size: int | None = 256, seed: int = 0, legacy_resnet: bool = False) -> keras.Model:
    """The reference model with seeded random weights (see random_tensors)."""
    model = build_architecture(arch, input_size, legacy_resnet)
    set_bundle_tensors(model, random_tensors(arch, seed))
    return model


# --------------------------------------------------------------------------
# Running


def predict(model: keras.Model, inputs: np.ndarray, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(sigmoid probabilities float32 [N, 6] from Keras, logits float64 [N, 6]).

    The logits are the Dense layer's pre-activation, computed in float64 from the
    pooled features that Keras computes (a second model sharing the layers)."""
    dual = getattr(model, "_ich_dual", None)
    if dual is None:
        gap = next(l for l in model.layers if isinstance(l, layers.GlobalAveragePooling2D))
        dual = keras.Model(model.inputs, [model.outputs[0], gap.output])
        model._ich_dual = dual
    probabilities, features = dual.predict(np.asarray(inputs, dtype=np.float32), batch_size=batch_size, verbose=0)
    kernel, bias = head_layer(model).get_weights()
    logits = features.astype(np.float64) @ kernel.astype(np.float64) + bias.astype(np.float64)
    return np.asarray(probabilities, dtype=np.float32), logits


# --------------------------------------------------------------------------
# Saving


def _snake(name: str) -> str:
    """keras.src.utils.naming.to_snake_case: Conv2D -> conv2d, BatchNormalization -> batch_normalization."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def keras2_names(model: keras.Model) -> dict[str, str]:
    """Keras 3 layer name -> the name Keras 2 would have given it: explicit names
    stay, automatic ones (``conv2d``, ``conv2d_5``) are renumbered from 1 in
    creation order (``conv2d_1``, ``conv2d_6``)."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for layer in model.layers:
        prefix = _snake(type(layer).__name__)
        if prefix == "input_layer":
            continue
        n = _auto_index(layer.name, prefix)
        if n is not None:
            groups.setdefault(prefix, []).append((n, layer.name))
    renamed = {layer.name: layer.name for layer in model.layers}
    for prefix, items in groups.items():
        for rank, (_, name) in enumerate(sorted(items)):
            renamed[name] = f"{prefix}_{rank + 1}"
    return renamed


def _keras2_weight_names(layer) -> list[str]:
    if isinstance(layer, (layers.Conv2D, layers.Dense, layers.BatchNormalization)):
        return _variable_names(layer)
    if layer.weights:
        raise ValueError(f"{layer.name}: unexpected weights")
    return []


def save_keras2_h5(model: keras.Model, path: str | os.PathLike, layout: str = "weights") -> None:
    """Write the Keras 2 / tf.keras HDF5 layout (see the module docstring)."""
    import h5py

    names = keras2_names(model)
    with h5py.File(path, "w") as f:
        if layout == "model":
            f.attrs["keras_version"] = b"2.2.4"
            f.attrs["backend"] = b"tensorflow"
            f.attrs["model_config"] = json.dumps(_keras2_model_config(model, names)).encode()
            root = f.create_group("model_weights")
        elif layout == "weights":
            root = f
        else:
            raise ValueError(f"unknown layout {layout!r}")
        root.attrs["layer_names"] = np.array([names[l.name].encode() for l in model.layers], dtype="S")
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            name = names[layer.name]
            group = root.create_group(name)
            variables = _keras2_weight_names(layer)
            weight_names = [f"{name}/{v}:0" for v in variables]
            group.attrs["weight_names"] = np.array([w.encode() for w in weight_names], dtype="S")
            for weight_name, value in zip(weight_names, layer.get_weights()):
                group.create_dataset(weight_name, data=np.asarray(value, dtype=np.float32))


def _keras2_model_config(model: keras.Model, names: dict[str, str]) -> dict:
    entries = []
    for layer in model.layers:
        cls = type(layer).__name__
        config = {"name": names[layer.name], "trainable": True}
        if isinstance(layer, layers.InputLayer):
            config["batch_input_shape"] = list(layer.batch_shape)
            config["dtype"] = "float32"
        elif isinstance(layer, layers.BatchNormalization):
            config.update(axis=-1, epsilon=layer.epsilon, center=layer.center, scale=layer.scale)
        elif isinstance(layer, layers.Conv2D):
            config.update(filters=layer.filters, kernel_size=list(layer.kernel_size), strides=list(layer.strides),
                          padding=layer.padding, use_bias=layer.use_bias)
        elif isinstance(layer, layers.Dense):
            config.update(units=layer.units, activation="sigmoid", use_bias=layer.use_bias)
        entries.append({"name": names[layer.name], "class_name": cls, "config": config, "inbound_nodes": []})
    return {"class_name": "Model", "config": {"name": model.name, "layers": entries}, "keras_version": "2.2.4",
            "backend": "tensorflow"}


def save(model: keras.Model, path: str | os.PathLike, h5_layout: str = "weights") -> None:
    path = str(path)
    if path.endswith(".weights.h5"):
        model.save_weights(path)
    elif path.endswith(".keras"):
        model.save(path)
    elif path.endswith(".h5"):
        save_keras2_h5(model, path, h5_layout)
    else:
        raise ValueError(f"{path}: the name must end in .weights.h5, .keras or .h5")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", required=True, choices=architectures.ARCHITECTURES)
    parser.add_argument("--legacy", action="store_true", help="keras-applications 1.0.8 ResNet50 (names, epsilon 1e-3)")
    parser.add_argument("--size", type=int, default=256, help="input height and width (0: any size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="FILE.weights.h5, FILE.keras or FILE.h5 (Keras 2 layout)")
    parser.add_argument("--h5-layout", choices=("weights", "model"), default="weights",
                        help="for .h5: save_weights layout, or model.save layout (model_weights/ + model_config)")
    parser.add_argument("--inputs", type=int, default=0, help="also write N seeded inputs and Keras's outputs")
    parser.add_argument("--input-seed", type=int, default=1234)
    parser.add_argument("--inputs-out", help="N x H x W x 3 float32 .npy")
    parser.add_argument("--outputs-out", help="N x 6 sigmoid probabilities (float32 .npy)")
    parser.add_argument("--logits-out", help="N x 6 logits (float64 .npy)")
    args = parser.parse_args(argv)
    if args.legacy and args.arch != "resnet50":
        parser.error("--legacy applies to resnet50 only")
    if args.inputs and args.size == 0:
        parser.error("--inputs needs a fixed --size")

    model = build(args.arch, args.size or None, args.seed, args.legacy)
    save(model, args.out, args.h5_layout)
    print(f"wrote {args.out}")
    if args.inputs:
        x = bundle.seeded_inputs(args.inputs, args.size, args.size, args.input_seed)
        probabilities, logits = predict(model, x)
        for path, value in ((args.inputs_out, x), (args.outputs_out, probabilities), (args.logits_out, logits)):
            if path:
                np.save(path, value)
                print(f"wrote {path}")
        print(json.dumps({"probabilities": probabilities.round(4).tolist(), "logits": logits.round(3).tolist()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
