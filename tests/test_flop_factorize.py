"""factorize: reduced SVD factors that keep the model's function, and refusal of bad input."""
import json
import subprocess
import sys

import numpy as np
import tensorflow as tf

from bert import checkpoint, convert_hf, modeling
from conftest import REPO_ROOT
from flop import factorize
from tiny_bert import classifier_logits, example_inputs, write_factorized_model

tf1 = tf.compat.v1

LOGIT_TOLERANCE = 1e-4


def test_factorize_kernel_is_reduced_and_exact():
    kernel = np.random.RandomState(0).normal(size=[6, 10]).astype(np.float32)
    p, q = factorize.factorize_kernel(kernel)
    assert p.shape == (6, 6) and q.shape == (6, 10)  # r = min(in, out), not a full SVD
    np.testing.assert_allclose(p @ q, kernel, atol=1e-5)
    # √Σ on both sides: both factors have the same column/row norms.
    np.testing.assert_allclose(np.linalg.norm(p, axis=0), np.linalg.norm(q, axis=1), rtol=1e-4)


def test_tiny_model_is_function_preserving(tmp_path):
    config, ranks = write_factorized_model(tmp_path)
    # 2 layers × 6 kernels; hidden 8, intermediate 12: every rank is min(in, out) = 8.
    assert len(ranks) == 12 and set(ranks.values()) == {8}
    written = json.loads((tmp_path / "fact" / "bert_config.json").read_text())
    assert written["factorized"] is True
    assert written["kernel_ranks"]["layer_1/intermediate/dense"] == 8
    stored = checkpoint.list_checkpoint(str(tmp_path / "fact"))
    assert "bert/encoder/layer_0/attention/self/query_p/kernel" in stored
    assert "bert/encoder/layer_0/attention/self/query/kernel" not in stored
    assert "bert/encoder/layer_0/attention/self/query/bias" in stored
    assert "bert/pooler/dense/kernel" in stored  # the pooler stays dense
    fact_config = modeling.BertConfig.from_json_file(str(tmp_path / "fact" / "bert_config.json"))
    original = classifier_logits(config, str(tmp_path / "dense"))
    factorized = classifier_logits(fact_config, str(tmp_path / "fact"))
    np.testing.assert_allclose(factorized, original, atol=LOGIT_TOLERANCE)


def test_head_dropped_without_finetuned(tmp_path):
    write_factorized_model(tmp_path, finetuned=False)
    assert "output_weights" not in checkpoint.list_checkpoint(str(tmp_path / "fact"))


def test_refuses_factorized_checkpoint(tmp_path):
    write_factorized_model(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "flop.factorize",
         f"--bert_config_file={tmp_path / 'fact' / 'bert_config.json'}",
         f"--checkpoint={tmp_path / 'fact'}", f"--output_dir={tmp_path / 'again'}"],
        cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert "already factorized" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "again").exists()


def test_real_minilm_is_function_preserving(tmp_path, hf_model_dir):
    dense = tmp_path / "mini"
    convert_hf.convert(str(hf_model_dir), str(dense))
    config = modeling.BertConfig.from_json_file(str(dense / "bert_config.json"))
    _, ranks = factorize.factorize(str(dense / "bert_config.json"), str(dense),
                                   str(tmp_path / "fact"), finetuned=False)
    # Reduced SVD: 384×384 kernels keep rank 384, 384×1536 ones rank 384 (not 1536).
    assert set(ranks.values()) == {384}
    fact_config = modeling.BertConfig.from_json_file(str(tmp_path / "fact" / "bert_config.json"))
    original = _fixed_head_logits(config, str(dense))
    factorized = _fixed_head_logits(fact_config, str(tmp_path / "fact"))
    np.testing.assert_allclose(factorized, original, atol=LOGIT_TOLERANCE)


def _fixed_head_logits(config, path):
    """A pretrained model has no classifier head: put the same fixed one on both models."""
    ids, mask, types = example_inputs(config.vocab_size)
    with tf.Graph().as_default():
        model = modeling.BertModel(config, False, tf.constant(ids), tf.constant(mask),
                                   tf.constant(types))
        head = tf.constant(np.random.RandomState(3).normal(0, 0.5, [config.hidden_size, 2]),
                           tf.float32)
        logits = tf.matmul(model.pooled_output, head)
        checkpoint.init_from_checkpoint(path)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            return session.run(logits)
