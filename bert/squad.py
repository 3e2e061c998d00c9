"""SQuAD v1.1 / v2.0 reading and feature building, in plain Python (no TensorFlow).

Answers are located by character offsets into the original context all the way through: every
word piece of a context carries the span of original characters it came from, so a predicted
span of pieces maps back to exactly the substring of the context the reader wrote, without the
text-realignment heuristics of Google's run_squad.py.
"""
import dataclasses
import json
import unicodedata

from bert.errors import InputError, UsageError
from bert.tokenization import (CONTINUATION_PREFIX, NUL_CODEPOINT, REPLACEMENT_CODEPOINT,
                               FullTokenizer, describe_undecodable, is_cjk_ideograph, is_control,
                               is_punctuation)

CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
SPECIAL_TOKENS_PER_FEATURE = 3  # [CLS] question [SEP] context [SEP]
QUESTION_SEGMENT = 0
CONTEXT_SEGMENT = 1
PAD_ID = 0
NO_ANSWER_POSITION = 0  # the [CLS] position stands for "no answer in this window"
# Google's feature ids start here, so a unique_id never looks like an example index.
FIRST_UNIQUE_ID = 1_000_000_000
# A window's length breaks ties between windows that give a token the same context on its
# shorter side (the rule of Google's run_squad.py).
WINDOW_LENGTH_WEIGHT = 0.01
STRIPPED_CATEGORY = "Mn"  # nonspacing marks: accents an uncased vocabulary was built without
DROPPED_CODEPOINTS = frozenset({NUL_CODEPOINT, REPLACEMENT_CODEPOINT})
JSON_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", int: "a number",
                   float: "a number", bool: "a boolean", type(None): "null"}


class OffsetTokenizerError(UsageError):
    """The tokenizer cannot give character offsets (a SentencePiece model, say)."""


# Reading ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class QaExample:
    """One question about one context; the answer is kept as characters of the context."""

    qas_id: str
    question: str
    context: str
    answer_texts: list  # every gold answer's text, for evaluation; empty when impossible
    is_impossible: bool = False
    answer_start_char: int = None  # the first answer's span when training; None otherwise
    answer_end_char: int = None  # exclusive


def load_json(path):
    """The parsed file; bad bytes or syntax become a one-line InputError naming the place."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return json.load(handle)
    except UnicodeDecodeError:
        raise InputError(describe_undecodable(path)) from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON: {error.msg} at line {error.lineno} column "
                         f"{error.colno}") from None


def _json_type(value):
    return JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _field(node, key, kind, where, default=None):
    """``node[key]`` checked to be a ``kind``; absent is an error unless a default is given."""
    if not isinstance(node, dict):
        raise InputError(f"{where}: expected an object, found {_json_type(node)}")
    if key not in node:
        if default is not None:
            return default
        raise InputError(f'{where}: missing "{key}"')
    value = node[key]
    # json numbers that are booleans are not counts: True is an int to Python.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InputError(f'{where}: "{key}" is {_json_type(value)}, expected '
                         f"{JSON_TYPE_NAMES[kind]}")
    return value


def _same_text(first, second):
    """Answers in the official files sometimes differ from the context only in whitespace."""
    return first.split() == second.split()


def _training_answer_span(answers, context, where):
    """(start, end) of the first answer, checked against the context it claims to quote."""
    if not answers:
        raise InputError(f"{where}: no answers for a question that is not is_impossible")
    where = f"{where}.answers[0]"
    text = _field(answers[0], "text", str, where)
    start = _field(answers[0], "answer_start", int, where)
    if not text.strip():
        raise InputError(f"{where}: the answer text is empty")
    end = start + len(text)
    if start < 0:
        raise InputError(f"{where}: answer_start {start} is negative")
    if end > len(context):
        raise InputError(f"{where}: answer_start {start} is past the context's end (answer "
                         f"{text!r} of {len(text)} characters, context of {len(context)})")
    if not _same_text(context[start:end], text):
        raise InputError(f"{where}: answer text {text!r} is not the context at answer_start "
                         f"{start} ({context[start:end]!r})")
    return start, end


def _read_qa(qa, context, where, is_training):
    qas_id = _field(qa, "id", str, where)
    question = _field(qa, "question", str, where)
    is_impossible = _field(qa, "is_impossible", bool, where, default=False)
    answers = _field(qa, "answers", list, where)
    texts = [_field(answer, "text", str, f"{where}.answers[{index}]")
             for index, answer in enumerate(answers)]
    example = QaExample(qas_id, question, context, texts, is_impossible)
    if is_training and not is_impossible:
        example.answer_start_char, example.answer_end_char = _training_answer_span(
            answers, context, where)
    return example


def read_squad(path, is_training):
    """Every question of an official SQuAD json (v1.1, or v2.0 with is_impossible).

    Training also checks that the first answer quotes the context at its answer_start, since
    the model learns from that span; evaluation only needs the answer texts.
    """
    path = str(path)
    articles = _field(load_json(path), "data", list, path)
    examples = []
    first_seen = {}
    for article_index, article in enumerate(articles):
        article_where = f"{path}: data[{article_index}]"
        for paragraph_index, paragraph in enumerate(_field(article, "paragraphs", list,
                                                           article_where)):
            paragraph_where = f"{article_where}.paragraphs[{paragraph_index}]"
            context = _field(paragraph, "context", str, paragraph_where)
            for qa_index, qa in enumerate(_field(paragraph, "qas", list, paragraph_where)):
                place = f"data[{article_index}].paragraphs[{paragraph_index}].qas[{qa_index}]"
                example = _read_qa(qa, context, f"{path}: {place}", is_training)
                if example.qas_id in first_seen:
                    raise InputError(f"{path}: {place}: id {example.qas_id!r} was already used "
                                     f"at {first_seen[example.qas_id]}")
                first_seen[example.qas_id] = place
                examples.append(example)
    if not examples:
        raise InputError(f"{path}: no questions")
    return examples


# Tokenizing with offsets -----------------------------------------------------------------------
def _words(text):
    """Whitespace-separated words as lists of [char, start, end] in ``text``.

    The basic tokenizer's first steps, char by char: NUL, U+FFFD and control chars vanish,
    whitespace separates, and each CJK ideograph is a word of its own.
    """
    words, current = [], []
    for index, char in enumerate(text):
        if ord(char) in DROPPED_CODEPOINTS or is_control(char):
            continue
        if char.isspace() or is_cjk_ideograph(ord(char)):
            if current:
                words.append(current)
                current = []
            if not char.isspace():
                words.append([[char, index, index + 1]])
        else:
            current.append([char, index, index + 1])
    if current:
        words.append(current)
    return words


def _canonical_order(chars):
    """Unicode's canonical ordering: each run of combining chars stably sorted by class.

    NFD of a word is the decomposition of each char followed by this reordering, which can
    move marks across the boundaries of the original chars.
    """
    ordered, run = [], []
    for item in chars:
        if unicodedata.combining(item[0]):
            run.append(item)
            continue
        ordered.extend(sorted(run, key=lambda entry: unicodedata.combining(entry[0])))
        run = []
        ordered.append(item)
    ordered.extend(sorted(run, key=lambda entry: unicodedata.combining(entry[0])))
    return ordered


def _lower_and_strip_accents(word):
    """The uncased rules (lower, NFD, drop accents) with each output char's origin kept.

    The whole word is lowered at once (a final sigma depends on its neighbours) and cut by
    each char's own lowered length, which is the same. A dropped accent widens the span of the
    char before it, so an answer ends after the accent the reader wrote.
    """
    lowered = "".join(char for char, _, _ in word).lower()
    decomposed, position = [], 0
    for char, start, end in word:
        length = len(char.lower())
        for low in lowered[position:position + length]:
            decomposed.extend([part, start, end] for part in unicodedata.normalize("NFD", low))
        position += length
    kept = []
    for item in _canonical_order(decomposed):
        if unicodedata.category(item[0]) != STRIPPED_CATEGORY:
            kept.append(item)
        elif kept:
            kept[-1][2] = max(kept[-1][2], item[2])
    return kept


def _split_punctuation(word):
    tokens, current = [], []
    for item in word:
        if is_punctuation(item[0]):
            if current:
                tokens.append(current)
                current = []
            tokens.append([item])
        else:
            current.append(item)
    if current:
        tokens.append(current)
    return tokens


def _span(chars):
    return min(start for _, start, _ in chars), max(end for _, _, end in chars)


def _piece_spans(pieces, token, unknown):
    """Cut a basic token's chars by its pieces' lengths; an unknown piece covers it all."""
    if pieces == [unknown]:
        return [_span(token)]
    spans, position = [], 0
    for index, piece in enumerate(pieces):
        length = len(piece) - (len(CONTINUATION_PREFIX) if index else 0)
        spans.append(_span(token[position:position + length]))
        position += length
    return spans


def tokenize_with_offsets(tokenizer, text):
    """(pieces, spans): ``tokenizer.tokenize(text)`` and each piece's (start, end) in ``text``.

    The slice ``text[spans[i][0]:spans[j][1]]`` is the original text of pieces i..j, accents,
    case and inner whitespace as written.
    """
    if not isinstance(tokenizer, FullTokenizer):
        raise OffsetTokenizerError("SQuAD needs a WordPiece vocab.txt: character offsets are "
                                   f"not available from a {type(tokenizer).__name__}")
    basic, wordpiece = tokenizer.basic_tokenizer, tokenizer.wordpiece_tokenizer
    pieces, spans = [], []
    for word in _words(text):
        if basic.do_lower_case:
            word = _lower_and_strip_accents(word)
        for token in _split_punctuation(word):
            token_pieces = wordpiece.tokenize("".join(char for char, _, _ in token))
            pieces.extend(token_pieces)
            spans.extend(_piece_spans(token_pieces, token, wordpiece.unk_token))
    return pieces, spans


# Features --------------------------------------------------------------------------------------
@dataclasses.dataclass
class QaFeatureSettings:
    """How questions and contexts are cut to the model's sequence length."""

    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64

    def __post_init__(self):
        if self.max_query_length < 1:
            raise UsageError(f"--max_query_length={self.max_query_length} must be at least 1")
        room = self.context_room
        if room < 1:
            raise UsageError(f"--max_seq_length={self.max_seq_length} leaves no room for the "
                             f"context after --max_query_length={self.max_query_length} and "
                             f"{SPECIAL_TOKENS_PER_FEATURE} special tokens")
        if not 1 <= self.doc_stride <= room:
            raise UsageError(f"--doc_stride={self.doc_stride} must be between 1 and {room} (the "
                             "context tokens a window holds), or windows would skip tokens")

    @property
    def context_room(self):
        """Context pieces a window holds with the longest question."""
        return self.max_seq_length - self.max_query_length - SPECIAL_TOKENS_PER_FEATURE


@dataclasses.dataclass
class QaFeature:
    """One window of one example, laid out as the model reads it."""

    unique_id: int
    example_index: int
    window_index: int
    input_ids: list
    input_mask: list
    segment_ids: list
    start_position: int  # 0 ([CLS]) when the answer is not wholly in this window
    end_position: int
    token_spans: list  # (start, end) in the context for context positions, None elsewhere
    token_is_max_context: list  # per position: this window gives the token the most context


def _windows(num_pieces, room, stride):
    """(start, length) of each window; the last one reaches the end (one empty if no pieces)."""
    windows, start = [], 0
    while True:
        length = min(room, num_pieces - start)
        windows.append((start, length))
        if start + length >= num_pieces:
            return windows
        start += stride


def _max_context_window(windows, num_pieces):
    """Per context piece, the window where its shorter side of context is the longest."""
    best_window = [None] * num_pieces
    best_score = [float("-inf")] * num_pieces
    for window_index, (start, length) in enumerate(windows):
        for piece in range(start, start + length):
            score = (min(piece - start, start + length - 1 - piece)
                     + WINDOW_LENGTH_WEIGHT * length)
            if score > best_score[piece]:
                best_score[piece], best_window[piece] = score, window_index
    return best_window


def _answer_pieces(spans, start_char, end_char):
    """First and last piece overlapping the answer's characters; None if none does."""
    inside = [index for index, (start, end) in enumerate(spans)
              if start < end_char and end > start_char]
    return (inside[0], inside[-1]) if inside else None


def _pad(values, length, fill):
    return values + [fill] * (length - len(values))


@dataclasses.dataclass
class _Context:
    """A context's piece ids and their character spans, shared by its questions."""

    ids: list
    spans: list


def _features_of(query_ids, context, special_ids, settings, answer):
    """(window_index, QaFeature fields) of each window; ``answer`` is its pieces or None."""
    cls_id, sep_id = special_ids
    room = settings.max_seq_length - len(query_ids) - SPECIAL_TOKENS_PER_FEATURE
    windows = _windows(len(context.ids), room, settings.doc_stride)
    best_window = _max_context_window(windows, len(context.ids))
    offset = len(query_ids) + 2  # [CLS] question [SEP]
    size = settings.max_seq_length
    for window_index, (start, length) in enumerate(windows):
        input_ids = [cls_id] + query_ids + [sep_id] + context.ids[start:start + length] + [sep_id]
        start_position = end_position = NO_ANSWER_POSITION
        if answer and start <= answer[0] and answer[1] < start + length:
            start_position = answer[0] - start + offset
            end_position = answer[1] - start + offset
        yield dict(
            window_index=window_index,
            input_ids=_pad(input_ids, size, PAD_ID),
            input_mask=_pad([1] * len(input_ids), size, 0),
            segment_ids=_pad([QUESTION_SEGMENT] * offset + [CONTEXT_SEGMENT] * (length + 1),
                             size, 0),
            start_position=start_position,
            end_position=end_position,
            token_spans=_pad([None] * offset + context.spans[start:start + length], size, None),
            token_is_max_context=_pad(
                [False] * offset + [best_window[piece] == window_index
                                    for piece in range(start, start + length)], size, False),
        )


def convert_examples(examples, tokenizer, settings, is_training):
    """Every example as one feature per window of its context.

    Windows start every doc_stride pieces until the end is covered; training positions mark
    the answer where it lies wholly inside a window and [CLS] elsewhere.
    """
    special_ids = tokenizer.convert_tokens_to_ids([CLS_TOKEN, SEP_TOKEN])
    contexts = {}  # questions of one paragraph share their context's tokenization
    features = []
    for example_index, example in enumerate(examples):
        query_ids = tokenizer.convert_tokens_to_ids(
            tokenizer.tokenize(example.question)[:settings.max_query_length])
        if example.context not in contexts:
            pieces, spans = tokenize_with_offsets(tokenizer, example.context)
            contexts[example.context] = _Context(tokenizer.convert_tokens_to_ids(pieces), spans)
        context = contexts[example.context]
        answer = None
        if is_training and not example.is_impossible:
            answer = _answer_pieces(context.spans, example.answer_start_char,
                                    example.answer_end_char)
        for fields in _features_of(query_ids, context, special_ids, settings, answer):
            features.append(QaFeature(unique_id=FIRST_UNIQUE_ID + len(features),
                                      example_index=example_index, **fields))
    return features
