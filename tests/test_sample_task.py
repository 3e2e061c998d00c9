"""datasets/sample_task.py: the demo's fallback task, written in SST-2's layout by code."""
import importlib.util
import random
import subprocess
import sys

from conftest import REPO_ROOT

from bert import glue

SCRIPT = REPO_ROOT / "datasets" / "sample_task.py"
EXIT_INPUT_ERROR = 1
TIMEOUT = 60


def load_sample_task():
    """Imported by path: datasets/ is a data folder, not a package."""
    spec = importlib.util.spec_from_file_location("sample_task", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sample_task = load_sample_task()


def test_the_glue_reader_reads_it_balanced_and_disjoint(tmp_path):
    sample_task.write_task(tmp_path)
    processor = glue.PROCESSORS["sst-2"]()
    train = processor.get_train_examples(str(tmp_path))
    dev = processor.get_dev_examples(str(tmp_path))
    test = processor.get_test_examples(str(tmp_path))
    assert (len(train), len(dev), len(test)) == (sample_task.TRAIN_ROWS, sample_task.DEV_ROWS,
                                                 sample_task.TEST_ROWS)
    for examples in (train, dev):
        labels = [example.label for example in examples]
        assert labels.count("1") == labels.count("0") == len(examples) // 2
    texts = [{example.text_a for example in split} for split in (train, dev, test)]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])


def test_labels_follow_negation_and_contrast():
    """The last clause decides; 'is not <opinion>' flips the opinion word's polarity."""
    rng = random.Random(0)
    positive, negative = set(sample_task.POSITIVE), set(sample_task.NEGATIVE)
    for index in range(500):
        label = index % 2
        words = sample_task.sentence(rng, label).rstrip(" .").split(" , but ")[-1].split()
        polarity = words[-1] in positive
        assert words[-1] in positive | negative
        assert (polarity != ("not" in words)) == bool(label)


def test_same_seed_same_bytes_and_a_bad_command_line_is_one_line(tmp_path):
    for folder in ("a", "b"):
        process = subprocess.run([sys.executable, str(SCRIPT), f"--output_dir={tmp_path / folder}"],
                                 capture_output=True, text=True, timeout=TIMEOUT)
        assert process.returncode == 0, process.stderr
    for split in ("train", "dev", "test"):
        assert (tmp_path / "a" / f"{split}.tsv").read_bytes() == \
            (tmp_path / "b" / f"{split}.tsv").read_bytes()
    other = tmp_path / "other"
    sample_task.write_task(other, seed=sample_task.SEED + 1)
    assert (other / "train.tsv").read_bytes() != (tmp_path / "a" / "train.tsv").read_bytes()

    bad = subprocess.run([sys.executable, str(SCRIPT), "--output"], capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert bad.returncode == EXIT_INPUT_ERROR
    assert bad.stderr.strip().count("\n") == 0 and "--output" in bad.stderr
