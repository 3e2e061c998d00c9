"""Writes a small synthetic sentiment task in GLUE SST-2's layout, for the demo when no GLUE
data is present and none can be downloaded. It is NOT SST-2: scores on it say nothing about SST-2.

    python datasets/sample_task.py --output_dir datasets/sample/SST-2

Sentences come from templates (a subject, an opinion word, optionally negated, and sometimes a
second clause after "but" that decides the label), so the label follows from the words and a
model must read negation and contrast to get it right. The same seed writes the same bytes.
Standard library only, like download_glue.py.
"""
import argparse
import os
import random
import sys

TRAIN_ROWS = 240
DEV_ROWS = 80
TEST_ROWS = 40
SEED = 2026

SUBJECTS = ["the film", "this movie", "the plot", "the acting", "the script", "the ending",
            "the soundtrack", "the cast", "the story", "the dialogue", "the director's work",
            "the camera work", "the pacing", "the final act", "the lead performance"]
POSITIVE = ["wonderful", "moving", "clever", "gripping", "funny", "charming", "beautiful",
            "sharp", "warm", "thrilling", "delightful", "memorable"]
NEGATIVE = ["dull", "clumsy", "tedious", "shallow", "boring", "messy", "flat", "predictable",
            "forgettable", "lifeless", "awkward", "tiresome"]
INTENSIFIERS = ["", "", "very ", "truly ", "rather ", "quite "]
NEGATED_INTENSIFIERS = ["", "", "very "]  # "not rather dull" is not English
OPENERS = ["", "", "honestly , ", "in the end , ", "overall , "]
NEGATION_SHARE = 0.3  # clauses that say "is not": the model must read the negation
CONTRAST_SHARE = 0.3  # sentences whose first clause says the opposite of the label


def clause(rng, positive):
    """'<subject> is [not] <opinion>': negating the opposite opinion gives the wanted polarity."""
    negated = rng.random() < NEGATION_SHARE
    words = NEGATIVE if positive == negated else POSITIVE
    verb, intensifiers = ("is not", NEGATED_INTENSIFIERS) if negated else ("is", INTENSIFIERS)
    return f"{rng.choice(SUBJECTS)} {verb} {rng.choice(intensifiers)}{rng.choice(words)}"


def sentence(rng, label):
    """One sentence whose polarity is ``label`` (1 positive); after "but", the second clause
    decides."""
    if rng.random() < CONTRAST_SHARE:
        text = f"{clause(rng, not label)} , but {clause(rng, bool(label))}"
    else:
        text = clause(rng, bool(label))
    return f"{rng.choice(OPENERS)}{text} ."


def rows(rng, count, seen):
    """``count`` new sentences, alternating labels, none already in ``seen``."""
    result = []
    while len(result) < count:
        label = len(result) % 2
        text = sentence(rng, label)
        if text not in seen:
            seen.add(text)
            result.append((text, label))
    return result


def write_task(output_dir, seed=SEED):
    """train.tsv and dev.tsv (sentence, label) and test.tsv (index, sentence), disjoint."""
    rng = random.Random(seed)
    seen = set()
    train, dev, test = (rows(rng, count, seen) for count in (TRAIN_ROWS, DEV_ROWS, TEST_ROWS))
    os.makedirs(output_dir, exist_ok=True)
    for split, split_rows in (("train", train), ("dev", dev)):
        lines = ["sentence\tlabel"] + [f"{text}\t{label}" for text, label in split_rows]
        write_lines(os.path.join(output_dir, f"{split}.tsv"), lines)
    lines = ["index\tsentence"] + [f"{index}\t{text}" for index, (text, _) in enumerate(test)]
    write_lines(os.path.join(output_dir, "test.tsv"), lines)


def write_lines(path, lines):
    """Written beside and renamed into place: a killed run leaves no half file."""
    partial = f"{path}.tmp-{os.getpid()}"
    with open(partial, "w", encoding="utf-8", newline="\n") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(partial, path)


class ArgumentParser(argparse.ArgumentParser):
    """A bad command line is one line and exit 1, as every entry point of the project."""

    def error(self, message):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(1)


def main(argv=None):
    parser = ArgumentParser(prog="sample_task", description=__doc__.split("\n")[0],
                            allow_abbrev=False)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    try:
        write_task(args.output_dir, args.seed)
    except OSError as error:
        print(f"sample_task: error: --output_dir {args.output_dir}: {error.strerror}",
              file=sys.stderr)
        return 1
    print(f"wrote {TRAIN_ROWS}/{DEV_ROWS}/{TEST_ROWS} train/dev/test rows into {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
