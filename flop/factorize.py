"""Factorize every encoder kernel W [in, out] of a BERT checkpoint into P [in, r] · Q [r, out].

    python ./flop/factorize.py --bert_config_file=models/finetuned/bert_config.json \\
        --checkpoint=models/finetuned/bert_model.ckpt \\
        --output_dir=models/finetuned_f/bert_model_f.ckpt --finetuned

``--output_dir`` is a model folder, or (as in the FLOP seed) a checkpoint prefix inside one:
either way the folder gets the checkpoint, ``bert_config.json`` and the vocabulary, so the
pruning run's ``--bert_config_file``/``--vocab_file``/``--init_checkpoint`` all point into it.

FLOP prunes ranks, so the kernels must first be written as products whose inner dimension can
be gated. A *reduced* SVD W = U·Σ·Vᵀ with r = min(in, out) is exact and adds the fewest
parameters ((in+out)·r instead of in·out); √Σ goes to both factors so they have the same scale.
The pooler stays dense (FLOP prunes the encoder). The new folder's config lists every factorized
kernel's rank in ``kernel_ranks``, so ``BertModel`` rebuilds the factorized model from it alone.
"""
import logging
import os
import sys

import numpy as np

from bert import checkpoint, cli, model_folder, modeling

log = logging.getLogger("flop")

ENCODER_SCOPE = "bert/encoder"
# The kernels of one encoder layer, as named by modeling.kernel_key below layer_<i>/.
LAYER_KERNELS = ("attention/self/query", "attention/self/key", "attention/self/value",
                 "attention/output/dense", "intermediate/dense", "output/dense")
HEAD_VARIABLES = ("output_weights", "output_bias")
FACTOR_SUFFIXES = ("_p/kernel", "_q/kernel")
CHECKPOINT_SUFFIX = ".ckpt"
# Config keys of FLOP's intermediate models; a dense model's config has none of them.
METHOD_KEYS = ("kernel_ranks", "kept_ranks", "factorized", "pruned")
PROGRAM = "flop.factorize"


def encoder_kernel_keys(num_layers):
    return [f"layer_{index}/{kernel}" for index in range(num_layers) for kernel in LAYER_KERNELS]


def variable_prefix(key):
    """Checkpoint name of a kernel key without the leaf: 'bert/encoder/layer_0/.../query'."""
    return f"{ENCODER_SCOPE}/{key}"


def factor_names(key):
    return tuple(variable_prefix(key) + suffix for suffix in FACTOR_SUFFIXES)


def is_factorized(config, names):
    return bool(config.extra.get("factorized")) or any(
        name.endswith(FACTOR_SUFFIXES[0]) for name in names)


def factorize_kernel(kernel):
    """(P, Q) with P·Q = kernel, from the reduced SVD computed in float64."""
    u, sigma, vt = np.linalg.svd(kernel.astype(np.float64), full_matrices=False)
    root = np.sqrt(sigma)
    return (u * root).astype(np.float32), (root[:, np.newaxis] * vt).astype(np.float32)


def factorize_weights(config, values, keep_head):
    """Weights with every encoder kernel replaced by its factors, and the ranks used."""
    factorized = dict(values)
    if not keep_head:
        for name in HEAD_VARIABLES:
            factorized.pop(name, None)
    ranks = {}
    for key in encoder_kernel_keys(config.num_hidden_layers):
        name = variable_prefix(key) + "/kernel"
        if name not in factorized:
            raise checkpoint.CheckpointMismatchError(f"checkpoint has no {name} (expected a "
                                                     "BERT encoder matching the config)")
        kernel = factorized.pop(name)
        p_name, q_name = factor_names(key)
        factorized[p_name], factorized[q_name] = factorize_kernel(kernel)
        ranks[key] = int(min(kernel.shape))
        log.info("%s: %s -> P %s · Q %s", key, list(kernel.shape),
                 list(factorized[p_name].shape), list(factorized[q_name].shape))
    return factorized, ranks


def factorized_config(config, ranks):
    config = config.copy()
    config.extra["kernel_ranks"] = ranks
    config.extra["factorized"] = True
    return config


def dense_config(config):
    """The un-factorized model's config (FLOP's keys removed)."""
    config = config.copy()
    for key in METHOD_KEYS:
        config.extra.pop(key, None)
    return config


def split_output(output_dir):
    """(model folder, checkpoint name) of ``--output_dir``: a folder, or a prefix in one."""
    output_dir = output_dir.rstrip(os.sep)
    if output_dir.endswith(CHECKPOINT_SUFFIX):
        folder, name = os.path.split(output_dir)
        return folder or ".", name
    return output_dir, checkpoint.CHECKPOINT_NAME


def factorize(bert_config_file, checkpoint_path, output_dir, finetuned, vocab_file=None):
    """Write the factorized model folder; returns (folder, kernel_ranks)."""
    config = modeling.BertConfig.from_json_file(cli.require_file(
        bert_config_file, "bert_config_file", "the dense model's bert_config.json"))
    prefix = checkpoint.resolve_checkpoint(checkpoint_path, flag="checkpoint")
    folder, checkpoint_name = split_output(output_dir)
    cli.require_output_dir(folder, "output_dir")
    cli.require(os.path.abspath(folder) != os.path.abspath(os.path.dirname(prefix)),
                f"--output_dir={output_dir} is in the checkpoint's own folder; write the "
                "factorized model elsewhere")
    vocab_file = model_folder.file_from_folder(
        vocab_file, "vocab_file", os.path.dirname(os.path.abspath(bert_config_file)),
        "bert_config_file", checkpoint.find_vocab, model_folder.VOCAB_EXPECTED)
    values = checkpoint.read_checkpoint(prefix)
    cli.require(not is_factorized(config, values),
                f"--checkpoint={checkpoint_path} is already factorized (it has _p/_q kernels "
                "or a factorized config)")
    cli.require(not finetuned or HEAD_VARIABLES[0] in values,
                f"--finetuned: {prefix} has no classifier head ({HEAD_VARIABLES[0]}); drop "
                "--finetuned for a pretrained checkpoint")
    factorized, ranks = factorize_weights(config, values, keep_head=finetuned)
    flags = {"bert_config_file": bert_config_file, "checkpoint": checkpoint_path,
             "finetuned": finetuned}
    model_folder.write_model_folder(folder, factorized_config(config, ranks), vocab_file,
                                    factorized, step="flop_factorize", source=prefix,
                                    flags=flags, checkpoint_name=checkpoint_name)
    return folder, ranks


def main(argv=None):
    parser = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("--bert_config_file", required=True, help="config of the dense model")
    parser.add_argument("--checkpoint", required=True,
                        help="dense checkpoint prefix or model folder (pretrained or fine-tuned)")
    parser.add_argument("--output_dir", required=True,
                        help="factorized model folder to write, or a checkpoint prefix in it "
                             "(e.g. ..._f/bert_model_f.ckpt)")
    parser.add_argument("--finetuned", action="store_true",
                        help="keep the classifier head (output_weights/output_bias)")
    parser.add_argument("--vocab_file", help="default: vocab beside --bert_config_file")
    args = parser.parse_args(argv)
    cli.configure_logging()

    def run():
        written, ranks = factorize(args.bert_config_file, args.checkpoint, args.output_dir,
                                   args.finetuned, args.vocab_file)
        print(f"factorized {len(ranks)} encoder kernels; wrote {written}")

    return cli.run_main(run, PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
