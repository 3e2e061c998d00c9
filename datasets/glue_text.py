"""Writes the train sentences of GLUE tasks as a pre-training corpus (one sentence per line, a
blank line between documents), for masked-LM pre-training where no Wikipedia is at hand:

    python datasets/glue_text.py --glue_dir ../shared/glue --output_file ofa/glue_text.txt
    python -m bert.pretraining_data --input_file ofa/glue_text.txt ...

Each training example is one document: its sentence, or both sentences of a pair (a pair is
two consecutive sentences, as in a real document). An example seen before is written once.
Only train splits are read: dev sentences must stay unseen by any stage before evaluation.
"""
import argparse
import os
import sys

from bert import glue

DEFAULT_TASKS = ("CoLA", "SST-2", "MRPC", "STS-B")


def documents(glue_dir, tasks):
    """[[sentence, ...] per train example] of every task with a folder in ``glue_dir``."""
    seen, found = set(), []
    for task in tasks:
        folder = os.path.join(glue_dir, task)
        if not os.path.isdir(folder):
            print(f"skipped {task}: no folder {folder}", file=sys.stderr)
            continue
        for example in glue.get_processor(task).get_train_examples(folder):
            document = tuple(text.strip() for text in (example.text_a, example.text_b)
                             if text and text.strip())
            if document and document not in seen:
                seen.add(document)
                found.append(list(document))
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", required=True, help="folder with one folder per task")
    parser.add_argument("--output_file", required=True)
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    args = parser.parse_args(argv)
    found = documents(args.glue_dir, args.tasks.split(","))
    if not found:
        print(f"glue_text: error: --glue_dir={args.glue_dir}: no train sentences of "
              f"{args.tasks}", file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(os.path.abspath(args.output_file)), exist_ok=True)
    with open(args.output_file, "w", encoding="utf-8") as handle:
        handle.write("\n\n".join("\n".join(document) for document in found) + "\n")
    sentences = sum(len(document) for document in found)
    print(f"wrote {args.output_file}: {len(found)} documents, {sentences} sentences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
