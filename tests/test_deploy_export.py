"""deploy.export: the SavedModel (raw text in), ONNX fp32 and INT8 give the checkpoint's logits.

Every model kind a folder can describe is exported (dense, low-rank compact, PoWER-BERT Extract,
both) and compared with logits computed independently: our Python tokenizer, Google's
convert_example padded to max_seq_length, a plain TF graph restored from the checkpoint.
"""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import tensorflow as tf

from bert import checkpoint, classifier, tokenization
from bert.convert_hf import convert
from bert.glue import InputExample
from conftest import REPO_ROOT
from deploy import export, inference
from flop import factorize
from power_bert.token_selectors import RETENTION_CONFIG_KEY
from tiny_bert import (random_sentences, random_weights, tiny_config, write_sst2_task, write_tiny_model,
                       write_vocab)

tf1 = tf.compat.v1

MAX_SEQ_LENGTH = 16
RETENTION = [6, 3]  # below MAX_SEQ_LENGTH: Extract really drops tokens
# Random weights x3: the tiny model's logits then differ enough between sentences that
# comparing INT8 and fp32 argmaxes means something (at x1 every sentence gets ~the same logits).
WEIGHT_SCALE = 3.0
ZERO_RANK_KERNEL = "layer_1/intermediate/dense"  # FLOP may prune a kernel to its bias alone
LOGIT_TOLERANCE = 1e-4
INT8_TOLERANCE = 0.1  # max |INT8 - fp32| as a fraction of the largest |fp32 logit|
INT8_MIN_AGREEMENT = 0.9
KINDS = ("dense", "compact", "power", "compound")
BATCH = 16
NUM_SENTENCES = 48
MRPC_PAIRS = 200
# Chars where tokenizers commonly deviate from Google's rules: accents, NFKC-only mappings
# (micro sign, ellipsis, ligature), format and control chars, U+FFFD, private use, non-ASCII
# spaces, CJK, a 101-char word (one [UNK]), whitespace-only text_b (a single sentence).
TRICKY_PAIRS = [
    ("The MOVIE was Góöd … not \u00b5 \ufb01lm", "A\u00a0cat\u3000sat\u2009?"),
    ("a\x00b c\ufffdd e\ue000f g\u00adh i\u200bj k\x07l", "\u4e2d\u6587 the\u4e2ddog"),
    ("x" * (tokenization.MAX_WORD_CHARS + 1) + " good", "é" * tokenization.MAX_WORD_CHARS),
    ("dull\tplot\r\nand awful", "   "),
    ("end\u2028line\u2029para", "a\u205fb"),
    ("Stra\u00dfe \u0130t $5^`~ fun", "\x07"),
]


def sentences(seed=0):
    return random_sentences(NUM_SENTENCES, seed)


def reference_logits(model_dir, pairs):
    """The checkpoint's logits, without deploy's encode or runner: convert_example padded to
    MAX_SEQ_LENGTH, a plain graph of deploy.inference.build_logits."""
    model = inference.load_model_folder(str(model_dir))
    tokenizer = tokenization.create_tokenizer(model.vocab_file, True)
    features = [classifier.convert_example(InputExample(str(index), text_a, text_b, 0.0), None,
                                           MAX_SEQ_LENGTH, tokenizer)
                for index, (text_a, text_b) in enumerate(pairs)]
    with tf.Graph().as_default():
        inputs = [tf.constant([feature[name] for feature in features], tf.int32)
                  for name in inference.INPUT_NAMES]
        logits = inference.build_logits(model, *inputs)
        saver = tf1.train.Saver()
        with tf1.Session() as session:
            saver.restore(session, model.checkpoint_prefix)
            return session.run(logits)


def center_head(model_dir, pairs):
    """Move the head's bias so that half the sentences fall on each side of the boundary."""
    logits = reference_logits(model_dir, pairs)
    prefix = checkpoint.resolve_checkpoint(str(model_dir))
    values = checkpoint.read_checkpoint(prefix)
    values["output_bias"][1] -= np.median(logits[:, 1] - logits[:, 0])
    checkpoint.save_variables(values, prefix)


def compact_weights(config, values):
    """A low-rank model as FLOP's remove_mask leaves one: half of every kernel's ranks kept,
    one kernel pruned to its bias."""
    factors, ranks = factorize.factorize_weights(config, values, keep_head=True)
    for key, rank in ranks.items():
        p_name, q_name = factorize.factor_names(key)
        ranks[key] = 0 if key == ZERO_RANK_KERNEL else rank // 2
        factors[p_name] = factors[p_name][:, :ranks[key]]
        factors[q_name] = factors[q_name][:ranks[key]]
        if not ranks[key]:
            del factors[p_name], factors[q_name]
    compact = config.copy()
    compact.extra["kernel_ranks"] = ranks
    return compact, factors


def write_model(folder, kind):
    config = tiny_config()
    values = {name: value * WEIGHT_SCALE for name, value in random_weights(config).items()}
    if kind in ("compact", "compound"):
        config, values = compact_weights(config, values)
    if kind in ("power", "compound"):
        config.extra[RETENTION_CONFIG_KEY] = RETENTION
    write_tiny_model(folder, config, values)
    center_head(folder, sentences())
    return folder


def run_export(*flags):
    return subprocess.run([sys.executable, "-m", "deploy.export", *flags], cwd=REPO_ROOT,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{kind: (model folder, export folder)}, exported in this process."""
    root = tmp_path_factory.mktemp("export")
    folders = {}
    for kind in KINDS:
        model_dir = write_model(root / kind, kind)
        output_dir = root / f"{kind}_export"
        assert export.main(["--model_dir", str(model_dir), "--output_dir", str(output_dir),
                            "--max_seq_length", str(MAX_SEQ_LENGTH)]) == 0
        folders[kind] = (model_dir, output_dir)
    return folders


def onnx_logits(path, pairs, tokenizer):
    """ONNX Runtime logits on batches padded to their longest example."""
    runner = inference.OnnxRunner(str(path))
    return np.concatenate([runner(*inference.encode(tokenizer, pairs[start:start + BATCH],
                                                    MAX_SEQ_LENGTH))
                           for start in range(0, len(pairs), BATCH)])


# In a fresh TF2 eager process, as a server would load it: tensorflow_text registers the ops.
LOAD_SAVED_MODELS = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
request = json.load(sys.stdin)
answer = {}
for path in request["paths"]:
    serve = tf.saved_model.load(path).signatures["serving_default"]
    outputs = serve(text_a=tf.constant(request["text_a"]), text_b=tf.constant(request["text_b"]))
    answer[path] = {name: value.numpy().tolist() for name, value in outputs.items()}
print(json.dumps(answer))
"""


def test_saved_model_takes_raw_text_in_a_fresh_eager_process(exported, tmp_path):
    pairs = sentences() + TRICKY_PAIRS
    moved = {}
    for kind, (_, output_dir) in exported.items():  # the vocab must travel as an asset
        moved[kind] = tmp_path / kind
        os.rename(output_dir, moved[kind])
    try:
        request = {"paths": [str(folder / export.SAVED_MODEL_DIR) for folder in moved.values()],
                   "text_a": [text_a for text_a, _ in pairs],
                   "text_b": [text_b or "" for _, text_b in pairs]}
        process = subprocess.run([sys.executable, "-c", LOAD_SAVED_MODELS],
                                 input=json.dumps(request), capture_output=True, text=True)
    finally:
        for kind, (_, output_dir) in exported.items():
            os.rename(moved[kind], output_dir)
    assert process.returncode == 0, process.stderr[-3000:]
    answer = json.loads(process.stdout)
    for kind, (model_dir, _) in exported.items():
        outputs = answer[str(moved[kind] / export.SAVED_MODEL_DIR)]
        logits = np.array(outputs[inference.LOGITS])
        expected = reference_logits(model_dir, pairs)
        assert np.max(np.abs(logits - expected)) < LOGIT_TOLERANCE, kind
        softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        np.testing.assert_allclose(outputs[export.PROBABILITIES], softmax, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_gives_the_checkpoint_logits_on_batches_padded_to_their_longest(exported, kind):
    model_dir, output_dir = exported[kind]
    pairs = sentences()
    model = inference.load_model_folder(str(model_dir))
    logits = onnx_logits(output_dir / export.ONNX_FILE, pairs, model.tokenizer())
    assert np.max(np.abs(logits - reference_logits(model_dir, pairs))) < LOGIT_TOLERANCE
    graph = onnx.load(str(output_dir / export.ONNX_FILE)).graph
    assert [item.name for item in graph.input] == list(inference.INPUT_NAMES)
    for item in graph.input:  # batch and length both dynamic
        assert [dim.dim_param != "" for dim in item.type.tensor_type.shape.dim] == [True, True]


@pytest.mark.parametrize("kind", KINDS)
def test_int8_stays_close_to_fp32(exported, kind):
    """INT8 weights move every logit by less than INT8_TOLERANCE of the logit scale and keep
    at least INT8_MIN_AGREEMENT of the argmaxes, on sentences split between the two classes."""
    model_dir, output_dir = exported[kind]
    pairs = sentences()
    tokenizer = inference.load_model_folder(str(model_dir)).tokenizer()
    fp32 = onnx_logits(output_dir / export.ONNX_FILE, pairs, tokenizer)
    int8 = onnx_logits(output_dir / export.INT8_FILE, pairs, tokenizer)
    predicted = np.argmax(fp32, -1)
    assert 0 < predicted.mean() < 1  # both classes occur: agreement is not trivial
    assert np.max(np.abs(int8 - fp32)) < INT8_TOLERANCE * np.max(np.abs(fp32))
    assert np.mean(np.argmax(int8, -1) == predicted) >= INT8_MIN_AGREEMENT


def test_regression_serves_predictions(tmp_path):
    """num_labels 1 (STS-B): ``predictions`` is logits[:, 0], no softmax."""
    write_tiny_model(tmp_path / "model", num_labels=1)
    assert export.main(["--model_dir", str(tmp_path / "model"), "--output_dir",
                        str(tmp_path / "out"), f"--max_seq_length={MAX_SEQ_LENGTH}"]) == 0
    pairs = sentences()[:8]
    with tf.Graph().as_default(), tf1.Session() as session:
        meta_graph = tf1.saved_model.loader.load(
            session, [export.SERVING_TAG], str(tmp_path / "out" / export.SAVED_MODEL_DIR))
        signature = meta_graph.signature_def[export.SIGNATURE]
        assert set(signature.outputs) == {inference.LOGITS, export.PREDICTIONS}
        logits, predictions = session.run(
            [signature.outputs[name].name for name in (inference.LOGITS, export.PREDICTIONS)],
            {signature.inputs["text_a"].name: [text_a for text_a, _ in pairs],
             signature.inputs["text_b"].name: [text_b or "" for _, text_b in pairs]})
    expected = reference_logits(tmp_path / "model", pairs)
    assert logits.shape == (len(pairs), 1)
    assert np.max(np.abs(logits - expected)) < LOGIT_TOLERANCE
    np.testing.assert_array_equal(predictions, logits[:, 0])


def test_truncation_closed_form_is_truncate_pair():
    rng = np.random.RandomState(0)
    length_a, length_b = rng.randint(0, 40, [2, 5000])
    budget = rng.randint(1, 40, 5000)
    kept_a, kept_b = export.truncation_lengths(length_a, length_b, budget)
    for index in range(length_a.size):
        tokens_a, tokens_b = [0] * length_a[index], [0] * length_b[index]
        classifier.truncate_pair(tokens_a, tokens_b, budget[index])
        assert (kept_a[index], kept_b[index]) == (len(tokens_a), len(tokens_b)), index


def assert_same_ids(vocab_file, pairs, max_seq_length=MAX_SEQ_LENGTH, do_lower_case=True):
    """The SavedModel's in-graph encoding (run eagerly here) is inference.encode's, exactly."""
    tokenizer = tokenization.create_tokenizer(vocab_file, do_lower_case)
    expected = inference.encode(tokenizer, pairs, max_seq_length)
    got = [value.numpy() for value in export.encode_text(
        tf.constant([text_a for text_a, _ in pairs]),
        tf.constant([text_b or "" for _, text_b in pairs]),
        export.vocab_table(vocab_file), do_lower_case, max_seq_length)]
    for name, want, have in zip(inference.INPUT_NAMES, expected, got):
        differ = [index for index in range(len(pairs))
                  if not np.array_equal(want[index], have[index])]
        assert want.shape == have.shape and not differ, (
            name, [(pairs[index], tokenizer.convert_ids_to_tokens(expected[0][index]))
                   for index in differ[:3]])


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_in_graph_ids_are_our_tokenizer_ids_on_tricky_text(tmp_path, do_lower_case):
    write_vocab(tmp_path)
    assert_same_ids(str(tmp_path / "vocab.txt"), TRICKY_PAIRS + sentences(),
                    do_lower_case=do_lower_case)


def test_in_graph_ids_are_our_tokenizer_ids_on_mrpc(glue_dir, hf_model_dir, tmp_path):
    convert(str(hf_model_dir), str(tmp_path))
    lines = (glue_dir / "MRPC" / "dev.tsv").read_text(encoding="utf-8-sig").splitlines()[1:]
    pairs = [tuple(line.split("\t")[3:5]) for line in lines[:MRPC_PAIRS]]
    assert len(pairs) == MRPC_PAIRS
    vocab_file = str(tmp_path / "vocab.txt")
    for max_seq_length in (128, 32):  # 32: most pairs are truncated
        assert_same_ids(vocab_file, pairs + TRICKY_PAIRS, max_seq_length)


def test_whole_command_with_a_task(tmp_path):
    model_dir = write_model(tmp_path / "model", "compound")
    data_dir = write_sst2_task(tmp_path / "sst2", rows=24)
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    (output_dir / "old.txt").write_text("an earlier export")  # replaced whole
    process = run_export("--model_dir", str(model_dir), "--output_dir", str(output_dir),
                         f"--max_seq_length={MAX_SEQ_LENGTH}", "--do_lower_case", "true",
                         "--task_name", "SST-2", "--data_dir", str(data_dir))
    assert process.returncode == 0, process.stderr[-3000:]
    assert "dev eval_accuracy (24 examples)" in process.stdout
    assert sorted(os.listdir(output_dir)) == sorted([
        export.SAVED_MODEL_DIR, export.ONNX_FILE, export.INT8_FILE, export.VOCAB_FILE,
        export.EXPORT_FILE])
    assert sorted(os.listdir(tmp_path)) == ["model", "out", "sst2"]  # no temporaries left
    summary = json.loads((output_dir / export.EXPORT_FILE).read_text())
    assert summary["labels"] == ["0", "1"] and summary["num_labels"] == 2
    assert summary["max_seq_length"] == MAX_SEQ_LENGTH and summary["do_lower_case"] is True
    assert summary["source_model_dir"] == str(model_dir)
    assert summary["methods"] == ["power_bert"]
    assert set(summary["files"]) == {export.SAVED_MODEL_DIR, export.ONNX_FILE,
                                     export.INT8_FILE, export.VOCAB_FILE}
    assert "tensorflow_text" in summary["files"][export.SAVED_MODEL_DIR]["load"]
    dev = summary["dev"]
    assert dev["metric"] == "eval_accuracy" and dev["examples"] == 24
    assert dev["checkpoint"] == dev["onnx"] == dev["saved_model"]
    assert 0.0 <= dev["onnx_int8"] <= 1.0
    diffs = summary["max_abs_logit_diff_vs_checkpoint"]
    assert diffs["onnx"] < LOGIT_TOLERANCE and diffs["saved_model"] < LOGIT_TOLERANCE


@pytest.fixture(scope="module")
def bad_input_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    write_tiny_model(root / "model")
    write_tiny_model(root / "headless", num_labels=0)
    (root / "a_file").write_text("not a folder")
    return root


@pytest.mark.parametrize("case, flags, named", [
    ("missing", ["--model_dir", "{root}/absent"], "--model_dir"),
    ("no head", ["--model_dir", "{root}/headless"], "no classifier head"),
    ("too short", ["--model_dir", "{root}/model", "--max_seq_length", "2"], "--max_seq_length"),
    ("too long", ["--model_dir", "{root}/model", "--max_seq_length", "33"], "--max_seq_length"),
    ("output is a file", ["--model_dir", "{root}/model", "--output_dir", "{root}/a_file"],
     "--output_dir"),
])
def test_bad_input_is_one_line_and_writes_nothing(bad_input_folders, case, flags, named):
    root = bad_input_folders
    before = sorted(os.listdir(root))
    flags = [flag.format(root=root) for flag in flags]
    if "--output_dir" not in flags:
        flags += ["--output_dir", str(root / "out")]
    process = run_export(*flags)
    assert process.returncode == 1, process.stderr[-2000:]
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{export.PROGRAM}: error: "), lines
    assert named in lines[0]
    assert sorted(os.listdir(root)) == before
    assert (root / "a_file").read_text() == "not a folder"
