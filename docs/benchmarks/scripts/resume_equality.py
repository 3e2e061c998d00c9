"""Resume equality on the real model: each training command run whole, and run again into a new
folder, stopped by SIGTERM once its first checkpoint after step 0 exists, then re-run with the
same command. Prints both runs' dev metrics side by side and the largest weight difference.

    .venv/bin/python docs/benchmarks/scripts/resume_equality.py MINILM_DIR GLUE_SST2_DIR WORK_DIR

MINILM_DIR: all-MiniLM-L6-v2 converted by bert.convert_hf. The scale is the issue's report
(SST-2, the first 64 training sentences, seq 32, full dev set, checkpoints every 2 steps).
"""
import glob
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from bert import checkpoint

ROWS, SEQ, EVERY = 64, 32, 2
METRIC = re.compile(r"^(eval_accuracy|eval_loss|kept_share\w*) = (\S+)$", re.MULTILINE)


def run(command):
    process = subprocess.run(command, capture_output=True, text=True)
    if process.returncode:
        sys.exit(f"failed: {' '.join(command)}\n{process.stderr[-2000:]}")


def stopped_then_resumed(command, training_dir):
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    while process.poll() is None and not [
            path for path in glob.glob(os.path.join(training_dir, "model.ckpt-*.index"))
            if not path.endswith("-0.index")]:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate()
    stopped = stderr.strip().splitlines()[-1]
    run(command)
    return stopped


def metrics(folder):
    with open(os.path.join(folder, "eval_results.txt")) as handle:
        return dict(METRIC.findall(handle.read()))


def largest_difference(first, second):
    readers = [tf.train.load_checkpoint(checkpoint.resolve_checkpoint(folder))
               for folder in (first, second)]
    names = readers[0].get_variable_to_shape_map()
    return max(float(np.max(np.abs(readers[0].get_tensor(name) - readers[1].get_tensor(name))))
               for name in names if "global_step" not in name)


def compare(name, command_for, result_dir_for, model_dir_for, training_dir_for, work):
    whole, resumed = os.path.join(work, name, "whole"), os.path.join(work, name, "resumed")
    run(command_for(whole))
    stopped = stopped_then_resumed(command_for(resumed), training_dir_for(resumed))
    print(f"| {name} | {metrics(result_dir_for(whole))} | {metrics(result_dir_for(resumed))} "
          f"| {largest_difference(model_dir_for(whole), model_dir_for(resumed)):.2e} "
          f"| {stopped} |", flush=True)


def main(minilm, data, work):
    python = [sys.executable, "-m"]
    task = ["--task_name=SST-2", f"--data_dir={data}", f"--max_seq_length={SEQ}",
            f"--max_train_examples={ROWS}", "--train_batch_size=8", "--eval_batch_size=64",
            f"--save_checkpoints_steps={EVERY}", "--num_train_epochs=3"]
    pretrained = [f"--init_checkpoint={minilm}", f"--vocab_file={minilm}/vocab.txt",
                  f"--bert_config_file={minilm}/bert_config.json"]
    fine_tuned = os.path.join(work, "fine_tuned")
    run(python + ["bert.run_classifier", *task, "--do_train", "--do_eval", *pretrained,
                  f"--output_dir={fine_tuned}"])
    print("| run | uninterrupted | stopped and resumed | max weight difference | the stop |")
    print("|---|---|---|---|---|")
    compare("fine-tune", lambda out: python + [
        "bert.run_classifier", *task, "--do_train", "--do_eval", *pretrained,
        f"--output_dir={out}"], lambda out: out, lambda out: out, lambda out: out, work)
    student = os.path.join(work, "student")
    run(python + ["distill.extract", f"--model_dir={fine_tuned}", f"--output_dir={student}",
                  "--num_hidden_layers=3", "--num_attention_heads=12", "--hidden_size=384",
                  "--intermediate_size=1536", "--task_name=SST-2", f"--data_dir={data}",
                  f"--max_seq_length={SEQ}"])
    compare("run_distill", lambda out: python + [
        "distill.run_distill", *task, "--do_train", "--do_eval", f"--init_checkpoint={student}",
        f"--teacher_model_dir={fine_tuned}", f"--output_dir={out}"],
        lambda out: out, lambda out: os.path.join(out, "model"), lambda out: out, work)
    tr_task = [flag for flag in task if not flag.startswith("--eval_batch_size")]

    def tr_bert(out, *mode):
        return python + ["tr_bert.run_tr_bert", *tr_task, f"--output_dir={out}", *mode]

    def rl_command(out):
        if not os.path.isdir(os.path.join(out, "train_init", "model")):
            run(tr_bert(out, f"--init_checkpoint={fine_tuned}", "--do_eval_grad",
                        "--do_eval_logits"))
            run(tr_bert(out, f"--init_checkpoint={fine_tuned}", "--do_train", "--train_init"))
        return tr_bert(out, f"--init_checkpoint={os.path.join(out, 'train_init', 'model')}",
                       "--do_train", "--train_rl")

    compare("TR-BERT RL", rl_command, lambda out: os.path.join(out, "train_rl"),
            lambda out: os.path.join(out, "train_rl", "model"),
            lambda out: os.path.join(out, "train_rl", "training"), work)


if __name__ == "__main__":
    main(*sys.argv[1:4])
