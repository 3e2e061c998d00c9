"""Graph surgery on the ONNX file tf2onnx makes of our encoder: fewer nodes, same logits.

tf2onnx converts the TF graph op by op, so the file keeps what only TensorFlow needed:

* every dense kernel is a ``Reshape`` to 2-D, ``MatMul``, ``Reshape`` back to a shape computed
  by ``Shape`` / ``Cast`` / ``Slice`` / ``Concat`` (``modeling._apply_kernel``); ONNX ``MatMul``
  broadcasts, so a 3-D input needs neither reshape;
* the head split / merge reshapes compute batch and length with ``Shape`` at run time, where a
  ``0`` (copy this input dimension) in a constant shape says the same;
* ``modeling.layer_norm`` (``tf.nn.moments``, ``rsqrt``) is 11 elementwise nodes; opset 17 has
  ``LayerNormalization``.

Every rewrite matches one pattern of our own graph and checks it against the symbolic shapes
shape inference gives each tensor (``symbolic_shapes``), so no tensor it keeps changes value.
``deploy.onnx_fusions`` then fuses what ONNX Runtime has kernels for.
"""
import collections

import numpy as np
from onnx import helper, numpy_helper, shape_inference

LAYER_NORM_MIN_OPSET = 17  # the first opset with LayerNormalization
COPY_DIM = 0  # in a Reshape shape (allowzero 0): this dimension of the input, unchanged
INFER_DIM = -1  # in a Reshape shape: whatever the element count leaves
MATRIX_RANK = 2
LAST_AXIS_POOL_RANK = 3  # GlobalAveragePool averages the last axis alone on [batch, seq, hidden]
DEFAULT_DOMAIN = ("", "ai.onnx")
TOKEN_DIMS = ("batch", "sequence")


class GraphIndex:
    """Who produces and who reads each tensor, constant values and symbolic shapes."""

    def __init__(self, model, shapes=None):
        graph = model.graph
        self.producer = {name: node for node in graph.node for name in node.output}
        self.readers = collections.defaultdict(list)
        for node in graph.node:
            for name in reads(node):
                self.readers[name].append(node)
        self.graph_outputs = {output.name for output in graph.output}
        self.constants = {item.name: numpy_helper.to_array(item) for item in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.shapes = shapes or {}

    def node(self, name, op_type):
        """The node of type ``op_type`` that produces ``name``, if it does."""
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def only_reader(self, name):
        """Whether ``name`` is read by one node and is no graph output (a rewrite may drop it)."""
        return len(self.readers[name]) == 1 and name not in self.graph_outputs

    def constant(self, name):
        return self.constants.get(name)

    def scalar(self, name):
        """The value of a one-element constant, else None."""
        value = self.constants.get(name)
        return float(value.ravel()[0]) if value is not None and value.size == 1 else None

    def other_input(self, node, name):
        """The input of a binary ``node`` that is not ``name``."""
        return node.input[1] if node.input[0] == name else node.input[0]


def reads(node):
    """The tensors ``node`` reads: its inputs and, for If / Loop, what its subgraphs read."""
    names = list(node.input)
    for attribute in node.attribute:
        for graph in [attribute.g] * attribute.HasField("g") + list(attribute.graphs):
            for inner in graph.node:
                names.extend(reads(inner))
    return names


def attributes(node):
    return {item.name: helper.get_attribute_value(item) for item in node.attribute}


def product_factors(index, name):
    """The three factors of two chained Muls ending in ``name`` (any grouping), else None."""
    outer = index.node(name, "Mul")
    if outer is None:
        return None
    for position, operand in enumerate(outer.input):
        inner = index.node(operand, "Mul")
        if inner is not None and index.only_reader(operand):
            return [*inner.input, outer.input[1 - position]]
    return None


def name_token_dims(model):
    """Call the dims of every token input [batch, sequence] and the logits' first "batch": the
    export's contract, and what lets shape inference see that all of them are the same."""
    for value in model.graph.input:
        for dim, name in zip(value.type.tensor_type.shape.dim, TOKEN_DIMS, strict=True):
            dim.dim_param = name
    for value in model.graph.output:
        value.type.tensor_type.shape.dim[0].dim_param = TOKEN_DIMS[0]


def _known_shapes(model):
    """{tensor name: shape} of what onnx's inference tells (data propagation follows Shape ->
    Slice -> Concat, so a computed Reshape shape is known), and {tensor name: element type}."""
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    shapes = {value.name: tuple(dim.dim_param or dim.dim_value or f"{value.name}:{position}"
                                for position, dim in enumerate(value.type.tensor_type.shape.dim))
              for value in values if value.type.tensor_type.HasField("shape")}
    shapes.update((item.name, tuple(item.dims)) for item in inferred.graph.initializer)
    return shapes, {value.name: value.type.tensor_type.elem_type for value in values}


def symbolic_shapes(model, static_shapes=None):
    """{tensor name: tuple of int or symbol} for every tensor of known rank.

    Where onnx's inference cannot tell two dims are equal it gives them different symbols, and
    a dim it knows nothing of gets a symbol of its own, so equal symbols are equal dims. Where
    it gives up on a node whose inputs it knows (tf2onnx's rendering of PoWER-BERT's
    ``diag_part``), the node's outputs get their ``static_shapes`` (TensorFlow's: int or None
    per dim) as value_info, a fresh symbol for each unknown dim, and inference goes on from
    there. (ONNX Runtime's symbolic inference merges more, but gave TR-BERT's gathered hidden
    states rank 4 and stops at that ``diag_part``.)
    """
    static_shapes = static_shapes or {}
    while True:
        shapes, types = _known_shapes(model)
        stuck = next((node for node in model.graph.node
                      if all(name in shapes for name in node.input if name)
                      and any(name not in shapes and name in static_shapes and types.get(name)
                              for name in node.output)), None)
        if stuck is None:
            return shapes
        # One node at a time: what its hints let inference learn may make the next one's unneeded.
        model.graph.value_info.extend(
            helper.make_tensor_value_info(name, types[name], [
                dim if dim is not None else f"{name}:{position}"
                for position, dim in enumerate(static_shapes[name])])
            for name in stuck.output
            if name not in shapes and name in static_shapes and types.get(name))


def opset(model):
    return next(item.version for item in model.opset_import if item.domain in DEFAULT_DOMAIN)


# Applying rewrites ------------------------------------------------------------------------------
def apply(model, replaced, renamed=None):
    """Swap each node with an entry in ``replaced`` (by ``id``) for its new nodes, where it was
    (the new nodes read only what the pattern read, so the order stays topological); then read
    ``renamed[name]`` wherever a node read ``name``, and drop whatever is no longer needed."""
    renamed = renamed or {}
    nodes = []
    for node in model.graph.node:
        for new in replaced.get(id(node), [node]):
            for position, name in enumerate(new.input):
                while name in renamed:
                    name = renamed[name]
                new.input[position] = name
            nodes.append(new)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    remove_unused(model)


def remove_unused(model):
    """Nodes none of whose outputs is read, then initializers nothing reads."""
    graph = model.graph
    needed = {output.name for output in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(reads(node))
    del graph.node[:]
    graph.node.extend(reversed(kept))
    initializers = [item for item in graph.initializer if item.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def add_initializer(model, name, value):
    model.graph.initializer.append(numpy_helper.from_array(value, name))
    return name


# Dense layers: Reshape -> MatMul -> Reshape back becomes one broadcasting MatMul ----------------
def _flattened_matmul(index, node):
    """The MatMul's (input, kernel) when the Reshape ``node`` undoes the Reshape before it."""
    matmul = index.node(node.input[0], "MatMul")
    if matmul is None or not index.only_reader(matmul.output[0]):
        return None
    flatten = index.node(matmul.input[0], "Reshape")
    kernel = index.constant(matmul.input[1])
    if flatten is None or kernel is None or kernel.ndim != MATRIX_RANK:
        return None
    source = index.shapes.get(flatten.input[0])
    result = index.shapes.get(node.output[0])
    if source is None or result is None or len(source) < MATRIX_RANK:
        return None
    if source[:-1] != result[:-1] or (source[-1], result[-1]) != kernel.shape:
        return None
    return flatten.input[0], matmul.input[1]


def unflatten_matmuls(model, index):
    """Every 2-D MatMul between a flattening Reshape and its inverse, as one N-D MatMul."""
    replaced = {}
    for node in model.graph.node:
        operands = _flattened_matmul(index, node) if node.op_type == "Reshape" else None
        if operands is not None:
            replaced[id(node)] = [helper.make_node("MatMul", list(operands), [node.output[0]],
                                                   name=f"{node.name}/matmul")]
    apply(model, replaced)
    return len(replaced)


# Reshapes whose shape is computed at run time ---------------------------------------------------
def constant_shape(source, target):
    """The Reshape shape (0 = copy, at most one -1) that turns ``source`` into ``target``
    (symbolic shapes), or None when some dimension is neither known nor copied."""
    shape = []
    for position, dim in enumerate(target):
        if isinstance(dim, int) and dim > 0:
            shape.append(dim)
        elif position < len(source) and dim == source[position]:
            shape.append(COPY_DIM)
        else:
            shape.append(INFER_DIM)
    return shape if shape.count(INFER_DIM) <= 1 else None


def constant_reshapes(model, index):
    """A Reshape fed a shape computed from ``Shape`` nodes gets a constant one instead; one
    that changes nothing is dropped."""
    replaced, renamed = {}, {}
    for node in model.graph.node:
        if node.op_type != "Reshape" or index.constant(node.input[1]) is not None:
            continue
        source, target = index.shapes.get(node.input[0]), index.shapes.get(node.output[0])
        shape = None if source is None or target is None else constant_shape(source, target)
        if shape is None:
            continue
        direct = all(node.output[0] in reader.input for reader in index.readers[node.output[0]])
        if source == target and direct and node.output[0] not in index.graph_outputs:
            replaced[id(node)] = []
            renamed[node.output[0]] = node.input[0]
            continue
        constant = add_initializer(model, f"{node.name}/shape", np.array(shape, np.int64))
        replaced[id(node)] = [helper.make_node("Reshape", [node.input[0], constant],
                                               list(node.output), name=node.name)]
    apply(model, replaced, renamed)
    return len(replaced)


# LayerNorm: tf.nn.moments and rsqrt become one LayerNormalization -------------------------------
def _last_axis_mean(index, name):
    """X when ``name`` is the mean of X over its last axis, the axis kept."""
    node = index.producer.get(name)
    shape = index.shapes.get(node.input[0]) if node is not None and node.input else None
    if shape is None:
        return None
    if node.op_type == "GlobalAveragePool":
        return node.input[0] if len(shape) == LAST_AXIS_POOL_RANK else None
    if node.op_type != "ReduceMean":
        return None
    found = attributes(node)
    axes = found.get("axes")
    if axes is None and len(node.input) > 1:
        axes = index.constant(node.input[1])
    if axes is None or found.get("keepdims", 1) != 1:
        return None
    last_axis_only = [int(axis) % len(shape) for axis in np.ravel(axes)] == [len(shape) - 1]
    return node.input[0] if last_axis_only else None


def _centered(index, name):
    """X when ``name`` is X - mean(X) over the last axis."""
    sub = index.node(name, "Sub")
    return sub.input[0] if sub is not None and _last_axis_mean(
        index, sub.input[1]) == sub.input[0] else None


def _inverse_std(index, name, source):
    """epsilon when ``name`` is 1 / sqrt(mean((source - mean)²) + epsilon)."""
    reciprocal = index.node(name, "Reciprocal")
    sqrt = reciprocal and index.node(reciprocal.input[0], "Sqrt")
    add = sqrt and index.node(sqrt.input[0], "Add")
    epsilon = add and index.scalar(add.input[1])
    square = add and index.node(_last_axis_mean(index, add.input[0]) or "", "Mul")
    if epsilon is None or square is None:
        return None
    centered = [_centered(index, operand) for operand in square.input]
    return epsilon if centered == [source, source] else None


def _layer_norm(index, node):
    """(X, gamma, beta, epsilon) when the Add ``node`` ends ``modeling.layer_norm``:
    (X - mean) · rsqrt(variance + epsilon) · gamma + beta, the product in any grouping."""
    beta = index.constant(node.input[1])
    factors = product_factors(index, node.input[0])
    if beta is None or beta.ndim != 1 or factors is None:
        return None
    for center in factors:
        source = _centered(index, center)
        for inverse in factors:
            epsilon = source and _inverse_std(index, inverse, source)
            if epsilon is None:
                continue
            rest = [name for name in factors if name not in (center, inverse)]
            gamma = index.constant(rest[0]) if len(rest) == 1 else None
            width = index.shapes.get(source, (None,))[-1]
            if gamma is not None and gamma.shape == beta.shape == (width,):
                return source, rest[0], node.input[1], epsilon
    return None


def fuse_layer_norms(model, index):
    """Every subgraph of ``modeling.layer_norm`` as one LayerNormalization."""
    replaced = {}
    for node in model.graph.node:
        found = _layer_norm(index, node) if node.op_type == "Add" else None
        if found is not None:
            replaced[id(node)] = [helper.make_node(
                "LayerNormalization", list(found[:3]), [node.output[0]], name=f"{node.name}/norm",
                axis=-1, epsilon=found[3])]
    apply(model, replaced)
    return len(replaced)


def simplify(model, shapes):
    """``model`` (changed in place) with our dense, head-reshape and LayerNorm patterns
    rewritten; returns {rewrite: nodes rewritten}. ``shapes`` (``symbolic_shapes`` of the
    model as it comes) stay true throughout: a rewrite keeps every tensor it leaves."""
    rewrites = [unflatten_matmuls, constant_reshapes]
    if opset(model) >= LAYER_NORM_MIN_OPSET:
        rewrites.append(fuse_layer_norms)
    return {rewrite.__name__: rewrite(model, GraphIndex(model, shapes)) for rewrite in rewrites}


def op_counts(model):
    """{op type: how many nodes}, most frequent first."""
    return dict(collections.Counter(node.op_type for node in model.graph.node).most_common())
