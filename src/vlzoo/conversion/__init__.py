"""The shared converter: safe loading, strict key mapping, parity checking and the atomic output folder."""

from .errors import ConversionError, ParityError
from .escaping import printable, printable_repr
from .family_check import require_keys
from .key_mapping import (
    KeyMap,
    MappingReport,
    Transform,
    apply_key_map,
    check_against_model,
    group_keys,
    split_fused_qkv,
    split_qkv,
    split_transform,
    transpose,
)
from .limits import UnsafeFileError
from .output_dir import atomic_output_dir, check_output_dir
from .parity import OutputComparison, ParityReport, compare_outputs, load_io_tensors
from .pipeline import (
    ConversionResult,
    FamilyConverter,
    add_common_cli_arguments,
    convert_checkpoint,
    eager_attention,
    run_cli,
    run_from_args,
)
from .plain_pickle import PlainDataUnpickler, load_plain_pickle
from .restricted_unpickler import InertObject, NamespaceRecord
from .safe_load import WEIGHTS_ONLY_ALLOWED_GLOBALS, LoadedCheckpoint, load_checkpoint

__all__ = [
    "PlainDataUnpickler",
    "load_plain_pickle",
    "WEIGHTS_ONLY_ALLOWED_GLOBALS",
    "ConversionError",
    "ConversionResult",
    "FamilyConverter",
    "InertObject",
    "KeyMap",
    "LoadedCheckpoint",
    "MappingReport",
    "NamespaceRecord",
    "OutputComparison",
    "ParityError",
    "ParityReport",
    "Transform",
    "UnsafeFileError",
    "add_common_cli_arguments",
    "apply_key_map",
    "atomic_output_dir",
    "check_against_model",
    "check_output_dir",
    "compare_outputs",
    "convert_checkpoint",
    "eager_attention",
    "group_keys",
    "load_checkpoint",
    "load_io_tensors",
    "printable",
    "printable_repr",
    "require_keys",
    "run_cli",
    "run_from_args",
    "split_fused_qkv",
    "split_qkv",
    "split_transform",
    "transpose",
]
