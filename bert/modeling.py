"""The one BERT encoder (tf.compat.v1 graph) that every method plugs into.

Variable scopes are exactly Google's checkpoint names, so original checkpoints load unchanged.
Methods change the model only through two hooks:

* a dense-layer factory ``factory(inputs, units, name, layer_index, activation=None)`` that builds
  every kernel (q, k, v, attention output, intermediate, output, pooler) inside the current
  variable scope; ``layer_index`` is None for the pooler. The default factory
  (``config_dense_factory``) builds plain or low-rank kernels as the config says and passes each
  through a chain of ``KernelTransform``s (gate, mask, fake-quantization: one per method);
* a token selector ``selector(layer_index, hidden, attention_probs, input_mask)`` called after
  the attention sub-block (after its Add & LayerNorm, before the FFN) that returns the possibly
  shorter ``(hidden, input_mask)``.
"""
import copy
import dataclasses
import json
import math
import numbers
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from bert import files, randomness
from bert.errors import InputError

tf1 = tf.compat.v1

LAYER_NORM_EPSILON = 1e-12  # Google's BERT value; checkpoints were trained with it.
MASKED_LOGIT = -10000.0  # Added to attention logits of padding: exp() underflows to 0 in fp32.

_ARCHITECTURE_KEYS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob",
    "max_position_embeddings", "type_vocab_size", "initializer_range",
)
# Sizes a config file must state: defaulting them would build a model the checkpoint can't fill.
REQUIRED_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size")
_SIZE_KEYS = REQUIRED_KEYS + ("max_position_embeddings", "type_vocab_size")
_DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob")
# Keys a per-layer override may change; anything else in "layers" is a config error.
PER_LAYER_KEYS = ("num_attention_heads", "intermediate_size", "attention_head_size")


class ConfigError(InputError):
    """A bert_config.json that cannot describe a model."""


class BertConfig:
    """Architecture of a BERT model, with optional per-layer overrides.

    ``layers`` (optional) is a list with one dict per encoder layer that may override
    ``num_attention_heads``, ``intermediate_size`` and ``attention_head_size`` (pruned models
    differ per layer). Keys we do not know (e.g. a method's settings such as ``kernel_ranks``)
    are kept and written back, so a config flows unchanged through every step.
    """

    def __init__(self, vocab_size, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
                 attention_probs_dropout_prob=0.1, max_position_embeddings=512,
                 type_vocab_size=16, initializer_range=0.02, **extra):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.extra = dict(extra)
        self.validate()

    # Per-layer view -------------------------------------------------------------------------
    def _layer_value(self, layer_index, key, default):
        layers = self.extra.get("layers")
        if layers and key in layers[layer_index]:
            return layers[layer_index][key]
        return default

    def heads(self, layer_index):
        return self._layer_value(layer_index, "num_attention_heads", self.num_attention_heads)

    def head_size(self, layer_index):
        return self._layer_value(layer_index, "attention_head_size",
                                 self.extra.get("attention_head_size",
                                                self.hidden_size // self.num_attention_heads))

    def intermediate(self, layer_index):
        return self._layer_value(layer_index, "intermediate_size", self.intermediate_size)

    def validate(self):
        for key in _SIZE_KEYS:
            _check_positive_int(key, getattr(self, key))
        if "attention_head_size" in self.extra:
            _check_positive_int("attention_head_size", self.extra["attention_head_size"])
        for key in _DROPOUT_KEYS:
            value = getattr(self, key)
            if not (_is_real(value) and 0.0 <= value < 1.0):
                raise ConfigError(f"{key}={value!r}: expected a dropout probability in [0, 1)")
        if not (_is_real(self.initializer_range) and 0.0 < self.initializer_range < math.inf):
            raise ConfigError(f"initializer_range={self.initializer_range!r}: expected a "
                              "positive number (the stddev of the initial weights)")
        if not isinstance(self.hidden_act, str) or self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"hidden_act {self.hidden_act!r} is not one of {sorted(ACTIVATIONS)}")
        if "attention_head_size" not in self.extra and self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not a multiple of "
                              f"num_attention_heads {self.num_attention_heads}")
        layers = self.extra.get("layers")
        if layers is not None:
            if not isinstance(layers, list):
                raise ConfigError(f"'layers' is {type(layers).__name__}, expected a list with "
                                  "one object per encoder layer")
            if len(layers) != self.num_hidden_layers:
                raise ConfigError(f"'layers' has {len(layers)} entries, expected "
                                  f"num_hidden_layers={self.num_hidden_layers}")
            for index, layer in enumerate(layers):
                if not isinstance(layer, dict):
                    raise ConfigError(f"layers[{index}]={layer!r}: expected an object of "
                                      f"per-layer overrides ({', '.join(PER_LAYER_KEYS)})")
                unknown = set(layer) - set(PER_LAYER_KEYS)
                if unknown:
                    raise ConfigError(f"layers[{index}] has unknown keys {sorted(unknown)}; "
                                      f"allowed: {list(PER_LAYER_KEYS)}")
                for key, value in layer.items():
                    _check_positive_int(f"layers[{index}].{key}", value)

    # Serialisation --------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values):
        if not isinstance(values, dict):
            raise ConfigError(f"config is a {type(values).__name__}, expected an object "
                              "of architecture keys")
        missing = [key for key in REQUIRED_KEYS if key not in values]
        if missing:
            raise ConfigError(f"config lacks {', '.join(missing)} (required: "
                              f"{', '.join(REQUIRED_KEYS)})")
        return cls(**values)

    @classmethod
    def from_json_file(cls, path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: bert_config.json not found (expected a BERT "
                                    "config in Google's json format)")
        with open(path, encoding="utf-8") as handle:
            try:
                values = json.load(handle)
            except json.JSONDecodeError as error:
                raise ConfigError(f"{path}: not valid json ({error})") from None
            except UnicodeDecodeError as error:
                raise ConfigError(f"{path}: not UTF-8 text (byte offset {error.start})") from None
        try:
            return cls.from_dict(values)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None

    def to_dict(self):
        values = {key: getattr(self, key) for key in _ARCHITECTURE_KEYS}
        values.update(copy.deepcopy(self.extra))
        return values

    def to_json_string(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path):
        files.write_text_atomic(path, self.to_json_string())

    def copy(self):
        return BertConfig.from_dict(self.to_dict())


def _is_real(value):
    """A bool is a number to Python but never a meaningful size or probability in a config."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_positive_int(key, value):
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0):
        raise ConfigError(f"{key}={value!r}: expected a positive integer")


# Activations ------------------------------------------------------------------------------------
def gelu(x):
    """Exact GELU (erf form), as in Google's released checkpoints."""
    return 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0)))


def gelu_new(x):
    """Tanh approximation of GELU (used by GPT-2 style checkpoints)."""
    return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * tf.pow(x, 3))))


ACTIVATIONS = {"gelu": gelu, "gelu_new": gelu_new, "relu": tf.nn.relu, "tanh": tf.tanh,
               "linear": None}


def create_initializer(initializer_range=0.02):
    return tf1.truncated_normal_initializer(stddev=initializer_range)


# The dense-layer factory hook and its kernel transforms ----------------------------------------
@dataclasses.dataclass(frozen=True)
class KernelSite:
    """The kernel being built, as a kernel transform sees it."""
    key: str  # the config's kernel_ranks key, e.g. 'layer_3/attention/self/query'
    name: str  # its variable scope name below the current scope, e.g. 'query'
    layer_index: Optional[int]  # None for the pooler
    in_width: int
    out_width: int
    rank: Optional[int] = None  # the kept rank of a low-rank kernel; None for a plain one


class KernelTransform:
    """Identity at every point where a method may change a kernel; methods override some.

    ``transform_inputs`` sees the layer's input, ``transform_kernel`` each weight matrix
    (``part`` is ``kernel``, or ``p`` / ``q`` for the factors of a low-rank kernel) and
    ``transform_rank`` the activations between the factors (FLOP's gate).
    """

    def transform_inputs(self, inputs, site: KernelSite):
        return inputs

    def transform_kernel(self, kernel, site: KernelSite, part: str):
        return kernel

    def transform_rank(self, hidden, site: KernelSite):
        return hidden


def _apply_kernel(inputs, kernel):
    """inputs [..., in] @ kernel [in, out] as one 2-D matmul (fastest path on CPU)."""
    in_width = kernel.shape[0]
    flat = tf.reshape(inputs, [-1, in_width])
    out = tf.reshape(tf.matmul(flat, kernel),
                     tf.concat([tf.shape(inputs)[:-1], [kernel.shape[-1]]], axis=0))
    out.set_shape(inputs.shape[:-1].concatenate([kernel.shape[-1]]))
    return out


def _chain(transforms, method, value, *args):
    for transform in transforms:
        value = getattr(transform, method)(value, *args)
    return value


def _kernel_variable(scope, shape, initializer_range):
    with tf1.variable_scope(scope):
        return tf1.get_variable("kernel", shape, initializer=create_initializer(initializer_range))


def _bias_variable(name, units):
    with tf1.variable_scope(name):
        return tf1.get_variable("bias", [units], initializer=tf1.zeros_initializer())


def dense(inputs, units, name, activation=None, initializer_range=0.02, transforms=(),
          site=None):
    """Plain dense layer: ``<name>/kernel`` [in, units] and ``<name>/bias``; ``transforms``
    (KernelTransform, applied in order) change its input and its kernel."""
    site = site or KernelSite(kernel_key(name), name, None, int(inputs.shape[-1]), units)
    inputs = _chain(transforms, "transform_inputs", inputs, site)
    kernel = _kernel_variable(name, [site.in_width, units], initializer_range)
    kernel = _chain(transforms, "transform_kernel", kernel, site, "kernel")
    out = tf.nn.bias_add(_apply_kernel(inputs, kernel), _bias_variable(name, units))
    return activation(out) if activation is not None else out


def low_rank_dense(inputs, units, name, rank, activation=None, initializer_range=0.02,
                   transforms=(), site=None):
    """W ≈ P·Q: ``<name>_p/kernel`` [in, rank], ``<name>_q/kernel`` [rank, units], ``<name>/bias``.

    ``transforms`` may change the input, each factor and the rank dimension between the
    factors (FLOP puts its HardConcrete mask there). ``rank`` 0 (FLOP pruned every rank) leaves
    only the bias.
    """
    site = site or KernelSite(kernel_key(name), name, None, int(inputs.shape[-1]), units, rank)
    if rank == 0:
        bias = _bias_variable(name, units)
        out = tf.broadcast_to(bias, tf.concat([tf.shape(inputs)[:-1], [units]], axis=0))
        out.set_shape(inputs.shape[:-1].concatenate([units]))
        return activation(out) if activation is not None else out
    inputs = _chain(transforms, "transform_inputs", inputs, site)
    p_kernel = _kernel_variable(name + "_p", [site.in_width, rank], initializer_range)
    q_kernel = _kernel_variable(name + "_q", [rank, units], initializer_range)
    bias = _bias_variable(name, units)
    hidden = _apply_kernel(inputs, _chain(transforms, "transform_kernel", p_kernel, site, "p"))
    hidden = _chain(transforms, "transform_rank", hidden, site)
    q_kernel = _chain(transforms, "transform_kernel", q_kernel, site, "q")
    out = tf.nn.bias_add(_apply_kernel(hidden, q_kernel), bias)
    return activation(out) if activation is not None else out


def kernel_key(name):
    """Key of the kernel built now, in the config's ``kernel_ranks``: 'layer_3/attention/self/query'.

    It is the variable scope below ``bert/encoder`` (or ``bert``), so it names the same kernel in
    every checkpoint of the model folder's history.
    """
    scope = tf1.get_variable_scope().name.split("/", 1)[-1]
    if scope.startswith("encoder/"):
        scope = scope[len("encoder/"):]
    return f"{scope}/{name}"


def config_dense_factory(config, transforms=()):
    """The dense factory: plain dense, or low-rank where the config's ``kernel_ranks`` says so,
    each kernel passed through ``transforms`` (KernelTransform) in order.

    A compact FLOP model is described by its config alone: each factorized kernel's kept rank
    is listed in ``kernel_ranks``; kernels not listed are plain dense.
    """
    ranks = config.extra.get("kernel_ranks") or {}
    transforms = tuple(transforms)

    def factory(inputs, units, name, layer_index, activation=None):
        key = kernel_key(name)
        site = KernelSite(key, name, layer_index, int(inputs.shape[-1]), units, ranks.get(key))
        if site.rank is None:
            return dense(inputs, units, name, activation, config.initializer_range, transforms,
                         site)
        return low_rank_dense(inputs, units, name, site.rank, activation,
                              config.initializer_range, transforms, site)

    return factory


# Model ------------------------------------------------------------------------------------------
def layer_norm(inputs, name="LayerNorm"):
    """LayerNorm over the last axis with Google's variable names (gamma, beta)."""
    width = inputs.shape[-1]
    with tf1.variable_scope(name):
        gamma = tf1.get_variable("gamma", [width], initializer=tf1.ones_initializer())
        beta = tf1.get_variable("beta", [width], initializer=tf1.zeros_initializer())
    mean, variance = tf.nn.moments(inputs, axes=[-1], keepdims=True)
    return (inputs - mean) * tf.math.rsqrt(variance + LAYER_NORM_EPSILON) * gamma + beta


def dropout(inputs, rate):
    if rate is None or rate == 0.0:
        return inputs
    return randomness.dropout(inputs, rate)


class BertModel:
    """BERT encoder + pooler built into the current graph under the ``bert`` scope.

    Outputs: ``sequence_output`` [B, S_last, H] (S_last < S when a token selector drops tokens),
    ``pooled_output`` [B, H], ``all_encoder_layers`` (list of [B, S_j, H]),
    ``all_attention_probs`` (list of [B, heads_j, S_j, S_j]), ``embedding_output``.
    """

    def __init__(self, config, is_training, input_ids, input_mask=None, token_type_ids=None,
                 dense_factory=None, token_selector=None, scope="bert"):
        config = config.copy()
        if not is_training:
            config.hidden_dropout_prob = 0.0
            config.attention_probs_dropout_prob = 0.0
        self.config = config
        factory = dense_factory or config_dense_factory(config)
        seq_length = input_ids.shape[1]
        if input_mask is None:
            input_mask = tf.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = tf.zeros_like(input_ids)
        if seq_length is not None and seq_length > config.max_position_embeddings:
            raise ConfigError(f"sequence length {seq_length} is above max_position_embeddings "
                              f"{config.max_position_embeddings}")

        with tf1.variable_scope(scope):
            with tf1.variable_scope("embeddings"):
                self.embedding_table = tf1.get_variable(
                    "word_embeddings", [config.vocab_size, config.hidden_size],
                    initializer=create_initializer(config.initializer_range))
                embeddings = tf.gather(self.embedding_table, input_ids)
                token_type_table = tf1.get_variable(
                    "token_type_embeddings", [config.type_vocab_size, config.hidden_size],
                    initializer=create_initializer(config.initializer_range))
                embeddings += tf.gather(token_type_table, token_type_ids)
                position_table = tf1.get_variable(
                    "position_embeddings", [config.max_position_embeddings, config.hidden_size],
                    initializer=create_initializer(config.initializer_range))
                embeddings += tf.expand_dims(position_table[:tf.shape(input_ids)[1]], 0)
                embeddings = dropout(layer_norm(embeddings), config.hidden_dropout_prob)
            self.embedding_output = embeddings

            with tf1.variable_scope("encoder"):
                hidden = embeddings
                mask = input_mask
                self.all_encoder_layers = []
                self.all_attention_probs = []
                for layer_index in range(config.num_hidden_layers):
                    with tf1.variable_scope(f"layer_{layer_index}"):
                        hidden, mask, probs = _encoder_layer(config, layer_index, hidden, mask,
                                                             factory, token_selector)
                    self.all_encoder_layers.append(hidden)
                    self.all_attention_probs.append(probs)
            self.sequence_output = hidden
            self.output_mask = mask

            with tf1.variable_scope("pooler"):
                first_token = self.sequence_output[:, 0]
                self.pooled_output = factory(first_token, config.hidden_size, "dense", None,
                                             activation=tf.tanh)


def _encoder_layer(config, layer_index, hidden, input_mask, factory, token_selector):
    heads = config.heads(layer_index)
    head_size = config.head_size(layer_index)
    activation = ACTIVATIONS[config.hidden_act]
    with tf1.variable_scope("attention"):
        with tf1.variable_scope("self"):
            context, probs = _self_attention(config, layer_index, hidden, input_mask, heads,
                                             head_size, factory)
        with tf1.variable_scope("output"):
            attention_out = factory(context, config.hidden_size, "dense", layer_index)
            attention_out = dropout(attention_out, config.hidden_dropout_prob)
            attention_out = layer_norm(attention_out + hidden)
    if token_selector is not None:
        attention_out, input_mask = token_selector(layer_index, attention_out, probs, input_mask)
    with tf1.variable_scope("intermediate"):
        intermediate = factory(attention_out, config.intermediate(layer_index), "dense",
                               layer_index, activation=activation)
    with tf1.variable_scope("output"):
        out = factory(intermediate, config.hidden_size, "dense", layer_index)
        out = dropout(out, config.hidden_dropout_prob)
        out = layer_norm(out + attention_out)
    return out, input_mask, probs


def _self_attention(config, layer_index, hidden, input_mask, heads, head_size, factory):
    batch = tf.shape(hidden)[0]
    seq = tf.shape(hidden)[1]

    def split_heads(tensor):  # [B, S, heads*size] -> [B, heads, S, size]
        return tf.transpose(tf.reshape(tensor, [batch, seq, heads, head_size]), [0, 2, 1, 3])

    width = heads * head_size
    query = split_heads(factory(hidden, width, "query", layer_index))
    key = split_heads(factory(hidden, width, "key", layer_index))
    value = split_heads(factory(hidden, width, "value", layer_index))
    scores = tf.matmul(query, key, transpose_b=True) * (1.0 / math.sqrt(head_size))
    mask_bias = (1.0 - tf.cast(input_mask[:, tf.newaxis, tf.newaxis, :], scores.dtype))
    scores += mask_bias * MASKED_LOGIT
    probs = tf.nn.softmax(scores)
    context = tf.matmul(dropout(probs, config.attention_probs_dropout_prob), value)
    context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch, seq, width])
    context.set_shape([None, None, width])
    return context, probs


def count_parameters(shapes):
    """Number of scalars in an iterable of shapes."""
    return int(sum(np.prod(shape) for shape in shapes))
