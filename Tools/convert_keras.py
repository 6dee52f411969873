#!/usr/bin/env python3
"""Convert a Keras ResNet50 / InceptionV3 ICH classifier into a model bundle.

    python Tools/convert_keras.py --arch resnet50|inception_v3 --weights FILE --out DIR
        [--name NAME] [--version V] [--golden N] [--dtype f32|f16] [--input-size 256|HxW]
        [--trained-on TEXT] [--synthetic-data | --no-synthetic-data] [--clinical-use] [--notes TEXT]
        [--resnet-variant auto|modern|legacy] [--bn-epsilon EPS] [--thresholds 0.5,...]

FILE may be:

* a Keras 2 / tf.keras HDF5 file (``save_weights`` or ``model.save``: the
  layers under ``model_weights/``), with root attribute ``layer_names``;
* a Keras 3 ``.weights.h5`` (``layers/<class>_<counter>/vars/<i>``);
* a Keras 3 ``.keras`` archive (``config.json`` + ``model.weights.h5``).

The model must be the architecture's ``keras.applications`` body (for ResNet50
also the legacy keras-applications 1.0.8 one, whose layer names ``conv1``,
``res2a_branch2a``... are renamed here) followed by GlobalAveragePooling2D and a
single Dense layer with 6 units (the head); nested sub-models are fine. Files
are read with h5py only; Keras is imported only for ``--golden``, which builds
the architecture in Keras, loads the converted tensors and stores Keras's
outputs for N seeded inputs in ``golden.safetensors``.

The bundle format and the tensor names are described in docs/BUNDLE.md. The
BatchNorm epsilon comes from the file's config when it has one, else from the
variant: 1.001e-5 for the modern ResNet50, 1e-3 for the legacy ResNet50 and
InceptionV3. Exit status: 0 on success, 2 on a usage error, 1 when the file
cannot be converted (the message names the tensor or layer).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import architectures  # noqa: E402
import bundle  # noqa: E402

DEFAULT_INPUT_SIZE = 256
GOLDEN_SEED = 20190  # seed of the golden inputs (bundle.seeded_inputs)
KIND_BY_PREFIX = {"conv2d": "Conv2D", "batch_normalization": "BatchNormalization", "dense": "Dense"}


class ConversionError(Exception):
    pass


@dataclass
class SourceLayer:
    """One weight-bearing layer found in the file."""

    where: str  # location in the file, for messages
    kind: str | None  # Conv2D | BatchNormalization | Dense | None (not one of those)
    name: str | None  # the layer's name, when the file records it
    values: dict[str, np.ndarray] | list[np.ndarray]  # by variable name (Keras 2) or position (Keras 3)
    config: dict = field(default_factory=dict)  # the layer's config, when the file has one

    def describe(self) -> str:
        return f"{self.name or '?'} ({self.where})"


@dataclass
class Source:
    format: str  # "keras2-h5" | "keras3-weights.h5" | "keras"
    layers: list[SourceLayer]  # each class's layers in the file's model.layers order
    input_shape: tuple | None = None  # (H, W) from the config, None entries when free
    keras_version: str | None = None


# --------------------------------------------------------------------------
# Reading the three formats


def _decode(value) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _snake(name: str) -> str:
    """keras.src.utils.naming.to_snake_case: Conv2D -> conv2d, BatchNormalization -> batch_normalization."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _split_key(key: str) -> tuple[str, int]:
    """``conv2d_12`` -> (``conv2d``, 12); ``conv2d`` -> (``conv2d``, 0)."""
    m = re.fullmatch(r"(.+?)_(\d+)", key)
    return (m.group(1), int(m.group(2))) if m else (key, 0)


def read_source(path: Path) -> Source:
    import h5py

    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "config.json" not in names or "model.weights.h5" not in names:
                raise ConversionError(f"{path}: a .keras archive needs config.json and model.weights.h5 (has {names})")
            config = json.loads(archive.read("config.json"))
            metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
            weights = archive.read("model.weights.h5")
        with h5py.File(io.BytesIO(weights), "r") as f:
            source = _read_keras3(f, config)
        source.format = "keras"
        source.keras_version = metadata.get("keras_version")
        return source
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise ConversionError(f"{path}: not an HDF5 file or .keras archive ({error})") from None
    with f:
        if "layer_names" in f.attrs:
            return _read_keras2(f, None)
        if "model_weights" in f and "layer_names" in f["model_weights"].attrs:
            config = json.loads(_decode(f.attrs["model_config"])) if "model_config" in f.attrs else None
            return _read_keras2(f["model_weights"], config)
        if "layers" in f:
            return _read_keras3(f, None)
    raise ConversionError(f"{path}: HDF5 file with neither Keras 2 'layer_names' nor Keras 3 'layers/' weights")


def _read_keras2(root, model_config: dict | None) -> Source:
    configs: dict[str, tuple[str, dict]] = {}
    input_shape = None
    if model_config:
        for layer in _config_layers(model_config):
            configs[layer.get("config", {}).get("name", layer.get("name"))] = (layer["class_name"], layer.get("config", {}))
            if layer["class_name"] == "InputLayer" and input_shape is None:
                shape = layer["config"].get("batch_input_shape") or layer["config"].get("batch_shape")
                if shape and len(shape) == 4:
                    input_shape = (shape[1], shape[2])
    layers: list[SourceLayer] = []
    for group_name in map(_decode, root.attrs["layer_names"]):
        group = root[group_name]
        weight_names = [_decode(w) for w in group.attrs.get("weight_names", [])]
        by_layer: dict[str, dict[str, np.ndarray]] = {}
        for weight_name in weight_names:
            parts = weight_name.split("/")
            layer_name = parts[-2] if len(parts) >= 2 else group_name
            variable = re.sub(r":\d+$", "", parts[-1])
            by_layer.setdefault(layer_name, {})[variable] = np.asarray(group[weight_name])
        for layer_name, values in by_layer.items():
            cls, config = configs.get(layer_name, (None, {}))
            kind = cls if cls in KIND_BY_PREFIX.values() else (None if cls else _kind_from_variables(values))
            layers.append(SourceLayer(f"{group_name}/{layer_name}", kind, layer_name, values, config))
    version = _decode(root.attrs["keras_version"]) if "keras_version" in root.attrs else None
    return Source("keras2-h5", layers, input_shape, version)


def _kind_from_variables(values: dict[str, np.ndarray]) -> str | None:
    if "moving_mean" in values and "moving_variance" in values:
        return "BatchNormalization"
    kernel = values.get("kernel")
    if kernel is not None and kernel.ndim == 4 and set(values) <= {"kernel", "bias"}:
        return "Conv2D"
    if kernel is not None and kernel.ndim == 2 and set(values) <= {"kernel", "bias"}:
        return "Dense"
    return None


def _config_layers(config: dict):
    """Every layer config of a (Keras 2 or 3) model config, depth first, in list order."""
    inner = config.get("config", config)
    for layer in inner.get("layers", []):
        yield layer
        if isinstance(layer.get("config"), dict) and "layers" in layer["config"]:
            yield from _config_layers(layer)


def _read_keras3(f, model_config: dict | None) -> Source:
    """Keras 3 layout. Each container's keys are ``<snake class>_<counter>`` in the
    container's ``model.layers`` order; the ``name`` attribute of ``vars`` (written
    by recent Keras 3) or the .keras config gives the layer's name."""
    layers: list[SourceLayer] = []
    input_shape = None
    if model_config is not None:
        for layer in _config_layers(model_config):
            if layer.get("class_name") == "InputLayer":
                shape = layer["config"].get("batch_shape") or layer["config"].get("batch_input_shape")
                if shape and len(shape) == 4:
                    input_shape = (shape[1], shape[2])
                    break

    def configs_by_key(config: dict | None) -> dict[str, dict]:
        """Container key -> layer config entry, keyed like Keras 3's saving code."""
        if config is None:
            return {}
        used: dict[str, int] = {}
        out = {}
        inner = config.get("config", config)
        entries = inner.get("layers", [])
        if config.get("class_name") == "Sequential" and entries and entries[0].get("class_name") == "InputLayer":
            entries = entries[1:]  # Sequential.layers leaves its InputLayer out
        for entry in entries:
            key = _snake(entry.get("class_name", ""))
            if key in used:
                used[key] += 1
                key = f"{key}_{used[key]}"
            else:
                used[key] = 0
            out[key] = entry
        return out

    def walk(group, where: str, config: dict | None) -> None:
        if "layers" not in group:
            return
        container = group["layers"]
        entries = configs_by_key(config)
        keys = sorted(container.keys(), key=_split_key)
        for key in keys:
            child = container[key]
            entry = entries.get(key)
            if "layers" in child:  # a nested model
                walk(child, f"{where}layers/{key}/", entry)
                continue
            variables = child.get("vars")
            if variables is None or len(variables) == 0:
                continue
            values = [np.asarray(variables[str(i)]) for i in range(len(variables))]
            name = _decode(variables.attrs["name"]) if "name" in variables.attrs else None
            layer_config = {}
            if entry is not None:
                layer_config = entry.get("config", {})
                name = name or layer_config.get("name") or entry.get("name")
            kind = KIND_BY_PREFIX.get(_split_key(key)[0])
            layers.append(SourceLayer(f"{where}layers/{key}", kind, name, values, layer_config))

    walk(f, "", model_config)
    return Source("keras3-weights.h5", layers, input_shape)


# --------------------------------------------------------------------------
# Mapping file layers to bundle tensors

MODERN_RESNET = re.compile(r"^conv1_(conv|bn)$|^conv([2-5])_block(\d+)_([0-3])_(conv|bn)$")
LEGACY_RESNET = re.compile(r"^(conv1|bn_conv1)$|^(res|bn)([2-5])([a-z])_branch(2a|2b|2c|1)$")
AUTO_NAME = {"Conv2D": re.compile(r"^conv2d(?:_(\d+))?$"), "BatchNormalization": re.compile(r"^batch_normalization(?:_(\d+))?$")}


def legacy_to_modern(name: str) -> str | None:
    m = LEGACY_RESNET.match(name)
    if not m:
        return None
    if m.group(1):
        return "conv1_conv" if m.group(1) == "conv1" else "conv1_bn"
    kind, stage, letter, branch = m.group(2), m.group(3), m.group(4), m.group(5)
    i = {"2a": 1, "2b": 2, "2c": 3, "1": 0}[branch]
    block = ord(letter) - ord("a") + 1
    return f"conv{stage}_block{block}_{i}_{'conv' if kind == 'res' else 'bn'}"


@dataclass
class Mapping:
    variant: str  # modern | legacy | keras
    graph: architectures.Graph
    assigned: dict[str, SourceLayer]  # bundle tensor prefix -> file layer
    how: str  # how the layers were matched, for the report


def _by_kind(source: Source, kind: str) -> list[SourceLayer]:
    return [layer for layer in source.layers if layer.kind == kind]


def _variable_values(layer: SourceLayer, node: architectures.Node) -> dict[str, np.ndarray]:
    """The layer's variables by name; Keras 3 positional variables are named from
    the config when present, else from the architecture."""
    if isinstance(layer.values, dict):
        return layer.values
    if node.kind == "BatchNormalization":
        if layer.config:
            names = (["gamma"] if layer.config.get("scale", True) else []) + (
                ["beta"] if layer.config.get("center", True) else []) + ["moving_mean", "moving_variance"]
        elif len(layer.values) == 4:
            names = ["gamma", "beta", "moving_mean", "moving_variance"]
        elif len(layer.values) == 3:
            names = ["beta", "moving_mean", "moving_variance"]  # scale=False, as InceptionV3
        else:
            names = architectures.layer_variables(node)
    elif "use_bias" in layer.config:
        names = ["kernel", "bias"] if layer.config["use_bias"] else ["kernel"]
    else:
        names = ["kernel", "bias"][: len(layer.values)]
    if len(names) != len(layer.values):
        raise ConversionError(f"{layer.describe()}: {len(layer.values)} variables, expected {len(names)} ({', '.join(names)})")
    return dict(zip(names, layer.values))


def _shapes_match(graph: architectures.Graph, nodes: list[architectures.Node], layers: list[SourceLayer]) -> bool:
    shapes = architectures.expected_tensors(graph)
    for node, layer in zip(nodes, layers):
        first = layer.values.get("kernel", layer.values.get("moving_mean")) if isinstance(layer.values, dict) else layer.values[0 if node.kind == "Conv2D" else -1]
        wanted = shapes[f"{node.tensor}.kernel"] if node.kind == "Conv2D" else shapes[f"{node.tensor}.moving_variance"]
        if first is None or tuple(first.shape) != wanted:
            return False
    return True


def map_layers(source: Source, arch: str, resnet_variant: str = "auto") -> Mapping:
    convs, bns = _by_kind(source, "Conv2D"), _by_kind(source, "BatchNormalization")
    head = _find_head(source)
    names = [layer.name for layer in convs + bns]
    named = all(names) and len(names) > 0

    if arch == "resnet50":
        mapping = _map_resnet(source, convs, bns, named, resnet_variant)
    elif arch == "inception_v3":
        mapping = _map_inception(source, convs, bns, named)
    else:
        raise ConversionError(f"unknown architecture {arch!r}")
    mapping.assigned["head"] = head
    return mapping


def _find_head(source: Source) -> SourceLayer:
    dense = []
    for layer in _by_kind(source, "Dense"):
        kernel = layer.values.get("kernel") if isinstance(layer.values, dict) else layer.values[0]
        if kernel is not None and kernel.ndim == 2 and kernel.shape[1] == architectures.NUM_CLASSES:
            dense.append(layer)
    if len(dense) != 1:
        found = ", ".join(l.describe() for l in _by_kind(source, "Dense")) or "none"
        raise ConversionError(
            f"expected exactly one Dense layer with {architectures.NUM_CLASSES} units (the head), "
            f"found {len(dense)}; Dense layers in the file: {found}")
    return dense[0]


def _other_architecture_hint(convs: list[SourceLayer], arch: str) -> str:
    names = [c.name for c in convs if c.name]
    if arch == "inception_v3" and any(MODERN_RESNET.match(n) or LEGACY_RESNET.match(n) for n in names):
        return " The file has ResNet50 layer names: use --arch resnet50."
    if arch == "resnet50" and sum(bool(AUTO_NAME["Conv2D"].match(n)) for n in names) == 94:
        return " The file has InceptionV3's 94 automatically named convolutions: use --arch inception_v3."
    return ""


def _map_resnet(source: Source, convs, bns, named: bool, requested: str) -> Mapping:
    if named:
        modern = sum(bool(MODERN_RESNET.match(l.name)) for l in convs + bns)
        legacy = sum(bool(LEGACY_RESNET.match(l.name)) for l in convs + bns)
        if modern or legacy:
            variant = "modern" if modern >= legacy else "legacy"
            if requested != "auto" and requested != variant:
                raise ConversionError(f"--resnet-variant {requested}, but the file has {variant} ResNet50 layer names")
            graph = architectures.resnet50(variant == "legacy")
            assigned: dict[str, SourceLayer] = {}
            for layer in convs + bns:
                tensor = layer.name if variant == "modern" else legacy_to_modern(layer.name)
                if tensor is None or not (MODERN_RESNET.match(tensor)):
                    continue  # reported as unused
                if tensor in assigned:
                    raise ConversionError(f"two layers map to {tensor}: {assigned[tensor].describe()} and {layer.describe()}")
                assigned[tensor] = layer
            how = "by layer name" + (" (legacy keras-applications names renamed)" if variant == "legacy" else "")
            return Mapping(variant, graph, assigned, how)
        if not source.format.startswith("keras3") and source.format != "keras":
            raise ConversionError(
                f"no ResNet50 layer names (conv1_conv, conv2_block1_1_conv... or conv1, res2a_branch2a...) in the file; "
                f"first Conv2D layers: {', '.join(l.name for l in convs[:4]) or 'none'}."
                + _other_architecture_hint(convs, "resnet50"))
    # Keras 3 file without usable names: the keys follow model.layers order
    candidates = []
    for variant in (["modern", "legacy"] if requested == "auto" else [requested]):
        graph = architectures.resnet50(variant == "legacy")
        nodes_c, nodes_b = architectures.keras3_ordered(graph, "Conv2D"), architectures.keras3_ordered(graph, "BatchNormalization")
        if len(nodes_c) != len(convs) or len(nodes_b) != len(bns):
            raise ConversionError(
                f"the file has {len(convs)} Conv2D and {len(bns)} BatchNormalization layers; ResNet50 has "
                f"{len(nodes_c)} and {len(nodes_b)}." + _other_architecture_hint(convs, "resnet50"))
        if _shapes_match(graph, nodes_c, convs) and _shapes_match(graph, nodes_b, bns):
            assigned = {n.tensor: l for n, l in zip(nodes_c + nodes_b, convs + bns)}
            candidates.append(Mapping(variant, graph, assigned, "by Keras 3 layer order (the file records no layer names)"))
    if not candidates:
        raise ConversionError("the layer shapes, in Keras 3 model.layers order, match neither the modern nor the legacy ResNet50")
    if len(candidates) > 1:
        same = all(candidates[0].assigned[k] is candidates[1].assigned[k] for k in candidates[0].assigned)
        raise ConversionError(
            "the file records no layer names and its layer order fits both the modern and the legacy ResNet50"
            + (" (same tensors, but BatchNorm epsilon 1.001e-5 vs 1e-3)" if same else "")
            + ": pass --resnet-variant modern|legacy")
    return candidates[0]


def _map_inception(source: Source, convs, bns, named: bool) -> Mapping:
    graph = architectures.inception_v3()
    nodes_c, nodes_b = graph.conv_nodes(), graph.bn_nodes()
    if len(convs) != len(nodes_c) or len(bns) != len(nodes_b):
        raise ConversionError(
            f"the file has {len(convs)} Conv2D and {len(bns)} BatchNormalization layers; InceptionV3 has "
            f"{len(nodes_c)} and {len(nodes_b)}." + _other_architecture_hint(convs, "inception_v3"))
    if named:
        ordered = []
        for kind, layers in (("Conv2D", convs), ("BatchNormalization", bns)):
            numbered = []
            for layer in layers:
                m = AUTO_NAME[kind].match(layer.name)
                if not m:
                    raise ConversionError(
                        f"{layer.describe()}: InceptionV3 layers carry automatic names (conv2d_N, batch_normalization_N) "
                        f"whose numbers give the creation order." + _other_architecture_hint(convs, "inception_v3"))
                numbered.append((int(m.group(1) or 0), layer))
            numbered.sort(key=lambda t: t[0])
            numbers = [n for n, _ in numbered]
            if len(set(numbers)) != len(numbers):
                raise ConversionError(f"duplicate {kind} layer numbers in the file")
            ordered.append([l for _, l in numbered])
        convs, bns = ordered
        how = "by the numbers of the automatic layer names (creation order)"
    else:
        nodes_c = architectures.keras3_ordered(graph, "Conv2D")
        nodes_b = architectures.keras3_ordered(graph, "BatchNormalization")
        how = "by Keras 3 layer order (the file records no layer names)"
    assigned = {n.tensor: l for n, l in zip(nodes_c + nodes_b, convs + bns)}
    return Mapping("keras", graph, assigned, how)


# --------------------------------------------------------------------------
# Tensors, validation


def collect_tensors(source: Source, mapping: Mapping) -> tuple[dict[str, np.ndarray], list[str]]:
    """(bundle tensors in architecture order, descriptions of unused file tensors)."""
    expected = architectures.expected_tensors(mapping.graph)
    nodes = {n.tensor: n for n in mapping.graph.nodes if n.tensor}
    found: dict[str, np.ndarray] = {}
    unexpected: list[str] = []
    for prefix, layer in mapping.assigned.items():
        node = nodes.get(prefix)
        if node is None:
            continue
        for variable, value in _variable_values(layer, node).items():
            name = f"{prefix}.{variable}"
            if name in expected:
                found[name] = value
            else:
                unexpected.append(f"{name} (from {layer.describe()})")
    if unexpected:
        raise ConversionError(
            f"tensor(s) that {mapping.graph.arch} does not have: {', '.join(unexpected[:5])}"
            + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else "")
            + " — not the keras.applications architecture?")
    missing = [name for name in expected if name not in found]
    if missing:
        raise ConversionError(
            f"missing tensor{'s' if len(missing) > 1 else ''} {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            + f" (expected shape {list(expected[missing[0]])} for {missing[0]})")
    for name, shape in expected.items():
        if tuple(found[name].shape) != shape:
            raise ConversionError(f"tensor {name} has shape {list(found[name].shape)}, expected {list(shape)}")
        if not np.issubdtype(found[name].dtype, np.floating):
            raise ConversionError(f"tensor {name} has dtype {found[name].dtype}, expected floating point")
        if not np.all(np.isfinite(found[name])):
            raise ConversionError(f"tensor {name} has non-finite values")
    used = {id(layer) for layer in mapping.assigned.values()}
    unused = [layer.describe() + f" [{layer.kind or 'other'}]" for layer in source.layers if id(layer) not in used]
    canonical = architectures.expected_tensors(architectures.build(mapping.graph.arch))  # same order for both ResNet50s
    ordered = {name: np.asarray(found[name], dtype=np.float32) for name in canonical}
    return ordered, unused


def bn_epsilon(source: Source, mapping: Mapping, override: float | None) -> tuple[float, str]:
    default = mapping.graph.epsilon
    configured = {layer.config["epsilon"] for prefix, layer in mapping.assigned.items()
                  if prefix != "head" and "epsilon" in layer.config}
    if len(configured) > 1:
        raise ConversionError(f"the BatchNormalization layers use different epsilons {sorted(configured)}; a bundle has one")
    if override is not None:
        return override, "--bn-epsilon"
    if configured:
        return configured.pop(), "the file's config"
    return default, f"the {mapping.variant} {mapping.graph.arch} default"


# --------------------------------------------------------------------------
# Golden outputs (Keras)


def golden_outputs(arch: str, legacy: bool, tensors: dict[str, np.ndarray], epsilon: float,
                   height: int, width: int, count: int, seed: int = GOLDEN_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(inputs [N, H, W, 3], Keras's sigmoid outputs [N, 6]) for the converted tensors."""
    import keras_reference  # imports keras (JAX backend)

    model = keras_reference.build_architecture(arch, (height, width), legacy)
    for layer in model.layers:
        if isinstance(layer, keras_reference.layers.BatchNormalization):
            layer.epsilon = epsilon
    keras_reference.set_bundle_tensors(model, tensors)
    inputs = bundle.seeded_inputs(count, height, width, seed)
    outputs, _ = keras_reference.predict(model, inputs)  # Keras's sigmoid outputs
    return inputs, outputs


# --------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)(?:x(\d+))?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: expected N or HxW")
    h = int(m.group(1))
    return h, int(m.group(2) or h)


def parse_thresholds(text: str) -> list[float]:
    values = [float(v) for v in text.split(",")]
    if len(values) != len(bundle.LABELS) or not all(0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected {len(bundle.LABELS)} comma-separated values in (0, 1)")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", required=True, choices=architectures.ARCHITECTURES)
    p.add_argument("--weights", required=True, type=Path, help=".h5 (Keras 2), .weights.h5 (Keras 3) or .keras")
    p.add_argument("--out", required=True, type=Path, help="bundle directory (created; files in it are replaced)")
    p.add_argument("--name", help="model name (default: the directory's name)")
    p.add_argument("--version", default="1")
    p.add_argument("--golden", type=int, default=0, metavar="N", help="store Keras's outputs for N seeded inputs")
    p.add_argument("--golden-tolerance", type=float, default=bundle.DEFAULT_GOLDEN_TOLERANCE)
    p.add_argument("--dtype", choices=("f32", "f16"), default="f32", help="stored weight type")
    p.add_argument("--input-size", type=parse_size, help="N or HxW (default: the file's config, else 256)")
    p.add_argument("--input-scale", type=float, default=1.0, help="model input = preprocessed * scale + offset")
    p.add_argument("--input-offset", type=float, default=0.0)
    p.add_argument("--thresholds", type=parse_thresholds, help="six comma-separated decision thresholds")
    p.add_argument("--trained-on", default="unknown", help="provenance: what the model was trained on")
    p.add_argument("--synthetic-data", action=argparse.BooleanOptionalAction, default=False,
                   help="provenance: trained on synthetic data / random weights")
    p.add_argument("--clinical-use", action="store_true", help="provenance: validated for clinical use")
    p.add_argument("--notes", default="")
    p.add_argument("--resnet-variant", choices=("auto", "modern", "legacy"), default="auto",
                   help="only needed for a Keras 3 .weights.h5 that records no layer names")
    p.add_argument("--bn-epsilon", type=float, help="override the BatchNorm epsilon")
    return p


def convert(args: argparse.Namespace) -> dict:
    if args.arch != "resnet50" and args.resnet_variant != "auto":
        raise ConversionError("--resnet-variant applies to resnet50 only")
    source = read_source(args.weights)
    mapping = map_layers(source, args.arch, args.resnet_variant)
    tensors, unused = collect_tensors(source, mapping)
    epsilon, epsilon_from = bn_epsilon(source, mapping, args.bn_epsilon)
    if args.input_size:
        height, width = args.input_size
    elif source.input_shape and all(isinstance(v, int) for v in source.input_shape):
        height, width = source.input_shape
    else:
        height = width = DEFAULT_INPUT_SIZE
    try:
        architectures.infer_shapes(mapping.graph, height, width)
    except ValueError as error:
        raise ConversionError(str(error)) from None

    stored = tensors
    if args.dtype == "f16":
        stored = {k: v.astype(np.float16) for k, v in tensors.items()}
        overflow = [k for k, v in stored.items() if not np.all(np.isfinite(v))]
        if overflow:
            raise ConversionError(f"tensor {overflow[0]} overflows float16")

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    weights_path = out / bundle.WEIGHTS_FILE
    bundle.write_safetensors(weights_path, stored, {"format": "ich-bundle", "architecture": args.arch})
    digest = bundle.sha256_file(weights_path)

    golden_path = out / bundle.GOLDEN_FILE
    if args.golden > 0:
        effective = {k: v.astype(np.float32) for k, v in stored.items()}
        inputs, outputs = golden_outputs(args.arch, mapping.variant == "legacy", effective, epsilon, height, width, args.golden)
        bundle.write_safetensors(golden_path, {"inputs": inputs, "outputs": outputs},
                                 {"seed": str(GOLDEN_SEED), "computed_by": "Keras"})
    elif golden_path.exists():
        golden_path.unlink()  # stale

    variant_note = {
        "legacy": "legacy keras-applications ResNet50 layer names, renamed",
        "modern": "keras.applications ResNet50 layer names",
        "keras": "keras.applications InceptionV3",
    }[mapping.variant]
    notes = [n for n in (args.notes, f"{variant_note}; BatchNorm epsilon from {epsilon_from}") if n]
    provenance = {
        "trained_on": args.trained_on,
        "synthetic_data": bool(args.synthetic_data),
        "clinical_use": bool(args.clinical_use),
        "source": f"converted from {args.weights.name} (sha256 {bundle.sha256_file(args.weights)}) "
                  f"by Tools/convert_keras.py",
        "notes": "; ".join(notes),
    }
    doc = bundle.manifest(
        name=args.name or out.resolve().name, version=args.version, architecture=args.arch,
        height=height, width=width, epsilon=epsilon, weights_sha256=digest, provenance=provenance,
        input_scale=args.input_scale, input_offset=args.input_offset, thresholds=args.thresholds,
        golden_tolerance=args.golden_tolerance if args.golden > 0 else None)
    bundle.write_manifest(out, doc)
    return {
        "bundle": str(out),
        "format": source.format,
        "architecture": args.arch,
        "variant": mapping.variant,
        "matched": mapping.how,
        "batch_norm_epsilon": epsilon,
        "input": [height, width],
        "tensors": len(tensors),
        "parameters": int(sum(v.size for v in tensors.values())),
        "dtype": args.dtype,
        "sha256": digest,
        "golden": args.golden,
        "unused": unused,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = convert(args)
    except (ConversionError, ValueError) as error:
        print(f"convert_keras: error: {args.weights}: {error}", file=sys.stderr)
        return 1
    for item in summary["unused"]:
        print(f"convert_keras: warning: unused layer {item}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
