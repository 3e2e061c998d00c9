"""The deployment benchmark: size, FLOPs, dev metric, latency and throughput, one table.

    python -m deploy.benchmark models/dense models/compact exports/compact \\
        --task_name SST-2 --data_dir glue/SST-2 --output_dir benchmark_outputs

A MODEL is a model folder (run in TensorFlow as its config describes it: compact kernel ranks,
PoWER-BERT retention), an export folder (deploy.export's; its model.onnx and model.int8.onnx
are a row each, run in onnxruntime) or an .onnx file. The first MODEL is the baseline of every
ratio. The first model folder's ONNX fp32 and INT8 exports are reference rows beside it: from
--reference_onnx DIR, or, when no export of it is among the MODELs, exported by deploy.export
into OUTPUT_DIR/reference/ (without --output_dir they are left out, with a note).

Inputs are real dev sentences when --task_name and --data_dir are given (tokenized by our
tokenizer, each batch padded to its own longest, the same batches for every row), else a
synthetic set: SYNTHETIC_SENTENCES sentences of SYNTHETIC_MIN_WORDS to max_seq_length - 2
words drawn uniformly from the vocabulary's alphabetic tokens with seed SYNTHETIC_SEED.
Every row is timed in this one process, round-robin (bert.timing), warm-up excluded: latency
at batch 1 (p50, p90 over single sentences in dev order) and throughput at --batch_size (all
timed examples over all timed seconds, consecutive batches in a cycle).

Writes OUTPUT_DIR/benchmark.md, benchmark.csv and (with a dev metric) benchmark.png.
"""
import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from typing import Callable, List, Optional

import numpy as np
import onnx

from bert import (checkpoint, cli, files, metrics, model_folder, modeling, tasks, timing,
                  tokenization, user_task)
from bert.errors import InputError
from bert.features import HEAD
from bert.classifier import MIN_SEQ_LENGTH
from deploy import flops, inference, openvino_engine, peer
from deploy.benchmark_table import (CELL_FORMATS, COLUMNS, HEADINGS,  # noqa: F401
                                    MISSING_CELL, ONNX_SUFFIX, csv_text, records,
                                    write_plot)

log = logging.getLogger("deploy")

PROGRAM = "deploy.benchmark"
FP32_ONNX = "model.onnx"
INT8_ONNX = "model.int8.onnx"
VOCAB_FILE = "vocab.txt"
NAME_SEPARATOR = "="  # MODEL arguments may be NAME=PATH
PEER_DIR = "peer"  # OUTPUT_DIR/peer: the peer's export of the first model folder
REFERENCE_DIR = "reference"
ENGINE_TF = "tf"
ENGINE_FP32 = "onnxruntime fp32"
ENGINE_INT8 = "onnxruntime int8"
# ONNX initializers that are weights: floats, and 8-bit integers (quantized weights).
WEIGHT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
QUANTIZED_TYPES = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
# A quantized weight's scale and zero point describe it; they are not parameters of the model.
QUANTIZATION_SUFFIXES = ("_scale", "_zero_point")
EXPORT_INFO, EXPORT_SOURCE = inference.EXPORT_INFO, inference.EXPORT_SOURCE
SYNTHETIC_SENTENCES = 256
SYNTHETIC_MIN_WORDS = 4
SYNTHETIC_SEED = 0
SINGLE_SPECIAL_TOKENS = 2  # [CLS] text [SEP]
LATENCY_PERCENTILES = (50, 90)
MS_PER_SECOND = 1000.0
OUTPUT_FILES = ("benchmark.md", "benchmark.csv", "benchmark.png")


@dataclasses.dataclass
class Row:
    """One model on one engine: what it is, how to run it, and what was measured."""
    label: str
    engine: str
    open_runner: Callable  # threads -> a runner: (ids, mask, segments) -> logits
    disk_bytes: int
    bert_config: Optional[modeling.BertConfig]  # None: FLOPs unknown
    vocab_file: Optional[str]
    params: int = 0
    num_labels: int = 0
    flops: Optional[int] = None
    flops_timed: Optional[float] = None  # per example, over the timed batches' own lengths
    dev_metric: Optional[float] = None
    latency_ms: tuple = ()
    throughput: float = 0.0
    source: Optional[str] = None  # real path of the model folder it is (or was exported from)
    name: Optional[str] = None  # the NAME of a NAME=PATH argument: shown instead of the path

    @property
    def shown(self):
        return self.name or self.label


# Models -----------------------------------------------------------------------------------------
def folder_row(path):
    """A model folder, run in TensorFlow; its parameters and disk size are those of its
    checkpoint's model weights (a training folder's optimizer slots and global step are not
    what ships)."""
    model = inference.load_model_folder(path, flag="model")
    weights = checkpoint.read_checkpoint(model.checkpoint_prefix)
    return Row(path, ENGINE_TF, lambda threads: inference.TensorFlowRunner(model, threads),
               sum(value.nbytes for value in weights.values()), model.bert_config,
               model.vocab_file,
               params=modeling.count_parameters(value.shape for value in weights.values()),
               num_labels=model.num_labels, source=os.path.realpath(path))


def onnx_summary(onnx_file):
    """(parameters, quantized?, outputs per example) of an ONNX model. Parameters are the
    initializers of float or 8-bit integer type (quantized weights count as parameters too),
    without the scales and zero points of quantization and without scalar constants (1/√d,
    GELU's ½): what the checkpoint of the same model holds."""
    try:
        graph = onnx.load(onnx_file, load_external_data=False).graph
    except Exception as error:  # protobuf's DecodeError, onnx's own checks
        raise InputError(f"{onnx_file}: not an ONNX model ({error})") from None
    logits = next((output for output in graph.output if output.name == inference.LOGITS), None)
    if logits is None:
        raise InputError(f"{onnx_file}: no output named {inference.LOGITS!r} (expected "
                         "deploy.export's model)")
    weights = [tensor for tensor in graph.initializer if tensor.data_type in WEIGHT_TYPES
               and tensor.dims and not tensor.name.endswith(QUANTIZATION_SUFFIXES)]
    count = modeling.count_parameters(list(tensor.dims) for tensor in weights)
    num_labels = logits.type.tensor_type.shape.dim[-1].dim_value
    return count, any(tensor.data_type in QUANTIZED_TYPES for tensor in weights), num_labels


def onnx_row(onnx_file, bert_config=None):
    """An .onnx file, run in onnxruntime; fp32 or int8 as its weights say. Its folder's
    export.json names the model folder it came from, whose config gives its FLOPs."""
    folder = os.path.dirname(onnx_file)
    params, quantized, num_labels = onnx_summary(onnx_file)
    source = export_source(folder)
    config_file = source and os.path.join(source, model_folder.CONFIG_FILE)
    if bert_config is None and config_file and os.path.isfile(config_file):
        bert_config = modeling.BertConfig.from_json_file(config_file)
    vocab = os.path.join(folder, VOCAB_FILE)
    return Row(onnx_file, ENGINE_INT8 if quantized else ENGINE_FP32,
               lambda threads: inference.OnnxRunner(onnx_file, threads),
               os.path.getsize(onnx_file), bert_config,
               vocab if os.path.isfile(vocab) else None, params=params, num_labels=num_labels,
               source=source)


def export_source(folder):
    """The real path of the model folder an export folder was made from, or None."""
    path = os.path.join(folder, EXPORT_INFO)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        try:
            source = json.load(handle).get(EXPORT_SOURCE)
        except (json.JSONDecodeError, AttributeError):
            raise InputError(f"{path}: not deploy.export's export.json") from None
    return source and os.path.realpath(source)


def model_rows(path):
    """The rows a MODEL argument stands for."""
    cli.require(path and os.path.exists(path),
                f"MODEL {path}: not found (expected a model folder, an export folder with "
                f"{FP32_ONNX}, or an {ONNX_SUFFIX} file)")
    if os.path.isfile(path):
        cli.require(path.endswith(ONNX_SUFFIX), f"MODEL {path}: not an {ONNX_SUFFIX} file, "
                                                "a model folder or an export folder")
        return [onnx_row(path)]
    if os.path.isfile(os.path.join(path, FP32_ONNX)):
        return export_rows(path)
    return [folder_row(path)]


def export_rows(folder, bert_config=None):
    """An export folder's fp32 model and, when it has one, its INT8 model."""
    return [onnx_row(os.path.join(folder, name), bert_config)
            for name in (FP32_ONNX, INT8_ONNX) if os.path.isfile(os.path.join(folder, name))]


# Inputs -----------------------------------------------------------------------------------------
@dataclasses.dataclass
class Inputs:
    """The sentences every row sees, encoded once: dev batches, single sentences, gold labels."""
    batches: List[tuple]
    singles: List[tuple]
    labels: Optional[np.ndarray]  # None: synthetic sentences, no metric
    description: str


def dev_pairs(args):
    """(pairs, labels) of the task's dev split (the first --max_eval_examples when set)."""
    processor = tasks.get_processor(args.task_name)
    examples = processor.get_dev_examples(args.data_dir)
    if args.max_eval_examples:
        examples = examples[:args.max_eval_examples]
    cli.require(examples, f"--data_dir={args.data_dir}: the {processor.name} dev split is empty")
    pairs = [(example.text_a, example.text_b) for example in examples]
    if processor.is_regression:
        return pairs, np.array([float(example.label) for example in examples])
    label_ids = {label: index for index, label in enumerate(processor.get_labels())}
    return pairs, np.array([label_ids[example.label] for example in examples])


def long_texts(tokenizer, pairs, max_seq_length):
    """Consecutive dev texts (both sentences of a pair) joined until each input fills
    max_seq_length tokens: real text of any length, for models whose cost depends on it."""
    budget = max_seq_length - SINGLE_SPECIAL_TOKENS
    texts, words, tokens = [], [], 0
    for pair in pairs:
        for text in filter(None, pair):
            words.append(text)
            tokens += len(tokenizer.tokenize(text))
            if tokens >= budget:
                texts.append((" ".join(words), None))
                words, tokens = [], 0
    cli.require(texts, f"--long_inputs: the dev split has fewer than {budget} tokens in all")
    return texts


def synthetic_pairs(tokenizer, vocab_file, max_seq_length):
    """Random-length sentences of the vocabulary's whole words (see the module docstring)."""
    tokens = tokenizer.convert_ids_to_tokens(range(tokenization.vocab_size(vocab_file)))
    words = [token for token in tokens if token.isalpha()]
    cli.require(words, f"{vocab_file}: no alphabetic tokens to build synthetic sentences from; "
                       "give --task_name and --data_dir")
    rng = np.random.RandomState(SYNTHETIC_SEED)
    most = max(SYNTHETIC_MIN_WORDS, max_seq_length - 2)
    lengths = rng.randint(SYNTHETIC_MIN_WORDS, most + 1, SYNTHETIC_SENTENCES)
    return [(" ".join(rng.choice(words, length)), None) for length in lengths]


def make_inputs(args, vocab_file, timed_calls):
    """Batches of --batch_size (each padded to its longest) and single sentences, encoded with
    the baseline's vocabulary; only as many singles as the latency runs use."""
    tokenizer = tokenization.create_tokenizer(vocab_file, args.do_lower_case)
    if args.long_inputs:
        pairs, labels = long_texts(tokenizer, dev_pairs(args)[0], args.max_seq_length), None
        description = (f"{len(pairs)} texts of {args.max_seq_length} tokens, each consecutive "
                       f"{tasks.get_processor(args.task_name).name} dev sentences joined (no "
                       "labels, no dev metric)")
    elif args.task_name:
        pairs, labels = dev_pairs(args)
        description = f"{len(pairs)} {tasks.get_processor(args.task_name).name} dev sentences"
    else:
        pairs, labels = synthetic_pairs(tokenizer, vocab_file, args.max_seq_length), None
        description = (f"{len(pairs)} synthetic sentences ({SYNTHETIC_MIN_WORDS} to "
                       f"{args.max_seq_length - 2} random vocabulary words, seed "
                       f"{SYNTHETIC_SEED})")
    truncation = tasks.get_processor(args.task_name).truncation if args.task_name else HEAD
    batches = [inference.encode(tokenizer, pairs[start:start + args.batch_size],
                                args.max_seq_length, truncation)
               for start in range(0, len(pairs), args.batch_size)]
    singles = [inference.encode(tokenizer, [pair], args.max_seq_length, truncation)
               for pair in pairs[:timed_calls]]
    return Inputs(batches, singles, labels, description)


def same_vocab(first, other):
    with open(first, "rb") as a, open(other, "rb") as b:
        return a.read() == b.read()


# Measurements -----------------------------------------------------------------------------------
class CyclingRun:
    """``run_once`` for bert.timing: the next input of a cycle, timed. Every row walks the same
    cycle from its start, so all rows see the same inputs in the same order."""

    def __init__(self, runner, inputs):
        self.runner, self.inputs = runner, inputs
        self.examples = []  # examples of each call, warm-up included

    def run_once(self):
        batch = self.inputs[len(self.examples) % len(self.inputs)]
        self.examples.append(len(batch[0]))
        start = time.perf_counter()
        self.runner(*batch)
        return time.perf_counter() - start


def dev_metric(runner, inputs, task_name):
    """The task's primary metric over every dev batch."""
    processor = tasks.get_processor(task_name)
    logits = np.concatenate([runner(*batch) for batch in inputs.batches])
    predictions = logits[:, 0] if processor.is_regression else np.argmax(logits, axis=-1)
    return metrics.compute_task_metrics(task_name, predictions,
                                        inputs.labels)[processor.primary_metric]


def measure(rows, runners, inputs, args):
    """Dev metric, then batch-1 latency, then batch throughput; each timing round-robin."""
    if inputs.labels is not None:
        for row, runner in zip(rows, runners):
            row.dev_metric = dev_metric(runner, inputs, args.task_name)
    singles = [CyclingRun(runner, inputs.singles) for runner in runners]
    for row, seconds in zip(rows, timing.interleaved_samples(singles, args.iterations)):
        row.latency_ms = tuple(np.percentile(seconds, LATENCY_PERCENTILES) * MS_PER_SECOND)
    batches = [CyclingRun(runner, inputs.batches) for runner in runners]
    for row, run, seconds in zip(rows, batches,
                                 timing.interleaved_samples(batches, args.iterations)):
        row.throughput = sum(run.examples[-args.iterations:]) / sum(seconds)


def timed_flops(row, batches, iterations):
    """FLOPs per example over the batches the throughput runs time (after the warm-up), each at
    its own padded length: the work the engines really do, which the speed-up is divided by."""
    timed = [batches[call % len(batches)]
             for call in range(timing.WARMUP_RUNS, timing.WARMUP_RUNS + iterations)]
    total = sum(len(batch[0]) * flops.flops_per_example(row.bert_config, batch[0].shape[1],
                                                        row.num_labels) for batch in timed)
    return total / sum(len(batch[0]) for batch in timed)


# Table ------------------------------------------------------------------------------------------
def markdown(table, args, inputs, metric_name, notes):
    headings = [heading.format(metric=metric_name or "metric", batch=args.batch_size)
                for heading in HEADINGS]
    lines = ["# Deployment benchmark", "",
             f"threads: {args.threads}; {args.iterations} timed runs per row after "
             f"{timing.WARMUP_RUNS} warm-up runs, interleaved round-robin across rows in one "
             f"process; inputs: {inputs.description}, up to {args.max_seq_length} tokens, each "
             "batch padded to its longest.",
             f"FLOPs/example: 2 × multiply-adds of every matmul at {args.max_seq_length} tokens "
             "(embeddings, LayerNorm, softmax and GELU are not matmuls and are not counted); "
             "timed: the same, averaged over the timed batches at their own padded lengths. "
             "Speed-up: throughput ÷ the first row's; FLOP reduction: the first row's timed "
             "FLOPs ÷ this row's. Disk: a model folder's weights (without a training folder's "
             "optimizer slots), an ONNX file's size.", *notes, "",
             "| " + " | ".join(headings) + " |",
             "|" + "---|" * len(headings)]
    for record in table:
        cells = [MISSING_CELL if record[column] is None
                 else CELL_FORMATS.get(column, str)(record[column]) for column in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def validate(args):
    """Every flag that needs no file, before anything is loaded or written."""
    cli.require_in_range(args.batch_size, "batch_size", 1)
    cli.require_in_range(args.iterations, "iterations", 1)
    cli.require_in_range(args.threads, "threads", 1)
    cli.require_in_range(args.max_eval_examples, "max_eval_examples", 0)
    cli.require_in_range(args.max_seq_length, "max_seq_length", MIN_SEQ_LENGTH)
    cli.resolve_task_arguments(args)
    cli.require(bool(args.task_name) == bool(args.data_dir),
                "--task_name and --data_dir go together (give both for a dev metric, or "
                "neither for synthetic sentences)")
    cli.require(args.task_name or not args.long_inputs,
                "--long_inputs joins dev sentences: give --task_name and --data_dir")
    if args.task_name:
        tasks.canonical_task_name(args.task_name)
        cli.require_dir(args.data_dir, "data_dir", "the task's folder with dev.tsv")
    if args.reference_onnx:
        for name in (FP32_ONNX, INT8_ONNX):
            cli.require_file(os.path.join(args.reference_onnx, name), "reference_onnx",
                             f"the first model folder's export folder with {FP32_ONNX} and "
                             f"{INT8_ONNX}")
    if args.output_dir:
        cli.require_output_dir(args.output_dir, "output_dir")
    cli.require(not args.peer_reference or args.output_dir,
                "--peer_reference exports the first model folder the peer's way: give "
                "--output_dir for it")


def with_references(rows, args, notes):
    """The rows with the first model folder's ONNX fp32 and INT8 exports right after it: from
    --reference_onnx, or exported now into OUTPUT_DIR/reference unless a MODEL is its export."""
    folder = next((index for index, row in enumerate(rows) if row.engine == ENGINE_TF), None)
    if folder is None:
        return rows
    baseline = rows[folder]
    if args.reference_onnx:
        references = export_rows(args.reference_onnx, baseline.bert_config)
    elif any(row.source == baseline.source for row in rows if row.engine != ENGINE_TF):
        return rows
    elif args.output_dir:
        references = export_reference(baseline, args, notes)
    else:
        notes.append(f"No ONNX reference rows for {baseline.label}: give --reference_onnx "
                     "(its deploy.export folder), its export folder as a MODEL, or "
                     "--output_dir to export it there.")
        return rows
    check_rows(references, args, rows[0].vocab_file)
    return rows[:folder + 1] + references + rows[folder + 1:]


def export_reference(baseline, args, notes):
    """The baseline's ONNX fp32 and INT8 rows, exported by deploy.export's own command."""
    from deploy import export  # loads tensorflow_text: only when a reference is exported

    reference_dir = os.path.join(args.output_dir, REFERENCE_DIR)
    status = export.main(["--model_dir", baseline.label, "--output_dir", reference_dir,
                          "--max_seq_length", str(args.max_seq_length),
                          "--do_lower_case", str(args.do_lower_case).lower()])
    if status != cli.EXIT_OK:
        raise InputError(f"exporting {baseline.label} into {reference_dir} failed (status "
                         f"{status}, see above); give --reference_onnx instead")
    notes.append(f"ONNX reference rows: {baseline.label} exported by deploy.export into "
                 f"{reference_dir}.")
    return export_rows(reference_dir, baseline.bert_config)


def peer_rows(rows, args, notes):
    """The first model folder exported the peer's way (deploy.peer), as two more rows."""
    reason = peer.missing_reason()
    if reason:
        notes.append(reason + ".")
        return []
    baseline = next(row for row in rows if row.engine == ENGINE_TF)
    folder = os.path.join(args.output_dir, PEER_DIR)
    peer.export_peer(baseline.label, folder, args.max_seq_length)
    notes.append(f"Peer reference rows: {baseline.label} through {peer.PEER_PIPELINE}, "
                 f"in {folder}; × peer INT8 is each row's throughput ÷ that row's.")
    exported = export_rows(folder, baseline.bert_config)
    for row, name in zip(exported, (peer.FP32_ROW, peer.INT8_ROW)):
        row.name = name
    return exported


def openvino_rows(rows, notes):
    """Each ONNX INT8 row once more, run by OpenVINO (``deploy.openvino_engine``)."""
    reason = openvino_engine.missing_reason()
    if reason:
        notes.append(reason + ".")
        return []
    added = []
    for row in rows:
        unconverted = row.engine == ENGINE_INT8 and openvino_engine.unconverted_ops(row.label)
        if unconverted:
            notes.append(f"No OpenVINO row for {row.shown}: OpenVINO cannot convert "
                         f"{', '.join(unconverted)} (dynamic INT8); export with --int8_mode "
                         "static or learned for one.")
        elif row.engine == ENGINE_INT8:
            added.append(dataclasses.replace(
                row, engine=f"{openvino_engine.ENGINE_NAME} int8",
                name=row.name and f"{row.name} ({openvino_engine.ENGINE_NAME})",
                open_runner=lambda threads, path=row.label: openvino_engine.OpenVinoRunner(
                    path, threads)))
    notes.append("OpenVINO rows: the INT8 ONNX files compiled by OpenVINO for the CPU "
                 "(f32 where not INT8).")
    return added


def check_rows(rows, args, first_vocab):
    """Every row can read the baseline's encodings and answer the task."""
    for row in rows:
        cli.require(row.vocab_file is None or same_vocab(first_vocab, row.vocab_file),
                    f"MODEL {row.label}: its vocabulary differs from the first MODEL's; "
                    "rows must read the same token ids")
        if row.bert_config is not None:
            cli.require_in_range(args.max_seq_length, "max_seq_length", MIN_SEQ_LENGTH,
                                 row.bert_config.max_position_embeddings)
        if args.task_name:
            processor = tasks.get_processor(args.task_name)
            wanted = 1 if processor.is_regression else len(processor.get_labels())
            cli.require(row.num_labels == wanted,
                        f"MODEL {row.label}: {row.num_labels} outputs, but {processor.name} "
                        f"has {wanted}")


def named_rows(argument):
    """The rows of a MODEL argument, ``PATH`` or ``NAME=PATH``."""
    name, separator, path = argument.partition(NAME_SEPARATOR)
    if not separator or os.sep in name:
        return model_rows(argument)
    rows = model_rows(path)
    for row in rows:
        row.name = name
    return rows


def per_input_notes(rows):
    """The rows whose methods keep tokens per input: their FLOPs are an upper bound."""
    reasons = [(row.shown, flops.per_input_notes(row.bert_config)) for row in rows
               if row.bert_config is not None]
    reasons = [(shown, notes) for shown, notes in reasons if notes]
    if not reasons:
        return []
    why = " ".join(dict.fromkeys(note for _, notes in reasons for note in notes))
    return [f"FLOPs of {', '.join(shown for shown, _ in reasons)}: the dense count, an upper "
            f"bound; {why}"]


def run(args):
    validate(args)
    notes = []
    rows = [row for argument in args.models for row in named_rows(argument)]
    cli.require(rows[0].vocab_file, f"MODEL {rows[0].label}: no {VOCAB_FILE} beside it to "
                                    "tokenize with; give its export folder instead")
    check_rows(rows, args, rows[0].vocab_file)
    # The dev data is read (and checked) before a reference export writes anything.
    inputs = make_inputs(args, rows[0].vocab_file, args.iterations + timing.WARMUP_RUNS)
    rows = with_references(rows, args, notes)
    if args.peer_reference:
        rows += peer_rows(rows, args, notes)
    if args.openvino:
        rows += openvino_rows(rows, notes)
    for row in rows:
        if row.bert_config is not None:
            row.flops = flops.flops_per_example(row.bert_config, args.max_seq_length,
                                                row.num_labels)
    notes += per_input_notes(rows)
    for row in rows:
        if row.bert_config is not None:
            row.flops_timed = timed_flops(row, inputs.batches, args.iterations)
    runners = []
    try:
        for row in rows:
            runners.append(row.open_runner(args.threads))
        measure(rows, runners, inputs, args)
    finally:
        for runner in runners:
            runner.close()
    table = records(rows)
    metric_name = (tasks.get_processor(args.task_name).primary_metric
                   if inputs.labels is not None else None)
    text = markdown(table, args, inputs, metric_name, notes)
    print(text, end="")
    if args.output_dir:
        write_outputs(args.output_dir, text, table, metric_name)


def write_outputs(output_dir, text, table, metric_name):
    os.makedirs(output_dir, exist_ok=True)
    markdown_file, csv_file, plot_file = (os.path.join(output_dir, name) for name in OUTPUT_FILES)
    files.write_text_atomic(markdown_file, text)
    files.write_text_atomic(csv_file, csv_text(table))
    if metric_name:
        write_plot(plot_file, table, metric_name)
    log.info("wrote %s", ", ".join(path for path in (markdown_file, csv_file, plot_file)
                                    if os.path.exists(path)))


def main(argv=None):
    parser = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help="model folder, export folder or .onnx file, optionally named "
                             "NAME=PATH; the first is the baseline")
    parser.add_argument("--task_name", help="GLUE task of the dev metric (with --data_dir), a "
                                            "name for your own data (with the flags below) or "
                                            "a task .json file")
    parser.add_argument("--data_dir", help="the task's folder (dev.tsv)")
    parser.add_argument("--max_eval_examples", type=int, default=0,
                        help="use the first N dev examples (0: the whole dev split)")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32, help="batch of the throughput")
    parser.add_argument("--iterations", type=int, default=50, help="timed runs per row, each "
                        "for latency and throughput")
    parser.add_argument("--threads", type=int, default=2,
                        help="intra-op threads of every engine")
    parser.add_argument("--do_lower_case", action=argparse.BooleanOptionalAction, default=True,
                        help="lower-case before WordPiece, as uncased vocabularies need")
    parser.add_argument("--long_inputs", action="store_true",
                        help="time inputs of max_seq_length tokens made of consecutive dev "
                             "sentences joined (no dev metric): how speed-ups grow with length")
    parser.add_argument("--output_dir", help="where benchmark.md/.csv/.png go (default: print "
                                             "only)")
    parser.add_argument("--reference_onnx", help="export folder of the first model folder "
                                                 f"({FP32_ONNX}, {INT8_ONNX})")
    parser.add_argument("--peer_reference", action="store_true",
                        help="add the first model folder exported by transformers -> "
                             "torch.onnx -> onnxruntime INT8 (needs pip install -e .[peer])")
    parser.add_argument("--openvino", action="store_true",
                        help="time every ONNX INT8 row in OpenVINO too (needs pip install -e "
                             ".[openvino])")
    user_task.add_arguments(parser)
    args = parser.parse_args(argv)
    cli.configure_logging()
    return cli.run_main(lambda: run(args), PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
