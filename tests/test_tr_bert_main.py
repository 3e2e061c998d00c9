"""tr_bert.run_tr_bert as processes: the seed's stages chained through model folders on a tiny
task, a complete stage skipped on re-run, and bad flags refused in one line."""
import json
import subprocess
import sys

import pytest

from bert import checkpoint, modeling
from conftest import REPO_ROOT
from tiny_bert import write_small_model, write_sst2_task
from tr_bert import run_tr_bert
from tr_bert.method import BASELINE_SCOPE, CONFIG_KEY, KEPT_SHARE_METRIC

TIMEOUT = 300
SEQ = 16
NUM_LAYERS = 3
REDUCTION_LAYERS = "0,1"
PROGRAM = "tr_bert.run_tr_bert"


def run(*args, script=False):
    command = ([sys.executable, str(REPO_ROOT / "tr_bert" / "run_tr_bert.py")] if script
               else [sys.executable, "-m", PROGRAM])
    return subprocess.run(command + [str(arg) for arg in args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT)


def stage_flags(root, init, *mode):
    return [f"--task_name=SST-2", f"--data_dir={root / 'data'}", f"--init_checkpoint={init}",
            f"--output_dir={root / 'out'}", f"--max_seq_length={SEQ}",
            f"--reduction_layers={REDUCTION_LAYERS}", "--train_batch_size=8",
            "--eval_batch_size=8", "--num_train_epochs=1", "--policy_learning_rate=0.01",
            *mode]


def succeeded(process):
    assert process.returncode == 0, process.stderr[-3000:]
    return process


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """grad + logits, heuristic initialisation, RL, joint with distillation, evaluation: each
    stage reads the last one's model folder, as in the seed."""
    root = tmp_path_factory.mktemp("tr_bert")
    write_small_model(root / "model", NUM_LAYERS, num_labels=2)
    write_sst2_task(root / "data", rows=24)
    out = root / "out"
    succeeded(run(*stage_flags(root, root / "model", "--do_eval_grad", "--do_eval_logits")))
    succeeded(run(*stage_flags(root, root / "model", "--do_train", "--train_init")))
    succeeded(run(*stage_flags(root, out / "train_init" / "model", "--do_train", "--train_rl")))
    succeeded(run(*stage_flags(root, out / "train_rl" / "model", "--do_train", "--train_both",
                               "--train_teacher", "--learning_rate=1e-3")))
    succeeded(run(*stage_flags(root, out / "train_both" / "model", "--do_eval")))
    return root


def test_stages_write_model_folders_that_chain(stages):
    out = stages / "out"
    for name in ("eval_grad/token_importance.tf_record", "eval_logits/teacher_logits.tf_record"):
        assert (out / name).is_file() and (out / (name + ".json")).is_file()
    for stage in ("train_init", "train_rl", "train_both"):
        model_dir = out / stage / run_tr_bert.MODEL_DIR
        config = modeling.BertConfig.from_json_file(str(model_dir / "bert_config.json"))
        assert config.extra[CONFIG_KEY] == {"reduction_layers": [0, 1], "policy_hidden_size": 64}
        names = checkpoint.list_checkpoint(str(model_dir))
        assert "tr_bert/policy_1/output/kernel" in names and "output_weights" in names
        assert not any(name.startswith(BASELINE_SCOPE) for name in names)
        results = (out / stage / "eval_results.txt").read_text()
        assert f"{KEPT_SHARE_METRIC} = " in results and "eval_accuracy = " in results
        assert f"{stage} dev: eval_accuracy " in (out / stage / "log_file.txt").read_text()
        assert not list((out / stage / "training").glob("model.ckpt-*"))
        assert list((out / stage / "training").glob("events.out.tfevents.*"))
    done = json.loads((out / "train_both" / "stage.json").read_text())
    assert done["settings"]["tr_bert"]["distill_weight"] > 0
    assert done["settings"]["init_checkpoint"].startswith(str(out / "train_rl" / "model"))
    rl_settings = json.loads((out / "train_rl" / "stage.json").read_text())["settings"]
    assert rl_settings["init_checkpoint"].startswith(str(out / "train_init" / "model"))
    assert "eval of " in (out / "eval" / "log_file.txt").read_text()
    assert f"{KEPT_SHARE_METRIC} = " in (out / "eval" / "eval_results.txt").read_text()


def test_complete_stage_is_skipped_and_changed_settings_refused(stages):
    rl_init = stages / "out" / "train_init" / "model"
    process = succeeded(run(*stage_flags(stages, rl_init, "--do_train", "--train_rl")))
    assert "is complete" in process.stderr
    process = run(*stage_flags(stages, rl_init, "--do_train", "--train_rl", "--alpha=0.9"))
    assert process.returncode == 1
    assert "was started with other settings (tr_bert changed)" in process.stderr.splitlines()[-1]


def test_bad_flag_is_one_line(stages, tmp_path):
    """The script form too; bad reduction layers are unit-tested in test_tr_bert.py."""
    args = stage_flags(stages, stages / "model", "--do_train", "--train_rl", "--alpha=-1")
    process = run(*[arg.replace(str(stages / "out"), str(tmp_path / "out")) for arg in args],
                  script=True)
    assert process.returncode == 1
    lines = process.stderr.strip().splitlines()
    assert lines[-1] == f"{PROGRAM}: error: --alpha=-1.0: must be in [0, inf)", lines[-1]
    assert "Traceback" not in process.stderr
    assert not (tmp_path / "out").exists()


def test_long_input_benchmark_times_dense_and_tr_bert(stages, capsys):
    from deploy import benchmark  # the one package that combines methods

    status = benchmark.main([f"dense={stages / 'model'}",
                             f"tr_bert={stages / 'out' / 'train_rl' / 'model'}",
                             "--task_name=SST-2", f"--data_dir={stages / 'data'}",
                             "--long_inputs", f"--max_seq_length={SEQ}", "--iterations=2",
                             "--batch_size=4"])
    text = capsys.readouterr().out
    assert status == 0
    assert f"texts of {SEQ} tokens" in text and "FLOPs of tr_bert: the dense count" in text
    rows = [line for line in text.splitlines() if line.startswith("| dense") or
            line.startswith("| tr_bert")]
    assert len(rows) == 2 and all("| – |" in row for row in rows)  # no labels, no dev metric
