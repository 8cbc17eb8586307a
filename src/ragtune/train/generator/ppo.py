"""PPO for the query generator: ragtune's own, since trl removed PPOTrainer in 1.13.

Policy = base model + a LoRA adapter; reference = the same model with the adapter
disabled (when an SFT adapter is given it is merged into the base first, so the
reference is the SFT model); a scalar value head reads the policy's last hidden state.
Each update: sample responses, score them with `reward_fn`, compute per-token rewards
(score on the last token minus a KL penalty against the reference), GAE advantages, then
`ppo_epochs` passes of minibatch updates of the clipped policy and value objectives.
The KL coefficient is fixed or adaptive. Every update appends its statistics (mean reward, KL, entropy, clip
fraction, value loss, ...) to `ppo_log.jsonl`, first rewritten to the updates a run starts from (none twice).
Under `accelerate launch` (DDP, gloo on CPU) each rank rolls out its slice of each batch; the ranks average
gradients, whiten over the global batch and agree on the KL (ppo_ranks.py); rank 0 writes.

    trainer = PPOTrainer(PPOConfig(), "HuggingFaceTB/SmolLM2-135M-Instruct")
    trainer.train(prompts, reward_fn, out_dir)      # reward_fn(prompts, responses) -> list[float]

`stage: ppo` (ppo_stage.py, also the loop's PPO stage) renders prompts for corpus documents and scores the
responses with a reward model from `stage: rm`.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from pydantic import AliasChoices, Field, model_validator
from torch import nn

from ragtune.atomic import write_json
from ragtune.models import load_causal_lm
from ragtune.train.generator.lm_head import takes_logits_to_keep
from ragtune.train.generator.ppo_core import AdaptiveKLController, gae, masked_mean, ppo_losses, token_rewards
from ragtune.train.generator.ppo_ranks import Ranks, global_moments
from ragtune.train.harness import LoraSettings

RewardFn = Callable[[list[str], list[str]], Sequence[float]]


class PPOConfig(LoraSettings):
    steps: int = Field(20, ge=1)
    """PPO updates (each samples `batch_size` fresh responses)."""
    batch_size: int = Field(16, ge=2)
    """Rollouts per update over all processes: under `accelerate launch` each rank rolls out batch_size / ranks."""
    mini_batch_size: int = Field(4, ge=1)
    """Rollouts per optimizer step over all processes (each rank takes mini_batch_size / ranks of them)."""
    ppo_epochs: int = Field(4, ge=1)
    learning_rate: float = 1e-4
    max_grad_norm: float = 1.0
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    init_kl_coef: float = 0.05
    target_kl: float | None = 6.0
    """Adaptive KL control target (nats per response); null = fixed coefficient."""
    kl_horizon: int = 10_000
    whiten_rewards: bool = True
    """Whiten the sequence scores within each batch before they enter the per-token rewards."""
    max_new_tokens: int = Field(24, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_k: int = 0
    top_p: float = 1.0
    lora_rank: int = Field(16, ge=1, validation_alias=AliasChoices("lora_rank", "lora_r"))
    """Adapter rank r (`lora_r`, this config's former name, is read too)."""
    lora_alpha: float | None = Field(32.0, gt=0)
    save_steps: int = Field(5, ge=0)
    """Every N updates: adapter, value head, optimizer to output_dir/checkpoint-N (newest kept; 0 = at the end)."""
    seed: int = 0

    @model_validator(mode="after")
    def _minibatches(self) -> PPOConfig:
        if self.batch_size % self.mini_batch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of mini_batch_size "
                             f"({self.mini_batch_size})")
        return self


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding, as generate() uses them."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


class PolicyWithValue(nn.Module):
    def __init__(self, model: nn.Module, hidden_size: int):
        super().__init__()
        self.model = model
        self.value_head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.keep_logits = takes_logits_to_keep(model)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, resp_len: int, temperature: float,
                with_value: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(log-probs of the response tokens, values of the states before them, per-token entropy)."""
        # the LM head runs on the positions that predict the response only, not on the prompt's (lm_head.py)
        keep = {"logits_to_keep": resp_len + 1} if self.keep_logits else {}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                         output_hidden_states=with_value, **keep)
        logits = out.logits[:, -resp_len - 1:-1].float() / temperature
        logp_all = torch.log_softmax(logits, -1)
        logp = logp_all.gather(-1, ids[:, -resp_len:].unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        values = None
        if with_value:
            values = self.value_head(out.hidden_states[-1][:, -resp_len - 1:-1].float()).squeeze(-1)
        return logp, values, entropy


class PPOTrainer:
    def __init__(self, cfg: PPOConfig, model_name_or_path: str, sft_adapter: str | Path | None = None,
                 device: str = "cpu", resume_from: str | Path | None = None):
        from peft import PeftModel, get_peft_model

        self.ranks = Ranks()
        world = self.ranks.world
        if cfg.batch_size % world or cfg.mini_batch_size % world:
            raise ValueError(f"batch_size ({cfg.batch_size}) and mini_batch_size ({cfg.mini_batch_size}) must be "
                             f"multiples of the {world} processes")
        torch.manual_seed(cfg.seed)
        self.cfg, self.device = cfg, device
        # the SFT model becomes the reference: merge it, then add the PPO adapter
        base, self.tokenizer = load_causal_lm(model_name_or_path, sft_adapter, padding_side="left")
        if resume_from is not None:
            policy = PeftModel.from_pretrained(base, str(Path(resume_from) / "adapter"), is_trainable=True)
        else:
            policy = get_peft_model(base, cfg.lora_config("CAUSAL_LM"))
        self.model = PolicyWithValue(policy, base.config.hidden_size).to(device)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=cfg.learning_rate)
        self.kl_ctl = AdaptiveKLController(cfg.init_kl_coef, cfg.target_kl, cfg.kl_horizon)
        self.step_count = 0
        self.history: list[dict] = []
        if resume_from is not None:
            path = Path(resume_from) / "trainer_state.pt"
            try:  # tensors, numbers, lists and dicts only: a checkpoint must not be able to run code
                state = torch.load(path, weights_only=True)
            except pickle.UnpicklingError as e:
                raise ValueError(f"{path}: not a PPO state (it holds objects, refused without running them: "
                                 f"{str(e).splitlines()[0]})") from None
            self.model.value_head.load_state_dict(state["value_head"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.kl_ctl.value, self.step_count, self.history = state["kl_coef"], state["step"], state["history"]
        self.ranks.broadcast(self.trainable)  # every rank starts from rank 0's weights, as DDP does
        if world > 1:
            torch.manual_seed(cfg.seed + 1 + self.ranks.rank)  # each rank samples its own responses
        eos = [self.tokenizer.eos_token_id]
        gen_eos = getattr(base.generation_config, "eos_token_id", None)
        self.eos_ids = sorted({*eos, *(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos else [])})

    # ---------------------------------------------------------------- rollout

    @torch.no_grad()
    def rollout(self, prompts: list[str], reward_fn: RewardFn) -> dict:
        cfg, tok = self.cfg, self.tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        self.model.eval()
        out = self.model.model.generate(**enc, do_sample=True, max_new_tokens=cfg.max_new_tokens,
                                        temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                                        pad_token_id=tok.pad_token_id, eos_token_id=self.eos_ids)
        response = out[:, enc["input_ids"].shape[1]:]
        is_eos = torch.isin(response, torch.tensor(self.eos_ids, device=self.device))
        after_eos = (is_eos.cumsum(1) - is_eos.long()) > 0  # tokens after the first eos
        resp_mask = (~after_eos).float()
        response = response.masked_fill(after_eos, tok.pad_token_id)
        texts = tok.batch_decode(response, skip_special_tokens=True)
        scores = torch.tensor([float(s) for s in reward_fn(prompts, texts)], device=self.device)
        ids = torch.cat([enc["input_ids"], response], 1)
        mask = torch.cat([enc["attention_mask"], resp_mask.long()], 1)
        R = response.shape[1]
        logp, values, entropy = self.model(ids, mask, R, cfg.temperature)
        with self.model.model.disable_adapter():
            ref_logp, _, _ = self.model(ids, mask, R, cfg.temperature, with_value=False)
        return {"ids": ids, "mask": mask, "resp_mask": resp_mask, "R": R, "logp": logp, "ref_logp": ref_logp,
                "values": values, "entropy": entropy, "scores": scores, "texts": texts}

    # ---------------------------------------------------------------- update

    def step(self, prompts: list[str], reward_fn: RewardFn) -> dict:
        cfg = self.cfg
        start = time.perf_counter()
        ro = self.rollout(prompts, reward_fn)
        m = ro["resp_mask"]
        scores = ro["scores"]
        s_mean, s_var, s_n = global_moments(scores, None, self.ranks)  # over the global batch
        shaped = scores
        if cfg.whiten_rewards and s_n > 1:
            shaped = (scores - s_mean) / ((s_var * s_n / (s_n - 1)).sqrt() + 1e-8)
        rewards, kl = token_rewards(shaped, ro["logp"], ro["ref_logp"], m, self.kl_ctl.value)
        adv, returns = gae(rewards, ro["values"], m, cfg.gamma, cfg.lam)
        a_mean, a_var, _ = global_moments(adv, m, self.ranks)
        adv = (adv - a_mean) * torch.rsqrt(a_var + 1e-8)

        self.model.train()
        stats: dict[str, list[float]] = {"pg_loss": [], "vf_loss": [], "clipfrac": [], "approx_kl": []}
        n, mb = len(prompts), cfg.mini_batch_size // self.ranks.world
        for _ in range(cfg.ppo_epochs):
            perm = torch.randperm(n)
            for s in range(0, n, mb):
                idx = perm[s:s + mb]
                logp, values, _ = self.model(ro["ids"][idx], ro["mask"][idx], ro["R"], cfg.temperature)
                losses = ppo_losses(logp, ro["logp"][idx], adv[idx], values, ro["values"][idx], returns[idx],
                                    m[idx], cfg.cliprange, cfg.cliprange_value)
                loss = losses["pg_loss"] + cfg.vf_coef * losses["vf_loss"]
                self.optimizer.zero_grad()
                loss.backward()
                self.ranks.average_grads(self.trainable)
                nn.utils.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
                self.optimizer.step()
                for k in stats:
                    stats[k].append(float(losses[k].detach()))
        mean_kl, entropy, resp_len, *losses_mean = self.ranks.mean(
            [float(kl.sum(1).mean()), float(masked_mean(ro["entropy"], m)), float(m.sum(1).mean()),
             *(sum(stats[k]) / len(stats[k]) for k in ("clipfrac", "vf_loss", "pg_loss", "approx_kl"))])
        kl_coef = self.kl_ctl.value
        self.kl_ctl.update(mean_kl, n * self.ranks.world)
        self.step_count += 1
        std = float((s_var * s_n / (s_n - 1)).sqrt()) if s_n > 1 else 0.0
        row = {"step": self.step_count, "reward_mean": float(s_mean), "reward_std": std,
               "kl": mean_kl, "kl_coef": kl_coef, "entropy": entropy, "clipfrac": losses_mean[0],
               "value_loss": losses_mean[1], "policy_loss": losses_mean[2], "approx_kl": losses_mean[3],
               "response_len": resp_len, "seconds": round(time.perf_counter() - start, 3),
               "sample": ro["texts"][0]}
        self.history.append(row)
        return row

    # ---------------------------------------------------------------- loop

    def train(self, prompts: list[str], reward_fn: RewardFn, out_dir: str | Path | None = None,
              show_progress: bool = True) -> list[dict]:
        from tqdm.auto import tqdm

        if len(prompts) == 0:
            raise ValueError("PPO needs at least one prompt")
        rng = random.Random(self.cfg.seed + self.step_count)  # the same batches on every rank
        order: list[str] = []
        main, rank, world = self.ranks.is_main, self.ranks.rank, self.ranks.world
        if out_dir is not None and main:
            self._restart_log(Path(out_dir))
        bar = tqdm(total=self.cfg.steps, initial=self.step_count, desc="ppo", disable=not (show_progress and main))
        while self.step_count < self.cfg.steps:
            while len(order) < self.cfg.batch_size:
                chunk = list(prompts)
                rng.shuffle(chunk)
                order += chunk
            batch, order = order[: self.cfg.batch_size], order[self.cfg.batch_size:]
            row = self.step(batch[rank::world], reward_fn)  # this rank's slice of the global batch
            bar.update(1)
            bar.set_postfix(reward=f"{row['reward_mean']:.3f}", kl=f"{row['kl']:.2f}")
            if out_dir is not None and main:
                self._log(Path(out_dir), row)
                if self.cfg.save_steps and self.step_count % self.cfg.save_steps == 0:
                    self.save(Path(out_dir) / f"checkpoint-{self.step_count}")
                    for old in Path(out_dir).glob("checkpoint-*"):  # the newest is all a resume needs
                        if old.name != f"checkpoint-{self.step_count}":
                            shutil.rmtree(old, ignore_errors=True)
        bar.close()
        if out_dir is not None and main:
            self.save(Path(out_dir))
        self.ranks.barrier()
        return self.history

    def _log(self, out_dir: Path, row: dict) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "ppo_log.jsonl", "a", encoding="utf-8") as f:  # append-only log, one line per update
            f.write(json.dumps(row) + "\n")

    def _restart_log(self, out_dir: Path) -> None:
        """ppo_log.jsonl holds exactly the updates in `history` (after a resume: those up to the checkpoint)."""
        from ragtune.atomic import write_jsonl

        if self.history or (out_dir / "ppo_log.jsonl").exists():
            write_jsonl(out_dir / "ppo_log.jsonl", self.history)

    def save(self, path: Path) -> None:
        from ragtune.atomic import atomic_open

        self.model.model.save_pretrained(str(path / "adapter"))
        self.tokenizer.save_pretrained(str(path / "adapter"))
        with atomic_open(path / "trainer_state.pt", "wb") as f:
            torch.save({"value_head": self.model.value_head.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "kl_coef": self.kl_ctl.value, "step": self.step_count, "history": self.history}, f)
        write_json(path / "ppo_summary.json", {"steps": self.step_count, "final": (self.history or [None])[-1]})
