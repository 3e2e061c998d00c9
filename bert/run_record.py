"""The record a training run keeps in its --output_dir (distillation, pre-training, Prune
OFA's stages), as TR-BERT's stages and PoWER-BERT's steps keep theirs (``bert.stages``): settings.json when it starts, run.json when it
is complete. A complete run re-run with the same settings changes nothing; a run started with
other settings is refused in one line naming what changed, before anything is written."""
import json
import os

from bert import stages

RUN_DONE_FILE = "run.json"  # written last: the run is complete
OUTPUT_FLAG = "--output_dir"
# Settings of how a run proceeds, not of what it learns: a re-run may change them; and the
# settings that are paths (compared absolute). For classifier runs (their hparams) and for
# pre-training runs (their settings dataclass).
CLASSIFIER_PROCEDURE = ("output_dir", "features_dir", "save_checkpoints_steps",
                        "keep_checkpoint_max", "log_every_n_steps", "eval_batch_size",
                        "predict_batch_size", "do_eval", "do_predict", "write_submission",
                        "evaluate_every_checkpoint", "devices", "distribution")
CLASSIFIER_PATHS = ("data_dir", "vocab_file", "bert_config_file", "init_checkpoint",
                    "teacher_checkpoint")
PRETRAINING_PROCEDURE = ("output_dir", "save_checkpoints_steps", "keep_checkpoint_max",
                         "log_every_n_steps")
PRETRAINING_PATHS = ("input_files", "bert_config_file", "vocab_file", "teacher_model_dir",
                     "init_checkpoint")


def comparable(settings, path_keys):
    """``settings`` as the record stores them: through json (tuples become lists), so a re-run
    compares equal, and the values of ``path_keys`` absolute (a path or a list of them), so a
    re-run from another folder does too."""
    values = json.loads(json.dumps(settings, default=str))
    for key in path_keys:
        value = values.get(key)
        if isinstance(value, list):
            values[key] = [os.path.abspath(path) for path in value]
        elif value:
            values[key] = os.path.abspath(value)
    return values


def recorded(values, procedure, paths):
    """What the record keeps of a run's settings ``values``: all but the ``procedure`` keys,
    through ``comparable`` with ``paths``."""
    return comparable({key: value for key, value in values.items() if key not in procedure},
                      paths)


def completed(output_dir, settings, model_dir):
    """run.json of a run complete with ``settings`` whose ``model_dir`` is still there, or None
    when the run is to go on; a run started with other settings is refused (UsageError)."""
    done = stages.read_json(os.path.join(output_dir, RUN_DONE_FILE))
    if done and done["settings"] == settings and os.path.isdir(model_dir):
        return done
    stages.check_settings(output_dir, settings, OUTPUT_FLAG)
    return None


def start(output_dir, settings):
    """Record the settings the run goes on with (checked by ``completed``)."""
    stages.start_stage(output_dir, settings, OUTPUT_FLAG)


def finish(output_dir, settings, summary, model_dir):
    """The run is complete: run.json, written last."""
    stages.write_json(os.path.join(output_dir, RUN_DONE_FILE),
                      {"settings": settings, "summary": summary, "model_dir": model_dir})
