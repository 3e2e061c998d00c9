"""The fine-tuning sweep: a 2-run grid with distillation, skipped on re-run, and its table."""
import csv
import os
import pathlib
import subprocess
import sys

import pytest

from bert.errors import UsageError
from conftest import REPO_ROOT
from distill.sweep import GridPoint, grid, parse_values
from tiny_bert import (initializer_weights, random_weights, tiny_config, write_sst2_task,
                       write_tiny_model)

SEQ = 16
TIMEOUT = 300
TASK = "SST-2"


def test_grid_and_run_names():
    points = grid([0, 1], [1e-4], [0.0], [0.35, 0.5], [8])
    assert len(points) == 4 and len(set(point.name for point in points)) == 4
    assert GridPoint(1, 1e-5, 10.0, 0.4, 16).name == "seed1_lr1e-05_wd10_warmup0.4_bs16"
    assert parse_values("1e-4,1e-5,1e-4", "learning_rates", float, 0.0) == [1e-4, 1e-5]
    with pytest.raises(UsageError, match="--warmup_proportions=0.5,2"):
        parse_values("0.5,2", "warmup_proportions", float, 0.0, 1.0)


def sweep(*args):
    return subprocess.run([sys.executable, "-m", "distill.sweep"] + [str(a) for a in args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """Two seeds of distillation from a 2-layer teacher into a 1-layer student on tiny SST-2;
    the teacher's and the student's folders are named by task ({task})."""
    root = tmp_path_factory.mktemp("sweep")
    teacher = tiny_config(hidden_size=16, num_hidden_layers=2, intermediate_size=32,
                          max_position_embeddings=64)
    write_tiny_model(root / "teachers" / TASK, teacher, random_weights(teacher))
    student = tiny_config(hidden_size=8, num_hidden_layers=1, intermediate_size=16,
                          max_position_embeddings=64)
    write_tiny_model(root / "students" / TASK, student, initializer_weights(student, 2))
    write_sst2_task(root / "glue" / TASK, rows=16)
    flags = [f"--tasks={TASK}", f"--glue_dir={root / 'glue'}",
             f"--init_checkpoint={root / 'students' / '{task}'}",
             f"--teacher_model_dir={root / 'teachers' / '{task}'}",
             f"--output_dir={root / 'out'}", f"--max_seq_length={SEQ}", "--seeds=1,2",
             "--learning_rates=1e-3", "--weight_decays=0.01", "--warmup_proportions=0.1",
             "--batch_sizes=8", "--num_train_epochs=2"]
    process = sweep(*flags)
    assert process.returncode == 0, process.stderr[-3000:]
    return root, flags, process


def test_each_run_has_results_and_a_model_folder(swept):
    root, _, _ = swept
    runs = sorted(os.listdir(root / "out" / TASK))
    names = [name for name in runs if name.startswith("seed")]
    assert names == ["seed1_lr0.001_wd0.01_warmup0.1_bs8", "seed2_lr0.001_wd0.01_warmup0.1_bs8"]
    for name in names:
        run_dir = root / "out" / TASK / name
        assert "eval_accuracy = " in (run_dir / "eval_results.txt").read_text()
        assert (run_dir / "model" / "bert_model.ckpt.index").is_file()
        assert not list(run_dir.glob("model.ckpt-*"))  # training checkpoints dropped


def test_best_table_names_the_best_run(swept):
    root, _, process = swept
    rows = list(csv.DictReader((root / "out" / "best.csv").open()))
    assert len(rows) == 1 and rows[0]["task"] == TASK and rows[0]["runs"] == "2"
    scores = {}
    for name in ("seed1", "seed2"):
        run_dir = next((root / "out" / TASK).glob(f"{name}_*"))
        line = next(l for l in (run_dir / "eval_results.txt").read_text().splitlines()
                    if l.startswith("eval_accuracy = "))
        scores[run_dir] = float(line.split(" = ")[1])
    best = max(scores.values())
    assert float(rows[0]["best"]) == pytest.approx(best, abs=1e-4)
    assert scores[pathlib.Path(rows[0]["model_dir"]).parent] == best
    assert rows[0]["seed"] in ("1", "2") and rows[0]["learning_rate"] == "0.001"
    assert rows[0]["model_dir"] in (root / "out" / "best.md").read_text()
    assert rows[0]["model_dir"] in process.stdout


def test_rerun_skips_finished_runs(swept):
    root, flags, _ = swept
    results = sorted((root / "out" / TASK).glob("seed*/eval_results.txt"))
    before = [path.stat().st_mtime_ns for path in results]
    process = sweep(*flags)
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stderr.count("done, skipped") == 2
    assert [path.stat().st_mtime_ns for path in results] == before


def test_bad_flag_is_one_line_and_runs_nothing(swept, tmp_path):
    _, flags, _ = swept
    flags = [f for f in flags if not f.startswith("--output_dir")]
    process = sweep(*flags, f"--output_dir={tmp_path / 'bad'}", "--temperature=-1")
    assert process.returncode == 1
    last = process.stderr.strip().splitlines()[-1]
    assert last.startswith("distill.sweep: error: SST-2: --temperature=-1"), last
    assert not (tmp_path / "bad").exists()


def test_console_scripts_point_at_existing_functions():
    from importlib import metadata
    scripts = {entry.name: entry for entry in metadata.entry_points(group="console_scripts")}
    for name in ("distill-run", "distill-pretraining-data", "distill-pretrain", "distill-sweep"):
        assert callable(scripts[name].load()), name
