"""Every prompt ragtune writes (prompts.py: chat templates, doc -> query, the answerer's prompt and refusal
phrasings) and batched, resumable, sharded pseudo-query generation (generator.py)."""
