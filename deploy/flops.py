"""FLOPs per example of a BERT classifier, read from its config alone.

A number that depends only on the architecture lets the benchmark say how much of a measured
speed-up the arithmetic explains (speed-up ÷ FLOP reduction): compact kernel ranks
(``kernel_ranks``), per-layer heads and sizes, and PoWER-BERT's shorter sequences all change it.

Counted: every matmul, as 2 × multiply-adds. Not counted (they are not matmuls, and are linear
in the sequence length at worst): embedding look-ups, LayerNorm, softmax, GELU, bias adds,
residual adds and the token selection itself.
"""
from power_bert.token_selectors import RETENTION_CONFIG_KEY

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


def flops_per_example(bert_config, seq_length, num_labels):
    """FLOPs (2 × multiply-adds of the matmuls) of one example of ``seq_length`` tokens.

    With a PoWER-BERT retention configuration l_j, layer j keeps min(l_j, tokens entering it)
    after its attention sub-block, as ``ExtractSelector`` does; the pooler sees one token and
    the classifier maps hidden → num_labels.
    """
    retention = bert_config.extra.get(RETENTION_CONFIG_KEY)
    ranks = bert_config.extra.get("kernel_ranks") or {}
    hidden = bert_config.hidden_size
    total = 0
    tokens = seq_length
    for layer_index in range(bert_config.num_hidden_layers):
        kept = min(retention[layer_index], tokens) if retention else tokens
        total += layer_multiply_adds(bert_config, layer_index, tokens, kept)
        tokens = kept
    total += POOLED_TOKENS * kernel_cost(ranks, POOLER_KEY, hidden, hidden)
    total += hidden * num_labels
    return FLOPS_PER_MULTIPLY_ADD * total
