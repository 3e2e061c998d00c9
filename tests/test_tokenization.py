"""Tokenizer behaviour must match what the pretrained checkpoints were trained with."""
import pytest

from bert import tokenization

WORD_AT_CAP = "a" * tokenization.MAX_WORD_CHARS
WORD_OVER_CAP = "a" * (tokenization.MAX_WORD_CHARS + 1)

TINY_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "un", "##aff", "##able", "hello", "Héllo", "hi", "there", ",", "!", ".",
    "你", "好", "a", "b", "##b", WORD_AT_CAP, WORD_OVER_CAP,
]

SENTENCEPIECE_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A stitch in time saves nine.",
    "All that glitters is not gold.",
    "Birds of a feather flock together.",
    "Actions speak louder than words.",
    "Better late than never.",
    "Curiosity killed the cat.",
    "Don't count your chickens before they hatch.",
    "Every cloud has a silver lining.",
    "Fortune favors the bold.",
    "Good things come to those who wait.",
    "Honesty is the best policy.",
    "If it ain't broke, don't fix it.",
    "Jack of all trades, master of none.",
    "Knowledge is power.",
    "Laughter is the best medicine.",
    "Many hands make light work.",
    "Necessity is the mother of invention.",
    "Old habits die hard.",
    "Practice makes perfect.",
    "Quality over quantity, always.",
    "Rome wasn't built in a day.",
    "Slow and steady wins the race.",
    "The early bird catches the worm.",
    "Two heads are better than one.",
    "Use it or lose it.",
    "Variety is the spice of life.",
    "When in Rome, do as the Romans do.",
    "You can't judge a book by its cover.",
    "Zeal without knowledge is a runaway horse.",
    "The model reads tokens and predicts labels.",
    "Pruning removes heads and layers from the network.",
    "Training runs for three epochs on the dataset.",
    "Evaluation reports accuracy and loss.",
    "The tokenizer splits words into pieces.",
    "Sentence pairs are joined with a separator.",
    "Attention weights show which words matter.",
    "Each layer has a feed forward block.",
    "Learning rate warmup helps stability.",
    "Checkpoints are saved every thousand steps.",
    "Hello world, this is a small test.",
    "Numbers like 42 and 2024 appear too.",
    "She sells sea shells by the sea shore.",
    "Peter Piper picked a peck of pickled peppers.",
    "How much wood would a woodchuck chuck?",
    "Red lorry, yellow lorry.",
    "Unique New York, you know you need unique New York.",
    "The sixth sick sheik's sixth sheep's sick.",
    "Fuzzy Wuzzy was a bear.",
    "Simple sentences make a small corpus.",
]


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def full_tokenizer(vocab_file):
    return tokenization.FullTokenizer(vocab_file, do_lower_case=True)


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory):
    import sentencepiece

    directory = tmp_path_factory.mktemp("spm")
    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(SENTENCEPIECE_CORPUS) + "\n", encoding="utf-8")
    prefix = directory / "tiny"
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=100,
        hard_vocab_limit=False,
        model_type="unigram",
        minloglevel=2,
    )
    return directory / "tiny.model"


def test_load_vocab_ids_are_line_numbers(vocab_file):
    vocab = tokenization.load_vocab(vocab_file)
    assert list(vocab) == TINY_VOCAB
    assert vocab["[PAD]"] == 0
    assert vocab["##able"] == TINY_VOCAB.index("##able")


def test_load_vocab_missing_file_names_path(tmp_path):
    missing = tmp_path / "nowhere" / "vocab.txt"
    with pytest.raises(FileNotFoundError) as error:
        tokenization.load_vocab(missing)
    assert str(missing) in str(error.value)
    assert "vocab.txt" in str(error.value)


def test_convert_to_unicode():
    assert tokenization.convert_to_unicode("héllo") == "héllo"
    assert tokenization.convert_to_unicode("héllo".encode("utf-8")) == "héllo"
    assert tokenization.convert_to_unicode(b"ok\xff") == "ok"


def test_wordpiece_known_split():
    vocab = {"un": 0, "##aff": 1, "##able": 2}
    tokenizer = tokenization.WordpieceTokenizer(vocab)
    assert tokenizer.tokenize("unaffable") == ["un", "##aff", "##able"]


def test_wordpiece_prefers_longest_match():
    vocab = {"a": 0, "ab": 1, "##b": 2, "##c": 3}
    tokenizer = tokenization.WordpieceTokenizer(vocab)
    assert tokenizer.tokenize("abc") == ["ab", "##c"]


def test_wordpiece_partial_cover_becomes_unknown():
    vocab = {"un": 0, "##aff": 1}
    tokenizer = tokenization.WordpieceTokenizer(vocab)
    assert tokenizer.tokenize("unaffable un") == ["[UNK]", "un"]


def test_wordpiece_word_length_cap_both_sides(full_tokenizer):
    assert full_tokenizer.tokenize(WORD_AT_CAP) == [WORD_AT_CAP]
    assert full_tokenizer.tokenize(WORD_OVER_CAP) == ["[UNK]"]


def test_full_tokenizer_known_split(full_tokenizer):
    assert full_tokenizer.tokenize("unaffable") == ["un", "##aff", "##able"]


def test_lower_case_strips_accents(full_tokenizer):
    assert full_tokenizer.tokenize("Héllo") == ["hello"]
    assert tokenization.BasicTokenizer(do_lower_case=True).tokenize("Héllo NAÏVE") == [
        "hello", "naive",
    ]


def test_cased_keeps_accents_and_case(vocab_file):
    tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=False)
    assert tokenization.BasicTokenizer(do_lower_case=False).tokenize("Héllo NAÏVE") == [
        "Héllo", "NAÏVE",
    ]
    assert tokenizer.tokenize("Héllo") == ["Héllo"]
    assert tokenizer.tokenize("hello") == ["hello"]


def test_punctuation_split(full_tokenizer):
    assert full_tokenizer.tokenize("hi, there!") == ["hi", ",", "there", "!"]
    basic = tokenization.BasicTokenizer()
    assert basic.tokenize("a$b^c`d") == ["a", "$", "b", "^", "c", "`", "d"]
    assert basic.tokenize("«quoted»") == ["«", "quoted", "»"]


def test_cjk_chars_are_separate(full_tokenizer):
    assert full_tokenizer.tokenize("你好") == ["你", "好"]
    assert tokenization.BasicTokenizer().tokenize("hi你好there") == ["hi", "你", "好", "there"]


def test_control_chars_removed_and_whitespace_normalised(full_tokenizer):
    assert full_tokenizer.tokenize("hel\x00lo\ufffd\u200b") == ["hello"]
    assert full_tokenizer.tokenize("hi\tthere\nhello\r\u00a0hi") == ["hi", "there", "hello", "hi"]
    assert full_tokenizer.tokenize("  \t\n ") == []


def test_unknown_word(full_tokenizer):
    assert full_tokenizer.tokenize("hello zzz") == ["hello", "[UNK]"]


def test_ids_round_trip(full_tokenizer):
    tokens = full_tokenizer.tokenize("Unaffable, hi there!")
    ids = full_tokenizer.convert_tokens_to_ids(tokens)
    assert ids == [TINY_VOCAB.index(token) for token in tokens]
    assert full_tokenizer.convert_ids_to_tokens(ids) == tokens
    assert full_tokenizer.inv_vocab[full_tokenizer.vocab["hello"]] == "hello"


def test_unknown_token_id_lookup_names_token(full_tokenizer):
    with pytest.raises(KeyError, match="zzz"):
        full_tokenizer.convert_tokens_to_ids(["hello", "zzz"])


def test_sentencepiece_round_trip(sentencepiece_model):
    tokenizer = tokenization.SentencePieceTokenizer(sentencepiece_model)
    text = "The quick fox saves nine words."
    tokens = tokenizer.tokenize(text)
    assert len(tokens) > 1
    assert all(isinstance(token, str) for token in tokens)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    assert all(isinstance(token_id, int) for token_id in ids)
    assert tokenizer.convert_ids_to_tokens(ids) == tokens
    assert tokenizer.processor.decode(ids) == text


def test_sentencepiece_lower_case(sentencepiece_model):
    lowering = tokenization.SentencePieceTokenizer(sentencepiece_model, do_lower_case=True)
    cased = tokenization.SentencePieceTokenizer(sentencepiece_model, do_lower_case=False)
    assert lowering.tokenize("THE Quick FOX") == cased.tokenize("the quick fox")


def test_sentencepiece_missing_model_names_path(tmp_path):
    missing = tmp_path / "absent.model"
    with pytest.raises(FileNotFoundError, match="absent.model"):
        tokenization.SentencePieceTokenizer(missing)


def test_create_tokenizer_picks_class(vocab_file, sentencepiece_model):
    assert isinstance(
        tokenization.create_tokenizer(sentencepiece_model, do_lower_case=True),
        tokenization.SentencePieceTokenizer,
    )
    assert isinstance(
        tokenization.create_tokenizer(str(vocab_file), do_lower_case=True),
        tokenization.FullTokenizer,
    )


@pytest.mark.parametrize(
    "do_lower_case, checkpoint",
    [
        (False, "/models/uncased_L-12_H-768_A-12/bert_model.ckpt"),
        (False, "/models/chinese_L-12_H-768_A-12/bert_model.ckpt"),
        (True, "/models/cased_L-12_H-768_A-12/bert_model.ckpt"),
        (True, "gs://bucket/multi_cased_L-12_H-768_A-12/bert_model.ckpt"),
    ],
)
def test_case_mismatch_raises(do_lower_case, checkpoint):
    with pytest.raises(ValueError, match=f"do_lower_case={not do_lower_case} is expected"):
        tokenization.validate_case_matches_checkpoint(do_lower_case, checkpoint)


@pytest.mark.parametrize(
    "do_lower_case, checkpoint",
    [
        (True, "/models/uncased_L-12_H-768_A-12/bert_model.ckpt"),
        (True, "/models/multilingual_L-12_H-768_A-12/bert_model.ckpt"),
        (False, "/models/cased_L-24_H-1024_A-16/bert_model.ckpt"),
        (False, "/models/my_own_model/model.ckpt-1000"),
        (True, "/models/my_own_model/model.ckpt-1000"),
        (False, None),
    ],
)
def test_case_match_or_unknown_checkpoint_passes(do_lower_case, checkpoint):
    tokenization.validate_case_matches_checkpoint(do_lower_case, checkpoint)


def test_real_uncased_vocab(hf_model_dir):
    tokenizer = tokenization.FullTokenizer(hf_model_dir / "vocab.txt", do_lower_case=True)
    assert tokenizer.tokenize("The quick brown fox jumped.") == [
        "the", "quick", "brown", "fox", "jumped", ".",
    ]
    assert tokenizer.tokenize("Tokenization") == ["token", "##ization"]
    assert tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", "[UNK]", "[PAD]"]) == [
        101, 102, 100, 0,
    ]
    assert tokenizer.convert_tokens_to_ids(["the", "token", "##ization"]) == [1996, 19204, 3989]
