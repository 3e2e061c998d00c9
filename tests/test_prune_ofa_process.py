"""prune_ofa.run_classifier as a process: the whole downstream chain (prune + distil, then QAT)
on a tiny model, bad flags refused before anything is written, and a run killed with SIGKILL
mid-pruning that resumes to the masks of the uninterrupted run."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bert import checkpoint, modeling
from conftest import REPO_ROOT
from deploy import export
from prune_ofa import quantize
from prune_ofa.method import CONFIG_KEY, kernel_sparsity
from tiny_bert import write_small_model, write_sst2_task

TIMEOUT = 300
SEQ = 16
ROWS = 160  # batch 8: 20 steps an epoch
SPARSITY = 0.5
POLL_SECONDS = 0.05
KILL_AFTER_STEP = 20  # a checkpoint after the first mask updates, before the last


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ofa_inputs")
    write_small_model(root / "dense", num_labels=2)
    write_sst2_task(root / "data", rows=ROWS)
    return root


def command(inputs, output_dir, *extra, **overrides):
    flags = {"task_name": "SST-2", "data_dir": inputs / "data", "init_checkpoint":
             inputs / "dense", "teacher_model_dir": inputs / "dense", "output_dir": output_dir,
             "max_seq_length": SEQ, "train_batch_size": 8, "learning_rate": 1e-3,
             "num_train_epochs": 2, "final_sparsity": SPARSITY, "pruning_start": 4,
             "pruning_end": 30, "pruning_frequency": 4, "save_checkpoints_steps": 10}
    flags.update(overrides)
    return [sys.executable, "-m", "prune_ofa.run_classifier", "--do_train", "--do_eval",
            *(f"--{name}={value}" for name, value in flags.items()), *extra]


def run(args):
    process = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=TIMEOUT)
    assert process.returncode == 0, process.stderr[-3000:]
    return process


def zeros_of(model_dir):
    values = checkpoint.read_checkpoint(str(model_dir))
    return {name: value == 0.0 for name, value in values.items()
            if name.startswith("bert/encoder/") and name.endswith("/kernel")}


def test_prune_distil_then_qat_then_export(inputs, tmp_path):
    output = tmp_path / "ofa"
    done = run(command(inputs, output, qat_epochs=1))
    assert "sparse fine-tuning" in done.stdout and "quantization-aware training" in done.stdout
    sparse, qat = output / "sparse" / "model", output / "qat" / "model"
    config = modeling.BertConfig.from_json_file(str(sparse / "bert_config.json"))
    shares = kernel_sparsity(checkpoint.read_checkpoint(str(sparse)))
    assert config.extra[CONFIG_KEY]["kernel_sparsity"] == pytest.approx(shares, abs=1e-6)
    assert set(shares.values()) == {SPARSITY}
    # QAT kept the pattern and learned a range for every kernel's input.
    assert zeros_of(sparse).keys() == zeros_of(qat).keys()
    for name, pattern in zeros_of(sparse).items():
        assert (zeros_of(qat)[name] == pattern).all(), name
    qat_values = checkpoint.read_checkpoint(str(qat))
    assert len(quantize.learned_ranges(qat_values)) == len(shares)
    assert modeling.BertConfig.from_json_file(str(qat / "bert_config.json")).extra[
        quantize.CONFIG_KEY]
    results = (output / "qat" / "eval_results.txt").read_text()
    assert "encoder_sparsity = 0.5" in results and "eval_accuracy" in results
    # The same command again changes nothing.
    again = run(command(inputs, output, qat_epochs=1))
    assert "already done" in again.stderr
    assert export.main(["--model_dir", str(qat), "--output_dir", str(tmp_path / "export"),
                        "--max_seq_length", str(SEQ), "--task_name", "SST-2", "--data_dir",
                        str(inputs / "data")]) == 0
    summary = json.loads((tmp_path / "export" / export.EXPORT_FILE).read_text())
    assert "learned" in summary["files"][export.INT8_FILE]["quantization"]
    assert summary["dev"]["onnx_int8"] == pytest.approx(summary["dev"]["checkpoint"], abs=0.03)


@pytest.mark.parametrize("flag, value, named", [
    ("final_sparsity", "1.5", "--final_sparsity=1.5"),
    ("initial_sparsity", "0.8", "--initial_sparsity=0.8"),
    ("pruning_end", "500", "--pruning_end=500"),
    ("pruning_frequency", "0", "--pruning_frequency=0"),
    ("teacher_model_dir", "/nonexistent", "--teacher_model_dir=/nonexistent"),
    ("qat_epochs", "-1", "--qat_epochs=-1"),
    ("range_decay", "1.5", "--range_decay=1.5"),
    ("distill_weight", "2", "--distill_weight=2"),
    ("block", "3x3", "block"),
])
def test_bad_flags_are_one_line_before_anything_is_written(inputs, tmp_path, flag, value,
                                                           named):
    output = tmp_path / "ofa"
    process = subprocess.run(command(inputs, output, **{flag: value}), cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=TIMEOUT)
    assert process.returncode != 0
    last = process.stderr.strip().splitlines()[-1]
    assert named in last and "Traceback" not in process.stderr
    assert not output.exists()


def killed_then_resumed(args, training_dir):
    """Run ``args``; SIGKILL once a checkpoint at KILL_AFTER_STEP or later is written (mid
    pruning); the same command again."""
    process = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + TIMEOUT
    while process.poll() is None and time.time() < deadline and not [
            path for path in glob.glob(os.path.join(training_dir, "model.ckpt-*.index"))
            if int(path.rsplit("-", 1)[1].split(".")[0]) >= KILL_AFTER_STEP]:
        time.sleep(POLL_SECONDS)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=TIMEOUT)
    assert not os.path.isdir(os.path.join(training_dir, "model")), "killed after the end"
    run(args)


def test_killed_mid_pruning_resumes_to_the_same_masks(inputs, tmp_path):
    run(command(inputs, tmp_path / "whole"))
    killed_then_resumed(command(inputs, tmp_path / "resumed"), tmp_path / "resumed" / "sparse")
    whole = checkpoint.read_checkpoint(str(tmp_path / "whole" / "sparse" / "model"))
    resumed = checkpoint.read_checkpoint(str(tmp_path / "resumed" / "sparse" / "model"))
    whole_zeros, resumed_zeros = zeros_of(tmp_path / "whole" / "sparse" / "model"), zeros_of(
        tmp_path / "resumed" / "sparse" / "model")
    for name, pattern in whole_zeros.items():
        assert (resumed_zeros[name] == pattern).all(), name
        np.testing.assert_allclose(resumed[name], whole[name], atol=1e-6, err_msg=name)
