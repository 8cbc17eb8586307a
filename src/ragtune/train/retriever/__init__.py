"""The retriever and reranker trainers (embedding, colbert, reranker, llm_reranker) and their dev slice."""
