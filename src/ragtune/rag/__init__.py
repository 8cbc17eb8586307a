"""Grounded answering: a knowledge base (chunks in Qdrant + a BM25 side index), hybrid retrieval, an answerer
that cites the passages it used or refuses, an HTTP API and a web page."""
