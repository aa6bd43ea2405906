"""Every converted folder gets a model card: the matching card of model_cards/ (with the parity just measured), else a
minimal card with valid Hub metadata; the folder's vlzoo record lists it and `vlzoo publish` uploads it."""

import json
import shutil

import pytest
from huggingface_hub import ModelCard

from vlzoo.cli import main
from vlzoo.conversion.output_dir import MARKER_FILE
from vlzoo.hub import check_publishable
from vlzoo.hub.cards import (
    CARD_FILE,
    match_card,
    minimal_pipeline_tag,
    write_folder_card,
    write_minimal_model_card,
)
from vlzoo.registry import get_family

B16_FILE = "b16-yfcc-msclips_ckpt.pth"


def _convert(checkpoint_file, config_file, output, *flags) -> int:
    return main(
        [
            "convert", "ms_clip",
            "--checkpoint", str(checkpoint_file),
            "--original-config", str(config_file),
            "--output-dir", str(output),
            *flags,
        ]
    )  # fmt: skip


def _card(folder) -> ModelCard:
    text = (folder / CARD_FILE).read_text()
    card = ModelCard.load(folder / CARD_FILE)  # the metadata parses (what vlzoo publish checks)
    assert card.text.strip() and "<!-- vlzoo model card" in text
    assert CARD_FILE in json.loads((folder / MARKER_FILE).read_text())["files"]
    assert CARD_FILE in check_publishable(folder)
    return card


# ---- matching a conversion to a card ----


def test_a_card_matches_by_file_name_then_by_a_variant_no_other_card_has():
    assert match_card("ms_clip", head_class="MsClipModel", checkpoint=B16_FILE).variant == "b16-yfcc"
    # the file name wins over the variant; another head class never matches
    assert match_card("ms_clip", head_class="MsClipModel", checkpoint=B16_FILE, variant="b32-laion").variant == (
        "b16-yfcc"
    )
    assert match_card("ms_clip", head_class="MsClipVisionModelWithProjection", checkpoint=B16_FILE) is None
    # a renamed file: the variant decides, unless parity was measured (the card's parity is about its own file)
    assert match_card("ms_clip", head_class="MsClipModel", checkpoint="mine.pth", variant="b32-laion").variant == (
        "b32-laion"
    )
    assert match_card("ms_clip", head_class="MsClipModel", checkpoint="mine.pth", variant="b32-laion",
                      parity_checked=True) is None  # fmt: skip
    assert match_card("ms_clip", head_class="MsClipModel", checkpoint="mine.pth") is None
    # a preset several cards share (BEiT-3 "base") names none of them
    assert match_card("beit3", head_class="Beit3ForQuestionAnswering", variant="base") is None
    assert match_card("beit3", head_class="Beit3ForQuestionAnswering", checkpoint="beit3_base_patch16_480_vqa.pth",
                      variant="base").variant == "base-vqa"  # fmt: skip
    with pytest.raises(ValueError, match="head_class must be a model class name"):
        match_card("ms_clip", head_class="")


def test_minimal_cards_are_tagged_by_the_models_head():
    assert minimal_pipeline_tag(get_family("ms_clip").heads["contrastive"]) == "zero-shot-image-classification"
    assert minimal_pipeline_tag(get_family("beit3").heads["captioning"]) == "image-to-text"
    assert minimal_pipeline_tag(get_family("beit3").heads["vqa"]) == "visual-question-answering"
    assert minimal_pipeline_tag(get_family("transvg").heads["grounding"]) == "zero-shot-object-detection"
    assert minimal_pipeline_tag(get_family("meter").auto_models["AutoModel"]) == "feature-extraction"
    assert minimal_pipeline_tag(dict) is None


# ---- conversions ----


def test_a_conversion_no_card_describes_gets_a_minimal_card(checkpoint, tmp_path):
    folder = tmp_path / "converted"
    assert _convert(checkpoint / "model.pth", checkpoint / "original_config.json", folder) == 0
    card = _card(folder)
    assert card.data.library_name == "transformers"
    assert card.data.license == "other" and card.data.license_name == "unknown"
    assert card.data.pipeline_tag == "zero-shot-image-classification"
    assert card.data.tags == ["vlzoo", "ms_clip"]
    assert "`model.pth`" in card.text and 'MsClipModel.from_pretrained("converted")' in card.text
    assert "No conversion of this checkpoint has been checked" in card.text  # no parity.json


def test_a_conversion_of_a_released_checkpoint_gets_its_card_with_the_parity(fixtures_dir, tmp_path):
    source = fixtures_dir / "msclip" / "msclip-s-tiny"
    renamed = tmp_path / "inputs" / B16_FILE  # the released file's name: its card matches
    renamed.parent.mkdir()
    shutil.copy(source / "model.pth", renamed)
    folder = tmp_path / "converted"
    flags = ("--verify-against", str(source / "io.safetensors"), "--remote-code")
    assert _convert(renamed, source / "original_config.json", folder, *flags) == 0
    card = _card(folder)
    assert card.data.model_name == "vlzoo/ms_clip-b16-yfcc"
    assert "generated from model_cards/ms_clip/b16-yfcc.yaml" in card.content
    assert f"Parity passed at atol 0.0001 (checkpoint {B16_FILE}" in card.text
    assert "modeling_ms_clip.py" in check_publishable(folder)  # card and remote code travel together


def test_a_failing_card_leaves_no_folder(checkpoint, tmp_path, monkeypatch):
    import vlzoo.hub.cards as cards

    def refuse(*args, **kwargs):
        raise FileExistsError("README.md exists and vlzoo did not write it")

    monkeypatch.setattr(cards, "write_folder_card", refuse)
    assert _convert(checkpoint / "model.pth", checkpoint / "original_config.json", tmp_path / "out") == 1
    assert not (tmp_path / "out").exists()


def test_a_readme_vlzoo_did_not_write_is_kept(checkpoint, tmp_path):
    folder = tmp_path / "converted"
    assert _convert(checkpoint / "model.pth", checkpoint / "original_config.json", folder) == 0
    (folder / MARKER_FILE).unlink()
    (folder / CARD_FILE).write_text("# my own notes\n")
    with pytest.raises(FileExistsError, match="vlzoo did not write it"):
        write_minimal_model_card(folder, description="Converted.")
    with pytest.raises(FileExistsError, match="vlzoo did not write it"):
        write_folder_card(folder, description="Converted.", checkpoint=B16_FILE)
    assert (folder / CARD_FILE).read_text() == "# my own notes\n"
    with pytest.raises(ValueError, match="description must be a non-empty text"):
        write_minimal_model_card(folder, description=" ")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        write_minimal_model_card(tmp_path, description="Converted.")
