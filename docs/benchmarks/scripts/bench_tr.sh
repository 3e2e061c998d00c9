#!/bin/bash
# TR-BERT benchmark rows per task (dev, seq 128, batch 1 and 32), then long inputs on MRPC.
# Run it alone: nothing else may share the cores while it times.
cd "$(dirname "$0")/../../.."  # the repository root
PY=".venv/bin/python"
declare -A POWER=([MRPC]="power=runs/power_MRPC/3_retrain/model" [STS-B]="power=runs/power_STS-B/3_retrain/model" [SST-2]="power=runs/power_SST-2/3_retrain/model power_strong=runs/power2_SST-2/3_retrain/model")
for T in MRPC STS-B SST-2; do
  O=runs/tr_bert_$T
  $PY -m deploy.benchmark dense=runs/compress_$T/1_fine_tune/model ${POWER[$T]} \
    tr_a0.1=$O/alpha_0.1/train_rl/model tr_a0.3=$O/alpha_0.3/train_rl/model tr_a1=$O/alpha_1.0/train_rl/model \
    tr_g0.1_a1=$O/g0.1_alpha_1.0/train_rl/model tr_g0.1_a2=$O/g0.1_alpha_2.0/train_rl/model \
    tr_g0.1_a4=$O/g0.1_alpha_4.0/train_rl/model tr_joint_a0.3=$O/alpha_0.3/train_both/model \
    --reference_onnx runs/bench_$T/reference --task_name $T --data_dir ../shared/glue/$T \
    --max_seq_length 128 --batch_size 32 --iterations 10 --threads 2 --output_dir runs/bench_tr_$T > runs/bench_tr_$T.log 2>&1
done
for L in 128 256 512; do
  $PY -m deploy.benchmark dense=runs/compress_MRPC/1_fine_tune/model power=runs/power_MRPC/3_retrain/model \
    tr_a0.3=runs/tr_bert_MRPC/alpha_0.3/train_rl/model tr_joint_a0.3=runs/tr_bert_MRPC/alpha_0.3/train_both/model \
    --reference_onnx runs/bench_MRPC/reference --task_name MRPC --data_dir ../shared/glue/MRPC --long_inputs \
    --max_seq_length $L --batch_size 8 --iterations 5 --threads 2 --output_dir runs/bench_tr_long_$L > runs/bench_tr_long_$L.log 2>&1
done
