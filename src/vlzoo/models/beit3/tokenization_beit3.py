"""BEiT-3 tokenizer: the original XLM-R sentencepiece ids from a `.spm` file (`beit3.spm`), without sentencepiece."""

import os
import shutil
import struct
from dataclasses import dataclass, field

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import Unigram
from transformers.tokenization_python import PreTrainedTokenizer
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = ["Beit3Tokenizer", "SentencePieceModel", "read_sentencepiece_model"]

# sentencepiece's piece types (sentencepiece_model.proto)
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
# XLM-R's fairseq layout: four specials first, sentencepiece piece i (i >= 3) at id i + 1, `<mask>` last
_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
_FAIRSEQ_OFFSET = 1
# control characters, which sentencepiece's normalisation removes from every text
_BACKEND_SPECIAL = "\x00{}\x00"
_MAX_PIECES = 1 << 22


@dataclass
class SentencePieceModel:
    """What a `.spm` file (a serialised `sentencepiece.ModelProto`) holds that tokenization needs."""

    pieces: list[tuple[str, float, int]] = field(default_factory=list)  # (piece, score, type)
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def _fields(data: bytes):
    """(field number, wire type, value) of one protobuf message; LEN values are bytes, fixed32 are raw bytes."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 1:
            value, position = data[position : position + 8], position + 8
        elif wire == 2:
            length, position = _varint(data, position)
            value, position = data[position : position + length], position + length
        elif wire == 5:
            value, position = data[position : position + 4], position + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if position > len(data):
            raise ValueError("truncated field")
        yield number, wire, value


def read_sentencepiece_model(path: str | os.PathLike) -> SentencePieceModel:
    """Parse a sentencepiece model file without the sentencepiece or protobuf packages.

    Raises a ValueError naming the file when it is not a sentencepiece model (no pieces, malformed fields, or the
    `<unk>`, `<s>`, `</s>` layout every XLM-R-style model starts with).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"sentencepiece model {path} does not exist")
    with open(path, "rb") as handle:
        data = handle.read()
    model = SentencePieceModel()
    try:
        for number, wire, value in _fields(data):
            if number == 1 and wire == 2:
                piece, score, kind = "", 0.0, _NORMAL
                for sub, sub_wire, sub_value in _fields(value):
                    if sub == 1 and sub_wire == 2:
                        piece = sub_value.decode("utf-8")
                    elif sub == 2 and sub_wire == 5:
                        score = struct.unpack("<f", sub_value)[0]
                    elif sub == 3 and sub_wire == 0:
                        kind = sub_value
                model.pieces.append((piece, score, kind))
                if len(model.pieces) > _MAX_PIECES:
                    raise ValueError("too many pieces")
            elif number == 3 and wire == 2:
                for sub, sub_wire, sub_value in _fields(value):
                    if sub == 2 and sub_wire == 2:
                        model.precompiled_charsmap = bytes(sub_value)
                    elif sub == 3 and sub_wire == 0:
                        model.add_dummy_prefix = bool(sub_value)
                    elif sub == 4 and sub_wire == 0:
                        model.remove_extra_whitespaces = bool(sub_value)
                    elif sub == 5 and sub_wire == 0:
                        model.escape_whitespaces = bool(sub_value)
    except (ValueError, UnicodeDecodeError, struct.error) as error:
        raise ValueError(f"{path} is not a sentencepiece model ({error})") from None
    kinds = [kind for _, _, kind in model.pieces[:3]]
    if len(model.pieces) < 4 or kinds != [_UNKNOWN, _CONTROL, _CONTROL]:
        raise ValueError(
            f"{path} is not a sentencepiece model with the XLM-R layout (<unk>, <s>, </s>, then pieces): found "
            f"{len(model.pieces)} pieces starting with types {kinds}"
        )
    return model


def _build_backend(model: SentencePieceModel) -> Tokenizer:
    """A `tokenizers` unigram model over the pieces in fairseq order, with sentencepiece's normalisation."""
    # the specials are never produced by segmentation (sentencepiece keeps control pieces out of its lattice): give
    # them strings no normalised text contains, so a literal "<s>" in a text is split into ordinary pieces
    vocab = [(_BACKEND_SPECIAL.format(token), 0.0) for token in _SPECIALS]
    vocab += [(piece, score) for piece, score, _ in model.pieces[3:]]
    tokenizer = Tokenizer(Unigram(vocab, unk_id=_SPECIALS.index("<unk>"), byte_fallback=False))
    steps = []
    if model.precompiled_charsmap:
        steps.append(normalizers.Precompiled(model.precompiled_charsmap))
    if model.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if steps:
        tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="always" if model.add_dummy_prefix else "never", split=False
    )
    return tokenizer


class Beit3Tokenizer(PreTrainedTokenizer):
    """The text path of the original BEiT-3 code (`XLMRobertaTokenizer(beit3.spm)`, beit3.md §5).

    Pieces are sentencepiece's (NFKC-normalised by the model's own rules, whitespace collapsed); ids follow fairseq:
    `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, sentencepiece piece i at i + 1, `<mask>` = number of pieces + 1 (64001
    for `beit3.spm`). Inputs are `[<s>] + ids + [</s>]`, right-padded with 1; `truncation=True` keeps the first
    `max_length - 2` pieces, as the original `_get_text_segment`. No lower-casing (the model is cased).

    Deliberate behaviour of the original path, kept: literal `<s>`, `<mask>`, ... inside raw text are ordinary
    characters, not special tokens (`split_special_tokens=True`); an empty text raises a ValueError (the original
    raises too). The `.spm` file is read without the sentencepiece package; tokenization runs on `tokenizers`.

    Args:
        vocab_file: the sentencepiece model (`beit3.spm`).
    """

    vocab_files_names = {"vocab_file": "beit3.spm"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab_file: str | os.PathLike,
        bos_token: str = "<s>",
        eos_token: str = "</s>",
        sep_token: str = "</s>",
        cls_token: str = "<s>",
        unk_token: str = "<unk>",
        pad_token: str = "<pad>",
        mask_token: str = "<mask>",
        model_max_length: int = 64,
        **kwargs,
    ):
        self.vocab_file = os.fspath(vocab_file)
        self.spm = read_sentencepiece_model(self.vocab_file)
        self._backend = _build_backend(self.spm)
        self._vocab = {token: index for index, token in enumerate(_SPECIALS)}
        for index, (piece, _, _) in enumerate(self.spm.pieces[3:], start=3):
            self._vocab.setdefault(piece, index + _FAIRSEQ_OFFSET)
        self._vocab["<mask>"] = len(self.spm.pieces) + _FAIRSEQ_OFFSET
        self._ids_to_tokens = {index: token for token, index in self._vocab.items()}
        kwargs.setdefault("split_special_tokens", True)
        super().__init__(
            bos_token=bos_token,
            eos_token=eos_token,
            sep_token=sep_token,
            cls_token=cls_token,
            unk_token=unk_token,
            pad_token=pad_token,
            mask_token=mask_token,
            model_max_length=model_max_length,
            **kwargs,
        )

    @property
    def vocab_size(self) -> int:
        """Tokenizer ids: the sentencepiece pieces plus `<pad>` and `<mask>` (64002 for `beit3.spm`)."""
        return len(self.spm.pieces) + 2

    def get_vocab(self) -> dict[str, int]:
        return dict(self._vocab)

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        if not text:
            return []
        encoding = self._backend.encode(text, add_special_tokens=False)
        unknown = _BACKEND_SPECIAL.format("<unk>")
        # an unknown run is reported as the text it covers, as sentencepiece does (its id is still <unk>'s)
        return [
            text[start:end] if token == unknown and end > start else token
            for token, (start, end) in zip(encoding.tokens, encoding.offsets, strict=True)
        ]

    def _convert_token_to_id(self, token: str) -> int:
        return self._vocab.get(token, self._vocab["<unk>"])

    def _convert_id_to_token(self, index: int) -> str:
        return self._ids_to_tokens.get(index, "<unk>")

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens).replace("▁", " ").strip()

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None):
        if token_ids_1 is not None:
            raise ValueError("BEiT-3 encodes one text per example; pairs of texts are not supported")
        return [self.cls_token_id] + token_ids_0 + [self.sep_token_id]

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens=False):
        if already_has_special_tokens:
            return super().get_special_tokens_mask(token_ids_0, token_ids_1, already_has_special_tokens=True)
        return [1] + [0] * len(token_ids_0) + [1]

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 2

    def _encode_plus(self, text, *args, **kwargs):
        if isinstance(text, str) and not text.strip():
            raise ValueError(
                f"text must hold at least one token; got {text!r} (the original BEiT-3 code refuses empty texts too)"
            )
        return super()._encode_plus(text, *args, **kwargs)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        if not os.path.isdir(save_directory):
            raise ValueError(f"save_directory {save_directory} is not a folder")
        name = (filename_prefix + "-" if filename_prefix else "") + self.vocab_files_names["vocab_file"]
        target = os.path.join(save_directory, name)
        if os.path.abspath(self.vocab_file) != os.path.abspath(target):
            shutil.copyfile(self.vocab_file, target)
        return (target,)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _encode_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def write_sentencepiece_model(path: str | os.PathLike, pieces: list[tuple[str, float]]) -> None:
    """Write a unigram sentencepiece model with `<unk>`, `<s>`, `</s>` and then `pieces` (piece, log-probability),
    without normalisation rules beyond whitespace handling: a small word-level vocabulary for tests and demos whose
    file the tokenizer reads and saves like `beit3.spm`."""
    records = [("<unk>", 0.0, _UNKNOWN), ("<s>", 0.0, _CONTROL), ("</s>", 0.0, _CONTROL)]
    records += [(piece, float(score), _NORMAL) for piece, score in pieces]
    data = bytearray()
    for piece, score, kind in records:
        body = _encode_field(1, piece.encode("utf-8")) + b"\x15" + struct.pack("<f", score) + b"\x18" + bytes([kind])
        data += _encode_field(1, body)
    # normalizer_spec: name "identity", add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces
    data += _encode_field(3, _encode_field(1, b"identity") + b"\x18\x01\x20\x01\x28\x01")
    with open(path, "wb") as handle:
        handle.write(bytes(data))


__all__ += ["write_sentencepiece_model"]
