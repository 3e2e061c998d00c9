"""PoWER-BERT's methods for the classifier: the configuration search and Extract.

A model folder whose config carries ``power_bert_retention`` is an Extract model; ``from_config``
(registered as an entry point, see pyproject.toml) lets any entry point run it as such without
importing this package.
"""
import tensorflow as tf

from bert import methods, optimization
from power_bert import token_selectors

RETENTION_SUM_METRIC = "retention_sum_{}"
EXTRACT_NAME = "power_bert"


class SearchHooks(methods.GraphHooks):
    """One graph's Soft-Extract selector, regulariser and retention group."""

    def __init__(self, method, bert_config):
        self.method = method
        self.token_selector = token_selectors.SoftExtractSelector(bert_config.num_hidden_layers,
                                                                  method.max_seq_length)

    def extra_loss(self, graph):
        return token_selectors.retention_regularizer(self.token_selector.variables,
                                                     self.method.lambda_)

    def param_groups(self, graph, schedule):
        # Retention values train without weight decay or clipping (the regulariser alone decides
        # how far they fall) and are clipped to [0, 1] after each update.
        group = optimization.ParamGroup(
            "retention", self.token_selector.variables, self.method.soft_extract_learning_rate,
            schedule.num_train_steps, schedule.num_warmup_steps, weight_decay=0.0,
            clip_norm=None, transform=token_selectors.clip_retention)
        return [group], {}

    def eval_metric_ops(self, graph):
        """Per-layer sums of r_j, so each epoch's log shows where the search stands."""
        return {RETENTION_SUM_METRIC.format(index): tf.compat.v1.metrics.mean(
            tf.reduce_sum(variable))
            for index, variable in enumerate(self.token_selector.variables)}


class ConfigurationSearch(methods.Method):
    """Step 2: Soft-Extract after every attention block, retention regulariser in the loss."""
    name = "power_bert_search"
    allow_missing = (token_selectors.RETENTION_VARIABLE_PATTERN,)

    def __init__(self, soft_extract_learning_rate, lambda_, max_seq_length):
        self.soft_extract_learning_rate = soft_extract_learning_rate
        self.lambda_ = lambda_
        self.max_seq_length = max_seq_length

    def build(self, bert_config, is_training):
        return SearchHooks(self, bert_config)

    def hparams(self):
        return {"lr_soft_extract": self.soft_extract_learning_rate, "lambda": self.lambda_}


class ExtractHooks(methods.GraphHooks):
    def __init__(self, retention_config):
        self.token_selector = token_selectors.ExtractSelector(retention_config)


class Extract(methods.Method):
    """Step 3, evaluation and inference: keep l_j word-vectors after layer j."""
    name = EXTRACT_NAME

    def __init__(self, retention_config):
        self.retention_config = list(retention_config)

    def build(self, bert_config, is_training):
        return ExtractHooks(self.retention_config)

    def hparams(self):
        return {"retention": token_selectors.format_retention_config(self.retention_config)}


def from_config(bert_config):
    """Extract with the config's own retention configuration, if it has one."""
    retention = bert_config.extra.get(token_selectors.RETENTION_CONFIG_KEY)
    return None if retention is None else Extract(retention)
