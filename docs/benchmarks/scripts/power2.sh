#!/bin/bash
# PoWER-BERT with a search strong enough to remove tokens in 2000 examples / 1 epoch.
cd "$(dirname "$0")/../../.."  # the repository root
for task in SST-2 STS-B; do
  nice -n 10 .venv/bin/python -m power_bert.main --TASK $task --CHECKPOINT_PATH runs/compress_$task/1_fine_tune/model \
    --DATA_DIR ../shared/glue/$task --OUTPUT_DIR runs/power2_$task --EPOCH 1 --MAX_SEQ_LENGTH 128 \
    --MAX_TRAIN_EXAMPLES 2000 --BENCHMARK_ITERATIONS 0 --LR_SOFT_EXTRACT 0.03 --LAMBDA 0.003 --BATCH_SIZE 32 > runs/power2_$task.log 2>&1
done
