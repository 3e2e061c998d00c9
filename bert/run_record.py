"""The record a training run keeps in its --output_dir (distillation, pre-training, Prune
OFA's stages), as TR-BERT's stages and PoWER-BERT's steps keep theirs (``bert.stages``): settings.json when it starts, run.json when it
is complete. A complete run re-run with the same settings changes nothing; a run started with
other settings is refused in one line naming what changed, before anything is written."""
import json
import os

from bert import stages

RUN_DONE_FILE = "run.json"  # written last: the run is complete
OUTPUT_FLAG = "--output_dir"


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
