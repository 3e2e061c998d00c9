"""TR-BERT as a method of the classifier: policies, the RL objective, imitation, distillation.

Training (``TrBertMethod``) samples keep/skip actions at every reduction layer and minimises

    −mean_b[(R_b − baseline) · Σ_layers Σ_tokens log π(a)],   R = log p(gold) − α · kept share

(R without gradient; log p(gold) is −cross-entropy, −squared error for STS-B; the kept share of
an example is the mean over reduction layers of kept / input tokens). On guide steps (a
``guide_rate`` share, drawn per step) the policy instead imitates guide targets by binary
cross-entropy: the residual guide reads per-token importance from the training records
(``--do_eval_grad``), the attention guide (``--train_init``) keeps the tokens that receive the
most attention. Joint mode also trains BERT on its task loss and, optionally, distils the
fine-tuned model's logits from the records (``--do_eval_logits``).

Inference (``Inference``, also what ``from_config`` returns) keeps a token where p > 0.5. A model
folder's config says so under ``tr_bert``: {"reduction_layers": [...], "policy_hidden_size": N}.
"""
import dataclasses
import numbers
from typing import Tuple

import tensorflow as tf

from bert import flops, methods, optimization, randomness, teacher
from bert.errors import InputError
from tr_bert import token_selectors
from tr_bert.policy import POLICY_SCOPE, POLICY_VARIABLE_PATTERN, Policy

tf1 = tf.compat.v1

CONFIG_KEY = "tr_bert"
METHOD_NAME = "tr_bert"
DEFAULT_REDUCTION_LAYERS = (2, 4)
DEFAULT_POLICY_HIDDEN_SIZE = 64
# On MiniLM/MRPC (seq 128) α = 1 made dropping almost every token pay (a fine-tuned model's
# log p(gold) rarely falls by more than the 1.0 that keeping everything costs); 0.1–0.3 kept a
# third of the tokens at the fine-tuned F1.
DEFAULT_ALPHA = 0.3
DEFAULT_POLICY_LEARNING_RATE = 1e-3
POLICY_ONLY = "policy"
JOINT = "joint"
MOVING_AVERAGE = "moving_average"
BATCH_MEAN = "batch_mean"
BASELINES = (MOVING_AVERAGE, BATCH_MEAN)
GUIDE_IMPORTANCE = "importance"  # residual strategy: gradient importance from the records
GUIDE_ATTENTION = "attention"  # heuristic initialisation: attention received
BASELINE_DECAY = 0.9  # the moving average forgets a batch's reward over ~10 steps
BASELINE_SCOPE = f"{POLICY_SCOPE}_baseline"  # training state only: not part of a model folder
IMPORTANCE_FEATURE = "token_importance"  # [encoder layers × max_seq_length] floats
TEACHER_LOGITS_FEATURE = "teacher_logits"  # [outputs] floats
KEPT_SHARE_METRIC = "kept_share"
KEPT_SHARE_LAYER_METRIC = "kept_share_layer_{}"
KEPT_TOKENS_LAYER_METRIC = "kept_tokens_layer_{}"
INPUT_TOKENS_METRIC = "input_tokens"
FLOPS_SHARE_METRIC = "flops_share"


class TrBertConfigError(InputError):
    """A ``tr_bert`` config entry or setting that no model could use."""


@dataclasses.dataclass
class TrBertSettings:
    """What TR-BERT training needs besides the classifier's settings."""
    reduction_layers: Tuple[int, ...] = DEFAULT_REDUCTION_LAYERS
    policy_hidden_size: int = DEFAULT_POLICY_HIDDEN_SIZE
    alpha: float = DEFAULT_ALPHA
    baseline: str = MOVING_AVERAGE
    guide: str = GUIDE_IMPORTANCE
    guide_rate: float = 0.5
    guide_mass: float = 0.9
    train_mode: str = POLICY_ONLY
    distill_weight: float = 1.0
    distill_temperature: float = 1.0
    policy_learning_rate: float = DEFAULT_POLICY_LEARNING_RATE

    def config_entry(self):
        """The config's ``tr_bert`` entry: all that inference needs."""
        return {"reduction_layers": list(self.reduction_layers),
                "policy_hidden_size": self.policy_hidden_size}


def validate_architecture(reduction_layers, policy_hidden_size, num_layers, source):
    """Reduction layers: distinct, increasing 0-based layer indices; a positive width."""
    layers = list(reduction_layers)
    if not layers or not all(isinstance(layer, numbers.Integral) and not isinstance(layer, bool)
                             for layer in layers):
        raise TrBertConfigError(f"{source}: reduction_layers={layers!r}: expected one or more "
                                "0-based layer indices")
    if sorted(set(layers)) != layers or layers[0] < 0 or layers[-1] >= num_layers:
        raise TrBertConfigError(f"{source}: reduction_layers={layers}: expected distinct "
                                f"increasing layer indices in [0, {num_layers - 1}]")
    if not (isinstance(policy_hidden_size, numbers.Integral) and policy_hidden_size > 0):
        raise TrBertConfigError(f"{source}: policy_hidden_size={policy_hidden_size!r}: "
                                "expected a positive integer")
    return tuple(layers)


def build_policies(settings, bert_config):
    return {layer: Policy(layer, bert_config.hidden_size, settings.policy_hidden_size,
                          bert_config.initializer_range)
            for layer in settings.reduction_layers}


# Rewards, baselines and guides --------------------------------------------------------------
def kept_shares(records, reduction_layers):
    """[B] per layer: kept tokens / the example's input tokens (what the following layers cost
    relative to the full example)."""
    input_tokens = records[reduction_layers[0]].real_count
    return [records[layer].kept_count / input_tokens for layer in reduction_layers]


def log_likelihood(graph):
    """log p(gold) per example: −cross-entropy, or −squared error for regression."""
    return -graph.per_example_loss


def reinforce_loss(log_prob, reward, baseline):
    """−mean[(R − b) · Σ log π(a)]: descending it makes better-than-baseline actions likelier."""
    advantage = tf.stop_gradient(reward - baseline)
    return -tf.reduce_mean(advantage * log_prob)


def moving_average_baseline(mean_reward):
    """(baseline used this step, update op): a bias-corrected moving average of the batch-mean
    reward over earlier steps (the first step uses its own mean). Its variables are training
    state, non-trainable, outside the model's checkpoint names. The update reads the values the
    baseline read, so it may run at any point of the step: the hooks run it once per step as
    an after-update op."""
    with tf1.variable_scope(BASELINE_SCOPE):
        average = tf1.get_variable("reward_average", [], trainable=False,
                                   initializer=tf1.zeros_initializer())
        steps = tf1.get_variable("steps", [], trainable=False,
                                 initializer=tf1.zeros_initializer())
    previous_average, previous_steps = tf.identity(average), tf.identity(steps)
    corrected = previous_average / (1.0 - BASELINE_DECAY ** tf.maximum(previous_steps, 1.0))
    baseline = tf.where(previous_steps > 0, corrected, mean_reward)
    with tf.control_dependencies([previous_average, previous_steps]):
        update = tf.group(
            average.assign(BASELINE_DECAY * previous_average
                           + (1.0 - BASELINE_DECAY) * mean_reward),
            steps.assign_add(1.0))
    return baseline, update


def mass_targets(scores, candidates, mass):
    """1.0 for the fewest candidates holding ``mass`` of the candidates' score mass: a token is
    kept when the tokens scored above it hold less than that."""
    scores = tf.where(candidates > 0, tf.maximum(scores, 0.0), tf.zeros_like(scores))
    order = tf.argsort(scores, axis=-1, direction="DESCENDING", stable=True)
    in_order = tf.gather(scores, order, batch_dims=1)
    mass_above = tf.cumsum(in_order, axis=-1, exclusive=True)
    total = tf.reduce_sum(scores, axis=-1, keepdims=True)
    keep_in_order = tf.cast(mass_above < mass * total, tf.float32)
    keep = tf.gather(keep_in_order, tf.argsort(order, axis=-1, stable=True), batch_dims=1)
    return keep * candidates


def attention_received(attention_probs, decidable, real):
    """[B, S]: attention each token receives from the real tokens, averaged over heads."""
    probs = tf.reduce_mean(attention_probs, axis=1)
    return tf.reduce_sum(probs * real[:, :, tf.newaxis], axis=1) * decidable


def imitation_loss(record, targets):
    """Binary cross-entropy of the keep probabilities against 0/1 targets, decidable tokens."""
    losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=record.keep_logits)
    count = tf.maximum(tf.reduce_sum(record.decidable), 1.0)
    return tf.reduce_sum(losses * record.decidable) / count


def policy_entropy(records):
    """Mean Bernoulli entropy of the decidable tokens' keep probabilities."""
    entropies, counts = [], []
    for record in records:
        p = record.keep_probability
        # H = softplus(z) − p·z: the stable form of −p log p − (1 − p) log(1 − p).
        entropy = tf.nn.softplus(record.keep_logits) - p * record.keep_logits
        entropies.append(tf.reduce_sum(entropy * record.decidable))
        counts.append(tf.reduce_sum(record.decidable))
    return tf.add_n(entropies) / tf.maximum(tf.add_n(counts), 1.0)


def dynamic_flops(bert_config, records, reduction_layers, num_outputs):
    """([B] FLOPs with the decisions taken, [B] FLOPs of the full example), each example at its
    own length, as a batch of one runs it (``bert.flops`` counting, floats)."""
    tokens = records[reduction_layers[0]].real_count
    dense = tokens
    reduced_total, dense_total = 0.0, 0.0
    for layer in range(bert_config.num_hidden_layers):
        kept = records[layer].kept_count if layer in records else tokens
        reduced_total += flops.layer_multiply_adds(bert_config, layer, tokens, kept)
        dense_total += flops.layer_multiply_adds(bert_config, layer, dense, dense)
        tokens = kept
    ranks = bert_config.extra.get("kernel_ranks") or {}
    head = float(flops.kernel_cost(ranks, flops.POOLER_KEY, bert_config.hidden_size,
                                   bert_config.hidden_size)
                 + bert_config.hidden_size * num_outputs)
    return (flops.FLOPS_PER_MULTIPLY_ADD * (reduced_total + head),
            flops.FLOPS_PER_MULTIPLY_ADD * (dense_total + head))


# Hooks ------------------------------------------------------------------------------------------
class TrBertHooks(methods.GraphHooks):
    """One graph's policies, selector, losses, policy group and metrics."""

    def __init__(self, settings: TrBertSettings, bert_config, is_training, learn=True):
        self.settings = settings
        self.bert_config = bert_config
        self.learn = learn and is_training
        self.policies = build_policies(settings, bert_config)
        mode = token_selectors.SAMPLE if self.learn else token_selectors.DETERMINISTIC
        self.token_selector = token_selectors.DynamicSelector(
            self.policies, mode, stop_gradient=settings.train_mode == POLICY_ONLY)
        self.policy_loss = None
        self._baseline_update = None

    @property
    def records(self):
        return self.token_selector.records

    @property
    def policy_variables(self):
        return [variable for policy in self.policies.values() for variable in policy.variables]

    def _guide_targets(self, graph, layer, record):
        settings = self.settings
        if settings.guide == GUIDE_ATTENTION:
            scores = attention_received(record.attention_probs, record.decidable, record.real)
            return mass_targets(scores, record.decidable, settings.guide_mass)
        if IMPORTANCE_FEATURE not in graph.features:
            raise TrBertConfigError(f"guide_rate {settings.guide_rate} needs the training "
                                    f"records' '{IMPORTANCE_FEATURE}' (run --do_eval_grad)")
        importance = tf.reshape(graph.features[IMPORTANCE_FEATURE],
                                [tf.shape(graph.logits)[0], self.bert_config.num_hidden_layers,
                                 -1])
        scores = tf.gather(importance[:, layer], record.positions, batch_dims=1)
        return mass_targets(scores, record.decidable, settings.guide_mass)

    def extra_loss(self, graph):
        if not self.learn:
            return tf.constant(0.0)
        settings = self.settings
        layers = settings.reduction_layers
        records = [self.records[layer] for layer in layers]
        shares = kept_shares(self.records, layers)
        kept_share = tf.add_n(shares) / float(len(shares))
        reward = tf.stop_gradient(log_likelihood(graph) - settings.alpha * kept_share)
        mean_reward = tf.reduce_mean(reward)
        if settings.baseline == MOVING_AVERAGE:
            baseline, self._baseline_update = moving_average_baseline(mean_reward)
        else:
            baseline = mean_reward
        log_prob = tf.add_n([record.log_prob for record in records])
        self.policy_loss = reinforce_loss(log_prob, reward, baseline)
        if settings.guide_rate > 0:
            guide = tf.add_n([imitation_loss(record, self._guide_targets(graph, layer, record))
                              for layer, record in zip(layers, records)]) / float(len(records))
            guide_step = randomness.uniform([]) < settings.guide_rate
            self.policy_loss = tf.where(guide_step, guide, self.policy_loss)
            tf1.summary.scalar("guide_loss", guide)
            tf1.summary.scalar("guide_step", tf.cast(guide_step, tf.float32))
        extra = self.policy_loss
        if settings.distill_weight > 0:
            distill = teacher.soft_logit_loss(
                graph.logits, graph.features[TEACHER_LOGITS_FEATURE],
                settings.distill_temperature, graph.is_regression)
            tf1.summary.scalar("distillation_loss", distill)
            extra += settings.distill_weight * distill
        tf1.summary.scalar("reward", mean_reward)
        tf1.summary.scalar("baseline", tf.reduce_mean(baseline))
        tf1.summary.scalar("policy_entropy", policy_entropy(records))
        tf1.summary.scalar("policy_loss", self.policy_loss)
        tf1.summary.scalar(KEPT_SHARE_METRIC, tf.reduce_mean(kept_share))
        for layer, share in zip(layers, shares):
            tf1.summary.scalar(KEPT_SHARE_LAYER_METRIC.format(layer), tf.reduce_mean(share))
        return extra

    def after_update_ops(self, graph):
        """The moving-average baseline moves once per training step."""
        return [self._baseline_update] if self._baseline_update is not None else []

    def param_groups(self, graph, schedule):
        if not self.learn:
            return [], {}
        # Weight decay would pull the policy toward p = 0.5 everywhere: it has none.
        group = optimization.ParamGroup(
            "policy", self.policy_variables, self.settings.policy_learning_rate,
            schedule.num_train_steps, schedule.num_warmup_steps, weight_decay=0.0)
        return [group], {}

    def eval_metric_ops(self, graph):
        layers = self.settings.reduction_layers
        shares = kept_shares(self.records, layers)
        ops = {KEPT_SHARE_METRIC: tf1.metrics.mean(tf.add_n(shares) / float(len(shares))),
               INPUT_TOKENS_METRIC: tf1.metrics.mean(self.records[layers[0]].real_count)}
        for layer, share in zip(layers, shares):
            ops[KEPT_SHARE_LAYER_METRIC.format(layer)] = tf1.metrics.mean(share)
            ops[KEPT_TOKENS_LAYER_METRIC.format(layer)] = tf1.metrics.mean(
                self.records[layer].kept_count)
        reduced, dense = dynamic_flops(self.bert_config, self.records, layers,
                                       int(graph.logits.shape[-1]))
        ops[FLOPS_SHARE_METRIC] = tf1.metrics.mean(reduced / dense)
        return ops


class TrBertMethod(methods.Method):
    """Training: sampled decisions, the RL / imitation objective, the "policy" group."""
    name = METHOD_NAME
    allow_missing = (POLICY_VARIABLE_PATTERN,)

    def __init__(self, settings: TrBertSettings):
        self.settings = settings

    def build(self, bert_config, is_training):
        validate_architecture(self.settings.reduction_layers, self.settings.policy_hidden_size,
                              bert_config.num_hidden_layers, "TR-BERT settings")
        return TrBertHooks(self.settings, bert_config, is_training)

    def hparams(self):
        return {f"tr_bert_{key}": value for key, value in dataclasses.asdict(self.settings).items()}


class Inference(methods.Method):
    """Deterministic decisions (p > 0.5) in every graph, no loss of its own: a TR-BERT model
    folder evaluated, fine-tuned further, timed or exported."""
    name = METHOD_NAME

    def __init__(self, reduction_layers, policy_hidden_size):
        self.settings = TrBertSettings(tuple(reduction_layers), policy_hidden_size)

    def build(self, bert_config, is_training):
        return TrBertHooks(self.settings, bert_config, is_training, learn=False)

    def hparams(self):
        return {"tr_bert": self.settings.config_entry()}


def from_config(bert_config):
    """Inference with the config's own ``tr_bert`` entry, if it has one."""
    entry = bert_config.extra.get(CONFIG_KEY)
    if entry is None:
        return None
    if not isinstance(entry, dict) or set(entry) != {"reduction_layers", "policy_hidden_size"}:
        raise TrBertConfigError(f"config '{CONFIG_KEY}' is {entry!r}: expected an object with "
                                "reduction_layers and policy_hidden_size")
    layers = validate_architecture(entry["reduction_layers"], entry["policy_hidden_size"],
                                   bert_config.num_hidden_layers, f"config '{CONFIG_KEY}'")
    return Inference(layers, entry["policy_hidden_size"])
