"""TR-BERT pieces: the dynamic selector against plain BERT and hand-gathered references, the
REINFORCE objective and baseline, guide targets, and a model folder described by its config."""
import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoint, methods, modeling
from bert.classifier import classifier_head
from tiny_bert import example_inputs, random_weights, tiny_config, write_tiny_model
from tr_bert import method as tr_method
from tr_bert import token_selectors as selectors
from tr_bert.policy import Policy, policy_scope

tf1 = tf.compat.v1

NUM_LAYERS = 3
REDUCTION_LAYERS = (0, 2)
POLICY_WIDTH = 4
TOLERANCE = 1e-5
ONNX_TOLERANCE = 1e-4
NUM_LABELS = 2


def policy_weights(config, layers=REDUCTION_LAYERS, seed=3, output_bias=0.0):
    """Random policy weights wide enough that p varies around 0.5 from token to token."""
    rng = np.random.RandomState(seed)
    values = {}
    for layer in layers:
        scope = policy_scope(layer)
        values[f"{scope}/hidden/kernel"] = rng.normal(0, 1.0, [config.hidden_size, POLICY_WIDTH])
        values[f"{scope}/hidden/bias"] = rng.normal(0, 0.5, [POLICY_WIDTH])
        values[f"{scope}/output/kernel"] = rng.normal(0, 2.0, [POLICY_WIDTH, 1])
        values[f"{scope}/output/bias"] = np.full([1], output_bias)
    return {name: value.astype(np.float32) for name, value in values.items()}


def build_policies(config, layers=REDUCTION_LAYERS):
    return {layer: Policy(layer, config.hidden_size, POLICY_WIDTH, config.initializer_range)
            for layer in layers}


def bert_logits(config, ids, mask, types, selector=None):
    """Logits of the classifier built in the current graph (variables shared across calls)."""
    with tf1.variable_scope(tf1.get_variable_scope(), reuse=tf1.AUTO_REUSE):
        model = modeling.BertModel(config, False, tf.constant(ids), tf.constant(mask),
                                   tf.constant(types), token_selector=selector)
        return classifier_head(model.pooled_output, NUM_LABELS, False), model


def run_with_values(tensors, values):
    """Evaluate ``tensors`` with every graph variable set from ``values`` (by name)."""
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        for variable in tf1.global_variables():
            if variable.op.name in values:
                variable.load(values[variable.op.name], session)
        return session.run(tensors)


@pytest.fixture(scope="module")
def weights():
    config = tiny_config(num_hidden_layers=NUM_LAYERS)
    values = random_weights(config, NUM_LABELS)
    values.update(policy_weights(config))
    return config, values


# The selector inside BERT -----------------------------------------------------------------------
def test_keep_all_equals_plain_bert(weights):
    config, values = weights
    ids, mask, types = example_inputs(config.vocab_size)  # example 0 is half padding
    with tf.Graph().as_default():
        plain, plain_model = bert_logits(config, ids, mask, types)
        selector = selectors.DynamicSelector(build_policies(config), selectors.KEEP_ALL)
        kept, kept_model = bert_logits(config, ids, mask, types, selector)
        plain, kept, plain_seq, kept_seq, kept_mask = run_with_values(
            [plain, kept, plain_model.sequence_output, kept_model.sequence_output,
             kept_model.output_mask], values)
    np.testing.assert_allclose(kept, plain, atol=TOLERANCE)
    real = mask.astype(bool)
    np.testing.assert_array_equal(kept_mask, mask)  # padding dropped, nothing else moved
    np.testing.assert_allclose(kept_seq[real], plain_seq[real], atol=TOLERANCE)
    assert np.abs(plain).max() > 0.1  # the comparison is of real numbers, not of zeros


def test_keep_top_k_equals_hand_gathered_reference(weights):
    config, values = weights
    ids, mask, types = example_inputs(config.vocab_size, seed=4)
    top_k = 2
    with tf.Graph().as_default():
        selector = selectors.DynamicSelector(build_policies(config, (1,)), selectors.KEEP_TOP_K,
                                             top_k=top_k)
        logits, _ = bert_logits(config, ids, mask, types, selector)
        record = selector.records[1]
        logits, probability = run_with_values([logits, record.keep_probability], values)
    # By hand: [CLS] and the top_k most probable other real tokens, in their order.
    kept_rows = []
    for row_probability, row_mask in zip(probability, mask):
        others = [index for index in range(1, len(row_mask)) if row_mask[index]]
        best = sorted(sorted(others, key=lambda index: -row_probability[index])[:top_k])
        kept_rows.append([0] + best)
    length = max(len(row) for row in kept_rows)
    indices = np.array([row + [0] * (length - len(row)) for row in kept_rows], np.int32)
    hand_mask = np.array([[1] * len(row) + [0] * (length - len(row)) for row in kept_rows],
                         np.int32)

    def hand_selector(layer_index, hidden, attention_probs, input_mask):
        if layer_index != 1:
            return hidden, input_mask
        return tf.gather(hidden, indices, batch_dims=1), tf.constant(hand_mask)

    with tf.Graph().as_default():
        build_policies(config, (1,))
        reference, _ = bert_logits(config, ids, mask, types, hand_selector)
        reference = run_with_values(reference, values)
    np.testing.assert_allclose(logits, reference, atol=TOLERANCE)


def test_deterministic_kept_counts_differ_within_a_batch(weights):
    config, values = weights
    rng = np.random.RandomState(7)
    batch, length = 6, 12
    ids = rng.randint(5, config.vocab_size, [batch, length]).astype(np.int32)
    ids[:, 0] = 2  # [CLS]
    mask = np.ones([batch, length], np.int32)
    types = np.zeros([batch, length], np.int32)
    with tf.Graph().as_default():
        selector = selectors.DynamicSelector(build_policies(config), selectors.DETERMINISTIC)
        _, model = bert_logits(config, ids, mask, types, selector)
        first = selector.records[REDUCTION_LAYERS[0]]
        kept, probability, actions, shapes, final_mask = run_with_values(
            [first.kept_count, first.keep_probability, first.actions,
             [tf.shape(layer)[1] for layer in model.all_encoder_layers], model.output_mask],
            values)
    assert len(set(kept.tolist())) > 1, kept  # each example decides for itself
    np.testing.assert_array_equal(actions[:, 1:], (probability[:, 1:] > 0.5).astype(float))
    assert (actions[:, 0] == 1).all()  # [CLS] always kept
    assert shapes[0] == kept.max() < length  # the batch is cut to its longest kept count
    assert shapes[-1] == final_mask.shape[1] and final_mask.sum(axis=1).min() >= 1


def test_gather_kept_moves_kept_tokens_front_in_order():
    keep = np.array([[1, 0, 1, 0, 1], [1, 1, 0, 0, 0]])
    hidden = np.arange(10, dtype=np.float32).reshape(2, 5)
    with tf.Graph().as_default(), tf1.Session() as session:
        (gathered,), mask = selectors.gather_kept([tf.constant(hidden)], tf.constant(keep))
        gathered, mask = session.run([gathered, mask])
    np.testing.assert_array_equal(gathered[0], [0, 2, 4])
    np.testing.assert_array_equal(gathered[1][:2], [5, 6])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 1, 0]])


# Objective --------------------------------------------------------------------------------------
def sampled_record(logit_value, batch=512, length=8, seed=5):
    """A selector record whose policy gives every token the same keep log-odds."""
    tf1.set_random_seed(seed)
    policy = Policy(0, 2, 1, 0.02)
    hidden = tf.zeros([batch, length, 2])
    selector = selectors.DynamicSelector({0: policy}, selectors.SAMPLE)
    selector(0, hidden, None, tf.ones([batch, length], tf.int32))
    assign = policy.output_bias.assign([logit_value])
    return selector.records[0], policy, assign


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_reinforce_gradient_sign_follows_the_reward(sign):
    """Reward ±(kept share): the loss gradient on the keep log-odds must be ∓ (descent then
    keeps more when keeping pays, fewer when it costs)."""
    with tf.Graph().as_default():
        record, policy, assign = sampled_record(0.0)
        reward = sign * record.kept_count / record.real_count
        loss = tr_method.reinforce_loss(record.log_prob, reward, tf.reduce_mean(reward))
        gradient = tf.gradients(loss, policy.output_bias)[0]
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            session.run(assign)
            value = session.run(gradient)[0]
    assert -sign * value > 0.05, value


def test_reinforce_learns_which_tokens_pay():
    """Toy reward: +1 per kept even position, −1 per kept odd one; the policy sees the parity."""
    batch, length = 64, 8
    with tf.Graph().as_default():
        tf1.set_random_seed(0)
        policy = Policy(0, 2, 8, 0.5)
        parity = np.stack([np.arange(length) % 2 == 0, np.arange(length) % 2 == 1], -1)
        hidden = tf.constant(np.broadcast_to(parity, [batch, length, 2]), tf.float32)
        selector = selectors.DynamicSelector({0: policy}, selectors.SAMPLE)
        selector(0, hidden, None, tf.ones([batch, length], tf.int32))
        record = selector.records[0]
        sign = tf.constant(np.where(np.arange(length) % 2 == 0, 1.0, -1.0), tf.float32)
        reward = tf.reduce_sum(record.actions * record.decidable * sign, axis=1)
        loss = tr_method.reinforce_loss(record.log_prob, reward, tf.reduce_mean(reward))
        train = tf1.train.AdamOptimizer(0.05).minimize(loss, var_list=policy.variables)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            for _ in range(150):
                session.run(train)
            probability = session.run(record.keep_probability)[0]
    assert probability[2::2].min() > 0.9 and probability[1::2].max() < 0.1, probability


def test_moving_average_baseline_is_bias_corrected():
    rewards = [-1.0, -3.0, 2.0]
    decay = tr_method.BASELINE_DECAY
    with tf.Graph().as_default():
        mean_reward = tf1.placeholder(tf.float32, [])
        baseline, update = tr_method.moving_average_baseline(mean_reward)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            seen = [session.run([baseline, update], {mean_reward: r})[0] for r in rewards]
    second_average = (1 - decay) * rewards[0]
    third_average = decay * second_average + (1 - decay) * rewards[1]
    np.testing.assert_allclose(seen, [rewards[0], second_average / (1 - decay),
                                      third_average / (1 - decay ** 2)], rtol=1e-6)


def test_mass_targets_keep_fewest_tokens_holding_the_mass():
    scores = [[0.0, 4.0, 1.0, 3.0, 2.0], [0.0, 1.0, 1.0, 8.0, 5.0]]
    candidates = [[0, 1, 1, 1, 1], [0, 1, 1, 1, 0]]  # [CLS] never; example 1: token 4 is padding
    with tf.Graph().as_default(), tf1.Session() as session:
        targets = session.run(tr_method.mass_targets(
            tf.constant(scores), tf.constant(candidates, tf.float32), 0.6))
    # Example 0: mass 10, 60% = 6: 4 (above 0) and 3 (above 4) are needed, 2 (above 7) not.
    # Example 1: mass 10 without the padding: 8 alone holds 80%.
    np.testing.assert_array_equal(targets, [[0, 1, 0, 1, 0], [0, 0, 0, 1, 0]])


# A model folder described by its config ---------------------------------------------------------
@pytest.mark.parametrize("entry, message", [
    ({"reduction_layers": [2, 1], "policy_hidden_size": 4}, "distinct increasing"),
    ({"reduction_layers": [0, 3], "policy_hidden_size": 4}, r"in \[0, 2\]"),
    ({"reduction_layers": [0], "policy_hidden_size": 0}, "positive integer"),
    ({"reduction_layers": [0]}, "expected an object"),
])
def test_bad_config_entry_is_refused(entry, message):
    config = tiny_config(num_hidden_layers=NUM_LAYERS, tr_bert=entry)
    with pytest.raises(tr_method.TrBertConfigError, match=message):
        tr_method.from_config(config)


def test_model_folder_reloads_from_its_config_alone(weights, tmp_path):
    config, values = weights
    config = config.copy()
    config.extra[tr_method.CONFIG_KEY] = {"reduction_layers": list(REDUCTION_LAYERS),
                                          "policy_hidden_size": POLICY_WIDTH}
    write_tiny_model(tmp_path, config, values)
    stored = modeling.BertConfig.from_json_file(str(tmp_path / "bert_config.json"))
    found = methods.from_config(stored)
    assert [type(method) for method in found] == [tr_method.Inference]
    ids, mask, types = example_inputs(config.vocab_size, seed=6)
    with tf.Graph().as_default():
        hooks = methods.build_all(found, stored, False)
        from_folder, _ = bert_logits(stored, ids, mask, types, hooks.token_selector)
        # Strict: every variable, the policies included, must come from the checkpoint.
        checkpoint.init_from_checkpoint(str(tmp_path), variables=tf1.global_variables())
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            from_folder, kept = session.run(
                [from_folder, hooks.token_selector.records[REDUCTION_LAYERS[0]].kept_count])
    with tf.Graph().as_default():
        selector = selectors.DynamicSelector(build_policies(config), selectors.DETERMINISTIC)
        by_hand, _ = bert_logits(config, ids, mask, types, selector)
        by_hand = run_with_values(by_hand, values)
    np.testing.assert_allclose(from_folder, by_hand, atol=TOLERANCE)
    assert kept.min() < mask.sum(axis=1).max()  # the folder's policy did drop tokens


def test_onnx_export_gives_tensorflow_logits(weights, tmp_path):
    """deploy.export's ONNX conversion keeps the per-example gather: same logits, batches
    whose examples keep different numbers of tokens."""
    from deploy import export, inference  # the one package that combines methods

    config, values = weights
    config = config.copy()
    config.extra[tr_method.CONFIG_KEY] = {"reduction_layers": list(REDUCTION_LAYERS),
                                          "policy_hidden_size": POLICY_WIDTH}
    write_tiny_model(tmp_path / "model", config, values)
    model = inference.load_model_folder(str(tmp_path / "model"))
    runner = inference.TensorFlowRunner(model)
    onnx_file = str(tmp_path / "model.onnx")
    with export.quiet_converters():
        export.write_onnx(runner, onnx_file)
    onnx_runner = inference.OnnxRunner(onnx_file)
    for seed in range(3):
        inputs = example_inputs(config.vocab_size, seed=seed)
        np.testing.assert_allclose(onnx_runner(*inputs), runner(*inputs),
                                   atol=ONNX_TOLERANCE)
    runner.close()
