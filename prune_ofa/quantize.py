"""Quantization-aware training as a method of the hook contract, the last stage of the kernel
chain (``bert.methods.QUANTIZE``): what ships as INT8 is simulated while the model trains.

* Weights of every encoder linear kernel: INT8, per tensor, symmetric: scale = max|w| / 127
  (TF's fake quantization over [−max|w|, max|w|] with ``narrow_range``: levels −127..127).
* The input of every encoder linear kernel (and the activations between the factors of a
  low-rank kernel): UINT8, per tensor, affine, over a range ``<kernel>/input_quant/{min,max}``
  that follows the batches' min / max by an exponential moving average after each update.
  Until the first update the activations pass unquantized; TF nudges each range so that zero
  is exactly representable, and ``nudged_scale_zero_point`` gives export the same numbers.

The ranges are variables of the checkpoint: a model folder with ``qat`` in its config is
evaluated with them (``from_config``), and ``deploy.export`` writes an INT8 ONNX that uses them
(``prune_ofa.deployment``) instead of quantizing afresh.
"""
import dataclasses
import re
from typing import List

import numpy as np
import tensorflow as tf

from bert import methods
from bert.errors import UsageError

tf1 = tf.compat.v1

CONFIG_KEY = "qat"
ACTIVATION_BITS = 8
QUANT_MAX = 2 ** ACTIVATION_BITS - 1  # uint8 levels 0..255
WEIGHT_LEVELS = 127  # int8 symmetric: −127..127
INPUT_SCOPE = "input_quant"  # the range of a kernel's input
RANK_SCOPE = "rank_quant"  # the range between a low-rank kernel's factors
COUNTER = "qat/range_updates"  # how many moving-average updates the ranges have had
DEFAULT_RANGE_DECAY = 0.99
RANGE_VARIABLES = rf"/({INPUT_SCOPE}|{RANK_SCOPE})/(min|max)$"
HALF = 0.5


@dataclasses.dataclass(frozen=True)
class QatSettings:
    range_decay: float = DEFAULT_RANGE_DECAY  # weight of the old range in each update

    def validate(self):
        if not 0.0 <= self.range_decay < 1.0:
            raise UsageError(f"--range_decay={self.range_decay}: must be in [0, 1)")


def nudged_scale_zero_point(low, high):
    """TF's FakeQuantWithMinMaxVars arithmetic (float32) for a uint8 range: (scale, zero point)
    with zero exactly representable — what an ONNX QuantizeLinear must use to match it."""
    low, high = np.float32(low), np.float32(high)
    scale = np.float32((high - low) / np.float32(QUANT_MAX))
    zero_from_min = np.float32(0.0) - low / scale
    zero_point = int(np.clip(np.floor(zero_from_min + np.float32(HALF)), 0, QUANT_MAX))
    return scale, zero_point


def fake_quant_weight(kernel):
    """INT8 symmetric per-tensor; the straight-through gradient passes inside the range."""
    bound = tf.stop_gradient(tf.reduce_max(tf.abs(kernel)))
    return tf.quantization.fake_quant_with_min_max_vars(kernel, -bound, bound,
                                                        num_bits=ACTIVATION_BITS,
                                                        narrow_range=True)


@dataclasses.dataclass
class TrackedRange:
    """One activation's range variables and this batch's extremes."""
    low: tf.Variable
    high: tf.Variable
    batch_low: tf.Tensor
    batch_high: tf.Tensor


def range_counter():
    """The graph's one counter, at the root scope whichever kernel asks first."""
    with tf1.variable_scope(tf1.VariableScope(tf1.AUTO_REUSE, name="")):
        return tf1.get_variable(COUNTER, [], tf.int64, tf1.zeros_initializer(), trainable=False)


class QatHooks(methods.GraphHooks):
    """One graph's fake-quantization of the encoder's kernels and their inputs."""
    transform_stage = methods.QUANTIZE

    def __init__(self, settings: QatSettings, bert_config, is_training):
        self.settings = settings
        self.bert_config = bert_config
        self.is_training = is_training
        self.ranges: List[TrackedRange] = []
        self._counter = None

    def _quantize_activation(self, values, scope, name):
        with tf1.variable_scope(scope, reuse=tf1.AUTO_REUSE), tf1.variable_scope(name):
            low = tf1.get_variable("min", [], initializer=tf1.zeros_initializer(),
                                   trainable=False)
            high = tf1.get_variable("max", [], initializer=tf1.zeros_initializer(),
                                    trainable=False)
        if self._counter is None:
            self._counter = range_counter()
        if self.is_training:
            self.ranges.append(TrackedRange(low, high, tf.reduce_min(values),
                                            tf.reduce_max(values)))
        return tf.cond(self._counter > 0,
                       lambda: tf.quantization.fake_quant_with_min_max_vars(
                           values, low, high, num_bits=ACTIVATION_BITS),
                       lambda: tf.identity(values))

    def transform_inputs(self, inputs, site):
        if site.layer_index is None:
            return inputs
        return self._quantize_activation(inputs, site.name, INPUT_SCOPE)

    def transform_rank(self, hidden, site):
        if site.layer_index is None:
            return hidden
        return self._quantize_activation(hidden, site.name, RANK_SCOPE)

    def transform_kernel(self, kernel, site, part):
        if site.layer_index is None:
            return kernel
        return fake_quant_weight(kernel)

    def after_update_ops(self, graph):
        """Each range moves toward this batch's min / max; the first update takes them."""
        if not self.ranges:
            return []
        decay = self.settings.range_decay
        first = tf.equal(self._counter, 0)
        ops = []
        for tracked in self.ranges:
            for variable, batch in ((tracked.low, tracked.batch_low),
                                    (tracked.high, tracked.batch_high)):
                moved = decay * variable + (1.0 - decay) * batch
                ops.append(variable.assign(tf.where(first, batch, moved)))
        with tf.control_dependencies(ops):
            return [self._counter.assign_add(1)]

    def eval_metric_ops(self, graph):
        return {"qat_range_updates": tf1.metrics.mean(tf.cast(self._counter, tf.float32))} \
            if self._counter is not None else {}


class QatMethod(methods.Method):
    """Fake-quantized encoder kernels and inputs with moving-average ranges."""
    name = "qat"
    allow_missing = (RANGE_VARIABLES, rf"^{COUNTER}$")
    simulates_int8 = True

    def __init__(self, settings: QatSettings = QatSettings()):
        self.settings = settings

    def build(self, bert_config, is_training):
        return QatHooks(self.settings, bert_config, is_training)

    def hparams(self):
        return {"qat": True, **dataclasses.asdict(self.settings)}


def mark_config(config, settings: QatSettings):
    """The config of a QAT model folder: its evaluation runs the fake-quantized graph."""
    config.extra[CONFIG_KEY] = {"weights": "int8 symmetric per tensor",
                                "activations": "uint8 affine per tensor, moving average",
                                **dataclasses.asdict(settings)}
    return config


def from_config(bert_config):
    """QAT for a model folder whose config says it was trained quantization-aware."""
    stored = bert_config.extra.get(CONFIG_KEY)
    if not stored:
        return None
    return QatMethod(QatSettings(stored.get("range_decay", DEFAULT_RANGE_DECAY)))


def learned_ranges(values):
    """{(kernel scope, INPUT_SCOPE | RANK_SCOPE): (min, max)} of a checkpoint's values."""
    found = {}
    for name, value in values.items():
        match = re.search(RANGE_VARIABLES, name)
        if match:
            key = (name[:match.start()], match.group(1))
            found.setdefault(key, {})[match.group(2)] = float(value)
    return {key: (pair["min"], pair["max"]) for key, pair in found.items()}


def kernel_of_range(scope, kind, values):
    """The kernel variable whose input a range quantizes: the plain kernel's, or the first
    factor's (input) / second factor's (rank activations) of a low-rank one."""
    plain = f"{scope}/kernel"
    if plain in values:
        return plain
    return f"{scope}_p/kernel" if kind == INPUT_SCOPE else f"{scope}_q/kernel"
