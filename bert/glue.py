"""GLUE task processors: read the GLUE tsv files into InputExamples and write submission files.

`data_dir` arguments are always the task's own folder (e.g. ``glue/MNLI``), as written by
``datasets/download_glue.py``; `processor.folder_name` names that folder for each task.

Test examples carry a placeholder label (the first label, or 0.0 for regression) because the
test files have none, ``guid == "test-<index>"`` and ``test_index`` holding the tsv's own
``index`` column verbatim, which is what the GLUE server expects in the submission file.
"""
import csv
import dataclasses
import math
import os
from typing import List, Optional, Sequence, Union

from bert import files
from bert.errors import InputError
from bert.tokenization import describe_undecodable

STS_B_MIN_SCORE = 0.0
STS_B_MAX_SCORE = 5.0
SUBMISSION_HEADER = "index\tprediction"
SUBMISSION_FLOAT_FORMAT = "{:.3f}"
LAST_COLUMN = -1
GLUE_ENCODING = "utf-8-sig"  # the MRPC files start with a byte-order mark

BINARY_LABELS = ("0", "1")
NLI_LABELS = ("contradiction", "entailment", "neutral")
ENTAILMENT_LABELS = ("entailment", "not_entailment")


class GlueFormatError(InputError):
    """A GLUE tsv file does not have the layout its task expects."""


class TaskError(InputError):
    """A task name, or a split of a task, that GLUE does not have."""


@dataclasses.dataclass
class InputExample:
    """One sentence (pair) with its label; `test_index` is set only on test examples."""

    guid: str
    text_a: str
    text_b: Optional[str] = None
    label: Union[str, float, None] = None
    test_index: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ColumnLayout:
    """Where one kind of GLUE tsv keeps its fields; LAST_COLUMN means the row's last column."""

    text_a: int
    text_b: Optional[int] = None
    label: Optional[int] = None
    index: Optional[int] = None
    has_header: bool = True

    def min_columns(self):
        """Fewest columns a row may have; a last-column label must come after every text column."""
        used = [c for c in (self.text_a, self.text_b, self.label, self.index) if c is not None]
        needed = max(c for c in used if c != LAST_COLUMN) + 1
        return needed + 1 if self.label == LAST_COLUMN else needed


class DataProcessor:
    """Reads one GLUE task; subclasses only declare file names, column layouts and labels."""

    name = ""
    folder_name = ""
    labels: Optional[Sequence[str]] = BINARY_LABELS
    primary_metric = "eval_accuracy"
    truncation = "head"  # a long text keeps its first tokens (bert.features)
    train_file = "train.tsv"
    dev_file = "dev.tsv"
    test_file = "test.tsv"
    labeled_layout: ColumnLayout
    test_layout: ColumnLayout

    @property
    def is_regression(self):
        return self.labels is None

    def get_labels(self) -> Optional[List[str]]:
        return None if self.labels is None else list(self.labels)

    def get_train_examples(self, data_dir) -> List[InputExample]:
        return self._read_labeled(data_dir, self.train_file, "train")

    def get_dev_examples(self, data_dir) -> List[InputExample]:
        return self._read_labeled(data_dir, self.dev_file, "dev")

    def get_test_examples(self, data_dir) -> List[InputExample]:
        layout = self.test_layout
        placeholder = 0.0 if self.is_regression else self.labels[0]
        examples = []
        path = os.path.join(data_dir, self.test_file)
        for _, row in self._read_rows(path, layout):
            index = row[layout.index]
            examples.append(InputExample(
                guid=f"test-{index}",
                text_a=row[layout.text_a],
                text_b=None if layout.text_b is None else row[layout.text_b],
                label=placeholder,
                test_index=index))
        return examples

    def _read_labeled(self, data_dir, file_name, set_type):
        layout = self.labeled_layout
        path = os.path.join(data_dir, file_name)
        examples = []
        for line_number, row in self._read_rows(path, layout):
            examples.append(InputExample(
                guid=f"{set_type}-{len(examples)}",
                text_a=row[layout.text_a],
                text_b=None if layout.text_b is None else row[layout.text_b],
                label=self._parse_label(row[layout.label], path, line_number)))
        return examples

    def _parse_label(self, raw_label, path, line_number):
        if self.is_regression:
            try:
                score = float(raw_label)
            except ValueError:
                score = math.nan
            if not math.isfinite(score):
                raise GlueFormatError(
                    f"{path}:{line_number}: {self.name} score {raw_label!r} is not a finite number")
            return score
        if raw_label not in self.labels:
            raise GlueFormatError(
                f"{path}:{line_number}: label {raw_label!r} is not a {self.name} label; "
                f"allowed labels: {', '.join(self.labels)}")
        return raw_label

    def _read_rows(self, path, layout):
        """Yields (1-based line number, row); quoting is off because GLUE text has stray quotes."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{self.name} data file not found: {path}")
        min_columns = layout.min_columns()
        rows_read = 0
        with open(path, encoding=GLUE_ENCODING, newline="") as tsv:
            reader = csv.reader(tsv, delimiter="\t", quotechar=None)
            try:
                if layout.has_header:
                    next(reader, None)
                for row in reader:
                    if len(row) < min_columns:
                        raise GlueFormatError(
                            f"{path}:{reader.line_num}: found {len(row)} columns, expected at "
                            f"least {min_columns} for a {self.name} file")
                    rows_read += 1
                    yield reader.line_num, row
            except UnicodeDecodeError:
                raise GlueFormatError(describe_undecodable(path)) from None
        if not rows_read:
            after = " after the header" if layout.has_header else ""
            raise GlueFormatError(f"{path}: no examples (expected {self.name} rows{after})")


class ColaProcessor(DataProcessor):
    name = folder_name = "CoLA"
    primary_metric = "eval_mcc"
    # Columns: source, label, original mark, sentence; no header.
    labeled_layout = ColumnLayout(text_a=3, label=1, has_header=False)
    test_layout = ColumnLayout(index=0, text_a=1)


class Sst2Processor(DataProcessor):
    name = folder_name = "SST-2"
    labeled_layout = ColumnLayout(text_a=0, label=1)
    test_layout = ColumnLayout(index=0, text_a=1)


class MrpcProcessor(DataProcessor):
    name = folder_name = "MRPC"
    primary_metric = "eval_f1"
    # Columns: Quality, #1 ID, #2 ID, #1 String, #2 String (test: index instead of Quality).
    labeled_layout = ColumnLayout(text_a=3, text_b=4, label=0)
    test_layout = ColumnLayout(index=0, text_a=3, text_b=4)


class StsbProcessor(DataProcessor):
    name = folder_name = "STS-B"
    labels = None
    primary_metric = "eval_spearman"
    # Columns: index, genre, filename, year, old_index, source1, source2, sentence1, sentence2, score.
    labeled_layout = ColumnLayout(text_a=7, text_b=8, label=9)
    test_layout = ColumnLayout(index=0, text_a=7, text_b=8)


class QqpProcessor(DataProcessor):
    name = folder_name = "QQP"
    primary_metric = "eval_f1"
    # Columns: id, qid1, qid2, question1, question2, is_duplicate (test: id, question1, question2).
    labeled_layout = ColumnLayout(text_a=3, text_b=4, label=5)
    test_layout = ColumnLayout(index=0, text_a=1, text_b=2)


class MnliProcessor(DataProcessor):
    name = "MNLI"
    folder_name = "MNLI"
    labels = NLI_LABELS
    dev_file = "dev_matched.tsv"
    test_file = "test_matched.tsv"
    # sentence1/sentence2 are columns 8/9; train has one annotator label, dev five, gold is last.
    labeled_layout = ColumnLayout(text_a=8, text_b=9, label=LAST_COLUMN)
    test_layout = ColumnLayout(index=0, text_a=8, text_b=9)


class MnliMismatchedProcessor(MnliProcessor):
    """Same training data as MNLI, evaluated on the mismatched-genre dev/test sets."""

    name = "MNLI-MM"
    dev_file = "dev_mismatched.tsv"
    test_file = "test_mismatched.tsv"


class QnliProcessor(DataProcessor):
    name = folder_name = "QNLI"
    labels = ENTAILMENT_LABELS
    # Columns: index, question, sentence, label.
    labeled_layout = ColumnLayout(text_a=1, text_b=2, label=3)
    test_layout = ColumnLayout(index=0, text_a=1, text_b=2)


class RteProcessor(DataProcessor):
    name = folder_name = "RTE"
    labels = ENTAILMENT_LABELS
    # Columns: index, sentence1, sentence2, label.
    labeled_layout = ColumnLayout(text_a=1, text_b=2, label=3)
    test_layout = ColumnLayout(index=0, text_a=1, text_b=2)


class WnliProcessor(RteProcessor):
    name = folder_name = "WNLI"
    labels = BINARY_LABELS


class AxProcessor(MnliProcessor):
    """The GLUE diagnostic set: unlabeled, so it is only ever predicted with an MNLI model."""

    name = folder_name = "AX"
    primary_metric = "eval_mcc"
    test_file = "diagnostic.tsv"
    test_layout = ColumnLayout(index=0, text_a=1, text_b=2)

    def get_train_examples(self, data_dir):
        raise TaskError("AX is test-only: train an MNLI model and predict AX/diagnostic.tsv with it")

    def get_dev_examples(self, data_dir):
        raise TaskError("AX is test-only: evaluate on MNLI dev, then predict AX/diagnostic.tsv")


TASK_NAMES = ("cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "mnli-mm", "qnli", "rte", "wnli", "ax")
TASK_ALIASES = {"sst2": "sst-2", "stsb": "sts-b", "mnli-m": "mnli"}

_CANONICAL_PROCESSORS = {
    "cola": ColaProcessor,
    "sst-2": Sst2Processor,
    "mrpc": MrpcProcessor,
    "sts-b": StsbProcessor,
    "qqp": QqpProcessor,
    "mnli": MnliProcessor,
    "mnli-mm": MnliMismatchedProcessor,
    "qnli": QnliProcessor,
    "rte": RteProcessor,
    "wnli": WnliProcessor,
    "ax": AxProcessor,
}
# Aliases are keys too, so `PROCESSORS[flag.lower()]` works for every accepted spelling.
PROCESSORS = {**_CANONICAL_PROCESSORS,
              **{alias: _CANONICAL_PROCESSORS[task] for alias, task in TASK_ALIASES.items()}}

METRIC_FOR_TASK = {task: cls.primary_metric for task, cls in _CANONICAL_PROCESSORS.items()}

SUBMISSION_FILE_NAMES = {
    "cola": "CoLA.tsv",
    "sst-2": "SST-2.tsv",
    "mrpc": "MRPC.tsv",
    "sts-b": "STS-B.tsv",
    "qqp": "QQP.tsv",
    "mnli": "MNLI-m.tsv",
    "mnli-mm": "MNLI-mm.tsv",
    "qnli": "QNLI.tsv",
    "rte": "RTE.tsv",
    "wnli": "WNLI.tsv",
    "ax": "AX.tsv",
}


def canonical_name_or_none(task_name):
    """The canonical GLUE name of ``task_name``, or None when it names no GLUE task."""
    key = task_name.strip().lower()
    key = TASK_ALIASES.get(key, key)
    return key if key in _CANONICAL_PROCESSORS else None


def canonical_task_name(task_name):
    """Lower-cases and resolves aliases, so every table here can be keyed by canonical names."""
    key = canonical_name_or_none(task_name)
    if key is None:
        raise TaskError(
            f"unknown GLUE task {task_name!r}; valid tasks: {', '.join(TASK_NAMES)} "
            f"(aliases: {', '.join(TASK_ALIASES)})")
    return key


def get_processor(task_name) -> DataProcessor:
    return _CANONICAL_PROCESSORS[canonical_task_name(task_name)]()


def _format_prediction(processor, prediction):
    """GLUE wants label names for classification and 3-decimal scores in [0, 5] for STS-B."""
    if processor.is_regression:
        score = float(prediction)
        if not math.isfinite(score):
            raise ValueError(f"{processor.name} prediction {prediction!r} is not a finite number")
        return SUBMISSION_FLOAT_FORMAT.format(min(max(score, STS_B_MIN_SCORE), STS_B_MAX_SCORE))
    labels = processor.get_labels()
    if isinstance(prediction, str):
        if prediction not in labels:
            raise ValueError(f"{processor.name} prediction {prediction!r} is not one of {labels}")
        return prediction
    class_id = int(prediction)
    if class_id != prediction or not 0 <= class_id < len(labels):
        raise ValueError(
            f"{processor.name} prediction {prediction!r} is not a class id in 0..{len(labels) - 1}")
    return labels[class_id]


def write_submission(path, processor, test_examples, predictions):
    """Writes `index<TAB>prediction` lines atomically, so a crash never leaves a half file."""
    if len(test_examples) != len(predictions):
        raise ValueError(
            f"{len(test_examples)} test examples but {len(predictions)} predictions")
    lines = [SUBMISSION_HEADER]
    for example, prediction in zip(test_examples, predictions):
        if example.test_index is None:
            raise ValueError(f"example {example.guid!r} is not a test example (no test_index)")
        lines.append(f"{example.test_index}\t{_format_prediction(processor, prediction)}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    files.write_text_atomic(path, "\n".join(lines) + "\n")
