"""PoWER-BERT pieces: significance, Soft-Extract, Extract, regulariser, configuration rules."""
import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoint, modeling
from power_bert import token_selectors as selectors
from power_bert.significance import token_significance
from tiny_bert import initializer_weights

tf1 = tf.compat.v1

SEQ_LENGTH = 8
REAL_TOKENS = 6  # every example of the model tests has 2 padding tokens


def evaluate(tensors, feed=None):
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        return session.run(tensors, feed)


# Significance ---------------------------------------------------------------------------------
HEAD_0 = [[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.4, 0.4, 0.2]]
HEAD_1 = [[0.1, 0.7, 0.2], [0.3, 0.3, 0.4], [0.2, 0.2, 0.6]]


def significance(probs, mask, sum_heads=False):
    with tf.Graph().as_default():
        return evaluate(token_significance(tf.constant(probs, tf.float32),
                                           tf.constant(mask, tf.int32), sum_heads))


def test_significance_equals_hand_computation():
    # Head average: [[.3, .5, .2], [.2, .45, .35], [.3, .3, .4]]. Token 2 is padding, so its
    # query row is left out: column sums of rows 0-1 are [.5, .95, .55]; minus the diagonal of
    # the real rows (.3, .45, none for the padded token) gives [.2, .5, .55].
    result = significance([[HEAD_0, HEAD_1]], [[1, 1, 0]])
    np.testing.assert_allclose(result, [[0.2, 0.5, 0.55]], atol=1e-6)
    summed = significance([[HEAD_0, HEAD_1]], [[1, 1, 0]], sum_heads=True)
    np.testing.assert_allclose(summed, [[0.4, 1.0, 1.1]], atol=1e-6)
    # No padding: all three rows count; [.8, 1.25, .95] - [.3, .45, .4].
    np.testing.assert_allclose(significance([[HEAD_0, HEAD_1]], [[1, 1, 1]]),
                               [[0.5, 0.8, 0.55]], atol=1e-6)


@pytest.mark.parametrize("heads", [1, 3, 5])
def test_significance_works_for_any_head_count(heads):
    result = significance([[HEAD_0] * heads], [[1, 1, 1]])
    # Column sums of HEAD_0 [1.0, 1.3, 0.7] minus its diagonal [.5, .6, .2].
    np.testing.assert_allclose(result, [[0.5, 0.7, 0.5]], atol=1e-6)


# Selectors on hand-made inputs ------------------------------------------------------------------
def column_attention(weights, heads=2):
    """Attention whose every query row is `weights`: significance ranks tokens like weights."""
    weights = np.asarray(weights, np.float32)
    length = weights.shape[-1]
    return np.broadcast_to(weights[:, None, None, :],
                           (weights.shape[0], heads, length, length)).copy()


def test_extract_keeps_cls_keeps_order_and_gathers_mask():
    weights = [[0.9, 0.1, 0.5, 0.3, 0.7],   # others by significance: 4, 2, 3, 1
               [0.0, 0.2, 0.1, 0.9, 0.8]]   # [CLS] least significant; 3 and 4 are padding
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], np.int32)
    hidden = np.stack([np.stack([np.arange(5), np.full(5, b)], -1) for b in range(2)])
    with tf.Graph().as_default():
        hidden_t = tf.constant(hidden, tf.float32)
        mask_t = tf.constant(mask)
        selector = selectors.ExtractSelector([4, 2])
        out, out_mask = selector(0, hidden_t, tf.constant(column_attention(weights)), mask_t)
        assert out.shape.as_list() == [2, 4, 2] and out_mask.shape.as_list() == [2, 4]
        shorter, shorter_mask = selector(1, out, tf.constant(column_attention(
            [[0.0, 0.1, 0.9, 0.2], [0.0, 0.1, 0.9, 0.2]])), out_mask)
        same, same_mask = selectors.ExtractSelector([5])(0, hidden_t, tf.zeros([2, 2, 5, 5]),
                                                         mask_t)
        assert same is hidden_t and same_mask is mask_t  # l_j >= length: untouched
        out, out_mask, shorter, shorter_mask = evaluate([out, out_mask, shorter, shorter_mask])
    # Example 0 keeps [CLS] and tokens 4, 2, 3, in their original order.
    np.testing.assert_array_equal(out[0, :, 0], [0, 2, 3, 4])
    np.testing.assert_array_equal(out_mask[0], [1, 1, 1, 1])
    # Example 1: padding ranks last whatever its attention; ties keep the lower position.
    np.testing.assert_array_equal(out[1, :, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(out_mask[1], [1, 1, 1, 0])
    np.testing.assert_array_equal(out[:, :, 1], [[0] * 4, [1] * 4])
    # Next layer keeps [CLS] + the kept token of highest significance.
    np.testing.assert_array_equal(shorter[:, :, 0], [[0, 3], [0, 2]])
    np.testing.assert_array_equal(shorter_mask, [[1, 1], [1, 1]])


def test_soft_extract_scales_by_significance_rank():
    weights = [[0.1, 0.9, 0.5, 0.3], [0.1, 0.9, 0.5, 10.0]]  # token 3 of example 1 is padding
    mask = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], np.int32)
    with tf.Graph().as_default():
        selector = selectors.SoftExtractSelector(num_layers=1, max_seq_length=4)
        assign = selector.variables[0].assign([1.0, 0.5, 0.25, 0.0])
        out, out_mask = selector(0, tf.ones([2, 4, 3]), tf.constant(column_attention(weights)),
                                 tf.constant(mask))
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            session.run(assign)
            out, out_mask = session.run([out, out_mask])
    # Ranks: example 0 -> tokens 1, 2, 3, 0; example 1 -> 1, 2, 0, then the padded 3.
    np.testing.assert_allclose(out[..., 0], [[0.0, 1.0, 0.5, 0.25], [0.25, 1.0, 0.5, 0.0]])
    np.testing.assert_array_equal(out_mask, mask)


def test_retention_variables_are_named_per_layer():
    with tf.Graph().as_default():
        selector = selectors.SoftExtractSelector(num_layers=3, max_seq_length=SEQ_LENGTH)
        names = [variable.op.name for variable in selector.variables]
        values = evaluate(selector.variables)
    assert names == [selectors.retention_variable_name(i) for i in range(3)]
    assert names[0] == "power_bert/retention_0"
    np.testing.assert_array_equal(values, np.ones([3, SEQ_LENGTH]))


# Regulariser and configuration read-out --------------------------------------------------------
def test_regularizer_value_and_gradient():
    lambda_ = 0.1
    with tf.Graph().as_default():
        variables = [tf1.Variable(v, dtype=tf.float32)
                     for v in ([1.0, 0.5], [0.25, 0.25], [1.0, 1.0])]
        loss = selectors.retention_regularizer(variables, lambda_)
        value, gradients = evaluate([loss, tf.gradients(loss, variables)])
    assert value == pytest.approx(lambda_ * (1 * 1.5 + 2 * 0.5 + 3 * 2.0))
    for layer_number, gradient in enumerate(gradients, 1):
        np.testing.assert_allclose(gradient, [lambda_ * layer_number] * 2, rtol=1e-6)


def test_clip_keeps_retention_in_unit_interval():
    with tf.Graph().as_default():
        clipped = evaluate(selectors.clip_retention(tf.constant([-0.5, 0.3, 1.7])))
    np.testing.assert_allclose(clipped, [0.0, 0.3, 1.0])


def test_configuration_read_out_rule():
    retention = [np.full(10, 0.57), np.full(10, 0.62), np.full(10, 0.03), np.full(4, 0.5),
                 np.zeros(10), np.ones(3)]
    # Sums 5.7, 6.2, 0.3, 2.0, 0.0, 3.0 -> floor 5, 6, 0, 2, 0, 3 -> at least 1 ->
    # non-increasing: 5, 5, 1, 1, 1, 1.
    assert selectors.read_retention_config(retention) == [5, 5, 1, 1, 1, 1]
    assert selectors.read_retention_config([np.ones(128, np.float32)] * 2) == [128, 128]


@pytest.mark.parametrize("text, message", [
    ("128,128", "has 2 values; the model has 3 layers"),
    ("128,128,64,32", "has 4 values"),
    ("128,abc,64", r"value 2 \('abc'\) is not an integer"),
    ("128,64.5,32", r"value 2 \('64.5'\) is not an integer"),
    ("128,,32", r"value 2 \(''\) is not an integer"),
    ("64,128,32", r"value 2 \(128\) is larger than value 1 \(64\)"),
    ("200,100,50", r"value 1 \(200\) is above max_seq_length 128"),
    ("64,0,0", r"value 2 \(0\) is below 1"),
    ("64,32,-3", r"value 3 \(-3\) is below 1"),
])
def test_bad_retention_config_names_the_position(text, message):
    with pytest.raises(selectors.RetentionConfigError, match=message):
        selectors.parse_retention_config(text, num_layers=3, max_seq_length=128)


def test_retention_config_parses():
    assert selectors.parse_retention_config(" 128, 64 ,1", 3, 128) == [128, 64, 1]
    assert selectors.format_retention_config([128, 64, 1]) == "128,64,1"


# Whole model: the selectors leave BERT unchanged when they keep everything --------------------
@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    config = modeling.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=3,
                                 num_attention_heads=4, intermediate_size=32,
                                 max_position_embeddings=32, type_vocab_size=2,
                                 initializer_range=0.2)
    prefix = str(tmp_path_factory.mktemp("tiny_power_bert") / checkpoint.CHECKPOINT_NAME)
    checkpoint.save_variables(initializer_weights(config), prefix)
    rng = np.random.RandomState(0)
    ids = rng.randint(5, 40, [3, SEQ_LENGTH]).astype(np.int32)
    mask = np.zeros([3, SEQ_LENGTH], np.int32)
    mask[:, :REAL_TOKENS] = 1
    ids[mask == 0] = 0
    return config, prefix, ids, mask


def run_model(tiny_bert, selector_factory=None):
    config, prefix, ids, mask = tiny_bert
    with tf.Graph().as_default():
        selector = selector_factory(config) if selector_factory else None
        model = modeling.BertModel(config, False, tf.constant(ids), tf.constant(mask),
                                   token_selector=selector)
        checkpoint.init_from_checkpoint(prefix,
                                        allow_missing=(selectors.RETENTION_VARIABLE_PATTERN,))
        return evaluate([model.sequence_output, model.pooled_output])


def test_extract_with_full_retention_is_plain_bert(tiny_bert):
    plain_sequence, plain_pooled = run_model(tiny_bert)
    sequence, pooled = run_model(
        tiny_bert, lambda config: selectors.ExtractSelector([SEQ_LENGTH] * 3))
    assert np.abs(sequence - plain_sequence).max() <= 1e-5
    assert np.abs(pooled - plain_pooled).max() <= 1e-5


def test_soft_extract_with_unit_retention_is_plain_bert(tiny_bert):
    plain_sequence, plain_pooled = run_model(tiny_bert)
    sequence, pooled = run_model(
        tiny_bert, lambda config: selectors.SoftExtractSelector(3, SEQ_LENGTH))
    assert np.abs(sequence - plain_sequence).max() <= 1e-5
    assert np.abs(pooled - plain_pooled).max() <= 1e-5


def test_extract_dropping_only_padding_keeps_the_output(tiny_bert):
    """Padding ranks last, so keeping the real tokens must not change [CLS]'s result."""
    plain_sequence, plain_pooled = run_model(tiny_bert)
    sequence, pooled = run_model(
        tiny_bert, lambda config: selectors.ExtractSelector([REAL_TOKENS] * 3))
    assert sequence.shape[1] == REAL_TOKENS
    assert np.abs(sequence - plain_sequence[:, :REAL_TOKENS]).max() <= 1e-5
    assert np.abs(pooled - plain_pooled).max() <= 1e-5


def test_extract_shortens_the_sequence_layer_by_layer(tiny_bert):
    config, _, ids, mask = tiny_bert
    with tf.Graph().as_default():
        model = modeling.BertModel(config, False, tf.constant(ids), tf.constant(mask),
                                   token_selector=selectors.ExtractSelector([6, 4, 1]))
    assert [layer.shape.as_list()[1] for layer in model.all_encoder_layers] == [6, 4, 1]
    assert [p.shape.as_list()[-1] for p in model.all_attention_probs] == [SEQ_LENGTH, 6, 4]


def test_extract_on_dynamic_length_equals_full_padding(tiny_bert):
    """Padded to the longest example (dynamic length) vs padded to max_seq_length: the same
    real tokens are kept, so [CLS]'s result is the same, also when l_j exceeds the length."""
    config, prefix, ids, mask = tiny_bert
    retention = [REAL_TOKENS + 2, 3, 2]  # the first exceeds the dynamic length REAL_TOKENS
    _, full_pooled = run_model(tiny_bert, lambda config: selectors.ExtractSelector(retention))
    with tf.Graph().as_default():
        ids_in = tf1.placeholder(tf.int32, [None, None])
        mask_in = tf1.placeholder(tf.int32, [None, None])
        model = modeling.BertModel(config, False, ids_in, mask_in,
                                   token_selector=selectors.ExtractSelector(retention))
        checkpoint.init_from_checkpoint(prefix)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            pooled, last = session.run(
                [model.pooled_output, model.all_encoder_layers[-1]],
                {ids_in: ids[:, :REAL_TOKENS], mask_in: mask[:, :REAL_TOKENS]})
    assert last.shape[1] == 2
    assert np.abs(pooled - full_pooled).max() <= 1e-5
