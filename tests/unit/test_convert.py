import json
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from qa_kit import squad_file
from ragtune.cli import app
from ragtune.config import ConfigError, load_config
from ragtune.data.beir import load_corpus, write_beir
from ragtune.data.dataset_info import read_dataset_info
from ragtune.data.errors import DataFormatError
from ragtune.data.formats import read_records
from ragtune.data.validate import validate
from ragtune.generate.prompts import CANONICAL_REFUSAL, REFUSALS
from ragtune.pipeline.convert import run_convert
from ragtune.rag.answerer_data import SquadSFTConfig
from ragtune.retrieval.bm25 import BM25Retriever
from ragtune.retrieval.mining import BeirEmbeddingConfig

runner = CliRunner()
VOCAB = ["cell", "protein", "gene", "enzyme", "membrane", "receptor", "virus", "tissue", "mutation", "signal",
         "pathway", "kinase"]


@pytest.fixture
def beir40(tmp_path) -> Path:
    """40 documents sharing a vocabulary (so BM25 ranks most of them), 10 queries with a unique word each."""
    rng = random.Random(1)
    docs = [{"_id": f"d{i:02d}", "title": f"Doc {i}",
             "text": " ".join(rng.sample(VOCAB, 5)) + f" marker{i}x " + " ".join(rng.sample(VOCAB, 3))}
            for i in range(40)]
    queries = {f"q{i}": " ".join(rng.sample(VOCAB, 4)) + f" marker{i}x" for i in range(10)}
    train = {f"q{i}": {f"d{i:02d}": 1} for i in range(8)}
    train["q0"]["d10"] = 2  # a graded second positive
    write_beir(tmp_path / "b40", docs, queries, {"train": train, "test": {"q8": {"d08": 1}, "q9": {"d09": 1}}})
    return tmp_path / "b40"


def bm25_ranking(folder: Path, k: int) -> dict[str, list[str]]:
    from ragtune.data.beir import load_queries

    r = BM25Retriever()
    r.index(load_corpus(folder).values())
    run = r.search(load_queries(folder), k=k)
    return {q: [d for d, _ in sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))] for q, docs in run.items()}


def mined(out: Path) -> dict[str, dict]:
    return {row["query_id"]: row for row in map(json.loads, (out / "mined_negatives.jsonl").read_text().splitlines())}


def test_embedding_negatives_come_from_the_rank_window_and_never_are_positives(beir40, tmp_path):
    out = tmp_path / "emb"
    cfg = BeirEmbeddingConfig(data=beir40, out=out, neg_start=3, neg_end=20, neg_per_query=5, seed=7)
    res = run_convert("beir-embedding", None, [f"data={beir40}", f"out={out}", "neg_start=3", "neg_end=20",
                                                "neg_per_query=5", "seed=7"])
    assert res.counts["records"] == 8 and res.counts["queries without negatives"] == 0
    ranking = bm25_ranking(beir40, 20)
    corpus = load_corpus(beir40)
    records = list(read_records(out / "embedding.jsonl", "embedding"))
    rows = mined(out)
    for rec, (qid, row) in zip(records, rows.items(), strict=True):
        assert len(row["negatives"]) == 5
        assert not set(row["negatives"]) & set(row["positives"])
        for doc, rank in zip(row["negatives"], row["ranks"], strict=True):
            assert 4 <= rank <= 20 and ranking[qid][rank - 1] == doc  # 0-based slice [3, 20) = ranks 4..20
        assert rec.neg == [corpus[d].content for d in row["negatives"]]
        assert rec.pos == [corpus[d].content for d in row["positives"]]
    assert rows["q0"]["positives"] == ["d10", "d00"]  # graded: best first
    assert yaml.safe_load((out / "beir-embedding.config.yaml").read_text())["neg_start"] == 3
    assert load_config(BeirEmbeddingConfig, out / "beir-embedding.config.yaml") == cfg  # the dump reloads


def test_positives_excluded_even_when_the_window_starts_at_the_top(beir40, tmp_path):
    run_convert("beir-embedding", None, [f"data={beir40}", f"out={tmp_path}", "neg_start=0", "neg_end=12",
                                         "neg_per_query=100"])
    ranking = bm25_ranking(beir40, 12)
    for qid, row in mined(tmp_path).items():
        assert ranking[qid][0] in row["positives"]  # the unique marker word puts the positive first
        assert row["negatives"] == [d for d in ranking[qid][:12] if d not in row["positives"]]


def test_mining_is_seeded(beir40, tmp_path):
    def negs(seed: int, name: str) -> dict:
        run_convert("beir-embedding", None, [f"data={beir40}", f"out={tmp_path / name}", f"seed={seed}",
                                             "neg_per_query=3"])
        return {q: r["negatives"] for q, r in mined(tmp_path / name).items()}

    assert negs(1, "a") == negs(1, "b")
    assert negs(1, "a") != negs(2, "c")


def test_rank_window_must_be_non_empty(beir40, tmp_path):
    with pytest.raises(ConfigError, match="neg_end .* must be larger than neg_start"):
        load_config(BeirEmbeddingConfig, None, [f"data={beir40}", f"out={tmp_path}", "neg_start=50", "neg_end=20"])


def test_reranker_labels_point_and_group(beir40, tmp_path):
    res = run_convert("beir-reranker", None, [f"data={beir40}", f"out={tmp_path}", "neg_per_query=4"])
    rows = mined(tmp_path)
    corpus = load_corpus(beir40)
    points = list(read_records(tmp_path / "reranker_point.jsonl", "reranker-point"))
    groups = list(read_records(tmp_path / "reranker_group.jsonl", "reranker-group"))
    assert res.counts["point records"] == len(points) == 9 + 8 * 4 and len(groups) == 8
    q0 = groups[0]
    assert [(h.content, h.label) for h in q0.hits[:2]] == [(corpus["d10"].content, 2.0), (corpus["d00"].content, 1.0)]
    assert [h.content for h in q0.hits if h.label == 0] == [corpus[d].content for d in rows["q0"]["negatives"]]
    assert {p.label for p in points} == {0.0, 1.0, 2.0}
    assert validate(tmp_path / "reranker_point.jsonl").counts["label max"] == 2.0


def test_beir_sft_pairs_and_dataset_info(beir40, tmp_path):
    res = run_convert("beir-sft", None, [f"data={beir40}", f"out={tmp_path}", 'instruction_prefix="Query for: "',
                                         "system=You write search queries."])
    assert res.counts == {"queries": 8, "records": 9, "documents": 9}
    info = read_dataset_info(tmp_path)
    assert list(info) == ["b40_train_doc2query"] and info["b40_train_doc2query"].columns.system == "system"
    recs = list(read_records(tmp_path / "b40_train_doc2query.jsonl", "alpaca"))
    corpus = load_corpus(beir40)
    assert recs[0].instruction == "Query for: " + corpus["d10"].content
    assert recs[0].output.endswith("marker0x") and recs[0].system == "You write search queries."
    assert validate(tmp_path).ok


# ---------------------------------------------------------------- QA


def meta(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("fraction,mix,native,hard,mismatched", [
    (0.25, None, 5, 5, 2),                                    # default shares 0.4 / 0.4 / 0.2 of 12
    (0.5, None, 12, 16, 8),                                   # 36: native has 12 of its 14; hard takes the 2
    (0.5, "{native: 1, mismatched: 1}", 12, 0, 24),           # native first, mismatched tops up: the old rule
    (0.8, "{native: 1, mismatched: 1}", 12, 0, 48),           # every pair used, fewer answerable keep the ratio
    (0.0, None, 0, 0, 0)])
def test_unanswerable_fraction_and_mix_are_held(tmp_path, fraction, mix, native, hard, mismatched):
    src = squad_file(tmp_path / "sq.json")                    # train: 36 answerable, 12 impossible questions
    res = run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path / 'o'}", f"unanswerable_fraction={fraction}",
                                          *([f"unanswerable_mix={mix}"] if mix else [])])
    rows = meta(tmp_path / "o" / "sq_train.meta.jsonl")
    unans = [r for r in rows if not r["answerable"]]
    assert abs(len(unans) / len(rows) - fraction) < 1 / len(rows)
    assert res.counts["train unanswerable fraction"] == pytest.approx(fraction, abs=0.01)
    assert [sum(r["source"] == s for r in unans) for s in ("impossible", "hard", "mismatched")] == \
        [native, hard, mismatched]
    recs = list(read_records(tmp_path / "o" / "sq_train.jsonl", "alpaca"))
    assert len(recs) == len(rows)
    for rec, m in zip(recs, rows, strict=True):
        assert m["question"] in rec.instruction and m["context"] in rec.instruction
        if m["answerable"]:
            assert rec.output == m["answers"][0] and m["answers"][0] in m["context"]
        else:  # one refusal class: the canonical phrasing, unless refusals=[...] asks for variety
            assert rec.output == CANONICAL_REFUSAL["en"] and m["answers"] == []


def test_hard_unanswerables_are_same_article_passages_without_the_answer(tmp_path):
    src = squad_file(tmp_path / "sq.json")
    run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path}", "unanswerable_mix={hard: 1}"])
    rows = meta(tmp_path / "sq_train.meta.jsonl")
    gold = {r["question"]: r for r in rows if r["answerable"]}
    hard = [r for r in rows if not r["answerable"]]
    assert hard and all(r["source"] == "hard" for r in hard)
    raw = json.loads(src.read_text())["data"]
    article_of = {p["context"]: a["title"] for a in raw for p in a["paragraphs"]}
    own = {qa["question"]: p["context"] for a in raw for p in a["paragraphs"] for qa in p["qas"]}
    for r in hard:
        assert article_of[r["context"]] == r["article"] == r["context_article"]  # the same article ...
        assert r["context"] != own[r["question"]]                               # ... another passage of it
        answer = next(qa["answers"][0]["text"] for a in raw for p in a["paragraphs"] for qa in p["qas"]
                      if qa["question"] == r["question"])
        assert answer not in r["context"]
        if r["question"] in gold:
            assert gold[r["question"]]["context"] != r["context"]


def test_hard_unanswerables_without_a_second_passage_take_the_nearest_other_one(tmp_path):
    # WebQA-like: one passage per article, so the BM25-nearest passage of another article lacking the answer
    data = {f"Q{i}": {"question": f"Who is the mayor of town{i}?",
                      "evidences": {f"Q{i}#0": {"answer": [f"Mayor{i}"],
                                                "evidence": f"The mayor of town{i} is Mayor{i}."}}} for i in range(8)}
    data["Q0"]["question"] = "Who is the mayor of the river town Zeta?"
    data["Q1"]["evidences"]["Q1#0"]["evidence"] = "Zeta is a river town; its harbour master is Boris."
    src = tmp_path / "w.json"
    src.write_text(json.dumps(data))
    run_convert("webqa-sft", None, [f"data={src}", f"out={tmp_path}", "unanswerable_mix={hard: 1}"])
    rows = [r for r in meta(tmp_path / "w_train.meta.jsonl") if not r["answerable"]]
    assert rows and all(r["source"] == "hard_other" and r["context_article"] != r["article"] for r in rows)
    zeta = [r for r in rows if r["article"] == "Q0"]
    assert [r["context"] for r in zeta] in ([], ["Zeta is a river town; its harbour master is Boris."])


def test_dev_split_shares_no_question_with_training(tmp_path):
    src = squad_file(tmp_path / "sq.json")
    res = run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path}", "holdout_articles=2", "dev_questions=6",
                                          "unanswerable_fraction=0.5"])
    train, dev = meta(tmp_path / "sq_train.meta.jsonl"), meta(tmp_path / "sq_dev.meta.jsonl")
    evals = meta(tmp_path / "sq_eval.meta.jsonl")
    assert len({r["question"] for r in dev}) == 6 and res.counts["dev records"] == len(dev)
    assert not {r["question"] for r in dev} & {r["question"] for r in train}
    assert {r["article"] for r in dev} <= {r["article"] for r in train}      # carved from the training articles
    assert not {r["article"] for r in dev} & {r["article"] for r in evals}
    assert sum(not r["answerable"] for r in dev) == len(dev) // 2
    assert {r["source"] for r in dev} <= {"answerable", "impossible", "mismatched"}  # the eval rule
    split = json.loads((tmp_path / "sq_articles.json").read_text())
    assert sorted({r["question"] for r in dev}) == split["dev_questions"]
    with pytest.raises(ValueError, match="distinct questions"):
        run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path}", "dev_questions=1000"])


def test_a_dev_split_of_whole_articles_shares_no_context_with_training(tmp_path):
    src = squad_file(tmp_path / "sq.json")
    res = run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path}", "holdout_articles=2", "dev_articles=1",
                                          "unanswerable_fraction=0.5"])
    train, dev = meta(tmp_path / "sq_train.meta.jsonl"), meta(tmp_path / "sq_dev.meta.jsonl")
    evals = meta(tmp_path / "sq_eval.meta.jsonl")
    split = json.loads((tmp_path / "sq_articles.json").read_text())
    assert len(split["dev"]) == 1 and res.counts["articles (dev)"] == 1 and len(split["train"]) == 3
    assert {r["article"] for r in dev} == set(split["dev"]) and not set(split["dev"]) & set(split["eval"])
    assert not {r["article"] for r in evals} & set(split["dev"])
    # no training record shows a dev passage, as its own context or as a mismatched or hard one
    dev_contexts = {r["context"] for r in dev if r["source"] != "mismatched"}
    assert dev_contexts and not dev_contexts & {r["context"] for r in train}
    assert not {r["article"] for r in train} & set(split["dev"])
    assert not {r["context_article"] for r in train} & set(split["dev"])
    assert sum(not r["answerable"] for r in dev) == len(dev) // 2
    with pytest.raises(ValueError, match="not both"):
        run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path}", "dev_articles=1", "dev_questions=3"])
    with pytest.raises(ValueError, match="dev_articles=4"):
        run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path}", "holdout_articles=2", "dev_articles=4"])


def test_all_unanswerable(tmp_path):
    src = squad_file(tmp_path / "sq.json")
    res = run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path}", "unanswerable_fraction=1"])
    assert res.counts["train unanswerable"] == res.counts["train records"] == 12 + 36 + 48  # native, hard, mismatched


def test_mismatched_contexts_come_from_other_articles_and_lack_the_answer(tmp_path):
    src = squad_file(tmp_path / "sq.json")
    run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path}", "unanswerable_fraction=0.6"])
    rows = [r for r in meta(tmp_path / "sq_train.meta.jsonl") if r["source"] == "mismatched"]
    assert rows
    gold = {r["question"]: r["answers"] for r in meta(tmp_path / "sq_train.meta.jsonl") if r["answerable"]}
    for r in rows:
        assert r["context_article"] != r["article"]
        assert not any(a in r["context"] for a in gold.get(r["question"], []))


@pytest.mark.parametrize("holdout", ["2", "[Article B, Article E]"])
def test_holdout_articles_never_reach_training(tmp_path, holdout):
    src = squad_file(tmp_path / "sq.json")
    res = run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path}", f"holdout_articles={holdout}"])
    train, evals = meta(tmp_path / "sq_train.meta.jsonl"), meta(tmp_path / "sq_eval.meta.jsonl")
    train_articles = {r["article"] for r in train} | {r["context_article"] for r in train}
    eval_articles = {r["article"] for r in evals} | {r["context_article"] for r in evals}
    assert len(eval_articles) == 2 and not train_articles & eval_articles
    split = json.loads((tmp_path / "sq_articles.json").read_text())
    assert set(split["eval"]) == eval_articles and set(split["train"]) == train_articles
    if holdout.startswith("["):
        assert eval_articles == {"Article B", "Article E"}
    assert res.counts["eval unanswerable fraction"] == 0.5
    assert set(read_dataset_info(tmp_path)) == {"sq_train", "sq_eval"}
    assert validate(tmp_path).ok


def test_holdout_is_seeded_and_checked(tmp_path):
    src = squad_file(tmp_path / "sq.json")

    def held(seed: int) -> list[str]:
        run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path / str(seed)}", "holdout_articles=2",
                                        f"seed={seed}"])
        return json.loads((tmp_path / str(seed) / "sq_articles.json").read_text())["eval"]

    assert held(3) == held(3)
    assert len({tuple(held(s)) for s in range(6)}) > 1
    with pytest.raises(ValueError, match="has 6 articles"):
        run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path}", "holdout_articles=6"])
    with pytest.raises(ValueError, match="unknown articles: Article Z"):
        run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path}", "holdout_articles=[Article Z]"])


def test_webqa_chinese_refusals_and_no_answer(tmp_path):
    data = {f"Q{i}": {"question": f"第{i}号城市的市长是谁？",
                      "evidences": {f"Q{i}#00": {"answer": [f"张{i}"],
                                                 "evidence": f"第{i}号城市的市长是张{i}，任期五年。"}}}
            for i in range(30)}
    data["Q0"]["evidences"]["Q0#01"] = {"answer": ["no_answer"], "evidence": "这座城市以美食闻名。"}
    src = tmp_path / "webqa.json"
    src.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    res = run_convert("webqa-sft", None, [f"data={src}", f"out={tmp_path}", "unanswerable_fraction=0.4"])
    rows = meta(tmp_path / "webqa_train.meta.jsonl")
    recs = list(read_records(tmp_path / "webqa_train.jsonl", "alpaca"))
    assert rows[0]["language"] == "zh" and "资料" in recs[0].instruction
    assert sum(r["source"] == "no_answer" for r in rows) == 1
    unans = [rec.output for rec, m in zip(recs, rows, strict=True) if not m["answerable"]]
    assert set(unans) == {CANONICAL_REFUSAL["zh"]}
    run_convert("webqa-sft", None, [f"data={src}", f"out={tmp_path / 'v'}", "unanswerable_fraction=0.4",
                                    "refusals=" + json.dumps(REFUSALS["zh"], ensure_ascii=False)])
    recs = list(read_records(tmp_path / "v" / "webqa_train.jsonl", "alpaca"))
    assert len({r.output for r in recs} & set(REFUSALS["zh"])) > 1   # several phrasings when asked for
    assert abs(len(unans) / len(rows) - 0.4) < 1 / len(rows) and res.counts["train records"] == len(rows)


def test_language_and_template_can_be_set(tmp_path):
    src = squad_file(tmp_path / "sq.json", articles=2)
    run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path}", "language=zh",
                                    "prompt_template=" + json.dumps("Q: {question}\nC: {context}"),
                                    "refusals=[不知道]"])
    recs = list(read_records(tmp_path / "sq_train.jsonl", "alpaca"))
    assert recs[0].instruction.startswith("Q: ") and {r.output for r in recs} & {"不知道"}
    with pytest.raises(ConfigError, match=r"placeholders \{context\} and \{question\}"):
        load_config(SquadSFTConfig, None, [f"data={src}", f"out={tmp_path}", "prompt_template='Q {q}'"])


def test_bad_squad_input_names_the_json_path(tmp_path):
    doc = json.loads(squad_file(tmp_path / "sq.json").read_text())
    del doc["data"][0]["paragraphs"][1]["context"]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(DataFormatError) as e:
        run_convert("squad-sft", None, [f"data={tmp_path / 'bad.json'}", f"out={tmp_path}"])
    assert e.value.field == "data[0].paragraphs[1].context" and "bad.json: data[0].paragraphs[1].context: missing" \
        in str(e.value)
    doc = json.loads(squad_file(tmp_path / "sq.json").read_text())
    doc["data"][1]["paragraphs"][0]["qas"][2]["answers"] = []
    doc["data"][1]["paragraphs"][0]["qas"][0]["question"] = 5
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(DataFormatError, match=r"qas\[0\]\.question: expected str, got int"):
        run_convert("squad-sft", None, [f"data={tmp_path / 'bad.json'}", f"out={tmp_path}"])
    res = run_convert("squad-sft", None, [f"data={tmp_path / 'bad.json'}", f"out={tmp_path}", "on_error=skip"])
    assert res.counts["bad questions skipped"] == 2 and res.skipped.total == 2
    assert [p.field for p in res.skipped.problems] == ["data[1].paragraphs[0].qas[0].question",
                                                       "data[1].paragraphs[0].qas[2].answers"]
    (tmp_path / "trunc.json").write_text('{"data": [\n{"title": ')
    with pytest.raises(DataFormatError, match=r"trunc.json:2: invalid JSON"):
        run_convert("squad-sft", None, [f"data={tmp_path / 'trunc.json'}", f"out={tmp_path}"])


def test_bad_webqa_input(tmp_path):
    (tmp_path / "w.json").write_text(json.dumps({"Q1": {"question": "x?", "evidences": {"e1": {"answer": "a",
                                                                                               "evidence": "t"}}}}))
    with pytest.raises(DataFormatError) as e:
        run_convert("webqa-sft", None, [f"data={tmp_path / 'w.json'}", f"out={tmp_path}"])
    assert e.value.field == "Q1.evidences.e1.answer" and "expected list, got str" in str(e.value)


# ---------------------------------------------------------------- CLI


def test_cli_convert_with_yaml_and_overrides(beir40, tmp_path):
    cfg = tmp_path / "emb.yaml"
    cfg.write_text(f"data: {beir40}\nout: {tmp_path / 'out'}\nneg_per_query: 5\n")
    res = runner.invoke(app, ["data", "convert", "beir-embedding", str(cfg), "neg_per_query=2", "neg_start=1"])
    assert res.exit_code == 0, res.output
    assert "records" in res.output and "wrote" in res.output
    assert all(len(r["negatives"]) == 2 for r in mined(tmp_path / "out").values())
    assert "neg_per_query: 2" in (tmp_path / "out" / "beir-embedding.config.yaml").read_text()
    res = runner.invoke(app, ["data", "validate", str(tmp_path / "out" / "embedding.jsonl")])
    assert res.exit_code == 0 and "rows with neg" in res.output


def test_cli_convert_errors_exit_1(beir40, tmp_path):
    res = runner.invoke(app, ["data", "convert", "beir-embeddings", f"data={beir40}", f"out={tmp_path}"])
    assert res.exit_code == 1 and "unknown conversion" in res.output
    res = runner.invoke(app, ["data", "convert", "beir-embedding", f"data={beir40}", f"out={tmp_path}",
                              "neg_per_qurey=3"])
    assert res.exit_code == 1 and 'did you mean "neg_per_query"' in res.output
    res = runner.invoke(app, ["data", "convert", "beir-sft", f"data={beir40}", f"out={tmp_path}", "split=dev"])
    assert res.exit_code == 1 and 'split "dev" not found' in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("corpus", ["all", "train"])
def test_squad_beir_holds_out_the_articles_squad_sft_holds_out(tmp_path, corpus):
    from ragtune.data.beir import load_beir

    src = squad_file(tmp_path / "sq.json")
    run_convert("squad-sft", None, [f"data={src}", f"out={tmp_path / 'sft'}", "holdout_articles=2", "seed=3"])
    res = run_convert("squad-beir", None, [f"data={src}", f"out={tmp_path / 'b'}", "holdout_articles=2", "seed=3",
                                           f"corpus={corpus}"])
    held = set(json.loads((tmp_path / "sft" / "sq_articles.json").read_text())["eval"])
    ds = load_beir(tmp_path / "b")
    raw = json.loads(src.read_text())["data"]
    article_of = {p["context"]: a["title"] for a in raw for p in a["paragraphs"]}
    assert set(ds.qrels) == ({"train", "test"} if corpus == "all" else {"train"})  # no passage, no test question
    for split, want_held in (("train", False), ("test", True)):
        qrels = ds.qrels.get(split, {})
        for qid, docs in qrels.items():
            [doc] = docs
            assert (article_of[ds.corpus[doc].text] in held) == want_held
            assert ds.queries[qid] in {qa["question"] for a in raw for p in a["paragraphs"] for qa in p["qas"]
                                       if p["context"] == ds.corpus[doc].text and not qa["is_impossible"]}
    assert res.counts["train queries"] == 4 * 2 * 3
    assert res.counts.get("test queries", 0) == (12 if corpus == "all" else 0)
    assert res.counts["documents"] == (12 if corpus == "all" else 8)
    assert validate(tmp_path / "b").ok
