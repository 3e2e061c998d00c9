"""remove_mask: the compact model predicts what the masked model predicts in eval mode, its
info.txt adds up, and a checkpoint without gates is refused."""
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoint, modeling
from conftest import REPO_ROOT
from flop import factorize, remove_mask
from flop.method import FlopMethod, FlopSettings
from tiny_bert import classifier_logits, write_factorized_model

tf1 = tf.compat.v1

LOGIT_TOLERANCE = 1e-4
RANK = 8  # tiny model: hidden 8, intermediate 12, so every factor pair has rank min(in, out) = 8
OPEN, CLOSED = 6.0, -6.0
# Chosen gates (E[L0] per unit ≈ 1 for OPEN, ≈ 0.006 for CLOSED):
MERGED = "layer_0/attention/self/query"  # 8 kept > 8·8/16 = 4: multiplied back into a kernel
LOW_RANK = "layer_0/attention/self/key"  # 2 kept ≤ 4: stays factored at rank 2
EMPTY = "layer_0/attention/self/value"  # 0 kept: only the bias is left
LOW_RANK_FFN = "layer_1/intermediate/dense"  # 3 kept ≤ 8·12/20 = 4.8


def _log_alphas(keys, rng):
    chosen = {MERGED: np.full(RANK, OPEN), LOW_RANK: np.array([OPEN] * 2 + [CLOSED] * 6),
              EMPTY: np.full(RANK, CLOSED),
              LOW_RANK_FFN: np.array([CLOSED, OPEN, CLOSED, OPEN, CLOSED, CLOSED, OPEN, CLOSED])}
    return {key: chosen.get(key, rng.normal(0.0, 3.0, RANK)).astype(np.float32)
            for key in keys}


@pytest.fixture(scope="module")
def masked_dir(tmp_path_factory):
    """A factorized tiny model with trained-looking gates and multipliers."""
    root = tmp_path_factory.mktemp("masked")
    write_factorized_model(root)
    config = modeling.BertConfig.from_json_file(str(root / "fact" / "bert_config.json"))
    values = checkpoint.read_checkpoint(str(root / "fact"))
    gates = _log_alphas(config.extra["kernel_ranks"], np.random.RandomState(0))
    for key, log_alpha in gates.items():
        values[f"{factorize.variable_prefix(key)}/log_alpha"] = log_alpha
    values["lagrangian/lambda_1"] = np.float32(-0.3)
    values["lagrangian/lambda_2"] = np.float32(0.1)
    checkpoint.write_model_folder(str(root / "masked"), config,
                                  str(root / "fact" / "vocab.txt"), values, step="test",
                                  source="test")
    return root


def _masked_factory(config):
    return FlopMethod(FlopSettings(target_sparsity=0.5)).build(config, False).dense_factory


def test_compact_model_predicts_what_the_masked_model_predicts(masked_dir, tmp_path):
    info = remove_mask.remove_mask(str(masked_dir / "masked"), str(tmp_path / "compact"),
                                   iterations=0)
    config = modeling.BertConfig.from_json_file(str(masked_dir / "masked" / "bert_config.json"))
    compact_config = modeling.BertConfig.from_json_file(str(tmp_path / "compact" / "bert_config.json"))
    ranks = compact_config.extra["kernel_ranks"]
    assert MERGED not in ranks and ranks[LOW_RANK] == 2 and ranks[EMPTY] == 0
    assert ranks[LOW_RANK_FFN] == 3
    assert compact_config.extra["kept_ranks"][MERGED] == RANK
    stored = checkpoint.list_checkpoint(str(tmp_path / "compact"))
    prefix = factorize.variable_prefix
    assert stored[prefix(MERGED) + "/kernel"] == [8, 8]
    assert stored[prefix(LOW_RANK) + "_p/kernel"] == [8, 2]
    assert prefix(EMPTY) + "_p/kernel" not in stored and prefix(EMPTY) + "/bias" in stored
    assert not [name for name in stored if "log_alpha" in name or name.startswith("lagrangian/")]
    masked = classifier_logits(config, str(masked_dir / "masked"), _masked_factory)
    compact = classifier_logits(compact_config, str(tmp_path / "compact"))
    np.testing.assert_allclose(compact, masked, atol=LOGIT_TOLERANCE)
    assert (tmp_path / "compact" / remove_mask.INFO_FILE).read_text() == info


def test_a_rank_zero_kernel_outputs_its_bias():
    with tf.Graph().as_default():
        inputs = tf.ones([2, 3, 5])
        out = modeling.low_rank_dense(inputs, 4, "dense", 0, activation=tf.tanh)
        assert [v.op.name for v in tf1.global_variables()] == ["dense/bias"]  # no factors
        bias = tf1.global_variables()[0]
        with tf1.Session() as session:
            session.run(bias.assign([0.1, 0.2, -0.3, 0.0]))
            values = session.run(out)
    assert out.shape.as_list() == [2, 3, 4]
    np.testing.assert_allclose(values, np.tanh(np.broadcast_to([0.1, 0.2, -0.3, 0.0],
                                                               [2, 3, 4])), rtol=1e-6)


def _kernel_shape(key):
    if key.endswith("intermediate/dense"):
        return 8, 12
    if key.endswith("/output/dense") and "attention" not in key:
        return 12, 8
    return 8, 8


def _parse_info(text):
    fields = {}
    for line in text.strip().splitlines():
        name, value = line.split(": ")
        fields[name] = float(value)
    return fields


def test_info_numbers_add_up(masked_dir, tmp_path):
    info = _parse_info(remove_mask.remove_mask(str(masked_dir / "masked"),
                                               str(tmp_path / "compact"), iterations=0))
    compact_config = modeling.BertConfig.from_json_file(str(tmp_path / "compact" / "bert_config.json"))
    # Per layer: 4 kernels 8×8 and 2 kernels 8×12, each factored at rank 8.
    assert info["dense_total_params"] == 2 * (4 * (8 + 8) * 8 + 2 * (8 + 12) * 8)  # 1664
    assert info["dense_origin_params"] == 2 * (4 * 8 * 8 + 2 * 8 * 12)  # 896
    expected_pruned = kept_params = 0
    for key, kept in compact_config.extra["kept_ranks"].items():
        in_width, out_width = _kernel_shape(key)
        merged = kept > in_width * out_width / (in_width + out_width)
        expected_pruned += in_width * out_width if merged else kept * (in_width + out_width)
        kept_params += kept * (in_width + out_width)
    assert info["dense_pruned_params"] == expected_pruned
    assert info["deterministic_sparsity"] == pytest.approx(1 - kept_params / 1664, abs=1e-6)
    all_params = modeling.count_parameters(
        value.shape for value in checkpoint.read_checkpoint(str(masked_dir / "dense")).values())
    assert info["non_kernel_params"] == all_params - info["dense_origin_params"]
    assert info["total_params"] == info["dense_origin_params"] + info["non_kernel_params"]
    assert info["pruned_total_params"] == info["dense_pruned_params"] + info["non_kernel_params"]
    assert info["actual_compact_rate"] == pytest.approx(
        info["pruned_total_params"] / info["total_params"], abs=1e-6)
    assert info["dense_sparsity"] == pytest.approx(
        1 - info["dense_pruned_params"] / info["dense_total_params"], abs=1e-6)
    compact_params = modeling.count_parameters(
        value.shape for value in checkpoint.read_checkpoint(str(tmp_path / "compact")).values())
    assert info["pruned_total_params"] == compact_params


def test_latency_is_measured_side_by_side(masked_dir, tmp_path):
    info = _parse_info(remove_mask.remove_mask(str(masked_dir / "masked"),
                                               str(tmp_path / "compact"), batch_sizes=[2],
                                               seq_length=8, iterations=2))
    assert info["latency_batch_2_seq_8_dense_ms"] > 0
    assert info["latency_batch_2_seq_8_speedup"] == pytest.approx(
        info["latency_batch_2_seq_8_dense_ms"] / info["latency_batch_2_seq_8_compact_ms"],
        rel=0.05)


def test_refuses_checkpoint_without_log_alpha(masked_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "flop.remove_mask", f"--checkpoint={masked_dir / 'fact'}",
         f"--output_folder_dir={tmp_path / 'compact'}", "--latency_iterations=0"],
        cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "log_alpha" in last and "--checkpoint=" in last
    assert not (tmp_path / "compact").exists()
