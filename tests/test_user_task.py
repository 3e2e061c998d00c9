"""The user's own data: CSV/TSV/JSONL/folders with named columns, read the same way by every
entry point; bad rows named by file, line and column; head+tail truncation of long texts."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert import features, metrics, model_folder, modeling, tasks, tokenization
from bert.errors import InputError, UsageError
from conftest import REPO_ROOT, load_downloader
from deploy import compress, export, inference
from tiny_bert import TINY_VOCAB, compress_command, write_small_model, write_vocab

TIMEOUT = 600
SEQ = 16
ROWS = [("a good film , and great fun", "pos"), ("dull and awful", "neg"),
        ("the plot is not good", "neg"), ("it was very good", "pos")]
QUEUE_ROWS = [("the cat sat", "cats"), ("a dog sat", "dogs"), ("what plot ?", "films"),
              ("the cat is good", "cats"), ("the dog is bad", "dogs"), ("a great film", "films")]


def csv_text(rows, header=("review", "stars")):
    """Every text quoted (commas inside), as spreadsheets write them."""
    lines = [",".join(header)] + ['"' + text.replace('"', '""') + f'",{label}'
                                  for text, label in rows]
    return "\n".join(lines) + "\n"


def jsonl_text(rows):
    return "".join(json.dumps({"review": text, "stars": label}) + "\n" for text, label in rows)


def resolve(data_dir, **flags):
    return tasks.resolve(flags.pop("task_name", "reviews"), str(data_dir), flags)


def examples(spec, split="train"):
    processor = tasks.get_processor(spec)
    return [(example.text_a, example.text_b, example.label) for example in
            getattr(processor, f"get_{split}_examples")(None)]


def test_csv_with_quoted_commas_and_jsonl_give_the_same_examples(tmp_path):
    (tmp_path / "train.csv").write_text(csv_text(ROWS + [('say "bad", then\nnot good', "neg")]))
    (tmp_path / "train.jsonl").write_text(jsonl_text(ROWS + [('say "bad", then\nnot good',
                                                              "neg")]))
    columns = dict(text_a_column="review", label_column="stars")
    from_csv = resolve(tmp_path, input_format="csv", **columns)
    from_jsonl = resolve(tmp_path, input_format="jsonl", **columns)
    assert examples(from_csv) == examples(from_jsonl)
    assert examples(from_csv)[0] == ("a good film , and great fun", None, "pos")
    assert examples(from_csv)[-1][0] == 'say "bad", then\nnot good'
    assert tasks.get_processor(from_csv).get_labels() == ["neg", "pos"]


def test_the_spec_is_what_travels_and_a_task_file_says_the_same(tmp_path):
    (tmp_path / "train.tsv").write_text("text\tlabel\n" + "".join(
        f"{text}\t{label}\n" for text, label in ROWS))
    spec = resolve(tmp_path, input_format="tsv")
    assert tasks.canonical_task_name(spec) == spec  # one spelling: run records compare it
    assert tasks.resolve(spec, str(tmp_path), {}) == spec  # a sub-step resolves it again
    (tmp_path / "task.json").write_text(json.dumps({"name": "reviews", "input_format": "tsv"}))
    assert resolve(tmp_path, task_name=str(tmp_path / "task.json")) == spec
    values = json.loads(spec)
    assert values["train_file"] == str(tmp_path / "train.tsv") and values["dev_file"] is None
    assert tasks.display_name(spec) == "reviews"
    assert tasks.submission_file_name(spec) == "reviews.tsv"
    assert tasks.resolve("SST-2", str(tmp_path), {}) == "SST-2"  # GLUE is untouched


def test_labels_metric_and_regression_follow_the_kind_of_task(tmp_path):
    (tmp_path / "train.jsonl").write_text("".join(
        json.dumps({"text": text, "label": stars}) + "\n"
        for text, stars in zip(["a", "b", "c", "d"], [10, 9, 2, 10])))
    three = resolve(tmp_path, input_format="jsonl")
    assert tasks.get_processor(three).get_labels() == ["2", "9", "10"]  # numeric order
    assert tasks.primary_metric(three) == "eval_accuracy"
    values = metrics.compute_task_metrics(three, np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]))
    # per class F1: class 0: 1, class 1: 2·1/(1+2) = 2/3, class 2: 2·1/(2+1) = 2/3
    assert values["eval_macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert "eval_f1" not in values
    accuracy = resolve(tmp_path, input_format="jsonl", labels="2,9,10", metric="macro_f1")
    assert tasks.primary_metric(accuracy) == "eval_macro_f1"
    regression = resolve(tmp_path, input_format="jsonl", regression="true")
    assert tasks.get_processor(regression).get_labels() is None
    assert tasks.primary_metric(regression) == "eval_spearman"
    assert examples(regression)[1][2] == 9.0
    (tmp_path / "two.jsonl").write_text(jsonl_text(ROWS))
    binary = resolve(tmp_path, input_format="jsonl", train_file="two.jsonl",
                     text_a_column="review", label_column="stars")
    assert tasks.primary_metric(binary) == "eval_f1"  # of the second label, "pos"


@pytest.mark.parametrize("content, flags, message", [
    ("review,stars\ngood,pos\n", dict(text_a_column="body"),
     "--text_a_column=body: {path} has no such column (columns: review, stars)"),
    ("review,stars\ngood,pos\nbad,neg\nfine\n", {},
     "{path}:4: no column 'stars' (the row has 1 columns)"),
    ("review,stars\ngood,pos\n  ,neg\n", {}, "{path}:3: column 'review' is empty"),
    ("review,stars\ngood,pos\nbad,meh\n", dict(labels="neg,pos"),
     "{path}:3: label 'meh' in column 'stars' is not one of neg, pos"),
    ("review,stars\ngood,pos\n", dict(labels="pos"), "--labels=pos: a classifier needs two"),
    ("review,stars\ngood,pos\nbad,neg\n", dict(metric="mcc"), "--metric=mcc: expected one of "
                                                               "accuracy, f1, precision, recall"),
    ("review,stars\ngood,x\nbad,2\n", dict(regression="true"),
     "{path}:2: column 'stars' is 'x', not a finite number"),
    ("good,pos\nbad,neg\n", dict(header="false", text_a_column="review"),
     "--text_a_column=review: with --header=false a column is its 1-based number"),
])
def test_bad_rows_and_columns_are_one_line_naming_file_line_and_column(tmp_path, content, flags,
                                                                       message):
    path = tmp_path / "train.csv"
    path.write_text(content)
    flags = dict(dict(input_format="csv", text_a_column="review", label_column="stars"), **flags)
    with pytest.raises(InputError) as error:
        examples(resolve(tmp_path, **flags))
    assert str(error.value).startswith(message.format(path=path)), str(error.value)
    assert "\n" not in str(error.value)


def test_jsonl_rows_name_their_line_and_field(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"text": "good", "label": "pos"}\n\n'
                                          '{"text": "bad"}\n')
    with pytest.raises(InputError, match=r"train.jsonl:3: no field 'label' \(--label_column"):
        resolve(tmp_path, input_format="jsonl", labels="neg,pos") and examples(
            resolve(tmp_path, input_format="jsonl", labels="neg,pos"))
    (tmp_path / "train.jsonl").write_text('{"text": 3, "label": "pos"}\n')
    with pytest.raises(InputError, match=r"train.jsonl:1: column 'text' is 3, expected text"):
        resolve(tmp_path, input_format="jsonl", labels="neg,pos")


def test_glue_name_with_user_flags_and_unknown_names_are_refused(tmp_path):
    with pytest.raises(UsageError, match="--input_format is for your own data, but "
                                         "--task_name=SST-2 is a GLUE task"):
        tasks.resolve("SST-2", str(tmp_path), {"input_format": "csv"})
    with pytest.raises(InputError, match="unknown task 'sst3': not a GLUE task"):
        tasks.canonical_task_name("sst3")
    with pytest.raises(UsageError, match="--train_file=absent.csv: not found in --data_dir"):
        resolve(tmp_path, input_format="csv", train_file="absent.csv")


def write_label_folders(root, texts_by_label):
    """IMDB's layout: <split>/<label>/<n>.txt."""
    for split in ("train", "test"):
        for label, texts in texts_by_label.items():
            folder = root / split / label
            folder.mkdir(parents=True)
            for index, text in enumerate(texts):
                (folder / f"{index}_7.txt").write_text(text)
    (root / "train" / "unsup").mkdir()  # IMDB's unlabelled reviews: not a label
    (root / "task.json").write_text(json.dumps({
        "name": "IMDB", "input_format": "folders", "train_file": "train", "dev_file": "test",
        "labels": sorted(texts_by_label), "truncation": "head_tail"}))
    return str(root / "task.json")


def test_label_folders_read_as_imdb_ships_them(tmp_path):
    task_file = write_label_folders(tmp_path, {"pos": ["good fun", "great"], "neg": ["awful"]})
    spec = tasks.resolve(task_file, str(tmp_path), {})
    assert examples(spec) == [("awful", None, "neg"), ("good fun", None, "pos"),
                              ("great", None, "pos")]
    assert len(examples(spec, "dev")) == 3
    assert tasks.get_processor(spec).truncation == "head_tail"


def test_head_tail_keeps_the_start_and_the_end():
    tokens = [str(index) for index in range(1000)]
    kept = features.truncate_single(tokens, 510, "head_tail")
    assert kept == tokens[:128] + tokens[-382:]  # Sun et al.'s 128 + 382
    assert features.truncate_single(tokens, 510, "head") == tokens[:510]
    assert features.truncate_single(tokens[:20], 510, "head_tail") == tokens[:20]


def test_in_graph_head_tail_is_the_python_one(tmp_path):
    vocab_file = write_vocab(tmp_path)
    words = [word for word in TINY_VOCAB if word.isalpha()]
    rng = np.random.RandomState(0)
    pairs = [(" ".join(rng.choice(words, length)), None) for length in (5, 40, 61, 200)]
    pairs.append(("the cat sat", "a dog"))  # a pair is still trimmed from its ends
    tokenizer = tokenization.create_tokenizer(vocab_file, True)
    expected = inference.encode(tokenizer, pairs, 32, "head_tail")
    got = export.encode_text(tf.constant([a for a, _ in pairs]),
                             tf.constant([b or "" for _, b in pairs]),
                             export.vocab_table(vocab_file), True, 32, "head_tail")
    for want, have in zip(expected, got):
        np.testing.assert_array_equal(want, have.numpy())
    head, tail = features.head_tail_split(30)
    ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(pairs[2][0]))
    assert list(expected[0][2][1:-1]) == ids[:head] + ids[-tail:]


# Processes: a 3-class CSV trains, evaluates macro-F1 and exports ---------------------------------
def run_module(module, *flags):
    return subprocess.run([sys.executable, "-m", module, *map(str, flags)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT)


def queue_csv(rows):
    return "id,body,queue\n" + "".join(f'{index},"{text}",{label}\n'
                                       for index, (text, label) in enumerate(rows))


USER_FLAGS = ["--task_name=tickets", "--input_format=csv", "--text_a_column=body",
              "--label_column=queue"]


@pytest.fixture(scope="module")
def trained_tickets(tmp_path_factory):
    root = tmp_path_factory.mktemp("tickets")
    data = root / "data"
    data.mkdir()
    (data / "train.csv").write_text(queue_csv(QUEUE_ROWS * 8))
    (data / "dev.csv").write_text(queue_csv(QUEUE_ROWS))
    (data / "test.csv").write_text("id,body\n0,the cat sat\n1,a great film\n")
    write_small_model(root / "pretrained")
    process = run_module(
        "bert.run_classifier", *USER_FLAGS, f"--data_dir={data}",
        f"--vocab_file={root / 'pretrained' / 'vocab.txt'}",
        f"--bert_config_file={root / 'pretrained' / 'bert_config.json'}",
        f"--init_checkpoint={root / 'pretrained'}", f"--output_dir={root / 'train'}",
        f"--max_seq_length={SEQ}", "--train_batch_size=8", "--learning_rate=3e-3",
        "--num_train_epochs=10", "--do_train", "--do_eval", "--do_predict")
    assert process.returncode == 0, process.stderr[-3000:]
    config = modeling.BertConfig.from_json_file(str(root / "pretrained" / "bert_config.json"))
    model_folder.write_from_training_checkpoint(
        tf.train.latest_checkpoint(str(root / "train")), str(root / "model"), config,
        str(root / "pretrained" / "vocab.txt"),
        keep=(r"^bert/", r"^output_weights$", r"^output_bias$"), step="test", source="test")
    return root


def test_three_class_csv_trains_and_evaluates_macro_f1(trained_tickets):
    results = dict(line.split(" = ") for line in
                   (trained_tickets / "train" / "eval_results.txt").read_text().splitlines()
                   if " = " in line)
    assert {"eval_accuracy", "eval_macro_f1"} <= set(results)
    assert float(results["eval_accuracy"]) > 0.5  # 3 balanced classes: chance is 1/3
    submission = (trained_tickets / "train" / "tickets.tsv").read_text().splitlines()
    assert submission[0] == "index\tprediction" and len(submission) == 3
    assert {line.split("\t")[1] for line in submission[1:]} <= {"cats", "dogs", "films"}


def test_three_class_model_exports_with_its_labels_and_dev_metric(trained_tickets):
    model_dir = trained_tickets / "model"
    out = trained_tickets / "export"
    process = run_module("deploy.export", f"--model_dir={model_dir}", f"--output_dir={out}",
                         f"--max_seq_length={SEQ}", *USER_FLAGS,
                         f"--data_dir={trained_tickets / 'data'}")
    assert process.returncode == 0, process.stderr[-3000:]
    summary = json.loads((out / "export.json").read_text())
    assert summary["labels"] == ["cats", "dogs", "films"]
    assert summary["dev"]["metric"] == "eval_accuracy" and summary["dev"]["examples"] == 6
    assert summary["dev"]["checkpoint"] == summary["dev"]["onnx"] == summary["dev"]["saved_model"]
    assert json.loads(summary["task_name"])["name"] == "tickets"


def test_a_wrong_column_on_the_command_line_is_one_line_and_writes_nothing(trained_tickets,
                                                                           tmp_path):
    flags = [flag.replace("=body", "=text") for flag in USER_FLAGS]
    process = run_module(
        "bert.run_classifier", *flags, f"--data_dir={trained_tickets / 'data'}",
        f"--vocab_file={trained_tickets / 'pretrained' / 'vocab.txt'}",
        f"--bert_config_file={trained_tickets / 'pretrained' / 'bert_config.json'}",
        f"--init_checkpoint={trained_tickets / 'pretrained'}", f"--output_dir={tmp_path / 'o'}",
        "--do_train")
    assert process.returncode == 1
    lines = process.stderr.strip().splitlines()
    assert lines[-1] == (f"run_classifier: error: --text_a_column=text: "
                         f"{trained_tickets / 'data' / 'train.csv'} has no such column "
                         "(columns: id, body, queue)"), lines[-1]
    assert not (tmp_path / "o").exists()


def entry_point_commands(root, out):
    """Each command that takes --task_name, with enough flags to reach the task."""
    model, data = root / "pretrained", root / "data"
    task = [f"--data_dir={data}", "--task_name=tickets", "--input_format=csv",
            "--text_a_column=text", "--label_column=queue"]
    classifier = [*task, f"--init_checkpoint={model}", f"--output_dir={out}", "--do_train",
                  f"--vocab_file={model / 'vocab.txt'}",
                  f"--bert_config_file={model / 'bert_config.json'}"]
    return {
        "flop.run_classifier": [*classifier, "--target_sparsity=0.5"],
        "prune_ofa.run_classifier": [*classifier, f"--teacher_model_dir={model}"],
        "distill.run_distill": [*classifier, f"--teacher_model_dir={model}"],
        "tr_bert.run_tr_bert": [*classifier, "--train_init"],
        "power_bert.main": [f"--DATA_DIR={data}", "--TASK=tickets", "--input_format=csv",
                            "--text_a_column=text", "--label_column=queue",
                            f"--CHECKPOINT_PATH={model}", f"--OUTPUT_DIR={out}"],
        "distill.search": [*task, f"--model_dir={model}", f"--output_dir={out}"],
        "distill.extract": [*task, f"--model_dir={model}", f"--output_dir={out}",
                            "--config=absent.json"],
        "deploy.compress": [*task, f"--model_dir={model}", f"--output_dir={out}"],
        "deploy.export": [*task, f"--model_dir={root / 'model'}", f"--output_dir={out}",
                          f"--max_seq_length={SEQ}"],
        "deploy.benchmark": [*task, str(model), f"--output_dir={out}"],
    }


# One command per kind of edge runs in CI's set (absl's is test_a_wrong_column_... above); the
# others share those edges' code and run in the slow set.
FAST_EDGES = ("power_bert.main", "deploy.compress", "distill.search")


@pytest.mark.parametrize("module", [
    module if module in FAST_EDGES else pytest.param(module, marks=pytest.mark.slow)
    for module in sorted(entry_point_commands(REPO_ROOT, REPO_ROOT))])
def test_every_entry_point_names_a_wrong_column_in_one_line(trained_tickets, tmp_path, module):
    flags = entry_point_commands(trained_tickets, tmp_path / "out")[module]
    process = run_module(module, *flags)
    assert process.returncode == 1, process.stderr[-2000:]
    last = process.stderr.strip().splitlines()[-1]
    assert "--text_a_column=text: " in last and "has no such column" in last, last
    assert "Traceback" not in process.stderr
    assert not (tmp_path / "out").exists()




LONG_DOCUMENT_LAYOUTS = {  # a few rows of each set as download_glue.py leaves it
    "IMDB": {"train/pos/0_9.txt": "great fun", "train/neg/0_2.txt": "dull",
             "test/pos/1_8.txt": "good", "test/neg/1_1.txt": "awful"},
    "Yelp-5": {"train.csv": '"5","great fun\\nand good"\n"1","awful"\n"3","the plot"\n',
               "test.csv": '"2","bad"\n'},
    "20NG": {"train.jsonl": '{"text": "the cat", "label": "rec.pets"}\n'
                            '{"text": "a film", "label": "rec.arts"}\n',
             "test.jsonl": '{"text": "a dog", "label": "rec.pets"}\n'},
    "Hyperpartisan": {name: '{"id": "1", "text": "Title\\nit was bad", "label": "true"}\n'
                            '{"id": "2", "text": "Title\\nit was good", "label": "false"}\n'
                      for name in ("train.jsonl", "dev.jsonl", "test.jsonl")},
}


@pytest.mark.parametrize("name", sorted(LONG_DOCUMENT_LAYOUTS))
def test_every_task_file_the_downloader_writes_reads(tmp_path, name):
    folder = tmp_path / name
    for relative, content in LONG_DOCUMENT_LAYOUTS[name].items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(content)
    (folder / "task.json").write_text(json.dumps(load_downloader().TASK_DESCRIPTIONS[name]))
    spec = tasks.resolve(str(folder / "task.json"), str(folder), {})
    processor = tasks.get_processor(spec)
    train, dev = processor.get_train_examples(), processor.get_dev_examples()
    assert train and dev and processor.truncation == "head_tail"
    assert {example.label for example in train + dev} <= set(processor.get_labels())
    if name == "Yelp-5":  # no header: columns by number, the label first
        assert (train[0].text_a, train[0].label) == ("great fun\\nand good", "5")
        assert processor.get_labels() == ["1", "2", "3", "4", "5"]


@pytest.mark.slow
def test_the_compound_recipe_runs_on_a_jsonl_task_and_a_changed_column_is_a_new_run(tmp_path):
    """deploy.compress's fixed chain (fine-tune, factorize, FLOP, remove_mask, PoWER-BERT,
    export) on JSON lines with named fields; the shipped export.json names the task. The same
    output folder with another label field reuses nothing: every step runs again."""
    write_small_model(tmp_path / "pretrained")
    data = tmp_path / "data"
    data.mkdir()
    rows = [(text, label) for text, label in ROWS] * 8
    for split in ("train", "dev"):
        (data / f"{split}.jsonl").write_text("".join(
            json.dumps({"review": text, "stars": label, "other": "neg"}) + "\n"
            for text, label in rows))
    columns = ["--input_format=jsonl", "--text_a_column=review", "--label_column=stars"]
    command = [flag.replace("--task_name=SST-2", "--task_name=reviews")
               for flag in compress_command(tmp_path, tmp_path / "out")]
    process = subprocess.run(command + columns, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=TIMEOUT)
    assert process.returncode == 0, process.stderr[-3000:]
    exported = json.loads(next((tmp_path / "out").glob("*export*/export.json")).read_text())
    assert json.loads(exported["task_name"])["label_column"] == "stars"
    assert exported["labels"] == ["neg", "pos"] and exported["dev"]["examples"] == len(rows)
    changed = subprocess.run(command + columns[:-1] + ["--label_column=other",
                                                       "--labels=neg,pos"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert "already done, skipped" not in changed.stdout  # every step ran again
    assert f"{compress.FINE_TUNE_DIR}: done in" in changed.stdout
