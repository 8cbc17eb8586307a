"""The loop's retriever, of either kind (`retriever.kind: bi_encoder | colbert`): its settings, and the stages that
train it, evaluate it, and rank documents with it (difficulty, curriculum, the GRPO reward).

    retriever:                     # in a run config
      kind: colbert                # default bi_encoder
      curriculum: easy_to_hard     # none | easy_to_hard | band | weighted: round k+1 follows round k's difficulties
      dim: 128                     # ... and any `ragtune train colbert` (or `train embedding`) key but the paths

Both kinds learn from the same records: the train pairs plus every kept pseudo query so far, with mined hard
negatives. With a curriculum, round k+1's `curriculum` stage ranks every training query's positive with round
k's retriever (`score_training_queries`); the retriever stage then writes the records easy to hard (the trainer
keeps the order) or with a per-example loss `weight`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import Discriminator, Field, Tag, model_validator

from ragtune.atomic import write_jsonl
from ragtune.config import Band, ConfigModel
from ragtune.data.beir import load_beir, load_corpus, load_qrels, load_queries, qrels_splits, write_beir
from ragtune.data.jsonl import iter_jsonl
from ragtune.data.trec import Run
from ragtune.evaluate.difficulty import CurriculumMode
from ragtune.pipeline.retriever_teacher import TEACHER_KEYS, TeacherSettings
from ragtune.train.retriever.colbert import ColbertSettings
from ragtune.train.retriever.embedding import EmbeddingSettings

Kind = Literal["bi_encoder", "colbert"]
CURRICULUM_FILE = "curriculum.jsonl"


class LoopRetrieverSettings(ConfigModel):
    """What the loop adds to a trainer's settings: the kind and the curriculum."""

    curriculum: CurriculumMode = "none"
    """How round k+1's training follows the difficulties round k's retriever gives every training query: none;
    easy_to_hard (batches in that order); band (only pseudo queries inside `curriculum_band`, easy to hard; the
    labeled pairs always stay); weighted (per-example loss weights peaking at `curriculum_target`). Round 0 has
    no earlier retriever and trains without one."""
    curriculum_band: Band = (0.2, 0.8)
    curriculum_target: float = Field(0.5, ge=0, le=1)
    curriculum_width: float = Field(0.25, gt=0)


class BiEncoderLoopSettings(LoopRetrieverSettings, TeacherSettings, EmbeddingSettings):
    """`retriever.kind: bi_encoder` (the default): `ragtune train embedding` keys but the paths, a teacher for the
    pseudo queries (pipeline/retriever_teacher.py), and which retriever mines the hard negatives."""

    kind: Literal["bi_encoder"] = "bi_encoder"
    mine_with: Literal["miner", "previous_round"] = "miner"
    """Who mines round k's hard negatives: `mining:`'s miner (BM25 by default) in every round, or, from round 1
    on, round k-1's trained retriever (ANCE-style: the negatives the retriever itself now ranks high; `mining:`'s
    rank window and `dense` settings apply, its model is replaced)."""
    init: Literal["encoder", "previous_round"] = "encoder"
    """Where round k's retriever starts: the run's `encoder` in every round, or, from round 1 on, round k-1's
    trained retriever (it trains on the train pairs and every round's kept queries again from there)."""

    @model_validator(mode="after")
    def _teacher_alone(self) -> BiEncoderLoopSettings:
        if self.teacher and self.curriculum != "none":
            raise ValueError(f"teacher and curriculum: {self.curriculum} do not combine (the curriculum orders or "
                             "weights one file of contrastive rows; a teacher adds a second, graded one)")
        if self.teacher and self.mine_with != "miner":
            raise ValueError("teacher and mine_with: previous_round do not combine (the teacher's fusion weight was "
                             "chosen against BM25's ranks, which the teacher's candidates then no longer are)")
        return self


class ColbertLoopSettings(LoopRetrieverSettings, ColbertSettings):
    """`retriever.kind: colbert`: `ragtune train colbert` keys but the paths, and how the corpus is searched."""

    kind: Literal["colbert"] = "colbert"
    index: Literal["flat", "plaid"] = "flat"
    """Evaluation, difficulty and the GRPO reward search the corpus with the exact flat token index, or the
    compressed PLAID-style one (retrieval/colbert_plaid.py; far less memory, near-equal quality)."""


def _kind(value: Any) -> str:
    return value.get("kind", "bi_encoder") if isinstance(value, dict) else getattr(value, "kind", "bi_encoder")


RetrieverSettings = Annotated[Annotated[BiEncoderLoopSettings, Tag("bi_encoder")]
                              | Annotated[ColbertLoopSettings, Tag("colbert")], Discriminator(_kind)]

PREVIOUS_ROUND_KEYS = frozenset({"mine_with", "init"})
LOOP_KEYS = frozenset({"kind", "index", *PREVIOUS_ROUND_KEYS, *LoopRetrieverSettings.model_fields, *TEACHER_KEYS})


def without_curriculum(overrides: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in overrides.items() if k not in LoopRetrieverSettings.model_fields}


def labeled_only(overrides: dict[str, Any]) -> dict[str, Any]:
    """The keys a retriever trained on the train pairs alone depends on: no curriculum, no pseudo-query teacher."""
    return {k: v for k, v in without_curriculum(overrides).items() if k not in TEACHER_KEYS | PREVIOUS_ROUND_KEYS}


def round_overrides(overrides: dict[str, Any], curriculum: bool, previous: bool) -> dict[str, Any]:
    """The `retriever:` keys a round's retriever stage is keyed by: a round without a curriculum stage (round 0)
    leaves out the curriculum's keys, and `mine_with`/`init` count only where an earlier retriever is read."""
    keys = overrides if curriculum else without_curriculum(overrides)
    return {k: v for k, v in keys.items() if k not in PREVIOUS_ROUND_KEYS or (previous and v == "previous_round")}


class RoundPlan(NamedTuple):
    mining: dict[str, Any]
    start: str
    """The weights the round's retriever starts from."""
    reads_previous: bool
    """Whether the stage reads round k-1's retriever (then its key follows that stage's)."""


def round_plan(settings: Any, encoder: str, mining: dict[str, Any], previous: Path | None, dtype: str) -> RoundPlan:
    """What round k's retriever stage takes from round k-1's retriever (`previous`; None in round 0): the hard
    negatives (`mine_with: previous_round`: the dense miner, ranking as the loop evaluates it) and the starting
    weights (`init: previous_round`)."""
    mines = previous is not None and getattr(settings, "mine_with", "miner") == "previous_round"
    warm = previous is not None and getattr(settings, "init", "encoder") == "previous_round"
    if mines:
        mining = mining | {"miner": "dense", "dense": {**mining.get("dense", {}), "model": str(previous),
                                                      "dtype": dtype}}
    return RoundPlan(mining, str(previous) if warm else encoder, mines or warm)


def trainer_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """The keys of a `retriever:` section that go to the trainer (the loop's own keys removed)."""
    return {k: v for k, v in overrides.items() if k not in LOOP_KEYS}


# ---------------------------------------------------------------- training


def train(data: Path, pseudo: list[Path], out: Path, model: str, settings: RetrieverSettings,
          overrides: dict[str, Any], mining: dict[str, Any], curriculum: Path | None = None,
          exclude_docs: set[str] | frozenset[str] = frozenset(), dev: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train pairs (if any) + kept pseudo queries -> {query, pos, neg} with mined negatives (in curriculum order or
    weighted, when a curriculum file is given) -> a fine-tuned bi-encoder or ColBERT in out/model.

    Without train qrels (BEIR nq, arguana...) the pseudo queries are all there is, and there is no labeled dev
    slice to select a checkpoint on: the last one is kept, unless `dev` is given (the loop's guard passes its
    held-out pseudo queries). Pseudo queries of `exclude_docs` (the guard's documents) never reach training.
    """
    from ragtune.config import build_config
    from ragtune.retrieval.mining import BeirEmbeddingConfig, beir_to_embedding

    labeled = "train" in qrels_splits(data)
    ds = load_beir(data, splits=["train"] if labeled else [])
    queries = dict(ds.split_queries("train")) if labeled else {}
    qrels = {q: dict(d) for q, d in ds.qrels["train"].items()} if labeled else {}
    n_train, n_pseudo, n_held = len(qrels), 0, 0
    for folder in pseudo:
        pq = load_queries(folder / "queries.jsonl")
        for qid, docs in load_qrels(folder / "qrels" / "train.tsv").items():
            if exclude_docs and set(docs) & exclude_docs:
                n_held += 1
                continue
            queries[qid], qrels[qid] = pq[qid], docs
            n_pseudo += 1
    if not qrels:
        raise ValueError(f"{data}: no train qrels and no kept pseudo queries: nothing to train the retriever on "
                         "(loosen the filters or generate more queries)")
    mix = out / "mix"
    write_beir(mix, ds.corpus.values(), queries, {"train": qrels})
    beir_to_embedding(build_config(BeirEmbeddingConfig, {"data": str(mix), "split": "train",
                                                                "out": str(out / "records"), **mining}, "mining"))
    records = out / "records" / "embedding.jsonl"
    train_data, taught = [str(records)], {}
    if getattr(settings, "teacher", None) and n_pseudo:
        train_data, taught = _with_teacher(mix, records, set(ds.qrels["train"]) if labeled else set(), out,
                                           settings, mining, model, overrides)
    plan: dict[str, Any] = {"curriculum": "none"}
    if curriculum is not None and settings.curriculum != "none":
        plan = apply_curriculum(records, out / "records" / "mined_negatives.jsonl", curriculum, settings,
                                labeled=set(ds.qrels["train"]) if labeled else set())
    # the dev slice is carved from the REAL train queries only (never pseudo, never test)
    dev = ({"data": str(data), "split": "train", "fraction": 0.1, "max_queries": 50} if labeled else {}) \
        | overrides.get("dev", {}) | (dev or {})
    from ragtune.train.harness import resume_if_checkpointed

    keys = {"model_name_or_path": model, "output_dir": str(out / "model"), "train_data": train_data,
            **resume_if_checkpointed(out / "model"), **trainer_overrides(overrides), "dev": dev,
            **taught.pop("keys", {})}
    if plan.get("ordered"):
        keys["example_order"] = "file"
    if settings.kind == "colbert":
        from ragtune.train.retriever.colbert import ColbertTrainConfig, train_colbert

        summary = train_colbert(build_config(ColbertTrainConfig, keys, "retriever"))
    else:
        from ragtune.train.retriever.embedding import EmbeddingTrainConfig, train_embedding

        summary = train_embedding(build_config(EmbeddingTrainConfig, keys, "retriever"))
    return {"kind": settings.kind, "train_queries": n_train, "pseudo_queries": n_pseudo,
            "held_out_pseudo_queries": n_held, **plan, **taught,
            **{k: v for k, v in summary.items() if isinstance(v, (int, float, str)) or k == "wise_ft_dev"}}


def _with_teacher(mix: Path, records: Path, labeled: set[str], out: Path, settings: TeacherSettings,
                  mining: dict[str, Any], model: str, overrides: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The train files when a teacher grades the pseudo queries: the train pairs' contrastive rows (if any), then
    the graded rows; and what the summary reports, with the trainer keys under "keys"."""
    from ragtune.pipeline import retriever_teacher as rt

    graded, info = rt.graded_rows(mix, set(load_qrels(mix / "qrels" / "train.tsv")) - labeled, out, settings,
                                  mining)
    files = [str(graded)]
    if labeled:
        info["contrastive_rows"] = rt.split_labeled(records, labeled, out / "labeled.jsonl")
        files.insert(0, str(out / "labeled.jsonl"))
    keys = rt.distill_keys(graded, model, overrides)
    return files, {**info, "teacher": settings.teacher, "teacher_fusion": settings.teacher_fusion,
                   "teacher_scale": keys.get("teacher_scale", overrides.get("teacher_scale")), "keys": keys}


def apply_curriculum(records: Path, mined: Path, curriculum: Path, settings: LoopRetrieverSettings,
                     labeled: set[str]) -> dict[str, Any]:
    """Rewrite `records` in the plan's order, keeping its examples, with `weight` when weighted."""
    from ragtune.data.formats import read_records, record_row
    from ragtune.evaluate.difficulty import Difficulty, plan_curriculum

    rows = [record_row(r) for r in read_records(records, "embedding")]
    qids = [row["query_id"] for _, row in iter_jsonl(mined)]
    if len(qids) != len(rows):
        raise ValueError(f"{mined}: {len(qids)} rows for the {len(rows)} records of {records}")
    known = {row["query_id"]: row["difficulty"] for _, row in iter_jsonl(curriculum)}
    diffs = {q: Difficulty(q, None, None, 0.0, known[q]) for q in qids if q in known}
    plan = plan_curriculum(diffs, settings.curriculum, tuple(settings.curriculum_band), settings.curriculum_target,
                           settings.curriculum_width, keep=frozenset(labeled))
    by_id = dict(zip(qids, rows, strict=True))
    unscored = [q for q in qids if q not in known]  # should not happen: the curriculum stage scores every query
    order = [*plan.ids, *unscored] if settings.curriculum != "band" else [*plan.ids, *(q for q in unscored
                                                                                           if q in labeled)]
    out = [by_id[q] | ({"weight": round(plan.weights.get(q, 1.0), 6)} if plan.weights is not None else {})
           for q in order]
    write_jsonl(records, out)
    weights = [r["weight"] for r in out if "weight" in r]
    return {"curriculum": settings.curriculum, "ordered": plan.ordered, "curriculum_examples": len(out),
            "curriculum_dropped": len(rows) - len(out), "unscored": len(unscored),
            **({"weight_min": min(weights), "weight_max": max(weights)} if weights else {})}


# ---------------------------------------------------------------- ranking with the trained retriever


def search(data: Path, model: Path | str, kind: Kind, queries: dict[str, str], depth: int = 100,
           index: str = "flat", dtype: str = "float32") -> Run:
    """Rank the corpus for `queries` with the trained retriever (the bi-encoder's corpus embeddings are cached)."""
    from ragtune.retrieval.factory import index_trained

    r = index_trained(kind, str(model), load_corpus(data / "corpus.jsonl").values(), dtype, index)
    return r.search(queries, k=depth, show_progress=True)  # thousands of pseudo queries: minutes with ColBERT


def evaluate(data: Path, model: Path | str, kind: Kind, out: Path, split: str, metrics: list[str],
             baselines: dict[str, Path], index: str = "flat", dtype: str = "float32") -> dict[str, Any]:
    """The retriever on the test split, with paired t-tests against each of `baselines` (name -> run.trec), Holm-
    adjusted over the family of every metric against every baseline."""
    from ragtune.evaluate.multiple_testing import holm_adjusted
    from ragtune.evaluate.retrieval_eval import CompareConfig, EvalConfig, run_compare, run_eval
    from ragtune.retrieval.factory import trained_settings

    info = run_eval(EvalConfig(data=data, split=split, metrics=metrics, out=out, show_progress=True,
                               **trained_settings(kind, str(model), dtype, index)))
    result: dict[str, Any] = {"kind": kind, "metrics": info["metrics"]}
    for name, run in baselines.items():
        cmp = run_compare(CompareConfig(run_a=run, run_b=out / "run.trec", data=data, split=split, metrics=metrics))
        result[f"vs_{name}"] = {m: {"delta": r["delta"], "p_value": r["p_value"]} for m, r in cmp["metrics"].items()}
    family = [row for key, rows in result.items() if key.startswith("vs_") for row in rows.values()]
    for row, p_holm in zip(family, holm_adjusted([row["p_value"] for row in family]), strict=True):
        row["p_holm"] = p_holm  # the report's table: every metric against every baseline is one family
    result["comparisons"] = sum(row["p_value"] == row["p_value"] for row in family)  # NaN (no variance) not counted
    return result


def difficulty(data: Path, queries: Path, model: Path | str, kind: Kind, out: Path, depth: int = 100,
               temperature: float = 0.1, index: str = "flat", dtype: str = "float32",
               provenance: Path | None = None) -> dict[str, Any]:
    """Score every generated pseudo query (kept or not) by the trained retriever's rank of its source document;
    the rows written are `provenance`'s (the filter stage's, with each query's verdict) when given, else the
    generation's."""
    from ragtune.evaluate.difficulty import score_difficulty
    from ragtune.filters.base import load_pseudo_queries

    pseudo = load_pseudo_queries(queries)
    if provenance is not None:
        pseudo.provenance = [row for _, row in iter_jsonl(provenance)]
    run = search(data, model, kind, {c.query_id: c.text for c in pseudo.candidates}, depth, index, dtype)
    diff = score_difficulty(run, {c.query_id: c.doc_id for c in pseudo.candidates}, depth=depth,
                            temperature=temperature)
    rows = [{**row, "difficulty": diff[row["query_id"]].as_dict()} if row["query_id"] in diff else row
            for row in pseudo.provenance]
    write_jsonl(out / "provenance.jsonl", rows)
    values = [d.difficulty for d in diff.values()]
    return {"kind": kind, "queries": len(values), "mean_difficulty": sum(values) / max(1, len(values)),
            "rank1_fraction": sum(d.rank == 1 for d in diff.values()) / max(1, len(values))}


def score_training_queries(data: Path, pseudo: list[Path], model: Path | str, kind: Kind, out: Path,
                           depth: int = 100, temperature: float = 0.1, index: str = "flat") -> dict[str, Any]:
    """The curriculum stage: the difficulty, under an earlier round's retriever, of every query the next retriever
    trains on (labeled train queries: their best-ranked positive; kept pseudo queries: their source)."""
    from ragtune.evaluate.difficulty import score_difficulty

    texts: dict[str, str] = {}
    pairs: dict[str, tuple[str, str]] = {}  # "qid\tdoc" -> (qid, doc)
    if "train" in qrels_splits(data):
        ds = load_beir(data, splits=["train"])
        for q, docs in ds.qrels["train"].items():
            texts[q] = ds.queries[q]
            pairs |= {f"{q}\t{d}": (q, d) for d, s in docs.items() if s > 0}
    for folder in pseudo:
        pq = load_queries(folder / "queries.jsonl")
        for q, docs in load_qrels(folder / "qrels" / "train.tsv").items():
            texts[q] = pq[q]
            pairs |= {f"{q}\t{d}": (q, d) for d in docs}
    run = search(data, model, kind, texts, depth, index)
    diff = score_difficulty({key: run.get(q, {}) for key, (q, _) in pairs.items()},
                            {key: d for key, (_, d) in pairs.items()}, depth=depth, temperature=temperature)
    best: dict[str, Any] = {}
    for key, (q, _) in pairs.items():
        if q not in best or diff[key].difficulty < best[q].difficulty:
            best[q] = diff[key]
    write_jsonl(out / CURRICULUM_FILE, ({"query_id": q, "difficulty": d.difficulty, "rank": d.rank}
                                        for q, d in sorted(best.items())))
    values = [d.difficulty for d in best.values()]
    return {"kind": kind, "queries": len(values), "mean_difficulty": sum(values) / max(1, len(values))}
