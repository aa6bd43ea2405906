"""VQAv2 answer normalisation and leave-one-out accuracy, on hand-computed cases."""

import random

import pytest

from vlzoo.evaluation import normalize_vqa_answer, vqa_accuracy, vqa_answer_scores


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


@pytest.mark.parametrize(("count", "expected"), [(1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (7, 1.0), (10, 1.0)])
def test_answer_scores_follow_the_vqav2_count_table_with_ten_answers(count, expected):
    answers = ["red"] * count + [f"other{i}" for i in range(10 - count)]
    assert vqa_answer_scores(answers)["red"] == pytest.approx(expected)


def test_answer_scores_are_the_accuracy_each_answer_would_score():
    rng = random.Random(0)
    vocabulary = ["yes", "No", "no.", "two", "2", "a cat", "cat", "3"]
    for _ in range(200):
        answers = [rng.choice(vocabulary) for _ in range(rng.choice([1, 2, 3, 5, 10]))]
        scores = vqa_answer_scores(answers)
        assert list(scores) == list(dict.fromkeys(normalize_vqa_answer(a) for a in answers))
        for prediction in vocabulary + ["dog"]:
            expected = vqa_accuracy([prediction], [answers])
            assert scores.get(normalize_vqa_answer(prediction), 0.0) == pytest.approx(expected)


def test_answer_scores_reject_bad_answers():
    with pytest.raises(ValueError, match="non-empty list"):
        vqa_answer_scores([])
    with pytest.raises(ValueError, match="non-empty list"):
        vqa_answer_scores("yes")
    with pytest.raises(TypeError, match="must hold strings"):
        vqa_answer_scores(["yes", 3])
