"""A classification or regression task on the user's own files: CSV, TSV, JSON lines, or
folders of text files (one sub-folder per label, as IMDB ships), with the columns named.

    --task_name=tickets --data_dir=my_data --input_format=csv --text_a_column=body
        --label_column=queue              (train.csv / dev.csv / test.csv in my_data)
    --task_name=my_data/task.json --data_dir=my_data   (the same, written down once)

Relative file names are relative to ``--data_dir``, as GLUE's train.tsv is. Labels come from
``--labels`` or, when not given, from the train file (sorted; numerically when they are all
integers). A task is resolved once at a command line's edge into a *spec*: one JSON string with
absolute paths and explicit labels. The spec travels as ``task_name`` through every library,
sub-step and run record, so a re-run with another column is a re-run with other settings.

Bad rows (missing column or field, unknown label, empty text, a score that is not a number)
are one line naming the file, the line and the column.
"""
import csv
import dataclasses
import json
import math
import os
from typing import Optional, Sequence, Union

from bert import glue
from bert.errors import InputError, UsageError
from bert.tokenization import describe_undecodable

CSV, TSV, JSONL, FOLDERS = "csv", "tsv", "jsonl", "folders"
INPUT_FORMATS = (CSV, TSV, JSONL, FOLDERS)
HEAD, HEAD_TAIL = "head", "head_tail"
TRUNCATIONS = (HEAD, HEAD_TAIL)
DEFAULT_NAME = "user_task"
SPEC_START = "{"
TASK_FILE_SUFFIX = ".json"
ENCODING = "utf-8-sig"  # spreadsheet exports often start with a byte-order mark
SPLITS = ("train", "dev", "test")
FOLDER_SPLIT_NAMES = {"train": "train", "dev": "dev", "test": "test"}
# Metrics by the kind of task (bert.metrics computes them all; the primary one picks models).
REGRESSION_METRIC = "eval_spearman"
BINARY_METRIC = "eval_f1"
MULTICLASS_METRIC = "eval_accuracy"
BINARY_CLASSES = 2
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")


class UserDataError(InputError):
    """A row of the user's file is not what the task's columns say."""


Column = Union[str, int]


@dataclasses.dataclass(frozen=True)
class UserTask:
    """What to read and how; field names are the command-line flags' names."""

    name: str = DEFAULT_NAME
    input_format: str = CSV
    train_file: Optional[str] = None
    dev_file: Optional[str] = None
    test_file: Optional[str] = None
    text_a_column: Optional[Column] = "text"
    text_b_column: Optional[Column] = None
    label_column: Optional[Column] = "label"
    labels: Optional[Sequence[str]] = None
    regression: bool = False
    metric: Optional[str] = None
    header: bool = True
    truncation: str = HEAD

    def to_spec(self):
        values = dataclasses.asdict(self)
        values["labels"] = None if self.labels is None else list(self.labels)
        return json.dumps(values, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_spec(cls, spec):
        values = json.loads(spec)
        unknown = sorted(set(values) - {field.name for field in dataclasses.fields(cls)})
        if unknown:
            raise UsageError(f"task description: unknown key(s) {', '.join(unknown)}")
        if values.get("labels") is not None:
            values["labels"] = tuple(str(label) for label in values["labels"])
        return cls(**values)


# Command-line flags: defined once here, for absl and argparse alike ---------------------------
FLAG_HELP = {
    "input_format": f"your own data's format: {', '.join(INPUT_FORMATS)} (folders: one "
                    "sub-folder of text files per label)",
    "train_file": "train file (or folder), relative to --data_dir (default train.<format>)",
    "dev_file": "dev file (or folder), relative to --data_dir (default dev.<format>)",
    "test_file": "test file (or folder), relative to --data_dir (default test.<format> "
                 "when present)",
    "text_a_column": "column (CSV/TSV header name, or 1-based number with --header=false) or "
                     "JSON field of the text (default text)",
    "text_b_column": "column of the second text of a pair (default: none)",
    "label_column": "column of the label or score (default label)",
    "labels": "comma-separated labels (default: the train file's, sorted)",
    "regression": "true: the label is a number to predict (Pearson/Spearman)",
    "metric": "the metric that picks models (default: f1 for two labels, accuracy for more, "
              "spearman for regression)",
    "header": "false: CSV/TSV files without a header row (columns then by number)",
    "truncation": "head, or head_tail: a long single text keeps its first quarter and its end "
                  "(Sun et al. 2019: head 128 + tail 382 of 512)",
}
FLAG_NAMES = tuple(FLAG_HELP)


def add_arguments(parser):
    """The user-data flags on an argparse parser (all optional strings)."""
    group = parser.add_argument_group("your own data (with --task_name naming it)")
    for name, text in FLAG_HELP.items():
        group.add_argument(f"--{name}", help=text)


def define_absl_flags():
    from absl import flags
    for name, text in FLAG_HELP.items():
        flags.DEFINE_string(name, None, text)


def flag_values(source):
    """{flag: value} of the user-data flags that were given, from a namespace or absl FLAGS."""
    values = {}
    for name in FLAG_NAMES:
        value = getattr(source, name, None) if not hasattr(source, "__getitem__") else (
            source[name].value if name in source else None)
        if value is not None:
            values[name] = value
    return values


def _parse_bool(value, flag):
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise UsageError(f"--{flag}={value}: expected true or false")


def _with_flags(task, values):
    """``task`` with the command line's values on top (strings parsed to each field's kind)."""
    changes = dict(values)
    for name in ("regression", "header"):
        if name in changes:
            changes[name] = _parse_bool(changes[name], name)
    if "labels" in changes:
        labels = tuple(label.strip() for label in changes["labels"].split(","))
        if not all(labels) or len(set(labels)) != len(labels):
            raise UsageError(f"--labels={values['labels']}: expected distinct labels "
                             "separated by commas")
        changes["labels"] = labels
    return dataclasses.replace(task, **changes)


# Resolution: flags / task file / spec -> spec ---------------------------------------------------
def is_spec(task_name):
    return isinstance(task_name, str) and task_name.lstrip().startswith(SPEC_START)


def is_task_file(task_name):
    return isinstance(task_name, str) and task_name.endswith(TASK_FILE_SUFFIX)


def is_user_task(task_name):
    return is_spec(task_name) or is_task_file(task_name)


def read_task_file(path):
    if not os.path.isfile(path):
        raise UsageError(f"--task_name={path}: task description not found")
    with open(path, encoding="utf-8") as handle:
        try:
            text = handle.read()
            json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise UsageError(f"--task_name={path}: not a JSON task description ({error})") \
                from None
    try:
        return UserTask.from_spec(text)
    except TypeError as error:
        raise UsageError(f"--task_name={path}: {error}") from None


def resolve(task_name, data_dir, values):
    """The spec of a user task from ``--task_name`` (a new name, a task file or a spec),
    ``--data_dir`` and the user-data flag ``values``; checks every given file's columns."""
    if is_spec(task_name):
        task = UserTask.from_spec(task_name)
    elif is_task_file(task_name):
        task = read_task_file(task_name)
    else:
        task = UserTask(name=task_name or DEFAULT_NAME)
    task = _with_flags(task, values)
    _check_settings(task)
    if not data_dir or not os.path.isdir(data_dir):
        raise UsageError(f"--data_dir={data_dir}: folder not found (the folder of "
                         f"{task.name}'s files)")
    paths = {}
    for split in SPLITS:
        flag = f"{split}_file"
        given = getattr(task, flag)
        default = split if task.input_format == FOLDERS else f"{split}.{task.input_format}"
        path = os.path.abspath(os.path.join(data_dir, given or default))
        if not os.path.exists(path):
            if given:
                raise UsageError(f"--{flag}={given}: not found in --data_dir={data_dir}")
            path = None
        paths[flag] = path
    task = dataclasses.replace(task, **paths)
    if task.labels is None and not task.regression:
        if task.train_file is None:
            raise UsageError(f"{task.name}: no train file to read the labels from; give "
                             "--labels")
        task = dataclasses.replace(task, labels=tuple(_labels_in(task)))
    _check_metric(task)
    for split in SPLITS:  # a wrong column fails now, whichever split a run reads first
        path = getattr(task, f"{split}_file")
        if path is not None:
            next(_rows(task, path, split, need_label=split != "test"))
    return task.to_spec()


def _check_settings(task):
    if task.input_format not in INPUT_FORMATS:
        raise UsageError(f"--input_format={task.input_format}: expected one of "
                         f"{', '.join(INPUT_FORMATS)}")
    if task.truncation not in TRUNCATIONS:
        raise UsageError(f"--truncation={task.truncation}: expected one of "
                         f"{', '.join(TRUNCATIONS)}")
    if task.input_format != FOLDERS:
        for flag in ("text_a_column", "label_column"):
            if getattr(task, flag) in (None, ""):
                raise UsageError(f"--{flag} is required for --input_format={task.input_format}")
    if task.regression and task.labels:
        raise UsageError("--labels is for classification; --regression=true predicts a score")
    if task.labels is not None and len(task.labels) < 2:
        raise UsageError(f"--labels={','.join(task.labels)}: a classifier needs two or more")


def _check_metric(task):
    if task.metric is not None:
        allowed = metric_names(task)
        if metric_key(task.metric) not in allowed:
            raise UsageError(f"--metric={task.metric}: expected one of "
                             f"{', '.join(name[len('eval_'):] for name in allowed)}")


def metric_key(name):
    return name if name.startswith("eval_") else f"eval_{name}"


def metric_names(task):
    """What bert.metrics reports for a task of this kind."""
    if task.regression:
        return ("eval_pearson", "eval_spearman", "eval_corr")
    if len(task.labels) > BINARY_CLASSES:
        return ("eval_accuracy", "eval_macro_f1")
    return ("eval_accuracy", "eval_f1", "eval_precision", "eval_recall")


def _labels_in(task):
    found = {str(label) for _, _, _, label in _rows(task, task.train_file, "train",
                                                     need_label=True)}
    if len(found) < 2:
        raise UserDataError(f"{task.train_file}: {len(found)} distinct label(s) in column "
                            f"{task.label_column!r}; a classifier needs two or more")
    if all(label.lstrip("-").isdigit() for label in found):
        return sorted(found, key=int)
    return sorted(found)


# Reading rows -------------------------------------------------------------------------------
def _rows(task, path, split, need_label):
    """Yields (line or file, text_a, text_b, raw label) of one split's file."""
    if task.input_format == FOLDERS:
        yield from _folder_rows(task, path, need_label)
        return
    reader = _json_rows if task.input_format == JSONL else _table_rows
    count = 0
    try:
        for where, get in reader(task, path):
            text_a = _text(get(task.text_a_column, "text_a_column"), path, where,
                           task.text_a_column)
            text_b = None
            if task.text_b_column not in (None, ""):
                text_b = _text(get(task.text_b_column, "text_b_column"), path, where,
                               task.text_b_column)
            label = get(task.label_column, "label_column") if need_label else None
            count += 1
            yield where, text_a, text_b, label
    except UnicodeDecodeError:
        raise UserDataError(describe_undecodable(path)) from None
    if not count:
        raise UserDataError(f"{path}: no {split} examples")


def _text(value, path, where, column):
    if not isinstance(value, str):
        raise UserDataError(f"{path}:{where}: column {column!r} is {json.dumps(value)}, "
                            "expected text")
    if not value.strip():
        raise UserDataError(f"{path}:{where}: column {column!r} is empty")
    return value


def _table_rows(task, path):
    delimiter = "," if task.input_format == CSV else "\t"
    with open(path, encoding=ENCODING, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        try:
            header = next(reader) if task.header else None
            positions = {}
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                where = reader.line_num

                def get(column, flag, row=row, where=where):
                    if column not in positions:
                        positions[column] = _column_position(column, flag, header, path)
                    position = positions[column]
                    if position >= len(row):
                        raise UserDataError(f"{path}:{where}: no column {column!r} (the row "
                                            f"has {len(row)} columns)")
                    return row[position]
                yield where, get
        except csv.Error as error:
            raise UserDataError(f"{path}:{reader.line_num}: not {task.input_format.upper()} "
                                f"({error})") from None


def _column_position(column, flag, header, path):
    if header is None:
        try:
            number = int(column)
        except ValueError:
            number = 0
        if number < 1:
            raise UsageError(f"--{flag}={column}: with --header=false a column is its 1-based "
                             "number")
        return number - 1
    if str(column) not in header:
        raise UsageError(f"--{flag}={column}: {path} has no such column (columns: "
                         f"{', '.join(header)})")
    return header.index(str(column))


def _json_rows(task, path):
    with open(path, encoding=ENCODING) as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise UserDataError(f"{path}:{line_number}: not a JSON line ({error})") \
                    from None
            if not isinstance(row, dict):
                raise UserDataError(f"{path}:{line_number}: expected a JSON object")

            def get(column, flag, row=row, where=line_number):
                if str(column) not in row:
                    raise UserDataError(f"{path}:{where}: no field {column!r} (--{flag}; "
                                        f"fields: {', '.join(row)})")
                value = row[str(column)]
                if flag == "label_column" and not isinstance(value, str):
                    return json.dumps(value)  # 1 -> "1", true -> "true": labels are strings
                return value
            yield line_number, get


def _folder_rows(task, path, need_label):
    if not os.path.isdir(path):
        raise UserDataError(f"{path}: expected a folder with one sub-folder per label")
    labels = task.labels or sorted(name for name in os.listdir(path)
                                   if os.path.isdir(os.path.join(path, name)))
    count = 0
    for label in labels:
        folder = os.path.join(path, label)
        if not os.path.isdir(folder):
            raise UserDataError(f"{path}: no sub-folder {label!r} for the label {label!r}")
        for file_name in sorted(os.listdir(folder)):
            file_path = os.path.join(folder, file_name)
            try:
                with open(file_path, encoding=ENCODING) as handle:
                    text = handle.read()
            except UnicodeDecodeError:
                raise UserDataError(describe_undecodable(file_path)) from None
            count += 1
            yield file_path, _text(text, file_path, 1, "text"), None, label
    if not count:
        raise UserDataError(f"{path}: no text files in the label folders "
                            f"({', '.join(labels)})")


# The processor ------------------------------------------------------------------------------
class UserTaskProcessor(glue.DataProcessor):
    """Examples of a resolved user task; ``data_dir`` arguments are ignored (paths are in it)."""

    def __init__(self, task: UserTask):
        self.task = task
        self.name = self.folder_name = task.name
        self.labels = None if task.regression else tuple(task.labels)
        self.primary_metric = metric_key(task.metric) if task.metric else (
            REGRESSION_METRIC if task.regression else
            BINARY_METRIC if len(task.labels) == BINARY_CLASSES else MULTICLASS_METRIC)
        self.train_file = task.train_file
        self.dev_file = task.dev_file
        self.test_file = task.test_file
        self.truncation = task.truncation

    def get_train_examples(self, data_dir=None):
        return self._examples("train")

    def get_dev_examples(self, data_dir=None):
        return self._examples("dev")

    def get_test_examples(self, data_dir=None):
        return self._examples("test")

    def _examples(self, split):
        path = getattr(self.task, f"{split}_file")
        if path is None:
            raise UsageError(f"{self.name}: no {split} file (give --{split}_file)")
        labeled = split != "test"
        examples = []
        for where, text_a, text_b, raw in _rows(self.task, path, split, labeled):
            label = self._label(raw, path, where) if labeled else (
                0.0 if self.is_regression else self.labels[0])
            examples.append(glue.InputExample(
                guid=f"{split}-{len(examples)}", text_a=text_a, text_b=text_b, label=label,
                test_index=None if labeled else str(len(examples))))
        return examples

    def _label(self, raw, path, where):
        column = self.task.label_column
        if self.is_regression:
            try:
                score = float(raw)
            except (TypeError, ValueError):
                score = math.nan
            if not math.isfinite(score):
                raise UserDataError(f"{path}:{where}: column {column!r} is {raw!r}, not a "
                                    "finite number")
            return score
        label = str(raw)
        if label not in self.labels:
            raise UserDataError(f"{path}:{where}: label {label!r} in column {column!r} is not "
                                f"one of {', '.join(self.labels)}")
        return label
