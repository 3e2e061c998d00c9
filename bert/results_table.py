"""Markdown tables of fine-tuning results: best per task, and every learning rate.

    python -m bert.results_table --output_dir fine_tune_outputs [--write results.md]

Reads ``<output_dir>/<TASK>/lr_<lr>/eval_results.txt`` as written by run_classifier.
"""
import os
import sys

from bert import cli, files, tasks
from bert.classifier import EVAL_RESULTS_FILE

PROGRAM = "bert.results_table"
LR_PREFIX = "lr_"
PERCENT = 100.0


def read_eval_results(path):
    """{key: float} of an eval_results.txt (``key = value`` lines)."""
    results = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if " = " in line:
                key, value = line.split(" = ", 1)
                results[key.strip()] = float(value)
    return results


def collect(output_dir):
    """{task: {lr: results}} for every finished run under output_dir."""
    found = {}
    for task in sorted(os.listdir(output_dir)):
        task_dir = os.path.join(output_dir, task)
        if not os.path.isdir(task_dir):
            continue
        for run in sorted(os.listdir(task_dir)):
            path = os.path.join(task_dir, run, EVAL_RESULTS_FILE)
            if run.startswith(LR_PREFIX) and os.path.isfile(path):
                found.setdefault(task, {})[run[len(LR_PREFIX):]] = read_eval_results(path)
    return found


def metric_label(task):
    return tasks.primary_metric(task).replace("eval_", "")


def tables(found):
    task_names = list(found)
    best, per_lr = {}, {}
    for task in task_names:
        key = tasks.primary_metric(task)
        scores = {lr: results[key] for lr, results in found[task].items() if key in results}
        per_lr[task] = scores
        if scores:
            best[task] = max(scores.items(), key=lambda item: item[1])
    header = "| | " + " | ".join(f"{t} ({metric_label(t)})" for t in task_names) + " |"
    rule = "|---" * (len(task_names) + 1) + "|"
    best_row = "| best | " + " | ".join(
        f"{best[t][1] * PERCENT:.1f} (lr {best[t][0]})" if t in best else "—" for t in task_names) + " |"
    lrs = sorted({lr for scores in per_lr.values() for lr in scores}, key=float, reverse=True)
    lr_rows = ["| " + lr + " | " + " | ".join(
        f"{per_lr[t][lr] * PERCENT:.1f}" if lr in per_lr[t] else "—" for t in task_names) + " |"
        for lr in lrs]
    return "\n".join([header, rule, best_row] + lr_rows) + "\n"


def main(argv=None):
    parser = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("--output_dir", default="fine_tune_outputs")
    parser.add_argument("--write", help="also write the table to this file")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.output_dir):
        return cli.fail(PROGRAM, f"--output_dir={args.output_dir}: no such folder")
    found = collect(args.output_dir)
    if not found:
        return cli.fail(PROGRAM, f"--output_dir={args.output_dir}: no {EVAL_RESULTS_FILE} "
                                 "below it")
    text = tables(found)
    print(text, end="")
    if args.write:
        files.write_text_atomic(args.write, text)
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
