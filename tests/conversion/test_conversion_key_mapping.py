"""Key maps: first full match wins, unique targets, leftovers, strict model check, fused-qkv splits, family check."""

import pytest
import torch

from vlzoo.conversion import (
    ConversionError,
    MappingReport,
    apply_key_map,
    check_against_model,
    group_keys,
    require_keys,
    split_fused_qkv,
    split_transform,
)


def _source() -> dict[str, torch.Tensor]:
    return {
        "tok.weight": torch.zeros(7, 4),
        "blocks.0.attn.in_proj_weight": torch.arange(48.0).reshape(12, 4),
        "blocks.0.attn.in_proj_bias": torch.arange(12.0),
        "blocks.0.attn.mask": torch.ones(3, 3),
        "blocks.1.attn.mask": torch.ones(3, 3),
        "blocks.1.ln.weight": torch.ones(4),
        "stray.thing": torch.ones(1),
    }


KEY_MAP = [
    (r"tok\.weight", r"embed.weight"),
    (r"blocks\.(\d+)\.attn\.in_proj_(weight|bias)", r"layers.\1.attn.in_proj.\2"),
    (r"blocks\.(\d+)\.attn\.mask", None),
    # Never reached for the keys above: the first full match wins.
    (r"blocks\.(\d+)\..*", r"shadowed.\1"),
]


def test_first_full_match_wins_and_leftovers_are_listed():
    converted, report = apply_key_map(_source(), KEY_MAP)
    assert set(converted) == {
        "embed.weight",
        "layers.0.attn.in_proj.weight",
        "layers.0.attn.in_proj.bias",
        "shadowed.1",
    }
    assert report.sources["shadowed.1"] == "blocks.1.ln.weight"
    assert report.dropped == ["blocks.0.attn.mask", "blocks.1.attn.mask"]
    assert report.unmatched == ["stray.thing"]
    assert report.mapped == 4
    assert not report.ok
    assert torch.equal(converted["embed.weight"], _source()["tok.weight"])


def test_full_match_not_search():
    # "xtok.weight" contains a match for the first pattern but is not one.
    _, report = apply_key_map({"xtok.weight": torch.zeros(1)}, KEY_MAP[:1])
    assert report.unmatched == ["xtok.weight"]


def test_two_sources_for_one_target_name_both():
    state = {"a.weight": torch.zeros(1), "b.weight": torch.zeros(1)}
    with pytest.raises(ConversionError, match=r"'a\.weight' and 'b\.weight' to 'x\.weight'"):
        apply_key_map(state, [(r"(a|b)\.weight", r"x.weight")])


def test_invalid_key_map_entries():
    with pytest.raises(ValueError, match="entry 0 pattern"):
        apply_key_map({"a": torch.zeros(1)}, [(r"(", "b")])
    with pytest.raises(TypeError, match="entry 0"):
        apply_key_map({"a": torch.zeros(1)}, [(r"a", 3)])
    with pytest.raises(ConversionError, match="cannot be applied"):
        apply_key_map({"a": torch.zeros(1)}, [(r"a", r"\2")])


def test_split_transform_renames_the_fused_component():
    transforms = {r".*\.in_proj\.(weight|bias)": split_transform("in_proj", ("q_proj", "k_proj", "v_proj"))}
    converted, report = apply_key_map(_source(), KEY_MAP[:3], transforms=transforms)
    weight = _source()["blocks.0.attn.in_proj_weight"]
    for index, name in enumerate(("q_proj", "k_proj", "v_proj")):
        assert torch.equal(converted[f"layers.0.attn.{name}.weight"], weight[4 * index : 4 * index + 4])
        assert torch.equal(converted[f"layers.0.attn.{name}.bias"], torch.arange(12.0)[4 * index : 4 * index + 4])
        assert report.sources[f"layers.0.attn.{name}.bias"] == "blocks.0.attn.in_proj_bias"
    assert "layers.0.attn.in_proj.weight" not in converted
    assert report.mapped == 7


def test_transform_returning_a_tensor_and_a_wrong_type():
    converted, _ = apply_key_map(
        {"w": torch.arange(6.0).reshape(2, 3)},
        [(r"w", r"proj.weight")],
        transforms={r"proj\.weight": lambda n, t: t.t()},
    )
    assert converted["proj.weight"].shape == (3, 2)
    with pytest.raises(TypeError, match="expected a tensor or a dict"):
        apply_key_map({"w": torch.zeros(1)}, [(r"w", r"v")], transforms={r"v": lambda n, t: [t]})


def test_split_fused_qkv():
    fused = torch.arange(30.0).reshape(6, 5)
    q, k, v = split_fused_qkv(fused)
    assert torch.equal(torch.cat([q, k, v]), fused)
    q[0, 0] = -1.0
    assert fused[0, 0] == 0.0  # independent copies
    assert [t.shape for t in split_fused_qkv(torch.zeros(8), num_parts=2)] == [(4,), (4,)]
    with pytest.raises(ValueError, match=r"shape \[7, 5\].*num_parts=3"):
        split_fused_qkv(torch.zeros(7, 5))


def test_check_against_model_lists_everything_at_once():
    mapped = {"a": torch.zeros(2, 3), "b": torch.zeros(4), "extra": torch.zeros(1)}
    model = {"a": torch.Size([3, 2]), "b": (4,), "c": (5,), "tied": (4,)}
    with pytest.raises(ConversionError) as error:
        check_against_model(mapped, model, allowed_missing=["tied"])
    message = str(error.value)
    assert "1 missing, 1 unexpected, 1 with another shape" in message
    assert "a: checkpoint [2, 3] vs model [3, 2]" in message
    assert "Missing from the converted checkpoint (the model expects them) (1):\n  c" in message
    assert "Unexpected (the model has no such key) (1):\n  extra" in message
    assert "tied" not in message.split("\n", 1)[1]


def test_check_against_model_passes_and_accepts_a_state_dict():
    model_state = {"a": torch.zeros(2, 3)}
    report = check_against_model({"a": torch.ones(2, 3)}, model_state)
    assert isinstance(report, MappingReport) and report.ok and report.mapped == 1


def test_report_groups_numbered_keys():
    keys = [f"layers.{i}.fc.weight" for i in (0, 1, 2, 5)] + ["layers.3.norm.bias", "head.weight"]
    assert group_keys(keys) == ["head.weight", "layers.{0-2,5}.fc.weight  (4 keys)", "layers.3.norm.bias"]
    siblings = [f"blocks.{i}.ln.{leaf}" for i in range(3) for leaf in ("weight", "bias")] + ["blocks.7", "scale"]
    assert group_keys(siblings) == ["blocks.7", "blocks.{0-2}.ln.{bias,weight}  (6 keys)", "scale"]
    report = MappingReport(mapped=2, dropped=["x.1.y", "x.2.y"], unmatched=["stray"], sources={"b": "a"})
    text = report.format(verbose=True)
    assert "2 tensors mapped, 2 dropped deliberately, 1 left over" in text
    assert "Dropped deliberately (2):\n  x.{1-2}.y  (2 keys)" in text
    assert "Left over (no key-map pattern matched) (1):\n  stray" in text
    assert "a -> b" in text
    assert "a -> b" not in report.format()


def test_require_keys_names_the_family_and_the_prefixes_found():
    bert_like = {"bert.embeddings.word_embeddings.weight": 0, "cls.predictions.bias": 0, "pooler": 0}
    with pytest.raises(ConversionError) as error:
        require_keys(bert_like, family="MS-CLIP", required=[r"visual\.class_embedding", r"token_embedding\.weight"])
    message = str(error.value)
    assert message.startswith("this checkpoint does not look like a checkpoint of MS-CLIP")
    assert r"'visual\\.class_embedding', 'token_embedding\\.weight'" in message
    assert "its keys start with: bert., cls., pooler" in message
    assert message.endswith("is it a checkpoint of another family?")
    require_keys({"visual.class_embedding": 0}, family="MS-CLIP", required=[r"visual\.class_embedding"])
    with pytest.raises(ConversionError, match="missing_part"):
        require_keys({"visual.x": 0}, family="F", required=[r"visual\..*", r"missing_part"], hint="h")
