"""Composition of stages: the closed loop (`ragtune run`, loop.py + stages.py) with its hash-keyed run folder
(rundir.py) and report, and the `data convert` converter table (convert.py)."""
