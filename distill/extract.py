"""Extract a smaller BERT from a fine-tuned teacher, so the student starts from the teacher's
most useful weights (and already works before any distillation).

    python -m distill.extract --model_dir runs/compress_MRPC/1_fine_tune/model \\
        --output_dir students/MRPC_x3 --config search_MRPC/chosen_config.json \\
        --task_name MRPC --data_dir ../shared/glue/MRPC

Sizes come from --config (the ``chosen_config.json`` of distill.search) or from
--num_hidden_layers, --num_attention_heads, --hidden_size and --intermediate_size (a flag given
beside --config overrides it). What is kept, ranked by ``distill.importance``:

* the most important layers (their loss increase when left out), in the teacher's order;
* per kept layer the most important heads (their query/key/value columns and attention-output
  rows) and FFN neurons (intermediate columns, output rows); the head size stays the
  teacher's, so ``attention_head_size`` is written when hidden_size / heads differs from it;
* one global set of the most important hidden dimensions, applied alike to the word, position
  and token-type embeddings, every kernel's residual-stream rows and columns, every LayerNorm's
  gamma and beta, the pooler (rows and columns) and the classifier's ``output_weights`` columns.

Exactness: with nothing removed the weights are bit-identical, so the logits are the teacher's.
Removing a head or neuron whose output rows are zero changes nothing. Removing hidden dimensions
is never exact: LayerNorm normalises over the kept dimensions only, so its mean and variance
change even when the removed dimensions carry little; distillation repairs that.

The output is a plain model folder (bert_config.json with the student's sizes and, under
``extracted_from``, the teacher's, which marks it as a student; vocab, checkpoint in Google's
names, provenance.json naming what was kept, extraction.json with every kept index),
plus importance.npz when it was computed here. With --task_name/--data_dir its dev metric is
evaluated and written to eval_results.txt.
"""
import dataclasses
import json
import logging
import os
import re
import sys
import tempfile
import time

import numpy as np

from bert import cli, files, model_folder, modeling, tasks
from bert.classifier import (EVAL_RESULTS_FILE, Classifier, ClassifierSettings,
                             format_eval_results)
from bert.errors import InputError, UsageError
from distill import importance as unit_importance

log = logging.getLogger("distill")

PROGRAM = "distill.extract"
EXTRACTION_FILE = "extraction.json"
CHOSEN_CONFIG_KEY = "bert_config"  # where chosen_config.json keeps the student's config
CHOSEN_IMPORTANCE_KEY = "importance"  # and the importance file the search ranked with
DEFAULT_EVAL_BATCH_SIZE = 32
SIZE_FLAGS = ("num_hidden_layers", "num_attention_heads", "hidden_size", "intermediate_size")
# The config entry that marks a student: the sizes of the teacher it was cut from (FLOP and a
# budget search read it: a student's width is already cut).
EXTRACTED_FROM_KEY = "extracted_from"

# Which kept units each axis of a weight follows: the residual stream (HIDDEN), the attention
# width of the layer's kept heads (HEADS), its kept FFN neurons (NEURONS), or all of it (None).
HIDDEN, HEADS, NEURONS = "hidden", "heads", "neurons"
MODEL_AXES = {
    "bert/embeddings/word_embeddings": (None, HIDDEN),
    "bert/embeddings/token_type_embeddings": (None, HIDDEN),
    "bert/embeddings/position_embeddings": (None, HIDDEN),
    "bert/embeddings/LayerNorm/gamma": (HIDDEN,),
    "bert/embeddings/LayerNorm/beta": (HIDDEN,),
    "bert/pooler/dense/kernel": (HIDDEN, HIDDEN),
    "bert/pooler/dense/bias": (HIDDEN,),
    "output_weights": (None, HIDDEN),
    "output_bias": (None,),
}
LAYER_AXES = {
    "attention/self/query/kernel": (HIDDEN, HEADS),
    "attention/self/query/bias": (HEADS,),
    "attention/self/key/kernel": (HIDDEN, HEADS),
    "attention/self/key/bias": (HEADS,),
    "attention/self/value/kernel": (HIDDEN, HEADS),
    "attention/self/value/bias": (HEADS,),
    "attention/output/dense/kernel": (HEADS, HIDDEN),
    "attention/output/dense/bias": (HIDDEN,),
    "attention/output/LayerNorm/gamma": (HIDDEN,),
    "attention/output/LayerNorm/beta": (HIDDEN,),
    "intermediate/dense/kernel": (HIDDEN, NEURONS),
    "intermediate/dense/bias": (NEURONS,),
    "output/dense/kernel": (NEURONS, HIDDEN),
    "output/dense/bias": (HIDDEN,),
    "output/LayerNorm/gamma": (HIDDEN,),
    "output/LayerNorm/beta": (HIDDEN,),
}
LAYER_NAME = re.compile(r"^bert/encoder/layer_(\d+)/(.+)$")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """A uniform student architecture (every layer alike, as in Bort)."""
    num_hidden_layers: int
    num_attention_heads: int
    hidden_size: int
    intermediate_size: int


@dataclasses.dataclass
class Selection:
    """The teacher's units a student keeps, as indices into the teacher's weights."""
    layers: list  # teacher layer of each student layer
    heads: list  # per student layer: the teacher heads kept
    neurons: list  # per student layer: the teacher FFN neurons kept
    hidden: np.ndarray  # the hidden dimensions kept (everywhere)

    def to_dict(self):
        return {"layers": [int(i) for i in self.layers],
                "heads": [[int(i) for i in h] for h in self.heads],
                "neurons": [[int(i) for i in n] for n in self.neurons],
                "hidden": [int(i) for i in self.hidden]}


def check_sizes(teacher, sizes):
    """Each size must be positive and at most what every teacher layer has; the kept layers
    must share one head size (the student's is uniform)."""
    layers = range(teacher.num_hidden_layers)
    limits = {"num_hidden_layers": teacher.num_hidden_layers,
              "num_attention_heads": min(teacher.heads(i) for i in layers),
              "hidden_size": teacher.hidden_size,
              "intermediate_size": min(teacher.intermediate(i) for i in layers)}
    for flag, limit in limits.items():
        cli.require_in_range(getattr(sizes, flag), flag, 1, limit)
    if len({teacher.head_size(i) for i in layers}) != 1:
        raise UsageError("the teacher's layers have different head sizes; a uniform student "
                         "cannot keep them all")


def select(importance, teacher, sizes):
    """The most important units at the student's sizes."""
    layers = importance.top_layers(sizes.num_hidden_layers)
    return Selection(
        layers=list(layers),
        heads=[unit_importance.top_indices(importance.heads[i], sizes.num_attention_heads)
               for i in layers],
        neurons=[unit_importance.top_indices(importance.neurons[i], sizes.intermediate_size)
                 for i in layers],
        hidden=unit_importance.top_indices(importance.hidden, sizes.hidden_size))


def student_config(teacher, sizes):
    """The teacher's config at the student's sizes. Per-layer overrides and method settings
    (kernel ranks, a retention configuration) describe the teacher's layers, not these."""
    head_size = teacher.head_size(0)
    extra = ({} if sizes.hidden_size == sizes.num_attention_heads * head_size
             else {"attention_head_size": head_size})
    return modeling.BertConfig(
        vocab_size=teacher.vocab_size, hidden_size=sizes.hidden_size,
        num_hidden_layers=sizes.num_hidden_layers,
        num_attention_heads=sizes.num_attention_heads,
        intermediate_size=sizes.intermediate_size, hidden_act=teacher.hidden_act,
        hidden_dropout_prob=teacher.hidden_dropout_prob,
        attention_probs_dropout_prob=teacher.attention_probs_dropout_prob,
        max_position_embeddings=teacher.max_position_embeddings,
        type_vocab_size=teacher.type_vocab_size, initializer_range=teacher.initializer_range,
        **extra)


def _head_columns(heads, head_size):
    return np.concatenate([np.arange(h * head_size, (h + 1) * head_size) for h in heads])


def _take(value, axes, kept):
    """``value`` restricted along each axis to the kept indices of that axis's units."""
    index = [np.arange(size) if axis is None else kept[axis]
             for size, axis in zip(value.shape, axes)]
    return value[np.ix_(*index)]


def extract_values(values, teacher, selection):
    """Student weights (Google's names) from the teacher's numpy weights."""
    student = {}
    for name, value in values.items():
        if name in MODEL_AXES:
            student[name] = _take(value, MODEL_AXES[name], {HIDDEN: selection.hidden})
            continue
        match = LAYER_NAME.match(name)
        if not match or match.group(2) not in LAYER_AXES:
            raise InputError(f"teacher weight {name} is not part of a dense BERT classifier; "
                             "extraction knows only those")
    for new_index, old_index in enumerate(selection.layers):
        kept = {HIDDEN: selection.hidden, NEURONS: selection.neurons[new_index],
                HEADS: _head_columns(selection.heads[new_index], teacher.head_size(old_index))}
        for suffix, axes in LAYER_AXES.items():
            source = f"bert/encoder/layer_{old_index}/{suffix}"
            if source not in values:
                raise InputError(f"the teacher checkpoint lacks {source}")
            student[f"bert/encoder/layer_{new_index}/{suffix}"] = _take(values[source], axes,
                                                                        kept)
    return student


def extract(teacher, values, importance, sizes):
    """(student config, student weights, selection)."""
    check_sizes(teacher, sizes)
    importance.check_matches(teacher)
    selection = select(importance, teacher, sizes)
    return student_config(teacher, sizes), extract_values(values, teacher, selection), selection


# Command line -----------------------------------------------------------------------------------
def build_parser():
    parser = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("--model_dir", required=True, help="the fine-tuned teacher's folder")
    parser.add_argument("--output_dir", required=True, help="the student model folder to write")
    parser.add_argument("--config", help="chosen_config.json of distill.search (the sizes, and "
                                         "the importance file it ranked with)")
    for flag in SIZE_FLAGS:
        parser.add_argument(f"--{flag}", type=int, help="the student's size (default: "
                                                        "--config's)")
    parser.add_argument("--eval_batch_size", type=int, default=DEFAULT_EVAL_BATCH_SIZE)
    unit_importance.add_flags(parser)
    return parser


def read_chosen_config(path):
    """(the student's sizes as a dict, the importance file it names or None)."""
    cli.require_file(path, "config", "chosen_config.json of distill.search")
    try:
        with open(path, encoding="utf-8") as handle:
            chosen = json.load(handle)
        config = chosen[CHOSEN_CONFIG_KEY]
        return {flag: config[flag] for flag in SIZE_FLAGS}, chosen.get(CHOSEN_IMPORTANCE_KEY)
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"--config={path}: not a chosen_config.json of distill.search "
                         f"({type(error).__name__}: {error})") from None


def resolve_sizes(args):
    """The sizes from --config and the size flags (flags win), every one required, and the
    importance file --config names (None without one)."""
    chosen, chosen_importance = read_chosen_config(args.config) if args.config else ({}, None)
    values = {}
    for flag in SIZE_FLAGS:
        value = getattr(args, flag) if getattr(args, flag) is not None else chosen.get(flag)
        cli.require(value is not None, f"--{flag} is required (or --config)")
        values[flag] = value
    return Sizes(**values), chosen_importance


def evaluate(output_dir, importance_settings, eval_batch_size):
    """Dev metrics of the model folder (features and Estimator files go to a scratch folder)."""
    config_file, vocab_file = model_folder.config_and_vocab(output_dir, "output_dir")
    with tempfile.TemporaryDirectory(prefix="distill_extract_eval_") as scratch:
        settings = ClassifierSettings(
            task_name=importance_settings.task_name, data_dir=importance_settings.data_dir,
            vocab_file=vocab_file, bert_config_file=config_file,
            output_dir=scratch, init_checkpoint=output_dir,
            do_lower_case=not importance_settings.cased,
            max_seq_length=importance_settings.max_seq_length, do_eval=True,
            eval_batch_size=eval_batch_size)
        classifier = Classifier(settings)
        start = time.time()
        result = classifier.evaluate(write=False)
        metric = classifier.task.processor.primary_metric
    files.write_text_atomic(os.path.join(output_dir, EVAL_RESULTS_FILE),
                            format_eval_results(result, eval_seconds=time.time() - start))
    return metric, result[metric]


def require_apart(output_dir, model_dir):
    """The student is written as a whole folder that replaces --output_dir: it must neither be
    the teacher's folder, nor hold it, nor lie inside it."""
    output, model = os.path.realpath(output_dir), os.path.realpath(model_dir)
    cli.require(output != model, f"--output_dir={output_dir} is the model folder itself; "
                                 "choose another")
    cli.require(os.path.commonpath([output, model]) not in (output, model),
                f"--output_dir={output_dir} and --model_dir={model_dir}: one folder is inside "
                "the other; choose an output folder outside the model folder")


def run(args):
    cli.resolve_task_arguments(args)
    cli.require_output_dir(args.output_dir, "output_dir")
    require_apart(args.output_dir, args.model_dir)
    cli.require_in_range(args.eval_batch_size, "eval_batch_size", 1)
    importance_settings = cli.settings_from_namespace(unit_importance.ImportanceSettings, args)
    importance_settings.validate()
    sizes, chosen_importance = resolve_sizes(args)
    named_by = unit_importance.IMPORTANCE_FLAG
    # The importance file --config names stands in for a missing --importance while it exists.
    if not importance_settings.importance and chosen_importance \
            and os.path.isfile(chosen_importance):
        importance_settings.importance = chosen_importance
        named_by = f"--config={args.config} names "
    teacher, values, vocab = unit_importance.read_teacher(args.model_dir)
    check_sizes(teacher, sizes)
    if importance_settings.task_name:  # dev is evaluated after the write: a bad row fails now
        unit_importance.task_of(importance_settings, vocab).examples("dev")
    saved_path = os.path.join(args.output_dir, unit_importance.IMPORTANCE_FILE)
    importance, importance_path = unit_importance.importance_for(
        importance_settings, args.model_dir, teacher, values, vocab, saved_path, named_by)
    # Scores computed here, or found here by an earlier run, go into the new folder.
    own = importance_path in (None, os.path.abspath(saved_path))
    if not own and importance.source.get("model_dir") != os.path.abspath(args.model_dir):
        log.warning("the importance in %s was computed for %s, not for --model_dir=%s",
                    importance_path, importance.source.get("model_dir"), args.model_dir)
    config, student, selection = extract(teacher, values, importance, sizes)
    config.extra[EXTRACTED_FROM_KEY] = {flag: getattr(teacher, flag) for flag in SIZE_FLAGS}
    kept = selection.to_dict()
    flags = dict(dataclasses.asdict(sizes),
                 importance=os.path.abspath(saved_path) if own else importance_path,
                 kept_layers=kept["layers"], kept_heads=kept["heads"])
    model_folder.write_model_folder(
        args.output_dir, config, vocab, student, step=PROGRAM,
        source=os.path.abspath(args.model_dir), flags=flags,
        extra_files={EXTRACTION_FILE: json.dumps(kept) + "\n"})
    if own:
        importance.save(saved_path)
    params = modeling.count_parameters(value.shape for value in student.values())
    print(f"extracted {args.output_dir}: {sizes.num_hidden_layers} layers "
          f"{kept['layers']}, {sizes.num_attention_heads} heads, hidden {sizes.hidden_size}, "
          f"intermediate {sizes.intermediate_size}, {params:,} parameters")
    if importance_settings.task_name:
        metric, value = evaluate(args.output_dir, importance_settings, args.eval_batch_size)
        print(f"dev {metric} right after extraction: {value:.4f}")


def main(argv=None):
    return cli.argparse_main(PROGRAM, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
