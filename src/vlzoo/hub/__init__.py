"""Hub-ready folders: remote code that loads without vlzoo, and publishing to the Hugging Face Hub."""

from .publish import PublishResult, check_publishable, publish
from .remote_code import RemoteCode, RemoteCodeError, add_remote_code, save_with_remote_code

__all__ = [
    "PublishResult",
    "RemoteCode",
    "RemoteCodeError",
    "add_remote_code",
    "check_publishable",
    "publish",
    "save_with_remote_code",
]
