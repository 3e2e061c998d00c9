"""TR-BERT's policy network: at one reduction layer, the probability of keeping each token.

    π(keep | h) = sigmoid(w₂ · gelu(W₁ h + b₁) + b₂)

read from the token's hidden state h at the layer's selector input. It is two small dense
layers per reduction layer, so it costs a few percent of one encoder layer at inference.
The variables live at the graph root, ``tr_bert/policy_<layer>/{hidden,output}/{kernel,bias}``,
created when the hooks are built (the selector itself runs inside ``bert/encoder/layer_<i>/``).
"""
import math

import tensorflow as tf

from bert import modeling

tf1 = tf.compat.v1

POLICY_SCOPE = "tr_bert"
POLICY_VARIABLE_PATTERN = rf"^{POLICY_SCOPE}/"
# A fresh policy keeps nearly every token: training starts from the fine-tuned model's accuracy
# and learns what to drop, instead of starting from random halves of every sentence.
INITIAL_KEEP_PROBABILITY = 0.9


def policy_scope(layer_index):
    """``tr_bert/policy_<i>`` with i the 0-based encoder layer, as in ``layer_<i>``."""
    return f"{POLICY_SCOPE}/policy_{layer_index}"


class Policy:
    """The keep-probability network of one reduction layer."""

    def __init__(self, layer_index, hidden_size, policy_hidden_size, initializer_range):
        initializer = modeling.create_initializer(initializer_range)
        initial_logit = math.log(INITIAL_KEEP_PROBABILITY / (1.0 - INITIAL_KEEP_PROBABILITY))
        with tf1.variable_scope(policy_scope(layer_index)):
            with tf1.variable_scope("hidden"):
                self.hidden_kernel = tf1.get_variable(
                    "kernel", [hidden_size, policy_hidden_size], initializer=initializer)
                self.hidden_bias = tf1.get_variable("bias", [policy_hidden_size],
                                                    initializer=tf1.zeros_initializer())
            with tf1.variable_scope("output"):
                self.output_kernel = tf1.get_variable("kernel", [policy_hidden_size, 1],
                                                      initializer=initializer)
                self.output_bias = tf1.get_variable(
                    "bias", [1], initializer=tf1.constant_initializer(initial_logit))

    @property
    def variables(self):
        return [self.hidden_kernel, self.hidden_bias, self.output_kernel, self.output_bias]

    def keep_logits(self, hidden):
        """[B, S, H] -> [B, S]: log-odds of keeping each token."""
        inner = modeling.gelu(tf.matmul(hidden, self.hidden_kernel) + self.hidden_bias)
        return (tf.matmul(inner, self.output_kernel) + self.output_bias)[:, :, 0]
