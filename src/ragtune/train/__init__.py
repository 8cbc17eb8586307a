"""Training, by model family over one harness (harness.py: config base, resume, summary, loss plot):
generator/ (the doc -> query generator and the answerer: SFT, reward model, PPO, DPO, GRPO, LoRA export) and
retriever/ (bi-encoder, ColBERT, cross-encoder and LLM rerankers, with their dev slice)."""
