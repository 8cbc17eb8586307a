"""Dense encoding on ONNX Runtime: a sentence-transformers model exported once, fused, optionally int8-quantized.

On CPUs without native bfloat16 (AVX2 laptops, most cloud VMs) ORT's fused int8 graph encodes ~1.4-1.6x faster
than torch float32 at the same retrieval quality (BENCHMARKS.md). The export runs onnxruntime directly (no
optimum): torch.onnx with eager attention (so ORT's BERT optimizer recognises and fuses it), then
`optimize_model`, then dynamic per-channel QInt8 quantization. It is cached under `<cache>/onnx/<key>/`; the
key covers everything that changes the graph (see `export_key`), and the folder is renamed into place whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from ragtune.paths import cache_dir, mark_used

Quantize = Literal["int8", "none"]
EXPORT_RECIPE = 1
"""Bump when the export steps below change, so old exports are not reused."""
OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_SUPPORTED = {"Transformer", "Pooling", "Normalize", "Dense"}


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError("dense.backend=onnx needs onnxruntime: pip install 'ragtune[onnx]'") from e
    return onnxruntime


def reduce_range(quantize: Quantize) -> bool:
    """7-bit int8 weights, on CPUs without VNNI. There ORT's AVX2 int8 kernel adds pairs of uint8 x int8 products
    in int16, which saturates with full 8-bit weights (SciFact NDCG@10 -0.0069 against float32 under AVX2
    emulation, -0.0015 with VNNI; BENCHMARKS.md); 7-bit weights cannot overflow it. `hardware.cpu_has_vnni` decides
    (CPUID via torch, or RAGTUNE_CPU_VNNI), the same test `dense.backend: auto` uses."""
    from ragtune.hardware import cpu_has_vnni

    return quantize == "int8" and not cpu_has_vnni()  # unknown: the safe 7 bits


def export_key(model_path: str | Path, quantize: Quantize) -> str:
    """Hash of what determines the exported graph: the model folder's files (path, sizes, mtimes; the
    fingerprint embeddings are cached by), the quantization (and its reduce_range), the recipe and opset, and the
    versions of onnxruntime (its fused contrib ops), torch (the exporter) and transformers (the traced modelling)."""
    import torch
    import transformers

    from ragtune.models import fingerprint

    ort = require_onnxruntime()
    parts = [fingerprint(model_path), quantize, f"reduce_range{reduce_range(quantize)}", f"recipe{EXPORT_RECIPE}",
             f"opset{OPSET}", f"ort{ort.__version__}", f"torch{torch.__version__}",
             f"transformers{transformers.__version__}"]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def exported_model(model_path: str | Path, quantize: Quantize = "int8") -> Path:
    """The `model.onnx` for this model and quantization, exported on first use (~10-30 s for MiniLM)."""
    model_path = Path(model_path)
    if not model_path.is_dir():
        raise FileNotFoundError(f"{model_path}: dense.backend=onnx exports from the model's folder; "
                                f"pass a local folder or a model ragtune can resolve offline")
    target = cache_dir("onnx", export_key(model_path, quantize))
    if not (target / "model.onnx").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            _export(model_path, tmp, quantize)
            if not target.exists():  # a concurrent export may have finished first: keep its folder
                os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    mark_used(target)
    return target / "model.onnx"


class _Graph:
    """torch module: transformer (eager attention) + the model's Pooling/Dense/Normalize modules."""

    @staticmethod
    def build(st, names: list[str]):
        import torch

        class Graph(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.hf = st[0].auto_model
                self.rest = torch.nn.ModuleList(list(st)[1:])

            def forward(self, *args):
                feats = dict(zip(names, args, strict=True))
                feats["token_embeddings"] = self.hf(**feats, return_dict=True).last_hidden_state
                for module in self.rest:
                    feats = module(feats)
                return feats["sentence_embedding"]

        return Graph().eval()


def _export(model_path: Path, out: Path, quantize: Quantize) -> None:
    import torch
    from onnxruntime.transformers.optimizer import optimize_model
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
    kinds = [type(m).__name__ for m in st]
    if kinds[0] != "Transformer" or not set(kinds) <= _SUPPORTED:
        raise ValueError(f"{model_path}: dense.backend=onnx exports Transformer + Pooling/Dense/Normalize models; "
                         f"this one is {kinds}; use dense.backend=torch")
    hf = st[0].auto_model
    hf.set_attn_implementation("eager")  # the sdpa export is a pattern ORT's optimizer does not fuse
    names = [n for n in _INPUTS if n in st.tokenizer.model_input_names or n == "attention_mask"]
    ex = st.tokenizer(["a short text", "a somewhat longer example text for tracing"], padding=True,
                      return_tensors="pt")
    axes = {n: {0: "batch", 1: "seq"} for n in names} | {"sentence_embedding": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript-exporter deprecation and tracer notes, all understood
        torch.onnx.export(_Graph.build(st, names), tuple(ex[n] for n in names), str(out / "raw.onnx"),
                          input_names=names, output_names=["sentence_embedding"], dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False)
    cfg = hf.config
    fused = optimize_model(str(out / "raw.onnx"), model_type="bert", opt_level=1,
                           num_heads=getattr(cfg, "num_attention_heads", 0), hidden_size=getattr(cfg, "hidden_size", 0))
    stats = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
    fused.save_model_to_file(str(out / "fused.onnx"))
    if quantize == "int8":
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.registry import IntegerOpsRegistry

        # DefaultTensorType: shape inference cannot type the outputs of the fused com.microsoft ops
        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(logging.ERROR)  # its root-logger advice to pre-process does not apply to dynamic int8
        try:
            quantize_dynamic(out / "fused.onnx", out / "model.onnx", op_types_to_quantize=list(IntegerOpsRegistry),
                             per_channel=True, reduce_range=reduce_range(quantize), weight_type=QuantType.QInt8,
                             extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                            "DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            root.setLevel(level)
        (out / "fused.onnx").unlink()
    else:
        os.replace(out / "fused.onnx", out / "model.onnx")
    (out / "raw.onnx").unlink()
    (out / "export.json").write_text(json.dumps({"model": str(model_path.resolve()), "quantize": quantize,
                                                 "reduce_range": reduce_range(quantize),
                                                 "inputs": names, "fused_ops": stats}, indent=1) + "\n")


class OnnxEncoder:
    """Encodes texts with an exported graph; batches are length-sorted like SentenceTransformer.encode."""

    def __init__(self, path: str | Path, tokenizer, max_seq_length: int | None, threads: int = 0):
        ort = require_onnxruntime()
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or os.cpu_count() or 1
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.tokenizer, self.max_seq_length = tokenizer, max_seq_length

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out: np.ndarray | None = None
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            enc = self.tokenizer([texts[i].strip() for i in idx], padding=True, truncation=True,
                                 max_length=self.max_seq_length, return_tensors="np")
            emb = self.session.run(None, {n: enc[n].astype(np.int64) for n in self.inputs})[0]
            if out is None:
                out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
            out[idx] = emb
        return out
