"""`ragtune` under accelerate's FSDP on CPU, for tests only:

    accelerate launch --config_file FSDP_CONFIG.yaml tests/integration/fsdp_on_cpu.py train generator ...

accelerate keeps FSDP for accelerators: on CPU it starts DDP over gloo even when the config says FSDP. torch's
FSDP2 (`fully_shard`) itself runs on CPU with gloo, so this lifts that one check, and the shipped GPU config, the
trainers' sharded checkpoints, their resume and the final gathered save are exercised before a GPU is lent.
"""

from __future__ import annotations

import sys

import accelerate.state
from accelerate.utils import DistributedType

_init = accelerate.state.AcceleratorState.__init__


def _fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    plugin = fsdp_plugin or self.__dict__.get("fsdp_plugin")  # a later AcceleratorState() keeps the first plugin
    if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = plugin


accelerate.state.AcceleratorState.__init__ = _fsdp_on_cpu

if __name__ == "__main__":
    from ragtune.cli import main

    sys.argv = ["ragtune", *sys.argv[1:]]
    main()
