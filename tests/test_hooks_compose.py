"""The hook contract: kernel transforms chain in a stated order, one teacher per graph, phases
run in order, and an after-update op runs exactly once per training step."""
import os

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoint, classifier, methods, modeling
from bert.errors import UsageError
from distill.method import DistillMethod, DistillSettings
from flop.method import FlopMethod, FlopSettings
from tiny_bert import (classifier_logits, example_inputs, tiny_config, write_factorized_model,
                       write_small_model, write_sst2_task, write_tiny_model)

tf1 = tf.compat.v1

SCALE = 3.0  # the mask method's factor on every kernel it touches
QUANT_STEP = 0.05  # the fake-quantizer's grid
MASKED_KERNEL = "query"  # the mask method touches only query kernels
TRAIN_STEPS = 7


class _Hooks(methods.GraphHooks):
    def __init__(self, config, stage, transform):
        self.bert_config = config
        self.transform_stage = stage
        self._transform = transform

    def transform_kernel(self, kernel, site, part):
        return self._transform(kernel, site)


class _KernelMethod(methods.Method):
    """A method whose hooks transform kernels at ``stage`` with ``transform(kernel, site)``."""

    def __init__(self, name, stage, transform):
        self.name = name
        self._stage = stage
        self._transform = transform

    def build(self, bert_config, is_training):
        return _Hooks(bert_config, self._stage, self._transform)


def _scale_query(kernel, site):
    return kernel * SCALE if site.name == MASKED_KERNEL else kernel


def _fake_quantize(kernel, site):
    return tf.round(kernel / QUANT_STEP) * QUANT_STEP


def _by_hand(values):
    """Mask (×SCALE on query kernels), then quantize every kernel: numpy on the weights."""
    out = dict(values)
    for name, value in values.items():
        if name.startswith("bert/") and name.endswith("/kernel"):
            if name.endswith(f"/{MASKED_KERNEL}/kernel"):
                value = value * SCALE
            out[name] = np.round(value / QUANT_STEP) * QUANT_STEP
    return out


def test_two_kernel_transforms_compose_in_stage_order_and_equal_a_hand_computation(tmp_path):
    config, values = write_tiny_model(tmp_path / "model")
    write_tiny_model(tmp_path / "by_hand", config, _by_hand(values))
    quantize = _KernelMethod("quantize", methods.QUANTIZE, _fake_quantize)
    mask = _KernelMethod("mask", methods.MASK, _scale_query)
    # Listed quantizer first: the chain still masks first, as TRANSFORM_STAGES says.
    composed = classifier_logits(
        config, str(tmp_path / "model"),
        lambda c: methods.build_all([quantize, mask], c, False).dense_factory)
    expected = classifier_logits(config, str(tmp_path / "by_hand"))
    np.testing.assert_allclose(composed, expected, atol=1e-5)
    plain = classifier_logits(config, str(tmp_path / "model"))
    assert np.abs(composed - plain).max() > 1e-3  # the transforms changed the model


def test_kernel_transform_stacks_on_flop_gates_of_a_factorized_model(tmp_path):
    """FLOP's gate (first stage) and a mask on the factors compose on one low-rank kernel."""
    write_factorized_model(tmp_path)
    config = modeling.BertConfig.from_json_file(str(tmp_path / "fact" / "bert_config.json"))
    flop = FlopMethod(FlopSettings(target_sparsity=0.5))
    seen = []

    def record(kernel, site):
        seen.append((site.key, site.rank, tuple(kernel.shape.as_list())))
        return kernel

    recorder = _KernelMethod("record", methods.QUANTIZE, record)
    with tf.Graph().as_default():
        hooks = methods.build_all([recorder, flop], config, False)
        ids, mask, types = example_inputs(config.vocab_size)
        modeling.BertModel(config, False, tf.constant(ids), tf.constant(mask),
                           tf.constant(types), dense_factory=hooks.dense_factory)
        assert [part.transform_stage for part in hooks.kernel_transforms] == [
            methods.GATE, methods.QUANTIZE]
        gated = hooks.parts[1].gated_kernels
    ranks = config.extra["kernel_ranks"]
    query = "layer_0/attention/self/query"
    assert (query, ranks[query], (config.hidden_size, ranks[query])) in seen  # the P factor
    assert (query, ranks[query], (ranks[query], config.hidden_size)) in seen  # the Q factor
    assert {kernel.key for kernel in gated} == {key for key, rank in ranks.items() if rank}


def _flop_and_distill(tmp_path, distill_teacher):
    write_factorized_model(tmp_path)
    config = modeling.BertConfig.from_json_file(str(tmp_path / "fact" / "bert_config.json"))
    dense = modeling.BertConfig.from_json_file(str(tmp_path / "dense" / "bert_config.json"))
    flop = FlopMethod(FlopSettings(target_sparsity=0.5, teacher_config=dense,
                                   teacher_checkpoint=str(tmp_path / "dense")))
    teacher_config = modeling.BertConfig.from_json_file(
        str(distill_teacher / "bert_config.json"))
    distill = DistillMethod(DistillSettings(teacher_config, str(distill_teacher)))
    return config, [flop, distill]


def _build_training_graph(config, method_list):
    ids, mask, types = example_inputs(config.vocab_size)
    features = {"input_ids": tf.constant(ids), "input_mask": tf.constant(mask),
                "segment_ids": tf.constant(types),
                "label_ids": tf.constant([0, 1, 1], tf.int32)}
    tf1.train.get_or_create_global_step()
    hooks = methods.build_all(method_list, config, True)
    graph = classifier.create_model(config, True, features, 2, False, hooks)
    hooks.create_variables(graph)
    return hooks, graph, hooks.extra_loss(graph)


def test_two_distilling_methods_share_one_teacher(tmp_path):
    config, method_list = _flop_and_distill(tmp_path, tmp_path / "dense")
    with tf.Graph().as_default():
        hooks, graph, loss = _build_training_graph(config, method_list)
        teacher_variables = [v.op.name for v in tf1.local_variables()
                             if v.op.name.startswith("teacher/")]
        assert len(graph.teachers) == 1
        with tf1.Session() as session:
            session.run([tf1.global_variables_initializer(), tf1.local_variables_initializer()])
            value = session.run(loss)
    stored = {name for name, _ in tf.train.list_variables(
        checkpoint.resolve_checkpoint(str(tmp_path / "dense")))}
    assert sorted(teacher_variables) == sorted(f"teacher/{name}" for name in stored
                                               if name != "global_step")
    assert np.isfinite(value)
    assert set(hooks.parts[1].terms) == {"logit", "hidden", "attention"}


def test_two_different_teachers_in_one_graph_are_refused(tmp_path):
    other = tmp_path / "other_teacher"
    write_tiny_model(other, tiny_config())
    config, method_list = _flop_and_distill(tmp_path, other)
    with tf.Graph().as_default(), pytest.raises(UsageError, match="shares one teacher"):
        _build_training_graph(config, method_list)


class _CountingHooks(methods.GraphHooks):
    """After each update: count, and copy a kernel (so the copy shows the updated value)."""

    def __init__(self):
        self.hook = _StepCounter()

    def create_variables(self, graph):
        with tf1.variable_scope("counting"):
            self.count = tf1.get_variable("updates", [], tf.int64, trainable=False,
                                          initializer=tf1.zeros_initializer())
            kernel = _pooler_kernel()
            self.copy = tf1.get_variable("pooler_copy", kernel.shape, trainable=False,
                                         initializer=tf1.zeros_initializer())

    def after_update_ops(self, graph):
        return [self.count.assign_add(1), self.copy.assign(_pooler_kernel())]

    def session_hooks(self, graph):
        return [self.hook]


def _pooler_kernel():
    return next(v for v in tf1.global_variables() if v.op.name == "bert/pooler/dense/kernel")


class _StepCounter(tf1.train.SessionRunHook):
    def __init__(self):
        self.calls = 0

    def after_run(self, run_context, run_values):
        self.calls += 1


class _CountingMethod(methods.Method):
    name = "counting"
    allow_missing = (r"^counting/",)

    def __init__(self):
        self.hooks = []

    def build(self, bert_config, is_training):
        self.hooks.append(_CountingHooks())
        return self.hooks[-1]


def test_after_update_op_runs_once_per_step_after_the_update(tmp_path):
    model = tmp_path / "model"
    write_small_model(model, num_labels=2)
    data = write_sst2_task(tmp_path / "data", rows=16)
    settings = classifier.ClassifierSettings(
        task_name="SST-2", data_dir=str(data), vocab_file=str(model / "vocab.txt"),
        bert_config_file=str(model / "bert_config.json"), init_checkpoint=str(model),
        output_dir=str(tmp_path / "out"), max_seq_length=16, train_batch_size=4,
        learning_rate=1e-2, num_train_steps=TRAIN_STEPS, do_train=True)
    method = _CountingMethod()
    classifier.Classifier(settings, [method]).run()
    reader = tf.train.load_checkpoint(os.path.join(settings.output_dir))
    assert reader.get_tensor("global_step") == TRAIN_STEPS
    assert reader.get_tensor("counting/updates") == TRAIN_STEPS
    np.testing.assert_array_equal(reader.get_tensor("counting/pooler_copy"),
                                  reader.get_tensor("bert/pooler/dense/kernel"))
    assert method.hooks[0].hook.calls == TRAIN_STEPS  # the session hook saw every step


def test_a_kernel_transform_outside_the_stated_stages_is_refused():
    config = tiny_config()
    method = _KernelMethod("odd", "somewhere", _scale_query)
    with tf.Graph().as_default(), pytest.raises(UsageError, match="transform_stage"):
        methods.build_all([method], config, False)
