"""extract_features: JSON-lines layout, values equal to the encoder's own, and bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from bert import checkpoint, extract_features, modeling
from conftest import REPO_ROOT
from tiny_bert import TINY_VOCAB, initializer_weights, tiny_config, write_tiny_model

tf1 = tf.compat.v1
FLAGS = flags.FLAGS

NUM_LAYERS = 3
LINES = ["The good movie", "a bad film ||| very dull plot .", "great zebra fun"]
# What the test expects, written out by hand (not via the module's tokenization).
EXPECTED_TOKENS = [
    (["[CLS]", "the", "good", "movie", "[SEP]"], [0] * 5),
    (["[CLS]", "a", "bad", "film", "[SEP]", "very", "dull", "plot", ".", "[SEP]"],
     [0] * 5 + [1] * 5),
    (["[CLS]", "great", "[UNK]", "fun", "[SEP]"], [0] * 5),
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 3-layer BERT in Google's format (hidden 16, 32 positions), initialiser weights."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    config = tiny_config(hidden_size=16, num_hidden_layers=NUM_LAYERS, intermediate_size=32,
                         max_position_embeddings=32, initializer_range=0.2)
    write_tiny_model(folder, config, initializer_weights(config))
    return folder, config, str(folder / checkpoint.CHECKPOINT_NAME)


def reference_layers(config, prefix, layers, seq_length=16):
    """Encoder outputs for EXPECTED_TOKENS, padded to a fixed length, restored with a Saver."""
    vocab = {token: index for index, token in enumerate(TINY_VOCAB)}
    ids = np.zeros([len(EXPECTED_TOKENS), seq_length], np.int32)
    mask, segments = np.zeros_like(ids), np.zeros_like(ids)
    for row, (tokens, segment_ids) in enumerate(EXPECTED_TOKENS):
        ids[row, :len(tokens)] = [vocab[token] for token in tokens]
        mask[row, :len(tokens)] = 1
        segments[row, :len(tokens)] = segment_ids
    with tf.Graph().as_default():
        placeholders = [tf1.placeholder(tf.int32, [None, seq_length]) for _ in range(3)]
        model = modeling.BertModel(config, False, *placeholders)
        session_config = tf1.ConfigProto()  # oneDNN's LayerNorm fusion crashes on this fetch
        session_config.graph_options.rewrite_options.remapping = 2  # RewriterConfig.OFF
        with tf1.Session(config=session_config) as session:
            tf1.train.Saver().restore(session, prefix)
            outputs = session.run([model.all_encoder_layers[layer] for layer in layers],
                                  dict(zip(placeholders, (ids, mask, segments))))
    return dict(zip(layers, outputs))


def set_flags(**values):
    if "input_file" not in FLAGS:
        extract_features.define_flags()
    FLAGS.unparse_flags()
    FLAGS(["extract_features"] + [f"--{key}={value}" for key, value in values.items()])


def model_flags(folder, tmp_path, **overrides):
    values = dict(input_file=tmp_path / "input.txt", output_file=tmp_path / "out" / "f.jsonl",
                  vocab_file=folder / "vocab.txt", bert_config_file=folder / "bert_config.json",
                  init_checkpoint=folder, max_seq_length=16, do_lower_case=True, batch_size=2,
                  layers="-1,0")
    values.update(overrides)
    return values


def test_features_match_the_encoder(tiny_model, tmp_path, caplog):
    folder, config, prefix = tiny_model
    (tmp_path / "input.txt").write_text("\n".join(LINES) + "\n")
    set_flags(**model_flags(folder, tmp_path))
    with caplog.at_level("INFO", logger="bert"), pytest.raises(SystemExit) as exit_info:
        extract_features.main(["extract_features"])
    assert exit_info.value.code == 0
    assert "3/3 lines" in caplog.text
    output = tmp_path / "out" / "f.jsonl"
    assert [p.name for p in output.parent.iterdir()] == ["f.jsonl"]  # no temp file left
    lines = output.read_text().splitlines()
    assert len(lines) == len(LINES)
    reference = reference_layers(config, prefix, [-1, 0])
    for index, (line, (tokens, _)) in enumerate(zip(lines, EXPECTED_TOKENS)):
        record = json.loads(line)
        assert list(record) == ["linex_index", "features"]
        assert record["linex_index"] == index
        got_tokens = [feature["token"] for feature in record["features"]]
        assert got_tokens == tokens
        assert got_tokens[0] == "[CLS]" and got_tokens[-1] == "[SEP]"
        assert got_tokens.count("[SEP]") == (2 if "|||" in LINES[index] else 1)
        for position, feature in enumerate(record["features"]):
            assert list(feature) == ["token", "layers"]
            assert [layer["index"] for layer in feature["layers"]] == [-1, 0]
            for layer in feature["layers"]:
                values = layer["values"]
                assert len(values) == config.hidden_size
                assert all(round(value, 6) == value for value in values)
                np.testing.assert_allclose(values, reference[layer["index"]][index, position],
                                           atol=1e-5, rtol=0)
    # The layers really differ, so the comparison above tells them apart.
    assert not np.allclose(reference[-1], reference[0], atol=1e-2)


def test_layer_out_of_range_names_flag_and_range(tiny_model, tmp_path, capsys):
    folder, _, _ = tiny_model
    (tmp_path / "input.txt").write_text("\n".join(LINES) + "\n")
    set_flags(**model_flags(folder, tmp_path, layers="-1,-4"))
    with pytest.raises(SystemExit) as exit_info:
        extract_features.main(["extract_features"])
    assert exit_info.value.code == 1
    message = capsys.readouterr().err.strip()
    assert message.startswith("extract_features: error: --layers=-1,-4")
    assert "layer -4 is out of range" in message and f"{NUM_LAYERS}-layer" in message
    assert "valid: -3..-1 or 0..2" in message
    assert "\n" not in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case, expected", [
    ("missing_input", "--input_file="),
    ("empty_input", "no text"),
    ("long_sequence", "--max_seq_length=64 is above the model's max_position_embeddings=32"),
    ("bad_layers_text", "--layers=last: expected comma-separated integers"),
])
def test_bad_input_is_one_line_error(tiny_model, tmp_path, case, expected, capsys):
    folder, _, _ = tiny_model
    overrides = {}
    if case == "missing_input":
        overrides["input_file"] = tmp_path / "absent.txt"
    elif case == "empty_input":
        (tmp_path / "input.txt").write_text("\n  \n")
    else:
        (tmp_path / "input.txt").write_text("\n".join(LINES) + "\n")
        overrides = ({"max_seq_length": 64} if case == "long_sequence" else {"layers": "last"})
    set_flags(**model_flags(folder, tmp_path, **overrides))
    with pytest.raises(SystemExit) as exit_info:
        extract_features.main(["extract_features"])
    assert exit_info.value.code == 1
    message = capsys.readouterr().err.strip()
    assert message.startswith("extract_features: error: ") and expected in message
    assert not (tmp_path / "out").exists()


def test_command_line_reports_bad_layer(tiny_model, tmp_path):
    """The module runs with Google's flags from the command line; errors exit non-zero."""
    folder, _, _ = tiny_model
    (tmp_path / "input.txt").write_text("\n".join(LINES) + "\n")
    args = [f"--{key}={value}" for key, value in
            model_flags(folder, tmp_path, layers="-1,-2,-3,-4").items()]
    process = subprocess.run([sys.executable, "-m", "bert.extract_features"] + args,
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert process.returncode == 1
    assert process.stderr.strip().splitlines()[-1] == (
        "extract_features: error: --layers=-1,-2,-3,-4: layer -4 is out of range for this "
        "3-layer model (valid: -3..-1 or 0..2)")
