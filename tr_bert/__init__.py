"""TR-BERT: per-example token reduction learned by reinforcement learning (Ye et al., NAACL 2021).

At a few reduction layers (``--reduction_layers``, 0-based, default 2,4) a small policy network
reads each token's hidden state and keeps or skips it; skipped tokens leave the computation, so
every example costs what its own decisions say. Pieces: ``policy`` (the network), ``token_selectors``
(sampling / p > 0.5, gather to the front, batches cut to their longest kept count), ``method``
(REINFORCE with reward log p(gold) − α × kept share, moving-average or batch-mean baseline,
imitation of a guide, distillation; ``Inference`` and ``from_config`` for model folders whose
config carries ``tr_bert``), ``annotations`` (the fine-tuned model's token importance and logits
on the train features), ``run_tr_bert`` (the seed's stages).

Usage (a fine-tuned model folder FT; each stage writes OUT/<stage>/, a re-run resumes):

    python -m tr_bert.run_tr_bert --task_name=MRPC --data_dir=glue/MRPC --init_checkpoint=FT \\
        --output_dir=OUT --max_train_examples=2000 --do_eval_grad --do_eval_logits
    python -m tr_bert.run_tr_bert ... --init_checkpoint=FT --do_train --train_rl \\
        --alpha=0.3 --guide_rate=0.5 --num_train_epochs=5          # -> OUT/train_rl/model
    python -m tr_bert.run_tr_bert ... --init_checkpoint=OUT/train_rl/model --do_train \\
        --train_both --train_teacher --learning_rate=2e-5           # -> OUT/train_both/model
    python -m tr_bert.run_tr_bert ... --init_checkpoint=OUT/train_both/model --do_eval
    python -m deploy.benchmark dense=FT tr_bert=OUT/train_rl/model --task_name=MRPC \\
        --data_dir=glue/MRPC [--long_inputs --max_seq_length=512]

Optional first stage: ``--do_train --train_init`` (the policy imitates "keep the tokens that
receive the most attention", BERT frozen); its model folder is then the RL stage's
``--init_checkpoint``. ``--guide_dir`` / ``--logits_dir`` point an RL or joint stage in another
``--output_dir`` (an α sweep) at one set of annotations. Every stage's model folder runs anywhere
a model folder does (bert.run_classifier, deploy.export, deploy.benchmark) from its config alone.
"""
