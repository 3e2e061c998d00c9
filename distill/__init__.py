"""Bort-style: sub-architecture search against measured latency, extraction from the teacher, distillation.

Usage, from a fine-tuned teacher model folder to a distilled student (each step writes a folder
the next one reads; re-running a step resumes it):

    # 1. search: candidates ⟨layers, heads, hidden, intermediate⟩ timed on this machine beside
    #    the teacher, ranked by the teacher's importance they keep; the Pareto front and one
    #    chosen config per budget (importance.npz is computed here from --task_name/--data_dir)
    python -m distill.search --model_dir runs/compress_MRPC/1_fine_tune/model \\
        --task_name MRPC --data_dir ../shared/glue/MRPC --speedup 3,4,6 \\
        --output_dir search_MRPC
    # 2. extract: the teacher's most important layers, heads, FFN neurons and hidden
    #    dimensions, as a plain model folder, with its dev metric before any training
    python -m distill.extract --model_dir runs/compress_MRPC/1_fine_tune/model \\
        --config search_MRPC/chosen_config_x3.json --output_dir students/MRPC_x3 \\
        --task_name MRPC --data_dir ../shared/glue/MRPC
    # 3. distil on the task (soft logits, hidden states, attention maps; see run_distill)
    python -m distill.run_distill --task_name=MRPC --do_train --do_eval \\
        --data_dir=../shared/glue/MRPC --init_checkpoint=students/MRPC_x3 \\
        --teacher_model_dir=runs/compress_MRPC/1_fine_tune/model --output_dir=distilled/MRPC_x3

Modules: ``importance`` (gradient scores of heads, neurons, hidden dimensions, layers),
``extract`` (the student's weights from the teacher's), ``search`` (the latency-measured front),
``method`` and ``run_distill`` (task distillation), ``pretraining`` (pre-training distillation
from raw text, on the core's ``bert.pretraining_data`` and ``bert.pretraining``), ``sweep``
(Bort's fine-tuning grid with a best-per-task table). Console scripts: distill-search, distill-extract, distill-run, distill-pretraining-data,
distill-pretrain, distill-sweep.
"""
