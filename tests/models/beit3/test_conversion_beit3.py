"""Every fixture case of ../shared/fixtures/beit3 converts through the user's converter and reproduces the original
outputs (max |diff| <= 1e-4); the architecture is inferred, heads are recognised, bad files are refused."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoImageProcessor, AutoProcessor

from vlzoo.cli import main
from vlzoo.conversion import ConversionError, convert_checkpoint, run_cli
from vlzoo.models.beit3.configuration_beit3 import Beit3Config
from vlzoo.models.beit3.conversion_beit3 import Beit3Converter, detect_head, infer_config
from vlzoo.models.beit3.image_processing_beit3 import Beit3ImageProcessor
from vlzoo.models.beit3.modeling_beit3 import (
    Beit3ForCaptioning,
    Beit3ForImageClassification,
    Beit3ForImageTextRetrieval,
    Beit3ForQuestionAnswering,
    Beit3ForVisualReasoning,
    Beit3Model,
)
from vlzoo.models.beit3.processing_beit3 import Beit3Processor
from vlzoo.models.beit3.tokenization_beit3 import Beit3Tokenizer, write_sentencepiece_model

REPO = Path(__file__).resolve().parents[3]
CASES = {
    "backbone": ("beit3-backbone-tiny", "beit3_tiny_patch16_48.pth", Beit3Model),
    "retrieval": ("beit3-retrieval-tiny", "beit3_tiny_patch16_48_coco_retrieval.pth", Beit3ForImageTextRetrieval),
    "vqa": ("beit3-vqa-tiny", "beit3_tiny_patch16_48_vqa.pth", Beit3ForQuestionAnswering),
    "nlvr2": ("beit3-nlvr2-tiny", "beit3_tiny_patch16_48_nlvr2.pth", Beit3ForVisualReasoning),
    "nlvr2-deepspeed": ("beit3-nlvr2-tiny", "mp_rank_00_model_states.pt", Beit3ForVisualReasoning),
    "captioning": ("beit3-captioning-tiny", "beit3_tiny_patch16_48_coco_captioning.pth", Beit3ForCaptioning),
    "in1k": ("beit3-in1k-tiny", "beit3_tiny_patch16_48_in1k.pth", Beit3ForImageClassification),
}


def _case(fixtures_dir: Path, name: str) -> tuple[Path, Path, Path]:
    folder, checkpoint, _ = CASES[name]
    case = fixtures_dir / "beit3" / folder
    return case / checkpoint, case / "original_config.json", case / "io.safetensors"


@pytest.mark.parametrize("name", list(CASES))
def test_fixture_case_converts_with_parity(name: str, fixtures_dir: Path, tmp_path: Path, capsys):
    checkpoint, original_config, reference = _case(fixtures_dir, name)
    status = run_cli(
        Beit3Converter(),
        [
            "--checkpoint", str(checkpoint),
            "--original-config", str(original_config),
            "--output-dir", str(tmp_path / "out"),
            "--verify-against", str(reference),
        ],
    )  # fmt: skip
    printed = capsys.readouterr()
    assert status == 0, printed.err
    report = json.loads((tmp_path / "out" / "parity.json").read_text())
    assert report["passed"]
    diffs = {key: value["max_abs_diff"] for key, value in report["outputs"].items()}
    print(f"{name}: max |diff| per output {diffs}")
    assert len(diffs) >= 2 and max(diffs.values()) <= 1e-4
    loaded = CASES[name][2].from_pretrained(tmp_path / "out")
    assert type(loaded) is CASES[name][2]


def test_position_table_resized_by_the_original_rule(fixtures_dir: Path, tmp_path: Path):
    """beit3-backbone-tiny converted for 64 px: the 3x3 grid of the table is resized bicubically to 4x4 as
    `load_model_and_may_interpolate` does, and the resized model reproduces the original's joint outputs."""
    checkpoint, original_config, reference = _case(fixtures_dir, "backbone")
    resized = {"encoder_config": json.loads(original_config.read_text())["resized_encoder_config"]}
    result = convert_checkpoint(
        Beit3Converter(), checkpoint, tmp_path / "out", original_config=resized, verify_against=reference
    )
    outputs = {o.name: o.max_abs_diff for o in result.parity_report.outputs}
    assert set(outputs) == {"resized64.embed_positions_A", "resized64.joint.encoder_out"}
    assert max(outputs.values()) <= 1e-4
    assert result.resized and result.config.image_size == 64


def test_heads_are_recognised_and_the_architecture_inferred(fixtures_dir: Path):
    from vlzoo.conversion import load_checkpoint

    for name, (folder, file, _) in CASES.items():
        loaded = load_checkpoint(fixtures_dir / "beit3" / folder / file)
        head = detect_head(loaded.state_dict)
        assert head == {"in1k": "imagenet", "nlvr2-deepspeed": "nlvr2"}.get(name, name)
        heads = {"encoder_attention_heads": 4}  # not stored in the weights (beit3.md §7.7)
        config = infer_config(loaded.state_dict, original_config=heads, variant=None, extra=loaded.extra)
        assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (32, 2, 128)
        assert config.image_size == 48 and config.mask_token_id == 121 and config.max_position_embeddings == 1024
        # final LayerNorm decided by the keys, not the task (beit3.md §7.5)
        assert config.final_layer_norm == (name not in ("vqa", "in1k"))
        assert config.num_attention_heads == 4
        assert config.num_labels == {"vqa": 3129, "nlvr2": 2, "nlvr2-deepspeed": 2, "in1k": 1000}.get(name, 2)


def _synthetic_checkpoint(config: Beit3Config, model_class) -> dict[str, torch.Tensor]:
    """Write a model's weights in the original key layout (the inverse of the key map), for geometries no fixture
    has."""
    torch.manual_seed(0)
    model = model_class(config).eval()
    inverse = {
        "embeddings.text_embedding.weight": "text_embed.weight",
        "embeddings.patch_embedding.projection.weight": "vision_embed.proj.weight",
        "embeddings.patch_embedding.projection.bias": "vision_embed.proj.bias",
        "embeddings.cls_token": "vision_embed.cls_token",
        "embeddings.mask_token": "vision_embed.mask_token",
        "embeddings.vision_position_embedding.weight": "encoder.embed_positions.A.weight",
        "embeddings.text_position_embedding.weight": "encoder.embed_positions.B.weight",
    }
    state = {}
    for key, value in model.state_dict().items():
        inner = key.removeprefix("beit3.")
        if inner in inverse:
            original = "beit3." + inverse[inner]
        elif inner.startswith("encoder."):
            original = "beit3." + (
                inner.replace(".vision.", ".A.")
                .replace(".language.", ".B.")
                .replace("layer_norm1", "self_attn_layer_norm")
                .replace("layer_norm2", "final_layer_norm")
                .replace(".mlp.A.", ".ffn.A.")
                .replace(".mlp.B.", ".ffn.B.")
            )
        else:
            original = {
                "visual_projection.weight": "vision_head.weight",
                "text_projection.weight": "language_head.weight",
            }.get(key, key)
        state[original] = value
    return state, model


def test_other_geometry_converts_exactly(tmp_path: Path):
    """A geometry no fixture has (width 48, 3 layers, 6 heads, patch 8, 40 px, 40-row text table): the inferred
    config and the converted weights reproduce the model the checkpoint was written from."""
    config = Beit3Config(
        hidden_size=48, num_hidden_layers=3, num_attention_heads=6, intermediate_size=80, vocab_size=70,
        max_position_embeddings=40, image_size=40, patch_size=8, mask_token_id=61,
    )  # fmt: skip
    state, model = _synthetic_checkpoint(config, Beit3ForImageTextRetrieval)
    path = tmp_path / "beit3_custom.pth"
    torch.save({"model": state}, path)
    result = convert_checkpoint(
        Beit3Converter(), path, tmp_path / "out", original_config={"encoder_attention_heads": 6}
    )
    assert result.config.num_attention_heads == 6 and result.config.image_size == 40
    converted = Beit3ForImageTextRetrieval.from_pretrained(tmp_path / "out", attn_implementation="eager").eval()
    ids = torch.tensor([[0, 5, 9, 2], [0, 7, 2, 1]])
    inputs = {"input_ids": ids, "attention_mask": (ids != 1).long(), "pixel_values": torch.randn(2, 3, 40, 40)}
    with torch.no_grad():
        model.set_attn_implementation("eager")
        torch.testing.assert_close(converted(**inputs).logits_per_image, model(**inputs).logits_per_image)


def test_wrong_family_and_bad_files_are_refused(fixtures_dir: Path, tmp_path: Path):
    path = tmp_path / "other.pth"
    torch.save({"model": {"visual.conv1.weight": torch.zeros(2, 3, 4, 4)}}, path)
    with pytest.raises(ConversionError, match="BEiT-3"):
        convert_checkpoint(Beit3Converter(), path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    checkpoint, _, _ = _case(fixtures_dir, "vqa")
    with pytest.raises(ConversionError, match="head count"):
        convert_checkpoint(Beit3Converter(), checkpoint, tmp_path / "out2")  # width 32: heads not inferable
    assert not (tmp_path / "out2").exists()


# -- the processor saved with the conversion (--tokenizer) ----------------------------------------------------------


def _tiny_spm(fixtures_dir: Path) -> Path:
    return fixtures_dir / "beit3" / "tokenizer" / "tiny.spm"


@pytest.mark.parametrize("name", ["vqa", "in1k"])
def test_conversion_without_tokenizer_saves_the_image_processor(name: str, fixtures_dir: Path, tmp_path: Path):
    """No --tokenizer: the image processor alone, at the checkpoint's 48 px, in the setting of its head (ImageNet
    for in1k, vision-language otherwise); with --remote-code it maps AutoImageProcessor too."""
    checkpoint, original_config, _ = _case(fixtures_dir, name)
    out = tmp_path / "out"
    convert_checkpoint(Beit3Converter(), checkpoint, out, original_config=original_config, remote_code=True)
    files = {path.name for path in out.iterdir()}
    assert "preprocessor_config.json" in files
    assert not {"processor_config.json", "tokenizer_config.json", "beit3.spm"} & files
    images = AutoImageProcessor.from_pretrained(out)
    assert type(images) is Beit3ImageProcessor
    saved = json.loads((out / "preprocessor_config.json").read_text())
    assert saved["auto_map"]["AutoImageProcessor"] == "image_processing_beit3.Beit3ImageProcessor"
    if name == "in1k":
        expected = Beit3ImageProcessor.for_imagenet(48)
        assert images.size.shortest_edge == 48 and images.crop_size.height == images.crop_size.width == 48
        assert images.do_center_crop
    else:
        expected = Beit3ImageProcessor.for_vision_language(48)
        assert images.size.height == images.size.width == 48 and not images.do_center_crop
    assert tuple(images.image_mean) == pytest.approx(tuple(expected.image_mean))
    pixels = images(torch.zeros(3, 30, 70, dtype=torch.uint8), return_tensors="pt").pixel_values
    assert pixels.shape == (1, 3, 48, 48)


def test_tokenizer_through_the_cli_saves_the_processor(fixtures_dir: Path, tmp_path: Path, capsys):
    """`vlzoo convert beit3 --tokenizer tiny.spm`: AutoProcessor loads a Beit3Processor whose ids are the ones of
    the tokenizer built from the same file, and whose images are the checkpoint's size."""
    checkpoint, original_config, _ = _case(fixtures_dir, "vqa")
    out = tmp_path / "out"
    spm = _tiny_spm(fixtures_dir)
    status = main(
        [
            "convert", "beit3",
            "--checkpoint", str(checkpoint),
            "--original-config", str(original_config),
            "--output-dir", str(out),
            "--tokenizer", str(spm),
        ]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert (out / "beit3.spm").read_bytes() == spm.read_bytes()
    processor = AutoProcessor.from_pretrained(out)
    assert type(processor) is Beit3Processor
    text = "a photo of two cats, one asleep"
    expected = Beit3Tokenizer(spm)(text).input_ids
    assert processor.tokenizer(text).input_ids == expected and len(expected) > 4
    batch = processor(text=[text], images=[torch.zeros(3, 30, 70, dtype=torch.uint8)])
    assert batch["input_ids"].tolist() == [expected]
    assert batch["pixel_values"].shape == (1, 3, 48, 48)


def _bad_tokenizers(tmp_path: Path, fixtures_dir: Path) -> dict[str, tuple[Path, str]]:
    """--tokenizer paths that must be refused, with what the message must say."""
    other = tmp_path / "other.spm"
    write_sentencepiece_model(other, [("a", -1.0), ("b", -2.0)])  # 7 ids: not the checkpoint's 130
    text = tmp_path / "vocab.json"
    text.write_text('{"<s>": 0}')
    return {
        "missing": (tmp_path / "beit3.spm", "does not exist"),
        "folder": (fixtures_dir / "beit3" / "tokenizer", "is not a file"),
        "not sentencepiece": (text, "not a sentencepiece model"),
        "other vocabulary": (other, "gives 7 ids with <mask> = 6"),
    }


@pytest.mark.parametrize("kind", ["missing", "folder", "not sentencepiece", "other vocabulary"])
def test_bad_tokenizer_is_refused_and_nothing_is_written(kind: str, fixtures_dir: Path, tmp_path: Path):
    checkpoint, original_config, _ = _case(fixtures_dir, "vqa")
    tokenizer, message = _bad_tokenizers(tmp_path, fixtures_dir)[kind]
    with pytest.raises((ValueError, OSError), match=r"--tokenizer .*") as error:
        convert_checkpoint(
            Beit3Converter(), checkpoint, tmp_path / "out", original_config=original_config, tokenizer=tokenizer
        )
    assert message in str(error.value) and "beit3.spm" in str(error.value)
    assert not (tmp_path / "out").exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".out")]  # no temporary folder


def test_convert_script_accepts_and_checks_tokenizer(fixtures_dir: Path, tmp_path: Path, capsys):
    spec = importlib.util.spec_from_file_location("beit3_convert", REPO / "conversion" / "beit3" / "convert.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    checkpoint, original_config, _ = _case(fixtures_dir, "vqa")
    argv = ["--checkpoint", str(checkpoint), "--original-config", str(original_config)]
    folder = fixtures_dir / "beit3" / "tokenizer"
    assert script.main([*argv, "--output-dir", str(tmp_path / "bad"), "--tokenizer", str(folder)]) == 1
    assert capsys.readouterr().err.startswith(f"error: --tokenizer {folder} is not a file")
    assert not (tmp_path / "bad").exists()
    spm = _tiny_spm(fixtures_dir)
    assert script.main([*argv, "--output-dir", str(tmp_path / "out"), "--tokenizer", str(spm)]) == 0
    assert type(AutoProcessor.from_pretrained(tmp_path / "out")) is Beit3Processor
