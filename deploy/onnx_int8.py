"""INT8 copies of an fp32 ONNX export, quantized by ONNX Runtime.

* ``dynamic``: INT8 weights; each activation's scale is found at run time, call by call.
  A fused ``Attention`` becomes ``QAttention``.
* ``learned``: as ``static``, with the scales a quantization-aware training learned (a method's
  ``bert.deployment.Deployment.int8_ranges``) instead of calibrated ones, INT8 weights per
  tensor as that training simulated them.
* ``static``: INT8 weights and activation scales fixed once from calibration batches (tokenized
  train examples), as QuantizeLinear / DequantizeLinear pairs that ONNX Runtime runs as INT8
  kernels. Every MatMul is quantized; ONNX Runtime has no static INT8 Attention, so a packed
  Attention is first split into its q / k / v MatMuls and a MultiHeadAttention.

On all-MiniLM-L6-v2 (2 cores, seq 128) static ran at 0.83-0.87x the speed of dynamic, with
about 3x its mean logit error; keeping the 6 MatMuls after GELU (a long-tailed input) in fp32
cut that error to dynamic's but made static 25% slower again.
"""
import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime import quantization

from deploy import onnx_fusions

DYNAMIC, STATIC, LEARNED = "dynamic", "static", "learned"
MODES = (DYNAMIC, STATIC, LEARNED)
STATIC_OPS = ["MatMul"]
WEIGHT_LEVELS = 127  # INT8 symmetric weights: −127..127
EMBEDDING_RANK = 2  # [rows, width]


class TokenBatches(quantization.CalibrationDataReader):
    """Calibration feeds: one {input name: int32 [batch, seq]} per batch, each read once."""

    def __init__(self, feeds):
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)


def write_dynamic(fp32_path, path, per_channel):
    quantization.quantize_dynamic(fp32_path, path, per_channel=per_channel,
                                  weight_type=quantization.QuantType.QInt8)


def write_static(fp32_path, path, feeds, per_channel):
    """Calibrated on ``feeds`` (MinMax; it holds every calibrated tensor of every batch in
    memory), asymmetric UINT8 activations and INT8 weights, the pairing ONNX Runtime's x86
    INT8 kernels take."""
    model = onnx.load(fp32_path)
    onnx_fusions.unpack_attention(model)
    quantization.quantize_static(
        model, path, TokenBatches(feeds), quant_format=quantization.QuantFormat.QDQ,
        op_types_to_quantize=STATIC_OPS, per_channel=per_channel,
        activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8)


def write(mode, fp32_path, path, per_channel, feeds=None):
    """``fp32_path`` quantized in ``mode`` (one of MODES) to ``path``; ``feeds`` calibrate
    the static mode."""
    if mode == STATIC:
        write_static(fp32_path, path, feeds, per_channel)
    else:
        write_dynamic(fp32_path, path, per_channel)


def learned_overrides(model, ranges, kernels):
    """TensorQuantOverrides of the MatMuls whose weight is one of ``kernels`` ({variable name:
    array}): their input gets the learned {kernel name: Int8Range}, their weight INT8 symmetric
    per tensor (max|w| / 127, as quantization-aware training simulated it). A MatMul is found by
    its weight's values, which survive every rewrite of the export (names do not). Returns
    (overrides, names of the MatMul nodes to quantize)."""
    by_value = {np.asarray(kernels[name], np.float32).tobytes(): name for name in ranges}
    weights = {item.name: numpy_helper.to_array(item) for item in model.graph.initializer}
    overrides, nodes = {}, []
    for node in model.graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        name = None if weight is None else by_value.get(weight.astype(np.float32).tobytes())
        if name is None:
            continue
        learned = ranges[name]
        overrides.setdefault(node.input[0], [{
            "scale": np.array(learned.scale, np.float32),
            "zero_point": np.array(learned.zero_point, np.uint8)}])
        bound = float(np.abs(weight).max()) or 1.0
        overrides[node.input[1]] = [{"scale": np.array(bound / WEIGHT_LEVELS, np.float32),
                                     "zero_point": np.array(0, np.int8)}]
        nodes.append(node.name)
    return overrides, nodes


def write_learned(fp32_path, path, ranges, kernels, feeds):
    """INT8 with the activation ranges quantization-aware training learned: QDQ pairs on each
    kernel's MatMul with those scales and zero points (``learned_overrides``); ``feeds`` only
    satisfy the calibrator's pass, every quantized tensor's range is given."""
    model = onnx.load(fp32_path)
    onnx_fusions.unpack_attention(model)
    overrides, nodes = learned_overrides(model, ranges, kernels)
    missing = len(ranges) - len(nodes)
    if missing > 0:
        raise ValueError(f"{missing} kernels with learned ranges have no MatMul in {fp32_path}")
    quantization.quantize_static(
        model, path, TokenBatches(feeds), quant_format=quantization.QuantFormat.QDQ,
        op_types_to_quantize=STATIC_OPS, nodes_to_quantize=nodes, per_channel=False,
        activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8,
        extra_options={"TensorQuantOverrides": overrides,
                       "OpTypesToExcludeOutputQuantization": STATIC_OPS})
    quantized = onnx.load(path)
    float_inputs_elsewhere(quantized, set(nodes))
    int8_embedding_tables(quantized)
    onnx.save(quantized, path)
    return len(nodes)


def int8_embedding_tables(model):
    """Every embedding table a Gather reads (word, position, token type) stored as INT8, one
    symmetric scale per row, with a DequantizeLinear before the Gather: in a small BERT the
    word embeddings are half the weights (all-MiniLM-L6-v2: 11.7 M of 22.7 M), so the file
    shrinks by almost as much again. Weight-only and post-training (quantization-aware training
    did not see it): the INT8 file's dev metric says what it costs. In place."""
    tables = {item.name: item for item in model.graph.initializer}
    replaced = {}
    for node in model.graph.node:
        table = tables.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or len(table.dims) != EMBEDDING_RANK or node.input[0] in replaced:
            continue
        values = numpy_helper.to_array(table).astype(np.float32)
        bound = np.abs(values).max(axis=1)
        scale = np.where(bound > 0, bound / WEIGHT_LEVELS, 1.0).astype(np.float32)
        codes = np.clip(np.round(values / scale[:, None]), -WEIGHT_LEVELS, WEIGHT_LEVELS)
        name = table.name
        model.graph.initializer.remove(table)
        model.graph.initializer.extend([
            numpy_helper.from_array(codes.astype(np.int8), f"{name}_int8"),
            numpy_helper.from_array(scale, f"{name}_row_scale"),
            numpy_helper.from_array(np.zeros_like(scale, np.int8), f"{name}_row_zero_point")])
        replaced[name] = onnx.helper.make_node(
            "DequantizeLinear", [f"{name}_int8", f"{name}_row_scale", f"{name}_row_zero_point"],
            [name], name=f"{name}_DequantizeLinear", axis=0)
    for index, node in enumerate(replaced.values()):  # first: they read initializers only
        model.graph.node.insert(index, node)
    return len(replaced)


def float_inputs_elsewhere(model, quantized_nodes):
    """Give every node but the quantized MatMuls the float tensor back: the quantizer rewires
    all consumers of a tensor it quantizes (a residual Add too), where training simulated
    INT8 only at the kernels' inputs. In place."""
    producers = {output: node for node in model.graph.node for output in node.output}
    original = {}
    for node in model.graph.node:
        source = producers.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if source is not None and source.op_type == "QuantizeLinear":
            original[node.output[0]] = source.input[0]
    for node in model.graph.node:
        if node.name in quantized_nodes or node.op_type in ("QuantizeLinear",
                                                             "DequantizeLinear"):
            continue
        for index, name in enumerate(node.input):
            if name in original:
                node.input[index] = original[name]
