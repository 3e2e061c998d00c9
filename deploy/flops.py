"""FLOPs per example of a model folder's config, with the token selection its methods ship."""
from bert.flops import flops_per_example as encoder_flops
from power_bert.token_selectors import RETENTION_CONFIG_KEY
from tr_bert.method import CONFIG_KEY as TR_BERT_CONFIG_KEY


def flops_per_example(bert_config, seq_length, num_labels):
    """``bert.flops.flops_per_example`` with a PoWER-BERT retention configuration applied."""
    return encoder_flops(bert_config, seq_length, num_labels,
                         bert_config.extra.get(RETENTION_CONFIG_KEY))


def is_dynamic(bert_config):
    """True for a TR-BERT model: its token count, hence its FLOPs, depends on each input."""
    return TR_BERT_CONFIG_KEY in bert_config.extra
