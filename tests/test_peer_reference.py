"""The peer reference (transformers -> torch.onnx -> ONNX Runtime INT8) holds our weights."""
import numpy as np
import pytest

from bert import checkpoint
from deploy import benchmark, inference, peer
from tiny_bert import NUM_LABELS, classifier_logits, example_inputs, tiny_config, write_tiny_model

SEQ = 8


@pytest.mark.skipif(peer.missing_reason() is not None, reason=str(peer.missing_reason()))
def test_every_weight_of_a_dense_checkpoint_fills_one_peer_parameter(tmp_path):
    config, values = write_tiny_model(tmp_path / "model")
    model = peer.hf_model(config, values, NUM_LABELS)  # refuses missing or unexpected names
    state = peer.hf_state_dict(model.state_dict(), values)
    assert {peer.our_name(name) for name in state} == set(values)  # each weight used once
    assert len(state) == len(values)
    np.testing.assert_array_equal(
        state["bert.encoder.layer.1.attention.output.LayerNorm.weight"],
        values["bert/encoder/layer_1/attention/output/LayerNorm/gamma"])
    np.testing.assert_array_equal(state["bert.encoder.layer.0.attention.self.query.weight"],
                                  values["bert/encoder/layer_0/attention/self/query/kernel"].T)


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
