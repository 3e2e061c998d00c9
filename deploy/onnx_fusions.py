"""ONNX Runtime's fused CPU kernels (``com.microsoft`` domain) for our simplified encoder graph.

ONNX Runtime's own optimizer (``onnxruntime.transformers.optimizer``) expects PyTorch's BERT
graph and finds only SkipLayerNormalization in ours; these rewrites match our patterns
(``deploy.onnx_graph`` output) exactly:

* ``Attention``: the whole self-attention block (q / k / v projections with one packed
  kernel, scores, mask, softmax, context) of a layer whose projections are plain dense
  kernels; ``MultiHeadAttention`` (projections stay as they are) where they are low-rank.
  Each node carries its own layer's head count, so pruned and distilled models fuse too;
* ``Gelu``: ``modeling.gelu`` (erf form), which ONNX Runtime then merges with its bias.

The residual Add + ``LayerNormalization`` pairs stay unfused on purpose: ONNX Runtime's CPU
``SkipLayerNormalization`` kernel took ~3.9 ms per layer norm where Add + LayerNormalization took
~1.3 (batch 32 x 128 tokens x 384, 2 threads, onnxruntime 1.32), and ``deploy.inference`` keeps
ONNX Runtime from fusing them again (``SLOWER_FUSIONS``).
"""
import math

import numpy as np
import onnx
from onnx import helper

from deploy import onnx_graph
from deploy.onnx_graph import GraphIndex, add_initializer, apply, attributes, product_factors

MS_DOMAIN = "com.microsoft"
MS_OPSET = 1
HEAD_SPLIT = (0, 2, 1, 3)  # [batch, seq, heads, size] -> [batch, heads, seq, size]
KEY_SPLIT = (0, 2, 3, 1)  # [batch, seq, heads, size] -> [batch, heads, size, seq]
HEAD_SHAPE_RANK = 4
MERGED_RANK = 3
ERF_SCALE = 1.0 / math.sqrt(2.0)
GELU_HALF = 0.5
ONE = 1.0
CONSTANT_RTOL = 1e-6
PROJECTIONS = ("q", "k", "v")  # packed in this order in an Attention kernel
SLICE_TO_END = 10**9  # a Slice end past any tensor length: tf2onnx writes 1e9 or INT_MAX


def _close(value, expected):
    return value is not None and math.isclose(value, expected, rel_tol=CONSTANT_RTOL)


# GELU -------------------------------------------------------------------------------------------
def _gelu_input(index, node):
    """X when the Mul ``node`` ends 0.5 · X · (1 + erf(X · 1/√2)), the product in any grouping."""
    factors = product_factors(index, node.output[0])
    if factors is None:
        return None
    halves = [name for name in factors if _close(index.scalar(name), GELU_HALF)]
    tensors = [name for name in factors if index.scalar(name) is None]
    if len(halves) != 1 or len(tensors) != 2:
        return None
    for source, other in (tensors, tensors[::-1]):
        if _is_one_plus_erf(index, other, source):
            return source
    return None


def _is_one_plus_erf(index, name, source):
    """Whether ``name`` is 1 + erf(source · 1/√2), read by nothing else."""
    add = index.node(name, "Add")
    if add is None or not index.only_reader(name):
        return False
    erf = next((index.node(operand, "Erf") for operand in add.input
                if index.node(operand, "Erf")), None)
    if erf is None or not _close(index.scalar(index.other_input(add, erf.output[0])), ONE):
        return False
    scale = index.node(erf.input[0], "Mul")
    return (scale is not None and source in scale.input
            and _close(index.scalar(index.other_input(scale, source)), ERF_SCALE))


def fuse_gelu(model, index):
    replaced = {}
    for node in model.graph.node:
        source = _gelu_input(index, node) if node.op_type == "Mul" else None
        if source is not None:
            replaced[id(node)] = [helper.make_node("Gelu", [source], list(node.output),
                                                   name=f"{node.name}/gelu", domain=MS_DOMAIN)]
    apply(model, replaced)
    return len(replaced)


# Attention --------------------------------------------------------------------------------------
def _heads(index, name, perm):
    """(projected tensor, heads, head size) when ``name`` is Transpose(perm) of
    Reshape(projected, [0, 0, heads, size])."""
    transpose = index.node(name, "Transpose")
    if transpose is None or tuple(attributes(transpose).get("perm", ())) != perm:
        return None
    reshape = index.node(transpose.input[0], "Reshape")
    shape = reshape and index.constant(reshape.input[1])
    if shape is None or shape.shape != (HEAD_SHAPE_RANK,) or list(shape[:2]) != [0, 0]:
        return None
    return reshape.input[0], int(shape[2]), int(shape[3])


def _mask_bias(index, name):
    """(2-D int mask, filter value) when ``name`` is (1 - float(mask[:, None, None, :])) ·
    filter, as ``modeling._self_attention`` adds it to the scores."""
    mul = index.node(name, "Mul")
    sub = mul and next((index.node(operand, "Sub") for operand in mul.input
                        if index.node(operand, "Sub")), None)
    filter_value = sub and index.scalar(index.other_input(mul, sub.output[0]))
    if filter_value is None or filter_value >= 0 or not _close(index.scalar(sub.input[0]), ONE):
        return None
    cast = index.node(sub.input[1], "Cast")
    source = cast and cast.input[0]
    slice_node = source and index.node(source, "Slice")
    if slice_node is not None and _is_full_slice(index, slice_node):
        source = slice_node.input[0]
    unsqueeze = source and index.node(source, "Unsqueeze")
    axes = unsqueeze and index.constant(unsqueeze.input[1])
    if axes is None or sorted(np.ravel(axes).tolist()) != [1, 2]:
        return None
    return unsqueeze.input[0], filter_value


def _is_full_slice(index, node):
    """Whether the Slice ``node`` keeps everything: from 0 to past any length, step 1
    (tf2onnx's rendering of ``[:, None, None, :]``)."""
    starts = index.constant(node.input[1])
    ends = index.constant(node.input[2])
    steps = index.constant(node.input[4]) if len(node.input) > 4 else None
    return (starts is not None and ends is not None and not np.any(starts)
            and bool(np.all(ends >= SLICE_TO_END)) and (steps is None or np.all(steps == 1)))


def _scaled_scores(index, add):
    """(q·kᵀ MatMul, scale, mask bias name) when ``add`` is q·kᵀ · scale + mask bias."""
    for position, name in enumerate(add.input):
        scaled = index.node(name, "Mul")
        scores = scaled and index.node(scaled.input[0], "MatMul")
        scale = scaled and index.scalar(scaled.input[1])
        if scores is not None and scale is not None:
            return scores, scale, add.input[1 - position]
    return None


def _attention_core(index, softmax):
    """The block around ``softmax``: {q, k, v: projected tensors, heads, size, scale, mask,
    filter, output} when it is ``modeling._self_attention``'s, else None."""
    add = index.node(softmax.input[0], "Add")
    context = index.readers[softmax.output[0]]
    if add is None or len(context) != 1 or context[0].op_type != "MatMul":
        return None
    found = _scaled_scores(index, add)
    mask = found and _mask_bias(index, found[2])
    if mask is None:
        return None
    scores, scale = found[:2]
    parts = [_heads(index, scores.input[0], HEAD_SPLIT), _heads(index, scores.input[1], KEY_SPLIT),
             _heads(index, context[0].input[1], HEAD_SPLIT)]
    if None in parts or len({part[1:] for part in parts}) != 1:
        return None
    merged = _merged_heads(index, context[0].output[0], *parts[0][1:])
    if merged is None:
        return None
    return dict(q=parts[0][0], k=parts[1][0], v=parts[2][0], heads=parts[0][1],
                size=parts[0][2], scale=scale, mask=mask[0], filter=mask[1], output=merged)


def _merged_heads(index, name, heads, size):
    """The output of Reshape(Transpose(name), [batch, seq, heads · size]) where batch and seq
    are each 0 (copy) or -1 (infer), if that follows."""
    readers = index.readers[name]
    transpose = readers[0] if len(readers) == 1 else None
    if transpose is None or transpose.op_type != "Transpose" or tuple(
            attributes(transpose).get("perm", ())) != HEAD_SPLIT:
        return None
    readers = index.readers[transpose.output[0]]
    reshape = readers[0] if len(readers) == 1 and readers[0].op_type == "Reshape" else None
    shape = reshape and index.constant(reshape.input[1])
    if shape is None or shape.shape != (MERGED_RANK,) or shape[-1] != heads * size:
        return None
    leading = shape[:-1].tolist()
    return reshape.output[0] if set(leading) <= {0, -1} and leading.count(-1) <= 1 else None


def _dense(index, name):
    """(input, kernel, bias) names when ``name`` is MatMul(input, constant) + constant bias."""
    add = index.node(name, "Add")
    matmul = add and index.node(add.input[0], "MatMul")
    if matmul is None or index.constant(matmul.input[1]) is None or index.constant(
            add.input[1]) is None or not index.only_reader(matmul.output[0]):
        return None
    return matmul.input[0], matmul.input[1], add.input[1]


def _attention_node(model, index, core, name):
    """Attention with one packed q|k|v kernel when the three projections are plain dense
    layers of one input; MultiHeadAttention on the projected tensors otherwise."""
    options = dict(num_heads=core["heads"], scale=core["scale"],
                   mask_filter_value=core["filter"], domain=MS_DOMAIN)
    dense = [_dense(index, core[part]) for part in "qkv"]
    if None not in dense and len({found[0] for found in dense}) == 1:
        kernel = np.concatenate([index.constant(found[1]) for found in dense], axis=1)
        bias = np.concatenate([index.constant(found[2]) for found in dense])
        inputs = [dense[0][0], add_initializer(model, f"{name}/qkv_kernel", kernel),
                  add_initializer(model, f"{name}/qkv_bias", bias), core["mask"]]
        return helper.make_node("Attention", inputs, [core["output"]], name=name, **options)
    return helper.make_node("MultiHeadAttention",
                            [core["q"], core["k"], core["v"], "", core["mask"]],
                            [core["output"]], name=name, **options)


def fuse_attention(model, index):
    replaced = {}
    for node in model.graph.node:
        core = _attention_core(index, node) if node.op_type == "Softmax" else None
        if core is not None:
            last = index.producer[core["output"]]
            replaced[id(last)] = [_attention_node(model, index, core, f"{node.name}/attention")]
    apply(model, replaced)
    return len(replaced)


def record_outputs(model, shapes):
    """Type (float) and shape of every fused node's output, which onnx's inference cannot
    tell, so tools that run it (ONNX Runtime's quantizers) know the tensors after them."""
    known = {value.name for value in model.graph.value_info}
    for node in model.graph.node:
        for name in node.output if node.domain == MS_DOMAIN else ():
            if name in shapes and name not in known:
                model.graph.value_info.append(helper.make_tensor_value_info(
                    name, onnx.TensorProto.FLOAT, list(shapes[name])))


def unpack_attention(model):
    """Each packed Attention as three q / k / v MatMuls and a MultiHeadAttention (their biases
    and the mask as its inputs), in place: static INT8 quantizes MatMuls, and ONNX Runtime has
    no static INT8 Attention. Returns how many were unpacked."""
    index = GraphIndex(model)
    replaced = {}
    for node in model.graph.node:
        if node.op_type != "Attention" or node.domain != MS_DOMAIN:
            continue
        kernels = np.split(index.constant(node.input[1]), len(PROJECTIONS), axis=1)
        projections = []
        for part, kernel in zip(PROJECTIONS, kernels):
            name = add_initializer(model, f"{node.name}/{part}_kernel", kernel)
            projections.append(helper.make_node("MatMul", [node.input[0], name],
                                                [f"{node.name}/{part}"], name=f"{node.name}/{part}"))
        found = attributes(node)
        inputs = [item.output[0] for item in projections] + list(node.input[2:4])
        replaced[id(node)] = projections + [helper.make_node(
            "MultiHeadAttention", inputs, list(node.output), name=node.name, domain=MS_DOMAIN,
            num_heads=found["num_heads"], scale=found["scale"],
            mask_filter_value=found["mask_filter_value"])]
    apply(model, replaced)
    return len(replaced)


def fuse(model, shapes):
    """``model`` (changed in place) with ONNX Runtime's fused ops where our patterns are;
    ``shapes``: symbolic shapes of its tensors. Returns {fusion: nodes made}."""
    counts = {fusion.__name__: fusion(model, GraphIndex(model, shapes))
              for fusion in (fuse_attention, fuse_gelu)}
    if any(counts.values()) and not any(item.domain == MS_DOMAIN for item in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, MS_OPSET))
    record_outputs(model, shapes)
    return counts


def optimize(model, static_shapes=None):
    """tf2onnx's ``model`` of our encoder, simplified (``onnx_graph.simplify``) and fused, in
    place; returns {rewrite: nodes}. ``static_shapes``: TensorFlow's shapes of the tensors
    (see ``onnx_graph.symbolic_shapes``). One shape inference serves all: no rewrite changes
    the shape of a tensor it keeps."""
    onnx_graph.name_token_dims(model)
    shapes = onnx_graph.symbolic_shapes(model, static_shapes)
    counts = onnx_graph.simplify(model, shapes)
    counts.update(fuse(model, shapes))
    return counts
