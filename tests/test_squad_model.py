"""SQuAD fine-tuning, prediction and export on a tiny model and hand-written articles.

A 2-layer model (hidden 32) memorises six questions in a few seconds: each has a paragraph of
its own, so the answer follows from the context (a model this small learns question-context
interaction only after thousands of steps). One context needs three windows, one has accents
and runs of spaces inside its answer. Entry points run as processes.
"""
import glob
import json
import math
import re
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf

from bert import (checkpoint, methods, modeling, squad, squad_eval, squad_model,
                  tokenization)
from bert.errors import UsageError
from bert.extract_features import session_config
from conftest import REPO_ROOT
from deploy import export, export_squad, inference
from test_squad import CASED_WORDS, TRICKY_TEXT, WORDS as TRICKY_WORDS
from tiny_bert import initializer_weights, tiny_config, write_tiny_model

tf1 = tf.compat.v1

TIMEOUT = 300
MAX_SEQ_LENGTH = 48
MAX_QUERY_LENGTH = 12
DOC_STRIDE = 16
SIZE_FLAGS = [f"--max_seq_length={MAX_SEQ_LENGTH}", f"--max_query_length={MAX_QUERY_LENGTH}",
              f"--doc_stride={DOC_STRIDE}"]
TRAIN_FLAGS = ["--train_batch_size=6", "--num_train_epochs=40",
               "--learning_rate=3e-3", "--log_every_n_steps=5", "--save_checkpoints_steps=20",
               "--seed=3"]
MEMORISED_EM = 80.0  # exact match on the training questions after training
LOSS_DROP = 10.0  # the logged loss falls at least this many times
COMPACT_EM = 50.0  # exact match of the FLOP-compact model on the memorised questions
LOGIT_TOLERANCE = 1e-4
INT8_TOLERANCE = 0.25  # max |INT8 - fp32| logit difference on the trained tiny model
HIDDEN = 32
LONG_CONTEXT = " ".join(["This context is long and goes on."] * 6
                        + ["The treasure is buried under the old oak."])
# (context, question, answer): one paragraph each, as in a real SQuAD file.
ARTICLES = [
    ("The Eiffel Tower is a tower in Paris, France. It was built by Gustave Eiffel's company in "
     "1889.", "Who built the tower?", "Gustave Eiffel's company"),
    ("The cat sat on the mat in the old house.", "Where did the cat sit?", "on the mat"),
    ("Marie Curie won the Nobel Prize in physics in 1903.", "What did Marie Curie win?",
     "the Nobel Prize"),
    ("Le  Café  de   Flore, à Paris, opened in 1887.", "What opened in 1887?",
     "Le  Café  de   Flore"),
    ("The dog ate a bone in the garden, then slept under a tree.", "What did the dog eat?",
     "a bone"),
    (LONG_CONTEXT, "Where is the treasure?", "under the old oak"),
]
IMPOSSIBLE = ("The river flows to the sea.", "Who built the bridge?")
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def vocabulary():
    """Every word of the articles (lower-cased, accents stripped) and their punctuation."""
    texts = [text for article in ARTICLES for text in article[:2]] + list(IMPOSSIBLE)
    basic = tokenization.BasicTokenizer(do_lower_case=True)
    return SPECIAL_TOKENS + sorted({token for text in texts for token in basic.tokenize(text)})


def squad_json(version, impossible=False):
    paragraphs = [{"context": context, "qas": [{
        "id": f"q{index}", "question": question,
        "answers": [{"text": answer, "answer_start": context.index(answer)}]}]}
        for index, (context, question, answer) in enumerate(ARTICLES)]
    if impossible:
        context, question = IMPOSSIBLE
        paragraphs.append({"context": context, "qas": [{"id": "none", "question": question,
                                                        "is_impossible": True,
                                                        "answers": []}]})
    return {"version": version, "data": [{"title": "Tiny", "paragraphs": paragraphs}]}


def run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT)


def checked(process):
    assert process.returncode == 0, process.stderr[-3000:]
    return process


def last_line(process):
    lines = process.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def read_results(path):
    return {key: float(value) for key, value in
            (line.split(" = ") for line in path.read_text().splitlines())}


def logged_losses(output_dir):
    """{step: task loss} of the run's TensorBoard events."""
    losses = {}
    for path in glob.glob(str(output_dir / "events.out.tfevents.*")):
        for event in tf1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "task_loss":
                    losses[event.step] = value.simple_value
    return losses


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny pretrained-like model with the articles' vocabulary, and the SQuAD files."""
    root = tmp_path_factory.mktemp("squad")
    vocab = vocabulary()
    config = tiny_config(vocab_size=len(vocab), hidden_size=HIDDEN, num_attention_heads=4,
                         intermediate_size=2 * HIDDEN, max_position_embeddings=64,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    write_tiny_model(root / "pretrained", config, initializer_weights(config), vocab=vocab)
    (root / "train-v1.1.json").write_text(json.dumps(squad_json("1.1")), encoding="utf-8")
    (root / "dev-v2.0.json").write_text(json.dumps(squad_json("v2.0", impossible=True)),
                                        encoding="utf-8")
    return root


def squad_command(world, output_dir, *extra):
    return ["bert.run_squad", f"--init_checkpoint={world / 'pretrained'}",
            f"--train_file={world / 'train-v1.1.json'}",
            f"--predict_file={world / 'train-v1.1.json'}", f"--output_dir={output_dir}",
            "--do_train", "--do_predict", *SIZE_FLAGS, *TRAIN_FLAGS, *extra]


@pytest.fixture(scope="module")
def trained(world):
    """run_squad's output folder after memorising the training questions."""
    output_dir = world / "trained"
    checked(run(*squad_command(world, output_dir)))
    return output_dir


@pytest.fixture(scope="module")
def exported(world, trained):
    output_dir = world / "exported"
    checked(run("deploy.export_squad", "--model_dir", trained / "model", "--output_dir",
                output_dir, "--max_seq_length", MAX_SEQ_LENGTH, "--max_query_length",
                MAX_QUERY_LENGTH, "--predict_file", world / "train-v1.1.json"))
    return output_dir


# The graph -------------------------------------------------------------------------------------
def test_head_has_google_names_and_the_loss_is_the_mean_cross_entropy():
    rng = np.random.RandomState(0)
    sequence = rng.normal(size=[2, 5, 4]).astype(np.float32)
    starts, ends = np.array([1, 3]), np.array([2, 4])
    with tf.Graph().as_default():
        start_logits, end_logits = squad_model.qa_head(tf.constant(sequence))
        loss = squad_model.span_loss(start_logits, end_logits, starts, ends)
        shapes = {variable.op.name: variable.shape.as_list()
                  for variable in tf1.global_variables()}
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            start_values, end_values, loss_values = session.run(
                [start_logits, end_logits, loss])
    assert shapes == {squad_model.HEAD_WEIGHTS: [2, 4], squad_model.HEAD_BIAS: [2]}
    assert start_values.shape == end_values.shape == (2, 5)

    def cross_entropy(logits, gold):
        return -(logits - np.log(np.exp(logits).sum(-1, keepdims=True)))[range(2), gold]

    expected = (cross_entropy(start_values, starts) + cross_entropy(end_values, ends)) / 2
    np.testing.assert_allclose(loss_values, expected, rtol=1e-5)


class _DropsTokens(methods.Method):
    name = "drops_tokens"

    def build(self, bert_config, is_training):
        hooks = methods.GraphHooks()
        hooks.token_selector = lambda *arguments: arguments[1:]
        return hooks


def run_settings(world, output_dir, **overrides):
    """QaRunSettings of a training run on the tiny model, as the processes' flags make them."""
    values = dict(vocab_file=str(world / "pretrained" / "vocab.txt"),
                  bert_config_file=str(world / "pretrained" / "bert_config.json"),
                  output_dir=str(output_dir), init_checkpoint=str(world / "pretrained"),
                  train_file=str(world / "train-v1.1.json"), do_train=True,
                  max_seq_length=MAX_SEQ_LENGTH, max_query_length=MAX_QUERY_LENGTH,
                  doc_stride=DOC_STRIDE)
    values.update(overrides)
    return squad_model.QaRunSettings(**values)


def test_methods_that_drop_tokens_are_refused(world, tmp_path):
    with pytest.raises(UsageError, match="drops_tokens drops tokens"):
        squad_model.QaRun(run_settings(world, tmp_path / "out"), [_DropsTokens()])
    assert not (tmp_path / "out").exists()


# Fine-tuning and prediction as processes -------------------------------------------------------
def test_fine_tuning_memorises_the_training_questions(trained):
    losses = logged_losses(trained)
    first, last = losses[min(losses)], losses[max(losses)]
    assert last < first / LOSS_DROP, losses
    results = read_results(trained / squad_eval.EVAL_RESULTS_FILE)
    assert results["exact_match"] >= MEMORISED_EM, results
    assert results["total"] == len(ARTICLES) and results["missing"] == 0
    predictions = json.loads((trained / squad_eval.PREDICTIONS_FILE).read_text())
    assert predictions["q3"] == "Le  Café  de   Flore"  # the context's own characters
    nbest = json.loads((trained / squad_eval.NBEST_FILE).read_text())
    assert nbest["q0"][0]["text"] == predictions["q0"]
    model_dir = trained / squad_model.MODEL_DIR
    stored = checkpoint.list_checkpoint(str(model_dir))
    assert stored[squad_model.HEAD_WEIGHTS] == [2, HIDDEN]
    assert not any("adam" in name for name in stored)
    assert (model_dir / "vocab.txt").is_file() and (model_dir / "bert_config.json").is_file()


def test_rerun_resumes_and_reuses_the_cached_features(world, trained, tmp_path):
    output_dir = tmp_path / "resumed"
    shutil.copytree(trained, output_dir)
    record = output_dir / squad_model.TRAIN_RECORD
    before = record.stat().st_mtime_ns
    steps = tf.train.latest_checkpoint(str(output_dir)).rsplit("-", 1)[1]
    flags = [flag for flag in squad_command(world, output_dir) if "num_train_epochs" not in flag]
    checked(run(*flags, "--num_train_epochs=50"))
    after = tf.train.latest_checkpoint(str(output_dir)).rsplit("-", 1)[1]
    assert int(after) > int(steps)
    assert record.stat().st_mtime_ns == before


def test_v2_prediction_writes_null_odds_and_split_scores(world, trained, tmp_path):
    output_dir = tmp_path / "v2"
    checked(run("bert.run_squad", f"--init_checkpoint={trained / squad_model.MODEL_DIR}",
                f"--predict_file={world / 'dev-v2.0.json'}", f"--output_dir={output_dir}",
                "--do_predict", "--version_2_with_negative", *SIZE_FLAGS))
    null_odds = json.loads((output_dir / squad_eval.NULL_ODDS_FILE).read_text())
    assert set(null_odds) == {f"q{index}" for index in range(len(ARTICLES))} | {"none"}
    results = read_results(output_dir / squad_eval.EVAL_RESULTS_FILE)
    assert results["HasAns_total"] == len(ARTICLES) and results["NoAns_total"] == 1
    assert results["HasAns_exact"] >= MEMORISED_EM


def _malformed(tmp_path):
    broken = squad_json("1.1")
    del broken["data"][0]["paragraphs"][1]["qas"][0]["question"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    return path


@pytest.mark.parametrize("case, message", [
    ("no_train_file", "--train_file is required with --do_train"),
    ("malformed", r'broken\.json: data\[0\]\.paragraphs\[1\]\.qas\[0\]: missing "question"'),
    ("doc_stride", "--doc_stride=40 must be between 1 and 33"),
])
def test_bad_input_is_one_line_and_writes_nothing(world, tmp_path, case, message):
    output_dir = tmp_path / "out"
    flags = squad_command(world, output_dir)
    if case == "no_train_file":
        flags = [flag for flag in flags if not flag.startswith("--train_file")]
    elif case == "malformed":  # the predict file: read before training starts
        flags.append(f"--predict_file={_malformed(tmp_path)}")
    else:
        flags.append("--doc_stride=40")
    process = run(*flags)
    assert process.returncode == 1, process.stderr[-2000:]
    assert last_line(process).startswith("run_squad: error: ")
    assert re.search(message, last_line(process)), last_line(process)
    assert "Traceback" not in process.stderr
    assert not output_dir.exists()


def test_resumed_run_equals_the_uninterrupted_one(world, tmp_path):
    """Stopped mid-epoch and run again: the same batches, the same final weights."""
    def settings(output_dir):
        return run_settings(world, output_dir, train_batch_size=4, num_train_epochs=4,
                            learning_rate=1e-3, save_checkpoints_steps=5)

    whole = squad_model.QaRun(settings(tmp_path / "whole"))
    whole.run()
    stop = whole.num_train_steps // 2 + 1  # a checkpoint step that is no epoch's end
    assert squad_model.QaRun(settings(tmp_path / "resumed")).train(max_steps=stop) is None
    squad_model.QaRun(settings(tmp_path / "resumed")).run()
    whole = checkpoint.read_checkpoint(str(tmp_path / "whole" / squad_model.MODEL_DIR))
    resumed = checkpoint.read_checkpoint(str(tmp_path / "resumed" / squad_model.MODEL_DIR))
    assert whole.keys() == resumed.keys()
    for name in whole:
        np.testing.assert_allclose(whole[name], resumed[name], atol=1e-6, err_msg=name)


# Export ----------------------------------------------------------------------------------------
def _graph_pieces(texts, vocab_file, do_lower_case):
    with tf.Graph().as_default():
        table = export.vocab_table(vocab_file)
        pieces = export_squad.tokenize_with_offsets(tf.constant(texts), table, do_lower_case)
        with tf1.Session() as session:
            session.run(tf1.tables_initializer())
            return [value.to_list() for value in session.run(pieces)]


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_graph_tokenizer_gives_python_ids_and_character_offsets(tmp_path, do_lower_case):
    """Accents (composed, decomposed, at a piece's end), punctuation, runs of spaces, a final
    sigma, control chars, CJK, line separators, a too-long word, empty text."""
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(SPECIAL_TOKENS + [".", ",", "?", "'", "(", ")", ";"]
                                    + TRICKY_WORDS + CASED_WORDS) + "\n", encoding="utf-8")
    texts = [TRICKY_TEXT, "", "   ", "\u0301cafe\u0301s. x\u0301y", ARTICLES[3][0]]
    tokenizer = tokenization.create_tokenizer(str(vocab_file), do_lower_case)
    ids, starts, ends = _graph_pieces(texts, str(vocab_file), do_lower_case)
    for index, text in enumerate(texts):
        pieces, spans = squad.tokenize_with_offsets(tokenizer, text)
        assert ids[index] == tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text)), text
        assert list(zip(starts[index], ends[index])) == [tuple(span) for span in spans], text


def test_graph_encoding_is_the_first_window_of_convert_examples(world):
    """Ids, mask, segments and context offsets of ``[CLS] question [SEP] context [SEP]`` in the
    graph are bert.squad's first window; a long question is cut to max_query_length."""
    examples = squad.read_squad(str(world / "train-v1.1.json"), is_training=False)
    examples.append(squad.QaExample("long", "Where is the treasure? " * 4, LONG_CONTEXT, []))
    features = [feature for feature in _features(world / "pretrained", examples)
                if feature.window_index == 0]
    with tf.Graph().as_default():
        table = export.vocab_table(str(world / "pretrained" / "vocab.txt"))
        encoded = export_squad.encode_question_context(
            tf.constant([example.question for example in examples]),
            tf.constant([example.context for example in examples]), table, True,
            MAX_SEQ_LENGTH, MAX_QUERY_LENGTH)
        with tf1.Session() as session:
            session.run(tf1.tables_initializer())
            (ids, mask, segments), (starts, ends), offsets, lengths = session.run(encoded)
    for row, feature in enumerate(features):
        size = sum(feature.input_mask)
        assert ids[row, :size].tolist() == feature.input_ids[:size]
        assert mask[row].tolist() == feature.input_mask[:mask.shape[1]]
        assert segments[row, :size].tolist() == feature.segment_ids[:size]
        spans = feature.token_spans[offsets[row]:offsets[row] + lengths[row]]
        assert None not in spans and lengths[row] == size - offsets[row] - 1
        pieces = list(zip(starts.to_list()[row], ends.to_list()[row]))[:lengths[row]]
        assert pieces == [tuple(span) for span in spans]


def _features(model_dir, examples):
    """Every window of the examples, cut as the tests' runs cut them."""
    tokenizer = tokenization.create_tokenizer(str(model_dir / "vocab.txt"), True)
    settings = squad.QaFeatureSettings(MAX_SEQ_LENGTH, DOC_STRIDE, MAX_QUERY_LENGTH)
    return squad.convert_examples(examples, tokenizer, settings, False)


def _checkpoint_logits(model_dir, features):
    """Token arrays of the features and the model folder's start/end logits on them, from a
    plain graph restored from its checkpoint."""
    bert_config = modeling.BertConfig.from_json_file(str(model_dir / "bert_config.json"))
    arrays = [np.array([getattr(feature, name) for feature in features], np.int32)
              for name in inference.INPUT_NAMES]
    with tf.Graph().as_default():
        hooks = methods.build_all([], bert_config, False)
        _, start_logits, end_logits = squad_model.build_qa_logits(
            bert_config, False, *map(tf.constant, arrays), hooks)
        saver = tf1.train.Saver()
        with tf1.Session(config=session_config()) as session:
            saver.restore(session, checkpoint.resolve_checkpoint(str(model_dir)))
            return arrays, session.run([start_logits, end_logits])


def test_onnx_logits_equal_the_checkpoints(world, trained, exported):
    model_dir = trained / squad_model.MODEL_DIR
    examples = squad.read_squad(str(world / "train-v1.1.json"), is_training=False)
    arrays, expected = _checkpoint_logits(model_dir, _features(model_dir, examples))
    fp32 = onnx.load(str(exported / export.ONNX_FILE))
    assert [value.name for value in fp32.graph.input] == list(inference.INPUT_NAMES)
    assert [value.name for value in fp32.graph.output] == list(export_squad.LOGIT_OUTPUTS)
    assert all([dim.dim_param for dim in value.type.tensor_type.shape.dim]
               == ["batch", "sequence"] for value in [*fp32.graph.input, *fp32.graph.output])
    for name, tolerance in ((export.ONNX_FILE, LOGIT_TOLERANCE),
                            (export.INT8_FILE, INT8_TOLERANCE)):
        session = onnxruntime.InferenceSession(str(exported / name),
                                               providers=["CPUExecutionProvider"])
        logits = session.run(list(export_squad.LOGIT_OUTPUTS),
                             dict(zip(inference.INPUT_NAMES, arrays)))
        for got, want in zip(logits, expected):
            assert np.max(np.abs(got - want)) < tolerance, name
    summary = json.loads((exported / export.EXPORT_FILE).read_text())
    assert max(summary["max_abs_logit_diff_vs_checkpoint"]["onnx"].values()) < LOGIT_TOLERANCE
    agreement = summary["saved_model_answers_equal_checkpoint"]
    assert agreement["agree"] == agreement["total"] == len(ARTICLES)
    assert agreement["longer_than_one_window"] == 1


def test_saved_model_answers_as_the_checkpoint_with_exact_offsets(world, trained, exported):
    """run_squad's answers (doc_stride windows) for every question whose context fits one
    window, as substrings at the returned character offsets; no context gives no answer."""
    examples = squad.read_squad(str(world / "train-v1.1.json"), is_training=False)
    several = {feature.example_index for feature
               in _features(trained / squad_model.MODEL_DIR, examples) if feature.window_index}
    one_window = [example for index, example in enumerate(examples) if index not in several]
    assert len(one_window) == len(ARTICLES) - 1
    predictions = json.loads((trained / squad_eval.PREDICTIONS_FILE).read_text())
    runner = export_squad.SavedModelRunner(str(exported / export.SAVED_MODEL_DIR))
    try:
        outputs = runner([example.question for example in one_window] + ["What?"],
                         [example.context for example in one_window] + [""])
    finally:
        runner.close()
    starts, ends = outputs[export_squad.ANSWER_START], outputs[export_squad.ANSWER_END]
    for index, example in enumerate(one_window):
        answer = outputs[export_squad.ANSWER][index]
        assert answer == predictions[example.qas_id]
        assert example.context[starts[index]:ends[index]] == answer
    assert outputs[export_squad.ANSWER][-1] == ""
    assert outputs[export_squad.SCORE][-1] == -math.inf
    assert np.all(np.isfinite(outputs[export_squad.SCORE][:-1]))


def test_export_refuses_a_model_without_a_squad_head(tmp_path):
    write_tiny_model(tmp_path / "classifier")  # a classifier head, no cls/squad
    process = run("deploy.export_squad", "--model_dir", tmp_path / "classifier",
                  "--output_dir", tmp_path / "out")
    assert process.returncode == 1
    assert last_line(process).startswith("deploy.export_squad: error: --model_dir=")
    assert "no SQuAD head" in last_line(process)
    assert not (tmp_path / "out").exists()



# Distillation from a SQuAD teacher ----------------------------------------------------------------
def logged(output_dir, tag):
    values = {}
    for path in glob.glob(str(output_dir / "events.out.tfevents.*")):
        for event in tf1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = value.simple_value
    return values


@pytest.mark.slow  # CI's set keeps fine-tuning and export; these chain on
def test_a_smaller_student_distils_from_the_squad_teacher(world, trained, tmp_path):
    """One layer instead of two, from initialiser weights: the KL of the teacher's start and
    end distributions falls and the student answers the questions the teacher memorised."""
    vocab = vocabulary()
    config = tiny_config(vocab_size=len(vocab), hidden_size=HIDDEN, num_attention_heads=4,
                         num_hidden_layers=1, intermediate_size=2 * HIDDEN,
                         max_position_embeddings=64, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)
    write_tiny_model(tmp_path / "student", config, initializer_weights(config), vocab=vocab)
    output_dir = tmp_path / "distilled"
    command = [flag.replace(str(world / "pretrained"), str(tmp_path / "student"))
               for flag in squad_command(world, output_dir)]
    checked(run("distill.run_squad", *command[1:], f"--teacher_model_dir={trained / 'model'}",
                "--temperature=2", "--attention_weight=0"))
    logit_loss = logged(output_dir, "distill_logit_loss")
    assert logit_loss[max(logit_loss)] < logit_loss[min(logit_loss)] / LOSS_DROP, logit_loss
    results = read_results(output_dir / squad_eval.EVAL_RESULTS_FILE)
    assert results["exact_match"] >= MEMORISED_EM, results
    stored = checkpoint.list_checkpoint(str(output_dir / squad_model.MODEL_DIR))
    assert not any(name.startswith(("teacher/", "distill/")) for name in stored)


def test_a_teacher_without_a_squad_head_is_refused_in_one_line(world, tmp_path):
    output_dir = tmp_path / "student"
    process = run("distill.run_squad", *squad_command(world, output_dir)[1:],
                  f"--teacher_model_dir={world / 'pretrained'}")
    assert process.returncode == 1
    assert last_line(process) == (f"distill.run_squad: error: --teacher_model_dir="
                                  f"{world / 'pretrained'}: no SQuAD head "
                                  f"({squad_model.HEAD_WEIGHTS}); fine-tune the teacher with "
                                  "bert.run_squad"), last_line(process)
    assert not output_dir.exists()


# FLOP on SQuAD ----------------------------------------------------------------------------------
@pytest.mark.slow  # CI's set keeps fine-tuning and export; these chain on
def test_flop_prunes_a_squad_model_into_a_compact_one_that_still_answers(world, trained,
                                                                         tmp_path):
    """factorize (the span head kept) → flop.run_squad → remove_mask → predict with the compact
    model: the gates reach the target and the compact folder is a working SQuAD model."""
    factorized = tmp_path / "factorized"
    checked(run("flop.factorize", f"--bert_config_file={trained / 'model' / 'bert_config.json'}",
                f"--checkpoint={trained / 'model'}", f"--output_dir={factorized}"))
    assert squad_model.HEAD_WEIGHTS in checkpoint.list_checkpoint(str(factorized))
    pruned = tmp_path / "pruned"
    command = [flag.replace(str(world / "pretrained"), str(factorized))
               for flag in squad_command(world, pruned)]
    checked(run("flop.run_squad", *command[1:], "--target_sparsity=0.5",
                "--target_sparsity_warmup=20", "--lambda_learning_rate=0.05",
                "--alpha_learning_rate=0.1", "--learning_rate=1e-3"))
    compact = tmp_path / "compact"
    process = checked(run("flop.remove_mask", f"--checkpoint={pruned / 'model'}",
                          f"--output_folder_dir={compact}", "--latency_iterations=0"))
    info = dict(line.split(": ", 1) for line in (compact / "info.txt").read_text().splitlines()
                if ": " in line)
    assert float(info["deterministic_sparsity"]) > 0.3, process.stdout
    predicted = tmp_path / "predicted"
    checked(run("bert.run_squad", f"--init_checkpoint={compact}", "--do_predict",
                f"--predict_file={world / 'train-v1.1.json'}", f"--output_dir={predicted}",
                *SIZE_FLAGS))
    results = read_results(predicted / squad_eval.EVAL_RESULTS_FILE)
    assert results["total"] == len(ARTICLES) and results["missing"] == 0
    assert results["exact_match"] >= COMPACT_EM, results


def test_the_classifier_export_points_a_squad_model_to_export_squad(trained, tmp_path):
    process = run("deploy.export", f"--model_dir={trained / 'model'}",
                  f"--output_dir={tmp_path / 'out'}", f"--max_seq_length={MAX_SEQ_LENGTH}")
    assert process.returncode == 1
    assert last_line(process).endswith("deploy.export_squad exports it"), last_line(process)
    assert not (tmp_path / "out").exists()
