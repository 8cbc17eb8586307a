"""The ablation's rows (benchmarks/loop_ablation.py): each a `ragtune run` of configs/loop-scifact-cpu.yaml with a
few overrides, the row its folder is copied from, and the row it is compared with."""

from __future__ import annotations

from dataclasses import dataclass, field

CONFIG = "configs/loop-scifact-cpu.yaml"
COMMON = ["rl=none", "rounds=1", "retriever.num_train_epochs=1"]
"""Every row trains its retrievers 1 epoch, as the config did when the ablation began (it ships 2 since the 28th
session): the rows' stage keys, and the numbers in BENCHMARKS.md, stay those of the runs that produced them."""
BM25 = "{name: bm25, k: 10}"
DENSE = "{name: dense, k: 10}"
RECIPE = f"filters=[{BM25},{DENSE}]"
"""The shipped recipe's filters: BM25, then the zero-shot encoder."""
LOSSNET = "{name: lossnet, keep_fraction: 0.75, epochs: 2, batch_size: 16}"
MRL = ["retriever.use_mrl=true", "retriever.mrl_dims=[384,192,96,48]", "retriever.mrl_weights=[1,1,3,1]",
       "retriever.mrl_init=pca", "retriever.mrl_select_dim=96", "retriever.num_train_epochs=3"]
ROUND2 = ["rounds=2", "rl_after_last_round=false", "fresh_documents=true"]
"""Round 1 writes for other documents (seed + 1): with the same documents, seed and generator, round 2 without RL
regenerates round 1's queries word for word and only counts them twice (measured, BENCHMARKS.md)."""
WARM = ("retriever.mine_with=previous_round", "retriever.init=previous_round")
RL_EVAL = "rl_eval_docs=100"
"""The generator before and after RL write for 100 held-out abstracts, scored by the loop reward: did RL move it?"""
WISE = "retriever.wise_ft=[0.5,0.6,0.7,0.8,0.9,1.0]"
"""WiSE-FT: the retriever's weights interpolated back toward its start, the share chosen on the dev slice."""
COLBERT = ("retriever={kind: colbert, dim: 128, projection_init: pca, query_length: 32, document_length: 128, "
           "neg_nums: 1, loss: mnrl, per_device_train_batch_size: 16, max_steps: 150, learning_rate: 1.0e-4, "
           "warmup_ratio: 0.1, logging_steps: 5, eval_steps: 50, "
           "dev: {fraction: 0.1, max_queries: 40, candidates: 20}}")
"""configs/loop-scifact-colbert-cpu.yaml's retriever, measured there (BENCHMARKS.md)."""


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    overrides: list[str] = field(default_factory=list)
    parent: str | None = None
    evaluate: str = "round-0/evaluate"
    """The stage folder whose per_query.tsv scores the row."""


def round2(name: str, label: str, *overrides: str) -> Row:
    """A two-round row on the recipe's filters, round 1 on fresh documents, scored by its round-1 retriever."""
    return Row(name, label, [RECIPE, *ROUND2, *overrides], parent="round2", evaluate="round-1/evaluate")


def warm(name: str, label: str, *overrides: str) -> Row:
    """A warm round-2 row: `round2_ance_warm` (round 1's retriever mines round 2's negatives and is where round 2's
    training starts) with `overrides`, copied from that row's folder so round 0 is reused."""
    return Row(name, label, [RECIPE, *ROUND2, *overrides, *WARM], parent="round2_ance_warm",
               evaluate="round-1/evaluate")


GRPO_5E4 = ("rl=grpo", RL_EVAL, "grpo.learning_rate=5.0e-4")
SELECT = ("candidates_per_document=4",)
"""Round 1 writes 4 candidates per abstract for a difficulty filter to choose from: what a generator that RL had
taught the band perfectly would write, without RL (the band is round 0's retriever's, as the loop reward's)."""
GAP = ("reward_weights=[1.0,0.0,0.0]", "reward_gap_weight=1.0")
"""The loop reward as kept + max(0, 1/BM25 rank - 1/retriever rank): no pay for rank 1 under the round's retriever
(the rank part) nor for the band, pay for a query the filters keep and the retriever ranks below BM25."""
GAP_ONLY = ("reward_weights=[0.0,0.0,0.0]", "reward_gap_weight=1.0")
"""The gap part alone: with the filter part in the reward GRPO learned to copy the abstract (kept 0.70 -> 0.98,
the retriever's rank 1 0.60 -> 0.90), which the gap part pays nothing for."""
GAP_DR = ("reward_weights=[1.0,0.0,0.0]", "reward_gap_weight=3.0", "grpo.scale_rewards=none",
          "grpo.num_generations=8")
"""Filter outcome + 3x the gap, advantages not scaled (Dr. GRPO), 8 samples a prompt (the same samples per step):
under trl's default group scaling a part's weight barely matters (the filter part alone set the advantage in most
groups), and the gap alone left 36% of the 4-sample groups without signal (GRPO barely moved, KL 0.016). Unscaled,
a sample's advantage is its reward minus its group's mean, so a gap weighs 3x a filter outcome; with 8 samples
about 88% of groups hold a query with a gap (23% of the SFT generator's queries have one), against 65% with 4."""
GAP_SELECT = f"filters=[{BM25},{DENSE},{{name: difficulty, select: gap, per_document: 2}}]"
"""Best-of-4 by the gap, no RL: of an abstract's 4 candidates past BM25 and dense, keep at most 2 that BM25 ranks
the abstract higher for than round 0's retriever does, the largest gap first: what a generator that RL had taught
the gap perfectly would write (the gap rows' RL did not teach it)."""
GAP_RANDOM = (f"filters=[{BM25},{DENSE},{{name: difficulty, select: random, count_like: gap, "
              "per_document: 2}]")
TEACHER = "retriever.teacher=runs/distill/teacher"  # margin_distill.py's cross-encoder, fused with BM25
ROWS = [
    Row("base", "+ dense filter (the shipped recipe: train pairs + BM25- and dense-filtered pseudo queries)",
        ["train_only_baseline=true", RECIPE]),
    Row("train_only", "train pairs only", parent="base", evaluate="train_only/evaluate"),
    Row("unfiltered", "+ unfiltered pseudo queries", ["filters=[]"], parent="base"),
    Row("bm25", "+ BM25 filter", [f"filters=[{BM25}]"], parent="base"),
    Row("lossnet", "+ LossNet", [f"filters=[{BM25},{DENSE},{LOSSNET}]"], parent="base"),
    Row("epochs2", "the recipe trained 2 epochs (one round: more training, no second round)",
        [RECIPE, "retriever.num_train_epochs=2"], parent="base"),
    Row("round2", "round 2, no RL", [RECIPE, *ROUND2], parent="base", evaluate="round-1/evaluate"),
    round2("curriculum", "+ curriculum (round 2, easy to hard)", "retriever.curriculum=easy_to_hard"),
    *(round2(f"round2_{m}", f"round 2 after {m.upper()}", f"rl={m}", RL_EVAL) for m in ("ppo", "dpo", "grpo")),
    round2("round2_grpo_lr", "round 2 after GRPO at 10x the learning rate (5e-4)", *GRPO_5E4),
    round2("round2_grpo_band", "round 2 after GRPO at 5e-4, reward weighted toward the difficulty band", *GRPO_5E4,
           "reward_weights=[0.5,1.0,0.1]"),
    round2("round2_grpo_steep", "round 2 after GRPO at 5e-4, a steep band part (0 at 0.1 outside the band)",
           *GRPO_5E4, "reward_band_falloff=0.1"),
    round2("round2_grpo_bandonly", "round 2 after GRPO at 5e-4, reward = the steep band part alone", *GRPO_5E4,
           "reward_band_falloff=0.1", "reward_weights=[0.0,1.0,0.0]"),
    round2("round2_grpo_bandlong", "round 2 after GRPO at 5e-4 on the steep band part alone, 4x the steps and prompts",
           *GRPO_5E4, "reward_band_falloff=0.1", "reward_weights=[0.0,1.0,0.0]", "grpo.max_steps=200",
           "rl_prompts=256"),
    round2("round2_select", "round 2, no RL: 4 queries per abstract, keep <= 2 inside the band (best-of-4 selection)",
           *SELECT, f"filters=[{BM25},{DENSE},{{name: difficulty, per_document: 2}}]"),
    Row("round2_select_random", "round 2, no RL: 4 per abstract, as many kept per abstract as the band row, at random",
        [RECIPE, *ROUND2, *SELECT, f"filters=[{BM25},{DENSE},{{name: difficulty, per_document: 2, select: random}}]"],
        parent="round2_select", evaluate="round-1/evaluate"),
    round2("round2_teacher", "round 2, no RL, pseudo queries graded by a fused cross-encoder (`teacher`)", TEACHER),
    round2("round2_ance", "round 2, no RL, negatives mined by round 1's retriever (`mine_with: previous_round`)",
           "retriever.mine_with=previous_round"),
    Row("round2_ance_warm", "round 2, no RL, mined by round 1's retriever and starting from it (+ `init`)",
        [RECIPE, *ROUND2, *WARM], parent="round2_ance", evaluate="round-1/evaluate"),
    Row("round2_repeat_warm", "round 2, no RL, mined by round 1's retriever and starting from it, round 1 writing for "
        "round 0's abstracts again (`fresh_documents=false`: round 0's queries word for word, no new query)",
        [RECIPE, "rounds=2", "rl_after_last_round=false", *WARM], parent="round2_ance_warm",
        evaluate="round-1/evaluate"),
    Row("round2_warm_e2", "round 2, no RL, mined by round 1's retriever and starting from it, both rounds' "
        "retrievers trained 2 epochs (the shipped config's)", [RECIPE, *ROUND2, *WARM, "retriever.num_train_epochs=2"],
        parent="round2_ance_warm", evaluate="round-1/evaluate"),
    warm("round2_grpo_warm", "round 2 after GRPO at 5e-4, mined by round 1's retriever and starting from it",
         *GRPO_5E4),
    warm("round2_gap_warm", "round 2 after GRPO at 5e-4 on filter outcome + BM25 gap (what BM25 finds and round 1's "
         "retriever misses), mined by round 1's retriever and starting from it", *GRPO_5E4, *GAP),
    warm("round2_gaponly_warm", "round 2 after GRPO at 5e-4 on the BM25 gap alone, mined by round 1's retriever and "
         "starting from it", *GRPO_5E4, *GAP_ONLY),
    warm("round2_gapdr_warm", "round 2 after GRPO at 5e-4 on filter outcome + 3x the BM25 gap, advantages not "
         "scaled (Dr. GRPO), 8 samples a prompt, mined by round 1's retriever and starting from it", *GRPO_5E4,
         *GAP_DR),
    warm("round2_gapsel_warm", "round 2, no RL: 4 queries per abstract, keep <= 2 with the largest BM25 gap "
         "(best-of-4 by the gap), mined by round 1's retriever and starting from it", *SELECT, GAP_SELECT),
    Row("round2_gapsel_random_warm", "round 2, no RL: 4 per abstract, as many kept per abstract as the gap row, at "
        "random, mined by round 1's retriever and starting from it", [RECIPE, *ROUND2, *SELECT, GAP_RANDOM, *WARM],
        parent="round2_gapsel_warm", evaluate="round-1/evaluate"),
    warm("round2_ppo_warm", "round 2 after PPO (the config's 8 updates), mined by round 1's retriever and starting "
         "from it", "rl=ppo", RL_EVAL),
    warm("round2_dpo_warm", "round 2 after DPO at 5e-4 (at 5e-5 it did not move the generator), mined by round 1's "
         "retriever and starting from it", "rl=dpo", RL_EVAL, "dpo.learning_rate=5.0e-4"),
    Row("gemma", "the generator: Gemma-3-270m (base, `template=gemma`) instead of SmolLM2-135M-Instruct",
        [RECIPE, "generator=google/gemma-3-270m", "template=gemma"], parent="base"),
    Row("colbert", "ColBERT instead of the bi-encoder", [RECIPE, COLBERT], parent="base"),
    Row("pca", "Matryoshka + `mrl_init: pca` (3 epochs)", [RECIPE, *MRL], parent="base"),
    Row("wise", "+ WiSE-FT (weights interpolated toward zero-shot, share chosen on dev)", [RECIPE, WISE],
        parent="base"),
    Row("pca_wise", "Matryoshka + `mrl_init: pca` + WiSE-FT", [RECIPE, *MRL, WISE], parent="pca"),
]
BY_NAME = {r.name: r for r in ROWS}
EXTENDS = {"train_only": None, "unfiltered": "train_only", "bm25": "unfiltered", "base": "bm25", "lossnet": "base",
           "epochs2": "base", "round2": "base", "curriculum": "round2", "round2_ppo": "round2", "round2_dpo": "round2",
           "round2_grpo": "round2", "round2_grpo_lr": "round2_grpo",
           "round2_grpo_band": "round2_grpo_lr", "round2_grpo_steep": "round2_grpo_lr",
           "round2_grpo_bandonly": "round2_grpo_steep", "round2_grpo_bandlong": "round2_grpo_bandonly",
           "round2_select": "round2", "round2_select_random": "round2_select", "round2_teacher": "round2",
           "round2_ance": "round2", "round2_ance_warm": "round2_ance", "round2_warm_e2": "round2_ance_warm",
           "round2_repeat_warm": "round2_ance_warm",
           "round2_grpo_warm": "round2_ance_warm", "round2_gap_warm": "round2_ance_warm",
           "round2_gaponly_warm": "round2_ance_warm", "round2_gapdr_warm": "round2_ance_warm",
           "round2_ppo_warm": "round2_ance_warm", "round2_gapsel_warm": "round2_ance_warm",
           "round2_gapsel_random_warm": "round2_gapsel_warm",
           "round2_dpo_warm": "round2_ance_warm", "gemma": "base",
           "colbert": "base", "pca": "base", "wise": "base", "pca_wise": "pca"}
"""The row each row is compared with ("the row it extends"); differs from the folder it is copied from."""
DISPLAY = ["train_only", "unfiltered", "bm25", "base", "lossnet", "epochs2", "round2", "curriculum", "round2_ppo",
           "round2_dpo", "round2_grpo", "round2_grpo_lr", "round2_grpo_band", "round2_grpo_steep",
           "round2_grpo_bandonly", "round2_grpo_bandlong", "round2_select", "round2_select_random", "round2_teacher",
           "round2_ance", "round2_ance_warm", "round2_repeat_warm", "round2_warm_e2", "round2_grpo_warm",
           "round2_gap_warm",
           "round2_gaponly_warm", "round2_gapdr_warm", "round2_gapsel_warm", "round2_gapsel_random_warm",
           "round2_ppo_warm", "round2_dpo_warm", "gemma", "colbert",
           "pca", "wise", "pca_wise"]
