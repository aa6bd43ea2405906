"""`vlzoo convert ... --remote-code`: the converted folder carries the code and auto_map, or nothing is written."""

import json

from vlzoo.cli import main
from vlzoo.hub import RemoteCodeError


def _convert(checkpoint, output, *flags) -> int:
    return main(
        [
            "convert", "ms_clip",
            "--checkpoint", str(checkpoint / "model.pth"),
            "--original-config", str(checkpoint / "original_config.json"),
            "--output-dir", str(output),
            *flags,
        ]
    )  # fmt: skip


def test_remote_code_flag_writes_code_and_auto_map(checkpoint, tmp_path):
    assert _convert(checkpoint, tmp_path / "plain") == 0
    assert not list((tmp_path / "plain").glob("*.py"))
    assert "auto_map" not in json.loads((tmp_path / "plain" / "config.json").read_text())

    assert _convert(checkpoint, tmp_path / "remote", "--remote-code") == 0
    folder = tmp_path / "remote"
    code = {path.name for path in folder.glob("*.py")}
    assert {"configuration_ms_clip.py", "modeling_ms_clip.py", "processing_ms_clip.py", "attention.py"} <= code
    assert "conversion_ms_clip.py" not in code and "family.py" not in code
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_ms_clip.MsClipModel"
    processor = json.loads((folder / "processor_config.json").read_text())
    assert processor["auto_map"] == {"AutoProcessor": "processing_ms_clip.MsClipProcessor"}
    # the rest of the folder is the plain conversion's
    plain = {path.name for path in (tmp_path / "plain").iterdir()}
    assert {path.name for path in folder.iterdir()} - code == plain
    marker = json.loads((folder / ".vlzoo-output.json").read_text())
    assert code <= set(marker["files"])  # an --overwrite may replace the code files too


def test_failed_bundling_writes_nothing(checkpoint, tmp_path, monkeypatch, capsys):
    import vlzoo.hub.remote_code as remote_code

    def refuse(*args, **kwargs):
        raise RemoteCodeError("modeling_ms_clip.py:3: 'import vlzoo.layers' cannot be bundled")

    monkeypatch.setattr(remote_code, "add_remote_code", refuse)
    before = sorted(path.name for path in tmp_path.iterdir())
    assert _convert(checkpoint, tmp_path / "out", "--remote-code") == 1
    assert "cannot be bundled" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == before  # no folder, no temporary folder
