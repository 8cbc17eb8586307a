"""ragtune: domain-adapted retrieval for RAG."""

__version__ = "0.1.0"
