"""How a compression method plugs into the one BERT and the one classifier, and how methods compose.

A method is an object with ``build(bert_config, is_training) -> GraphHooks``. ``build`` is
called once per graph (training, evaluation and prediction graphs are separate), and everything
the method needs to remember about that graph lives on the returned ``GraphHooks``, never on
the method itself. The hooks may supply:

* ``dense_factory`` — builds every kernel of the encoder (FLOP's gated factors);
* ``token_selector`` — shortens the sequence after each attention block (PoWER-BERT);
* ``extra_loss(graph)`` — terms added to the task loss, and their summaries;
* ``param_groups(graph, schedule)`` — optimizer groups for the method's own variables
  (every other trainable variable trains in the classifier's "model" group);
* ``eval_metric_ops(graph)`` — extra evaluation metrics.

Several methods compose in one run: losses add up, groups and metrics are merged, and at most
one method may replace the dense layers and at most one may select tokens.

A model folder's config says what inference needs. Kernel ranks are read by the core itself
(``modeling.config_dense_factory``); any other method registers a function
``(bert_config) -> Method or None`` under the entry-point group ``CONFIG_METHODS_GROUP`` in
pyproject.toml, so the core finds it without importing the method.
"""
import dataclasses
from importlib import metadata
from typing import Callable, List, Optional

import tensorflow as tf

from bert.errors import UsageError

CONFIG_METHODS_GROUP = "bert_pruning.config_methods"


@dataclasses.dataclass
class ClassifierGraph:
    """What a method's hooks may read once BERT and the classifier head are built."""
    model: object  # modeling.BertModel
    logits: tf.Tensor
    predictions: tf.Tensor
    per_example_loss: Optional[tf.Tensor]
    features: dict
    is_training: bool
    is_regression: bool


@dataclasses.dataclass
class Schedule:
    """The run's length, for methods whose groups follow the model's schedule."""
    num_train_steps: int
    num_warmup_steps: int


class GraphHooks:
    """One method's contribution to one graph; the defaults change nothing."""
    dense_factory: Optional[Callable] = None
    token_selector: Optional[Callable] = None

    def extra_loss(self, graph: ClassifierGraph):
        return tf.constant(0.0)

    def param_groups(self, graph: ClassifierGraph, schedule: Schedule):
        """([optimization.ParamGroup], {group name: loss that group follows})."""
        return [], {}

    def eval_metric_ops(self, graph: ClassifierGraph):
        return {}


class Method:
    """Base of every method: plain fine-tuning changes nothing."""
    name = "fine_tune"
    # Regexes of graph variables that may be absent from the checkpoint a run starts from.
    allow_missing = ()

    def build(self, bert_config, is_training) -> GraphHooks:
        return GraphHooks()

    def hparams(self):
        """Hyper-parameters recorded once as a text summary."""
        return {}


class ComposedHooks(GraphHooks):
    """The hooks of several methods acting as one."""

    def __init__(self, parts: List[GraphHooks], names: List[str]):
        self.parts = parts
        self.dense_factory = _at_most_one(parts, names, "dense_factory",
                                          "replace the dense layers")
        self.token_selector = _at_most_one(parts, names, "token_selector", "select tokens")

    def extra_loss(self, graph):
        return tf.add_n([tf.convert_to_tensor(part.extra_loss(graph), tf.float32)
                         for part in self.parts] or [tf.constant(0.0)])

    def param_groups(self, graph, schedule):
        groups, losses = [], {}
        for part in self.parts:
            part_groups, part_losses = part.param_groups(graph, schedule)
            groups += part_groups
            losses.update(part_losses)
        names = [group.name for group in groups]
        if len(set(names)) != len(names):
            raise UsageError(f"methods define the same optimizer group twice: {names}")
        return groups, losses

    def eval_metric_ops(self, graph):
        ops = {}
        for part in self.parts:
            ops.update(part.eval_metric_ops(graph))
        return ops


def _at_most_one(parts, names, attribute, what):
    owners = [(name, getattr(part, attribute)) for name, part in zip(names, parts)
              if getattr(part, attribute) is not None]
    if len(owners) > 1:
        raise UsageError(f"methods {', '.join(name for name, _ in owners)} all {what}; "
                         "a run can have only one of them")
    return owners[0][1] if owners else None


def build_all(methods, bert_config, is_training) -> ComposedHooks:
    """Every method's hooks for the graph being built now."""
    return ComposedHooks([method.build(bert_config, is_training) for method in methods],
                         [method.name for method in methods])


def allow_missing(methods):
    return tuple(pattern for method in methods for pattern in method.allow_missing)


def from_config(bert_config, exclude=()):
    """The methods a model config asks for at inference (found through entry points), except
    those whose name is already among ``exclude`` (the run brings its own)."""
    taken = {method.name for method in exclude}
    found = []
    for entry in metadata.entry_points(group=CONFIG_METHODS_GROUP):
        method = entry.load()(bert_config)
        if method is not None and method.name not in taken:
            found.append(method)
    return found
