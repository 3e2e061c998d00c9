#!/bin/bash
# The demo's SST-2 fine-tune (2000 sentences, 64 tokens, 2 epochs, batch 32, lr 5e-5) twice: from
# GLUE's tsv by task name, and from the same rows written as a CSV with named columns (quoted
# text, other column names, label words instead of 0/1). Same data order, same seed: the dev
# metrics must agree. Run from a snapshot worktree (git worktree add --detach /tmp/snap HEAD).
set -eu
cd "${SNAPSHOT:-/tmp/snap}"
PY=/work/main/.venv/bin/python
GLUE=${GLUE:-/work/shared/glue/SST-2}
OUT=${OUT:-/work/main/runs/user_data}
mkdir -p "$OUT"
[ -f "$OUT/minilm/bert_config.json" ] || $PY -m bert.convert_hf \
  --hf_dir=/work/shared/models/all-MiniLM-L6-v2 --output_dir="$OUT/minilm"
$PY - "$GLUE" "$OUT/csv" <<'PYEOF'
import csv, os, sys
source, target = sys.argv[1:]
os.makedirs(target, exist_ok=True)
words = {"0": "negative", "1": "positive"}
for split in ("train", "dev"):
    with open(f"{source}/{split}.tsv", encoding="utf-8") as tsv:
        rows = [line.rstrip("\n").split("\t") for line in tsv][1:]
    with open(f"{target}/{split}.csv", "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(["review_id", "review", "sentiment"])
        writer.writerows([index, text, words[label]] for index, (text, label) in enumerate(rows))
PYEOF
COMMON=(--vocab_file="$OUT/minilm/vocab.txt" --bert_config_file="$OUT/minilm/bert_config.json"
  --init_checkpoint="$OUT/minilm" --max_seq_length=64 --train_batch_size=32 --eval_batch_size=32
  --learning_rate=5e-5 --num_train_epochs=2 --max_train_examples=2000 --do_train --do_eval)
echo "== $(date +%T) GLUE path"
$PY -m bert.run_classifier --task_name=SST-2 --data_dir="$GLUE" --output_dir="$OUT/glue" \
  "${COMMON[@]}" > "$OUT/glue.log" 2>&1
cat "$OUT/glue/eval_results.txt"
echo "== $(date +%T) CSV path"
$PY -m bert.run_classifier --task_name=sst2_csv --data_dir="$OUT/csv" --input_format=csv \
  --text_a_column=review --label_column=sentiment --output_dir="$OUT/csv_run" \
  "${COMMON[@]}" > "$OUT/csv.log" 2>&1
cat "$OUT/csv_run/eval_results.txt"
echo "== $(date +%T) done"
