"""`ragtune generate` config: which documents, which model, how to sample, where to write."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ragtune.config import ConfigModel
from ragtune.generate.prompts import DEFAULT_INSTRUCTION
from ragtune.models import DEFAULT_GENERATOR


class SamplingConfig(ConfigModel):
    """Decoding parameters, passed to `model.generate` (recorded in provenance.jsonl)."""

    do_sample: bool = True
    temperature: float = Field(0.7, gt=0)
    top_p: float = Field(0.9, gt=0, le=1)
    top_k: int = Field(50, ge=0)
    max_new_tokens: int = Field(48, ge=1)
    min_new_tokens: int = Field(2, ge=0)
    """Suppress end-of-answer for the first tokens (guards against empty queries)."""
    repetition_penalty: float = Field(1.0, gt=0)
    num_beams: int = Field(1, ge=1)
    """Beam search when > 1 (with do_sample=false: the top query_per_document beams)."""


class GenerateSettings(ConfigModel):
    """How to write pseudo queries: everything but the corpus and output folders (the loop's `generate:` overrides)."""

    ALIASES = ("generate",)

    # ---- which documents
    sample_num: int | None = Field(None, ge=1)
    """Documents to sample (seeded); null = every eligible document."""
    unlabeled_corpus_id: Path | None = None
    """File of document ids, one a line or a JSON list (SPTAR's unlabeled_corpus_id.json): generate for exactly these
    (sample_num then samples among them)."""
    exclude_splits: list[str] = Field(default_factory=lambda: ["train"])
    """Skip documents judged in these qrels splits of the corpus folder (they already have real queries)."""
    seed: int = 42

    # ---- model
    model_name_or_path: str = DEFAULT_GENERATOR
    adapter_name_or_path: Path | None = None
    """LoRA adapter from `ragtune train generator`; its tokenizer (and chat template) is used when present."""
    template: str = "auto"
    """Chat template: auto (the adapter's or model's own), default, alpaca, chatml, llama2."""
    trust_remote_code: bool = False
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """auto: bfloat16 on GPUs that support it and on CPUs with native bf16 (AMX, AVX512-BF16; about 3x the fp32
    matmul speed there), else float32. RAGTUNE_CPU_BF16=0 keeps CPUs on float32."""
    device: str = "auto"

    # ---- prompt
    instruction: str = DEFAULT_INSTRUCTION
    """The user turn; `{document}` is replaced by the document (match the `instruction_prefix` of training)."""
    system: str | None = None
    max_doc_tokens: int = Field(320, ge=8)
    """Documents are cut to this many tokens in the prompt."""
    few_shot: int = Field(0, ge=0)
    """k labeled (document, query) examples in the prompt (Promptagator/InPars style): the no-training baseline."""
    few_shot_split: str = "train"
    """qrels split of the corpus folder the examples come from."""
    few_shot_doc_tokens: int = Field(128, ge=8)
    """Example documents are cut to this many tokens."""
    few_shot_file: Path | None = None
    """JSONL of `{document, query}` example pairs to take the `few_shot` examples from instead of the corpus folder's
    judged pairs (the loop's style adaptation writes one from the target collection's example queries)."""

    # ---- output
    query_per_document: int = Field(1, ge=1)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    max_retries: int = Field(3, ge=0)
    """Regenerate empty, duplicate, document-copying and example-copying queries up to this many times, then record
    them failed."""
    copy_min_words: int = Field(8, ge=2)
    """A query is 'copying' when it is a verbatim run of at least this many words of its document."""
    round: int = Field(0, ge=0)
    """Loop round, written into query ids and provenance."""
    query_id_prefix: str = "pq"
    generate_path: Path | None = None
    """Also write the kept queries as a JSON list of {doc_id, query} records (SPTAR's pseudo_query.json); a relative
    path lands in output_dir."""
    overwrite: bool = False
    """Start over when output_dir holds a run with a different config (otherwise that is an error)."""

    # ---- speed
    engine: Literal["transformers", "ctranslate2"] = "transformers"
    """Decoding engine. ctranslate2: the model (base + merged adapter) converted once to CTranslate2 and decoded
    by its C++ engine (`pip install 'ragtune[ct2]'`); same sampling settings, outputs and resume."""
    ct2_compute_type: Literal["float32", "int8"] = "float32"
    """CTranslate2 weights on CPU. int8 decodes about 2x faster than float32 but its queries found their
    document in BM25's top 10 3.7 points less often for SmolLM2-135M (BENCHMARKS.md), so float32 is the default."""
    batch_size: int = Field(16, ge=1)
    """Documents per generate() call (each yields query_per_document sequences)."""
    threads: int = Field(0, ge=0)
    """torch CPU threads; 0 = all cores."""
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> GenerateSettings:
        if "{document}" not in self.instruction:
            raise ValueError('instruction must contain "{document}" where the document goes')
        if self.sampling.num_beams > 1 and not self.sampling.do_sample and \
                self.sampling.num_beams < self.query_per_document:
            raise ValueError(f"beam search returns at most num_beams ({self.sampling.num_beams}) distinct queries; "
                             f"set sampling.num_beams >= query_per_document ({self.query_per_document})")
        if not self.sampling.do_sample and self.sampling.num_beams == 1 and self.query_per_document > 1:
            raise ValueError("greedy decoding (do_sample=false, num_beams=1) writes one query per document; set "
                             "sampling.do_sample=true or sampling.num_beams >= query_per_document")
        return self


class GenerateConfig(GenerateSettings):
    """Write `query_per_document` pseudo queries for sampled documents of a corpus (resumable, batched)."""

    corpus: Path
    """BEIR folder (or its corpus.jsonl)."""
    output_dir: Path
    """BEIR folder written: queries.jsonl, qrels/train.tsv, provenance.jsonl, config.yaml; shards/ for resume."""

    def fingerprint_fields(self) -> dict:
        """What decides the content of the output: a rerun into the same output_dir must agree on these."""
        keep = {"corpus", "sample_num", "unlabeled_corpus_id", "exclude_splits", "seed", "model_name_or_path",
                "adapter_name_or_path", "template", "instruction", "system", "max_doc_tokens", "few_shot",
                "few_shot_split", "few_shot_doc_tokens", "few_shot_file", "query_per_document", "sampling", "round",
                "query_id_prefix", "copy_min_words", "engine", "ct2_compute_type"}
        return self.model_dump(mode="json", include=keep)
