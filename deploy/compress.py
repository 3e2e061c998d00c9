"""The compound model for one GLUE task: budget mode, or the fixed chain.

    python -m deploy.compress --task_name=MRPC --data_dir=glue/MRPC \\
        --model_dir=models/all-MiniLM-L6-v2 --output_dir=budget_outputs/MRPC \\
        --max_loss=1.0 --speedup=10
    python -m deploy.compress --task_name=MRPC --data_dir=glue/MRPC \\
        --model_dir=models/all-MiniLM-L6-v2 --output_dir=compress_outputs/MRPC

With --max_loss, --speedup, --latency_ms or --finetuned_dir (or --recipe budget) it searches
every method for the fastest model within the loss bound (``deploy.budget``). Without them
(or with --recipe flop_power) it runs the fixed chain, structured pruning × token elimination
× INT8:

Steps, each in its own folder of --output_dir and each run by the project's own entry point
(so every step is also what a user could run by hand):

  1_fine_tune/    bert.run_classifier on the pretrained model; model/ is its model folder
  2_factorize/    flop.factorize of the fine-tuned model (reduced SVD, function-preserving)
  3_prune/        flop.run_classifier: HardConcrete gates + Lagrangian to --target_sparsity,
                  distilled from the fine-tuned model
  4_compact/      flop.remove_mask: the FLOP-compact model (its config lists the kept ranks)
  5_power/        power_bert.main on the compact model: fine-tune, retention search, Extract
                  re-train; 3_retrain/model is the compound model (kernel ranks + retention)
  6_export/       deploy.export of the compound model: SavedModel, ONNX fp32 and INT8

Between fine-tuning and export, each method of RECIPE_METHODS brings its own steps (its
deployment description, ``bert.deployment``): this module imports no method.

Each step is a ``deploy.steps`` step: its ``step.json`` records the settings that decide its
result (the fields of its settings it reads, the recipe's, its source, and the digest of the step
before it). A re-run skips a step done with the same settings, re-runs one whose settings changed
(and so every step after it), and resumes a killed one through its own tool (checkpoints every
--save_checkpoints_steps, --resume, PoWER's step folders). --latency_iterations only sets how
long timings run: changing it re-runs nothing (time the models again with deploy.benchmark).
--stop_after ends the run after a step.

Every flag of every step the chosen recipe runs is checked before anything is written, and a
run holds --output_dir: a second run on it refuses in one line while the first works.
"""
import dataclasses
import functools
import os
import sys
from typing import Optional

from bert import checkpoint, cli, deployment, model_folder, tasks, tokenization, user_task
from bert.classifier import MIN_SEQ_LENGTH
from bert.deployment import RecipeSettings, RecipeStep, StepContext
from bert.errors import UsageError
from deploy import budget, steps

PROGRAM = "deploy.compress"
STEP_DONE_FILE = steps.STEP_DONE_FILE  # what a finished step wrote, as users (and tests) read it
MODEL_DIR = "model"
TRAINING_DIR = "training"
# The methods between fine-tuning and export, in this order; each brings its own steps.
RECIPE_METHODS = ("flop", "power_bert")
RECIPES = (BUDGET, FLOP_POWER) = ("budget", "flop_power")
BUDGET_FLAGS = ("max_loss", "speedup", "latency_ms", "finetuned_dir")
DEFAULT_MAX_LOSS = budget.DEFAULT_MAX_LOSS
DEFAULT_SPEEDUP = budget.DEFAULT_SPEEDUP
DEFAULT_BUDGET_BATCH = budget.DEFAULT_BATCH_SIZE
# Defaults: the best accuracy/speed trade-off measured on all-MiniLM-L6-v2 (see README).
DEFAULTS = dict(max_seq_length=128, train_batch_size=32, learning_rate=5e-5, epochs=3.0,
                target_sparsity=0.6, prune_epochs=3.0, prune_learning_rate=2e-5,
                target_sparsity_warmup=200, lambda_learning_rate=0.01, alpha_learning_rate=0.05,
                power_epochs=2, latency_iterations=5)


@dataclasses.dataclass(frozen=True)
class CompressSettings:
    """Every setting of the recipe, typed; each method reads the fields of its settings_type."""
    task_name: str
    data_dir: str
    model_dir: str  # the pretrained model folder
    output_dir: str
    max_seq_length: int
    train_batch_size: int
    learning_rate: float
    epochs: float
    target_sparsity: float
    prune_epochs: float
    prune_learning_rate: float
    target_sparsity_warmup: int
    lambda_learning_rate: float
    alpha_learning_rate: float
    power_epochs: int
    latency_iterations: int
    max_train_examples: int
    save_checkpoints_steps: int
    lr_soft_extract: Optional[float]
    power_lambda: Optional[float]
    stop_after: Optional[str]

    @classmethod
    def from_namespace(cls, args):
        """The command line's values (flags of the fields' names)."""
        return cls(**{field.name: getattr(args, field.name) for field in dataclasses.fields(cls)})

    @property
    def recipe(self):
        return RecipeSettings(self.task_name, self.data_dir, self.max_seq_length,
                              self.train_batch_size, self.max_train_examples,
                              self.latency_iterations)

    def for_method(self, description):
        """A method's own typed settings: the fields of its settings_type, valued from here."""
        kind = description.settings_type
        return None if kind is None else kind(**{field.name: getattr(self, field.name)
                                                 for field in dataclasses.fields(kind)})


def fine_tune_flags(context):
    settings, model_dir = context.settings, context.source
    config_file, vocab_file = model_folder.config_and_vocab(model_dir, "model_dir")
    return [f"--task_name={settings.task_name}", "--do_train", "--do_eval",
            f"--data_dir={settings.data_dir}", f"--vocab_file={vocab_file}",
            f"--bert_config_file={config_file}",
            f"--init_checkpoint={model_dir}",
            f"--output_dir={os.path.join(context.folder, TRAINING_DIR)}",
            f"--max_seq_length={settings.max_seq_length}",
            f"--train_batch_size={settings.train_batch_size}",
            f"--learning_rate={settings.learning_rate}", f"--num_train_epochs={settings.epochs}",
            f"--max_train_examples={settings.max_train_examples}",
            f"--save_checkpoints_steps={settings.save_checkpoints_steps}"]


def write_fine_tuned_model(context):
    """bert.run_classifier leaves a training folder; the next steps read a model folder."""
    model = model_folder.load(context.source)
    training = os.path.join(context.folder, TRAINING_DIR)
    model_folder.write_model_folder(os.path.join(context.folder, MODEL_DIR), model.bert_config,
                                    model.vocab_file, checkpoint.read_checkpoint(training),
                                    step="fine_tune", source=training)


def export_flags(context):
    settings = context.settings
    return [f"--model_dir={context.source}", f"--output_dir={context.folder}",
            f"--max_seq_length={settings.max_seq_length}", f"--task_name={settings.task_name}",
            f"--data_dir={settings.data_dir}"]


# The recipe's own steps read the recipe's settings, fine-tuning also these of CompressSettings.
FINE_TUNE = RecipeStep("fine_tune", "bert.run_classifier", fine_tune_flags, model=MODEL_DIR,
                       finish=write_fine_tuned_model, result_fields=("learning_rate", "epochs"))
EXPORT = RecipeStep("export", "deploy.export", export_flags, result_fields=())


@dataclasses.dataclass(frozen=True)
class PlannedStep:
    """A step in its place in the recipe."""
    folder: str  # its numbered folder in --output_dir, e.g. 3_prune
    step: RecipeStep
    method: Optional[str]  # whose step it is; None: the recipe's own
    source: Optional[str]  # the model it starts from, in --output_dir; None: --model_dir


def layout(methods=RECIPE_METHODS):
    """Fine-tuning, each method's steps, export: numbered in order, each method starting from
    the model the one before it left."""
    groups = ([(None, (FINE_TUNE,))]
              + [(name, deployment.find(name).recipe_steps) for name in methods]
              + [(None, (EXPORT,))])
    planned, source = [], None
    for method, owned in groups:
        for step in owned:
            planned.append(PlannedStep(f"{len(planned) + 1}_{step.name}", step, method, source))
        source = owned[-1].model_path(planned[-1].folder)
    names = [entry.step.name for entry in planned]
    if len(set(names)) != len(names):
        raise UsageError(f"the recipe's steps must have distinct names: {names}")
    return tuple(planned)


LAYOUT = layout()
STEPS = tuple(entry.folder for entry in LAYOUT)
STEP_FOLDERS = {entry.step.name: entry.folder for entry in LAYOUT}
# The folders of a run as users (and the tests) read them.
FINE_TUNE_DIR, FACTORIZED_DIR, PRUNE_DIR, COMPACT_DIR, POWER_DIR, EXPORT_DIR = (
    STEP_FOLDERS[name] for name in ("fine_tune", "factorize", "prune", "compact", "power",
                                    "export"))
POWER_MODEL = LAYOUT[-1].source  # the compound model: what the last method left, exported


@dataclasses.dataclass
class Plan:
    """The run's folders and settings."""
    settings: CompressSettings

    def folder(self, step):
        return os.path.join(self.settings.output_dir, step)

    @property
    def fine_tuned_model(self):
        return FINE_TUNE.model_path(self.folder(FINE_TUNE_DIR))

    @property
    def compound_model(self):
        return self.folder(POWER_MODEL)

    def context(self, entry: PlannedStep):
        """What ``entry``'s flags are built from when it runs."""
        settings = self.settings
        if entry.method is not None:
            settings = settings.for_method(deployment.find(entry.method))
        source = self.settings.model_dir if entry.source is None else self.folder(entry.source)
        return StepContext(self.settings.recipe, settings, self.folder(entry.folder),
                           {name: self.folder(folder) for name, folder in STEP_FOLDERS.items()},
                           source, self.fine_tuned_model)

    def step(self, entry: PlannedStep, upstream):
        """``entry`` as a resumable step after the one whose digest is ``upstream``; a source
        inside --output_dir is recorded by its folder, so a moved --output_dir stays done."""
        context = self.context(entry)
        source = entry.source or os.path.abspath(self.settings.model_dir)
        finish = entry.step.finish
        return steps.Step(self.folder(entry.folder), entry.step.module,
                          functools.partial(entry.step.flags, context),
                          steps.recipe_step_record(entry.step, context, source), upstream,
                          None if finish is None else functools.partial(finish, context))


def validate(settings: CompressSettings):
    """Every flag that any step of the recipe reads, named as the user typed it, before
    anything is written: a step's tool would find it only after the steps before it ran, and
    name its own flag (the prune step's --learning_rate for --prune_learning_rate)."""
    cli.require_output_dir(settings.output_dir, "output_dir")
    cli.require(settings.stop_after in (None,) + STEPS,
                f"--stop_after={settings.stop_after}: expected one of {', '.join(STEPS)}")
    cli.require_in_range(settings.learning_rate, "learning_rate", 0.0)
    cli.require_positive(settings.epochs, "epochs")
    for name in ("train_batch_size", "save_checkpoints_steps"):
        cli.require_in_range(getattr(settings, name), name, 1)
    for name in ("max_train_examples", "latency_iterations"):
        cli.require_in_range(getattr(settings, name), name, 0)
    for name in RECIPE_METHODS:
        description = deployment.find(name)
        description.validate_settings(settings.for_method(description))
    validate_inputs(settings)


def validate_inputs(settings: CompressSettings):
    """The task's data and the pretrained model, read whole (a bad row, a truncated
    checkpoint) and matched to --max_seq_length."""
    processor = tasks.get_processor(settings.task_name)
    cli.require_dir(settings.data_dir, "data_dir", "the task's folder with train.tsv and dev.tsv")
    for name in (processor.train_file, processor.dev_file):
        cli.require(name, f"{processor.name}: give --train_file and --dev_file")
        cli.require_file(os.path.join(settings.data_dir, name), "data_dir",
                         f"the {processor.name} {name}")
    processor.get_train_examples(settings.data_dir)
    processor.get_dev_examples(settings.data_dir)
    model = model_folder.load(settings.model_dir, "model_dir", "a pretrained model folder",
                              verify_weights=True)
    tokenization.check_vocab_matches_config(model.vocab_file, model.bert_config.vocab_size,
                                            "model_dir")
    cli.require_in_range(settings.max_seq_length, "max_seq_length", MIN_SEQ_LENGTH,
                         model.bert_config.max_position_embeddings)


def run_recipe(settings: CompressSettings):
    """Every step in order (those done with the same settings are skipped), or up to
    --stop_after; each step follows the digest of the one before it."""
    validate(settings)
    plan = Plan(settings)
    with steps.locked(settings.output_dir, "output_dir"):
        upstream = None
        for entry in LAYOUT:
            upstream = steps.run_step(plan.step(entry, upstream))
            if entry.folder == settings.stop_after:
                print(f"stopped after {entry.folder} (--stop_after)")
                return
    print(f"compound model: {plan.compound_model}\nexports: {plan.folder(EXPORT_DIR)}")


def budget_settings(args):
    def given(value, default):
        return default if value is None else value

    return budget.BudgetSettings(
        max_loss=given(args.max_loss, DEFAULT_MAX_LOSS),
        speedup=given(args.speedup, DEFAULT_SPEEDUP),
        batch_size=given(args.batch_size, 1 if args.latency_ms else DEFAULT_BUDGET_BATCH),
        beam=args.beam, measure_iterations=args.measure_iterations,
        latency_ms=args.latency_ms,
        methods=tuple(args.budget_methods.split(",")) if args.budget_methods else None)


def recipe_of(args):
    """--recipe, else budget mode when any budget flag is given, else the fixed chain."""
    if args.recipe:
        return args.recipe
    given = any(getattr(args, name) is not None for name in BUDGET_FLAGS)
    return BUDGET if given else FLOP_POWER


def run_budget_recipe(settings: CompressSettings, search: "budget.BudgetSettings",
                      finetuned_dir=None):
    """Fine-tune (or take --finetuned_dir), then the budget search from that model."""
    validate(settings)
    budget.validate(search, finetuned_dir)
    plan = Plan(settings)
    with steps.locked(settings.output_dir, "output_dir"):
        if finetuned_dir:
            fine_tuned, digest = finetuned_dir, steps.folder_digest(finetuned_dir)
        else:
            fine_tuned = plan.fine_tuned_model
            digest = steps.run_step(plan.step(LAYOUT[0], None))
        return budget.run_budget(search, settings.recipe, fine_tuned, digest,
                                 settings.output_dir)


# Folders as the steps record them: one spelling per folder (relative or absolute, through a
# link or not), so a re-run typed differently reuses what is done instead of re-running it.
PATH_FLAGS = ("data_dir", "model_dir", "output_dir", "finetuned_dir")


def run(args):
    for name in PATH_FLAGS:
        if getattr(args, name):
            setattr(args, name, os.path.realpath(getattr(args, name)))
    cli.resolve_task_arguments(args)
    settings = CompressSettings.from_namespace(args)
    if recipe_of(args) == BUDGET:
        run_budget_recipe(settings, budget_settings(args), args.finetuned_dir)
    else:
        run_recipe(settings)


def build_parser():
    parser = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("--task_name", required=True,
                        help="GLUE task, a name for your own data (with the flags below) or a "
                             "task .json file")
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--model_dir", required=True, help="pretrained model folder")
    parser.add_argument("--output_dir", required=True)
    for name, value in DEFAULTS.items():
        parser.add_argument(f"--{name}", type=type(value), default=value,
                            help="default %(default)s")
    parser.add_argument("--max_train_examples", type=int, default=0,
                        help="train every step on the first N examples (0: all)")
    parser.add_argument("--save_checkpoints_steps", type=int, default=100,
                        help="checkpoint interval of fine-tuning (a killed run resumes from "
                             "the last) and pruning (each is evaluated for best/)")
    parser.add_argument("--lr_soft_extract", type=float, help="PoWER-BERT's (default: per task)")
    parser.add_argument("--power_lambda", type=float, help="PoWER-BERT's LAMBDA (default: per task)")
    parser.add_argument("--stop_after", help=f"end after this step ({', '.join(STEPS)})")
    add_budget_flags(parser)
    user_task.add_arguments(parser)
    return parser


def add_budget_flags(parser):
    parser.add_argument("--recipe", choices=RECIPES, help=f"{BUDGET}: search every method "
                        f"for the fastest model within --max_loss (default when a budget flag "
                        f"is given); {FLOP_POWER}: the fixed chain above")
    parser.add_argument("--max_loss", type=float, help="dev-metric points the shipped model may "
                        f"lose against the fine-tuned one (budget; default {DEFAULT_MAX_LOSS})")
    parser.add_argument("--speedup", type=float, help="wanted speed-up over the dense model in "
                        f"TensorFlow at --batch_size (budget; default {DEFAULT_SPEEDUP})")
    parser.add_argument("--latency_ms", type=float, help="wanted p50 latency at batch 1 instead "
                        "of --speedup (budget)")
    parser.add_argument("--batch_size", type=int, help="batch the speed is measured at "
                        f"(budget; default {DEFAULT_BUDGET_BATCH})")
    parser.add_argument("--beam", type=int, default=budget.DEFAULT_BEAM,
                        help="candidates each stage builds on (budget)")
    parser.add_argument("--measure_iterations", type=int, default=budget.DEFAULT_ITERATIONS,
                        help="timed runs per row of each measurement (budget)")
    parser.add_argument("--budget_methods", help="methods the search may use, comma separated "
                        "(default: every registered one)")
    parser.add_argument("--finetuned_dir", help="a fine-tuned model folder to start from "
                        "instead of fine-tuning --model_dir (budget)")


def main(argv=None):
    return cli.argparse_main(PROGRAM, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
