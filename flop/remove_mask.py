"""Turn a FLOP-masked checkpoint into the compact model it stands for, plus info.txt.

    python ./flop/remove_mask.py --checkpoint=prune_outputs/MRPC/<run>/best \\
        --output_folder_dir=models/compact

Each gated kernel computes x·P·diag(z)·Q with the deterministic gate z (what evaluation used).
z is folded into P's columns and the ranks with z = 0 are dropped, leaving k kept ranks. Speed
rule: factors cost k·(in+out) multiply-adds per token against in·out for one dense kernel, so
where k > in·out/(in+out) the factors are multiplied back into ``<name>/kernel`` (same function,
fewer FLOPs); where k = 0 the layer outputs its bias alone. ``kernel_ranks`` of the new config
lists the kernels that stay factored, so ``BertModel`` builds the compact model from the config.

info.txt (the seed's fields; "prunable kernels" are the factorized, gated encoder kernels):
  dense_total_params   prunable kernels in the factorized model, Σ (in+out)·rank
  dense_pruned_params  prunable kernels in the compact model: k·(in+out) where factored,
                       in·out where merged back, 0 where k = 0
  dense_origin_params  prunable kernels in the un-factorized model, Σ in·out
  dense_sparsity       1 − dense_pruned_params / dense_total_params
  non_kernel_params    all other parameters (embeddings, biases, LayerNorms, pooler, classifier
                       head): pruning leaves them as they are
  total_params         dense_origin_params + non_kernel_params (the original model)
  pruned_total_params  dense_pruned_params + non_kernel_params (the compact model)
  actual_compact_rate  pruned_total_params / total_params
then deterministic_sparsity (share of gated parameters the gates remove, the quantity training
drove to the target) and, unless skipped, the median latency of the original dense model (the
factors multiplied back, no mask) and of the compact model, timed side by side in this process.
"""
import os
import re
import sys
import tempfile

import numpy as np
import tensorflow as tf

from bert import checkpoint, cli, model_folder, modeling, timing
from flop import factorize
from flop.hardconcrete import deterministic_mask
from flop.method import GATE_VARIABLE, LAMBDA_SCOPE

PROGRAM = "flop.remove_mask"
INFO_FILE = "info.txt"
DEFAULT_LATENCY_SEQ_LENGTH = 128
FACTOR_NAME = re.compile(r"^bert/encoder/(.+)_p/kernel$")


def is_pruning_state(name):
    """Gates and multipliers: needed to learn the mask, not by the compact model."""
    return name.endswith("/" + GATE_VARIABLE) or name.startswith(LAMBDA_SCOPE + "/")


def gate_values(log_alpha):
    """The deterministic gate of evaluation (same TF code, run eagerly)."""
    return deterministic_mask(tf.constant(log_alpha, tf.float32)).numpy()


def merge_threshold(in_width, out_width):
    """Kept ranks above which one dense kernel is cheaper than the two factors."""
    return in_width * out_width / (in_width + out_width)


def factorized_keys(values):
    return sorted(match.group(1) for match in map(FACTOR_NAME.match, values) if match)


def compact_weights(config, values, source):
    """(compact config, compact weights, parameter counts) from a masked checkpoint's weights."""
    keys = factorized_keys(values)
    cli.require(keys, f"--checkpoint={source}: not factorized (no _p/_q kernels), so there is "
                      "no mask to remove")
    compact = {name: value for name, value in values.items() if not is_pruning_state(name)}
    kernel_ranks, kept_ranks = {}, {}
    counts = dict.fromkeys(("dense_total_params", "dense_pruned_params", "dense_origin_params",
                            "kept_gated_params"), 0)
    for key in keys:
        gate_name = f"{factorize.variable_prefix(key)}/{GATE_VARIABLE}"
        cli.require(gate_name in values,
                    f"--checkpoint={source}: no {gate_name} (not a masked checkpoint from "
                    "flop.run_classifier; remove_mask needs the trained gates)")
        p_name, q_name = factorize.factor_names(key)
        p, q = compact.pop(p_name), compact.pop(q_name)
        gate = gate_values(values[gate_name])
        kept = np.flatnonzero(gate)
        in_width, out_width = p.shape[0], q.shape[1]
        p_kept, q_kept = p[:, kept] * gate[kept], q[kept]
        rank = len(kept)
        kept_ranks[key] = rank
        counts["dense_total_params"] += (in_width + out_width) * p.shape[1]
        counts["dense_origin_params"] += in_width * out_width
        counts["kept_gated_params"] += (in_width + out_width) * rank
        if rank > merge_threshold(in_width, out_width):
            compact[factorize.variable_prefix(key) + "/kernel"] = p_kept @ q_kept
            counts["dense_pruned_params"] += in_width * out_width
        else:
            if rank:
                compact[p_name], compact[q_name] = p_kept, q_kept
            kernel_ranks[key] = rank
            counts["dense_pruned_params"] += (in_width + out_width) * rank
    counts["non_kernel_params"] = (int(sum(value.size for value in compact.values()))
                                   - counts["dense_pruned_params"])
    compact_config = config.copy()
    compact_config.extra.update(kernel_ranks=kernel_ranks, kept_ranks=kept_ranks,
                                factorized=bool(kernel_ranks), pruned=True)
    return compact_config, compact, counts


def dense_weights(config, values):
    """The original dense model: each factor pair multiplied back, gates ignored."""
    dense = {name: value for name, value in values.items() if not is_pruning_state(name)}
    for key in factorized_keys(values):
        p_name, q_name = factorize.factor_names(key)
        dense[factorize.variable_prefix(key) + "/kernel"] = dense.pop(p_name) @ dense.pop(q_name)
    return factorize.dense_config(config), dense


def info_fields(counts):
    total = counts["dense_origin_params"] + counts["non_kernel_params"]
    pruned_total = counts["dense_pruned_params"] + counts["non_kernel_params"]
    return {
        "dense_total_params": counts["dense_total_params"],
        "dense_pruned_params": counts["dense_pruned_params"],
        "dense_origin_params": counts["dense_origin_params"],
        "dense_sparsity": 1.0 - counts["dense_pruned_params"] / counts["dense_total_params"],
        "non_kernel_params": counts["non_kernel_params"],
        "total_params": total,
        "pruned_total_params": pruned_total,
        "actual_compact_rate": pruned_total / total,
        "deterministic_sparsity": (1.0 - counts["kept_gated_params"]
                                   / counts["dense_total_params"]),
    }


def format_info(fields, latencies, seq_length):
    lines = [f"{name}: {value:.6f}" if isinstance(value, float) else f"{name}: {value}"
             for name, value in fields.items()]
    for batch_size, (dense, compact) in latencies.items():
        prefix = f"latency_batch_{batch_size}_seq_{seq_length}"
        lines += [f"{prefix}_dense_ms: {dense * timing.SECONDS_TO_MS:.2f}",
                  f"{prefix}_compact_ms: {compact * timing.SECONDS_TO_MS:.2f}",
                  f"{prefix}_speedup: {dense / compact:.2f}"]
    return "\n".join(lines) + "\n"


def remove_mask(checkpoint_path, output_folder_dir, bert_config_file=None, vocab_file=None,
                batch_sizes=(1, 32), seq_length=None, iterations=20):
    """Write the compact model folder with info.txt; returns the info.txt text."""
    prefix = checkpoint.resolve_checkpoint(checkpoint_path, flag="checkpoint")
    folder = os.path.dirname(prefix)
    cli.require_output_dir(output_folder_dir, "output_folder_dir")
    cli.require(os.path.abspath(output_folder_dir) != os.path.abspath(folder),
                f"--output_folder_dir={output_folder_dir} is the checkpoint's own folder; "
                "write the compact model elsewhere")
    bert_config_file, vocab_file = model_folder.config_and_vocab(
        folder, "checkpoint", bert_config_file, vocab_file)
    config = modeling.BertConfig.from_json_file(bert_config_file)
    if seq_length is None:
        seq_length = min(DEFAULT_LATENCY_SEQ_LENGTH, config.max_position_embeddings)
    if iterations:
        cli.require_in_range(seq_length, "latency_seq_length", 1,
                             config.max_position_embeddings)
    values = checkpoint.read_checkpoint(prefix)
    compact_config, compact, counts = compact_weights(config, values, checkpoint_path)
    latencies = {}
    if iterations:
        num_labels = (values["output_weights"].shape[0] if "output_weights" in values
                      else timing.DEFAULT_LABELS)
        dense_config, dense = dense_weights(config, values)
        with tempfile.TemporaryDirectory() as scratch:
            dense_prefix = os.path.join(scratch, "dense", checkpoint.CHECKPOINT_NAME)
            compact_prefix = os.path.join(scratch, "compact", checkpoint.CHECKPOINT_NAME)
            checkpoint.save_variables(dense, dense_prefix)
            checkpoint.save_variables(compact, compact_prefix)
            models = [timing.TimedModel(dense_config, dense_prefix, num_labels=num_labels,
                                        label="dense"),
                      timing.TimedModel(compact_config, compact_prefix, num_labels=num_labels,
                                        label="compact")]
            latencies = timing.side_by_side(models, batch_sizes, seq_length, iterations)
    info = format_info(info_fields(counts), latencies, seq_length)
    flags = {"checkpoint": checkpoint_path, "bert_config_file": bert_config_file,
             "latency_iterations": iterations}
    model_folder.write_model_folder(output_folder_dir, compact_config, vocab_file, compact,
                                    step="flop_remove_mask", source=prefix, flags=flags,
                                    extra_files={INFO_FILE: info})
    return info


def main(argv=None):
    parser = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("--checkpoint", required=True,
                        help="masked checkpoint: a pruning run folder, its best/ or a prefix")
    parser.add_argument("--output_folder_dir", required=True, help="compact model folder")
    parser.add_argument("--bert_config_file",
                        help="config of the masked model (default: beside the checkpoint)")
    parser.add_argument("--vocab_file", help="default: the vocab beside the checkpoint")
    parser.add_argument("--latency_iterations", type=int, default=20,
                        help="timed runs per model and batch size (0: skip the latency)")
    parser.add_argument("--latency_batch_sizes", default="1,32")
    parser.add_argument("--latency_seq_length", type=int,
                        help=f"default: {DEFAULT_LATENCY_SEQ_LENGTH}, or the model's "
                             "max_position_embeddings if smaller")
    args = parser.parse_args(argv)
    cli.configure_logging()

    def run():
        cli.require_in_range(args.latency_iterations, "latency_iterations", 0)
        batch_sizes = cli.parse_batch_sizes(args.latency_batch_sizes, "latency_batch_sizes")
        info = remove_mask(args.checkpoint, args.output_folder_dir, args.bert_config_file,
                           args.vocab_file, batch_sizes, args.latency_seq_length,
                           args.latency_iterations)
        print(f"wrote {args.output_folder_dir}\n{info}", end="")

    return cli.run_main(run, PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
