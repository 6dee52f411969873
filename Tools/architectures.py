"""Layer graphs of the two supported architectures, independent of Keras.

One description of ResNet50 (the modern ``keras.applications`` graph and the
legacy keras-applications 1.0.8 ``resnet50.py`` graph) and of InceptionV3, each
followed by the RSNA head (GlobalAveragePooling2D + Dense(6, sigmoid)). Every
node is one Keras layer, created in the same order as the Keras code creates
it, so that:

* ``expected_tensors`` gives every bundle tensor name and shape
  (see docs/BUNDLE.md);
* ``keras3_layer_order`` reproduces Keras 3's ``model.layers`` order (layers
  sorted by depth from the output, ties broken by the depth-first traversal
  index, ``keras/src/ops/function.py:map_graph``), which is the order of the
  ``layers/<class>_<counter>`` keys of a Keras 3 ``.weights.h5`` file;
* ``infer_shapes`` and the ONNX builder (Benchmarks/onnx_graph.py) walk the
  same graph.

Tensor naming: a Conv2D node's ``tensor`` is the prefix of its bundle tensors
(``conv2_block1_1_conv`` -> ``conv2_block1_1_conv.kernel``), likewise for
BatchNormalization and the head Dense (``head``).
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

ARCHITECTURES = ("resnet50", "inception_v3")
NUM_CLASSES = 6
FEATURES = 2048  # channels after the last block of both architectures

# BatchNormalization epsilons (see /work/shared/notes/keras-weights-facts.md)
EPSILON_MODERN_RESNET = 1.001e-5
EPSILON_KERAS_DEFAULT = 1e-3  # legacy ResNet50 and InceptionV3

RESNET50_STAGES = ((2, 64, 3), (3, 128, 4), (4, 256, 6), (5, 512, 3))  # stage, filters, blocks


@dataclass
class Node:
    id: int
    kind: str  # Keras class name: InputLayer, ZeroPadding2D, Conv2D, BatchNormalization, Activation, ...
    inputs: list[int]
    attrs: dict = field(default_factory=dict)
    tensor: str | None = None  # bundle tensor prefix (Conv2D, BatchNormalization, Dense)
    keras_name: str | None = None  # the layer's name in that Keras graph when it is not automatic


@dataclass
class Graph:
    arch: str
    variant: str  # "modern" | "legacy" (ResNet50), "keras" (InceptionV3)
    epsilon: float
    nodes: list[Node] = field(default_factory=list)
    output: int = -1

    def add(self, kind: str, inputs: list[int], *, tensor: str | None = None, keras_name: str | None = None, **attrs) -> int:
        node = Node(len(self.nodes), kind, list(inputs), attrs, tensor, keras_name)
        self.nodes.append(node)
        return node.id

    # -- helpers shared by the builders
    def conv(self, x: int, filters: int, kh: int, kw: int, *, stride: int = 1, padding: str = "valid",
             use_bias: bool, tensor: str, keras_name: str | None = None) -> int:
        return self.add("Conv2D", [x], tensor=tensor, keras_name=keras_name, filters=filters,
                        kernel=(kh, kw), stride=stride, padding=padding, use_bias=use_bias)

    def bn(self, x: int, *, scale: bool, tensor: str, keras_name: str | None = None) -> int:
        return self.add("BatchNormalization", [x], tensor=tensor, keras_name=keras_name, scale=scale)

    def relu(self, x: int, keras_name: str | None = None) -> int:
        return self.add("Activation", [x], keras_name=keras_name, activation="relu")

    def head(self, x: int) -> None:
        x = self.add("GlobalAveragePooling2D", [x])
        self.output = self.add("Dense", [x], tensor="head", units=NUM_CLASSES, activation="sigmoid")

    def conv_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.kind == "Conv2D"]

    def bn_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.kind == "BatchNormalization"]


# --------------------------------------------------------------------------
# ResNet50


def legacy_block_letter(block: int) -> str:
    return "abcdefghijklmnopqrstuvwxyz"[block - 1]


def legacy_resnet_names(stage: int, block: int, i: int) -> tuple[str, str]:
    """(conv, bn) layer names of keras-applications 1.0.8 resnet50.py for conv i (0 = shortcut)."""
    branch = "1" if i == 0 else "2" + "abc"[i - 1]
    letter = legacy_block_letter(block)
    return f"res{stage}{letter}_branch{branch}", f"bn{stage}{letter}_branch{branch}"


def resnet50(legacy: bool = False) -> Graph:
    g = Graph("resnet50", "legacy" if legacy else "modern", EPSILON_KERAS_DEFAULT if legacy else EPSILON_MODERN_RESNET)
    x = g.add("InputLayer", [])
    x = g.add("ZeroPadding2D", [x], keras_name="conv1_pad", pad=(3, 3))
    x = g.conv(x, 64, 7, 7, stride=2, use_bias=True, tensor="conv1_conv", keras_name="conv1" if legacy else "conv1_conv")
    x = g.bn(x, scale=True, tensor="conv1_bn", keras_name="bn_conv1" if legacy else "conv1_bn")
    x = g.relu(x, None if legacy else "conv1_relu")
    x = g.add("ZeroPadding2D", [x], keras_name="pool1_pad", pad=(1, 1))
    x = g.add("MaxPooling2D", [x], keras_name=None if legacy else "pool1_pool", pool=3, stride=2, padding="valid")
    for stage, filters, blocks in RESNET50_STAGES:
        for block in range(1, blocks + 1):
            stride = 2 if (block == 1 and stage > 2) else 1
            x = _resnet_block(g, x, stage, block, filters, stride, shortcut=(block == 1), legacy=legacy)
    g.head(x)
    return g


def _resnet_block(g: Graph, x: int, stage: int, block: int, filters: int, stride: int, *, shortcut: bool, legacy: bool) -> int:
    prefix = f"conv{stage}_block{block}"

    def conv_bn(inp: int, i: int, out: int, k: int, s: int, relu: bool) -> int:
        if legacy:
            conv_name, bn_name = legacy_resnet_names(stage, block, i)
        else:
            conv_name, bn_name = f"{prefix}_{i}_conv", f"{prefix}_{i}_bn"
        padding = "same" if k > 1 else "valid"
        y = g.conv(inp, out, k, k, stride=s, padding=padding, use_bias=True, tensor=f"{prefix}_{i}_conv", keras_name=conv_name)
        y = g.bn(y, scale=True, tensor=f"{prefix}_{i}_bn", keras_name=bn_name)
        if relu:
            y = g.relu(y, None if legacy else f"{prefix}_{i}_relu")
        return y

    if legacy:
        # keras-applications 1.0.8: main path first, shortcut conv last, add([x, shortcut])
        y = conv_bn(x, 1, filters, 1, stride, True)
        y = conv_bn(y, 2, filters, 3, 1, True)
        y = conv_bn(y, 3, 4 * filters, 1, 1, False)
        short = conv_bn(x, 0, 4 * filters, 1, stride, False) if shortcut else x
        y = g.add("Add", [y, short])
        return g.relu(y)
    # keras.applications resnet.py residual_block_v1: shortcut first, Add([shortcut, x])
    short = conv_bn(x, 0, 4 * filters, 1, stride, False) if shortcut else x
    y = conv_bn(x, 1, filters, 1, stride, True)
    y = conv_bn(y, 2, filters, 3, 1, True)
    y = conv_bn(y, 3, 4 * filters, 1, 1, False)
    y = g.add("Add", [short, y], keras_name=f"{prefix}_add")
    return g.relu(y, f"{prefix}_out")


# --------------------------------------------------------------------------
# InceptionV3 (keras.applications inception_v3.py, all versions)


def inception_v3() -> Graph:
    g = Graph("inception_v3", "keras", EPSILON_KERAS_DEFAULT)
    counter = iter(range(10_000))

    def cbn(inp: int, filters: int, kh: int, kw: int, stride: int = 1, padding: str = "same") -> int:
        k = next(counter)
        y = g.conv(inp, filters, kh, kw, stride=stride, padding=padding, use_bias=False, tensor=f"conv2d_{k}")
        y = g.bn(y, scale=False, tensor=f"batch_normalization_{k}")
        return g.relu(y)

    def avg(inp: int) -> int:
        return g.add("AveragePooling2D", [inp], pool=3, stride=1, padding="same")

    def maxpool(inp: int) -> int:
        return g.add("MaxPooling2D", [inp], pool=3, stride=2, padding="valid")

    def concat(inputs: list[int], name: str | None) -> int:
        return g.add("Concatenate", inputs, keras_name=name)

    x = g.add("InputLayer", [])
    x = cbn(x, 32, 3, 3, 2, "valid")
    x = cbn(x, 32, 3, 3, padding="valid")
    x = cbn(x, 64, 3, 3)
    x = maxpool(x)
    x = cbn(x, 80, 1, 1, padding="valid")
    x = cbn(x, 192, 3, 3, padding="valid")
    x = maxpool(x)

    for i, pool_filters in enumerate((32, 64, 64)):  # mixed0..2
        b1 = cbn(x, 64, 1, 1)
        b5 = cbn(cbn(x, 48, 1, 1), 64, 5, 5)
        b3 = cbn(cbn(cbn(x, 64, 1, 1), 96, 3, 3), 96, 3, 3)
        bp = cbn(avg(x), pool_filters, 1, 1)
        x = concat([b1, b5, b3, bp], f"mixed{i}")

    b3 = cbn(x, 384, 3, 3, 2, "valid")  # mixed3
    bd = cbn(cbn(cbn(x, 64, 1, 1), 96, 3, 3), 96, 3, 3, 2, "valid")
    bp = maxpool(x)
    x = concat([b3, bd, bp], "mixed3")

    for i, f in enumerate((128, 160, 160, 192)):  # mixed4..7
        b1 = cbn(x, 192, 1, 1)
        b7 = cbn(cbn(cbn(x, f, 1, 1), f, 1, 7), 192, 7, 1)
        bd = cbn(cbn(cbn(cbn(cbn(x, f, 1, 1), f, 7, 1), f, 1, 7), f, 7, 1), 192, 1, 7)
        bp = cbn(avg(x), 192, 1, 1)
        x = concat([b1, b7, bd, bp], f"mixed{4 + i}")

    b3 = cbn(cbn(x, 192, 1, 1), 320, 3, 3, 2, "valid")  # mixed8
    b7 = cbn(cbn(cbn(cbn(x, 192, 1, 1), 192, 1, 7), 192, 7, 1), 192, 3, 3, 2, "valid")
    bp = maxpool(x)
    x = concat([b3, b7, bp], "mixed8")

    for i in range(2):  # mixed9, mixed10
        b1 = cbn(x, 320, 1, 1)
        b3 = cbn(x, 384, 1, 1)
        b3 = concat([cbn(b3, 384, 1, 3), cbn(b3, 384, 3, 1)], f"mixed9_{i}")
        bd = cbn(cbn(x, 448, 1, 1), 384, 3, 3)
        bd = concat([cbn(bd, 384, 1, 3), cbn(bd, 384, 3, 1)], None)
        bp = cbn(avg(x), 192, 1, 1)
        x = concat([b1, b3, bd, bp], f"mixed{9 + i}")
    g.head(x)
    return g


def build(arch: str, legacy: bool = False) -> Graph:
    if arch == "resnet50":
        return resnet50(legacy)
    if arch == "inception_v3":
        if legacy:
            raise ValueError("there is no legacy InceptionV3 variant")
        return inception_v3()
    raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHITECTURES)}")


# --------------------------------------------------------------------------
# Derived facts


def channels(g: Graph) -> list[int]:
    """Output channels of every node (the input has 3)."""
    out: list[int] = []
    for n in g.nodes:
        if n.kind == "InputLayer":
            c = 3
        elif n.kind == "Conv2D":
            c = n.attrs["filters"]
        elif n.kind == "Dense":
            c = n.attrs["units"]
        elif n.kind == "Concatenate":
            c = sum(out[i] for i in n.inputs)
        else:
            c = out[n.inputs[0]]
        out.append(c)
    return out


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Keras/TensorFlow 'same' padding: the extra pixel, if any, goes after (bottom/right)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def infer_shapes(g: Graph, height: int, width: int) -> list[tuple[int, int, int]]:
    """(H, W, C) of every node's output for an input of height x width (GAP and Dense: (1, 1, C))."""
    chans = channels(g)
    shapes: list[tuple[int, int, int]] = []
    for n, c in zip(g.nodes, chans):
        if n.kind == "InputLayer":
            h, w = height, width
        else:
            h, w, _ = shapes[n.inputs[0]]
            if n.kind == "ZeroPadding2D":
                h, w = h + 2 * n.attrs["pad"][0], w + 2 * n.attrs["pad"][1]
            elif n.kind in ("Conv2D", "MaxPooling2D", "AveragePooling2D"):
                kh, kw = n.attrs["kernel"] if n.kind == "Conv2D" else (n.attrs["pool"],) * 2
                s = n.attrs["stride"]
                if n.attrs["padding"] == "same":
                    h, w = math.ceil(h / s), math.ceil(w / s)
                else:
                    h, w = (h - kh) // s + 1, (w - kw) // s + 1
                if h < 1 or w < 1:
                    raise ValueError(f"input {height}x{width} is too small for {g.arch}")
            elif n.kind in ("GlobalAveragePooling2D", "Dense"):
                h, w = 1, 1
        shapes.append((h, w, c))
    return shapes


def expected_tensors(g: Graph) -> dict[str, tuple[int, ...]]:
    """Every bundle tensor name -> shape, in creation order."""
    chans = channels(g)
    tensors: dict[str, tuple[int, ...]] = {}
    for n in g.nodes:
        if n.kind == "Conv2D":
            kh, kw = n.attrs["kernel"]
            cin = chans[n.inputs[0]]
            tensors[f"{n.tensor}.kernel"] = (kh, kw, cin, n.attrs["filters"])
            if n.attrs["use_bias"]:
                tensors[f"{n.tensor}.bias"] = (n.attrs["filters"],)
        elif n.kind == "BatchNormalization":
            c = chans[n.id]
            names = (["gamma"] if n.attrs["scale"] else []) + ["beta", "moving_mean", "moving_variance"]
            for v in names:
                tensors[f"{n.tensor}.{v}"] = (c,)
        elif n.kind == "Dense":
            tensors["head.kernel"] = (chans[n.inputs[0]], n.attrs["units"])
            tensors["head.bias"] = (n.attrs["units"],)
    return tensors


def layer_variables(node: Node) -> list[str]:
    """Variable names of a weight-bearing layer in Keras's storage order."""
    if node.kind == "Conv2D":
        return ["kernel", "bias"] if node.attrs["use_bias"] else ["kernel"]
    if node.kind == "BatchNormalization":
        return (["gamma"] if node.attrs["scale"] else []) + ["beta", "moving_mean", "moving_variance"]
    if node.kind == "Dense":
        return ["kernel", "bias"]
    return []


def keras3_layer_order(g: Graph) -> list[int]:
    """Node ids in Keras 3 ``model.layers`` order (``keras/src/ops/function.py:map_graph``)."""
    by_id = g.nodes
    traversal: dict[int, int] = {}
    finished: set[int] = set()
    post_order: list[int] = []

    def visit(nid: int) -> None:  # _build_map_helper (iterative would be overkill: depth < 1000)
        if nid in finished:
            return
        if nid not in traversal:
            traversal[nid] = len(traversal)
        for parent in by_id[nid].inputs:
            visit(parent)
        finished.add(nid)
        post_order.append(nid)

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(by_id)))
    try:
        visit(g.output)
    finally:
        sys.setrecursionlimit(limit)

    depth: dict[int, int] = {}
    for nid in reversed(post_order):
        d = depth.setdefault(nid, 0)
        for parent in by_id[nid].inputs:
            depth[parent] = max(d + 1, depth.get(parent, 0))
    by_depth: dict[int, list[int]] = collections.defaultdict(list)
    for nid, d in depth.items():
        by_depth[d].append(nid)
    order: list[int] = []
    for d in sorted(by_depth, reverse=True):
        order.extend(sorted(by_depth[d], key=lambda nid: traversal[nid]))
    return order


def keras3_ordered(g: Graph, kind: str) -> list[Node]:
    """Nodes of one Keras class in Keras 3 ``model.layers`` order."""
    return [g.nodes[i] for i in keras3_layer_order(g) if g.nodes[i].kind == kind]
