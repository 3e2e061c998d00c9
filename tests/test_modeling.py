"""BertModel against an independent numpy forward pass, plus config and hook behaviour."""
import json
import math

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoint, convert_hf, modeling, tokenization

tf1 = tf.compat.v1

SENTENCES = [("The quick brown fox jumps over the lazy dog.", None),
             ("A man is playing a guitar.", "Someone plays an instrument on stage.")]


def numpy_layer_norm(x, gamma, beta):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + 1e-12) * gamma + beta


def numpy_gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def numpy_bert(weights, config, input_ids, input_mask, token_type_ids):
    """Reference forward pass straight from the HF tensors ([out, in] Linear weights)."""
    def linear(x, prefix):
        return x @ weights[prefix + ".weight"].T + weights[prefix + ".bias"]

    seq = input_ids.shape[1]
    x = (weights["embeddings.word_embeddings.weight"][input_ids]
         + weights["embeddings.position_embeddings.weight"][:seq][None]
         + weights["embeddings.token_type_embeddings.weight"][token_type_ids])
    x = numpy_layer_norm(x, weights["embeddings.LayerNorm.weight"],
                         weights["embeddings.LayerNorm.bias"])
    heads = config["num_attention_heads"]
    size = config["hidden_size"] // heads
    bias = (1.0 - input_mask[:, None, None, :]) * -10000.0
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."

        def split(t):
            return t.reshape(t.shape[0], seq, heads, size).transpose(0, 2, 1, 3)

        q, k, v = (split(linear(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + bias
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(x.shape)
        x = numpy_layer_norm(linear(context, p + "attention.output.dense") + x,
                             weights[p + "attention.output.LayerNorm.weight"],
                             weights[p + "attention.output.LayerNorm.bias"])
        inner = numpy_gelu(linear(x, p + "intermediate.dense"))
        x = numpy_layer_norm(linear(inner, p + "output.dense") + x,
                             weights[p + "output.LayerNorm.weight"],
                             weights[p + "output.LayerNorm.bias"])
    pooled = np.tanh(linear(x[:, 0], "pooler.dense"))
    return x, pooled


def encode(tokenizer, pairs, seq_length):
    ids, masks, types = [], [], []
    for text_a, text_b in pairs:
        tokens = ["[CLS]"] + tokenizer.tokenize(text_a) + ["[SEP]"]
        segments = [0] * len(tokens)
        if text_b:
            extra = tokenizer.tokenize(text_b) + ["[SEP]"]
            tokens += extra
            segments += [1] * len(extra)
        pad = seq_length - len(tokens)
        ids.append(tokenizer.convert_tokens_to_ids(tokens) + [0] * pad)
        masks.append([1] * len(tokens) + [0] * pad)
        types.append(segments + [0] * pad)
    return (np.array(ids, np.int32), np.array(masks, np.int32), np.array(types, np.int32))


def run_bert(config, prefix, input_ids, input_mask, token_type_ids, **hooks):
    with tf.Graph().as_default():
        model = modeling.BertModel(config, False, tf.constant(input_ids), tf.constant(input_mask),
                                   tf.constant(token_type_ids), **hooks)
        checkpoint.init_from_checkpoint(prefix)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            return session.run([model.sequence_output, model.pooled_output])


@pytest.fixture(scope="module")
def converted_model(hf_model_dir, tmp_path_factory):
    return convert_hf.convert(str(hf_model_dir), str(tmp_path_factory.mktemp("minilm")))


def test_converted_minilm_matches_numpy_reference(hf_model_dir, converted_model):
    from safetensors.numpy import load_file
    weights = load_file(str(hf_model_dir / "model.safetensors"))
    with open(hf_model_dir / "config.json") as handle:
        hf_config = json.load(handle)
    tokenizer = tokenization.FullTokenizer(f"{converted_model}/vocab.txt", do_lower_case=True)
    ids, mask, types = encode(tokenizer, SENTENCES, 24)
    config = modeling.BertConfig.from_json_file(f"{converted_model}/bert_config.json")
    sequence, pooled = run_bert(config, converted_model, ids, mask, types)
    ref_sequence, ref_pooled = numpy_bert(weights, hf_config, ids, mask.astype(np.float64), types)
    real = mask.astype(bool)
    assert np.abs(sequence[real] - ref_sequence[real]).max() <= 1e-4
    assert np.abs(pooled - ref_pooled).max() <= 1e-4


def tiny_config(**overrides):
    values = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=24, max_position_embeddings=32, type_vocab_size=2)
    values.update(overrides)
    return modeling.BertConfig(**values)


def build_variables(config, seq_length=8, **hooks):
    with tf.Graph().as_default():
        ids = tf1.placeholder(tf.int32, [None, seq_length])
        model = modeling.BertModel(config, True, ids, **hooks)
        return model, {v.op.name: v.shape.as_list() for v in tf1.global_variables()}


def test_variable_names_are_googles():
    _, shapes = build_variables(tiny_config())
    expected = {
        "bert/embeddings/word_embeddings": [50, 16],
        "bert/embeddings/position_embeddings": [32, 16],
        "bert/embeddings/token_type_embeddings": [2, 16],
        "bert/embeddings/LayerNorm/gamma": [16],
        "bert/encoder/layer_1/attention/self/query/kernel": [16, 16],
        "bert/encoder/layer_1/attention/self/value/bias": [16],
        "bert/encoder/layer_0/attention/output/dense/kernel": [16, 16],
        "bert/encoder/layer_0/attention/output/LayerNorm/beta": [16],
        "bert/encoder/layer_0/intermediate/dense/kernel": [16, 24],
        "bert/encoder/layer_0/output/dense/kernel": [24, 16],
        "bert/encoder/layer_0/output/LayerNorm/gamma": [16],
        "bert/pooler/dense/kernel": [16, 16],
    }
    for name, shape in expected.items():
        assert shapes[name] == shape, name
    assert len(shapes) == 5 + 2 * 16 + 2


def test_per_layer_sizes_from_config():
    config = tiny_config(layers=[{"num_attention_heads": 2, "intermediate_size": 8}, {}])
    _, shapes = build_variables(config)
    assert shapes["bert/encoder/layer_0/attention/self/query/kernel"] == [16, 8]
    assert shapes["bert/encoder/layer_0/attention/output/dense/kernel"] == [8, 16]
    assert shapes["bert/encoder/layer_0/intermediate/dense/kernel"] == [16, 8]
    assert shapes["bert/encoder/layer_1/attention/self/query/kernel"] == [16, 16]
    assert shapes["bert/encoder/layer_1/intermediate/dense/kernel"] == [16, 24]


def test_kernel_ranks_build_low_rank_factors():
    config = tiny_config(kernel_ranks={"layer_1/intermediate/dense": 3})
    _, shapes = build_variables(config)
    assert shapes["bert/encoder/layer_1/intermediate/dense_p/kernel"] == [16, 3]
    assert shapes["bert/encoder/layer_1/intermediate/dense_q/kernel"] == [3, 24]
    assert shapes["bert/encoder/layer_1/intermediate/dense/bias"] == [24]
    assert "bert/encoder/layer_0/intermediate/dense/kernel" in shapes


def test_dense_factory_hook_sees_every_kernel():
    seen = []

    def recording_factory(inputs, units, name, layer_index, activation=None):
        seen.append((modeling.kernel_key(name), layer_index))
        return modeling.dense(inputs, units, name, activation)

    build_variables(tiny_config(), dense_factory=recording_factory)
    per_layer = ["attention/self/query", "attention/self/key", "attention/self/value",
                 "attention/output/dense", "intermediate/dense", "output/dense"]
    expected = [(f"layer_{i}/{k}", i) for i in range(2) for k in per_layer]
    assert seen == expected + [("pooler/dense", None)]


def test_token_selector_can_shorten_sequence():
    def keep_first_three(layer_index, hidden, probs, mask):
        assert probs.shape[1] == 4
        return hidden[:, :3], mask[:, :3]

    model, _ = build_variables(tiny_config(), token_selector=keep_first_three)
    assert model.all_encoder_layers[0].shape.as_list()[1] == 3
    assert model.all_attention_probs[1].shape.as_list()[-1] == 3


def test_config_round_trip_keeps_unknown_keys(tmp_path):
    config = tiny_config(kernel_ranks={"layer_0/output/dense": 4}, method_note="flop")
    path = tmp_path / "bert_config.json"
    config.to_json_file(str(path))
    again = modeling.BertConfig.from_json_file(str(path))
    assert again.to_dict() == config.to_dict()
    assert again.extra["method_note"] == "flop"


@pytest.mark.parametrize("bad, message", [
    ({"hidden_act": "swish2"}, "hidden_act"),
    ({"num_attention_heads": 5}, "multiple"),
    ({"layers": [{}]}, "'layers' has 1 entries"),
    ({"layers": [{"heads": 2}, {}]}, "unknown keys"),
])
def test_bad_config_is_rejected(bad, message):
    with pytest.raises(modeling.ConfigError, match=message):
        tiny_config(**bad)


def test_sequence_longer_than_positions_is_rejected():
    with pytest.raises(modeling.ConfigError, match="max_position_embeddings"):
        build_variables(tiny_config(), seq_length=64)


def test_gelu_variants():
    x = np.linspace(-3, 3, 13).astype(np.float32)
    exact = numpy_gelu(x.astype(np.float64))
    assert np.abs(tf.constant(modeling.gelu(x)).numpy() - exact).max() < 1e-6
    assert np.abs(tf.constant(modeling.gelu_new(x)).numpy() - exact).max() < 1e-3
