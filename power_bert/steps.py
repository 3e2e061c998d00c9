"""PoWER-BERT's three training steps as Estimator runs, each in its own resumable folder.

    <OUTPUT_DIR>/<step>/training/   Estimator checkpoints (removed once the step is complete)
                                    and TensorBoard events of the step
    <OUTPUT_DIR>/<step>/model/      the step's kept model as a complete model folder
    <OUTPUT_DIR>/<step>/progress.json   dev metric of every finished epoch (resume point)
    <OUTPUT_DIR>/<step>/step.json   written last: the step is complete and is skipped on re-run

Every epoch is its own ``estimator.train`` call up to the epoch's last step, followed by a full
dev evaluation, so a killed run resumes from the last checkpoint and no epoch is evaluated twice.
"""
import dataclasses
import json
import logging
import math
import os
from typing import Callable, Optional

from bert import checkpoint, methods, model_folder, modeling
from bert.stages import read_json, start_stage, write_json
from bert.classifier import Classifier, ClassifierSettings
from power_bert import token_selectors
from power_bert.method import RETENTION_SUM_METRIC

log = logging.getLogger("power_bert")

WARMUP_PROPORTION = 0.1  # linear warm-up over the first 10% of a step's updates, then decay
SAVE_CHECKPOINTS_STEPS = 1000
LOG_EVERY_N_STEPS = 20
TRAINING_DIR = "training"
MODEL_DIR = "model"
PROGRESS_FILE = "progress.json"
STEP_DONE_FILE = "step.json"
SOFT_RETENTION_FILE = "soft_retention.json"


# Running a step ---------------------------------------------------------------------------------
@dataclasses.dataclass
class TrainingRun:
    """What every step of one run shares: the classifier settings, model and the log."""
    settings: ClassifierSettings  # output_dir and init_checkpoint are set per step
    bert_config: modeling.BertConfig
    metric_name: str
    num_train_examples: int
    epochs: int
    provenance: dict
    log_line: Callable[[str], None]

    @property
    def steps_per_epoch(self):
        return math.ceil(self.num_train_examples / self.settings.train_batch_size)

    def classifier(self, step):
        total_steps = self.steps_per_epoch * self.epochs
        settings = dataclasses.replace(
            self.settings, output_dir=os.path.join(step.folder, TRAINING_DIR),
            init_checkpoint=step.init_checkpoint, do_train=True, do_eval=True,
            num_train_steps=total_steps)
        return Classifier(settings, [step.method], config_methods=False,
                          bert_config=self.bert_config)


@dataclasses.dataclass
class Step:
    """One of the three steps: where it runs, how it trains and what it keeps."""
    title: str
    folder: str
    method: methods.Method
    init_checkpoint: str
    settings: dict
    keep_best: bool  # False: keep the model of the last epoch (configuration search)
    # values {name: array} -> (config, values, extra files) of the model folder written
    export: Optional[Callable] = None


def completed_result(step):
    """The step's step.json if the step finished with this run's settings, else None."""
    done = read_json(os.path.join(step.folder, STEP_DONE_FILE))
    model_dir = os.path.join(step.folder, MODEL_DIR)
    if done and done["settings"] == step.settings and os.path.isdir(model_dir):
        return dict(done, model_dir=model_dir)  # where it is now, if OUTPUT_DIR was moved
    return None


def _comparable(value):
    """NaN metrics (e.g. correlation of constant predictions) never count as the best."""
    return value if math.isfinite(value) else -math.inf


def _format_metrics(result, metric_name):
    others = ", ".join(f"{key} {result[key]:.4f}" for key in sorted(result)
                       if key.startswith("eval_") and key != metric_name)
    return f"{metric_name} = {result[metric_name]:.4f} ({others})"


def run_step(run, step):
    """Train a step epoch by epoch, evaluating on dev after each; returns its step.json dict."""
    done = completed_result(step)
    if done:
        run.log_line(f"{step.title}: already complete ({run.metric_name} "
                     f"{done['best_metric']:.4f}), skipped")
        return done
    start_stage(step.folder, step.settings, "--OUTPUT_DIR")
    training_dir = os.path.join(step.folder, TRAINING_DIR)
    model_dir = os.path.join(step.folder, MODEL_DIR)
    progress_file = os.path.join(step.folder, PROGRESS_FILE)
    progress = read_json(progress_file) or {"epochs": [], "best_epoch": None}
    classifier = run.classifier(step)
    for epoch in range(len(progress["epochs"]), run.epochs):
        # a new shuffle and dropout stream every epoch
        classifier.train(max_steps=(epoch + 1) * run.steps_per_epoch,
                         seed=run.settings.seed + epoch)
        result = {key: float(value) for key, value in classifier.evaluate(write=False).items()}
        metric = result[run.metric_name]
        best = progress["best_epoch"]
        if step.keep_best:
            keep = best is None or _comparable(metric) > _comparable(
                progress["epochs"][best][run.metric_name])
        else:
            keep = epoch == run.epochs - 1
        if keep:
            _export(run, step, training_dir, model_dir)
            progress["best_epoch"] = epoch
        progress["epochs"].append(result)
        write_json(progress_file, progress)
        run.log_line(f"{step.title}, epoch {epoch + 1}/{run.epochs}: "
                     f"{_format_metrics(result, run.metric_name)}"
                     + _retention_sums(result) + ("  [kept]" if keep else ""))
    best_epoch = progress["best_epoch"]
    config = modeling.BertConfig.from_json_file(
        os.path.join(model_dir, model_folder.CONFIG_FILE))
    done = {"settings": step.settings, "model_dir": model_dir,
            "best_epoch": best_epoch + 1,
            "best_metric": progress["epochs"][best_epoch][run.metric_name],
            "epoch_metrics": [e[run.metric_name] for e in progress["epochs"]],
            "retention": config.extra.get(token_selectors.RETENTION_CONFIG_KEY)}
    write_json(os.path.join(step.folder, STEP_DONE_FILE), done)
    model_folder.drop_training_checkpoints(training_dir)
    run.log_line(f"{step.title}: kept epoch {best_epoch + 1} ({run.metric_name} "
                 f"{done['best_metric']:.4f}) -> {model_dir}")
    return done


def _retention_sums(result):
    sums = []
    while RETENTION_SUM_METRIC.format(len(sums)) in result:
        sums.append(result[RETENTION_SUM_METRIC.format(len(sums))])
    return f"; retention sums {', '.join(f'{s:.1f}' for s in sums)}" if sums else ""


def _export(run, step, training_dir, model_dir):
    """The step's current model as a complete model folder (atomic)."""
    values = checkpoint.read_checkpoint(training_dir)
    config, extra_files = run.bert_config.copy(), None
    config.extra.pop(token_selectors.RETENTION_CONFIG_KEY, None)  # only Extract models carry one
    if step.export:
        config, values, extra_files = step.export(config, values)
    model_folder.write_model_folder(model_dir, config, run.settings.vocab_file, values,
                                    step=f"power_bert/{os.path.basename(step.folder)}",
                                    source=step.init_checkpoint, flags=run.provenance,
                                    extra_files=extra_files)


def export_searched_config(config, values):
    """Step 2's folder: BERT weights + the read-out configuration; soft values as json."""
    retention_names = [token_selectors.retention_variable_name(index)
                       for index in range(config.num_hidden_layers)]
    soft = [values.pop(name) for name in retention_names]
    config.extra[token_selectors.RETENTION_CONFIG_KEY] = token_selectors.read_retention_config(soft)
    soft_file = json.dumps({name: [round(float(v), 6) for v in value]
                            for name, value in zip(retention_names, soft)}, indent=1) + "\n"
    return config, values, {SOFT_RETENTION_FILE: soft_file}


def export_with_retention(retention_config):
    """Step 3's folder: the config carries the configuration the model was trained with."""
    def export(config, values):
        config.extra[token_selectors.RETENTION_CONFIG_KEY] = list(retention_config)
        return config, values, None
    return export
