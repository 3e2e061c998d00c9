"""The compound model: structured pruning × token elimination × INT8, for one GLUE task.

    python -m deploy.compress --task_name=MRPC --data_dir=glue/MRPC \\
        --model_dir=models/all-MiniLM-L6-v2 --output_dir=compress_outputs/MRPC

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

A step that finished wrote ``step.json`` and is skipped on a re-run; a step that was killed is
resumed by its own tool (checkpoints, --resume, PoWER's step folders). --stop_after ends the run
after a step.
"""
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time

from bert import checkpoint, cli, glue, modeling
from bert.errors import InputError, Interrupted
from flop import run_classifier as flop_cli

log = logging.getLogger("deploy")

PROGRAM = "deploy.compress"
STEP_DONE_FILE = "step.json"
MODEL_DIR = "model"
PRUNE_BEST_DIR = "best"
POWER_MODEL = os.path.join("5_power", "3_retrain", "model")
COMPACT_DIR = "4_compact"
FINE_TUNE_DIR = "1_fine_tune"
FACTORIZED_DIR = "2_factorize"
PRUNE_DIR = "3_prune"
POWER_DIR = "5_power"
EXPORT_DIR = "6_export"
STEPS = (FINE_TUNE_DIR, FACTORIZED_DIR, PRUNE_DIR, COMPACT_DIR, POWER_DIR, EXPORT_DIR)
# Defaults: the best accuracy/speed trade-off measured on all-MiniLM-L6-v2 (see README).
DEFAULTS = dict(max_seq_length=128, train_batch_size=32, learning_rate=5e-5, epochs=3.0,
                target_sparsity=0.6, prune_epochs=3.0, prune_learning_rate=2e-5,
                target_sparsity_warmup=200, lambda_learning_rate=0.01, alpha_learning_rate=0.05,
                power_epochs=2, latency_iterations=5)


@dataclasses.dataclass
class Plan:
    """The run's folders and settings, from the command line."""
    args: object

    def folder(self, step):
        return os.path.join(self.args.output_dir, step)

    @property
    def fine_tuned_model(self):
        return os.path.join(self.folder(FINE_TUNE_DIR), MODEL_DIR)

    @property
    def compound_model(self):
        return os.path.join(self.args.output_dir, POWER_MODEL)


def module(name, *flags):
    """A step's command: one of the project's entry points, as a user would type it."""
    return [sys.executable, "-m", name, *[str(flag) for flag in flags]]


def fine_tune(plan):
    a = plan.args
    model_dir = a.model_dir
    training = os.path.join(plan.folder(FINE_TUNE_DIR), "training")
    vocab = checkpoint.find_vocab(model_dir)
    yield module("bert.run_classifier", f"--task_name={a.task_name}", "--do_train", "--do_eval",
                 f"--data_dir={a.data_dir}", f"--vocab_file={vocab}",
                 f"--bert_config_file={os.path.join(model_dir, 'bert_config.json')}",
                 f"--init_checkpoint={model_dir}", f"--output_dir={training}",
                 f"--max_seq_length={a.max_seq_length}",
                 f"--train_batch_size={a.train_batch_size}",
                 f"--learning_rate={a.learning_rate}", f"--num_train_epochs={a.epochs}",
                 f"--max_train_examples={a.max_train_examples}")
    config = modeling.BertConfig.from_json_file(os.path.join(model_dir, "bert_config.json"))
    checkpoint.write_model_folder(plan.fine_tuned_model, config, vocab,
                                  checkpoint.read_checkpoint(training), step="fine_tune",
                                  source=training)


def factorize(plan):
    model = plan.fine_tuned_model
    yield module("flop.factorize", f"--bert_config_file={os.path.join(model, 'bert_config.json')}",
                 f"--checkpoint={model}", f"--output_dir={plan.folder(FACTORIZED_DIR)}",
                 "--finetuned")


def prune(plan):
    a = plan.args
    factorized = plan.folder(FACTORIZED_DIR)
    output = plan.folder(PRUNE_DIR)
    resume = ["--resume"] if run_folders(output) else []
    yield module("flop.run_classifier", f"--task_name={a.task_name}", "--do_train", "--do_eval",
                 f"--data_dir={a.data_dir}", f"--vocab_file={os.path.join(factorized, 'vocab.txt')}",
                 f"--bert_config_file={os.path.join(factorized, 'bert_config.json')}",
                 f"--init_checkpoint={factorized}", f"--output_dir={output}",
                 f"--max_seq_length={a.max_seq_length}",
                 f"--train_batch_size={a.train_batch_size}",
                 f"--learning_rate={a.prune_learning_rate}",
                 f"--num_train_epochs={a.prune_epochs}",
                 f"--max_train_examples={a.max_train_examples}",
                 f"--target_sparsity={a.target_sparsity}",
                 f"--target_sparsity_warmup={a.target_sparsity_warmup}",
                 f"--lambda_learning_rate={a.lambda_learning_rate}",
                 f"--alpha_learning_rate={a.alpha_learning_rate}",
                 f"--save_checkpoints_steps={a.save_checkpoints_steps}",
                 f"--teacher_checkpoint={plan.fine_tuned_model}", *resume)


def run_folders(output):
    return (os.path.isdir(output)
            and any(flop_cli.RUN_DIR_PATTERN.match(name) for name in os.listdir(output)))


def pruned_checkpoint(plan):
    """The run's best/ (within the sparsity tolerance of the target), else its last checkpoint."""
    run_dir = flop_cli.newest_run_dir(plan.folder(PRUNE_DIR))
    best = os.path.join(run_dir, PRUNE_BEST_DIR)
    if os.path.isdir(best):
        return best
    log.warning("no checkpoint of %s reached the target sparsity within the tolerance; "
                "using its last checkpoint", run_dir)
    return run_dir


def remove_mask(plan):
    yield module("flop.remove_mask", f"--checkpoint={pruned_checkpoint(plan)}",
                 f"--output_folder_dir={plan.folder(COMPACT_DIR)}",
                 f"--latency_iterations={plan.args.latency_iterations}",
                 f"--latency_seq_length={plan.args.max_seq_length}")


def power_bert(plan):
    a = plan.args
    yield module("power_bert.main", f"--TASK={a.task_name}",
                 f"--CHECKPOINT_PATH={plan.folder(COMPACT_DIR)}", f"--DATA_DIR={a.data_dir}",
                 f"--OUTPUT_DIR={plan.folder(POWER_DIR)}", f"--EPOCH={a.power_epochs}",
                 f"--MAX_SEQ_LENGTH={a.max_seq_length}",
                 f"--MAX_TRAIN_EXAMPLES={a.max_train_examples}",
                 f"--BENCHMARK_ITERATIONS={a.latency_iterations}",
                 *([f"--LR_SOFT_EXTRACT={a.lr_soft_extract}"] if a.lr_soft_extract else []),
                 *([f"--LAMBDA={a.power_lambda}"] if a.power_lambda else []))


def export(plan):
    a = plan.args
    yield module("deploy.export", f"--model_dir={plan.compound_model}",
                 f"--output_dir={plan.folder(EXPORT_DIR)}",
                 f"--max_seq_length={a.max_seq_length}", f"--task_name={a.task_name}",
                 f"--data_dir={a.data_dir}")


STEP_FUNCTIONS = dict(zip(STEPS, (fine_tune, factorize, prune, remove_mask, power_bert, export)))


def run_step(plan, step):
    """Run a step's commands unless its step.json says it is done; write step.json last."""
    folder = plan.folder(step)
    done_file = os.path.join(folder, STEP_DONE_FILE)
    if os.path.isfile(done_file):
        print(f"{step}: already done, skipped", flush=True)
        return
    print(f"{step}: running", flush=True)
    start = time.time()
    commands = []
    for command in STEP_FUNCTIONS[step](plan):
        commands.append(command)
        print("  $ " + " ".join(command[1:]), flush=True)
        status = run_command(command, step)
        if status != 0:
            raise StepFailed(step, status)
    os.makedirs(folder, exist_ok=True)
    record = {"step": step, "seconds": round(time.time() - start, 1),
              "commands": [" ".join(command[1:]) for command in commands]}
    modeling.write_text_atomic(done_file, json.dumps(record, indent=2) + "\n")
    print(f"{step}: done in {record['seconds']:.0f} s", flush=True)


def run_command(command, step):
    """Run a step's tool in its own session, so that a stop signal reaches it exactly once:
    forwarded from here, it lets the tool save its progress before both stop."""
    child = subprocess.Popen(command, start_new_session=True)
    try:
        return child.wait()
    except (KeyboardInterrupt, Interrupted) as stop:
        number = getattr(stop, "signal_number", signal.SIGINT)
        child.send_signal(number)
        child.wait()
        raise Interrupted(f"stopped by {signal.Signals(number).name} during step {step}, which "
                          "saved its progress; run the same command again to resume",
                          number) from None


class StepFailed(InputError):
    """A step's tool failed; it said why on the line above."""

    def __init__(self, step, status):
        super().__init__(f"step {step} failed (exit {status}); fix what it said and run the "
                         "same command again to resume")


def validate(args):
    glue.canonical_task_name(args.task_name)
    cli.require_dir(args.data_dir, "data_dir", "the task's folder with train.tsv and dev.tsv")
    cli.require_dir(args.model_dir, "model_dir", "a pretrained model folder")
    cli.require_file(os.path.join(args.model_dir, "bert_config.json"), "model_dir",
                     "a model folder with bert_config.json")
    cli.require_output_dir(args.output_dir, "output_dir")
    cli.require(args.stop_after in (None,) + STEPS,
                f"--stop_after={args.stop_after}: expected one of {', '.join(STEPS)}")
    cli.require_in_range(args.target_sparsity, "target_sparsity", 0.0, 1.0,
                         high_inclusive=False)
    for name in ("epochs", "prune_epochs", "power_epochs"):
        cli.require(getattr(args, name) > 0, f"--{name}={getattr(args, name)}: must be positive")


def run(args):
    validate(args)
    plan = Plan(args)
    os.makedirs(args.output_dir, exist_ok=True)
    for step in STEPS:
        run_step(plan, step)
        if step == args.stop_after:
            print(f"stopped after {step} (--stop_after)")
            return
    print(f"compound model: {plan.compound_model}\nexports: {plan.folder(EXPORT_DIR)}")


def build_parser():
    parser = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("--task_name", required=True)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--model_dir", required=True, help="pretrained model folder")
    parser.add_argument("--output_dir", required=True)
    for name, value in DEFAULTS.items():
        parser.add_argument(f"--{name}", type=type(value), default=value,
                            help="default %(default)s")
    parser.add_argument("--max_train_examples", type=int, default=0,
                        help="train every step on the first N examples (0: all)")
    parser.add_argument("--save_checkpoints_steps", type=int, default=100,
                        help="pruning checkpoints (each is evaluated for best/)")
    parser.add_argument("--lr_soft_extract", type=float, help="PoWER-BERT's (default: per task)")
    parser.add_argument("--power_lambda", type=float, help="PoWER-BERT's LAMBDA (default: per task)")
    parser.add_argument("--stop_after", help=f"end after this step ({', '.join(STEPS)})")
    return parser


def main(argv=None):
    return cli.argparse_main(PROGRAM, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
