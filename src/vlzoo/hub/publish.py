"""Publish a saved folder to the Hugging Face Hub: checked first, remote code added by default, then uploaded.

The folder itself is never modified: the remote code and the updated configs are written into a staging folder
whose other entries link to the folder's files, and that staging folder is uploaded. The token comes from the
usual places (`token=`, `HF_TOKEN`, `hf auth login`); `HF_ENDPOINT` selects another Hub.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from transformers.utils import logging

from vlzoo.conversion.output_dir import MARKER_FILE, list_files

from .remote_code import (
    CONFIG_FILE,
    IMAGE_PROCESSOR_FILE,
    PROCESSOR_FILE,
    TOKENIZER_FILE,
    RemoteCodeError,
    _read_json,
    add_remote_code,
    family_of_folder,
)

logger = logging.get_logger(__name__)

__all__ = ["PublishResult", "check_publishable", "publish"]

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
CARD_FILE = "README.md"
# Never uploaded: vlzoo's local record of the files it wrote, and what upload_folder leaves out by default.
_NOT_UPLOADED = (MARKER_FILE,)
_NOT_UPLOADED_DIRS = (".git", ".cache")


@dataclass(frozen=True)
class PublishResult:
    """What `publish` did.

    Attributes:
        repo_id: the repository (`ORG/NAME`).
        url: the repository's URL on the endpoint.
        commit: the id of the commit that holds the upload.
        files: the paths uploaded, sorted.
        remote_code: the Python files bundled into the upload (empty with `remote_code=False`).
    """

    repo_id: str
    url: str
    commit: str
    files: tuple[str, ...]
    remote_code: tuple[str, ...] = ()


def _files_to_upload(folder: Path) -> list[str]:
    return [
        name
        for name in list_files(folder)
        if name not in _NOT_UPLOADED and name.split("/")[0] not in _NOT_UPLOADED_DIRS
    ]


def _check_weights(folder: Path) -> None:
    if (folder / WEIGHTS_FILE).is_file():
        return
    index = folder / WEIGHTS_INDEX_FILE
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index} has no weight_map; it does not describe sharded weights")
        missing = sorted({name for name in weight_map.values() if not (folder / str(name)).is_file()})
        if missing:
            raise FileNotFoundError(f"{folder} lacks the weight shards {', '.join(missing)} listed in {index.name}")
        return
    pickled = [name for name in ("pytorch_model.bin", "pytorch_model.bin.index.json") if (folder / name).exists()]
    hint = (
        f" (it holds {pickled[0]}: save with safetensors, the default of save_pretrained)"
        if pickled
        else ": save the model with save_pretrained first"
    )
    raise FileNotFoundError(f"folder {folder} has no {WEIGHTS_FILE} or {WEIGHTS_INDEX_FILE}{hint}")


def _check_processor_files(folder: Path, model_type: str) -> None:
    """The preprocessing files the model's family declares (any one of them for a model of another library)."""
    from vlzoo.registry import families

    family = next(
        (f for f in families() if model_type in {c.model_type for c in (f.config_class, *f.sub_config_classes)}),
        None,
    )
    has_image_processor = (folder / IMAGE_PROCESSOR_FILE).is_file() or (
        (folder / PROCESSOR_FILE).is_file()
        and isinstance(_read_json(folder / PROCESSOR_FILE).get("image_processor"), dict)
    )
    present = {
        "processor": (folder / PROCESSOR_FILE).is_file(),
        "image processor": has_image_processor,
        "tokenizer": (folder / TOKENIZER_FILE).is_file(),
    }
    if family is None or family.config_class.model_type != model_type:
        needed = [] if any(present.values()) else ["processor, image processor or tokenizer"]
    else:
        declared = {
            "processor": family.processor_class,
            "image processor": family.image_processor_class,
            "tokenizer": family.tokenizer_class,
        }
        needed = [what for what, cls in declared.items() if cls is not None and not present[what]]
    if needed:
        raise FileNotFoundError(
            f"folder {folder} has no {', '.join(needed)} files ({PROCESSOR_FILE}, {IMAGE_PROCESSOR_FILE}, "
            f"{TOKENIZER_FILE}): save the processor into it with processor.save_pretrained(folder)"
        )


def _check_card(folder: Path) -> None:
    path = folder / CARD_FILE
    if not path.is_file():
        logger.warning(f"{folder} has no {CARD_FILE}: the repository will have no model card")
        return
    from huggingface_hub import ModelCard

    try:
        ModelCard.load(path)
    except Exception as error:  # the YAML parser's errors have no common base class
        raise ValueError(f"{path} has invalid card metadata: {' '.join(str(error).split())}") from None


def _check_auto_maps(folder: Path) -> None:
    """Every `module.Class` an auto_map of the folder names has its module file in the folder."""
    sources: list[tuple[str, object]] = []
    for name in (CONFIG_FILE, PROCESSOR_FILE, IMAGE_PROCESSOR_FILE, TOKENIZER_FILE):
        path = folder / name
        if path.is_file():
            data = _read_json(path)
            sources.append((name, data.get("auto_map")))
            nested = data.get("image_processor")
            if isinstance(nested, dict):
                sources.append((f"{name} (image_processor)", nested.get("auto_map")))
    for name, auto_map in sources:
        if not auto_map:
            continue
        values = auto_map.values() if isinstance(auto_map, dict) else auto_map
        for value in values:
            for ref in value if isinstance(value, (list, tuple)) else [value]:
                if not isinstance(ref, str) or "--" in ref:
                    continue  # None, or code in another repository
                module = ref.rpartition(".")[0]
                if not (folder / f"{module}.py").is_file():
                    raise FileNotFoundError(
                        f"{folder}/{name} maps an Auto class to {ref}, but {module}.py is not in the folder: publish "
                        "with remote code (the default), or remove the auto_map"
                    )


def check_publishable(folder: str | Path, *, remote_code: bool = True) -> list[str]:
    """Refuse a folder that is not a complete model folder; returns the files that would be uploaded.

    A complete folder holds config.json, safetensors weights (one file or an index with its shards), the processor
    files its family declares, and, when present, a README.md whose metadata parses. With `remote_code` the model
    must be a vlzoo family's; without, every `auto_map` entry must name a module file of the folder.

    Raises:
        FileNotFoundError: the folder or one of those files is missing.
        ValueError: a file is unreadable, the card metadata is invalid, or (`RemoteCodeError`) remote code is asked
            for a model of another library.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist or is not a folder")
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"folder {folder} has no {CONFIG_FILE}: save the model with save_pretrained first")
    model_type = _read_json(config_path).get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ValueError(f"{config_path} has no model_type; it is not a saved transformers model")
    _check_weights(folder)
    _check_processor_files(folder, model_type)
    _check_card(folder)
    if remote_code:
        try:
            family_of_folder(folder)
        except RemoteCodeError as error:
            raise RemoteCodeError(f"{error}; publish it without remote code (--no-remote-code)") from None
    else:
        _check_auto_maps(folder)
    return _files_to_upload(folder)


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"repo_id must be 'ORG/NAME' (an organisation or user, then the name), got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"repo_id {repo_id!r} is not a valid Hub repository name: {error}") from None


def _stage(folder: Path, files: list[str], staging: Path) -> None:
    """Link (or copy, where links are impossible) the files into the staging folder."""
    for name in files:
        source = (folder / name).resolve()
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(source, target)
        except OSError:
            shutil.copy2(source, target)


def publish(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    remote_code: bool = True,
    token: str | None = None,
    commit_message: str | None = None,
) -> PublishResult:
    """Create the Hub repository `repo_id` (if needed) and upload the folder to it.

    The folder is checked first (`check_publishable`); with `remote_code` (the default) the family's code and the
    `auto_map` entries are added to the upload, so the repository loads with `trust_remote_code=True` without
    vlzoo. The folder on disk is left unchanged; vlzoo's own `.vlzoo-output.json` is not uploaded.

    Args:
        folder: a saved model folder (weights, config, processor files, optionally README.md and parity.json).
        repo_id: `ORG/NAME`.
        private: create the repository as private (an existing repository keeps its visibility).
        remote_code: bundle the code that loads the model without vlzoo.
        token: a Hub token; default: `HF_TOKEN` or the one stored by `hf auth login`.
        commit_message: the commit message; default names vlzoo's version.

    Raises:
        ValueError, FileNotFoundError: a bad `repo_id`, an incomplete folder, or no token.
        huggingface_hub.errors.HfHubHTTPError: the Hub refused a request.
    """
    from huggingface_hub import HfApi, get_token

    from vlzoo import __version__

    _check_repo_id(repo_id)
    if not isinstance(private, bool):
        raise TypeError(f"private must be a bool, got {type(private).__name__}")
    folder = Path(folder)
    files = check_publishable(folder, remote_code=remote_code)
    if token is None and get_token() is None:
        raise ValueError("no Hugging Face token: run `hf auth login`, set HF_TOKEN, or pass token=")
    with tempfile.TemporaryDirectory(prefix="vlzoo-publish-") as temporary:
        staging = Path(temporary) / folder.resolve().name
        staging.mkdir()
        _stage(folder, files, staging)
        bundled = add_remote_code(staging) if remote_code else None
        uploaded = check_publishable(staging, remote_code=False)
        api = HfApi(token=token)
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            folder_path=staging,
            repo_id=repo_id,
            repo_type="model",
            commit_message=commit_message or f"Upload with vlzoo {__version__}",
            ignore_patterns=list(_NOT_UPLOADED),
        )
    logger.info(f"Published {len(uploaded)} files of {folder} to {url}")
    return PublishResult(
        repo_id=repo_id,
        url=str(url),
        commit=getattr(commit, "oid", None) or str(commit),
        files=tuple(uploaded),
        remote_code=tuple(bundled.files) if bundled is not None else (),
    )
