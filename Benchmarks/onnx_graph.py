"""ONNX graph of a bundle (ResNet50 or InceptionV3 + the RSNA head), for ONNX Runtime.

Built with ``onnx.helper`` from the bundle's tensors and the layer graph of
Tools/architectures.py, so it computes what the Swift engine computes:

* the input is NHWC ``[N, H, W, 3]`` (as ``ichctl`` takes it), transposed to
  NCHW inside the graph;
* BatchNorm is folded into the preceding convolution with the bundle's epsilon
  (in float64, then rounded to float32);
* Keras ``'same'`` padding becomes explicit pads, the odd pixel after
  (``pad_before = total // 2``), as Keras/TensorFlow do;
* ZeroPadding2D is folded into the next Conv (zeros, exact) or MaxPool (which
  pads with -inf: the same result there because the MaxPool input is a ReLU
  output, >= 0, and every window holds at least one real pixel);
* AveragePooling2D 'same' excludes the padding (``count_include_pad=0``), as Keras;
* outputs: ``probabilities`` (Sigmoid) and ``logits`` (the Gemm) ``[N, 6]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Tools"))
import architectures  # noqa: E402

OPSET = 17


def build_model(arch: str, tensors: dict[str, np.ndarray], epsilon: float, height: int, width: int,
                legacy: bool = False):
    """The ONNX ModelProto for input ``[N, height, width, 3]``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = architectures.build(arch, legacy)
    shapes = architectures.infer_shapes(graph, height, width)
    consumers: dict[int, list[int]] = {}
    for node in graph.nodes:
        for i in node.inputs:
            consumers.setdefault(i, []).append(node.id)

    onnx_nodes = []
    initializers = []
    value: dict[int, str] = {}  # IR node id -> ONNX value name
    pending_pad: dict[int, tuple[int, tuple[int, int]]] = {}  # ZeroPadding2D id -> (its input id, (ph, pw))

    def initializer(name: str, array: np.ndarray, dtype=np.float32) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name))
        return name

    def source_and_pads(node) -> tuple[str, list[int]]:
        """The node's input value and the zero padding folded into it [top, left, bottom, right]."""
        (i,) = node.inputs
        if i in pending_pad:
            j, (ph, pw) = pending_pad[i]
            return value[j], [ph, pw, ph, pw]
        return value[i], [0, 0, 0, 0]

    def spatial_pads(node, kh: int, kw: int, stride: int, input_hw: tuple[int, int]) -> list[int]:
        if node.attrs["padding"] != "same":
            return [0, 0, 0, 0]
        top, bottom = architectures.same_pads(input_hw[0], kh, stride)
        left, right = architectures.same_pads(input_hw[1], kw, stride)
        return [top, left, bottom, right]

    for node in graph.nodes:
        out = f"n{node.id}_{node.kind}"
        if node.kind == "InputLayer":
            onnx_nodes.append(helper.make_node("Transpose", ["input"], [out], perm=[0, 3, 1, 2]))
        elif node.kind == "ZeroPadding2D":
            users = consumers.get(node.id, [])
            if all(graph.nodes[u].kind in ("Conv2D", "MaxPooling2D") for u in users):
                pending_pad[node.id] = (node.inputs[0], node.attrs["pad"])
                continue
            ph, pw = node.attrs["pad"]
            pads = initializer(f"{out}_pads", np.array([0, 0, ph, pw, 0, 0, ph, pw]), np.int64)
            onnx_nodes.append(helper.make_node("Pad", [value[node.inputs[0]], pads], [out], mode="constant"))
        elif node.kind == "Conv2D":
            users = consumers.get(node.id, [])
            if len(users) != 1 or graph.nodes[users[0]].kind != "BatchNormalization":
                raise ValueError(f"{node.tensor}: expected a Conv2D followed by BatchNormalization")
            continue  # emitted, folded, at its BatchNormalization
        elif node.kind == "BatchNormalization":
            conv = graph.nodes[node.inputs[0]]
            kernel = tensors[f"{conv.tensor}.kernel"].astype(np.float64)  # HWIO
            bias = tensors.get(f"{conv.tensor}.bias")
            bias = np.zeros(kernel.shape[3]) if bias is None else bias.astype(np.float64)
            gamma = tensors.get(f"{node.tensor}.gamma")
            gamma = np.ones(kernel.shape[3]) if gamma is None else gamma.astype(np.float64)
            beta = tensors[f"{node.tensor}.beta"].astype(np.float64)
            mean = tensors[f"{node.tensor}.moving_mean"].astype(np.float64)
            var = tensors[f"{node.tensor}.moving_variance"].astype(np.float64)
            scale = gamma / np.sqrt(var + epsilon)
            w = kernel.transpose(3, 2, 0, 1) * scale[:, None, None, None]  # OIHW
            b = (bias - mean) * scale + beta
            src, pads = source_and_pads(conv)
            kh, kw = conv.attrs["kernel"]
            s = conv.attrs["stride"]
            in_h, in_w, _ = shapes[conv.inputs[0]]
            same = spatial_pads(conv, kh, kw, s, (in_h, in_w))
            pads = [p + q for p, q in zip(pads, same)]
            wname = initializer(f"{conv.tensor}_w", w)
            bname = initializer(f"{conv.tensor}_b", b)
            onnx_nodes.append(helper.make_node("Conv", [src, wname, bname], [out], kernel_shape=[kh, kw],
                                               strides=[s, s], pads=pads, name=conv.tensor))
        elif node.kind == "Activation":
            onnx_nodes.append(helper.make_node("Relu", [value[node.inputs[0]]], [out]))
        elif node.kind == "MaxPooling2D":
            src, pads = source_and_pads(node)
            k, s = node.attrs["pool"], node.attrs["stride"]
            pads = [p + q for p, q in zip(pads, spatial_pads(node, k, k, s, shapes[node.inputs[0]][:2]))]
            onnx_nodes.append(helper.make_node("MaxPool", [src], [out], kernel_shape=[k, k], strides=[s, s], pads=pads))
        elif node.kind == "AveragePooling2D":
            k, s = node.attrs["pool"], node.attrs["stride"]
            pads = spatial_pads(node, k, k, s, shapes[node.inputs[0]][:2])
            onnx_nodes.append(helper.make_node("AveragePool", [value[node.inputs[0]]], [out], kernel_shape=[k, k],
                                               strides=[s, s], pads=pads, count_include_pad=0))
        elif node.kind == "Add":
            onnx_nodes.append(helper.make_node("Add", [value[i] for i in node.inputs], [out]))
        elif node.kind == "Concatenate":
            onnx_nodes.append(helper.make_node("Concat", [value[i] for i in node.inputs], [out], axis=1))
        elif node.kind == "GlobalAveragePooling2D":
            pooled = f"{out}_nchw"
            onnx_nodes.append(helper.make_node("GlobalAveragePool", [value[node.inputs[0]]], [pooled]))
            onnx_nodes.append(helper.make_node("Flatten", [pooled], [out], axis=1))
        elif node.kind == "Dense":
            k = initializer("head_kernel", tensors["head.kernel"])
            b = initializer("head_bias", tensors["head.bias"])
            onnx_nodes.append(helper.make_node("Gemm", [value[node.inputs[0]], k, b], ["logits"]))
            onnx_nodes.append(helper.make_node("Sigmoid", ["logits"], ["probabilities"]))
            out = "probabilities"
        else:
            raise ValueError(f"no ONNX lowering for {node.kind}")
        value[node.id] = out

    classes = architectures.NUM_CLASSES
    g = helper.make_graph(
        onnx_nodes, f"{arch}_ich",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", height, width, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", classes]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        initializers)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ich-forward-pass")
    model.ir_version = min(model.ir_version, 8)  # readable by older ONNX Runtime builds too
    onnx.checker.check_model(model)
    return model


def build_from_bundle(directory: str | Path, legacy: bool = False):
    """(ModelProto, manifest) for a bundle directory."""
    import bundle  # Tools/bundle.py

    doc, tensors = bundle.read_bundle(directory)
    model = build_model(doc["architecture"], tensors, doc["batch_norm_epsilon"], doc["input"]["height"],
                        doc["input"]["width"], legacy)
    return model, doc


def session(model_or_path, threads: int = 2):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    data = model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") else str(model_or_path)
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
