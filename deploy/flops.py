"""FLOPs per example of a model folder's config, with the token selection its methods ship.

Every method's registered deployment description (``bert.deployment``) says what it does to
the token count of a config; nothing here names a method.
"""
from bert import deployment
from bert.flops import flops_per_example as encoder_flops


def token_counts(bert_config):
    """What each registered method decides about the tokens of ``bert_config``'s layers."""
    return [count for count in (description.token_count(bert_config)
                                for description in deployment.descriptions())
            if count is not None]


def kept_tokens(bert_config):
    """Tokens each layer keeps at most, or None for all: selections in series keep the fewest."""
    fixed = [count.kept_per_layer for count in token_counts(bert_config)
             if count.kept_per_layer]
    return [min(kept) for kept in zip(*fixed)] if fixed else None


def flops_per_example(bert_config, seq_length, num_labels):
    """``bert.flops.flops_per_example`` with the config's fixed token selection applied."""
    return encoder_flops(bert_config, seq_length, num_labels, kept_tokens(bert_config))


def per_input_notes(bert_config):
    """Why the count is only an upper bound (the methods choosing tokens per input); [] if exact."""
    return [count.note for count in token_counts(bert_config) if count.per_input]
