# call 2 of 3: MiniLM's weights (float16 here, upcast to float32 there), the second GGUF chunk; zero-shot on the GPU
set -e
cp .devbundle/part1 /tmp/dev/parts/
. .devbundle/env.sh
python3 -c "
from safetensors.torch import load_file, save_file
sd = load_file('.devbundle/minilm-fp16.safetensors')
save_file({k: v.float() for k, v in sd.items()}, '/tmp/dev/minilm/model.safetensors', metadata={'format': 'pt'})"
mkdir -p $OUT
timeout 120 python3 -c "from ragtune.cli import main; main()" eval --data /tmp/dev/scifact --split test --retriever dense --out /tmp/eval-zs 2>&1 | tail -15
ls /tmp/dev/parts
