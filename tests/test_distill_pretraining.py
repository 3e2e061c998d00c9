"""Pre-training distillation: masked-LM instances made by Google's recipe, one-line errors for
bad text, a few MLM + hidden-state distillation steps whose losses fall, the training loop's
NaN / signal / full-disk handling, and another method composed into the objective."""
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoint, methods, modeling, tokenization
from bert.classifier import HEAD_VARIABLES, classifier_head
from bert.pretraining_data import MaskingSettings, create_instances, read_documents
from conftest import REPO_ROOT
from distill.method import load_teacher
from distill.pretraining import PretrainingSettings, pretrain
from test_distill_method import scalars
from test_entry_points import full_disk  # noqa: F401  (the fixture: a tiny tmpfs)
from tiny_bert import WORDS, random_weights, tiny_config, write_tiny_model, write_vocab

tf1 = tf.compat.v1

SEQ = 32
PREDICTIONS = 6
TIMEOUT = 300
TRAIN_STEPS = 40
TEACHER_SEED = 0  # seeded weights: the initialisers draw new ones in every run
SPECIAL_IDS = 5  # [PAD] [UNK] [CLS] [SEP] [MASK] lead the tiny vocab
# A few fixed sentences: a text whose masked pieces a tiny model can learn to predict.
LEARNABLE = ["the cat sat .", "a dog is very good .", "it was a dull plot .",
             "the film was great fun ."]


def write_text(path, documents=12, sentences=5, seed=0, learnable=False):
    """Sentences of the tiny vocab's words (random ones, or LEARNABLE's), a blank line between
    documents."""
    rng = random.Random(seed)
    lines = []
    for _ in range(documents):
        lines += [rng.choice(LEARNABLE) if learnable else
                  " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + " ."
                  for _ in range(sentences)] + [""]
    path.write_text("\n".join(lines))
    return path


def make_instances(tmp_path, seed, dupe_factor=8):
    vocab = write_vocab(tmp_path)
    tokenizer = tokenization.FullTokenizer(vocab)
    documents = read_documents([str(write_text(tmp_path / "text.txt", documents=30))],
                               tokenizer)
    settings = MaskingSettings(max_seq_length=SEQ, max_predictions_per_seq=PREDICTIONS,
                               dupe_factor=dupe_factor, random_seed=seed)
    return create_instances(documents, tokenizer, settings), tokenizer


def test_masking_follows_the_recipe(tmp_path):
    instances, tokenizer = make_instances(tmp_path, seed=3)
    mask_id, cls_id, sep_id = tokenizer.convert_tokens_to_ids(["[MASK]", "[CLS]", "[SEP]"])
    counts = {"mask": 0, "kept": 0, "random": 0}
    predicted = pieces = 0
    for instance in instances:
        ids, real = np.array(instance["input_ids"]), sum(instance["input_mask"])
        assert len(ids) == SEQ and ids[0] == cls_id and ids[real - 1] == sep_id
        assert not np.any(ids[real:]) and sum(instance["segment_ids"]) == 0
        weights = instance["masked_lm_weights"]
        count = int(sum(weights))
        positions = instance["masked_lm_positions"][:count]
        assert weights == [1.0] * count + [0.0] * (PREDICTIONS - count)
        assert count == min(PREDICTIONS, max(1, int(round((real - 2) * 0.15))))
        assert positions == sorted(set(positions)) and 1 <= positions[0]
        assert positions[-1] <= real - 2  # never [CLS], [SEP] or padding
        for position, original in zip(positions, instance["masked_lm_ids"]):
            assert original >= SPECIAL_IDS  # the label is the real piece
            kind = ("mask" if ids[position] == mask_id else
                    "kept" if ids[position] == original else "random")
            counts[kind] += 1
        predicted += count
        pieces += real - 2
    total = sum(counts.values())
    assert total > 500
    # 80/10/10 (a random piece equals the original ~1 time in 25 here, counted as kept)
    assert abs(counts["mask"] / total - 0.8) < 0.05, counts
    assert abs(counts["kept"] / total - 0.1) < 0.05, counts
    assert abs(counts["random"] / total - 0.1) < 0.05, counts
    assert abs(predicted / pieces - 0.15) < 0.03
    again, _ = make_instances(tmp_path, seed=3)
    other, _ = make_instances(tmp_path, seed=4)
    assert again == instances and other != instances


def run(command, *args):
    return subprocess.run([sys.executable, "-m", "distill.pretraining", command]
                          + [str(a) for a in args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=TIMEOUT)


def assert_one_line_error(process, program, named):
    assert process.returncode == 1, process.stderr[-2000:]
    last = process.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{program}: error:") and named in last, last
    assert "Traceback" not in process.stderr


@pytest.mark.parametrize("case", ["bad_bytes", "bad_flag"])
def test_bad_text_or_flag_is_one_line(tmp_path, case):
    text = write_text(tmp_path / "text.txt", documents=2)
    flags = [f"--input_file={text}", f"--vocab_file={write_vocab(tmp_path)}",
             f"--output_file={tmp_path / 'out.tfrecord'}"]
    if case == "bad_bytes":
        lines = text.read_bytes().split(b"\n")
        lines[2] = b"a good \xff\xfe film ."
        text.write_bytes(b"\n".join(lines))
        named = f"{text}:3:"
    else:
        flags.append("--masked_lm_prob=1.5")
        named = "--masked_lm_prob"
    process = run("create_pretraining_data", *flags)
    assert_one_line_error(process, "distill.pretraining create_pretraining_data", named)
    assert not (tmp_path / "out.tfrecord").exists()


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """Data from a small text, then TRAIN_STEPS of distillation from a 2-layer teacher into a
    1-layer, 8-wide student."""
    root = tmp_path_factory.mktemp("pretrain")
    teacher = tiny_config(hidden_size=16, num_hidden_layers=2, intermediate_size=32,
                          max_position_embeddings=64)
    write_tiny_model(root / "teacher", teacher, random_weights(teacher, num_labels=0,
                                                               seed=TEACHER_SEED))
    student = tiny_config(hidden_size=8, num_hidden_layers=1, intermediate_size=16,
                          max_position_embeddings=64)
    write_tiny_model(root / "student", student, num_labels=0)
    text = write_text(root / "text.txt", documents=20, learnable=True)
    made = run("create_pretraining_data", f"--input_file={text}",
               f"--vocab_file={root / 'student' / 'vocab.txt'}",
               f"--output_file={root / 'data.tfrecord'}", f"--max_seq_length={SEQ}",
               f"--max_predictions_per_seq={PREDICTIONS}", "--dupe_factor=3")
    assert made.returncode == 0, made.stderr[-2000:]
    flags = [f"--input_file={root / 'data.tfrecord'}", f"--init_checkpoint={root / 'student'}",
             f"--teacher_model_dir={root / 'teacher'}", f"--output_dir={root / 'run'}",
             f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDICTIONS}",
             f"--num_train_steps={TRAIN_STEPS}", "--train_batch_size=8",
             "--learning_rate=3e-3", "--log_every_n_steps=2"]
    trained = run("run_pretraining_distillation", *flags)
    assert trained.returncode == 0, trained.stderr[-3000:]
    return root, student, flags


def test_pretraining_distillation_losses_fall(pretrained):
    root, _, _ = pretrained
    for tag in ("mlm_loss", "distill_hidden_loss"):
        values = [value for _, value in scalars(root / "run", tag)]
        assert len(values) >= TRAIN_STEPS // 4, tag
        assert np.mean(values[-5:]) < 0.8 * np.mean(values[:5]), (tag, values)


def test_student_encoder_folder_fine_tunes(pretrained):
    root, student, _ = pretrained
    model_dir = root / "run" / "model"
    names = set(checkpoint.list_checkpoint(str(model_dir))) - {"global_step"}
    assert names and all(name.startswith("bert/") for name in names), sorted(names)
    assert any(name.startswith("cls/predictions/") for name in
               checkpoint.list_checkpoint(str(root / "run")))  # the head trained, stays behind
    config = modeling.BertConfig.from_json_file(str(model_dir / "bert_config.json"))
    assert config.to_dict() == student.to_dict()
    with tf.Graph().as_default():  # what fine-tuning builds: encoder from the folder, new head
        model = modeling.BertModel(config, False, tf1.placeholder(tf.int32, [None, SEQ]))
        classifier_head(model.pooled_output, 2, False)
        loaded, _ = checkpoint.init_from_checkpoint(str(model_dir), HEAD_VARIABLES)
    assert set(loaded) == names


def test_records_of_another_length_are_refused_in_one_line(pretrained, tmp_path):
    _, _, flags = pretrained
    flags = [f for f in flags if not f.startswith("--output_dir")]
    process = run("run_pretraining_distillation", *flags, f"--output_dir={tmp_path / 'o'}",
                  "--max_seq_length=16")
    assert_one_line_error(process, "distill.pretraining run_pretraining_distillation",
                          "--max_seq_length=16")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("script", ["distill-pretraining-data", "distill-pretrain"])
def test_console_scripts_refuse_a_bad_flag(script):
    path = os.path.join(os.path.dirname(sys.executable), script)
    process = subprocess.run([path, "--no_such_flag=1"], capture_output=True, text=True,
                             timeout=TIMEOUT)
    assert process.returncode == 1 and "no_such_flag" in process.stderr.strip().splitlines()[-1]


# The training loop: NaN, signals, full disk; another method in the objective ------------------
TRAIN_PROGRAM = "distill.pretraining run_pretraining_distillation"
EXIT_SIGTERM = 143
STOP_GRACE_SECONDS = 60  # to save and stop after a stop signal
DIVERGING_RATE = 1e10
SIGNALLED_STEPS = 2000  # far beyond the steps run before the signal lands; quick to finish
COMPOSED_STEPS = 2
KERNELS_PER_LAYER = 6  # query, key, value, attention output, intermediate, output


def with_flags(flags, **values):
    """``flags`` with each of ``values`` replacing its flag (or added)."""
    kept = [flag for flag in flags if flag.split("=", 1)[0][2:] not in values]
    return kept + [f"--{name}={value}" for name, value in values.items()]


def test_diverging_loss_names_the_step_and_keeps_the_last_good_checkpoint(pretrained, tmp_path):
    _, _, flags = pretrained
    output = tmp_path / "out"
    process = run("run_pretraining_distillation",
                  *with_flags(flags, output_dir=output, learning_rate=DIVERGING_RATE))
    assert_one_line_error(process, TRAIN_PROGRAM, "the loss became NaN at step ")
    line = process.stderr.strip().splitlines()[-1]
    assert f"lower the learning rate (--learning_rate={DIVERGING_RATE:g})" in line, line
    kept = checkpoint.resolve_checkpoint(str(output))
    assert kept in line
    values = checkpoint.read_checkpoint(kept)
    assert all(value.dtype.kind != "f" or np.isfinite(value).all() for value in values.values())
    assert not (output / "model").exists()


def test_sigterm_saves_the_step_and_the_same_command_resumes_to_the_last(pretrained, tmp_path):
    _, _, flags = pretrained
    output = tmp_path / "out"
    command = with_flags(flags, output_dir=output, num_train_steps=SIGNALLED_STEPS,
                         save_checkpoints_steps=SIGNALLED_STEPS, log_every_n_steps=1)
    process = subprocess.Popen([sys.executable, "-m", "distill.pretraining",
                                "run_pretraining_distillation", *command], cwd=REPO_ROOT,
                               stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # wait until training runs
        if "examples/s" in line:
            break
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=STOP_GRACE_SECONDS)[1]
    assert process.returncode == EXIT_SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"{TRAIN_PROGRAM}: error: stopped by SIGTERM; saved "), line
    assert line.endswith("; run the same command again to resume"), line
    saved = checkpoint.resolve_checkpoint(str(output))
    reached = int(saved.rsplit("-", 1)[1])
    assert saved in line and 0 < reached < SIGNALLED_STEPS
    assert not (output / "model").exists()

    again = run("run_pretraining_distillation", *command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (f"ran {SIGNALLED_STEPS - reached} training steps (global step {SIGNALLED_STEPS})"
            in again.stderr)
    model = tf.train.load_checkpoint(checkpoint.resolve_checkpoint(str(output / "model")))
    assert model.get_tensor("global_step") == SIGNALLED_STEPS


def test_full_disk_is_one_line_and_leaves_no_partial_files(pretrained, full_disk):  # noqa: F811
    _, _, flags = pretrained
    process = run("run_pretraining_distillation", *with_flags(flags, output_dir=full_disk / "out"))
    assert_one_line_error(process, TRAIN_PROGRAM, "No space left on device")
    leftovers = [str(p) for p in full_disk.rglob("*") if "tmp" in p.name or "_temp" in p.name]
    assert not leftovers


class _PruneLayersHooks(methods.GraphHooks):
    def __init__(self, bert_config, pruned):
        self.bert_config = bert_config
        self.pruned = pruned

    def transform_kernel(self, kernel, site, part):
        if site.layer_index is None:  # the pooler
            return kernel
        self.pruned.append(site.key)
        return kernel * 0.0


class _PruneLayers(methods.Method):
    """A kernel-transform method, as a compression method brings one: it zeroes every kernel
    of the encoder layers."""
    name = "prune_layers"

    def __init__(self):
        self.pruned = []  # the kernels the graphs zeroed

    def build(self, bert_config, is_training):
        return _PruneLayersHooks(bert_config, self.pruned)


def test_a_kernel_transform_method_composes_into_pretraining(pretrained, tmp_path):
    root, student, _ = pretrained
    teacher_config, teacher_prefix = load_teacher(str(root / "teacher"))
    method = _PruneLayers()
    first_loss = {}
    for name, extra in (("plain", []), ("composed", [method])):
        settings = PretrainingSettings(
            input_files=[str(root / "data.tfrecord")], output_dir=str(tmp_path / name),
            bert_config_file=str(root / "student" / "bert_config.json"),
            vocab_file=str(root / "student" / "vocab.txt"),
            teacher_model_dir=str(root / "teacher"), init_checkpoint=str(root / "student"),
            max_seq_length=SEQ, max_predictions_per_seq=PREDICTIONS, train_batch_size=8,
            num_train_steps=COMPOSED_STEPS, log_every_n_steps=1)
        model_dir = pretrain(settings, student, teacher_config, teacher_prefix, extra)
        assert (set(checkpoint.list_checkpoint(model_dir))
                == set(checkpoint.list_checkpoint(str(root / "run" / "model"))))
        first_loss[name] = scalars(tmp_path / name, "loss")[0][1]
    assert len(method.pruned) == KERNELS_PER_LAYER * student.num_hidden_layers  # one graph
    assert abs(first_loss["composed"] - first_loss["plain"]) > 1e-3, first_loss
