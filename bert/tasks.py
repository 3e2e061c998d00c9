"""Which data a run reads: a GLUE task by name, or the user's own files (``bert.user_task``).

Every library takes a ``task_name``: a GLUE name, or a user task's spec (one JSON string,
resolved at the command line's edge by ``resolve``). The functions here answer for both, so no
library has to know which kind it was given.
"""
from bert import glue, user_task
from bert.errors import UsageError

SUBMISSION_SUFFIX = ".tsv"


def resolve(task_name, data_dir, flag_values):
    """What a command line's ``--task_name``, ``--data_dir`` and user-data flags mean, as the
    ``task_name`` every library takes; a GLUE name without user-data flags stays as it is."""
    if flag_values and task_name and glue.canonical_name_or_none(task_name):
        flag = next(iter(flag_values))
        raise UsageError(f"--{flag} is for your own data, but --task_name={task_name} is a "
                         "GLUE task (name your task something else)")
    if flag_values or user_task.is_user_task(task_name):
        return user_task.resolve(task_name, data_dir, flag_values)
    return task_name


def canonical_task_name(task_name):
    """A GLUE task's canonical name, or a user task's spec in its one canonical spelling."""
    if user_task.is_spec(task_name):
        return user_task.UserTask.from_spec(task_name).to_spec()
    if user_task.is_task_file(task_name):
        raise UsageError(f"--task_name={task_name}: a task file is read by the command line "
                         "(bert.tasks.resolve), not by the library")
    if glue.canonical_name_or_none(task_name) is None:
        raise glue.TaskError(
            f"unknown task {task_name!r}: not a GLUE task ({', '.join(glue.TASK_NAMES)}); for "
            "your own data add --input_format and the --*_column flags, or give a task "
            ".json file")
    return glue.canonical_task_name(task_name)


def get_processor(task_name) -> glue.DataProcessor:
    if user_task.is_spec(task_name):
        return user_task.UserTaskProcessor(user_task.UserTask.from_spec(task_name))
    return glue.get_processor(canonical_task_name(task_name))


def primary_metric(task_name):
    """The eval metric that picks models for the task (e.g. ``eval_f1``)."""
    return get_processor(task_name).primary_metric


def display_name(task_name):
    """What logs and tables call the task: its GLUE name or the user task's name."""
    return get_processor(task_name).name


def submission_file_name(task_name):
    """The predictions file beside test_results.tsv: GLUE's own name for a GLUE task."""
    task = canonical_task_name(task_name)
    if user_task.is_spec(task):
        return display_name(task) + SUBMISSION_SUFFIX
    return glue.SUBMISSION_FILE_NAMES[task]
