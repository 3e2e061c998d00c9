"""prune_ofa.pretrain as a process: masked-LM pre-training on raw text prunes the encoder to the
target with the dense teacher distilled in, records the sparsity in the folder's config, and the
downstream stage keeps that pattern (the two stages of the recipe, chained)."""
import subprocess
import sys

import pytest

from bert import checkpoint, modeling
from conftest import REPO_ROOT
from prune_ofa.method import CONFIG_KEY, kernel_sparsity
from test_distill_pretraining import write_text
from test_prune_ofa_process import zeros_of
from tiny_bert import write_small_model, write_sst2_task

TIMEOUT = 300
SEQ = 32
PREDICTIONS = 6
STEPS = 12
SPARSITY = 0.75


def run(module, *flags):
    return subprocess.run([sys.executable, "-m", module, *flags], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ofa_pretrain")
    write_small_model(root / "dense")
    text = write_text(root / "text.txt", documents=20, learnable=True)
    made = run("bert.pretraining_data", f"--input_file={text}",
               f"--vocab_file={root / 'dense' / 'vocab.txt'}",
               f"--output_file={root / 'data.tfrecord'}", f"--max_seq_length={SEQ}",
               f"--max_predictions_per_seq={PREDICTIONS}", "--dupe_factor=2")
    assert made.returncode == 0, made.stderr[-2000:]
    flags = [f"--input_file={root / 'data.tfrecord'}", f"--init_checkpoint={root / 'dense'}",
             f"--output_dir={root / 'run'}", f"--max_seq_length={SEQ}",
             f"--max_predictions_per_seq={PREDICTIONS}", f"--num_train_steps={STEPS}",
             "--train_batch_size=8", "--learning_rate=1e-3", f"--final_sparsity={SPARSITY}",
             "--pruning_start=2", "--pruning_end=8", "--pruning_frequency=2"]
    done = run("prune_ofa.pretrain", *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sparse encoder" in done.stdout
    return root, flags


def test_pretraining_prunes_every_kernel_to_the_target_and_records_it(pretrained):
    root, flags = pretrained
    model = root / "run" / "model"
    values = checkpoint.read_checkpoint(str(model))
    shares = kernel_sparsity(values)
    assert shares and all(share == pytest.approx(SPARSITY, abs=0.01) for share in shares.values())
    config = modeling.BertConfig.from_json_file(str(model / "bert_config.json"))
    assert config.extra[CONFIG_KEY]["kernel_sparsity"] == pytest.approx(shares, abs=1e-6)
    assert not any(name.startswith(("teacher/", "cls/")) for name in values)
    again = run("prune_ofa.pretrain", *flags)
    assert again.returncode == 0 and "already done" in again.stderr
    other = run("prune_ofa.pretrain", *flags, "--final_sparsity=0.5")
    assert other.returncode != 0
    assert "final_sparsity" in other.stderr.strip().splitlines()[-1]


def test_the_task_stage_keeps_the_pretrained_pattern(pretrained, tmp_path):
    root, _ = pretrained
    write_sst2_task(tmp_path / "data")
    done = run("prune_ofa.run_classifier", "--task_name=SST-2",
               f"--data_dir={tmp_path / 'data'}", f"--init_checkpoint={root / 'run' / 'model'}",
               f"--output_dir={tmp_path / 'task'}", "--max_seq_length=16", "--do_train",
               "--train_batch_size=8", "--learning_rate=1e-2", "--num_train_epochs=2")
    assert done.returncode == 0, done.stderr[-3000:]
    before, after = zeros_of(root / "run" / "model"), zeros_of(tmp_path / "task" / "sparse" /
                                                                "model")
    for name, pattern in before.items():
        assert (after[name] == pattern).all(), name


@pytest.mark.parametrize("flags, named", [
    (["--final_sparsity=0"], "--final_sparsity"),
    (["--pruning_end=500"], "--pruning_end=500"),
    (["--teacher_model_dir=/nonexistent"], "--teacher_model_dir=/nonexistent"),
])
def test_bad_flags_are_one_line_before_anything_is_written(pretrained, tmp_path, flags, named):
    root, base = pretrained
    changed = [flag for flag in base if not flag.startswith("--output_dir")] + [
        f"--output_dir={tmp_path / 'out'}"] + flags
    process = run("prune_ofa.pretrain", *changed)
    assert process.returncode != 0
    assert named in process.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()
