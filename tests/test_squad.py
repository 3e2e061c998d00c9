"""SQuAD reading, windows, span decoding and the official metric, on hand-written data.

No TensorFlow: a tiny vocabulary written here, two small articles in the real SQuAD json
schema (v1.1, and v2.0 with impossible questions) and hand-set logits.
"""
import json
import math
import types
import unicodedata

import numpy as np
import pytest

from bert import squad, squad_eval
from bert.errors import InputError, UsageError
from bert.tokenization import create_tokenizer, is_control

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCTUATION = [".", ",", "?", "'", "(", ")", ";"]
WORDS = ["the", "eiffel", "tower", "is", "a", "in", "paris", "france", "it", "was", "built",
         "by", "gustave", "s", "company", "1889", "and", "about", "330", "metres", "tall", "cat",
         "sat", "on", "mat", "old", "house", "what", "where", "who", "when", "how", "did", "dog",
         "sit", "eat", "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
         "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec",
         "romeo", "sierra", "tango", "1920", "##s", "cafe", "naive", "resume", "東", "ας",
         "istanbul", "ab", "soft", "##hyphen", "x\U0001D165\U0001D16D", "end", "line", "nbsp"]
CASED_WORDS = ["Café", "Alpha", "The", "ΑΣ", "İstanbul"]
UNKNOWN = "[UNK]"

# Accents (composed and decomposed), punctuation glued to words, CJK (one ideograph unknown),
# "1920s.", runs of spaces, newline, tab, a final sigma, a dotted capital I, a vertical tab and a
# soft hyphen (both deleted inside a word), marks that NFD reorders, a word too long for
# WordPiece, a line separator and a no-break space.
TRICKY_TEXT = ("Café  naïve—résumé, (1920s.)\n東京 tower\tΑΣ İstanbul a\x0bb "
               "soft\u00adhyphen cafe\u0301 x\U0001D16D\U0001D165 " + "z" * 120
               + " end\u2028line\u00a0nbsp ")

EIFFEL = ("The Eiffel Tower is a tower in Paris, France. It was built by Gustave Eiffel's "
          "company in 1889 and is about 330 metres tall.")
CAT = "The cat sat on the mat in the old house."
# Written by hand; the answer_start values are the answers' character offsets in EIFFEL / CAT.
SQUAD_V1 = {"version": "1.1", "data": [{"title": "Eiffel_Tower", "paragraphs": [{
    "context": EIFFEL,
    "qas": [
        {"id": "articles", "question": "What is in Paris?",
         "answers": [{"text": "The Eiffel Tower", "answer_start": 0}]},
        {"id": "punctuation", "question": "Where is it?",
         "answers": [{"text": "Paris, France", "answer_start": 31}]},
        {"id": "case_whitespace", "question": "Who built it?",
         "answers": [{"text": "Gustave Eiffel's company", "answer_start": 62}]},
        {"id": "partial", "question": "When was it built?",
         "answers": [{"text": "1889", "answer_start": 90}]},
        {"id": "several_golds", "question": "How tall is it?",
         "answers": [{"text": "about 330 metres", "answer_start": 102},
                     {"text": "330 metres", "answer_start": 108},
                     {"text": "330 metres tall", "answer_start": 108}]},
        {"id": "missing", "question": "Who built it?",
         "answers": [{"text": "Gustave Eiffel's company", "answer_start": 62}]},
    ]}]}]}
SQUAD_V2 = {"version": "v2.0", "data": [{"title": "Cat", "paragraphs": [{
    "context": CAT,
    "qas": [
        {"id": "has_1", "question": "Where did the cat sit?", "is_impossible": False,
         "answers": [{"text": "on the mat", "answer_start": 12}]},
        {"id": "none_1", "question": "Where did the dog sit?", "is_impossible": True,
         "answers": [], "plausible_answers": [{"text": "on the mat", "answer_start": 12}]},
        {"id": "none_2", "question": "What did the dog eat?", "is_impossible": True,
         "answers": []},
        {"id": "has_2", "question": "Which house?", "is_impossible": False,
         "answers": [{"text": "the old house", "answer_start": 26}]},
    ]}]}]}

# Word pieces: alpha(0) bravo , charlie delta .(5) echo foxtrot ( golf ) hotel(11) india
# juliet kilo lima mike ;(17) november oscar papa quebec romeo sierra tango 1920 ##s .(27)
LONG_CONTEXT = ("Alpha bravo, charlie  delta. Echo foxtrot (golf) hotel india\njuliet kilo lima "
                "mike; november oscar papa quebec romeo sierra tango 1920s.")
LONG_PIECES = 28
# "What?" is 2 pieces, so a window holds 16 - 2 - 3 = 11 context pieces.
WINDOWS = squad.QaFeatureSettings(max_seq_length=16, doc_stride=4, max_query_length=4)
WINDOW_STARTS = [0, 4, 8, 12, 16, 20]
QUERY_OFFSET = 4  # [CLS] what ? [SEP]
LONG_ANSWERS = ["Alpha", "bravo, charlie", "charlie  delta", "(golf)", "india\njuliet",
                "mike; november oscar", "tango 1920s", "1920s.", "s.", "Echo foxtrot (golf) hotel"]


def _write_vocab(folder, words):
    path = folder / "vocab.txt"
    path.write_text("\n".join(SPECIAL_TOKENS + PUNCTUATION + words) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return create_tokenizer(_write_vocab(tmp_path_factory.mktemp("vocab"), WORDS), True)


def _write_json(path, value):
    path.write_text(json.dumps(value), encoding="utf-8")
    return str(path)


def _position(window, piece):
    """The feature position of context piece ``piece`` in window ``window``."""
    return QUERY_OFFSET + piece - WINDOW_STARTS[window]


def _uncased(text):
    """What the uncased basic tokenizer makes of ``text``'s characters."""
    kept = "".join(char for char in text if not is_control(char))
    decomposed = unicodedata.normalize("NFD", kept.lower())
    return "".join(char for char in decomposed if unicodedata.category(char) != "Mn")


# The official metric ---------------------------------------------------------------------------
def test_normalize_answer_follows_the_official_rules():
    assert squad_eval.normalize_answer("  The  Eiffel,\tTower!  ") == "eiffel tower"
    assert squad_eval.normalize_answer("An apple and a theme") == "apple and theme"
    assert squad_eval.normalize_answer("don't") == "dont"
    assert squad_eval.normalize_answer("The") == ""


def test_exact_match_and_f1_of_single_pairs():
    assert squad_eval.exact_match("the Eiffel tower.", "Eiffel Tower") == 1
    # pred {company, of, gustave, eiffel}, gold {gustave, eiffels, company}: 2 shared,
    # P = 2/4, R = 2/3, F1 = 2 * 1/2 * 2/3 / (1/2 + 2/3) = 4/7.
    assert squad_eval.f1("the company of Gustave Eiffel", "Gustave Eiffel's company") == \
        pytest.approx(4 / 7)
    assert squad_eval.f1("", "") == 1.0
    assert squad_eval.f1("a", "the") == 1.0  # both normalise to nothing
    assert squad_eval.f1("cat", "") == 0.0
    assert squad_eval.f1("", "cat") == 0.0
    assert squad_eval.f1("dog", "cat") == 0.0


def test_v1_metric_on_hand_made_predictions(tmp_path):
    dataset = _write_json(tmp_path / "dev-v1.1.json", SQUAD_V1)
    predictions = _write_json(tmp_path / "predictions.json", {
        "articles": "Eiffel Tower",  # gold "The Eiffel Tower": EM 1
        "punctuation": "Paris France.",  # gold "Paris, France": EM 1
        "case_whitespace": "  gustave   EIFFEL's company ",  # EM 1
        # pred {in, 1889, and}, gold {1889}: P = 1/3, R = 1, F1 = 2 * 1/3 / (4/3) = 1/2; EM 0.
        "partial": "in 1889 and",
        # pred {330, m, tall}: vs "about 330 metres" 1 shared, F1 1/3; vs "330 metres" 1
        # shared, P 1/3, R 1/2, F1 2/5; vs "330 metres tall" 2 shared, F1 2/3: max 2/3; EM 0.
        "several_golds": "330 m tall",
        "not_in_dataset": "ignored",
    })  # "missing" has no prediction: 0
    result = squad_eval.evaluate_file(dataset, predictions)
    assert result["exact_match"] == pytest.approx(100 * 3 / 6)
    assert result["f1"] == pytest.approx(100 * (1 + 1 + 1 + 1 / 2 + 2 / 3 + 0) / 6)
    assert result["total"] == 6 and result["missing"] == 1
    assert not any(key.startswith(("HasAns", "NoAns")) for key in result)


def test_v2_metric_scores_null_answers_and_splits_has_and_no_answer(tmp_path):
    dataset = _write_json(tmp_path / "dev-v2.0.json", SQUAD_V2)
    predictions = _write_json(tmp_path / "predictions.json", {
        "has_1": "",  # "" for an answerable question: 0
        "none_1": "",  # "" for an impossible one: 1
        "none_2": "the mat",  # text for an impossible one: 0
        "has_2": "old house",  # gold "the old house": 1
    })
    result = squad_eval.evaluate_file(dataset, predictions)
    assert result["exact_match"] == pytest.approx(50.0) and result["f1"] == pytest.approx(50.0)
    assert result["HasAns_exact"] == pytest.approx(50.0)
    assert result["HasAns_f1"] == pytest.approx(50.0)
    assert result["NoAns_exact"] == pytest.approx(50.0)
    assert result["NoAns_f1"] == pytest.approx(50.0)
    assert (result["HasAns_total"], result["NoAns_total"], result["total"]) == (2, 2, 4)
    assert result["missing"] == 0


def test_predictions_file_must_map_ids_to_text(tmp_path):
    dataset = _write_json(tmp_path / "dev-v2.0.json", SQUAD_V2)
    predictions = _write_json(tmp_path / "predictions.json", {"has_1": 3})
    with pytest.raises(InputError, match=r"predictions\.json: the answer of 'has_1' is not a"):
        squad_eval.evaluate_file(dataset, predictions)


# Reading ---------------------------------------------------------------------------------------
def test_read_squad_v1_training_keeps_the_first_answer_span(tmp_path):
    examples = squad.read_squad(_write_json(tmp_path / "train-v1.1.json", SQUAD_V1), True)
    assert [example.qas_id for example in examples][:2] == ["articles", "punctuation"]
    tall = examples[4]
    assert tall.answer_texts == ["about 330 metres", "330 metres", "330 metres tall"]
    assert EIFFEL[tall.answer_start_char:tall.answer_end_char] == "about 330 metres"
    assert not tall.is_impossible


def test_read_squad_v2_marks_impossible_questions(tmp_path):
    path = _write_json(tmp_path / "train-v2.0.json", SQUAD_V2)
    impossible = squad.read_squad(path, is_training=True)[1]
    assert impossible.is_impossible and impossible.answer_texts == []
    assert impossible.answer_start_char is None and impossible.answer_end_char is None
    evaluation = squad.read_squad(path, is_training=False)[0]
    assert evaluation.answer_texts == ["on the mat"] and evaluation.answer_start_char is None


def _broken(change):
    """SQUAD_V1 with ``change`` applied to a deep copy."""
    dataset = json.loads(json.dumps(SQUAD_V1))
    change(dataset)
    return dataset


def _answer(dataset):
    return dataset["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]


@pytest.mark.parametrize("change, message", [
    (lambda d: _answer(d).update(answer_start=999),
     r"data\[0\]\.paragraphs\[0\]\.qas\[1\]\.answers\[0\]: answer_start 999 is past the "
     r"context's end"),
    (lambda d: _answer(d).update(text="Lyon, France"),
     r"data\[0\]\.paragraphs\[0\]\.qas\[1\]\.answers\[0\]: answer text 'Lyon, France' is not "
     r"the context at answer_start 31"),
    (lambda d: d["data"][0]["paragraphs"].append({"qas": []}),
     r'data\[0\]\.paragraphs\[1\]: missing "context"'),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][2].update(id="articles"),
     r"data\[0\]\.paragraphs\[0\]\.qas\[2\]: id 'articles' was already used at "
     r"data\[0\]\.paragraphs\[0\]\.qas\[0\]"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][0].update(answers=[]),
     r"qas\[0\]: no answers for a question that is not is_impossible"),
    (lambda d: _answer(d).update(answer_start=-1),
     r"qas\[1\]\.answers\[0\]: answer_start -1 is negative"),
    (lambda d: _answer(d).update(answer_start="31"),
     r'qas\[1\]\.answers\[0\]: "answer_start" is a string, expected a number'),
])
def test_bad_training_data_is_one_line_naming_where(tmp_path, change, message):
    path = _write_json(tmp_path / "train-v1.1.json", _broken(change))
    with pytest.raises(InputError, match=message) as error:
        squad.read_squad(path, is_training=True)
    assert str(error.value).startswith(path + ": ") and "\n" not in str(error.value)


def test_bad_json_names_the_file_and_line(tmp_path):
    path = tmp_path / "dev-v1.1.json"
    path.write_text('{"data": [\n  {"title": }]}', encoding="utf-8")
    with pytest.raises(InputError, match=r"dev-v1\.1\.json: not valid JSON: .* line 2 column"):
        squad.read_squad(path, is_training=False)


# Tokenizing with offsets -----------------------------------------------------------------------
def test_offset_pieces_equal_the_tokenizer_and_spans_quote_the_context(tokenizer):
    pieces, spans = squad.tokenize_with_offsets(tokenizer, TRICKY_TEXT)
    assert pieces == tokenizer.tokenize(TRICKY_TEXT)
    assert tokenizer.convert_tokens_to_ids(pieces) == tokenizer.convert_tokens_to_ids(
        tokenizer.tokenize(TRICKY_TEXT))
    assert len(spans) == len(pieces)
    for piece, (start, end) in zip(pieces, spans):
        if piece != UNKNOWN:
            assert _uncased(TRICKY_TEXT[start:end]) == piece.removeprefix("##")
    quoted = [TRICKY_TEXT[start:end] for start, end in spans]
    assert quoted[:8] == ["Café", "naïve", "—", "résumé", ",", "(", "1920", "s"]
    for expected in ["東", "京", "ΑΣ", "İstanbul", "a\x0bb", "soft", "hyphen",
                     "cafe\u0301", "x\U0001D16D\U0001D165", "z" * 120, "end", "line", "nbsp"]:
        assert expected in quoted


def test_offset_pieces_equal_a_cased_tokenizer(tmp_path):
    cased = create_tokenizer(_write_vocab(tmp_path, WORDS + CASED_WORDS), False)
    pieces, spans = squad.tokenize_with_offsets(cased, TRICKY_TEXT)
    assert pieces == cased.tokenize(TRICKY_TEXT)
    assert [TRICKY_TEXT[start:end] for start, end in spans][:2] == ["Café", "naïve"]


def test_offsets_need_a_wordpiece_tokenizer():
    with pytest.raises(squad.OffsetTokenizerError, match="WordPiece vocab.txt"):
        squad.tokenize_with_offsets(types.SimpleNamespace(), "text")


# Features --------------------------------------------------------------------------------------
@pytest.mark.parametrize("settings, flag", [
    (dict(doc_stride=0), "--doc_stride=0"),
    (dict(max_seq_length=16, max_query_length=4, doc_stride=10), "--doc_stride=10"),
    (dict(max_seq_length=67, max_query_length=64), "--max_seq_length=67"),
    (dict(max_query_length=0), "--max_query_length=0"),
])
def test_feature_settings_name_the_bad_flag(settings, flag):
    with pytest.raises(UsageError, match=flag):
        squad.QaFeatureSettings(**settings)


def _long_examples():
    return [squad.QaExample(f"q{index}", "What?", LONG_CONTEXT, [answer], False,
                            LONG_CONTEXT.index(answer), LONG_CONTEXT.index(answer) + len(answer))
            for index, answer in enumerate(LONG_ANSWERS)]


def test_windows_cover_the_context_and_map_answers_back_to_characters(tokenizer):
    examples = _long_examples()
    features = squad.convert_examples(examples, tokenizer, WINDOWS, is_training=True)
    windows_per_example = len(WINDOW_STARTS)
    assert len(features) == len(examples) * windows_per_example
    assert len({feature.unique_id for feature in features}) == len(features)
    cls_id, sep_id = tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    first = features[0]
    assert first.input_ids[0] == cls_id and first.input_ids[3] == sep_id
    assert first.input_ids[-1] == sep_id and all(first.input_mask)
    assert first.segment_ids == [0] * QUERY_OFFSET + [1] * (WINDOWS.max_seq_length - 4)
    last = features[windows_per_example - 1]  # 8 pieces, [SEP], 3 of padding
    assert last.input_mask == [1] * 13 + [0] * 3 and last.input_ids[13:] == [0] * 3
    assert last.token_spans[QUERY_OFFSET + 7][1] == len(LONG_CONTEXT)
    for example_index, example in enumerate(examples):
        mine = [feature for feature in features if feature.example_index == example_index]
        assert [feature.window_index for feature in mine] == list(range(windows_per_example))
        answered = [feature for feature in mine if feature.start_position]
        assert answered, example.answer_texts[0]
        for feature in answered:
            start = feature.token_spans[feature.start_position][0]
            end = feature.token_spans[feature.end_position][1]
            assert LONG_CONTEXT[start:end] == example.answer_texts[0]
        for feature in mine:
            assert bool(feature.start_position) == bool(feature.end_position)


def test_each_token_is_max_context_in_exactly_one_window(tokenizer):
    features = squad.convert_examples(_long_examples()[:1], tokenizer, WINDOWS, False)
    holding, best = [0] * LONG_PIECES, [0] * LONG_PIECES
    for window, feature in enumerate(features):
        for position, span in enumerate(feature.token_spans):
            if span is not None:
                piece = position - _position(window, 0)
                holding[piece] += 1
                best[piece] += feature.token_is_max_context[position]
    assert best == [1] * LONG_PIECES and max(holding) > 1
    # "golf" (piece 9): windows 0, 1, 2 give it min(left, right) 1, 5, 1 pieces of context.
    assert [feature.token_is_max_context[_position(window, 9)]
            for window, feature in enumerate(features[:3])] == [False, True, False]
    # "hotel" (piece 7) ties in windows 0 and 1 (3 each side): the first one wins.
    assert features[0].token_is_max_context[_position(0, 7)]


def test_impossible_and_out_of_window_answers_point_at_cls(tmp_path, tokenizer):
    examples = squad.read_squad(_write_json(tmp_path / "train-v2.0.json", SQUAD_V2), True)
    features = squad.convert_examples(examples, tokenizer, squad.QaFeatureSettings(), True)
    positions = [(feature.start_position, feature.end_position) for feature in features]
    assert positions[1] == positions[2] == (0, 0)
    start, end = positions[0]
    spans = features[0].token_spans
    assert CAT[spans[start][0]:spans[end][1]] == "on the mat"


# Decoding --------------------------------------------------------------------------------------
def _decode(tokenizer, set_logits, **settings):
    """decode() of the first long example, with logits zero except where ``set_logits`` puts
    them (it gets the start and end arrays, one row per window)."""
    examples = _long_examples()[:1]
    features = squad.convert_examples(examples, tokenizer, WINDOWS, False)
    starts = np.zeros((len(features), WINDOWS.max_seq_length))
    ends = np.zeros_like(starts)
    set_logits(starts, ends)
    decoded = squad_eval.decode(examples, features, starts, ends,
                                squad_eval.QaDecodeSettings(**settings))
    return decoded["q0"]


def test_decode_picks_the_best_max_context_span_across_windows(tokenizer):
    def set_logits(starts, ends):
        starts[2, _position(2, 12)], ends[2, _position(2, 13)] = 5.0, 5.0  # india juliet
        # Higher, but window 0 is not where "golf" (piece 9) has its most context.
        starts[0, _position(0, 9)], ends[0, _position(0, 10)] = 8.0, 8.0
    prediction = _decode(tokenizer, set_logits)
    assert prediction.text == "india\njuliet" and prediction.score == pytest.approx(10.0)
    assert prediction.null_score is None
    texts = [entry.text for entry in prediction.nbest]
    assert texts[0] == "india\njuliet"
    assert max(entry.start_logit + entry.end_logit for entry in prediction.nbest) == 10.0
    assert len(texts) == len(set(texts)) == 20
    assert sum(entry.probability for entry in prediction.nbest) == pytest.approx(1.0)
    probabilities = [entry.probability for entry in prediction.nbest]
    assert probabilities == sorted(probabilities, reverse=True)


def test_decode_respects_max_answer_length(tokenizer):
    def set_logits(starts, ends):
        starts[0, _position(0, 0)] = 10.0  # Alpha
        ends[0, _position(0, 6)] = 9.0  # ... Echo: 7 pieces
        ends[0, _position(0, 1)] = 8.0  # ... bravo: 2 pieces
    assert _decode(tokenizer, set_logits, max_answer_length=7).text == \
        "Alpha bravo, charlie  delta. Echo"
    assert _decode(tokenizer, set_logits, max_answer_length=3).text == "Alpha bravo"


@pytest.mark.parametrize("span_logit, threshold, expected", [
    (4.0, 0.0, ""),  # null 10 beats the span's 8 by 2
    (4.0, 2.5, "Alpha bravo"),  # ... but not by more than 2.5
    (6.0, 0.0, "Alpha bravo"),  # the span's 12 beats null 10
])
def test_decode_v2_answers_null_when_it_beats_the_best_span(tokenizer, span_logit, threshold,
                                                           expected):
    def set_logits(starts, ends):
        starts[:, 0] = ends[:, 0] = 6.0
        starts[3, 0] = ends[3, 0] = 5.0  # the null score is the lowest window's: 10
        starts[0, _position(0, 0)] = ends[0, _position(0, 1)] = span_logit
    prediction = _decode(tokenizer, set_logits, version_2_with_negative=True,
                         null_score_diff_threshold=threshold)
    assert prediction.text == expected
    assert prediction.null_score == pytest.approx(10.0)
    assert prediction.null_score_diff == pytest.approx(10.0 - 2 * span_logit)


@pytest.mark.parametrize("settings, flag", [
    (dict(n_best_size=0), "--n_best_size=0"),
    (dict(max_answer_length=0), "--max_answer_length=0"),
    (dict(null_score_diff_threshold=math.nan), "--null_score_diff_threshold=nan"),
])
def test_decode_settings_name_the_bad_flag(settings, flag):
    with pytest.raises(UsageError, match=flag):
        squad_eval.QaDecodeSettings(**settings)


def test_write_predictions_then_evaluate_round_trip(tmp_path, tokenizer):
    dataset = _write_json(tmp_path / "dev-v2.0.json", SQUAD_V2)
    examples = squad.read_squad(dataset, is_training=False)
    features = squad.convert_examples(examples, tokenizer, squad.QaFeatureSettings(), False)
    starts = np.zeros((len(features), squad.QaFeatureSettings().max_seq_length))
    ends = np.zeros_like(starts)
    for index, answer in ((0, "on"), (3, "the old house")):  # has_1 "on", has_2 exact
        spans = features[index].token_spans
        first = next(p for p, s in enumerate(spans) if s and CAT[s[0]:].startswith(answer))
        last = next(p for p, s in enumerate(spans) if s and s[1] == CAT.index(answer) + len(answer))
        starts[index, first], ends[index, last] = 5.0, 5.0
    starts[1:3, 0] = ends[1:3, 0] = 9.0  # the impossible ones: null
    settings = squad_eval.QaDecodeSettings(version_2_with_negative=True)
    predictions = squad_eval.decode(examples, features, starts, ends, settings)
    metrics = squad_eval.score_predictions(
        examples, {qas_id: p.text for qas_id, p in predictions.items()}, True)
    output = tmp_path / "out"
    squad_eval.write_predictions(str(output), predictions, metrics)
    written = json.loads((output / "predictions.json").read_text())
    assert written == {"has_1": "on", "none_1": "", "none_2": "", "has_2": "the old house"}
    assert squad_eval.evaluate_file(dataset, output / "predictions.json") == metrics
    # has_1 "on" vs "on the mat": P 1, R 1/2, F1 2/3; the other three exact.
    assert metrics["exact_match"] == pytest.approx(75.0)
    assert metrics["f1"] == pytest.approx(100 * (2 / 3 + 3) / 4)
    nbest = json.loads((output / "nbest_predictions.json").read_text())
    assert nbest["has_2"][0]["text"] == "the old house"
    assert set(nbest["has_2"][0]) == {"text", "start_logit", "end_logit", "probability"}
    odds = json.loads((output / "null_odds.json").read_text())
    assert odds["none_1"] == pytest.approx(18.0) and odds["has_2"] == pytest.approx(-10.0)
    lines = (output / "eval_results.txt").read_text().splitlines()
    assert lines == [f"{key} = {metrics[key]}" for key in sorted(metrics)]
    assert "HasAns_f1 = " in "\n".join(lines)
