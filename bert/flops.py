"""FLOPs per example of a BERT classifier, read from its config alone.

A number that depends only on the architecture lets the benchmark say how much of a measured
speed-up the arithmetic explains (speed-up ÷ FLOP reduction), and lets an architecture search
count a candidate's cost: compact kernel ranks (``kernel_ranks``), per-layer heads and sizes,
and the shorter sequences of a token selector (given as the tokens each layer keeps) change it.

Counted: every matmul, as 2 × multiply-adds. Not counted (they are not matmuls, and are linear
in the sequence length at worst): embedding look-ups, LayerNorm, softmax, GELU, bias adds,
residual adds and the token selection itself.
"""
FLOPS_PER_MULTIPLY_ADD = 2
POOLER_KEY = "pooler/dense"
POOLED_TOKENS = 1  # the pooler reads [CLS] only


def kernel_cost(ranks, key, in_width, out_width):
    """Multiply-adds per token of the kernel ``key``: in·out dense, r·(in+out) at rank r (so 0
    for a rank-0 kernel, which outputs its bias only)."""
    rank = ranks.get(key)
    if rank is None:
        return in_width * out_width
    return rank * (in_width + out_width)


def layer_multiply_adds(bert_config, layer_index, s_in, s_out):
    """Multiply-adds of encoder layer ``layer_index``: s_in tokens enter its attention sub-block,
    s_out leave the token selector and enter its feed-forward sub-block."""
    ranks = bert_config.extra.get("kernel_ranks") or {}
    hidden = bert_config.hidden_size
    heads = bert_config.heads(layer_index)
    head_size = bert_config.head_size(layer_index)
    width = heads * head_size
    intermediate = bert_config.intermediate(layer_index)

    def cost(name, in_width, out_width):
        return kernel_cost(ranks, f"layer_{layer_index}/{name}", in_width, out_width)

    projections = sum(cost(f"attention/self/{name}", hidden, width)
                      for name in ("query", "key", "value"))
    scores = heads * s_in * s_in * head_size
    context = heads * s_in * s_in * head_size
    attention_output = cost("attention/output/dense", width, hidden)
    feed_forward = (cost("intermediate/dense", hidden, intermediate)
                    + cost("output/dense", intermediate, hidden))
    return (s_in * (projections + attention_output) + scores + context
            + s_out * feed_forward)


def flops_per_example(bert_config, seq_length, num_labels, kept_tokens=None):
    """FLOPs (2 × multiply-adds of the matmuls) of one example of ``seq_length`` tokens.

    ``kept_tokens`` (optional, one value per layer): layer j keeps min(kept_tokens[j], tokens
    entering it) after its attention sub-block, as a token selector does; the pooler sees one
    token and the classifier maps hidden → num_labels.
    """
    ranks = bert_config.extra.get("kernel_ranks") or {}
    hidden = bert_config.hidden_size
    total = 0
    tokens = seq_length
    for layer_index in range(bert_config.num_hidden_layers):
        kept = min(kept_tokens[layer_index], tokens) if kept_tokens else tokens
        total += layer_multiply_adds(bert_config, layer_index, tokens, kept)
        tokens = kept
    total += POOLED_TOKENS * kernel_cost(ranks, POOLER_KEY, hidden, hidden)
    total += hidden * num_labels
    return FLOPS_PER_MULTIPLY_ADD * total
