"""Training: the query generator (generator.py: SFT over trl + peft) and the other trainers beside it."""
