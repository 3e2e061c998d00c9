"""The core's masked-LM objective, used by every pre-training run (``bert.pretraining`` adds
it first): the loss as a method of the hook contract (``bert.methods``), so pre-training runs
its objective through the same phases as a classifier run and any method's terms join it.

The head has Google's names (cls/predictions/...: a transform dense + LayerNorm, output
embeddings tied to the input ones, an output bias); it trains with the model and stays in the
training checkpoints, never in the encoder's model folder.
"""
import tensorflow as tf

from bert import methods, modeling

tf1 = tf.compat.v1

MLM_SCOPE = "cls/predictions"
LOSS_EPSILON = 1e-5  # a batch whose every prediction weight is 0 gives loss 0, not NaN
MLM_SUMMARY = "mlm_loss"


def masked_lm_loss(config, model, positions, label_ids, label_weights):
    """Google's MLM head and its weighted cross-entropy over the predicted positions."""
    picked = tf.gather(model.sequence_output, positions, batch_dims=1)  # [B, P, H]
    with tf1.variable_scope(MLM_SCOPE):
        with tf1.variable_scope("transform"):
            hidden = modeling.dense(picked, config.hidden_size, "dense",
                                    modeling.ACTIVATIONS[config.hidden_act],
                                    config.initializer_range)
            hidden = modeling.layer_norm(hidden)
        bias = tf1.get_variable("output_bias", [config.vocab_size],
                                initializer=tf1.zeros_initializer())
    logits = tf.matmul(tf.reshape(hidden, [-1, config.hidden_size]), model.embedding_table,
                       transpose_b=True) + bias
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.reshape(label_ids, [-1]), logits=logits)
    weights = tf.reshape(label_weights, [-1])
    return tf.reduce_sum(losses * weights) / (tf.reduce_sum(weights) + LOSS_EPSILON)


class MaskedLmHooks(methods.GraphHooks):
    """One graph's weighted masked-LM term; the graph's features carry the masked positions."""

    def __init__(self, weight, bert_config):
        self.weight = weight
        self.bert_config = bert_config

    def extra_loss(self, graph):
        features = graph.features
        loss = masked_lm_loss(self.bert_config, graph.model, features["masked_lm_positions"],
                              features["masked_lm_ids"], features["masked_lm_weights"])
        tf1.summary.scalar(MLM_SUMMARY, loss)
        return self.weight * loss


class MaskedLm(methods.Method):
    """Masked-LM pre-training (Bort, like RoBERTa, has no next-sentence task)."""
    name = "masked_lm"
    allow_missing = (rf"^{MLM_SCOPE}/",)  # a student folder without the head starts it fresh

    def __init__(self, weight):
        self.weight = weight

    def build(self, bert_config, is_training):
        return MaskedLmHooks(self.weight, bert_config)
