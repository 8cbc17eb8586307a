"""Composition of stages: the demo now, the closed loop later."""
