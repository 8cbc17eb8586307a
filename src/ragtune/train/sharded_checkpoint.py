"""Sharded checkpoints (FSDP's SHARDED_STATE_DICT, written by torch.distributed.checkpoint) checked before resume.

torch reads such a checkpoint with full pickle twice: its `.metadata` file (`pickle.load`) and every non-tensor item
in its `.distcp` files (the optimizer's param groups, `torch.load(weights_only=False)`). A run directory is data,
and data never runs code in ragtune, so before a resume both are read here with loaders that cannot call anything
outside an allow-list: the metadata with a restricted unpickler, the items with torch's weights-only loader. A
checkpoint that needs more is refused with the file and item named, before torch opens it.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from ragtune.config import ConfigError

METADATA = ".metadata"
_DCP_METADATA_MODULE = "torch.distributed.checkpoint.metadata"
_ALLOWED = {  # what a DCP .metadata file holds besides the metadata module's own classes
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "pathlib": {"Path", "PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"},
    "torch": {"Size"},  # and the dtypes, checked by type below
    "torch.serialization": {"_get_layout"},  # a layout looked up by its name
    "collections": {"OrderedDict"},
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        import torch

        if "." not in name:  # a dotted name would reach attributes of attributes
            if module == _DCP_METADATA_MODULE:
                obj = super().find_class(module, name)
                if isinstance(obj, type) and obj.__module__ == module:
                    return obj
            elif name in _ALLOWED.get(module, ()):
                return super().find_class(module, name)
            elif module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
                return getattr(torch, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a checkpoint's metadata")


def _refuse(path: Path, what: str) -> ConfigError:
    return ConfigError(f"{path}: {what}; ragtune never unpickles code from a run directory. Resume from another "
                       "checkpoint (resume_from_checkpoint=<folder>) or delete this one")


def _why(e: Exception) -> str:
    """The line of torch's weights-only refusal that names the global, without its advice to load it anyway."""
    said = [line.strip() for line in str(e).splitlines() if "Unsupported global" in line]
    return f" ({said[0].removeprefix('WeightsUnpickler error: ').split(' was not ')[0]})" if said else ""


def _read_metadata(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return _MetadataUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError) as e:
        raise _refuse(path, f"this sharded checkpoint's metadata is not plain checkpoint metadata ({e})") from None


def check_sharded_checkpoint(checkpoint: str | Path) -> int:
    """Raise ConfigError when a sharded checkpoint under `checkpoint` holds anything but tensors and plain values;
    return how many sharded state folders were checked (0: the checkpoint has none)."""
    import torch
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata
    from transformers.trainer_pt_utils import safe_globals  # the numpy types honest trainer state holds

    folders = sorted(p.parent for p in Path(checkpoint).rglob(METADATA) if p.is_file())
    for folder in folders:
        meta = _read_metadata(folder / METADATA)
        kinds = getattr(meta, "state_dict_metadata", None)
        storage = getattr(meta, "storage_data", None)
        if not isinstance(kinds, dict) or not isinstance(storage, dict):
            raise _refuse(folder / METADATA, "this is not a torch.distributed.checkpoint metadata file")
        for index, info in storage.items():
            if not isinstance(kinds.get(getattr(index, "fqn", None)), BytesStorageMetadata):
                continue  # tensors are read with weights_only=True by torch itself
            name = getattr(info, "relative_path", None)
            part = folder / str(name)
            if not isinstance(name, str) or Path(name).is_absolute() or part.resolve().parent != folder.resolve():
                raise _refuse(folder / METADATA, f"item {index.fqn} points outside its folder ({name!r})")
            if getattr(info, "transform_descriptors", None):
                raise _refuse(part, f"item {index.fqn} is stored transformed ({info.transform_descriptors}), "
                                    "which ragtune cannot check")
            try:
                with open(part, "rb") as f:
                    f.seek(int(info.offset))
                    blob = f.read(int(info.length))
                with safe_globals():
                    torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as e:
                raise _refuse(part, f"item {index.fqn} holds objects other than tensors and plain values"
                                    f"{_why(e)}") from None
            except (OSError, RuntimeError, TypeError, ValueError, EOFError) as e:
                raise _refuse(part, f"item {index.fqn} cannot be read ({type(e).__name__}: {e})") from None
    return len(folders)
