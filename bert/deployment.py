"""What deploying a method's models needs, declared by the method itself.

``deploy/`` combines methods without importing any: a method package registers a
``Deployment`` instance under the entry-point group ``DEPLOYMENT_GROUP`` in pyproject.toml, and
``descriptions()`` finds them all (as ``bert.methods.from_config`` finds config methods). A
description says

* ``token_count(bert_config)``: the tokens each encoder layer keeps in a model of this method
  (PoWER-BERT's retention configuration), or that the count is chosen per input (TR-BERT: the
  exported graph's token count is data dependent and the config's FLOPs are an upper bound);
  ``deploy.flops`` counts FLOPs from it. Kernel ranks need no description: the core reads them.
* ``recipe_steps`` with ``settings_type``: the method's steps in a compound recipe
  (``deploy.compress``), each run by one of the method's own entry points, with flags built from
  typed settings when the step runs, in a folder the recipe numbers, leaving a model folder;
  ``result_fields`` names the settings that decide a step's result (``deploy.steps`` re-runs a
  step, and the steps after it, when one of them changed);
* ``int8_ranges(bert_config, values)``: for a model trained quantization-aware, the INT8
  scale and zero point its training learned for the input of each kernel (by the kernel's
  variable name), so the INT8 export uses them instead of finding its own;
* ``budget_stage`` and ``budget_variants(target, source_config)``: where the method sits in a
  budget search (a student first, then token reduction, then pruning: ``BUDGET_STAGES``) and
  the settings worth trying on a given model for a given target (a student's speed-up, a
  token-reduction strength), each run with the same ``recipe_steps``.
"""
import dataclasses
import functools
import os
from importlib import metadata
from typing import Callable, Mapping, Optional, Sequence, Tuple

from bert.errors import UsageError

DEPLOYMENT_GROUP = "bert_pruning.deployment"
# The order of a budget search: make the model smaller, then shorten its sequences, then prune
# what is left; INT8 comes last, in deploy/ (it is an export, not a method).
STUDENT, TOKENS, PRUNE = "student", "tokens", "prune"
BUDGET_STAGES = (STUDENT, TOKENS, PRUNE)


@dataclasses.dataclass(frozen=True)
class TokenCount:
    """The tokens a config's encoder layers see, as far as one method decides them."""
    kept_per_layer: Optional[Tuple[int, ...]] = None  # layer j keeps at most kept_per_layer[j]
    per_input: bool = False  # chosen per input: shapes inside the graph are data dependent
    note: str = ""  # with per_input: where the measured count is reported


@dataclasses.dataclass(frozen=True)
class RecipeSettings:
    """What every step of a recipe reads: one task, at one scale."""
    task_name: str
    data_dir: str
    max_seq_length: int
    train_batch_size: int
    max_train_examples: int
    latency_iterations: int


@dataclasses.dataclass(frozen=True)
class StepContext:
    """Where a step runs and what it starts from; given to it when it runs."""
    recipe: RecipeSettings
    settings: object  # the step owner's settings (a method's ``settings_type`` instance)
    folder: str  # this step's folder
    folders: Mapping[str, str]  # every step's folder, by step name
    source: str  # the model folder the step's method starts from
    teacher: str  # the fine-tuned model, for methods that distil


@dataclasses.dataclass(frozen=True)
class RecipeStep:
    """One step of a recipe: one project entry point, as a user would run it by hand."""
    name: str  # its folder's name; the recipe numbers it ("prune" in 3_prune)
    module: str  # run as ``python -m module``
    # Built when the step runs, since a step reads what the one before it left.
    flags: Callable[[StepContext], Sequence[str]]
    model: Optional[str] = None  # the model folder it leaves, relative to its folder ("": itself)
    finish: Optional[Callable[[StepContext], None]] = None  # in-process work after the command
    # The fields of its owner's settings that decide its result (what its step.json records,
    # so a change re-runs it); None: all of them.
    result_fields: Optional[Tuple[str, ...]] = None

    def model_path(self, folder):
        """The model folder this step leaves when it runs in ``folder``."""
        return os.path.join(folder, self.model) if self.model else folder


@dataclasses.dataclass(frozen=True)
class BudgetTarget:
    """What the user asked of a budget search."""
    speedup: float  # wanted throughput (batch_size > 1) or latency (batch 1) ratio vs dense TF
    batch_size: int  # the batch size the speed is measured at
    max_loss: float  # most dev-metric points (×100) a candidate may lose vs the fine-tuned model


@dataclasses.dataclass(frozen=True)
class Variant:
    """One setting of a method worth trying in a budget search."""
    label: str  # short, unique within the method, usable in a folder name: "x3", "alpha0.3"
    settings: object  # an instance of the method's ``settings_type``


@dataclasses.dataclass(frozen=True)
class Int8Range:
    """A learned UINT8 quantization of one activation: real = (q − zero_point)·scale."""
    scale: float
    zero_point: int


class Deployment:
    """A method's description for deployment; the defaults: no token selection, no steps."""
    name = ""
    settings_type = None  # dataclass of the settings its recipe steps read
    recipe_steps: Tuple[RecipeStep, ...] = ()
    budget_stage: Optional[str] = None  # one of BUDGET_STAGES; None: not in budget searches

    def token_count(self, bert_config) -> Optional[TokenCount]:
        """None when ``bert_config`` does not use this method's token selection."""
        return None

    def int8_ranges(self, bert_config, values) -> Optional[Mapping[str, Int8Range]]:
        """{kernel variable name: its input's learned range} of a model folder (``values``: its
        checkpoint); None when the model was not trained with this method's quantization."""
        return None

    def validate_settings(self, settings):
        """Refuse, in one line naming the flag (``bert.cli.require``), settings of
        ``settings_type`` that its steps cannot run with: checked before a recipe's first step,
        where the step's own tool would find them only after the steps before it ran."""

    def budget_variants(self, target: BudgetTarget, recipe: RecipeSettings,
                        source_config) -> Sequence[Variant]:
        """The settings worth trying on the model described by ``source_config`` (a
        ``modeling.BertConfig``) for ``target``; none: the method does not pay there."""
        return ()


@functools.cache
def descriptions() -> Tuple[Deployment, ...]:
    """Every registered description (loaded once: deploy asks for each model it counts)."""
    return tuple(entry.load() for entry in metadata.entry_points(group=DEPLOYMENT_GROUP))


def find(name) -> Deployment:
    """The registered description of method ``name``."""
    for description in descriptions():
        if description.name == name:
            return description
    raise UsageError(f"no deployment description of method '{name}' is registered under the "
                     f"entry-point group {DEPLOYMENT_GROUP}; reinstall the project "
                     "(pip install -e .)")
