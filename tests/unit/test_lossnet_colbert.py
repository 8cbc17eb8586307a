"""LossNet on a ColBERT retriever: the target it learns is each pair's MaxSim in-batch contrastive loss, the
retriever and the module train jointly, and candidates are scored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ragtune.filters.lossnet import LossNetFilterConfig
from ragtune.retrieval.colbert import maxsim
from ragtune.retrieval.colbert_model import ColbertModelSettings

ARCH = ColbertModelSettings(dim=16, query_length=8, document_length=32)


def test_colbert_target_is_the_maxsim_cross_entropy_of_each_pair(tiny_bert):
    from ragtune.filters.lossnet_colbert import ColbertLossEncoder

    queries = ["comet tail", "sourdough rise", "violin bow"]
    docs = ["A comet grows a tail near the sun.", "Sourdough rises with wild yeast.", "A violin is played with a bow."]
    enc = ColbertLossEncoder(str(tiny_bert), ARCH, "cpu", init_texts=docs + queries)
    enc.st.eval()
    with torch.no_grad():
        q_out, q_feats = enc(queries, [1, 2], "query")
        d_out, d_feats = enc(docs, [1, 2], "document")
        losses = enc.losses(q_out, d_out, scale=1.0).numpy()
    assert len(q_feats) == len(d_feats) == 2 and q_feats[0].shape == (3, enc.hidden)
    # the same model through sentence-transformers' encode: MaxSim scores, softmax over the batch's documents
    qs = enc.st.encode_query(queries, convert_to_numpy=True)
    ds = enc.st.encode_document(docs, convert_to_numpy=True)
    scores = np.array([[maxsim(q, d) for d in ds] for q in qs])
    expected = -np.diag(scores) + np.log(np.exp(scores).sum(axis=1))
    np.testing.assert_allclose(losses, expected, atol=1e-4)


def test_lossnet_filter_on_colbert_trains_jointly_and_scores_candidates(lossnet_on_tiny, tiny_bert):
    cfg = LossNetFilterConfig(model=str(tiny_bert), retriever="colbert", colbert=ARCH, batch_size=2, epochs=6,
                              keep_fraction=0.5, lr=1e-3, detach_after=1.0)
    f, _ = lossnet_on_tiny(cfg)
    hist = f.selector.history
    assert len(hist) == 6 and all(np.isfinite(h["retriever_loss"]) for h in hist)
    # the retriever learned with the module: its backbone moved away from the weights it was loaded with (the
    # per-epoch loss of 6 tiny epochs is too noisy to compare: it rose in 1 of 3 seeded runs)
    from ragtune.filters.lossnet_colbert import ColbertLossEncoder

    fresh = ColbertLossEncoder(str(tiny_bert), ARCH, "cpu", init_texts=["a comet grows a tail near the sun"] * 4)
    loaded = fresh.st[0].auto_model.state_dict()
    trained = f.selector.encoder.st[0].auto_model.state_dict()
    moved = [k for k in loaded if not torch.equal(loaded[k], trained[k].to(loaded[k].dtype))]
    assert any("encoder.layer" in k for k in moved), moved
    assert type(f.selector.encoder.st).__name__ == "MultiVectorEncoder"


def test_lossnet_scale_defaults_follow_the_retriever_kind(tiny_bert):
    from ragtune.filters.lossnet import LossNetSelector

    assert LossNetSelector(LossNetFilterConfig(model=str(tiny_bert))).scale == 20.0
    colbert = LossNetSelector(LossNetFilterConfig(model=str(tiny_bert), retriever="colbert",
                                                  colbert=ARCH.model_copy(update={"projection_init": "random"})))
    assert colbert.scale == 1.0
    with pytest.raises(ValueError, match="projection_init=pca needs training texts"):
        LossNetSelector(LossNetFilterConfig(model=str(tiny_bert), retriever="colbert",
                                            colbert=ARCH.model_copy(update={"projection_init": "pca"})))
