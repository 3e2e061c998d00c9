"""Bad GLUE files, configs and vocabularies: one clear error naming the file, never a traceback."""
import json

import pytest

from bert import checkpoint, convert_hf, glue, modeling, tokenization
from bert.errors import InputError

SST2_HEADER = "sentence\tlabel\n"
SIZES = dict(vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
             intermediate_size=12)


@pytest.mark.parametrize("error_class", [
    glue.GlueFormatError, glue.TaskError, modeling.ConfigError, tokenization.VocabError,
    checkpoint.CheckpointMismatchError, checkpoint.CheckpointDamagedError,
    convert_hf.ConversionError,
])
def test_every_bad_input_error_is_an_input_error(error_class):
    assert issubclass(error_class, InputError)


# GLUE files ---------------------------------------------------------------------------------------
def write_sst2(folder, train=SST2_HEADER + "good \t1\n"):
    folder.mkdir(exist_ok=True)
    (folder / "train.tsv").write_bytes(train if isinstance(train, bytes) else train.encode())
    (folder / "dev.tsv").write_text(SST2_HEADER + "bad \t0\n")
    (folder / "test.tsv").write_text("index\tsentence\n")
    return folder


def test_non_utf8_row_names_file_line_and_column(tmp_path):
    folder = write_sst2(tmp_path / "SST-2", (SST2_HEADER + "good \t1\nfine \t1\n").encode()
                        + b"bad \xff\t0\n")
    with pytest.raises(glue.GlueFormatError) as caught:
        glue.get_processor("sst-2").get_train_examples(folder)
    assert str(caught.value) == (f"{folder / 'train.tsv'} line 4: not UTF-8 text "
                                 "(byte 0xff at column 5)")


@pytest.mark.parametrize("content", ["", SST2_HEADER])
def test_empty_or_header_only_split_is_refused(tmp_path, content):
    folder = write_sst2(tmp_path / "SST-2", content)
    with pytest.raises(glue.GlueFormatError, match=r"train\.tsv: no examples \(expected SST-2 "
                                                   r"rows after the header\)"):
        glue.get_processor("sst-2").get_train_examples(folder)


def test_empty_test_split_is_refused_too(tmp_path):
    folder = write_sst2(tmp_path / "SST-2")
    assert len(glue.get_processor("sst-2").get_dev_examples(folder)) == 1
    with pytest.raises(glue.GlueFormatError, match=r"test\.tsv: no examples"):
        glue.get_processor("sst-2").get_test_examples(folder)


# bert_config.json -------------------------------------------------------------------------------
@pytest.mark.parametrize("missing", ["vocab_size", "hidden_size", "num_hidden_layers",
                                     "num_attention_heads", "intermediate_size"])
def test_config_file_without_a_size_names_key_and_file(tmp_path, missing):
    values = {key: value for key, value in SIZES.items() if key != missing}
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(values))
    with pytest.raises(modeling.ConfigError) as caught:
        modeling.BertConfig.from_json_file(str(path))
    assert str(caught.value).startswith(f"{path}: config lacks {missing} ")


def test_optional_keys_keep_their_defaults():
    config = modeling.BertConfig.from_dict(SIZES)
    assert (config.max_position_embeddings, config.hidden_act, config.hidden_dropout_prob) == \
        (512, "gelu", 0.1)


@pytest.mark.parametrize("key, value, expected", [
    ("vocab_size", 0, "vocab_size=0: expected a positive integer"),
    ("hidden_size", -8, "hidden_size=-8: expected a positive integer"),
    ("num_hidden_layers", 2.5, "num_hidden_layers=2.5: expected a positive integer"),
    ("num_attention_heads", True, "num_attention_heads=True: expected a positive integer"),
    ("intermediate_size", "12", "intermediate_size='12': expected a positive integer"),
    ("max_position_embeddings", 0, "max_position_embeddings=0: expected a positive integer"),
    ("type_vocab_size", None, "type_vocab_size=None: expected a positive integer"),
    ("attention_head_size", 0, "attention_head_size=0: expected a positive integer"),
    ("hidden_dropout_prob", 1.0, r"hidden_dropout_prob=1.0: expected a dropout probability in "
                                 r"\[0, 1\)"),
    ("attention_probs_dropout_prob", -0.1, "attention_probs_dropout_prob=-0.1: expected"),
    ("hidden_dropout_prob", False, "hidden_dropout_prob=False: expected"),
    ("initializer_range", 0.0, "initializer_range=0.0: expected a positive number"),
    ("initializer_range", float("nan"), "initializer_range=nan: expected a positive number"),
    ("layers", [{"intermediate_size": 0}, {}],
     r"layers\[0\]\.intermediate_size=0: expected a positive integer"),
    ("layers", [{}, "big"], r"layers\[1\]='big': expected an object"),
])
def test_bad_config_value_names_key_value_and_expectation(key, value, expected):
    with pytest.raises(modeling.ConfigError, match=expected):
        modeling.BertConfig(**{**SIZES, key: value})


def test_constructor_with_only_vocab_size_still_works():
    assert modeling.BertConfig(vocab_size=30).hidden_size == 768


def test_config_file_that_is_not_an_object_names_the_file(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text("[1, 2]")
    with pytest.raises(modeling.ConfigError, match=f"{path}: config is a list"):
        modeling.BertConfig.from_json_file(str(path))


# Vocabularies -----------------------------------------------------------------------------------
def test_vocab_of_another_model_is_refused(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\nthe\n")
    tokenization.check_vocab_matches_config(str(vocab), 3)
    with pytest.raises(tokenization.VocabError) as caught:
        tokenization.check_vocab_matches_config(str(vocab), 30522)
    assert str(caught.value) == (f"--vocab_file={vocab} has 3 entries but bert_config.json's "
                                 "vocab_size is 30522 (a vocabulary of another model?)")


def test_vocab_size_counts_lines_even_with_duplicate_tokens(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\na\na\nb\n")
    assert tokenization.vocab_size(str(vocab)) == 4


def test_sentencepiece_vocab_size_is_its_piece_count(tmp_path):
    sentencepiece = pytest.importorskip("sentencepiece")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\nthe dog ate the cat food\n" * 20)
    sentencepiece.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "sp"),
                                             vocab_size=30, hard_vocab_limit=False, minloglevel=2)
    model = str(tmp_path / "sp.model")
    size = sentencepiece.SentencePieceProcessor(model_file=model).get_piece_size()
    tokenization.check_vocab_matches_config(model, size)
    with pytest.raises(tokenization.VocabError, match=f"has {size} entries but"):
        tokenization.check_vocab_matches_config(model, size + 1, flag="spm_model")


def test_damaged_sentencepiece_model_names_the_file(tmp_path):
    model = tmp_path / "broken.model"
    model.write_bytes(b"not a model")
    with pytest.raises(tokenization.VocabError, match=f"{model}: not a SentencePiece model"):
        tokenization.create_tokenizer(str(model), do_lower_case=False)


def test_non_utf8_vocab_names_file_and_line(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_bytes(b"[PAD]\ncaf\xe9\n")
    with pytest.raises(tokenization.VocabError,
                       match=f"{vocab} line 2: not UTF-8 text \\(byte 0xe9 at column 4\\)"):
        tokenization.load_vocab(str(vocab))


def test_empty_vocab_names_the_file(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("")
    with pytest.raises(tokenization.VocabError, match=f"{vocab}: empty vocabulary"):
        tokenization.FullTokenizer(str(vocab))
