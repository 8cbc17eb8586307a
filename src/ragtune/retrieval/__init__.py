"""First-stage retrievers behind one interface: `search(queries, k) -> Run`."""

from ragtune.retrieval.base import Retriever, Run, top_k

__all__ = ["Retriever", "Run", "top_k"]
