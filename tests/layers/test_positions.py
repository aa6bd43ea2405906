"""Position blocks: offset tables, DETR sine positions (against transformers' DETR module), 2-D table resizing."""

import math

import pytest
import torch
from torch.nn import functional as F
from transformers.models.detr.modeling_detr import DetrSinePositionEmbedding

from vlzoo.layers.positions import LearnedPositionEmbedding, SinePositionEmbedding2D, resize_position_table_2d


def test_learned_table_with_offset():
    table = LearnedPositionEmbedding(6, 4, offset=2)
    assert table.weight.shape == (8, 4) and table.num_positions == 6
    torch.testing.assert_close(table(seq_len=3), table.weight[2:5])
    ids = torch.tensor([[0, 5], [1, 1]])
    torch.testing.assert_close(table(ids), table.weight[ids + 2])
    assert "offset=2" in repr(table)
    plain = LearnedPositionEmbedding(6, 4)
    torch.testing.assert_close(plain(seq_len=6), plain.weight)


def test_learned_table_errors():
    table = LearnedPositionEmbedding(6, 4, offset=2)
    with pytest.raises(ValueError, match=r"seq_len must be in \[1, 6\] \(the table's usable positions\); got 7"):
        table(seq_len=7)
    with pytest.raises(ValueError, match="exactly one of position_ids and seq_len"):
        table()
    with pytest.raises(ValueError, match="num_positions must be positive"):
        LearnedPositionEmbedding(0, 4)


def _padded_masks() -> torch.Tensor:
    """Three 5x7 pixel masks (1 = real): full, padded at the bottom, padded at the right and bottom."""
    mask = torch.ones(3, 5, 7, dtype=torch.long)
    mask[1, 3:] = 0
    mask[2, :, 4:] = 0
    mask[2, 4:] = 0
    return mask


@pytest.mark.parametrize("normalize", [True, False])
def test_sine_positions_equal_transformers_detr(normalize):
    mask = _padded_masks()
    ours = SinePositionEmbedding2D(8, normalize=normalize)(mask)
    kwargs = {"normalize": True, "scale": 2 * math.pi} if normalize else {}
    reference = DetrSinePositionEmbedding(num_position_features=8, temperature=10000, **kwargs)
    expected = reference(shape=(3, 1, 5, 7), device=mask.device, dtype=torch.float32, mask=mask)
    assert ours.shape == (3, 16, 5, 7)
    torch.testing.assert_close(ours, expected, atol=0, rtol=0)


def test_sine_positions_by_hand_for_one_cell():
    mask = _padded_masks()
    positions = SinePositionEmbedding2D(4, temperature=100.0)(mask)
    # sample 1 has 3 real rows: cell (row 1, column 2) has y = 2 / 3 * 2pi and x = 3 / 7 * 2pi
    y, x = 2 / (3 + 1e-6) * 2 * math.pi, 3 / (7 + 1e-6) * 2 * math.pi
    frequencies = [100 ** (2 * (i // 2) / 4) for i in range(4)]
    expected = [f(c / frequencies[i]) for c in (y, x) for i, f in enumerate((math.sin, math.cos, math.sin, math.cos))]
    torch.testing.assert_close(positions[1, :, 1, 2], torch.tensor(expected), atol=1e-6, rtol=1e-6)


def test_sine_positions_dtype_and_errors():
    mask = _padded_masks()
    positions = SinePositionEmbedding2D(8)(mask.bool(), dtype=torch.bfloat16)
    assert positions.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="positive even number; got 7"):
        SinePositionEmbedding2D(7)
    with pytest.raises(ValueError, match=r"pixel_mask must have shape \[batch, height, width\]"):
        SinePositionEmbedding2D(8)(mask[0])


def _resize_by_hand(grid: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """timm/BEiT-3 recipe: rows -> (1, dim, h, w) image -> bicubic -> rows."""
    image = grid.reshape(old[0], old[1], -1).permute(2, 0, 1)[None]
    image = F.interpolate(image, size=new, mode="bicubic", align_corners=False)
    return image[0].permute(1, 2, 0).reshape(new[0] * new[1], -1)


def test_resize_keeps_prefix_rows_and_resamples_the_grid():
    torch.manual_seed(0)
    table = torch.randn(1 + 3 * 3, 5)
    resized = resize_position_table_2d(table, 4, num_prefix_rows=1)
    assert resized.shape == (17, 5)
    torch.testing.assert_close(resized[:1], table[:1])
    torch.testing.assert_close(resized[1:], _resize_by_hand(table[1:], (3, 3), (4, 4)))
    # row-major order: the resized grid of a table that only varies along columns keeps varying along columns
    columns = torch.arange(3.0).repeat(3)[:, None].expand(9, 2)
    by_columns = resize_position_table_2d(columns, (2, 5))
    assert torch.allclose(by_columns.reshape(2, 5, 2)[0], by_columns.reshape(2, 5, 2)[1])


def test_resize_non_square_batched_and_half_precision():
    torch.manual_seed(1)
    table = torch.randn(1, 2 + 2 * 3, 4).half()
    resized = resize_position_table_2d(table, (3, 5), old_grid_size=(2, 3), num_prefix_rows=2)
    assert resized.shape == (1, 17, 4) and resized.dtype == torch.float16
    expected = _resize_by_hand(table[0, 2:].float(), (2, 3), (3, 5)).half()
    torch.testing.assert_close(resized[0, 2:], expected)
    assert resize_position_table_2d(table, (2, 3), num_prefix_rows=2, old_grid_size=(2, 3)) is table


def test_resize_errors():
    with pytest.raises(ValueError, match="6 grid rows after 1 prefix rows, not a square number; pass old_grid_size"):
        resize_position_table_2d(torch.zeros(7, 3), 4, num_prefix_rows=1)
    with pytest.raises(ValueError, match="old_grid_size 2x2 does not match the 6 grid rows"):
        resize_position_table_2d(torch.zeros(6, 3), 4, old_grid_size=2)
    with pytest.raises(ValueError, match=r"table must have shape \[rows, dim\] or \[1, rows, dim\]"):
        resize_position_table_2d(torch.zeros(2, 4, 3), 4)
