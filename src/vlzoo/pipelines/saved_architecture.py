"""Load a folder with the very class it was saved from, so a pipeline never swaps in a head the weights lack."""

from typing import Any

from transformers import AutoConfig, PreTrainedConfig, PreTrainedModel

# Keyword arguments of `pipeline(...)`'s loading that `AutoConfig.from_pretrained` understands too.
_CONFIG_KWARGS = ("revision", "token", "trust_remote_code", "cache_dir", "local_files_only", "subfolder")


class SavedArchitecture:
    """A loader for `PIPELINE_MODEL_CLASSES`: the class named in the folder's `config.architectures`, when it is a
    class of a registered vlzoo family.

    Auto head classes map a config type to one class, so a dual-encoder folder (FLAVA's `FlavaModel`) would load as
    the family's matching head with a freshly initialised ITM layer. Tried first, this loads what was saved; a
    folder it cannot place (no `architectures`, another library's model) raises `ValueError`, and transformers'
    `pipeline` goes on to the next class.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> PreTrainedModel:
        from ..registry import family_for_model_type

        config = kwargs.get("config")
        if not isinstance(config, PreTrainedConfig):
            options = {key: kwargs[key] for key in _CONFIG_KWARGS if key in kwargs}
            config = AutoConfig.from_pretrained(pretrained_model_name_or_path, **options)
        family = family_for_model_type(getattr(config, "model_type", ""))
        saved = getattr(config, "architectures", None) or []
        if family is None or not saved:
            raise ValueError("not a vlzoo folder with config.architectures")
        classes = {model_class.__name__: model_class for model_class in family.model_classes}
        for name in saved:
            if name in classes:
                kwargs.pop("code_revision", None)
                return classes[name].from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        raise ValueError(f"{saved} names no class of the vlzoo family {family.key!r}")


__all__ = ["SavedArchitecture"]
