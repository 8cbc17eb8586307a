"""The commands that are only `[CONFIG] key=value... --set` -> one library function -> one printer (cli.py builds
them): (group "" or "train", name, help, "module:ConfigClass", "module:function", printer name in cli_tables)."""

PLAIN_COMMANDS: list[tuple[str, str, str, str, str, str]] = [
    ("", "filter", "Filter pseudo queries (BM25 rank, dense round-trip, LossNet, score) and write the yield report.",
     "ragtune.filters.run:FilterConfig", "ragtune.filters.run:run_filter", "filtered"),
    ("", "generate", "Write pseudo queries for corpus documents (resumable): `ragtune generate configs/generate.yaml`.",
     "ragtune.generate.config:GenerateConfig", "ragtune.generate.generator:generate_queries", "generated"),
    ("", "export", "Merge a LoRA adapter into its base, save and verify it: `ragtune export adapter_name_or_path=D "
     "export_dir=E`.", "ragtune.train.generator.export:ExportConfig", "ragtune.train.generator.export:export_merged",
     "exported"),
    ("train", "embedding", "Fine-tune a bi-encoder (pairs, hard negatives, score or vector distillation; "
     "Matryoshka): `ragtune train embedding configs/scifact-embedding.yaml`.",
     "ragtune.train.retriever.embedding:EmbeddingTrainConfig", "ragtune.train.retriever.embedding:train_embedding",
     "embedding_trained"),
    ("train", "colbert", "Train a late-interaction (ColBERT) model: `ragtune train colbert "
     "configs/scifact-colbert.yaml`.", "ragtune.train.retriever.colbert:ColbertTrainConfig",
     "ragtune.train.retriever.colbert:train_colbert", "colbert_trained"),
    ("train", "reranker", "Train a cross-encoder or LLM reranker: `ragtune train reranker "
     "configs/scifact-reranker.yaml`.", "ragtune.train.retriever.reranker_config:RerankerTrainConfig",
     "ragtune.train.retriever.reranker:train_reranker", "reranker_trained"),
    ("train", "mine", "Mine hard negatives from a BEIR split (BM25 or dense, rank window, optional reranker "
     "filter): `ragtune train mine data=DIR out=DIR neg_start=10 neg_end=100`.", "ragtune.retrieval.mining:MineConfig",
     "ragtune.retrieval.mining:mine", "mined"),
    ("train", "refusal-probe", "Fit the answerer's refusal probe on its hidden states: `ragtune train refusal-probe "
     "data=TRAIN.meta.jsonl dev=DEV.meta.jsonl answerer.adapter=A out=P`, then `answerer.refusal_probe=P`.",
     "ragtune.rag.refusal_probe_train:RefusalProbeConfig", "ragtune.rag.refusal_probe_train:train_refusal_probe",
     "probe_trained"),
    ("train", "refusal-verifier", "Train an answerability verifier (a cross-encoder) on the converter's records: "
     "`ragtune train refusal-verifier data=TRAIN.meta.jsonl out=V`, then `train refusal-probe verifier=V`.",
     "ragtune.rag.refusal_verifier_train:RefusalVerifierConfig",
     "ragtune.rag.refusal_verifier_train:train_refusal_verifier",
     "verifier_trained"),
]
