"""Prune OFA's pieces, checked against their definitions: the cubic schedule, magnitude masks,
the pattern lock under large gradients, and fake quantization against a numpy round trip."""
import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoint, classifier, modeling
from bert.errors import UsageError
from prune_ofa import masks, quantize
from prune_ofa.method import (PruneOfaMethod, PruneOfaSettings, kernel_sparsity, mark_config,
                              overall_sparsity)
from prune_ofa.schedule import PruningSchedule
from tiny_bert import write_small_model, write_sst2_task, write_tiny_model

tf1 = tf.compat.v1

SCHEDULE = PruningSchedule(initial_sparsity=0.1, final_sparsity=0.9, pruning_start=10,
                           pruning_end=110, pruning_frequency=25)
CHECKED_STEPS = (0, 9, 10, 35, 60, 85, 109, 110, 500)


def run_graph(build):
    with tf.Graph().as_default():
        outputs = build()
        with tf1.Session() as session:
            return session.run(outputs)


def test_cubic_schedule_equals_the_formula_at_chosen_steps():
    s_i, s_f, t0, t1 = 0.1, 0.9, 10, 110
    for step in CHECKED_STEPS:
        progress = min(max((step - t0) / (t1 - t0), 0.0), 1.0)
        expected = s_f + (s_i - s_f) * (1 - progress) ** 3
        assert SCHEDULE.target(step) == pytest.approx(expected, abs=1e-12)
    targets = run_graph(lambda: [SCHEDULE.target_tensor(tf.constant(step, tf.int64))
                                 for step in CHECKED_STEPS])
    np.testing.assert_allclose(targets, [SCHEDULE.target(step) for step in CHECKED_STEPS],
                               atol=1e-6)
    assert SCHEDULE.target(60) == pytest.approx(0.9 - 0.8 * 0.125)
    updates = [step for step in range(200) if SCHEDULE.is_update_step(step)]
    assert updates == [10, 35, 60, 85, 110]
    flags = run_graph(lambda: [SCHEDULE.update_step_tensor(tf.constant(step, tf.int64))
                               for step in range(200)])
    assert [step for step, flag in enumerate(flags) if flag] == updates


@pytest.mark.parametrize("block", ["1x1", "1x4", "4x1"])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.8, 0.9])
def test_mask_zeroes_exactly_the_smallest_round_s_n_units(block, sparsity):
    weights = np.random.RandomState(3).randn(16, 24).astype(np.float32)
    weights[0, :4] = 0.0  # zeros already there are dropped first
    mask = run_graph(lambda: masks.magnitude_mask(tf.constant(weights),
                                                  tf.constant(sparsity), block))
    rows, columns = {"1x1": (1, 1), "1x4": (1, 4), "4x1": (4, 1)}[block]
    scores = np.abs(weights).reshape(16 // rows, rows, 24 // columns, columns).sum(axis=(1, 3))
    block_mask = mask.reshape(16 // rows, rows, 24 // columns, columns)
    assert (block_mask == block_mask[:, :1, :, :1]).all(), "a block is kept or dropped whole"
    kept = block_mask[:, 0, :, 0].astype(bool)
    assert (~kept).sum() == int(np.floor(sparsity * scores.size + 0.5))
    if 0 < sparsity:
        assert scores[~kept].max() <= scores[kept].min()


def test_mask_refuses_kernels_that_do_not_split_into_blocks():
    config = modeling.BertConfig(vocab_size=20, hidden_size=6, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=10)
    method = PruneOfaMethod(PruneOfaSettings(PruningSchedule(0.0, 0.5, 0, 1, 1, "4x1")))
    with tf.Graph().as_default(), pytest.raises(UsageError, match="--block=4x1"):
        hooks = method.build(config, True)
        modeling.BertModel(config, True, tf.zeros([1, 4], tf.int32),
                           dense_factory=modeling.config_dense_factory(config, [hooks]))


def sparse_model(folder, share=0.5):
    """A small model folder whose encoder kernels are ``share`` zeros, marked sparse."""
    config = write_small_model(folder)
    values = checkpoint.read_checkpoint(str(folder))
    rng = np.random.RandomState(0)
    for name, value in values.items():
        if name.startswith("bert/encoder/") and name.endswith("/kernel"):
            value[rng.rand(*value.shape) < share] = 0.0
    write_tiny_model(folder, mark_config(config, values), values)
    return config, values


def zeros(values):
    return {name: value == 0.0 for name, value in values.items()
            if name.startswith("bert/encoder/") and name.endswith("/kernel")}


def tiny_settings(model_dir, data_dir, output_dir, **overrides):
    values = dict(task_name="SST-2", data_dir=str(data_dir), vocab_file=f"{model_dir}/vocab.txt",
                  bert_config_file=f"{model_dir}/bert_config.json",
                  init_checkpoint=str(model_dir), output_dir=str(output_dir), max_seq_length=16,
                  train_batch_size=8, learning_rate=0.05, num_train_epochs=2,
                  save_checkpoints_steps=100, do_train=True, warmup_proportion=0.0)
    values.update(overrides)
    return classifier.ClassifierSettings(**values)


def test_pattern_lock_keeps_every_zero_zero_under_large_gradients(tmp_path):
    _, values = sparse_model(tmp_path / "sparse")
    data = write_sst2_task(tmp_path / "data")
    # The folder's config brings the lock: plain fine-tuning at a huge rate keeps the pattern.
    run = classifier.Classifier(tiny_settings(tmp_path / "sparse", data, tmp_path / "tuned"))
    assert [method.name for method in run.methods] == ["prune_ofa"]
    run.run()
    tuned = checkpoint.read_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "tuned")))
    before, after = zeros(values), zeros(tuned)
    assert before.keys() == after.keys() and before
    for name in before:
        assert (after[name] == before[name]).all(), name
        moved = np.abs(tuned[name] - values[name])[~before[name]]
        assert moved.mean() > 1e-3, f"{name} did not train"
    # The lock is what keeps them: without it the same run revives the zeros.
    free = classifier.Classifier(tiny_settings(tmp_path / "sparse", data, tmp_path / "free"),
                                 config_methods=False)
    free.run()
    unlocked = checkpoint.read_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "free")))
    assert overall_sparsity(unlocked) < 0.01


def test_gradual_pruning_reaches_the_target_in_every_kernel(tmp_path):
    write_small_model(tmp_path / "dense")
    data = write_sst2_task(tmp_path / "data")  # 40 rows, batch 8: 10 steps in 2 epochs
    schedule = PruningSchedule(0.2, 0.75, pruning_start=2, pruning_end=8, pruning_frequency=3)
    run = classifier.Classifier(tiny_settings(tmp_path / "dense", data, tmp_path / "pruned",
                                              do_eval=True),
                                [PruneOfaMethod(PruneOfaSettings(schedule))])
    result = run.run()
    values = checkpoint.read_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "pruned")))
    for key, share in kernel_sparsity(values).items():
        size = values[f"bert/encoder/{key}/kernel"].size
        assert share * size == int(np.floor(0.75 * size + 0.5)), key
    assert result["encoder_sparsity"] == pytest.approx(0.75, abs=0.01)
    assert not kernel_sparsity({"bert/pooler/dense/kernel": np.zeros([2, 2])})


def numpy_fake_quant(values, low, high, narrow_range=False):
    """TF's documented fake-quant arithmetic, independently in numpy (float32)."""
    values, low, high = (np.asarray(x, np.float32) for x in (values, low, high))
    quant_min, quant_max = (1 if narrow_range else 0), 255
    scale = np.float32((high - low) / np.float32(quant_max - quant_min))
    zero_from_min = np.float32(quant_min) - low / scale
    zero_point = np.clip(np.round(zero_from_min), quant_min, quant_max)
    nudged_low = np.float32((quant_min - zero_point) * scale)
    nudged_high = np.float32((quant_max - zero_point) * scale)
    clamped = np.clip(values, nudged_low, nudged_high)
    return np.floor((clamped - nudged_low) / scale + np.float32(0.5)) * scale + nudged_low


def test_fake_quantization_equals_a_numpy_int8_and_uint8_round_trip():
    rng = np.random.RandomState(5)
    weights = rng.randn(32, 16).astype(np.float32)
    activations = (rng.randn(64, 32) * 3 + 1).astype(np.float32)
    low, high = -2.5, 6.0  # a learned range narrower than the batch: values clip

    def build():
        return [quantize.fake_quant_weight(tf.constant(weights)),
                tf.quantization.fake_quant_with_min_max_vars(tf.constant(activations), low,
                                                             high, num_bits=8)]

    quantized_weights, quantized_activations = run_graph(build)
    bound = np.abs(weights).max()
    scale = bound / 127.0
    integers = np.clip(np.round(weights / scale), -127, 127)
    np.testing.assert_allclose(quantized_weights, integers * scale, atol=1e-6)
    assert len(np.unique(quantized_weights)) <= 255
    np.testing.assert_allclose(quantized_weights,
                               numpy_fake_quant(weights, -bound, bound, narrow_range=True),
                               atol=1e-6)
    np.testing.assert_allclose(quantized_activations, numpy_fake_quant(activations, low, high),
                               atol=1e-5)
    # The uint8 round trip ONNX runs with the export's (scale, zero point).
    scale, zero_point = quantize.nudged_scale_zero_point(low, high)
    codes = np.clip(np.round(activations / scale) + zero_point, 0, 255)
    np.testing.assert_allclose(quantized_activations, (codes - zero_point) * scale, atol=1e-5)


def test_qat_ranges_follow_the_batches_and_are_saved(tmp_path):
    write_small_model(tmp_path / "dense")
    data = write_sst2_task(tmp_path / "data")
    run = classifier.Classifier(
        tiny_settings(tmp_path / "dense", data, tmp_path / "qat", learning_rate=1e-3,
                      do_eval=True),
        [quantize.QatMethod(quantize.QatSettings(range_decay=0.5))])
    result = run.run()
    values = checkpoint.read_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "qat")))
    ranges = quantize.learned_ranges(values)
    kernels = [name for name in values if name.startswith("bert/encoder/")
               and name.endswith("/kernel")]
    assert len(ranges) == len(kernels) and kernels
    for low, high in ranges.values():
        assert low < 0.0 < high or low < high
    assert values[quantize.COUNTER] == 10 == result["qat_range_updates"]
