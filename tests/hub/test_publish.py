"""`vlzoo publish` end to end against a local Hub server, and the folders it refuses.

The server (tests/hub/local_hub.py) speaks the endpoints create_repo, upload_folder and hf_hub_download use; the
command runs in a fresh interpreter with HF_ENDPOINT pointed at it (huggingface_hub reads it at import), and the
repository is then loaded back through the same endpoint with vlzoo installed and, with trust_remote_code, in an
interpreter where `import vlzoo` raises.
"""

import json

import pytest
import torch
from huggingface_hub import ModelCard, ModelCardData
from safetensors.torch import load_file, save_file

from tests.common import harness
from vlzoo.cli import main
from vlzoo.conversion.output_dir import MARKER_FILE, list_files, write_marker
from vlzoo.hub import RemoteCodeError, check_publishable, publish, save_with_remote_code
from vlzoo.registry import families

from .local_hub import LocalHub
from .remote import ok, run_remote
from .remote_loader import flatten_outputs

TOKEN = "hf_local_test_token"
REPO_ID = "vlzoo-test/tiny-model"
PLAIN_REPO_ID = "vlzoo-test/tiny-model-plain"


def _hub_env(hub: LocalHub) -> dict[str, str | None]:
    """The variables that point huggingface_hub at the local server (offline mode off, Xet off)."""
    return {
        "HF_ENDPOINT": hub.endpoint,
        "HF_TOKEN": TOKEN,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": None,
        "TRANSFORMERS_OFFLINE": None,
        "HF_DATASETS_OFFLINE": None,
    }


def _family_model():
    """The first registered family's base model at its first tiny size, its processor and inputs."""
    family = families()[0]
    tester = harness.tester_for(family)
    config = next(iter(tester.configs.values()))()
    model_class = harness.base_class(family)
    torch.manual_seed(0)
    return model_class(config).eval(), tester.tiny_processor(), tester.inputs(model_class, config)


def _card(path) -> None:
    data = ModelCardData(license="apache-2.0", library_name="transformers", tags=["vlzoo", "test"])
    ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n# A tiny model\n").save(path)


@pytest.fixture
def folder(tmp_path):
    """A complete folder as vlzoo convert writes it: weights, config, processor files, card, parity.json, marker."""
    model, processor, _ = _family_model()
    path = tmp_path / "model"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    _card(path / "README.md")
    (path / "parity.json").write_text(json.dumps({"passed": True, "outputs": {}}))
    write_marker(path, writer="vlzoo convert")
    return path


def test_publish_uploads_the_folder_with_remote_code_and_it_loads_back(folder, tmp_path):
    model, processor, inputs = _family_model()
    reference = tmp_path / "reference"  # what save_with_remote_code writes for the same model
    save_with_remote_code(model, processor, reference)
    expected = {name: (reference / name).read_bytes() for name in list_files(reference)}
    expected.update({name: (folder / name).read_bytes() for name in ("README.md", "parity.json")})
    before = {name: (folder / name).read_bytes() for name in [*list_files(folder), MARKER_FILE]}
    save_file({key: value.contiguous() for key, value in inputs.items()}, tmp_path / "inputs.safetensors")
    with torch.no_grad():
        local = flatten_outputs(type(model).from_pretrained(folder).eval()(**inputs))

    with LocalHub(TOKEN) as hub:
        env = _hub_env(hub)
        publish_check = {"kind": "cli", "argv": ["publish", str(folder), "--repo-id", REPO_ID, "--private"]}
        plain_check = {"kind": "cli", "argv": ["publish", str(folder), "--repo-id", PLAIN_REPO_ID, "--no-remote-code"]}
        installed = {"kind": "model", "auto": "AutoModel", "folder": REPO_ID, "trust": False}
        installed.update(inputs=str(tmp_path / "inputs.safetensors"), outputs=str(tmp_path / "installed.safetensors"))
        checks = [publish_check, plain_check, installed]
        results = run_remote(checks, tmp_path / "with-vlzoo", env, block_vlzoo=False)["results"]
        published, plain = results[0], results[1]
        assert published["ok"] and published["status"] == 0, published
        code = [name for name in expected if name.endswith(".py")]
        assert f"published {len(expected)} files to {hub.endpoint}/{REPO_ID} " in published["stdout"]
        assert f"with remote code ({len(code)} modules)" in published["stdout"]
        assert plain["ok"] and plain["status"] == 0, plain
        assert "remote code" not in plain["stdout"]

        # exactly the folder's files (without vlzoo's marker) plus the remote code, byte for byte
        repository = hub.repos[REPO_ID]
        assert repository.private
        assert sorted(repository.files) == sorted(expected)
        for name, data in expected.items():
            assert repository.files[name] == data, name
        assert "model.safetensors" in repository.lfs
        assert hub.unknown == []
        card = tmp_path / "downloaded_README.md"
        card.write_bytes(repository.files["README.md"])
        assert ModelCard.load(card).data.license == "apache-2.0"
        # --no-remote-code: the folder as it is, public
        assert not hub.repos[PLAIN_REPO_ID].private
        assert sorted(hub.repos[PLAIN_REPO_ID].files) == list_files(folder)
        for name in list_files(folder):
            assert hub.repos[PLAIN_REPO_ID].files[name] == (folder / name).read_bytes(), name

        # the folder itself is unchanged
        assert {name: (folder / name).read_bytes() for name in [*list_files(folder), MARKER_FILE]} == before

        # from_pretrained("ORG/NAME") through the endpoint: with vlzoo, then without it (remote code)
        assert results[2]["ok"], results[2].get("trace")
        assert results[2]["module"].startswith("vlzoo."), results[2]  # vlzoo's own class, not the remote code
        remote = {"kind": "model", "auto": "AutoModel", "folder": REPO_ID}
        remote.update(inputs=str(tmp_path / "inputs.safetensors"), outputs=str(tmp_path / "remote.safetensors"))
        config = {"kind": "config", "auto": "AutoConfig", "folder": REPO_ID}
        without = run_remote([config, remote], tmp_path / "without-vlzoo", env)["results"]
        assert ok(without[0], "AutoConfig from the Hub")["class"] == type(model.config).__name__
        assert ok(without[1], "AutoModel from the Hub")["class"] == type(model).__name__
    for name in ("installed", "remote"):
        outputs = load_file(tmp_path / f"{name}.safetensors")
        assert outputs.keys() == local.keys()
        for key, tensor in local.items():
            torch.testing.assert_close(outputs[key], tensor, rtol=1e-5, atol=1e-6, msg=f"{name}: {key}")


# ---- refusals: checked before any request is made (the tests run offline) ----


def test_a_folder_without_weights_is_refused(folder):
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="has no model.safetensors or model.safetensors.index.json"):
        check_publishable(folder)
    (folder / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="it holds pytorch_model.bin: save with safetensors"):
        check_publishable(folder)


def test_a_folder_without_processor_files_is_refused(tmp_path):
    model, _, _ = _family_model()
    model.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"processor\.save_pretrained"):
        check_publishable(tmp_path)


def test_missing_config_and_invalid_card_metadata_are_refused(folder):
    (folder / "README.md").write_text("---\nlicense: [apache-2.0\n---\n# unclosed list\n")
    with pytest.raises(ValueError, match="invalid card metadata"):
        check_publishable(folder)
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        check_publishable(folder)


def test_an_auto_map_without_its_code_is_refused_without_remote_code(tmp_path):
    model, processor, _ = _family_model()
    bundled = save_with_remote_code(model, processor, tmp_path / "out")
    check_publishable(tmp_path / "out", remote_code=False)
    modeling = json.loads((tmp_path / "out" / "config.json").read_text())["auto_map"]["AutoModel"].split(".")[0]
    assert f"{modeling}.py" in bundled.files
    (tmp_path / "out" / f"{modeling}.py").unlink()
    with pytest.raises(FileNotFoundError, match=f"{modeling}.py is not in the folder"):
        check_publishable(tmp_path / "out", remote_code=False)
    check_publishable(tmp_path / "out")  # with remote code the code is written anew


def test_remote_code_is_refused_for_models_of_other_libraries(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(RemoteCodeError, match=r"which no vlzoo family has.*\(--no-remote-code\)"):
        check_publishable(tmp_path)
    assert check_publishable(tmp_path, remote_code=False) == [
        "config.json",
        "model.safetensors",
        "tokenizer_config.json",
    ]


@pytest.mark.parametrize("repo_id", ["no-organisation", "a/b/c", "org/bad name", ""])
def test_bad_repo_ids_are_refused(folder, repo_id):
    with pytest.raises(ValueError, match="repo_id"):
        publish(folder, repo_id)


def test_no_token_is_refused_before_any_request(folder, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(ValueError, match="no Hugging Face token"):
        publish(folder, REPO_ID)


def test_the_command_reports_a_refused_folder_in_one_line(tmp_path, capsys):
    assert main(["publish", str(tmp_path), "--repo-id", REPO_ID]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "has no config.json" in err and len(err.strip().splitlines()) == 1
