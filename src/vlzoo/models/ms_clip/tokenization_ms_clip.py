"""MS-CLIP tokenizer: the original CLIP BPE ids, pad id 0, context 77, truncation that keeps the end token."""

from tokenizers import AddedToken, Regex, normalizers, pre_tokenizers
from transformers.models.clip.tokenization_clip import CLIPTokenizer
from transformers.utils import logging

from vlzoo.processing.clip_bpe import END_OF_TEXT, START_OF_TEXT, clean_clip_text, clip_bpe_vocab_and_merges

logger = logging.get_logger(__name__)

# The original splits lowercased text with this pattern compiled with IGNORECASE (Python `regex`). On lowercased text
# the flag still has two effects, written out here: "ſ" (U+017F) matches "s", and U+0345 (combining ypogegrammeni,
# whose uppercase is a letter) matches no alternative, so it is dropped like whitespace.
_ORIGINAL_SPLIT_PATTERN = (
    r"<\|[sſ]tartoftext\|>|<\|endoftext\|>|'[sſ]|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}\x{0345}]+"
)

__all__ = ["MsClipTokenizer"]


def _clean_texts(text, argument_name: str, is_split_into_words: bool):
    """Validate `text` (a str or a non-empty list of str; one level deeper when split into words) and clean it."""
    if isinstance(text, str):
        return clean_clip_text(text)
    if not isinstance(text, (list, tuple)):
        raise TypeError(f"{argument_name} must be a string or a list of strings, got {type(text).__name__}.")
    if len(text) == 0:
        raise ValueError(f"{argument_name} must be a non-empty list of strings, got an empty list.")
    cleaned = []
    for index, item in enumerate(text):
        if is_split_into_words and isinstance(item, (list, tuple)):
            cleaned.append(_clean_texts(item, f"{argument_name}[{index}]", is_split_into_words=False))
        elif isinstance(item, str):
            cleaned.append(clean_clip_text(item))
        else:
            raise TypeError(
                f"{argument_name} must be a string or a list of strings; {argument_name}[{index}] is a "
                f"{type(item).__name__}."
            )
    return cleaned


class MsClipTokenizer(CLIPTokenizer):
    """CLIP byte-level BPE tokenizer with the conventions of the original MS-CLIP code (msclip.md §5).

    Same ids as the original `SimpleTokenizer`: texts are cleaned in Python exactly like the original (`ftfy`,
    double HTML unescape, whitespace collapse, lowercase; see `clean_clip_text`) and encoded as
    `[<|startoftext|>] + bpe + [<|endoftext|>]`. Padding is on the right with id 0 (the token "!", as the original
    zero-padding; "!" is not registered as an added token, so it still tokenizes normally inside texts). Decode
    padded rows after removing the padding (attention_mask 0), or the pad ids come back as "!".

    Truncation differs from the original on purpose: texts longer than `model_max_length` (77) are truncated by
    default, even without `truncation=True` (the zero-shot pipeline calls the tokenizer with `padding=True` only),
    keeping `<|endoftext|>` in the last slot, so argmax pooling still finds it. Each call that truncates logs one
    warning with the number of truncated texts. The original MS-CLIP `tokenize` instead keeps the first 77 ids and
    drops the end token, so its argmax pooling falls back to position 0 for every over-long text. Pass
    `truncation=False` to get untruncated ids.

    Known input-level differences, outside any realistic caption: a literal `<|startoftext|>`/`<|endoftext|>`
    written directly after punctuation (e.g. `")<|endoftext|>"`) becomes the special id here, while the original's
    punctuation run swallows `"<|"` and splits it into ordinary pieces; letters assigned in recent Unicode versions
    (16 and later) may split differently, as they already do between versions of the `regex` package.

    Decoding: `decode`/`batch_decode` with `skip_special_tokens=True` also drop the padding (pad ids after the last
    token, or before the start token with left padding). A CLIP word always ends with an end-of-word piece, so a
    trailing id 0 can only be padding. Tokens added with `add_tokens` decode as separate words (BPE pieces carry the
    word boundaries, added tokens do not). Texts are cleaned and lowercased before matching, so an added token only
    matches when it survives that cleaning: non-special tokens are lowercased like the texts; a special token (or an
    `AddedToken(normalized=False)`) that cleaning would change raises a `ValueError` when added.

    Without `vocab`/`merges` (or a `tokenizer_file`) the full CLIP vocabulary (49408 ids) is built from the
    shipped merges file, offline. Truncated vocabularies come from `clip_bpe_vocab_and_merges(num_merges=...)`.
    """

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab: str | dict[str, int] | None = None,
        merges: str | list[str] | list[tuple[str, str]] | None = None,
        unk_token: str = END_OF_TEXT,
        bos_token: str = START_OF_TEXT,
        eos_token: str = END_OF_TEXT,
        pad_token: str = "!",
        model_max_length: int = 77,
        **kwargs,
    ):
        if vocab is None and merges is None and kwargs.get("tokenizer_file") is None:
            vocab, merges = clip_bpe_vocab_and_merges()
        super().__init__(
            vocab=vocab,
            merges=merges,
            unk_token=unk_token,
            bos_token=bos_token,
            eos_token=eos_token,
            pad_token=None,
            model_max_length=model_max_length,
            **kwargs,
        )
        # Texts arrive cleaned by `clean_clip_text`; this only keeps the backend usable on its own (no NFC: the
        # original applies NFC only through ftfy, before HTML unescaping).
        self._tokenizer.normalizer = normalizers.Sequence(
            [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
        )
        # Each piece of the original pattern is one BPE word: no second (GPT-2) regex split inside ByteLevel.
        self._tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_ORIGINAL_SPLIT_PATTERN), behavior="removed", invert=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        # Set after construction so that the pad token is not registered as an added special token (that would split
        # every "!" out of the texts); its id is looked up in the vocabulary (0 for the CLIP vocabulary).
        self.pad_token = pad_token

    def __call__(self, *args, truncation: bool | str | None = None, **kwargs):
        """Tokenize like `PreTrainedTokenizerBase.__call__`, truncating to the context by default."""
        return super().__call__(*args, truncation=True if truncation is None else truncation, **kwargs)

    def encode(self, *args, truncation: bool | str | None = None, **kwargs) -> list[int]:
        """Encode like `PreTrainedTokenizerBase.encode`, truncating to the context by default."""
        return super().encode(*args, truncation=True if truncation is None else truncation, **kwargs)

    def _add_tokens(self, new_tokens: list[str | AddedToken], special_tokens: bool = False) -> int:
        for token in new_tokens:
            content = str(token)
            normalized = token.normalized if isinstance(token, AddedToken) else not special_tokens
            if not normalized and content != clean_clip_text(content):
                raise ValueError(
                    f"the token {content!r} can never match: MsClipTokenizer cleans and lowercases texts before "
                    f"matching tokens that are special or not normalized; add {clean_clip_text(content)!r} instead."
                )
        return super()._add_tokens(new_tokens, special_tokens=special_tokens)

    def _without_padding(self, ids: list[int]) -> list[int]:
        """Drop trailing pad ids, and pad ids before the first start token (left padding)."""
        pad_id = self.pad_token_id
        if pad_id is None:
            return ids
        end = len(ids)
        while end > 0 and ids[end - 1] == pad_id:
            end -= 1
        start = 0
        if self.bos_token_id in ids[:end]:
            first_bos = ids.index(self.bos_token_id)
            if all(token_id == pad_id for token_id in ids[:first_bos]):
                start = first_bos
        return ids[start:end]

    def _decode(
        self,
        token_ids: int | list[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs,
    ) -> str:
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        if isinstance(token_ids, dict):
            token_ids = token_ids["input_ids"]
        ids = [int(token_id) for token_id in token_ids]
        if skip_special_tokens:
            ids = self._without_padding(ids)
        decode_kwargs = {"clean_up_tokenization_spaces": clean_up_tokenization_spaces, **kwargs}
        # Tokens outside the BPE vocabulary (added with add_tokens) have no end-of-word mark: decode the BPE runs
        # between them separately and put each added token in as a word.
        bpe_vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=False)
        if all(token_id < bpe_vocab_size for token_id in ids):
            return super()._decode(ids, skip_special_tokens=skip_special_tokens, **decode_kwargs)
        special_ids = set(self.all_special_ids)
        words, run = [], []
        for token_id in [*ids, None]:
            if token_id is not None and token_id < bpe_vocab_size:
                run.append(token_id)
                continue
            if run:
                words.append(super()._decode(run, skip_special_tokens=skip_special_tokens, **decode_kwargs))
                run = []
            if token_id is not None and not (skip_special_tokens and token_id in special_ids):
                words.append(self.convert_ids_to_tokens(token_id))
        return " ".join(word for word in words if word)

    def _encode_plus(self, text, text_pair=None, **kwargs):
        is_split_into_words = kwargs.get("is_split_into_words", False)
        text = _clean_texts(text, "text", is_split_into_words)
        if text_pair is not None:
            text_pair = _clean_texts(text_pair, "text_pair", is_split_into_words)
        encoded = super()._encode_plus(text, text_pair=text_pair, **kwargs)
        num_truncated = sum(1 for encoding in encoded.encodings or [] if encoding.overflowing)
        if num_truncated:
            logger.warning(
                f"{num_truncated} text(s) were longer than the {kwargs.get('max_length')}-token context and were "
                "truncated keeping the end token in the last slot; the original MS-CLIP code drops the end token "
                "instead (and then pools position 0)."
            )
        return encoded
