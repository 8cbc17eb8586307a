"""The generator trainers: SFT, reward model, PPO, DPO, GRPO (stages.py picks one by `stage`), LoRA export."""
