"""deploy.compress on a tiny model: every step runs, a run stopped between steps or by a signal
resumes where it was, and the compound model carries both methods in its config."""
import json
import os
import pathlib
import signal
import subprocess

import pytest

from bert import modeling
from conftest import REPO_ROOT
from deploy import compress
from power_bert.token_selectors import RETENTION_CONFIG_KEY
from tiny_bert import compress_command, write_small_model, write_sst2_task

TIMEOUT = 900
EXIT_SIGTERM = 143


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compress")
    write_small_model(root / "pretrained")
    write_sst2_task(root / "data", rows=32)
    return root


def run(inputs, output_dir, *extra):
    return subprocess.run(compress_command(inputs, output_dir, *extra), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT)


def test_resumes_after_a_stop_between_steps(inputs, tmp_path):
    output = tmp_path / "out"
    first = run(inputs, output, "--stop_after=2_factorize")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "stopped after 2_factorize" in first.stdout
    assert not (output / compress.PRUNE_DIR).exists()

    # The same folders typed relative to the working folder: the steps done are still done.
    relative = pathlib.Path(os.path.relpath(inputs, REPO_ROOT))
    second = run(relative, os.path.relpath(output, REPO_ROOT),
                 f"--stop_after={compress.POWER_DIR}")
    assert second.returncode == 0, second.stderr[-3000:]
    for step in (compress.FINE_TUNE_DIR, compress.FACTORIZED_DIR):
        assert f"{step}: already done, skipped" in second.stdout
    for step in (compress.PRUNE_DIR, compress.COMPACT_DIR, compress.POWER_DIR):
        assert f"{step}: done in" in second.stdout
        assert json.loads((output / step / compress.STEP_DONE_FILE).read_text())["commands"]
    compound = modeling.BertConfig.from_json_file(
        str(output / compress.POWER_MODEL / "bert_config.json"))
    assert compound.extra["pruned"] and compound.extra["kept_ranks"]  # FLOP-compact ...
    assert len(compound.extra[RETENTION_CONFIG_KEY]) == compound.num_hidden_layers  # + PoWER


def test_stop_signal_during_a_step_saves_and_resumes(inputs, tmp_path):
    output = tmp_path / "out"
    process = subprocess.Popen(compress_command(inputs, output, "--stop_after=1_fine_tune",
                                       "--epochs=400"),
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    for line in process.stderr:  # the fine-tuning tool is training
        if "examples/s" in line:
            break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == EXIT_SIGTERM, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("deploy.compress: error: stopped by SIGTERM during step 1_fine_tune")
    assert "run_classifier: error: stopped by SIGTERM; saved " in stderr  # the tool saved
    assert not (output / compress.FINE_TUNE_DIR / compress.STEP_DONE_FILE).exists()


def test_bad_input_is_one_line(inputs, tmp_path):
    process = run(inputs, tmp_path / "out", "--target_sparsity=1.5")
    assert process.returncode == 1
    assert process.stderr.strip().splitlines()[-1] == (
        "deploy.compress: error: --target_sparsity=1.5: must be in [0, 1)")
    assert not (tmp_path / "out").exists()
