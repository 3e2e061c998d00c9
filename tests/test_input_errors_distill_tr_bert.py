"""distill.*, tr_bert and the pre-training tools as processes on bad input (issue 20): exit 1,
one last line `program: error: ...` naming the flag, file or row, no traceback, and every file
where the run would write byte-identical (or absent) afterwards. A finished run re-run with
the same settings changes nothing.

Each case is one process; they run side by side (one per core) in a module fixture, each in
its own scratch folder, so the file stays fast however many cases it holds.
"""
import concurrent.futures
import dataclasses
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Callable, Tuple

import pytest

from bert import pretraining_data, tokenization
from conftest import REPO_ROOT
from tiny_bert import random_importance, write_small_model, write_sst2_task

TIMEOUT = 300
EXIT_OK = 0
EXIT_INPUT_ERROR = 1
SEQ = 16
MAX_PREDICTIONS = 3
ROWS = 16
BAD_DEV_ROW = "a good film .\t7\n"  # SST-2 labels are 0 and 1
BAD_DEV_LINE = ROWS + 2  # after the header and the ROWS good rows
TRUNCATED_SHARE = 0.6
SIZE_FLAGS = ["--num_hidden_layers=1", "--num_attention_heads=1", "--hidden_size=8",
              "--intermediate_size=8"]
CORPUS = "the cat sat .\na good film .\n\nit was a bad movie .\nthe plot is dull .\n" * 4
TR_BERT_LAYERS = "--reduction_layers=0,1"  # the small model has two layers
DUPE_FACTOR = 2  # the corpus twice, differently masked


def run(module, *args):
    command = [sys.executable, "-m", *module.split(), *[str(arg) for arg in args]]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT)


def tree_digest(path):
    """Every file under ``path`` with its content hash; None for a missing path."""
    path = pathlib.Path(path)
    if not path.exists():
        return None
    if path.is_file():
        return {".": hashlib.sha1(path.read_bytes()).hexdigest()}
    return {str(item.relative_to(path)): hashlib.sha1(item.read_bytes()).hexdigest()
            for item in sorted(path.rglob("*")) if item.is_file()}


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * TRUNCATED_SHARE)])


def write_records(root, vocab_file):
    """create_pretraining_data's records of a small corpus, made in this process."""
    (root / "corpus.txt").write_text(CORPUS)
    tokenizer = tokenization.create_tokenizer(str(vocab_file), True)
    settings = pretraining_data.MaskingSettings(max_seq_length=SEQ,
                                                max_predictions_per_seq=MAX_PREDICTIONS,
                                                dupe_factor=DUPE_FACTOR)
    documents = pretraining_data.read_documents([str(root / "corpus.txt")], tokenizer)
    pretraining_data.write_instances(
        pretraining_data.create_instances(documents, tokenizer, settings),
        [str(root / "records.tf_record")])


def distill_flags(world, output_dir, **values):
    flags = dict(task_name="SST-2", data_dir=world / "data", init_checkpoint=world / "teacher",
                 teacher_model_dir=world / "teacher", output_dir=output_dir,
                 max_seq_length=SEQ, train_batch_size=8, eval_batch_size=8,
                 num_train_epochs=1, learning_rate=1e-3)
    flags.update(values)
    return [f"--{key}={value}" for key, value in flags.items()] + ["--do_train", "--do_eval"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small fine-tuned-shaped teacher, a headless model, an SST-2 task and a copy with a bad
    dev row, importance scores, pre-training records, damaged copies of each, and one finished
    distill.run_distill run."""
    root = tmp_path_factory.mktemp("issue20")
    config = write_small_model(root / "teacher", num_labels=2)
    write_small_model(root / "headless")
    write_sst2_task(root / "data", rows=ROWS)
    shutil.copytree(root / "data", root / "bad_dev")
    with open(root / "bad_dev" / "dev.tsv", "a", encoding="utf-8") as handle:
        handle.write(BAD_DEV_ROW)
    random_importance(config).save(str(root / "importance.npz"))
    shutil.copy(root / "importance.npz", root / "truncated.npz")
    truncate(root / "truncated.npz")
    shutil.copytree(root / "teacher", root / "truncated_teacher")
    truncate(next((root / "truncated_teacher").glob("*.data-00000-of-00001")))
    write_records(root, root / "teacher" / "vocab.txt")
    shutil.copy(root / "records.tf_record", root / "truncated.tf_record")
    truncate(root / "truncated.tf_record")
    finished = run("distill.run_distill", *distill_flags(root, root / "distilled"))
    assert finished.returncode == 0, finished.stderr[-3000:]
    return root


def tr_bert_flags(world, output_dir, data_dir, init="teacher"):
    return ["--task_name=SST-2", f"--data_dir={data_dir}", f"--init_checkpoint={world / init}",
            f"--output_dir={output_dir}", f"--max_seq_length={SEQ}", TR_BERT_LAYERS,
            "--train_batch_size=8", "--eval_batch_size=8", "--num_train_epochs=1"]


def teacher_copy(world, scratch):
    shutil.copytree(world / "teacher", scratch / "teacher")
    return scratch / "teacher"


def earlier_search(scratch):
    """What an earlier search left in scratch/search, which a failing one must not touch."""
    out = scratch / "search"
    out.mkdir()
    for name in ("front.md", "front.csv", "front.png", "chosen_config.json"):
        (out / name).write_text(f"an earlier search's {name}\n")
    (out / "latency_cache.json").write_text("{}\n")
    return out


def search_flags(world, output_dir, speedup):
    return [f"--model_dir={world / 'teacher'}", f"--output_dir={output_dir}",
            f"--importance={world / 'importance.npz'}", f"--speedup={speedup}",
            f"--seq_length={SEQ}", "--iterations=1", "--batch_sizes=1", "--intermediate_step=32",
            "--max_measured=2"]


def corpus_copy(world, scratch):
    shutil.copy(world / "corpus.txt", scratch / "corpus.txt")
    return scratch / "corpus.txt"


@dataclasses.dataclass
class Case:
    """One command: its arguments (built from the world and the case's scratch folder), what
    the last stderr line must name, and the folder (below ``world`` with a leading "world/",
    else below the scratch folder) whose files must stay byte-identical or absent."""
    name: str
    program: str
    arguments: Callable  # (world, scratch) -> arguments
    named: Tuple[str, ...]  # texts of the last line; "{world}"/"{scratch}" are filled in
    watched: str = "out"
    status: int = EXIT_INPUT_ERROR


CASES = [
    # 1. distill.extract never writes over, into or around its teacher
    *[Case(f"extract into {where}", "distill.extract",
           lambda w, s, output=output: [f"--model_dir={teacher_copy(w, s)}",
                                        f"--output_dir={s / output}",
                                        f"--importance={w / 'importance.npz'}", *SIZE_FLAGS],
           ("--output_dir=", "model folder"), watched=".")
      for where, output in (("the teacher", "teacher"), ("a folder inside it", "teacher/x"),
                            ("a folder around it", "."))],
    # 2 and 6. a failing search writes nothing; a speed-up must be above 1
    Case("search, speed-up out of reach", "distill.search",
         lambda w, s: search_flags(w, earlier_search(s), 1000),
         ("--speedup=1000", "no measured candidate within", "nothing was written"), "search"),
    Case("search, speed-up below 1", "distill.search",
         lambda w, s: search_flags(w, earlier_search(s), 0.5),
         ("--speedup=0.5", "must be above 1"), "search"),
    # 3. a finished distillation re-run
    Case("run_distill done, same settings", "distill.run_distill",
         lambda w, s: distill_flags(w, w / "distilled"), (), "world/distilled", EXIT_OK),
    Case("run_distill done, other settings", "distill.run_distill",
         lambda w, s: distill_flags(w, w / "distilled", learning_rate=0.01, temperature=2),
         ("learning_rate: 0.001 -> 0.01", "temperature: 1.0 -> 2.0", "--output_dir"),
         "world/distilled"),
    # 4. every split is read before the first write; a refused stage records nothing
    Case("run_distill, bad dev row", "distill.run_distill",
         lambda w, s: distill_flags(w, w / "distilled", data_dir=w / "bad_dev"),
         (f"dev.tsv:{BAD_DEV_LINE}", "label '7'"), "world/distilled"),
    Case("tr_bert RL, bad dev row", "tr_bert.run_tr_bert",
         lambda w, s: tr_bert_flags(w, s / "out", w / "bad_dev") + ["--do_train", "--train_rl"],
         (f"dev.tsv:{BAD_DEV_LINE}",)),
    Case("tr_bert RL without its guide", "tr_bert.run_tr_bert",
         lambda w, s: tr_bert_flags(w, s / "out", w / "data") + ["--do_train", "--train_rl"],
         ("--guide_dir", "run --do_eval_grad first")),
    # 5. damaged files are named
    Case("search, truncated importance", "distill.search",
         lambda w, s: [f"--model_dir={w / 'teacher'}", f"--output_dir={s / 'out'}",
                       f"--importance={w / 'truncated.npz'}", "--speedup=2",
                       f"--seq_length={SEQ}"],
         ("--importance={world}/truncated.npz", "not a readable importance file")),
    Case("extract, truncated importance", "distill.extract",
         lambda w, s: [f"--model_dir={w / 'teacher'}", f"--output_dir={s / 'out'}",
                       f"--importance={w / 'truncated.npz'}", *SIZE_FLAGS],
         ("--importance={world}/truncated.npz", "not a readable importance file")),
    Case("run_distill, truncated teacher", "distill.run_distill",
         lambda w, s: distill_flags(w, w / "distilled",
                                    teacher_model_dir=w / "truncated_teacher"),
         ("--teacher_model_dir={world}/truncated_teacher", "damaged or truncated"),
         "world/distilled"),
    Case("pretraining, truncated records", "distill.pretraining run_pretraining_distillation",
         lambda w, s: [f"--input_file={w / 'records.tf_record'},{w / 'truncated.tf_record'}",
                       f"--init_checkpoint={w / 'headless'}",
                       f"--teacher_model_dir={w / 'teacher'}", f"--output_dir={s / 'out'}",
                       f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={MAX_PREDICTIONS}",
                       "--num_train_steps=2", "--train_batch_size=4"],
         ("--input_file={world}/truncated.tf_record", "damaged or truncated")),
    Case("pretraining data over its own text", "distill.pretraining create_pretraining_data",
         lambda w, s: [f"--input_file={corpus_copy(w, s)}", f"--output_file={s / 'corpus.txt'}",
                       f"--vocab_file={w / 'teacher' / 'vocab.txt'}", f"--max_seq_length={SEQ}",
                       f"--max_predictions_per_seq={MAX_PREDICTIONS}"],
         ("--output_file={scratch}/corpus.txt", "--input_file"), watched="."),
    # 6. a model without a classifier head where a fine-tuned one is needed
    Case("extract, no classifier head", "distill.extract",
         lambda w, s: [f"--model_dir={w / 'headless'}", f"--output_dir={s / 'out'}",
                       "--task_name=SST-2", f"--data_dir={w / 'data'}",
                       f"--max_seq_length={SEQ}", *SIZE_FLAGS],
         ("--model_dir={world}/headless", "no classifier head")),
    Case("run_distill, teacher without a head", "distill.run_distill",
         lambda w, s: distill_flags(w, s / "out", teacher_model_dir=w / "headless"),
         ("--teacher_model_dir={world}/headless", "no classifier head")),
    Case("tr_bert, init model without a head", "tr_bert.run_tr_bert",
         lambda w, s: tr_bert_flags(w, s / "out", w / "data", "headless") + ["--do_eval"],
         ("--init_checkpoint={world}/headless", "no classifier head")),
]


def watched_path(world, scratch, watched):
    return world / watched[len("world/"):] if watched.startswith("world/") else scratch / watched


@pytest.fixture(scope="module")
def outcomes(world):
    """{case name: (process, digest before, digest after, scratch folder)}, the cases run side
    by side once the world is built."""
    prepared = {}
    for index, case in enumerate(CASES):
        scratch = world / "cases" / str(index)
        scratch.mkdir(parents=True)
        arguments = case.arguments(world, scratch)
        prepared[case.name] = (arguments, scratch,
                               tree_digest(watched_path(world, scratch, case.watched)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        processes = {case.name: pool.submit(run, case.program, *prepared[case.name][0])
                     for case in CASES}
    return {case.name: (processes[case.name].result(), prepared[case.name][2],
                        tree_digest(watched_path(world, prepared[case.name][1], case.watched)),
                        prepared[case.name][1])
            for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_exits_naming_the_input_and_leaves_earlier_files_byte_identical(world, outcomes,
                                                                         case):
    process, before, after, scratch = outcomes[case.name]
    assert process.returncode == case.status, process.stderr[-3000:]
    assert "Traceback" not in process.stderr, process.stderr[-3000:]
    lines = process.stderr.strip().splitlines()
    if case.status == EXIT_OK:
        assert "already done" in process.stderr, process.stderr[-3000:]
    else:
        assert lines[-1].startswith(f"{case.program}: error: "), lines[-1]
        for text in case.named:
            assert text.format(world=world, scratch=scratch) in lines[-1], lines[-1]
    assert after == before
