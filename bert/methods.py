"""How a compression method plugs into the one BERT and the one classifier, and how methods compose.

A method is an object with ``build(bert_config, is_training) -> GraphHooks``. ``build`` is
called once per graph (training, evaluation and prediction graphs are separate), and everything
the method needs to remember about that graph lives on the returned ``GraphHooks``, never on
the method itself.

While the encoder is built, a hooks object may change every kernel (it is a
``modeling.KernelTransform``: its input, its weight matrices, the rank between low-rank factors)
and may supply a ``token_selector`` (PoWER-BERT, TR-BERT). Kernel transforms of several methods
chain in ``TRANSFORM_STAGES`` order (FLOP's gate, then a weight mask, then fake-quantization),
whatever order the methods were listed in. At most one method may select tokens.

Once BERT and the head are built, the classifier calls each method's phases, every method's
phase before the next phase starts (``PHASES``):

1. ``create_variables(graph)`` — the method's own variables and the tensors its later phases
   read (FLOP's multipliers and expected sparsity);
2. ``extra_loss(graph)`` — terms added to the task loss (scaled by ``task_loss_weight``);
3. ``param_groups(graph, schedule)`` — optimizer groups for the method's own variables (every
   other trainable variable trains in the classifier's "model" group), with the run's schedule;
4. ``after_update_ops(graph)`` — ops that run once after each optimizer update (a mask or
   range update, a moving average), created inside the update's control dependencies;
5. ``session_hooks(graph)`` — ``SessionRunHook``s of the training run;
6. ``eval_metric_ops(graph)`` — evaluation metrics.

A method that distils asks the graph for the teacher (``bert.teacher.shared_teacher``): it is
built once per graph however many methods use it, with the logit, hidden-state and attention
losses in ``bert.teacher``.

A model folder's config says what inference needs. Kernel ranks are read by the core itself
(``modeling.config_dense_factory``); any other method registers a function
``(bert_config) -> Method or None`` under the entry-point group ``CONFIG_METHODS_GROUP`` in
pyproject.toml, so the core finds it without importing the method.
"""
import dataclasses
from importlib import metadata
from typing import Callable, List, Optional

import tensorflow as tf

from bert import modeling
from bert.errors import UsageError

CONFIG_METHODS_GROUP = "bert_pruning.config_methods"
# Where a method's kernel transform sits in the chain: structure of the kernel first, the
# quantizer last (it must see the weights that will ship).
GATE, MASK, QUANTIZE = "gate", "mask", "quantize"
TRANSFORM_STAGES = (GATE, MASK, QUANTIZE)
PHASES = ("create_variables", "extra_loss", "param_groups", "after_update_ops", "session_hooks",
          "eval_metric_ops")
_TRANSFORM_METHODS = ("transform_inputs", "transform_kernel", "transform_rank")


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
    # The graph's teachers by checkpoint, built on the first request (bert.teacher).
    teachers: dict = dataclasses.field(default_factory=dict)
    # A task head other than Google's classifier (SQuAD's span head): how a teacher's BertModel
    # gets the same logits, and the checkpoint variable that says a teacher has that head.
    teacher_head: Optional[Callable] = None
    head_weights: Optional[str] = None


@dataclasses.dataclass
class Schedule:
    """The run's optimizer schedule, for methods whose groups follow the model's."""
    num_train_steps: int
    num_warmup_steps: int
    learning_rate: float = 0.0  # the "model" group's peak rate


class GraphHooks(modeling.KernelTransform):
    """One method's contribution to one graph; the defaults change nothing."""
    token_selector = None
    transform_stage = MASK  # where this method's kernel transform sits (TRANSFORM_STAGES)
    task_loss_weight = 1.0  # the weight of the classifier's task loss (distillation lowers it)
    bert_config = None  # the config whose kernels the transform sees (set by kernel methods)

    def transforms_kernels(self):
        """True when this hooks object overrides any kernel transform."""
        return any(getattr(type(self), name) is not getattr(modeling.KernelTransform, name)
                   for name in _TRANSFORM_METHODS)

    @property
    def dense_factory(self):
        """This graph's dense factory: the config's kernels through this method's transform;
        None (the config's own factory) when it transforms nothing."""
        if not self.transforms_kernels():
            return None
        return modeling.config_dense_factory(self.bert_config, [self])

    def create_variables(self, graph: ClassifierGraph):
        """Phase 1: the method's variables and the tensors its later phases read."""

    def extra_loss(self, graph: ClassifierGraph):
        """Phase 2: added to the (weighted) task loss."""
        return tf.constant(0.0)

    def param_groups(self, graph: ClassifierGraph, schedule: Schedule):
        """Phase 3: ([optimization.ParamGroup], {group name: loss that group follows})."""
        return [], {}

    def after_update_ops(self, graph: ClassifierGraph):
        """Phase 4: ops to run once after each optimizer update; created inside its control
        dependencies, so variables read here are the updated ones."""
        return []

    def session_hooks(self, graph: ClassifierGraph):
        """Phase 5: SessionRunHooks of the training run."""
        return []

    def eval_metric_ops(self, graph: ClassifierGraph):
        """Phase 6: evaluation metrics."""
        return {}


class Method:
    """Base of every method: plain fine-tuning changes nothing."""
    name = "fine_tune"
    # Regexes of graph variables that may be absent from the checkpoint a run starts from.
    allow_missing = ()
    # True for a method whose graph simulates INT8 (fake quantization): a float export leaves
    # it out, and the INT8 export takes its learned ranges (``bert.deployment``) instead.
    simulates_int8 = False

    def build(self, bert_config, is_training) -> GraphHooks:
        return GraphHooks()

    def hparams(self):
        """Hyper-parameters recorded once as a text summary."""
        return {}


class ComposedHooks(GraphHooks):
    """The hooks of several methods acting as one: each phase runs every method's part."""

    def __init__(self, parts: List[GraphHooks], names: List[str], bert_config):
        self.parts = parts
        self.bert_config = bert_config
        self.token_selector = _at_most_one(parts, names, "token_selector", "select tokens")
        self.kernel_transforms = sorted(
            (part for part in parts if part.transforms_kernels()),
            key=lambda part: _stage_index(part, names[parts.index(part)]))
        self.task_loss_weight = 1.0
        for part in parts:
            self.task_loss_weight *= part.task_loss_weight

    @property
    def dense_factory(self):
        if not self.kernel_transforms:
            return None
        return modeling.config_dense_factory(self.bert_config, self.kernel_transforms)

    def create_variables(self, graph):
        for part in self.parts:
            part.create_variables(graph)

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

    def after_update_ops(self, graph):
        return [op for part in self.parts for op in part.after_update_ops(graph)]

    def session_hooks(self, graph):
        return [hook for part in self.parts for hook in part.session_hooks(graph)]

    def eval_metric_ops(self, graph):
        ops = {}
        for part in self.parts:
            ops.update(part.eval_metric_ops(graph))
        return ops


def _stage_index(part, name):
    if part.transform_stage not in TRANSFORM_STAGES:
        raise UsageError(f"method {name}: transform_stage {part.transform_stage!r} is not one "
                         f"of {TRANSFORM_STAGES}")
    return TRANSFORM_STAGES.index(part.transform_stage)


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
                         [method.name for method in methods], bert_config)


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
