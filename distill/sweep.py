"""The fine-tuning sweep Bort recommends for small students, with a best-per-task table.

    python -m distill.sweep --tasks=MRPC,STS-B --glue_dir=glue \\
        --init_checkpoint='students/{task}' \\
        --teacher_model_dir='runs/compress_{task}/1_fine_tune/model' \\
        --seeds=0,1 --learning_rates=1e-4,1e-5 --output_dir=sweep_outputs

Every point of the grid seeds × learning_rates × weight_decays × warmup_proportions ×
batch_sizes (defaults: the seed's grid, 480 runs a task; shrink it) is one run, one after the
other, in --output_dir/<task>/seed<s>_lr<lr>_wd<wd>_warmup<w>_bs<b>/: plain fine-tuning, or
distillation (distill.run_distill's losses) when --teacher_model_dir is given. ``{task}`` in
--init_checkpoint, --bert_config_file, --vocab_file and --teacher_model_dir is replaced by each
task's name. A run whose eval_results.txt exists is skipped, so re-running the same command
continues the sweep; a diverged run is recorded (diverged.txt) and skipped too. Each finished
run keeps its model folder (<run>/model) and drops its training checkpoints. After every run
--output_dir/best.md and best.csv list per task the best dev metric, its hyper-parameters, the
number of finished runs and the best run's model folder.

Note on the seed's weight decays (10 to 350): AdamW's decoupled decay shrinks every kernel by
learning_rate × weight_decay a step (1e-4 × 100: 1% a step), which erases a pretrained model
within a few hundred steps; shrink them (e.g. --weight_decays=0,0.01) unless you mean to run the
seed's grid as it is.
"""
import csv
import dataclasses
import io
import itertools
import json
import logging
import math
import os
from typing import Optional

from absl import flags

from bert import cli, files, model_folder, tasks
from bert import run_classifier as google_flags
from bert.classifier import EVAL_RESULTS_FILE, HPARAMS_FILE, Classifier, ClassifierSettings
from bert.errors import TrainingDivergedError, UsageError
from bert.results_table import read_eval_results
from distill import run_distill

FLAGS = flags.FLAGS
PROGRAM = "distill.sweep"
log = logging.getLogger("distill")

# The seed's recommended grid for fine-tuning Bort.
SEED_SEEDS = "0,1,2,3,4"
SEED_LEARNING_RATES = "1e-4,1e-5,9e-6"
SEED_WEIGHT_DECAYS = "0,10,100,350"
SEED_WARMUP_PROPORTIONS = "0.35,0.40,0.45,0.50"
SEED_BATCH_SIZES = "8,16"
TASK_PLACEHOLDER = "{task}"
DIVERGED_FILE = "diverged.txt"
FEATURES_DIR = "features"
BEST_MARKDOWN = "best.md"
BEST_CSV = "best.csv"
DEFAULT_EVAL_BATCH_SIZE = 32
KEPT_CHECKPOINTS = 1  # a run's own checkpoints only serve its resumption
TABLE_COLUMNS = ("task", "metric", "best", "seed", "learning_rate", "weight_decay",
                 "warmup_proportion", "batch_size", "runs", "diverged", "model_dir")


@dataclasses.dataclass(frozen=True)
class GridPoint:
    """One run's hyper-parameters (ClassifierSettings field names)."""
    seed: int
    learning_rate: float
    weight_decay: float
    warmup_proportion: float
    train_batch_size: int

    @property
    def name(self):
        return (f"seed{self.seed}_lr{self.learning_rate:g}_wd{self.weight_decay:g}_"
                f"warmup{self.warmup_proportion:g}_bs{self.train_batch_size}")


def parse_values(text, flag, kind, low, high=None):
    """The distinct values of a comma list, in order, each of ``kind`` within [low, high]."""
    what = "integers" if kind is int else "numbers"
    try:
        values = list(dict.fromkeys(kind(part) for part in text.split(",")))
    except ValueError:
        values = []
    ok = values and all(math.isfinite(v) and v >= low and (high is None or v <= high)
                        for v in values)
    cli.require(ok, f"--{flag}={text}: expected {what} >= {low:g}"
                    f"{'' if high is None else f' and <= {high:g}'}, comma separated")
    return values


def grid(seeds, learning_rates, weight_decays, warmup_proportions, batch_sizes):
    return [GridPoint(*values) for values in itertools.product(
        seeds, learning_rates, weight_decays, warmup_proportions, batch_sizes)]


@dataclasses.dataclass
class TaskSweep:
    """One task's runs: the settings every run shares and, with a teacher, the losses."""
    task: str
    base: ClassifierSettings  # output_dir: the task's folder; grid fields are replaced per run
    teacher_model_dir: Optional[str] = None
    loss_values: Optional[dict] = None
    keep_checkpoints: bool = False

    def run_dir(self, point):
        return os.path.join(self.base.output_dir, point.name)

    def settings(self, point):
        return dataclasses.replace(self.base, output_dir=self.run_dir(point),
                                   **dataclasses.asdict(point))

    def methods(self, settings, student_config):
        if not self.teacher_model_dir:
            return []
        return [run_distill.distill_method(settings, student_config, self.teacher_model_dir,
                                           **dict(self.loss_values))]

    def check(self, point):
        """Everything a run of this task needs (flags, teacher, every data split it reads),
        before any run starts."""
        settings = self.settings(point)
        Classifier(settings, self.methods(settings, settings.model_config()))

    def run(self, point):
        """Train, evaluate and keep the model folder of one point; False if it was done."""
        run_dir = self.run_dir(point)
        if os.path.exists(os.path.join(run_dir, EVAL_RESULTS_FILE)):
            log.info("%s %s: done, skipped", self.task, point.name)
            return False
        if os.path.exists(os.path.join(run_dir, DIVERGED_FILE)):
            log.info("%s %s: diverged before, skipped", self.task, point.name)
            return False
        settings = self.settings(point)
        classifier = Classifier(settings, self.methods(settings, settings.model_config()))
        log.info("%s %s: training", self.task, point.name)
        try:
            run_distill.train_to_model_folder(classifier, step="distill/sweep",
                                              keep_checkpoints=self.keep_checkpoints)
        except TrainingDivergedError as error:
            log.warning("%s %s: %s", self.task, point.name, error)
            model_folder.drop_training_checkpoints(run_dir)
            files.write_text_atomic(os.path.join(run_dir, DIVERGED_FILE), f"{error}\n")
        return True


def best_of_task(task_dir, task):
    """One table row: the best finished run of ``task_dir`` (None without any)."""
    metric = tasks.primary_metric(task)
    finished, diverged = [], 0
    for name in sorted(os.listdir(task_dir)) if os.path.isdir(task_dir) else []:
        run_dir = os.path.join(task_dir, name)
        diverged += os.path.exists(os.path.join(run_dir, DIVERGED_FILE))
        results = os.path.join(run_dir, EVAL_RESULTS_FILE)
        if os.path.isfile(results):
            score = read_eval_results(results).get(metric, math.nan)
            finished.append((score if math.isfinite(score) else -math.inf, run_dir))
    if not finished:
        return None
    score, run_dir = max(finished)
    with open(os.path.join(run_dir, HPARAMS_FILE), encoding="utf-8") as handle:
        hparams = json.load(handle)
    return {"task": task, "metric": metric, "best": f"{score:.4f}",
            **{field: hparams[field] for field in ("seed", "learning_rate", "weight_decay",
                                                   "warmup_proportion")},
            "batch_size": hparams["train_batch_size"], "runs": len(finished),
            "diverged": diverged, "model_dir": os.path.join(run_dir, run_distill.MODEL_DIR)}


def write_best_tables(output_dir, tasks):
    """best.md and best.csv (atomic) from every finished run; returns the markdown."""
    rows = [row for row in (best_of_task(os.path.join(output_dir, task), task)
                            for task in tasks) if row]
    markdown = "\n".join(
        ["| " + " | ".join(TABLE_COLUMNS) + " |", "|---" * len(TABLE_COLUMNS) + "|"]
        + ["| " + " | ".join(str(row[column]) for column in TABLE_COLUMNS) + " |"
           for row in rows]) + "\n"
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    files.write_text_atomic(os.path.join(output_dir, BEST_MARKDOWN), markdown)
    files.write_text_atomic(os.path.join(output_dir, BEST_CSV), table.getvalue())
    return markdown


# Command line -----------------------------------------------------------------------------------
def define_flags():
    google_flags.define_model_flags()
    run_distill.define_distill_flags()
    flags.DEFINE_string("tasks", None, "GLUE tasks, comma separated (folder names under "
                        "--glue_dir, e.g. MRPC,STS-B,SST-2).")
    flags.DEFINE_string("glue_dir", None, "Folder with one data folder per task.")
    flags.DEFINE_string("output_dir", None, "Where <task>/<run>/ folders and best.md go.")
    flags.DEFINE_string("seeds", SEED_SEEDS, "Random seeds, comma separated.")
    flags.DEFINE_string("learning_rates", SEED_LEARNING_RATES, "Peak learning rates.")
    flags.DEFINE_string("weight_decays", SEED_WEIGHT_DECAYS, "AdamW weight decays.")
    flags.DEFINE_string("warmup_proportions", SEED_WARMUP_PROPORTIONS,
                        "Shares of steps with linear warm-up.")
    flags.DEFINE_string("batch_sizes", SEED_BATCH_SIZES, "Training batch sizes.")
    flags.DEFINE_float("num_train_epochs", google_flags.classifier_default("num_train_epochs"),
                       "Epochs of every run.")
    flags.DEFINE_integer("max_train_examples",
                         google_flags.classifier_default("max_train_examples"),
                         "Train on the first N examples (0: all).")
    flags.DEFINE_integer("eval_batch_size", DEFAULT_EVAL_BATCH_SIZE, "Evaluation batch size.")
    flags.DEFINE_integer("save_checkpoints_steps",
                         google_flags.classifier_default("save_checkpoints_steps"),
                         "Checkpoint every this many steps.")
    flags.DEFINE_integer("log_every_n_steps", google_flags.classifier_default("log_every_n_steps"),
                         "Progress log interval (steps).")
    flags.DEFINE_bool("keep_checkpoints", cli.field_default(TaskSweep, "keep_checkpoints"),
                      "Keep each finished run's training checkpoints (default: only its model "
                      "folder).")


def for_task(value, task):
    return value.replace(TASK_PLACEHOLDER, task) if value else value


def task_sweep(task):
    """The TaskSweep of ``task`` from the flags."""
    init = for_task(FLAGS.init_checkpoint, task)
    cli.require(init, "--init_checkpoint is required (the student's model folder)")
    config_file, vocab_file = model_folder.config_and_vocab(
        init, "init_checkpoint", for_task(FLAGS.bert_config_file, task),
        for_task(FLAGS.vocab_file, task))
    data_dir = os.path.join(FLAGS.glue_dir, task)
    base = ClassifierSettings(
        task_name=task, data_dir=data_dir, vocab_file=vocab_file,
        bert_config_file=config_file, output_dir=os.path.join(FLAGS.output_dir, task),
        init_checkpoint=init, do_lower_case=FLAGS.do_lower_case,
        max_seq_length=FLAGS.max_seq_length, do_train=True, do_eval=True,
        eval_batch_size=FLAGS.eval_batch_size, num_train_epochs=FLAGS.num_train_epochs,
        save_checkpoints_steps=FLAGS.save_checkpoints_steps,
        keep_checkpoint_max=KEPT_CHECKPOINTS, max_train_examples=FLAGS.max_train_examples,
        log_every_n_steps=FLAGS.log_every_n_steps,
        features_dir=os.path.join(FLAGS.output_dir, task, FEATURES_DIR))
    teacher = for_task(FLAGS.teacher_model_dir, task)
    loss_values = {name: FLAGS[name].value for name in run_distill.LOSS_FLAGS}
    return TaskSweep(task, base, teacher, loss_values, FLAGS.keep_checkpoints)


def run_sweep():
    cli.require(FLAGS.tasks, "--tasks is required, e.g. MRPC,STS-B")
    cli.require_dir(FLAGS.glue_dir, "glue_dir", "a folder with one data folder per task")
    cli.require_output_dir(FLAGS.output_dir, "output_dir")
    points = grid(parse_values(FLAGS.seeds, "seeds", int, 0),
                  parse_values(FLAGS.learning_rates, "learning_rates", float, 0.0),
                  parse_values(FLAGS.weight_decays, "weight_decays", float, 0.0),
                  parse_values(FLAGS.warmup_proportions, "warmup_proportions", float, 0.0, 1.0),
                  parse_values(FLAGS.batch_sizes, "batch_sizes", int, 1))
    tasks = list(dict.fromkeys(part.strip() for part in FLAGS.tasks.split(",") if part.strip()))
    sweeps = [task_sweep(task) for task in tasks]
    for sweep in sweeps:
        try:
            sweep.check(points[0])
        except UsageError as error:
            raise UsageError(f"{sweep.task}: {error}") from None
    log.info("%d runs per task, %d tasks", len(points), len(sweeps))
    for sweep in sweeps:
        for index, point in enumerate(points, 1):
            log.info("%s: run %d/%d", sweep.task, index, len(points))
            if sweep.run(point):
                write_best_tables(FLAGS.output_dir, tasks)
    print(write_best_tables(FLAGS.output_dir, tasks), end="")


def main():
    cli.run_absl(PROGRAM, define_flags, run_sweep)


if __name__ == "__main__":
    main()
