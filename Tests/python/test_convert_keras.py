"""Tools/convert_keras.py: every input format and both architectures to a bundle.

Reference models come from Tools/keras_reference.py at small input sizes
(ResNet50 32x32, InceptionV3 75x75: the weights do not depend on the size).
The bundle is read back with the ``safetensors`` package, an implementation
independent of Tools/bundle.py, and compared with the Keras model's own weights
through a name mapping written here from the naming rules in docs/BUNDLE.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / "Tools"
CONVERTER = TOOLS / "convert_keras.py"
sys.path.insert(0, str(TOOLS))

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

import architectures  # noqa: E402
import bundle  # noqa: E402
import convert_keras  # noqa: E402
import keras_reference  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SIZES = {"resnet50": 32, "inception_v3": 75}
MODELS = {  # id -> (arch, legacy, seed)
    "resnet50": ("resnet50", False, 0),
    "resnet50-legacy": ("resnet50", True, 1),
    "inception_v3": ("inception_v3", False, 0),
}
FORMATS = ["weights.h5", "keras", "keras2.h5", "keras2-model.h5", "noname.weights.h5"]
EPSILON = {"resnet50": 1.001e-5, "resnet50-legacy": 1e-3, "inception_v3": 1e-3}


# --------------------------------------------------------------------------
# Expected names, written independently of Tools/architectures.py


def expected_resnet_names() -> list[str]:
    names = ["conv1_conv.kernel", "conv1_conv.bias"] + [f"conv1_bn.{v}" for v in ("gamma", "beta", "moving_mean", "moving_variance")]
    for stage, blocks in ((2, 3), (3, 4), (4, 6), (5, 3)):
        for b in range(1, blocks + 1):
            for i in ((0, 1, 2, 3) if b == 1 else (1, 2, 3)):
                p = f"conv{stage}_block{b}_{i}"
                names += [f"{p}_conv.kernel", f"{p}_conv.bias"]
                names += [f"{p}_bn.{v}" for v in ("gamma", "beta", "moving_mean", "moving_variance")]
    return names + ["head.kernel", "head.bias"]


def expected_inception_names() -> list[str]:
    names = []
    for k in range(94):
        names.append(f"conv2d_{k}.kernel")
        names += [f"batch_normalization_{k}.{v}" for v in ("beta", "moving_mean", "moving_variance")]
    return names + ["head.kernel", "head.bias"]


def keras_weights_by_bundle_name(model) -> dict[str, np.ndarray]:
    """The Keras model's weights under bundle names: ResNet50 layer names (legacy ones
    renamed), InceptionV3 conv2d/batch_normalization numbered in creation order."""
    out: dict[str, np.ndarray] = {}
    convs, bns = [], []
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if isinstance(layer, keras.layers.Dense):
            out["head.kernel"], out["head.bias"] = weights
            continue
        name = layer.name
        m = re.fullmatch(r"(res|bn)(\d)([a-f])_branch(2a|2b|2c|1)", name)
        if name == "conv1":
            name = "conv1_conv"
        elif name == "bn_conv1":
            name = "conv1_bn"
        elif m:
            i = {"2a": 1, "2b": 2, "2c": 3, "1": 0}[m.group(4)]
            name = f"conv{m.group(2)}_block{'abcdef'.index(m.group(3)) + 1}_{i}_{'conv' if m.group(1) == 'res' else 'bn'}"
        auto = re.fullmatch(r"(conv2d|batch_normalization)(?:_(\d+))?", name)
        if auto:
            (convs if auto.group(1) == "conv2d" else bns).append((int(auto.group(2) or 0), layer))
            continue
        variables = ["kernel", "bias"] if isinstance(layer, keras.layers.Conv2D) else ["gamma", "beta", "moving_mean", "moving_variance"]
        out.update({f"{name}.{v}": w for v, w in zip(variables, weights)})
    for k, (_, layer) in enumerate(sorted(convs, key=lambda t: t[0])):
        out[f"conv2d_{k}.kernel"] = layer.get_weights()[0]
    for k, (_, layer) in enumerate(sorted(bns, key=lambda t: t[0])):
        out.update({f"batch_normalization_{k}.{v}": w for v, w in zip(("beta", "moving_mean", "moving_variance"), layer.get_weights())})
    return out


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def models():
    return {key: keras_reference.build(arch, SIZES[arch], seed, legacy) for key, (arch, legacy, seed) in MODELS.items()}


@pytest.fixture(scope="session")
def saved(models, tmp_path_factory):
    """(model id, format) -> a saved file, written on first use."""
    folder = tmp_path_factory.mktemp("keras-files")
    cache: dict[tuple[str, str], Path] = {}

    def get(key: str, fmt: str) -> Path:
        if (key, fmt) not in cache:
            model = models[key]
            if fmt == "weights.h5":
                path = folder / f"{key}.weights.h5"
                keras_reference.save(model, path)
            elif fmt == "keras":
                path = folder / f"{key}.keras"
                keras_reference.save(model, path)
            elif fmt == "keras2.h5":
                path = folder / f"{key}.h5"
                keras_reference.save(model, path, "weights")
            elif fmt == "keras2-model.h5":
                path = folder / f"{key}-model.h5"
                keras_reference.save(model, path, "model")
            elif fmt == "noname.weights.h5":  # as written by Keras 3 versions that record no layer names
                path = folder / f"{key}-noname.weights.h5"
                shutil.copy(get(key, "weights.h5"), path)
                with h5py.File(path, "a") as f:
                    groups = []
                    f.visititems(lambda n, o: groups.append(o) if isinstance(o, h5py.Group) and "name" in o.attrs else None)
                    for g in groups:
                        del g.attrs["name"]
            else:
                raise AssertionError(fmt)
            cache[(key, fmt)] = path
        return cache[(key, fmt)]

    return get


def convert(*args: str, check: bool = True) -> tuple[int, str, str]:
    """Run the converter in-process (Keras is already imported here)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = convert_keras.main(list(args))
        except SystemExit as exit_:
            code = exit_.code
    if check and code != 0:
        raise AssertionError(f"convert_keras {' '.join(args)} exited {code}:\n{err.getvalue()}")
    return code, out.getvalue(), err.getvalue()


def read_header(path: Path) -> dict:
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length))


# --------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("key", list(MODELS))
def test_round_trip(key, fmt, models, saved, tmp_path):
    arch, legacy, _ = MODELS[key]
    out = tmp_path / "bundle"
    _, stdout, stderr = convert("--arch", arch, "--weights", str(saved(key, fmt)), "--out", str(out))
    summary = json.loads(stdout)
    assert summary["unused"] == [], stderr
    assert summary["variant"] == ("legacy" if legacy else "modern" if arch == "resnet50" else "keras")

    doc = json.loads((out / "model.json").read_text())
    has_config = fmt in ("keras", "keras2-model.h5")
    size = SIZES[arch] if has_config else 256
    assert doc["format_version"] == 1
    assert doc["name"] == "bundle" and doc["version"] == "1"
    assert doc["architecture"] == arch and doc["convention"] == "keras"
    assert doc["input"] == {"height": size, "width": size, "channels": 3}
    assert doc["input_scale"] == 1.0 and doc["input_offset"] == 0.0
    assert doc["batch_norm_epsilon"] == pytest.approx(EPSILON[key], rel=1e-9)
    assert doc["labels"] == ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
    assert doc["thresholds"] == [0.5] * 6
    assert doc["preprocessing"]["windows"] == [{"center": 40, "width": 80}, {"center": 80, "width": 200}, {"center": 40, "width": 380}]
    assert doc["preprocessing"]["order"] == "window-then-resize" and doc["preprocessing"]["rsna_correction"] is True
    provenance = doc["provenance"]
    assert provenance["trained_on"] == "unknown"
    assert provenance["synthetic_data"] is False and provenance["clinical_use"] is False
    assert saved(key, fmt).name in provenance["source"] and "Tools/convert_keras.py" in provenance["source"]
    weights = out / doc["weights"]["file"]
    assert doc["weights"]["file"] == "weights.safetensors"
    assert doc["weights"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert "golden" not in doc and not (out / "golden.safetensors").exists()

    header = read_header(weights)
    names = [k for k in header if k != "__metadata__"]
    expected_names = expected_resnet_names() if arch == "resnet50" else expected_inception_names()
    assert sorted(names) == sorted(expected_names)
    assert {info["dtype"] for k, info in header.items() if k != "__metadata__"} == {"F32"}

    stored = safetensors_numpy.load_file(str(weights))
    reference = keras_weights_by_bundle_name(models[key])
    assert sorted(reference) == sorted(expected_names)
    for name in expected_names:
        assert stored[name].shape == reference[name].shape, name
        np.testing.assert_array_equal(stored[name], reference[name], err_msg=name)
    assert stored["head.kernel"].shape == (2048, 6)
    if arch == "resnet50":
        assert stored["conv1_conv.kernel"].shape == (7, 7, 3, 64)
        assert stored["conv2_block1_0_conv.kernel"].shape == (1, 1, 64, 256)
    else:
        assert stored["conv2d_0.kernel"].shape == (3, 3, 3, 32)  # the stem's first 3x3/2 conv
        assert stored["conv2d_93.kernel"].shape == (1, 1, 2048, 192)  # mixed10's pooling branch, the last created


def test_bundle_reader_agrees(saved, tmp_path):
    """Tools/bundle.read_safetensors reads what the safetensors package reads."""
    out = tmp_path / "b"
    convert("--arch", "resnet50", "--weights", str(saved("resnet50", "weights.h5")), "--out", str(out))
    ours, metadata = bundle.read_safetensors(out / "weights.safetensors")
    theirs = safetensors_numpy.load_file(str(out / "weights.safetensors"))
    assert list(ours) == [k for k in read_header(out / "weights.safetensors") if k != "__metadata__"]
    assert metadata["architecture"] == "resnet50"
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name])


def test_safetensors_writer_layout(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(3)
    tensors = {
        "a": rng.normal(size=(3, 5)).astype(np.float32),
        "b": rng.normal(size=(7,)).astype(np.float16),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "ints": np.arange(6, dtype=np.int64).reshape(2, 3),
        "big_endian": np.arange(4, dtype=">f4"),
    }
    path = tmp_path / "x.safetensors"
    bundle.write_safetensors(path, tensors, {"k": "v"})
    (length,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert length % 8 == 0
    loaded = safetensors_numpy.load_file(str(path))
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype.newbyteorder("<") or loaded[name].dtype == value.dtype
        np.testing.assert_array_equal(loaded[name], value)
    # and the other way round
    other = tmp_path / "y.safetensors"
    save_file({k: v for k, v in tensors.items() if k != "big_endian"}, str(other), metadata={"m": "1"})
    ours, metadata = bundle.read_safetensors(other)
    assert metadata == {"m": "1"}
    for name, value in ours.items():
        np.testing.assert_array_equal(value, tensors[name])


# --------------------------------------------------------------------------
# Golden outputs, f16, provenance


@pytest.mark.parametrize("key,fmt", [("resnet50", "weights.h5"), ("resnet50-legacy", "keras2.h5"), ("inception_v3", "keras")])
def test_golden_matches_original_model(key, fmt, models, saved, tmp_path):
    """The golden outputs (Keras, from the converted tensors) equal the original
    model's outputs: the converter put every tensor where it belongs."""
    arch, _, _ = MODELS[key]
    size = SIZES[arch]
    out = tmp_path / "b"
    convert("--arch", arch, "--weights", str(saved(key, fmt)), "--out", str(out), "--golden", "2",
            "--input-size", str(size), "--golden-tolerance", "2e-4")
    doc = json.loads((out / "model.json").read_text())
    assert doc["golden"] == {"file": "golden.safetensors", "tolerance": 2e-4}
    golden = safetensors_numpy.load_file(str(out / "golden.safetensors"))
    assert set(golden) == {"inputs", "outputs"}
    assert golden["inputs"].shape == (2, size, size, 3) and golden["inputs"].dtype == np.float32
    assert golden["outputs"].shape == (2, 6) and golden["outputs"].dtype == np.float32
    assert 0 <= golden["inputs"].min() and golden["inputs"].max() <= 1
    assert not np.allclose(golden["inputs"][0], golden["inputs"][1])
    probabilities, _ = keras_reference.predict(models[key], golden["inputs"])
    np.testing.assert_allclose(golden["outputs"], probabilities, atol=1e-5, rtol=0)
    assert 0.001 < golden["outputs"].min() and golden["outputs"].max() < 0.999


def test_f16(models, saved, tmp_path):
    out = tmp_path / "b"
    convert("--arch", "inception_v3", "--weights", str(saved("inception_v3", "keras")), "--out", str(out), "--dtype", "f16")
    header = read_header(out / "weights.safetensors")
    assert {info["dtype"] for k, info in header.items() if k != "__metadata__"} == {"F16"}
    stored = safetensors_numpy.load_file(str(out / "weights.safetensors"))
    reference = keras_weights_by_bundle_name(models["inception_v3"])
    for name, value in reference.items():
        np.testing.assert_array_equal(stored[name], value.astype(np.float16), err_msg=name)
    doc = json.loads((out / "model.json").read_text())
    assert doc["weights"]["sha256"] == hashlib.sha256((out / "weights.safetensors").read_bytes()).hexdigest()


def test_provenance_and_options(saved, tmp_path):
    out = tmp_path / "b"
    convert("--arch", "resnet50", "--weights", str(saved("resnet50", "keras")), "--out", str(out),
            "--name", "ich-resnet50-example", "--version", "7", "--trained-on", "seeded random weights",
            "--synthetic-data", "--clinical-use", "--notes", "test", "--input-size", "224x240",
            "--thresholds", "0.1,0.2,0.3,0.4,0.5,0.6", "--input-scale", "2", "--input-offset", "-1")
    doc = json.loads((out / "model.json").read_text())
    assert doc["name"] == "ich-resnet50-example" and doc["version"] == "7"
    assert doc["provenance"]["trained_on"] == "seeded random weights"
    assert doc["provenance"]["synthetic_data"] is True and doc["provenance"]["clinical_use"] is True
    assert doc["provenance"]["notes"].startswith("test")
    assert doc["input"] == {"height": 224, "width": 240, "channels": 3}
    assert doc["thresholds"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert (doc["input_scale"], doc["input_offset"]) == (2.0, -1.0)


def test_bn_epsilon_override(saved, tmp_path):
    out = tmp_path / "b"
    convert("--arch", "resnet50", "--weights", str(saved("resnet50-legacy", "keras2.h5")), "--out", str(out), "--bn-epsilon", "1e-5")
    assert json.loads((out / "model.json").read_text())["batch_norm_epsilon"] == 1e-5


# --------------------------------------------------------------------------
# Errors


def _drop_keras2_weight(src: Path, dst: Path, layer: str, variable: str) -> None:
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        group = f[layer]
        names = [n.decode() for n in group.attrs["weight_names"]]
        target = f"{layer}/{variable}:0"
        names.remove(target)
        group.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S")
        del group[target]


def test_missing_tensor_is_named(saved, tmp_path):
    broken = tmp_path / "broken.h5"
    _drop_keras2_weight(saved("resnet50", "keras2.h5"), broken, "conv3_block2_2_bn", "moving_variance")
    code, _, stderr = convert("--arch", "resnet50", "--weights", str(broken), "--out", str(tmp_path / "b"), check=False)
    assert code == 1
    assert "conv3_block2_2_bn.moving_variance" in stderr and "missing" in stderr


def test_missing_tensor_legacy_names(saved, tmp_path):
    broken = tmp_path / "broken.h5"
    _drop_keras2_weight(saved("resnet50-legacy", "keras2.h5"), broken, "res4c_branch2b", "bias")
    code, _, stderr = convert("--arch", "resnet50", "--weights", str(broken), "--out", str(tmp_path / "b"), check=False)
    assert code == 1 and "conv4_block3_2_conv.bias" in stderr


def test_missing_inception_layer(saved, tmp_path):
    broken = tmp_path / "broken.keras.weights.h5"
    shutil.copy(saved("inception_v3", "weights.h5"), broken)
    with h5py.File(broken, "a") as f:
        del f["layers/batch_normalization_40/vars/2"]
    code, _, stderr = convert("--arch", "inception_v3", "--weights", str(broken), "--out", str(tmp_path / "b"), check=False)
    assert code == 1 and "batch_normalization_" in stderr


def test_wrong_shape_is_named(saved, tmp_path):
    broken = tmp_path / "broken.h5"
    shutil.copy(saved("resnet50", "keras2.h5"), broken)
    with h5py.File(broken, "a") as f:
        del f["conv5_block3_3_bn/conv5_block3_3_bn/gamma:0"]
        f["conv5_block3_3_bn/conv5_block3_3_bn"].create_dataset("gamma:0", data=np.ones(7, np.float32))
    code, _, stderr = convert("--arch", "resnet50", "--weights", str(broken), "--out", str(tmp_path / "b"), check=False)
    assert code == 1 and "conv5_block3_3_bn.gamma" in stderr and "[7]" in stderr


@pytest.mark.parametrize("fmt", ["weights.h5", "keras2.h5", "keras", "noname.weights.h5"])
def test_wrong_architecture(fmt, saved, tmp_path):
    code, _, stderr = convert("--arch", "inception_v3", "--weights", str(saved("resnet50", fmt)), "--out", str(tmp_path / "a"), check=False)
    assert code == 1 and "InceptionV3 has 94" in stderr
    code, _, stderr = convert("--arch", "resnet50", "--weights", str(saved("inception_v3", fmt)), "--out", str(tmp_path / "b"), check=False)
    assert code == 1 and ("ResNet50 has 53" in stderr or "use --arch inception_v3" in stderr)


def test_unused_layer_is_reported(saved, tmp_path):
    extra = tmp_path / "extra.h5"
    shutil.copy(saved("resnet50", "keras2.h5"), extra)
    with h5py.File(extra, "a") as f:
        f.attrs["layer_names"] = np.append(f.attrs["layer_names"], np.array([b"aux_dense"], dtype="S"))
        group = f.create_group("aux_dense")
        group.attrs["weight_names"] = np.array([b"aux_dense/kernel:0", b"aux_dense/bias:0"], dtype="S")
        group.create_dataset("aux_dense/kernel:0", data=np.zeros((2048, 3), np.float32))
        group.create_dataset("aux_dense/bias:0", data=np.zeros(3, np.float32))
    code, stdout, stderr = convert("--arch", "resnet50", "--weights", str(extra), "--out", str(tmp_path / "b"))
    assert "unused layer aux_dense" in stderr
    assert any("aux_dense" in item for item in json.loads(stdout)["unused"])


def test_not_a_model_file(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    code, _, stderr = convert("--arch", "resnet50", "--weights", str(junk), "--out", str(tmp_path / "b"), check=False)
    assert code == 1 and "junk.h5" in stderr
    code, _, stderr = convert("--arch", "resnet50", "--weights", str(tmp_path / "absent.h5"), "--out", str(tmp_path / "b"), check=False)
    assert code == 1 and "no such file" in stderr


def test_cli_without_golden_does_not_import_keras(saved, tmp_path):
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['convert_keras.py', '--arch', 'resnet50', '--weights', {str(saved('resnet50', 'keras2.h5'))!r}, '--out', {str(tmp_path / 'b')!r}]\n"
        "try:\n"
        f"    runpy.run_path({str(CONVERTER)!r}, run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print('KERAS' if 'keras' in sys.modules or 'jax' in sys.modules else 'NO-KERAS')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("NO-KERAS")


def test_cli_exit_codes(saved, tmp_path):
    result = subprocess.run([sys.executable, str(CONVERTER), "--arch", "vgg16", "--weights", "x", "--out", "y"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    result = subprocess.run([sys.executable, str(CONVERTER), "--arch", "inception_v3", "--weights",
                             str(saved("resnet50", "keras2.h5")), "--out", str(tmp_path / "b")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "error" in result.stderr


# --------------------------------------------------------------------------
# Facts the converter and the engines rely on


@pytest.mark.parametrize("key", list(MODELS))
def test_layer_graph_matches_keras(key, models):
    """Tools/architectures.py has Keras's layers, shapes and model.layers order."""
    arch, legacy, _ = MODELS[key]
    model = models[key]
    graph = architectures.build(arch, legacy)
    order = architectures.keras3_layer_order(graph)
    assert [graph.nodes[i].kind for i in order] == [type(l).__name__ for l in model.layers]
    prefix_of = {id(layer): prefix for prefix, layer in keras_reference.layer_map(model).items()}
    for i, layer in zip(order, model.layers):
        if graph.nodes[i].tensor:
            assert prefix_of[id(layer)] == graph.nodes[i].tensor
    shapes = architectures.infer_shapes(graph, SIZES[arch], SIZES[arch])
    assert shapes[graph.output] == (1, 1, 6)
    gap_node = graph.nodes[graph.nodes[graph.output].inputs[0]]
    gap = next(l for l in model.layers if isinstance(l, keras.layers.GlobalAveragePooling2D))
    assert tuple(gap.input.shape[1:]) == shapes[gap_node.inputs[0]]


@pytest.mark.parametrize("size,kernel,stride", [(4, 3, 2), (6, 3, 2), (8, 1, 2), (5, 3, 2), (7, 7, 2), (6, 5, 1)])
def test_keras_same_padding_puts_the_odd_pixel_after(size, kernel, stride):
    """Keras 3 (JAX) 'same': pad_before = total // 2, the extra pixel at the bottom/right."""
    inp = keras.Input((size, size, 1))
    conv = keras.layers.Conv2D(1, kernel, strides=stride, padding="same", use_bias=False)
    model = keras.Model(inp, conv(inp))
    rng = np.random.default_rng(size * 100 + kernel)
    w = rng.normal(size=(kernel, kernel, 1, 1)).astype(np.float32)
    conv.set_weights([w])
    x = rng.normal(size=(1, size, size, 1)).astype(np.float32)
    got = model.predict(x, verbose=0)[0, :, :, 0]
    before, after = architectures.same_pads(size, kernel, stride)
    padded = np.pad(x[0, :, :, 0], ((before, after), (before, after)))
    out = (size + before + after - kernel) // stride + 1
    want = np.array([[np.sum(padded[i * stride:i * stride + kernel, j * stride:j * stride + kernel] * w[:, :, 0, 0])
                      for j in range(out)] for i in range(out)])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_keras_average_pool_same_excludes_padding():
    inp = keras.Input((5, 5, 1))
    model = keras.Model(inp, keras.layers.AveragePooling2D(3, strides=1, padding="same")(inp))
    got = model.predict(np.ones((1, 5, 5, 1), np.float32), verbose=0)
    np.testing.assert_allclose(got, 1.0, atol=1e-6)
