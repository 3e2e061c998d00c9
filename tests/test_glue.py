"""GLUE processors on handmade files in the real GLUE layouts, on the real data, and the submission writer."""
import os

import numpy as np
import pytest


from bert import glue

MNLI_PREFIX = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t" \
              "sentence1_parse\tsentence2_parse\tsentence1\tsentence2"
MNLI_PARSES = "( A B )\t( C D )\t(ROOT A B)\t(ROOT C D)"
STSB_PREFIX = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
MRPC_HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"

# Per task: folder, {file: content}, the expected first train example (text_a, text_b, label),
# the expected first dev label, and the expected first test example (index, text_a, text_b).
FIXTURES = {
    "cola": ("CoLA", {
        "train.tsv": 'gj04\t1\t\tOur friends won\'t buy this "analysis".\ngj04\t0\t*\tThey drank the pub.\n',
        "dev.tsv": "gj04\t0\t*\tThe sailors rode the breeze clear.\ngj04\t1\t\tIt rained.",
        "test.tsv": "index\tsentence\n0\tBill whistled past the house.\n1\tIt snowed.\n",
    }, ('Our friends won\'t buy this "analysis".', None, "1"), "0",
        ("0", "Bill whistled past the house.", None)),
    "sst-2": ("SST-2", {
        "train.tsv": "sentence\tlabel\nhide new secretions from the parental units \t0\ngood \t1\n",
        "dev.tsv": "sentence\tlabel\nit 's a charming journey . \t1\n",
        "test.tsv": "index\tsentence\n0\tuneasy mishmash of styles .\n",
    }, ("hide new secretions from the parental units ", None, "0"), "1",
        ("0", "uneasy mishmash of styles .", None)),
    "mrpc": ("MRPC", {
        "train.tsv": MRPC_HEADER + '\n1\t702876\t702977\tAmrozi called him "the witness".\tHe said "the witness".\n',
        "dev.tsv": MRPC_HEADER + "\n0\t2029631\t2029565\tMagnarelli said.\tHis wife said.\n",
        "test.tsv": "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t1089874\t1089925\tPCCW's COO.\tThe COO.\n",
    }, ('Amrozi called him "the witness".', 'He said "the witness".', "1"), "0",
        ("0", "PCCW's COO.", "The COO.")),
    "sts-b": ("STS-B", {
        "train.tsv": STSB_PREFIX + "\tscore\n0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone"
                                   "\tA plane is taking off.\tAn air plane is taking off.\t5.000\n",
        "dev.tsv": STSB_PREFIX + "\tscore\n0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone"
                                 "\tA man dances.\tA man is dancing.\t4.750\n",
        "test.tsv": STSB_PREFIX + "\n7\tmain-captions\tMSRvid\t2012test\t0024\tnone\tnone"
                                  "\tA girl is styling her hair.\tA girl is brushing her hair.\n",
    }, ("A plane is taking off.", "An air plane is taking off.", 5.0), 4.75,
        ("7", "A girl is styling her hair.", "A girl is brushing her hair.")),
    "qqp": ("QQP", {
        "train.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                     "133273\t213221\t213222\tHow is the life of a math student?\tWhich level of math?\t0\n",
        "dev.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n201359\t303345\t303346\tWhy?\tWhy not?\t1\n",
        "test.tsv": "id\tquestion1\tquestion2\n0\tWould the idea work?\tWhat is the idea?\n",
    }, ("How is the life of a math student?", "Which level of math?", "0"), "1",
        ("0", "Would the idea work?", "What is the idea?")),
    "mnli": ("MNLI", {
        "train.tsv": MNLI_PREFIX + "\tlabel1\tgold_label\n"
                     f"0\t31193\t31193n\tgovernment\t{MNLI_PARSES}\tConceptually cream skimming.\t"
                     "Product and geography matter.\tneutral\tneutral\n",
        "dev_matched.tsv": MNLI_PREFIX + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
                           f"0\t63735\t63735n\tslate\t{MNLI_PARSES}\tThe new rights are nice.\t"
                           "Everyone loves them.\tneutral\tentailment\tneutral\tneutral\tneutral\tneutral\n",
        "test_matched.tsv": MNLI_PREFIX + f"\n0\t31493\t31493\ttravel\t{MNLI_PARSES}\tHierbas, ans seco.\tCaramel.\n",
        "dev_mismatched.tsv": MNLI_PREFIX + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
                              f"0\t75290\t75290c\tletters\t{MNLI_PARSES}\tYour contribution helped.\t"
                              "It did not help.\tcontradiction\tcontradiction\tcontradiction"
                              "\tcontradiction\tcontradiction\tcontradiction\n",
        "test_mismatched.tsv": MNLI_PREFIX + f"\n9\t1\t1n\tletters\t{MNLI_PARSES}\tMismatched one.\tTwo.\n",
    }, ("Conceptually cream skimming.", "Product and geography matter.", "neutral"), "neutral",
        ("0", "Hierbas, ans seco.", "Caramel.")),
    "qnli": ("QNLI", {
        "train.tsv": "index\tquestion\tsentence\tlabel\n0\tWhen?\tIn 1990.\tentailment\n",
        "dev.tsv": "index\tquestion\tsentence\tlabel\n0\tWhat?\tNothing.\tnot_entailment\n",
        "test.tsv": "index\tquestion\tsentence\n0\tWhich?\tThat one.\n",
    }, ("When?", "In 1990.", "entailment"), "not_entailment", ("0", "Which?", "That one.")),
    "rte": ("RTE", {
        "train.tsv": "index\tsentence1\tsentence2\tlabel\n0\tNo weapons found.\tWeapons found.\tnot_entailment\n",
        "dev.tsv": "index\tsentence1\tsentence2\tlabel\n0\tDana rode.\tDana moved.\tentailment\n",
        "test.tsv": "index\tsentence1\tsentence2\n0\tMangla was built.\tMangla exists.\n",
    }, ("No weapons found.", "Weapons found.", "not_entailment"), "entailment",
        ("0", "Mangla was built.", "Mangla exists.")),
    "wnli": ("WNLI", {
        "train.tsv": "index\tsentence1\tsentence2\tlabel\n0\tI stuck a pin.\tThe pin had a hole.\t1\n",
        "dev.tsv": "index\tsentence1\tsentence2\tlabel\n0\tThe drain is clogged.\tThe hair is clogged.\t0\n",
        "test.tsv": "index\tsentence1\tsentence2\n0\tMaude and Dora saw.\tThe trains saw.\n",
    }, ("I stuck a pin.", "The pin had a hole.", "1"), "0",
        ("0", "Maude and Dora saw.", "The trains saw.")),
}


def write_files(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_text(content, encoding="utf-8")
    return folder


@pytest.mark.parametrize("task", sorted(FIXTURES))
def test_processor_reads_every_split(tmp_path, task):
    folder_name, files, train_expected, dev_label, test_expected = FIXTURES[task]
    processor = glue.get_processor(task)
    assert processor.folder_name == folder_name
    data_dir = write_files(tmp_path / folder_name, files)

    train = processor.get_train_examples(data_dir)
    assert (train[0].text_a, train[0].text_b, train[0].label) == train_expected
    assert train[0].guid == "train-0" and train[0].test_index is None
    assert processor.get_dev_examples(data_dir)[0].label == dev_label

    test = processor.get_test_examples(data_dir)
    index, text_a, text_b = test_expected
    assert (test[0].test_index, test[0].guid, test[0].text_a, test[0].text_b) == \
        (index, f"test-{index}", text_a, text_b)
    assert test[0].label == (0.0 if processor.is_regression else processor.get_labels()[0])


def test_cola_keeps_every_row_and_label(tmp_path):
    data_dir = write_files(tmp_path / "CoLA", FIXTURES["cola"][1])
    processor = glue.ColaProcessor()
    assert [e.label for e in processor.get_train_examples(data_dir)] == ["1", "0"]
    # dev.tsv without a trailing newline, like the real CoLA dev file
    assert [e.text_a for e in processor.get_dev_examples(data_dir)][-1] == "It rained."


def test_mnli_mismatched_reads_mismatched_files(tmp_path):
    data_dir = write_files(tmp_path / "MNLI", FIXTURES["mnli"][1])
    processor = glue.get_processor("MNLI-MM")
    assert processor.folder_name == "MNLI"
    assert processor.get_train_examples(data_dir)[0].label == "neutral"
    assert processor.get_dev_examples(data_dir)[0].label == "contradiction"
    assert processor.get_test_examples(data_dir)[0].guid == "test-9"


def test_ax_is_test_only_with_mnli_labels(tmp_path):
    data_dir = write_files(tmp_path / "AX", {
        "diagnostic.tsv": "index\tsentence1\tsentence2\n0\tThe cat sat.\tThe cat did not sit.\n"})
    processor = glue.get_processor("ax")
    assert processor.get_labels() == glue.get_processor("mnli").get_labels()
    [example] = processor.get_test_examples(data_dir)
    assert (example.test_index, example.text_a, example.text_b) == ("0", "The cat sat.", "The cat did not sit.")
    for read in (processor.get_train_examples, processor.get_dev_examples):
        with pytest.raises(ValueError, match="test-only"):
            read(data_dir)


def test_labels_and_regression_flags():
    assert glue.get_processor("sts-b").is_regression and glue.get_processor("sts-b").get_labels() is None
    assert glue.get_processor("mnli").get_labels() == ["contradiction", "entailment", "neutral"]
    assert glue.get_processor("qnli").get_labels() == ["entailment", "not_entailment"]
    assert glue.get_processor("rte").get_labels() == ["entailment", "not_entailment"]
    for task in ("cola", "sst-2", "mrpc", "qqp", "wnli"):
        assert glue.get_processor(task).get_labels() == ["0", "1"]
        assert not glue.get_processor(task).is_regression


def test_task_tables_cover_every_task_and_alias():
    assert set(glue.TASK_NAMES) <= set(glue.PROCESSORS)
    for alias, task in {"sst2": "sst-2", "stsb": "sts-b", "mnli-m": "mnli"}.items():
        assert glue.PROCESSORS[alias] is glue.PROCESSORS[task]
        assert type(glue.get_processor(alias.upper())) is glue.PROCESSORS[task]
    assert set(glue.METRIC_FOR_TASK) == set(glue.SUBMISSION_FILE_NAMES) == set(glue.TASK_NAMES)
    assert glue.METRIC_FOR_TASK["cola"] == "eval_mcc"
    assert glue.METRIC_FOR_TASK["mrpc"] == glue.METRIC_FOR_TASK["qqp"] == "eval_f1"
    assert glue.METRIC_FOR_TASK["sts-b"] == "eval_spearman"
    assert glue.METRIC_FOR_TASK["sst-2"] == glue.get_processor("rte").primary_metric == "eval_accuracy"
    assert glue.SUBMISSION_FILE_NAMES["mnli"] == "MNLI-m.tsv"
    assert glue.SUBMISSION_FILE_NAMES["mnli-mm"] == "MNLI-mm.tsv"


def test_unknown_task_lists_valid_ones():
    with pytest.raises(ValueError) as error:
        glue.get_processor("squad")
    assert "'squad'" in str(error.value) and "cola" in str(error.value) and "mnli-mm" in str(error.value)


def test_short_row_names_file_line_and_column_counts(tmp_path):
    data_dir = write_files(tmp_path / "RTE", {
        "train.tsv": "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly a\n"})
    with pytest.raises(glue.GlueFormatError) as error:
        glue.RteProcessor().get_train_examples(data_dir)
    message = str(error.value)
    assert f"{data_dir / 'train.tsv'}:3:" in message
    assert "found 2 columns" in message and "at least 4" in message and "\n" not in message


def test_mnli_label_must_follow_both_sentences(tmp_path):
    row = f"0\t1\t1n\tslate\t{MNLI_PARSES}\tPremise.\tHypothesis.\n"
    data_dir = write_files(tmp_path / "MNLI", {"train.tsv": MNLI_PREFIX + "\n" + row})
    with pytest.raises(glue.GlueFormatError, match=r"train\.tsv:2: found 10 columns, expected at least 11"):
        glue.MnliProcessor().get_train_examples(data_dir)


def test_unknown_label_names_file_line_label_and_allowed(tmp_path):
    data_dir = write_files(tmp_path / "SST-2", {"dev.tsv": "sentence\tlabel\ngood\t1\nbad\tpositive\n"})
    with pytest.raises(glue.GlueFormatError) as error:
        glue.Sst2Processor().get_dev_examples(data_dir)
    message = str(error.value)
    assert "dev.tsv:3:" in message and "'positive'" in message and "0, 1" in message


def test_non_numeric_stsb_score(tmp_path):
    row = "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA.\tB.\tfive\n"
    data_dir = write_files(tmp_path / "STS-B", {"train.tsv": STSB_PREFIX + "\tscore\n" + row})
    with pytest.raises(glue.GlueFormatError, match=r"train\.tsv:2: .*'five'"):
        glue.StsbProcessor().get_train_examples(data_dir)


def test_missing_file_names_path_and_task(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        glue.QnliProcessor().get_dev_examples(tmp_path)
    assert str(tmp_path / "dev.tsv") in str(error.value) and "QNLI" in str(error.value)


def read_lines(path):
    return path.read_text(encoding="utf-8").split("\n")


def test_submission_maps_class_ids_to_label_names(tmp_path):
    data_dir = write_files(tmp_path / "RTE", {
        "test.tsv": "index\tsentence1\tsentence2\n0\ta\tb\n1\tc\td\n2\te\tf\n"})
    processor = glue.RteProcessor()
    examples = processor.get_test_examples(data_dir)
    path = tmp_path / "out" / glue.SUBMISSION_FILE_NAMES["rte"]
    glue.write_submission(path, processor, examples, np.array([1, 0, 1]))
    assert read_lines(path) == ["index\tprediction", "0\tnot_entailment", "1\tentailment",
                                "2\tnot_entailment", ""]
    assert os.listdir(path.parent) == ["RTE.tsv"]  # the temporary file was renamed, not left behind

    glue.write_submission(path, processor, examples, ["entailment"] * 3)
    assert read_lines(path)[1:] == ["0\tentailment", "1\tentailment", "2\tentailment", ""]


def test_submission_clips_and_rounds_stsb_scores(tmp_path):
    examples = [glue.InputExample(f"test-{i}", "a", "b", 0.0, test_index=str(i)) for i in (4, 8, 15)]
    path = tmp_path / "STS-B.tsv"
    glue.write_submission(path, glue.get_processor("stsb"), examples, np.array([-0.4, 2.34567, 5.9]))
    assert read_lines(path) == ["index\tprediction", "4\t0.000", "8\t2.346", "15\t5.000", ""]


def test_submission_rejects_bad_predictions(tmp_path):
    processor = glue.get_processor("mnli")
    examples = [glue.InputExample("test-0", "a", "b", "contradiction", test_index="0")]
    path = tmp_path / "MNLI-m.tsv"
    with pytest.raises(ValueError, match="1 test examples but 2 predictions"):
        glue.write_submission(path, processor, examples, [0, 1])
    with pytest.raises(ValueError, match="class id in 0..2"):
        glue.write_submission(path, processor, examples, [3])
    with pytest.raises(ValueError, match="not a test example"):
        glue.write_submission(path, processor, [glue.InputExample("dev-0", "a")], [0])
    assert not path.exists() and os.listdir(tmp_path) == []


REAL_COUNTS = {  # task: (train rows, dev rows, test rows)
    "cola": (8551, 1043, 1063),
    "sst-2": (67349, 872, 1821),
    "mrpc": (3668, 408, 1725),
    "sts-b": (5749, 1500, 1379),
}


@pytest.mark.parametrize("task", sorted(REAL_COUNTS))
def test_real_glue_row_counts_and_labels(glue_dir, task):
    processor = glue.get_processor(task)
    data_dir = glue_dir / processor.folder_name
    train = processor.get_train_examples(data_dir)
    dev = processor.get_dev_examples(data_dir)
    test = processor.get_test_examples(data_dir)
    assert (len(train), len(dev), len(test)) == REAL_COUNTS[task]
    assert [e.test_index for e in test] == [str(i) for i in range(len(test))]
    if processor.is_regression:
        scores = np.array([e.label for e in train + dev])
        assert scores.min() == 0.0 and scores.max() == 5.0
    else:
        assert {e.label for e in train} == {e.label for e in dev} == set(processor.get_labels())
    is_pair_task = task in ("mrpc", "sts-b")
    assert all((e.text_b is not None) == is_pair_task for e in train + dev + test)
