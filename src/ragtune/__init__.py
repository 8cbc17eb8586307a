"""ragtune: domain-adapted retrieval for RAG."""

import os

# On a GPU, transformers (5.2x, with its required `kernels` package) fetches compute kernels from the Hugging Face
# Hub at the first forward pass: code downloaded at run time, which ragtune never runs unasked, and offline it stops
# training outright ("kernels-community/rotary is not available in the local cache"; BENCHMARKS.md, the H200 run).
# USE_HUB_KERNELS=YES in the environment opts back in.
os.environ.setdefault("USE_HUB_KERNELS", "NO")

__version__ = "0.1.0"
