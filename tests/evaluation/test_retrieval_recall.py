"""Retrieval recall@k in both directions on a 3-image x 4-text matrix whose ranks are worked out by hand."""

import numpy as np
import pytest
import torch

from vlzoo.evaluation import retrieval_recall_at_k

# Texts 0 and 1 describe image 0, text 2 image 1, text 3 image 2.
SIMILARITY = [
    [0.9, 0.1, 0.8, 0.3],  # image 0: own texts {0, 1}; best own (0.9) ranks 0
    [0.2, 0.3, 0.1, 0.6],  # image 1: own text 2 (0.1) is beaten by 0.2, 0.3, 0.6 -> rank 3
    [0.4, 0.1, 0.7, 0.5],  # image 2: own text 3 (0.5) is beaten by 0.7 -> rank 1
]
TEXT_TO_IMAGE = [0, 0, 1, 2]
# Text ranks by column: text 0 -> 0, text 1 (0.1 vs 0.3) -> 1, text 2 (0.1 vs 0.8, 0.7) -> 2, text 3 (0.5 vs 0.6) -> 1.


def test_recall_matches_hand_computed_ranks():
    result = retrieval_recall_at_k(SIMILARITY, TEXT_TO_IMAGE, ks=(1, 2, 3))
    expected = {
        "image_to_text_R@1": 1 / 3,
        "image_to_text_R@2": 2 / 3,
        "image_to_text_R@3": 2 / 3,
        "text_to_image_R@1": 1 / 4,
        "text_to_image_R@2": 3 / 4,
        "text_to_image_R@3": 1.0,
        "mean_recall": 11 / 18,
    }
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value), key


def test_image_query_counts_any_of_its_texts():
    # Image 0 is a hit at R@1 through text 0, although its other text (0.1) ranks last in its row ...
    both_texts = retrieval_recall_at_k(SIMILARITY, TEXT_TO_IMAGE, ks=(1,))
    assert both_texts["image_to_text_R@1"] == pytest.approx(1 / 3)
    # ... and a miss once text 0 belongs to image 1 (whose best own text, 0.2, is then beaten by 0.3 and 0.6).
    only_second_text = retrieval_recall_at_k(SIMILARITY, [1, 0, 1, 2], ks=(1, 3))
    assert only_second_text["image_to_text_R@1"] == 0.0
    assert only_second_text["image_to_text_R@3"] == pytest.approx(2 / 3)


def test_default_ks_beyond_gallery_size_give_full_recall():
    result = retrieval_recall_at_k(torch.tensor(SIMILARITY), np.array(TEXT_TO_IMAGE))
    assert result["image_to_text_R@1"] == pytest.approx(1 / 3)
    assert result["image_to_text_R@5"] == result["image_to_text_R@10"] == 1.0
    assert result["text_to_image_R@5"] == result["text_to_image_R@10"] == 1.0
    assert result["mean_recall"] == pytest.approx((1 / 3 + 1 + 1 + 1 / 4 + 1 + 1) / 6)


def test_ties_count_for_the_query():
    result = retrieval_recall_at_k([[0.5, 0.5], [0.5, 0.5]], [0, 1], ks=(1,))
    assert result["image_to_text_R@1"] == 1.0
    assert result["text_to_image_R@1"] == 1.0


@pytest.mark.parametrize(
    ("similarity", "text_to_image", "ks", "match"),
    [
        (SIMILARITY, [0, 0, 1], (1,), "4 text columns"),
        (SIMILARITY, [0, 0, 1, 3], (1,), r"\[0, 3\)"),
        (SIMILARITY, [0, 0, 1, 1], (1,), r"images \[2\] have none"),
        (SIMILARITY, TEXT_TO_IMAGE, (0,), "positive integers"),
        (SIMILARITY, TEXT_TO_IMAGE, (), "positive integers"),
        ([0.1, 0.2], [0, 0], (1,), "2-D"),
        ([[0.1, float("nan")]], [0, 0], (1,), "NaN"),
    ],
)
def test_invalid_inputs(similarity, text_to_image, ks, match):
    with pytest.raises(ValueError, match=match):
        retrieval_recall_at_k(similarity, text_to_image, ks=ks)
