"""Pseudo-query generation: chat templates and prompts (prompts.py), batched resumable generation (generator.py)."""
