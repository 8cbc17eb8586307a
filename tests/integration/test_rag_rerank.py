"""The optional rerank step of `ragtune rag ask`: a (tiny, random) cross-encoder re-orders the fused candidates."""

from __future__ import annotations

from rag_kit import ANSWERABLE, ask_config, shared_parts


def test_reranker_reorders_fused_candidates_by_its_own_scores(tmp_path, tmp_path_factory, tiny_bert, tiny_lm):
    from sentence_transformers import CrossEncoder

    from ragtune.rag.ask import RagPipeline
    from ragtune.retrieval.rerank import load_reranker

    kb, model = shared_parts(tmp_path_factory, tiny_bert, tiny_lm)
    ce = tmp_path / "ce"
    CrossEncoder(str(tiny_bert), num_labels=1, max_length=64, device="cpu").save(str(ce))

    with RagPipeline.open(ask_config(kb, model, "retrieve.top_k=3", "retrieve.rerank_top=5")) as plain:
        fused = plain.retrieve(ANSWERABLE, top_k=5)
    with RagPipeline.open(ask_config(kb, model, f"retrieve.rerank={ce}", "retrieve.top_k=3",
                                     "retrieve.rerank_top=5")) as rag:
        hits = rag.retrieve(ANSWERABLE)
        result = rag.ask(ANSWERABLE)

    # the same scores, computed independently on the fused candidates, decide the order
    scores = load_reranker(ce, device="cpu").compute_score([(ANSWERABLE, h.chunk["text"]) for h in fused])
    expected = sorted(zip(fused, scores, strict=True), key=lambda p: -p[1])[:3]
    assert [h.chunk["chunk_id"] for h in hits] == [h.chunk["chunk_id"] for h, _ in expected]
    assert [round(h.score, 5) for h in hits] == [round(float(s), 5) for _, s in expected]
    # the answer cites only reranked contexts
    assert {c["chunk_id"] for c in result["citations"]} <= {h.chunk["chunk_id"] for h in hits}
    assert len(result["contexts"]) == 3
