"""First-stage retrievers behind one interface (`search(queries, k) -> Run`), fusion, rerankers (scoring only),
and hard-negative mining."""

from ragtune.retrieval.base import Retriever, Run, top_k

__all__ = ["Retriever", "Run", "top_k"]
