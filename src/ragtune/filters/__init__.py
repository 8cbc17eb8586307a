"""Pseudo-query filters: BM25 rank, dense round-trip, LossNet selection, score threshold."""
