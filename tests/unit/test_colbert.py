"""ColBERT: MaxSim scoring, the multi-vector model ragtune builds and trains, the token index, eval wiring."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.config import load_config
from ragtune.data.records import Doc
from ragtune.retrieval.colbert import ColbertConfig, ColbertRetriever, maxsim, maxsim_many
from ragtune.train.retriever.colbert import ColbertTrainConfig, train_colbert


def _naive_maxsim(q: np.ndarray, d: np.ndarray) -> float:
    total = 0.0
    for i in range(len(q)):
        best = -np.inf
        for j in range(len(d)):
            best = max(best, float(sum(q[i, k] * d[j, k] for k in range(q.shape[1]))))
        total += best
    return total


def test_maxsim_equals_a_naive_double_loop_and_sentence_transformers():
    import torch
    from sentence_transformers.util.similarity import maxsim as st_maxsim

    rng = np.random.default_rng(0)
    q = rng.normal(size=(5, 8)).astype(np.float32)
    docs = [rng.normal(size=(n, 8)).astype(np.float32) for n in (3, 7, 1)]
    naive = [_naive_maxsim(q, d) for d in docs]
    assert [maxsim(q, d) for d in docs] == pytest.approx(naive, abs=1e-5)
    offsets = np.cumsum([0] + [len(d) for d in docs])
    assert maxsim_many(q, np.concatenate(docs), offsets, [2, 0, 1]).tolist() == pytest.approx(
        [naive[2], naive[0], naive[1]], abs=1e-5)
    ref = st_maxsim(torch.tensor(q), [torch.tensor(d) for d in docs])
    assert ref.view(-1).tolist() == pytest.approx(naive, abs=1e-4)


@pytest.mark.parametrize("name", ["maxsim", "meanmaxsim"])
def test_the_losses_scorer_is_the_one_they_take_from_the_model(name):
    """ragtune hands the multi-vector losses their scorer (the wrapped model under DDP has no `similarity`);
    it scores as the model's own similarity does, in-batch and for distillation."""
    from functools import partial

    import torch
    from sentence_transformers.multi_vector_encoder.scoring.colbert import _colbert_kd_scores, _colbert_scores
    from sentence_transformers.util.similarity import SimilarityFunction

    from ragtune.train.retriever.colbert import _scorer

    class Model:  # what the losses read of a MultiVectorEncoder
        similarity_fn_name = name
        similarity = staticmethod(SimilarityFunction.to_similarity_fn(name))
        similarity_pairwise = staticmethod(SimilarityFunction.to_similarity_pairwise_fn(name))

    g = torch.Generator().manual_seed(0)
    q, d = torch.randn(3, 5, 8, generator=g), torch.randn(3, 2, 7, 8, generator=g)
    qm, dm = torch.rand(3, 5, generator=g) > 0.3, torch.rand(3, 2, 7, generator=g) > 0.3
    qm[:, 0], dm[..., 0] = True, True
    masks = {"queries_mask": qm, "documents_mask": dm}
    torch.testing.assert_close(_scorer(Model, distill=False)(q, d, **masks),
                               partial(_colbert_scores, Model.similarity)(q, d, **masks))
    torch.testing.assert_close(_scorer(Model, distill=True)(q, d, **masks),
                               partial(_colbert_kd_scores, Model.similarity_pairwise)(q, d, **masks))


@pytest.fixture(scope="module")
def colbert(tmp_path_factory):
    """A tiny ColBERT trained on the topic toy task (hard negatives, MNRL)."""
    from tiny_bert import build_tiny_bert, toy_topic_rows, write_jsonl

    root = tmp_path_factory.mktemp("colbert")
    encoder = build_tiny_bert(root / "enc", max_positions=64)
    rows = toy_topic_rows(40)
    data = write_jsonl(root / "train.jsonl", [{k: r[k] for k in ("query", "pos", "neg")} for r in rows])
    cfg = load_config(ColbertTrainConfig, None, [
        f"output_dir={root / 'model'}", f"train_data={data}", f"model_name_or_path={encoder}", "dim=16",
        "query_length=8", "document_length=16", "per_device_train_batch_size=8", "learning_rate=3e-3",
        "num_train_epochs=4", "warmup_ratio=0", "logging_steps=1", "threads=2", "plot_loss=false"])
    from conftest import record_trainer_runs

    with pytest.MonkeyPatch.context() as mp:
        runs = record_trainer_runs(mp)
        summary = train_colbert(cfg)
    [(untrained, trained, _)] = runs
    return cfg, summary, rows, untrained, trained


def test_colbert_trains_as_a_sentence_transformers_module_set(colbert):
    from sentence_transformers import MultiVectorEncoder

    cfg, summary, _, untrained, trained = colbert
    # observed: 2.7-2.8 -> 1.85-1.92 (ratio 0.66-0.70) over the toy run; 0.8 leaves room for thread nondeterminism
    assert summary["loss"] == "mnrl" and summary["last_logged_loss"] < 0.8 * summary["first_logged_loss"]
    model = MultiVectorEncoder(str(cfg.output_dir), device="cpu")
    assert [type(m).__name__ for m in model] == ["Transformer", "Dense", "MultiVectorMask", "Normalize"]
    assert model.prompts == {"query": "[unused0] ", "document": "[unused1] "}
    q = model.encode_query(["star"], convert_to_numpy=True)[0]
    d = model.encode_document(["star planet orbit"], convert_to_numpy=True)[0]
    assert q.shape == (8, 16)                                      # padded with [MASK] to query_length
    assert np.allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)  # normalized token embeddings
    # the folder holds the model that was trained, and training moved it
    in_memory = trained.encode_query(["star"], convert_to_numpy=True)[0]
    np.testing.assert_allclose(q, in_memory, atol=1e-5)
    assert np.abs(in_memory - untrained.encode_query(["star"], convert_to_numpy=True)[0]).max() > 1e-3


def test_index_search_matches_exact_maxsim_and_survives_save_load(colbert, tmp_path):
    cfg, _, rows, _, _ = colbert
    docs = [Doc(_id=f"d{i}", text=r["pos"][0]) for i, r in enumerate(rows)]
    queries = {f"q{i}": r["query"] for i, r in enumerate(rows[:10])}
    retriever = ColbertRetriever(ColbertConfig(model=str(cfg.output_dir), dtype="float32", candidate_tokens=1000))
    retriever.index(docs)
    run = retriever.search(queries, k=5)
    qembs = retriever.encode_queries(list(queries.values()))
    for (qid, q) in zip(queries, qembs, strict=True):
        exact = {d.id: maxsim(q, retriever.embeddings[retriever.offsets[i]:retriever.offsets[i + 1]])
                 for i, d in enumerate(docs)}
        best = sorted(exact, key=exact.get, reverse=True)[:5]
        assert list(run[qid]) == best
        assert run[qid][best[0]] == pytest.approx(exact[best[0]], abs=1e-4)
    hits = sum(int(max(run[q], key=run[q].get)[1:]) % 5 == int(q[1:]) % 5 for q in queries)
    assert hits >= 7  # the trained model finds a passage of the query's topic
    retriever.save(tmp_path / "index")
    loaded = ColbertRetriever.load(tmp_path / "index", model=retriever.model)
    assert loaded.search(queries, k=5) == run
    cheap = retriever.rerank({q: {d: 1.0 for d in run[q]} for q in queries}, queries,
                             {d.id: d.content for d in docs}, top=5)
    assert {q: sorted(cheap[q], key=cheap[q].get) for q in queries} == \
        {q: sorted(run[q], key=run[q].get) for q in queries}


def test_candidates_of_many_queries_searched_together_equal_one_query_at_a_time(colbert):
    cfg, _, rows, _, _ = colbert
    retriever = ColbertRetriever(ColbertConfig(model=str(cfg.output_dir), dtype="float32", candidate_tokens=7))
    retriever.index([Doc(_id=f"d{i}", text=r["pos"][0]) for i, r in enumerate(rows)])
    qembs = retriever.encode_queries([r["query"] for r in rows])
    one_by_one = []
    for q in qembs:  # the per-query search the batched one replaced
        _, idx = retriever._index.search(np.ascontiguousarray(q, dtype=np.float32), 7)
        uniq, counts = np.unique(retriever.token_doc[idx[idx >= 0]], return_counts=True)
        one_by_one.append(uniq[np.argsort(-counts, kind="stable")].tolist())
    assert len({len(c) for c in one_by_one}) > 1  # queries reach different numbers of documents
    for chunk in (len(qembs[0]), 3 * len(qembs[0]) + 1, 4096):  # one query, three, all per faiss call
        assert retriever.candidates_many(qembs, chunk_tokens=chunk) == one_by_one


def test_float16_storage_halves_memory_and_keeps_the_ranking(colbert):
    cfg, _, rows, _, _ = colbert
    docs = [Doc(_id=f"d{i}", text=r["pos"][0]) for i, r in enumerate(rows)]
    queries = {f"q{i}": r["query"] for i, r in enumerate(rows[:5])}
    full = ColbertRetriever(ColbertConfig(model=str(cfg.output_dir), dtype="float32"))
    half = ColbertRetriever(ColbertConfig(model=str(cfg.output_dir), dtype="float16"), model=full.model)
    full.index(docs)
    half.index(docs)
    assert half.embeddings.nbytes * 2 == full.embeddings.nbytes
    a, b = full.search(queries, k=3), half.search(queries, k=3)
    for q in queries:  # float16 shifts MaxSim sums (~7) by ~1e-2: near-ties may swap, clear leads may not
        shared = set(a[q]) & set(b[q])
        assert len(shared) >= 2
        assert all(b[q][d] == pytest.approx(a[q][d], rel=5e-3) for d in shared)
        top = sorted(a[q].values(), reverse=True)
        if top[0] - top[1] > 0.05:
            assert max(a[q], key=a[q].get) == max(b[q], key=b[q].get)


def test_eval_with_colbert_retriever_and_a_reranker_on_top(colbert, tiny_beir, tmp_path):
    from ragtune.evaluate.retrieval_eval import EvalConfig, run_eval

    cfg, _, _, _, _ = colbert
    info = run_eval(EvalConfig(data=tiny_beir, retriever="colbert", colbert=ColbertConfig(model=str(cfg.output_dir)),
                               out=tmp_path / "eval", k=6, show_progress=False))
    assert info["retriever"].startswith("colbert:") and info["num_queries"] == 3
    assert (tmp_path / "eval" / "run.trec").is_file()


@pytest.mark.parametrize("rescore", ["decompress", "full"])
def test_plaid_index_agrees_with_the_flat_one_and_round_trips(colbert, rescore, tmp_path):
    from ragtune.retrieval.colbert_plaid import PlaidSettings

    cfg, _, rows, _, _ = colbert
    docs = [Doc(_id=f"d{i}", text=r["pos"][0]) for i, r in enumerate(rows)]
    queries = {f"q{i}": r["query"] for i, r in enumerate(rows[:10])}
    flat = ColbertRetriever(ColbertConfig(model=str(cfg.output_dir), dtype="float32", candidate_tokens=1000))
    flat.index(docs)
    plaid_cfg = PlaidSettings(centroids=16, pq_m=8, nprobe=16, ndocs=len(docs), centroid_score_threshold=None,
                              rescore=rescore, train_tokens=256)
    plaid = ColbertRetriever(ColbertConfig(model=str(cfg.output_dir), dtype="float32", index="plaid",
                                           plaid=plaid_cfg), model=flat.model)
    plaid.index(docs)
    assert (plaid.embeddings is None) == (rescore == "decompress")  # decompress keeps no full vector in RAM
    a, b = flat.search(queries, k=5), plaid.search(queries, k=5)
    if rescore == "full":  # every document probed and re-scored from the same vectors: the exact ranking
        assert {q: list(a[q]) for q in a} == {q: list(b[q]) for q in b}
    else:
        assert sum(next(iter(a[q])) == next(iter(b[q])) for q in queries) >= 8
    plaid.save(tmp_path / "idx")
    assert (tmp_path / "idx" / "token_embeddings.npy").exists() == (rescore == "full")
    loaded = ColbertRetriever.load(tmp_path / "idx", model=flat.model)
    assert loaded.search(queries, k=5) == b
    if rescore == "full":
        assert isinstance(loaded.embeddings, np.memmap)  # re-scored from disk, not RAM


def test_corpus_token_embeddings_are_cached_per_model_and_corpus(colbert, monkeypatch):
    cfg, _, rows, _, _ = colbert
    docs = [Doc(_id=f"d{i}", text=r["pos"][0]) for i, r in enumerate(rows[:12])]
    first = ColbertRetriever(ColbertConfig(model=str(cfg.output_dir)))
    first.index(docs)
    again = ColbertRetriever(ColbertConfig(model=str(cfg.output_dir)))
    monkeypatch.setattr(again, "encode_documents", lambda *a, **k: pytest.fail("re-encoded a cached corpus"))
    again.index(docs)
    np.testing.assert_array_equal(again.embeddings, first.embeddings)
    other = ColbertRetriever(ColbertConfig(model=str(cfg.output_dir)))
    calls = []
    monkeypatch.setattr(other, "encode_documents", lambda texts, **k: calls.append(texts) or
                        first.encode_documents(texts))
    other.index(docs[:11])  # another corpus: encoded
    assert len(calls) == 1
