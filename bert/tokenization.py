"""Text-to-token conversion matching the vocabularies of the published BERT checkpoints.

A checkpoint's embeddings only make sense for ids produced by the exact same
splitting rules it was pre-trained with, so the rules below mirror the behaviour
of Google's reference tokenizer (WordPiece) and of ALBERT-style SentencePiece models.
"""
import collections
import os
import re
import unicodedata

import sentencepiece

from bert.errors import InputError

# Words this long are almost always URLs, hashes or garbage; greedy matching on
# them is quadratic and would only produce noise, so they become one unknown token.
MAX_WORD_CHARS = 100

UNKNOWN_TOKEN = "[UNK]"
CONTINUATION_PREFIX = "##"
SENTENCEPIECE_SUFFIX = ".model"

NUL_CODEPOINT = 0x0000
REPLACEMENT_CODEPOINT = 0xFFFD

# Chars written between words; Python counts them as control chars (category Cc),
# but BERT treats them as word separators.
WHITESPACE_CONTROL_CHARS = frozenset("\t\n\r")

# ASCII symbols such as "$", "^" or "`" are not Unicode category P, but BERT was
# pre-trained with them split off like punctuation.
ASCII_PUNCTUATION_RANGES = ((33, 47), (58, 64), (91, 96), (123, 126))

# The CJK Unified Ideograph blocks. Chinese has no spaces between words, so BERT
# treats each ideograph as its own word; Hangul and kana are written with spaces
# and are deliberately not listed.
CJK_IDEOGRAPH_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)

# Google's released checkpoints, by folder name, and the do_lower_case value each
# was pre-trained with. Multilingual and Chinese are uncased-style models.
KNOWN_CHECKPOINT_LOWER_CASE = {
    "uncased_L-12_H-768_A-12": True,
    "uncased_L-24_H-1024_A-16": True,
    "multilingual_L-12_H-768_A-12": True,
    "chinese_L-12_H-768_A-12": True,
    "cased_L-12_H-768_A-12": False,
    "cased_L-24_H-1024_A-16": False,
    "multi_cased_L-12_H-768_A-12": False,
}


class VocabError(InputError):
    """A vocabulary file that cannot be read, or that belongs to another model."""


def describe_undecodable(path):
    """Names the line and column of a file's first non-UTF-8 byte.

    A text reader's UnicodeDecodeError only gives an offset into its read buffer; decoding line
    by line is exact because a UTF-8 sequence never contains the newline byte.
    """
    with open(path, "rb") as raw:
        for line_number, line in enumerate(raw, start=1):
            try:
                line.decode("utf-8")  # a byte-order mark is valid UTF-8 too
            except UnicodeDecodeError as error:
                return (f"{path} line {line_number}: not UTF-8 text (byte "
                        f"0x{line[error.start]:02x} at column {error.start + 1})")
    return f"{path}: not UTF-8 text"


def convert_to_unicode(text):
    """Accept raw bytes from files or TFRecords; invalid bytes are dropped rather than fatal."""
    if isinstance(text, str):
        return text
    if isinstance(text, bytes):
        return text.decode("utf-8", errors="ignore")
    raise TypeError(f"expected str or bytes, got {type(text).__name__}")


def load_vocab(vocab_file):
    """Ids are line numbers, so the file order must be kept exactly."""
    path = os.fspath(vocab_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"vocab file not found: {path} (expected a BERT vocab.txt with one token per line)"
        )
    vocab = collections.OrderedDict()
    with open(path, encoding="utf-8") as reader:
        try:
            for token_id, line in enumerate(reader):
                vocab[line.rstrip()] = token_id
        except UnicodeDecodeError:
            raise VocabError(describe_undecodable(path)) from None
    if not vocab:
        raise VocabError(f"{path}: empty vocabulary (expected one token per line)")
    return vocab


def _load_sentencepiece(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SentencePiece model file not found: {path}")
    try:
        return sentencepiece.SentencePieceProcessor(model_file=path)
    except RuntimeError as error:  # sentencepiece reports every parse failure this way
        raise VocabError(f"{path}: not a SentencePiece model ({error})") from None


def vocab_size(vocab_file):
    """Rows of the embedding table the vocabulary needs: ids are line numbers in a vocab.txt."""
    path = os.fspath(vocab_file)
    if path.endswith(SENTENCEPIECE_SUFFIX):
        return _load_sentencepiece(path).get_piece_size()
    return max(load_vocab(path).values()) + 1


def check_vocab_matches_config(vocab_file, config_vocab_size, flag="vocab_file",
                               config_name="bert_config.json"):
    """A vocabulary of another model tokenizes fine but feeds the wrong embeddings: refuse it."""
    size = vocab_size(vocab_file)
    if size != config_vocab_size:
        raise VocabError(f"--{flag}={os.fspath(vocab_file)} has {size} entries but {config_name}'s "
                         f"vocab_size is {config_vocab_size} (a vocabulary of another model?)")


def split_on_whitespace(text):
    """Empty input must give no tokens, not one empty token."""
    return text.strip().split()


def is_whitespace(char):
    return char in WHITESPACE_CONTROL_CHARS or unicodedata.category(char) == "Zs"


def is_control(char):
    """Tab, newline and carriage return are separators here, not junk to delete."""
    if char in WHITESPACE_CONTROL_CHARS:
        return False
    return unicodedata.category(char).startswith("C")


def is_punctuation(char):
    codepoint = ord(char)
    if any(low <= codepoint <= high for low, high in ASCII_PUNCTUATION_RANGES):
        return True
    return unicodedata.category(char).startswith("P")


def is_cjk_ideograph(codepoint):
    return any(low <= codepoint <= high for low, high in CJK_IDEOGRAPH_RANGES)


class BasicTokenizer:
    """Splits on whitespace and punctuation before WordPiece, which never crosses those boundaries."""

    def __init__(self, do_lower_case=True):
        self.do_lower_case = do_lower_case

    def tokenize(self, text):
        text = self._clean(convert_to_unicode(text))
        text = self._space_out_cjk(text)
        tokens = []
        for word in split_on_whitespace(text):
            if self.do_lower_case:
                word = self._strip_accents(word.lower())
            tokens.extend(self._split_punctuation(word))
        return tokens

    @staticmethod
    def _clean(text):
        """Invisible or broken chars would otherwise glue onto words and make them unknown."""
        kept = []
        for char in text:
            codepoint = ord(char)
            if codepoint in (NUL_CODEPOINT, REPLACEMENT_CODEPOINT) or is_control(char):
                continue
            kept.append(" " if is_whitespace(char) else char)
        return "".join(kept)

    @staticmethod
    def _space_out_cjk(text):
        return "".join(f" {char} " if is_cjk_ideograph(ord(char)) else char for char in text)

    @staticmethod
    def _strip_accents(word):
        """Uncased vocabularies were built without accents, so "é" must become "e"."""
        decomposed = unicodedata.normalize("NFD", word)
        return "".join(char for char in decomposed if unicodedata.category(char) != "Mn")

    @staticmethod
    def _split_punctuation(word):
        pieces = []
        current = []
        for char in word:
            if is_punctuation(char):
                if current:
                    pieces.append("".join(current))
                    current = []
                pieces.append(char)
            else:
                current.append(char)
        if current:
            pieces.append("".join(current))
        return pieces


class WordpieceTokenizer:
    """Greedy longest-match-first is how the vocabulary was applied at pre-training time."""

    def __init__(self, vocab, unk_token=UNKNOWN_TOKEN, max_input_chars_per_word=MAX_WORD_CHARS):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def tokenize(self, text):
        pieces = []
        for word in split_on_whitespace(convert_to_unicode(text)):
            pieces.extend(self._split_word(word))
        return pieces

    def _split_word(self, word):
        """A word that cannot be covered entirely becomes one unknown token, never a partial split."""
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces = []
        start = 0
        while start < len(word):
            piece = self._longest_piece_at(word, start)
            if piece is None:
                return [self.unk_token]
            pieces.append(piece)
            start += len(piece) - (len(CONTINUATION_PREFIX) if start > 0 else 0)
        return pieces

    def _longest_piece_at(self, word, start):
        prefix = CONTINUATION_PREFIX if start > 0 else ""
        for end in range(len(word), start, -1):
            candidate = prefix + word[start:end]
            if candidate in self.vocab:
                return candidate
        return None


class FullTokenizer:
    """WordPiece tokenizer for checkpoints that ship a vocab.txt."""

    def __init__(self, vocab_file, do_lower_case=True):
        self.vocab = load_vocab(vocab_file)
        self.inv_vocab = {token_id: token for token, token_id in self.vocab.items()}
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
        self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)

    def tokenize(self, text):
        pieces = []
        for word in self.basic_tokenizer.tokenize(text):
            pieces.extend(self.wordpiece_tokenizer.tokenize(word))
        return pieces

    def convert_tokens_to_ids(self, tokens):
        """Fail loudly: silently mapping to [UNK] would hide a vocab/tokenizer mismatch."""
        return [_lookup(self.vocab, token, "token") for token in tokens]

    def convert_ids_to_tokens(self, ids):
        return [_lookup(self.inv_vocab, token_id, "id") for token_id in ids]


class SentencePieceTokenizer:
    """Tokenizer for ALBERT-style checkpoints that ship a SentencePiece .model instead of vocab.txt."""

    def __init__(self, model_file, do_lower_case=False):
        self.do_lower_case = do_lower_case
        self.processor = _load_sentencepiece(os.fspath(model_file))
        self.vocab = collections.OrderedDict(
            (self.processor.id_to_piece(piece_id), piece_id)
            for piece_id in range(self.processor.get_piece_size())
        )
        self.inv_vocab = {piece_id: piece for piece, piece_id in self.vocab.items()}

    def tokenize(self, text):
        text = " ".join(split_on_whitespace(convert_to_unicode(text)))
        if self.do_lower_case:
            text = text.lower()
        return self.processor.encode(text, out_type=str)

    def convert_tokens_to_ids(self, tokens):
        return [self.processor.piece_to_id(token) for token in tokens]

    def convert_ids_to_tokens(self, ids):
        return [self.processor.id_to_piece(int(piece_id)) for piece_id in ids]


def _lookup(table, key, key_kind):
    try:
        return table[key]
    except KeyError:
        raise KeyError(f"{key_kind} {key!r} is not in the vocab") from None


def create_tokenizer(vocab_file, do_lower_case):
    """Lets callers pass whatever vocabulary file the checkpoint shipped with."""
    if os.fspath(vocab_file).endswith(SENTENCEPIECE_SUFFIX):
        return SentencePieceTokenizer(vocab_file, do_lower_case=do_lower_case)
    return FullTokenizer(vocab_file, do_lower_case=do_lower_case)


def validate_case_matches_checkpoint(do_lower_case, init_checkpoint):
    """A wrong casing flag trains without error but silently wrecks accuracy, so catch it early.

    Only Google's known checkpoint folder names can be checked; anything else is trusted.
    """
    if not init_checkpoint:
        return
    for folder in re.split(r"[\\/]", os.fspath(init_checkpoint)):
        expected_lower_case = KNOWN_CHECKPOINT_LOWER_CASE.get(folder)
        if expected_lower_case is None or expected_lower_case == do_lower_case:
            continue
        case_kind = "uncased" if expected_lower_case else "cased"
        raise ValueError(
            f"do_lower_case={do_lower_case} does not match checkpoint {init_checkpoint}: "
            f"{folder} is {case_kind}, so do_lower_case={expected_lower_case} is expected"
        )
