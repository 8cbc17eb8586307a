"""LossNet filter: active selection by predicted training loss.

Yoo and Kweon, "Learning Loss for Active Learning" (CVPR 2019). A small module reads the
retriever's intermediate features (mean-pooled hidden states of a few layers, for the
query and the document), and is trained jointly with the retriever, on labeled (and
already accepted) pairs, to rank examples by their true contrastive loss with the
pairwise margin ranking loss:

    L_pred = mean over pairs (i, j) of max(0, -sign(l_i - l_j) * (p_i - p_j) + margin)

It then scores every candidate pseudo query; the ones with the highest predicted loss are
those the retriever would learn most from. The extreme top tail can be dropped as likely
noise (a query that contradicts its document also has a high loss).

The retriever is a bi-encoder (cosine in-batch loss) or ColBERT (`retriever: colbert`, the MaxSim in-batch loss;
filters/lossnet_colbert.py), so the loop's LossNet learns the loss of the retriever the loop trains.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from ragtune.config import ConfigModel
from ragtune.data.beir import load_beir
from ragtune.data.records import Doc
from ragtune.filters.base import Candidate, Verdict, load_pseudo_queries, register
from ragtune.models import DEFAULT_ENCODER
from ragtune.retrieval.colbert_model import ColbertModelSettings
from ragtune.retrieval.contrastive import dense_example_losses


class LossNetFilterConfig(ConfigModel):
    name: Literal["lossnet"] = "lossnet"
    model: str = DEFAULT_ENCODER
    """The retriever whose loss is predicted: a sentence-transformers bi-encoder, a ColBERT folder, or (with
    `retriever: colbert`) a plain encoder to build a ColBERT on."""
    retriever: Literal["bi_encoder", "colbert"] = "bi_encoder"
    """bi_encoder: cosine in-batch contrastive loss; colbert: the MaxSim in-batch contrastive loss."""
    colbert: ColbertModelSettings = Field(default_factory=ColbertModelSettings)
    """retriever: colbert on a plain encoder: the ColBERT built on it (as `ragtune train colbert` builds one)."""
    labeled: Path | None = None
    """BEIR folder with the labeled pairs (its `labeled_split` qrels); default: the filter's corpus folder."""
    labeled_split: str = "train"
    accepted: list[Path] = Field(default_factory=list)
    """Pseudo-query folders accepted in earlier rounds, added to the training pairs."""
    layers: list[int] | None = None
    """Hidden-state indices read by the module (0 = embeddings); default: three evenly spaced layers."""
    feature_dim: int = Field(64, ge=1)
    margin: float = 1.0
    weight: float = Field(1.0, ge=0)
    """lambda: weight of the loss-prediction loss against the retriever's own loss."""
    detach_after: float = Field(0.6, ge=0, le=1)
    """Fraction of steps after which the module stops back-propagating into the retriever (as in the paper)."""
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(16, ge=2)
    lr: float = 2e-5
    module_lr: float = 1e-3
    scale: float | None = Field(None, gt=0)
    """Similarity scale of the in-batch contrastive loss; default 20 over cosines (MultipleNegativesRankingLoss's),
    1 over MaxSim sums (the multi-vector loss's)."""
    max_seq_length: int = Field(256, ge=1)
    keep_fraction: float | None = Field(0.5, gt=0, le=1)
    keep_top: int | None = Field(None, ge=1)
    """Keep this many (overrides keep_fraction)."""
    drop_tail: float = Field(0.0, ge=0, lt=1)
    """Fraction of candidates with the very highest predicted loss dropped as likely noise."""
    max_train_pairs: int | None = None
    seed: int = 0
    device: str = "auto"

    @model_validator(mode="after")
    def _even_batch(self) -> LossNetFilterConfig:
        if self.batch_size % 2:
            raise ValueError(f"batch_size={self.batch_size}: the pairwise loss pairs up a batch's halves; "
                             "use an even size")
        return self


class LossNet(nn.Module):
    """One FC+ReLU block per tapped layer (query and document features side by side), concatenated, to a scalar."""

    def __init__(self, hidden: int, n_layers: int, feature_dim: int = 64):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(2 * hidden, feature_dim), nn.ReLU())
                                    for _ in range(n_layers))
        self.head = nn.Linear(n_layers * feature_dim, 1)

    def forward(self, query_feats: list[torch.Tensor], doc_feats: list[torch.Tensor]) -> torch.Tensor:
        parts = [block(torch.cat([q, d], dim=-1)) for block, q, d in zip(self.blocks, query_feats, doc_feats,
                                                                         strict=True)]
        return self.head(torch.cat(parts, dim=-1)).squeeze(-1)


def margin_ranking_loss(pred: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """The paper's loss over the pairs (first half, second half, flipped) of a batch.

    >>> margin_ranking_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0])).item()
    0.0
    >>> margin_ranking_loss(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])).item()
    3.0
    """
    half = pred.shape[0] // 2
    p_i, p_j = pred[:half], pred[half:2 * half].flip(0)
    t_i, t_j = target[:half], target[half:2 * half].flip(0)
    sign = torch.sign(t_i - t_j)
    return torch.clamp(-sign * (p_i - p_j) + margin, min=0).mean()


class Encoder:
    """A sentence-transformers model run through its own modules, also returning pooled hidden states."""

    def __init__(self, model_name: str, max_seq_length: int, device: str):
        from sentence_transformers import SentenceTransformer

        from ragtune.hardware import pick_device
        from ragtune.models import resolve_model

        self.device = pick_device(device)
        self.st = SentenceTransformer(str(resolve_model(model_name)), device=self.device, local_files_only=True)
        self.st.max_seq_length = max_seq_length
        backbone = getattr(self.st[0], "model", None) or self.st[0].auto_model
        backbone.config.output_hidden_states = True
        self.num_hidden = backbone.config.num_hidden_layers
        self.hidden = backbone.config.hidden_size

    def __call__(self, texts: list[str], layers: list[int], task: str = "document"
                 ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = self.st.tokenize(texts)
        features = {k: v.to(self.device) for k, v in features.items() if isinstance(v, torch.Tensor)}
        out = self.st(features)
        mask = features["attention_mask"].unsqueeze(-1).float()
        hidden = out["all_layer_embeddings"]
        pooled = [(hidden[i] * mask).sum(1) / mask.sum(1).clamp(min=1) for i in layers]
        return out["sentence_embedding"], pooled

    @staticmethod
    def losses(q: torch.Tensor, d: torch.Tensor, scale: float) -> torch.Tensor:
        """In-batch contrastive (MNRL) loss of each pair: cross-entropy of its own document among the batch's."""
        return dense_example_losses(q, d, scale)


class LossNetSelector:
    """Trains retriever + LossNet on pairs, then predicts the loss of new (query, document) pairs."""

    def __init__(self, cfg: LossNetFilterConfig, init_texts: list[str] | None = None):
        """`init_texts`: training texts, for a fresh ColBERT's PCA projection."""
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        if cfg.retriever == "colbert":
            from ragtune.filters.lossnet_colbert import ColbertLossEncoder

            self.encoder = ColbertLossEncoder(cfg.model, cfg.colbert, cfg.device, init_texts)
        else:
            self.encoder = Encoder(cfg.model, cfg.max_seq_length, cfg.device)
        self.scale = cfg.scale or (1.0 if cfg.retriever == "colbert" else 20.0)
        n = self.encoder.num_hidden
        self.layers = cfg.layers or sorted({max(1, n // 3), max(1, 2 * n // 3), n})
        bad = [i for i in self.layers if not 0 <= i <= n]
        if bad:
            raise ValueError(f"lossnet layers {bad} out of range: the model has hidden states 0..{n}")
        self.module = LossNet(self.encoder.hidden, len(self.layers), cfg.feature_dim).to(self.encoder.device)
        self.history: list[dict[str, float]] = []

    def fit(self, pairs: list[tuple[str, str]], show_progress: bool = False) -> list[dict[str, float]]:
        from tqdm.auto import tqdm

        cfg = self.cfg
        rng = random.Random(cfg.seed)
        opt = torch.optim.AdamW([{"params": self.encoder.st.parameters(), "lr": cfg.lr},
                                 {"params": self.module.parameters(), "lr": cfg.module_lr}])
        steps_per_epoch = len(pairs) // cfg.batch_size
        if steps_per_epoch == 0:
            raise ValueError(f"LossNet needs at least batch_size={cfg.batch_size} training pairs, got {len(pairs)}")
        total = steps_per_epoch * cfg.epochs
        detach_from = int(cfg.detach_after * total)
        self.encoder.st.train()
        self.module.train()
        bar = tqdm(total=total, desc="lossnet", disable=not show_progress)
        step = 0
        for _ in range(cfg.epochs):
            order = pairs[:]
            rng.shuffle(order)
            for b in range(steps_per_epoch):
                batch = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                q_emb, q_feats = self.encoder([q for q, _ in batch], self.layers, "query")
                d_emb, d_feats = self.encoder([d for _, d in batch], self.layers, "document")
                target = self.encoder.losses(q_emb, d_emb, self.scale)
                if step >= detach_from:
                    q_feats = [f.detach() for f in q_feats]
                    d_feats = [f.detach() for f in d_feats]
                pred = self.module(q_feats, d_feats)
                pred_loss = margin_ranking_loss(pred, target.detach(), cfg.margin)
                loss = target.mean() + cfg.weight * pred_loss
                opt.zero_grad()
                loss.backward()
                opt.step()
                self.history.append({"step": step, "retriever_loss": float(target.detach().mean()),
                                     "lossnet_loss": float(pred_loss.detach())})
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{self.history[-1]['retriever_loss']:.3f}",
                                pred=f"{self.history[-1]['lossnet_loss']:.3f}")
        bar.close()
        return self.history

    @torch.no_grad()
    def predict(self, pairs: list[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
        self.encoder.st.eval()
        self.module.eval()
        out = []
        for s in range(0, len(pairs), batch_size):
            batch = pairs[s:s + batch_size]
            _, q_feats = self.encoder([q for q, _ in batch], self.layers, "query")
            _, d_feats = self.encoder([d for _, d in batch], self.layers, "document")
            out.append(self.module(q_feats, d_feats).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def select_by_loss(scores: np.ndarray, keep_fraction: float | None, keep_top: int | None,
                   drop_tail: float) -> np.ndarray:
    """Boolean mask: drop the top `drop_tail` fraction, then keep the highest remaining predicted losses."""
    n = len(scores)
    order = np.argsort(-scores, kind="stable")
    tail = int(round(drop_tail * n))
    eligible = order[tail:]
    m = keep_top if keep_top is not None else int(round((keep_fraction or 1.0) * n))
    keep = np.zeros(n, dtype=bool)
    keep[eligible[:m]] = True
    return keep


class LossNetFilter:
    name = "lossnet"

    def __init__(self, cfg: LossNetFilterConfig, corpus: dict[str, Doc], corpus_folder: Path | None,
                 show_progress: bool = False):
        self.cfg, self.corpus, self.show_progress = cfg, corpus, show_progress
        self.labeled_folder = cfg.labeled or corpus_folder
        self.selector: LossNetSelector | None = None

    def training_pairs(self) -> list[tuple[str, str]]:
        pairs: list[tuple[str, str]] = []
        if self.labeled_folder is not None:
            ds = load_beir(self.labeled_folder, splits=[self.cfg.labeled_split])
            for qid, docs in ds.qrels[self.cfg.labeled_split].items():
                pairs += [(ds.queries[qid], ds.corpus[d].content) for d, s in docs.items() if s > 0]
        for folder in self.cfg.accepted:
            pairs += [(c.text, self.corpus[c.doc_id].content) for c in load_pseudo_queries(folder).candidates]
        if self.cfg.max_train_pairs and len(pairs) > self.cfg.max_train_pairs:
            pairs = random.Random(self.cfg.seed).sample(pairs, self.cfg.max_train_pairs)
        return pairs

    def __call__(self, candidates: list[Candidate]) -> list[Verdict]:
        if not candidates:
            return []
        pairs = self.training_pairs()
        self.selector = LossNetSelector(self.cfg, init_texts=[t for pair in pairs for t in pair])
        self.selector.fit(pairs, show_progress=self.show_progress)
        scores = self.selector.predict([(c.text, self.corpus[c.doc_id].content) for c in candidates])
        keep = select_by_loss(scores, self.cfg.keep_fraction, self.cfg.keep_top, self.cfg.drop_tail)
        return [Verdict(bool(k), {"lossnet_score": round(float(s), 6)}) for k, s in zip(keep, scores, strict=True)]


@register("lossnet")
def build(cfg: LossNetFilterConfig, corpus: dict[str, Doc], corpus_folder: Path | None = None,
          show_progress: bool = False, **_) -> LossNetFilter:
    return LossNetFilter(cfg, corpus, corpus_folder, show_progress)
