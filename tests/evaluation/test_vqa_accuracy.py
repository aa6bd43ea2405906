"""VQAv2 answer normalisation and leave-one-out accuracy, on hand-computed cases."""

import pytest

from vlzoo.evaluation import normalize_vqa_answer, vqa_accuracy


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Two", "2"),
        ("a dog", "dog"),
        ("The  Dogs", "dogs"),
        ("yes.", "yes"),
        ("none", "0"),
        ("3.5", "3.5"),
        ("1,000", "1000"),
        ("black-and-white", "black and white"),
        ("left/right", "left right"),
        ("what is it ?", "what is it"),
        ("dont", "don't"),
        ("isnt it", "isn't it"),
        ("couldnt've", "couldn't've"),
        ("its", "its"),
        ("were", "were"),
        (" yes\n", "yes"),
    ],
)
def test_normalize_vqa_answer(answer, expected):
    assert normalize_vqa_answer(answer) == expected


def test_normalisation_cases_score_as_matches():
    assert vqa_accuracy(["Two", "a dog", "yes."], [["2"] * 10, ["dog"] * 10, ["yes"] * 10]) == 1.0


@pytest.mark.parametrize(
    ("matching", "expected"),
    [
        # k humans agree with the prediction; leaving one of them out leaves k-1, leaving another out leaves k.
        (0, 0.0),
        (1, (1 * 0 + 9 * 1 / 3) / 10),  # 0.3
        (2, (2 * 1 / 3 + 8 * 2 / 3) / 10),  # 0.6
        (3, (3 * 2 / 3 + 7 * 1) / 10),  # 0.9
        (4, 1.0),
        (10, 1.0),
    ],
)
def test_leave_one_out_accuracy_with_ten_answers(matching, expected):
    answers = ["two"] * matching + ["three"] * (10 - matching)
    assert vqa_accuracy(["2"], [answers]) == pytest.approx(expected)


def test_fewer_answers_and_mean_over_questions():
    # Three answers, two match: leaving out a "yes" gives 1/3 (twice), leaving out the "no" gives 2/3.
    assert vqa_accuracy(["yes"], [["yes", "yes", "no"]]) == pytest.approx(4 / 9)
    # A single answer is an exact match after normalisation.
    assert vqa_accuracy(["The cat"], [["cat"]]) == 1.0
    assert vqa_accuracy(["dog"], [["cat"]]) == 0.0
    assert vqa_accuracy(["yes", "no"], [["yes"] * 10, ["yes"] * 10]) == pytest.approx(0.5)


def test_invalid_inputs():
    with pytest.raises(ValueError, match="one entry per question"):
        vqa_accuracy(["yes", "no"], [["yes"]])
    with pytest.raises(ValueError, match=r"answers\[0\]"):
        vqa_accuracy(["yes"], [[]])
    with pytest.raises(ValueError, match="empty"):
        vqa_accuracy([], [])
    with pytest.raises(TypeError, match="strings"):
        vqa_accuracy([2], [["2"]])
    with pytest.raises(TypeError, match="list of strings"):
        vqa_accuracy("yes", [["yes"]])
