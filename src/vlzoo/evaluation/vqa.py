"""VQAv2 accuracy with the answer normalisation rules of the official VQA evaluation."""

import re
from collections.abc import Sequence

# Punctuation handled by the official rules; the apostrophe is kept so contractions survive.
_PUNCTUATION = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})
# Contractions the official rules restore when written without an apostrophe. Forms whose apostrophe-less spelling is
# an ordinary word (we're/were, it's/its, she'll/shell, i'd/id, ...) are absent, as in the official table.
_CONTRACTIONS = (
    "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't he'd "
    "he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am mightn't mightn't've might've mustn't must've "
    "needn't not've o'clock oughtn't 'ow's'at shan't she'd've should've shouldn't shouldn't've somebody'd've "
    "somebody'll somebody's someone'd someone'd've someone'll someone's something'd something'd've something'll "
    "that's there'd there'd've there're there's they'd they'd've they'll they're they've 'twas wasn't we'd've "
    "we've weren't what'll what're what's what've when's where'd where's where've who'd who'd've who'll who's "
    "who've why'll why're why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've "
    "you'll you're you've"
).split()


def _spellings_without_one_apostrophe(contraction: str) -> list[str]:
    """Spellings of `contraction` with exactly one apostrophe dropped ("couldn't've" -> "couldnt've", "couldn'tve")."""
    positions = [index for index, char in enumerate(contraction) if char == "'"]
    return [contraction[:index] + contraction[index + 1 :] for index in positions]


_RESTORE_CONTRACTION = {
    spelling: contraction
    for contraction in _CONTRACTIONS
    for spelling in _spellings_without_one_apostrophe(contraction)
}


def _strip_punctuation(text: str) -> str:
    """Drop or space out punctuation: marks touching a space (or any mark in "1,000"-like text) vanish, others split
    words; a period goes unless a digit follows it ("3.5" stays)."""
    drop_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        if drop_all or f"{mark} " in text or f" {mark}" in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out)


def normalize_vqa_answer(answer: str) -> str:
    """Normalise an answer as the official VQA evaluation does: punctuation, lower case, number words to digits
    ("two" -> "2"), articles removed, apostrophe-less contractions restored ("dont" -> "don't").

    Example:
        >>> normalize_vqa_answer("Two dogs.")
        '2 dogs'
    """
    if not isinstance(answer, str):
        raise TypeError(f"a VQA answer must be a string; got {type(answer).__name__} ({answer!r}).")
    text = _strip_punctuation(answer.replace("\n", " ").replace("\t", " ").strip())
    words = [_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [_RESTORE_CONTRACTION.get(word, word) for word in words if word not in _ARTICLES]
    return " ".join(words)


def _question_accuracy(prediction: str, answers: list[str]) -> float:
    """Mean over leave-one-annotator-out subsets of min(1, matches / 3); exact match for a single answer."""
    if len(answers) == 1:
        return float(prediction == answers[0])
    matches = sum(answer == prediction for answer in answers)
    return sum(min(1.0, (matches - (answer == prediction)) / 3) for answer in answers) / len(answers)


def vqa_accuracy(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> float:
    """VQAv2 accuracy in [0, 1] (the papers report it x100).

    Per question, with the 10 human answers, the score is the mean over the 10 subsets of 9 answers of
    min(1, number of answers in the subset equal to the prediction / 3), after normalising the prediction and every
    answer with `normalize_vqa_answer`. The mean over questions is returned.

    Differences from the official script, by design: normalisation is always applied (the script skips it when all
    human answers are identical, so "yes." would score 0 against ten "yes"); with fewer than 10 answers the same
    leave-one-out mean is taken over the answers given (with fewer than 4 a perfect score is impossible, as in the
    formula); with a single answer, leave-one-out is undefined and the score is an exact match after normalisation.

    Args:
        predictions: one predicted answer string per question.
        answers: for each question, the list of human answers (10 in VQAv2).

    Example:
        >>> vqa_accuracy(["Two"], [["2"] * 10])
        1.0
    """
    if isinstance(predictions, str) or isinstance(answers, str):
        raise TypeError("`predictions` must be a list of strings and `answers` a list of lists of strings.")
    predictions = list(predictions)
    answers = list(answers)
    if not predictions:
        raise ValueError("`predictions` is empty; at least one question is needed.")
    if len(predictions) != len(answers):
        raise ValueError(
            f"`predictions` and `answers` must have one entry per question; got {len(predictions)} and {len(answers)}."
        )
    total = 0.0
    for index, (prediction, human_answers) in enumerate(zip(predictions, answers, strict=True)):
        if isinstance(human_answers, str) or len(human_answers) == 0:
            raise ValueError(f"`answers[{index}]` must be a non-empty list of answer strings; got {human_answers!r}.")
        if not isinstance(prediction, str) or not all(isinstance(answer, str) for answer in human_answers):
            raise TypeError(
                f"question {index}: the prediction and the answers must be strings; "
                f"got {prediction!r} and {list(human_answers)!r}."
            )
        normalized = [normalize_vqa_answer(answer) for answer in human_answers]
        total += _question_accuracy(normalize_vqa_answer(prediction), normalized)
    return total / len(predictions)


def vqa_answer_scores(answers: Sequence[str]) -> dict[str, float]:
    """The VQA accuracy each distinct answer would score for one question, keyed by its normalised form.

    This is the soft target of VQA classifiers: predicting answer `a` scores exactly `vqa_answer_scores(answers)[a]`
    under `vqa_accuracy` (and 0 for an answer not listed), so training targets and the metric cannot disagree. With
    ten human answers the leave-one-out mean gives 0.3, 0.6, 0.9 and 1.0 for an answer given 1, 2, 3 and 4+ times
    (VQAv2's `min(1, count * 0.3)` table); with a single answer it is 1.0 (exact match).

    Args:
        answers: the human answers of one question (any spelling: each is normalised with `normalize_vqa_answer`).

    Returns:
        `{normalised answer: score in (0, 1]}` in order of first occurrence.

    Example:
        >>> vqa_answer_scores(["Yes"] * 9 + ["no"])
        {'yes': 1.0, 'no': 0.3}
    """
    if isinstance(answers, str) or not isinstance(answers, Sequence) or len(answers) == 0:
        raise ValueError(f"`answers` must be a non-empty list of answer strings; got {answers!r}.")
    if not all(isinstance(answer, str) for answer in answers):
        raise TypeError(f"`answers` must hold strings; got {list(answers)!r}.")
    normalized = [normalize_vqa_answer(answer) for answer in answers]
    return {answer: _question_accuracy(answer, normalized) for answer in dict.fromkeys(normalized)}
