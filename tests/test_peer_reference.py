"""The peer reference (transformers -> torch.onnx -> ONNX Runtime INT8) holds our weights."""
import numpy as np
import pytest

from bert import checkpoint
from deploy import benchmark, inference, peer
from tiny_bert import NUM_LABELS, classifier_logits, example_inputs, tiny_config, write_tiny_model

SEQ = 8


def test_every_weight_of_a_dense_checkpoint_has_a_peer_name(tmp_path):
    config, values = write_tiny_model(tmp_path / "model")
    names = {name: peer.hf_name(name) for name in values}
    assert all(names.values()), [name for name, target in names.items() if not target]
    assert len(set(names.values())) == len(names)  # no two weights land on one name
    assert names["bert/encoder/layer_1/attention/output/LayerNorm/gamma"] == (
        "bert.encoder.layer.1.attention.output.LayerNorm.weight")


def test_a_compact_model_is_refused(tmp_path):
    config = tiny_config(kernel_ranks={"layer_0/attention/self/query": 2})
    with pytest.raises(Exception, match="dense BERT; its config has kernel_ranks"):
        peer.check_dense(config, "compact")


@pytest.mark.skipif(peer.missing_reason() is not None, reason=str(peer.missing_reason()))
def test_peer_export_equals_our_checkpoint(tmp_path):
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    write_tiny_model(tmp_path / "model", config)
    fp32, int8 = peer.export_peer(str(tmp_path / "model"), str(tmp_path / "peer"), SEQ)
    ids, mask, types = example_inputs(config.vocab_size)
    expected = classifier_logits(config, checkpoint.resolve_checkpoint(str(tmp_path / "model")))
    got = inference.OnnxRunner(fp32, threads=1)(ids, mask, types)
    assert got.shape == (len(ids), NUM_LABELS)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    quantized = inference.OnnxRunner(int8, threads=1)(ids, mask, types)
    assert np.abs(quantized - expected).max() < 0.5  # INT8 weights: close, not equal
    # The benchmark finds the config (hence FLOPs) of the peer rows through export.json.
    assert benchmark.export_source(str(tmp_path / "peer")) == str((tmp_path / "model").resolve())
