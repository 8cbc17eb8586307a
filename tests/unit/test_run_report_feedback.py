"""The loop report's lines on the RL stages: rounded figures, and GRPO's curve summed up by quarter."""

from __future__ import annotations

from ragtune.pipeline.report import feedback_lines


def test_grpo_line_rounds_and_averages_the_curve_by_quarter():
    curve = [{"step": 5 * i, "reward_mean": r, "kl": k}
             for i, (r, k) in enumerate([(0.1, 0.0), (0.3, 0.02), (0.2, 0.05), (0.2, 0.05),
                                         (0.25, 0.1), (0.25, 0.1), (0.5, 0.08), (0.3, 0.06)], 1)]
    grpo = {"steps": 40, "prompts": 256, "reward_first": 0.10412338934838772, "reward_last": 0.3, "curve": curve}
    assert feedback_lines({"grpo": grpo}) == [
        "- GRPO: 40 steps on 256 prompts, reward 0.104 -> 0.300 (first and last logged step; mean of the first and "
        "last quarter 0.200 -> 0.400, KL 0.010 -> 0.070)"]


def test_grpo_line_says_how_many_sample_groups_carried_no_signal():
    """A group whose samples all score the same has no advantage; a reward that is zero for most queries (the gap
    part) leaves many such groups, and the report says so where trl logged it."""
    curve = [{"reward_mean": 0.1, "kl": 0.0, "flat_groups": f} for f in (0.5, 0.25, None)]
    line = feedback_lines({"grpo": {"steps": 3, "prompts": 8, "reward_first": 0.1, "reward_last": 0.1,
                                    "curve": curve}})[0]
    assert line.endswith("; 38% of the sample groups had one reward for all samples (no signal)")
    assert "no signal" not in feedback_lines({"grpo": {"steps": 3, "prompts": 8, "reward_first": 0.1,
                                                       "reward_last": 0.1, "curve": curve[2:]}})[0]


def test_short_curves_and_dpo_losses_print_plainly():
    assert feedback_lines({"grpo": {"steps": 5, "prompts": 8, "reward_first": 0.5, "reward_last": None,
                                    "curve": [{"reward_mean": 0.5, "kl": 0.0}]}}) == [
        "- GRPO: 5 steps on 8 prompts, reward 0.500 -> n/a"]
    assert feedback_lines({"dpo": {"pairs": 240, "steps": 50, "loss_first": 0.6931471, "loss_last": 0.676}}) == [
        "- DPO: 240 pairs, 50 steps, loss 0.693 -> 0.676"]


def test_ppo_line_gets_the_same_quarter_summary_once_it_has_eight_updates():
    curve = [{"step": i, "reward_mean": r, "kl": 0.01 * i} for i, r in
             enumerate([-1.5, -1.3, -1.4, -1.6, -1.2, -1.4, -1.1, -1.3], 1)]
    ppo = {"updates": 8, "reward_first": -1.5, "reward_last": -1.3, "kl_last": 0.08, "curve": curve}
    assert feedback_lines({"ppo": ppo}) == [
        "- PPO: 8 updates, mean reward -1.500 -> -1.300, KL 0.08 (first and last logged step; mean of the first and "
        "last quarter -1.400 -> -1.200, KL 0.015 -> 0.075)"]
    assert feedback_lines({"ppo": {**ppo, "updates": 7, "curve": curve[:7]}})[0].endswith("KL 0.08")
