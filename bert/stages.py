"""What a method's multi-stage run shares: a timestamped run log, small json state files, and
the rule that a stage folder continues only with the settings it was started with (a re-run
resumes; a re-run with other settings would silently mix two experiments)."""
import datetime
import json
import os

from bert import files
from bert.errors import UsageError

LOG_FILE = "log_file.txt"
SETTINGS_FILE = "settings.json"


class SettingsChangedError(UsageError):
    """A stage folder was started with other settings than this run's."""


class RunLog:
    """Appends timestamped lines to <folder>/log_file.txt and echoes them to ``logger``."""

    def __init__(self, folder, logger):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, LOG_FILE)
        self.logger = logger

    def __call__(self, line):
        self.logger.info("%s", line)
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {line}\n")


def read_json(path):
    """The json value stored at ``path``, or None when there is none yet."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_json(path, value):
    files.write_json_atomic(path, value, sort_keys=True)


def check_settings(folder, settings, output_flag):
    """Refuse to continue ``folder`` when it was started with other settings."""
    path = os.path.join(folder, SETTINGS_FILE)
    stored = read_json(path)
    if stored is not None and stored != settings:
        changed = sorted(key for key in set(stored) | set(settings)
                         if stored.get(key) != settings.get(key))
        details = ", ".join(_describe_change(key, stored.get(key), settings.get(key))
                            for key in changed)
        raise SettingsChangedError(f"{folder} was started with other settings ({details}); "
                                   f"use another {output_flag} or delete that folder")


def _describe_change(key, old, new):
    """'lambda: 0.5 -> 0.25' for plain values; a changed group of settings is only named."""
    if isinstance(old, (dict, list)) or isinstance(new, (dict, list)):
        return f"{key} changed"
    return f"{key}: {old!r} -> {new!r}"


def start_stage(folder, settings, output_flag):
    """Check ``folder`` against this run's settings, then record them for the runs after."""
    check_settings(folder, settings, output_flag)
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, SETTINGS_FILE), settings)
