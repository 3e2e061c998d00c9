"""How much a fine-tuned teacher needs each of its units, from gradients on training examples.

Extraction keeps the most important layers, heads, FFN neurons and hidden dimensions, and the
search ranks candidate architectures by the importance they keep, so both read one ranking,
computed once and saved as ``importance.npz`` (+ ``importance.json``, a readable summary).

Scores (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"; CoFi, Xia et al. 2022),
with L the task loss of one example against its gold label (cross-entropy; squared error for
regression) and masks ξ = 1 inserted into the teacher's graph through the dense-layer factory:

* head h of layer l: ξ_lh scales the head's context where it enters the attention-output
  kernel; I_lh = E_x |∂L(x)/∂ξ_lh|, the expected first-order loss change of removing the head;
* FFN neuron n of layer l: ξ_ln scales the neuron where it enters the output kernel; same score;
* hidden dimension d: one ξ_d scales d wherever a kernel reads the residual stream (query, key,
  value and intermediate kernels of every layer, the pooler); same score. LayerNorm statistics
  still see d, so this is the effect of no kernel reading d, to first order;
* attention block / FFN block of layer l: E_x |Σ_h ∂L(x)/∂ξ_lh| (and Σ_n for the FFN), the
  score of one mask on the whole block: in the units of the scores above, so blocks of both
  kinds and of every layer weigh against each other;
* layer l: the mean loss increase on the sample when layer l is left out (the model built
  without it, which is exactly what extraction does when it drops a layer).
"""
import dataclasses
import json
import logging
import os
import zipfile
from typing import List

import numpy as np
import tensorflow as tf

from bert import checkpoint, cli, files, methods, model_folder, modeling, tasks, user_task
from bert.classifier import (Task, check_classifier_head, convert_example, create_model,
                             file_fingerprint)
from bert.errors import InputError, UsageError

tf1 = tf.compat.v1
log = logging.getLogger("distill")

IMPORTANCE_FILE = "importance.npz"
SUMMARY_FILE = "importance.json"
NUMPY_SUFFIX = ".npz"  # np.savez adds it to a name without it
DEFAULT_EXAMPLES = 256
DEFAULT_SEQ_LENGTH = 128
BATCH_SIZE = 16
SAMPLE_SEED = 0  # which training examples are scored: fixed, so a re-run scores the same ones
ENCODER_LAYER = "bert/encoder/layer_{}/"
SUMMARY_TOP = 10  # hidden dimensions named in the summary
IMPORTANCE_FLAG = "--importance="  # how an error names a file the user gave


@dataclasses.dataclass
class Importance:
    """Scores of a teacher's units (see the module docstring); one array per encoder layer
    for heads and neurons, whose counts may differ between layers."""
    heads: List[np.ndarray]
    neurons: List[np.ndarray]
    hidden: np.ndarray
    attention_blocks: np.ndarray
    ffn_blocks: np.ndarray
    layers: np.ndarray
    base_loss: float
    source: dict

    @property
    def num_layers(self):
        return len(self.heads)

    def top_layers(self, count):
        """The ``count`` most important layers, in the teacher's order."""
        return top_indices(self.layers, count)

    def save(self, path):
        arrays = {"hidden": self.hidden, "attention_blocks": self.attention_blocks,
                  "ffn_blocks": self.ffn_blocks, "layers": self.layers,
                  "base_loss": np.float64(self.base_loss),
                  "source": np.array(json.dumps(self.source, sort_keys=True))}
        for index in range(self.num_layers):
            arrays[f"heads_{index}"] = self.heads[index]
            arrays[f"neurons_{index}"] = self.neurons[index]
        with files.atomic_path(path, suffix=NUMPY_SUFFIX) as temp:
            np.savez(temp, **arrays)
        files.write_json_atomic(os.path.join(os.path.dirname(path), SUMMARY_FILE),
                                self.summary())

    def summary(self):
        """What a reader checks: the layer scores and, per layer, the heads by importance."""
        return {"source": self.source, "base_loss": self.base_loss,
                "layer_loss_increase": self.layers.tolist(),
                "attention_block": self.attention_blocks.tolist(),
                "ffn_block": self.ffn_blocks.tolist(),
                "heads_most_important_first": [np.argsort(-h, kind="stable").tolist()
                                               for h in self.heads],
                "head_scores": [h.tolist() for h in self.heads],
                "top_hidden_dimensions": np.argsort(-self.hidden,
                                                    kind="stable")[:SUMMARY_TOP].tolist()}

    @classmethod
    def load(cls, path, named_by=IMPORTANCE_FLAG):
        """The scores saved at ``path``. ``named_by`` starts an error's line: how the command
        came by the path (a flag, or nothing for a file found in its own output folder)."""
        if not os.path.isfile(path):
            raise UsageError(f"{named_by}{path}: file not found (expected the {IMPORTANCE_FILE} "
                             "that distill.search or distill.extract wrote)")
        try:
            with np.load(path) as data:
                layers = data["layers"]
                return cls(heads=[data[f"heads_{i}"] for i in range(len(layers))],
                           neurons=[data[f"neurons_{i}"] for i in range(len(layers))],
                           hidden=data["hidden"], attention_blocks=data["attention_blocks"],
                           ffn_blocks=data["ffn_blocks"], layers=layers,
                           base_loss=float(data["base_loss"]),
                           source=json.loads(str(data["source"])))
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
            raise InputError(f"{named_by}{path}: not a readable importance file "
                             f"({type(error).__name__}: {error}); remove it, or write it again "
                             "with --task_name/--data_dir") from None

    def check_matches(self, config, flag="importance"):
        """The scores must describe this architecture, unit for unit."""
        shapes = ([config.heads(i) for i in range(config.num_hidden_layers)],
                  [config.intermediate(i) for i in range(config.num_hidden_layers)],
                  config.hidden_size)
        found = ([len(h) for h in self.heads], [len(n) for n in self.neurons], len(self.hidden))
        if shapes != found:
            raise InputError(f"--{flag}: scores heads/neurons/hidden {found} do not match the "
                             f"teacher's {shapes}; compute them for this teacher")


def top_indices(scores, count):
    """Indices of the ``count`` highest scores, ascending (ties keep the lower index), so
    keeping everything keeps the original order."""
    return np.sort(np.argsort(-np.asarray(scores), kind="stable")[:count])


def load_values(session, variables, values):
    """Set graph variables to numpy weights by feeding each initializer's initial value (one
    graph, no temporary checkpoint); every variable must be there with its shape."""
    problems = [f"{v.op.name} missing" for v in variables if v.op.name not in values]
    problems += [f"{v.op.name}: graph {v.shape.as_list()} vs {list(values[v.op.name].shape)}"
                 for v in variables
                 if v.op.name in values and v.shape.as_list() != list(values[v.op.name].shape)]
    if problems:
        raise checkpoint.CheckpointMismatchError("weights do not match the config: "
                                                 + "; ".join(problems))
    for variable in variables:
        session.run(variable.initializer,
                    {variable.initializer.inputs[1]: values[variable.op.name]})


def layer_subset(values, kept_layers):
    """Weights of the model made of the teacher layers ``kept_layers`` (in that order): layer
    ``kept_layers[j]`` becomes layer j; every other weight is shared."""
    subset = {}
    for name, value in values.items():
        if not name.startswith("bert/encoder/layer_"):
            subset[name] = value
    for new_index, old_index in enumerate(kept_layers):
        old_prefix = ENCODER_LAYER.format(old_index)
        for name, value in values.items():
            if name.startswith(old_prefix):
                subset[ENCODER_LAYER.format(new_index) + name[len(old_prefix):]] = value
    return subset


def config_with_layers(config, kept_layers):
    """The config of ``layer_subset``: per-layer overrides follow their layers."""
    values = config.to_dict()
    values["num_hidden_layers"] = len(kept_layers)
    if values.get("layers"):
        values["layers"] = [values["layers"][index] for index in kept_layers]
    return modeling.BertConfig.from_dict(values)


# The masked teacher ------------------------------------------------------------------------------
class _Masks:
    """Per-example masks of ones, [batch, units]: the gradient of the summed loss with respect
    to row b is example b's own gradient, so E|∂L/∂ξ| needs no per-example passes."""

    def __init__(self, config, batch):
        layers = range(config.num_hidden_layers)
        self.heads = [tf.ones(tf.stack([batch, config.heads(i)])) for i in layers]
        self.neurons = [tf.ones(tf.stack([batch, config.intermediate(i)])) for i in layers]
        self.hidden = tf.ones(tf.stack([batch, config.hidden_size]))


def _scale(inputs, mask):
    """inputs [B, (S,) width] times a per-example mask [B, width]."""
    return inputs * (mask[:, tf.newaxis, :] if inputs.shape.rank == 3 else mask)


class MaskingHooks(methods.GraphHooks):
    """The masked teacher's kernel transform: each kernel's input is scaled by the head, neuron
    or hidden mask (which one follows from the kernel being built)."""
    transform_stage = methods.MASK

    def __init__(self, config, masks):
        self.bert_config = config
        self.masks = masks

    def transform_inputs(self, inputs, site):
        layer = site.layer_index
        if layer is not None and site.key == f"layer_{layer}/attention/output/dense":
            head_mask = tf.repeat(self.masks.heads[layer], self.bert_config.head_size(layer),
                                  axis=1)
            return _scale(inputs, head_mask)
        if layer is not None and site.key == f"layer_{layer}/output/dense":
            return _scale(inputs, self.masks.neurons[layer])
        return _scale(inputs, self.masks.hidden)


class _Sample:
    """The scored training examples as feature arrays, served in batches."""

    def __init__(self, task, count):
        examples = task.examples("train")
        if not examples:
            raise InputError(f"{task.data_dir}: train.tsv has no examples to score importance on")
        rng = np.random.RandomState(SAMPLE_SEED)
        chosen = np.sort(rng.choice(len(examples), min(count, len(examples)), replace=False))
        labels = task.processor.get_labels()
        label_map = None if labels is None else {label: i for i, label in enumerate(labels)}
        rows = [convert_example(examples[i], label_map, task.max_seq_length, task.tokenizer,
                                task.processor.truncation)
                for i in chosen]
        self.arrays = {key: np.array([row[key] for row in rows]) for key in rows[0]}
        self.size = len(rows)

    def batches(self):
        for start in range(0, self.size, BATCH_SIZE):
            yield {key: value[start:start + BATCH_SIZE] for key, value in self.arrays.items()}


class _ClassifierGraph:
    """The teacher (or a model of some of its layers) with its head and per-example loss."""

    def __init__(self, config, values, num_labels, is_regression, seq_length, masked=False):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.features = {
                "input_ids": tf1.placeholder(tf.int32, [None, seq_length]),
                "input_mask": tf1.placeholder(tf.int32, [None, seq_length]),
                "segment_ids": tf1.placeholder(tf.int32, [None, seq_length]),
                "label_ids": tf1.placeholder(tf.float32 if is_regression else tf.int32, [None])}
            hooks = methods.GraphHooks()
            self.masks = None
            if masked:
                self.masks = _Masks(config, tf.shape(self.features["input_ids"])[0])
                hooks = MaskingHooks(config, self.masks)
            graph = create_model(config, False, self.features, num_labels, is_regression, hooks)
            self.per_example_loss = graph.per_example_loss
            self.logits = graph.logits
            self.session = tf1.Session(graph=self.graph)
            load_values(self.session, tf1.global_variables(), values)

    def feed(self, batch):
        return {self.features[key]: batch[key] for key in self.features}

    def close(self):
        self.session.close()


def _gradient_scores(config, values, sample, num_labels, is_regression):
    """Unit and block scores and the mean loss, in one pass over the sample."""
    model = _ClassifierGraph(config, values, num_labels, is_regression,
                             sample.arrays["input_ids"].shape[1], masked=True)
    masks = model.masks
    layers = config.num_hidden_layers
    with model.graph.as_default():
        gradients = tf.gradients(tf.reduce_sum(model.per_example_loss),
                                 masks.heads + masks.neurons + [masks.hidden])
    heads = [np.zeros(config.heads(i)) for i in range(layers)]
    neurons = [np.zeros(config.intermediate(i)) for i in range(layers)]
    hidden = np.zeros(config.hidden_size)
    attention_blocks, ffn_blocks = np.zeros(layers), np.zeros(layers)
    total_loss = 0.0
    try:
        for batch in sample.batches():
            *grads, losses = model.session.run(gradients + [model.per_example_loss],
                                               model.feed(batch))
            total_loss += float(np.sum(losses))
            for index in range(layers):
                head_grad, neuron_grad = grads[index], grads[layers + index]
                heads[index] += np.abs(head_grad).sum(axis=0)
                neurons[index] += np.abs(neuron_grad).sum(axis=0)
                attention_blocks[index] += np.abs(head_grad.sum(axis=1)).sum()
                ffn_blocks[index] += np.abs(neuron_grad.sum(axis=1)).sum()
            hidden += np.abs(grads[-1]).sum(axis=0)
    finally:
        model.close()
    count = sample.size
    return ([h / count for h in heads], [n / count for n in neurons], hidden / count,
            attention_blocks / count, ffn_blocks / count, total_loss / count)


def _mean_loss(config, values, sample, num_labels, is_regression):
    model = _ClassifierGraph(config, values, num_labels, is_regression,
                             sample.arrays["input_ids"].shape[1])
    try:
        total = sum(float(np.sum(model.session.run(model.per_example_loss, model.feed(batch))))
                    for batch in sample.batches())
    finally:
        model.close()
    return total / sample.size


def compute_importance(config, values, task, examples, source):
    """Score every unit of the teacher (``config`` + numpy ``values``) on ``examples``
    training examples of ``task``."""
    sample = _Sample(task, examples)
    num_labels, is_regression = task.num_labels, task.is_regression
    log.info("importance: gradients of %d masked units on %d %s training examples",
             sum(config.heads(i) + config.intermediate(i)
                 for i in range(config.num_hidden_layers)) + config.hidden_size,
             sample.size, task.name)
    heads, neurons, hidden, attention_blocks, ffn_blocks, base_loss = _gradient_scores(
        config, values, sample, num_labels, is_regression)
    layers = np.zeros(config.num_hidden_layers)
    everything = list(range(config.num_hidden_layers))
    for index in everything:
        kept = everything[:index] + everything[index + 1:]
        if not kept:  # a one-layer teacher: leaving its layer out leaves no encoder
            layers[index] = np.inf
            continue
        loss = _mean_loss(config_with_layers(config, kept), layer_subset(values, kept), sample,
                          num_labels, is_regression)
        layers[index] = loss - base_loss
        log.info("importance: without layer %d the loss is %.4f (%+.4f)", index, loss,
                 layers[index])
    return Importance(heads=heads, neurons=neurons, hidden=hidden,
                      attention_blocks=attention_blocks, ffn_blocks=ffn_blocks, layers=layers,
                      base_loss=base_loss, source=dict(source, examples=sample.size))


# Shared by search and extract ---------------------------------------------------------------
@dataclasses.dataclass
class ImportanceSettings:
    """Where a command's importance comes from: a file written before, or the task's training
    examples it is computed on. Field names are the flags' (errors name the flag)."""
    task_name: str | None = None
    data_dir: str | None = None
    importance: str | None = None  # an importance file written before
    importance_examples: int = DEFAULT_EXAMPLES
    max_seq_length: int = DEFAULT_SEQ_LENGTH
    cased: bool = False

    def validate(self):
        """What needs no file, before anything is loaded."""
        cli.require(bool(self.task_name) == bool(self.data_dir),
                    "--task_name and --data_dir go together")
        cli.require_in_range(self.importance_examples, "importance_examples", 1)
        cli.require_in_range(self.max_seq_length, "max_seq_length", 3)
        if self.data_dir:
            cli.require_dir(self.data_dir, "data_dir", "the task's folder with train.tsv")


def add_flags(parser):
    """The flags of ImportanceSettings (search and extract both take them)."""
    parser.add_argument("--task_name", help="GLUE task (or your own data's name, or a task "
                                            ".json file) whose train examples score the "
                                            "teacher's units (and, for extract, whose dev "
                                            "examples are evaluated)")
    parser.add_argument("--data_dir", help="the task's folder (train.tsv, dev.tsv)")
    parser.add_argument("--importance",
                        help=f"an {IMPORTANCE_FILE} written before (default: computed from "
                             f"--task_name/--data_dir and saved in --output_dir)")
    parser.add_argument("--importance_examples", type=int,
                        default=cli.field_default(ImportanceSettings, "importance_examples"),
                        help="training examples the importance is computed on "
                             "(default %(default)s)")
    parser.add_argument("--max_seq_length", type=int,
                        default=cli.field_default(ImportanceSettings, "max_seq_length"),
                        help="tokens per example (default %(default)s)")
    parser.add_argument("--cased", action="store_true", help="the teacher is cased")
    user_task.add_arguments(parser)


def read_teacher(model_dir, flag="model_dir"):
    """(config, numpy weights, vocab file) of a teacher model folder."""
    teacher = model_folder.load(model_dir, flag)
    if teacher.bert_config.extra.get("kernel_ranks"):
        raise UsageError(f"--{flag}={model_dir}: a factorized (low-rank) model; use the dense "
                         "fine-tuned teacher")
    return (teacher.bert_config, checkpoint.read_checkpoint(teacher.checkpoint_prefix),
            teacher.vocab_file)


def task_of(settings: ImportanceSettings, vocab_file):
    """The GLUE task whose training examples score the teacher's units."""
    return Task(settings.task_name, settings.data_dir, vocab_file, not settings.cased,
                settings.max_seq_length, features_dir=None)


def importance_for(settings: ImportanceSettings, model_dir, config, values, vocab_file,
                   saved_path, named_by=IMPORTANCE_FLAG):
    """The scores a command uses and their file: ``--importance`` when given (``named_by``:
    how an error names it), else the ones saved at ``saved_path`` by an earlier run with the
    same inputs, else computed now (the file is then None: the caller saves them where its
    outputs go). With a task, the teacher (``--model_dir``) must have its head."""
    if settings.task_name:
        check_classifier_head({name: value.shape for name, value in values.items()},
                              settings.task_name, model_dir, "model_dir")
    if settings.importance:
        importance = Importance.load(settings.importance, named_by)
        importance.check_matches(config)
        return importance, os.path.abspath(settings.importance)
    cli.require(settings.task_name, "--importance or --task_name/--data_dir is required (the "
                                    "teacher's units are ranked on the task's training examples)")
    prefix = checkpoint.resolve_checkpoint(model_dir)
    source = {"model_dir": os.path.abspath(model_dir),
              "checkpoint": file_fingerprint(prefix + checkpoint.INDEX_SUFFIX),
              "task": settings.task_name, "data_dir": os.path.abspath(settings.data_dir),
              "train_file": file_fingerprint(os.path.join(
                  settings.data_dir, tasks.get_processor(settings.task_name).train_file)),
              "max_seq_length": settings.max_seq_length, "lower_case": not settings.cased,
              "requested_examples": settings.importance_examples}
    if os.path.isfile(saved_path):
        saved = Importance.load(saved_path, named_by="")
        if {key: saved.source.get(key) for key in source} == source:
            log.info("importance: reusing %s", saved_path)
            return saved, os.path.abspath(saved_path)
    importance = compute_importance(config, values, task_of(settings, vocab_file),
                                    settings.importance_examples, source)
    return importance, None
