"""Prune Once for All (Zafrir et al., 2021): gradual magnitude pruning with distillation, the
pattern locked in every later step, and quantization-aware training for a sparse INT8 model.

    schedule.py   the cubic sparsity schedule (Zhu & Gupta) and its settings
    masks.py      magnitude masks: unstructured or in 1x4 / 4x1 blocks
    quantize.py   fake quantization with learned (moving-average) activation ranges
    method.py     the method: pruning, pattern lock, distillation, QAT through the core's hooks
    pretrain.py   stage 1: masked-LM pre-training with pruning and distillation on raw text
    run_classifier.py  stage 2: a task's fine-tuning with the pattern locked, then QAT
    deployment.py what export needs: the learned INT8 ranges of a QAT model folder
"""
