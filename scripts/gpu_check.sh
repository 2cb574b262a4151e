#!/usr/bin/env bash
# The CUDA checks, in one run on a machine with an NVIDIA GPU: install as the README says, the
# whole suite with the gpu tests, the bench matrix (fp16/bf16/fp32 x FCN-ResNet101,
# DeepLabV3-ResNet101, LRASPP x batch 1/8/32), a 720p MP4 -> MP4 run and a live run on the
# loopback MJPEG source at 30 fps. Reports go to benchmarks/ (JSON + Markdown) and OUT_DIR.
#
#   bash scripts/gpu_check.sh [OUT_DIR]        # default OUT_DIR: gpu-check/
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check}"
mkdir -p "$out" benchmarks
stamp="$(date -u +%Y-%m-%d)"

python3 -m venv .venv && . .venv/bin/activate && pip install -q -c constraints.txt -e ".[dev]"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/nvidia-smi.csv"

# 1. the suite, gpu tests included (-rs lists what was skipped and why)
python -m pytest -q -rs -m gpu 2>&1 | tee "$out/pytest-gpu.txt"
python -m pytest -q -rs 2>&1 | tee "$out/pytest-all.txt"

# 2. the bench matrix
python run_live.py bench --device cuda --precision fp16 bf16 fp32 \
    --model fcn_resnet101 deeplabv3_resnet101 lraspp_mobilenet_v3_large --batch 1 8 32 \
    --frames 64 --warmup 16 --repeat 3 --source synthetic \
    --json "benchmarks/h200-$stamp.json" --markdown "benchmarks/h200-$stamp.md" 2>&1 | tee "$out/bench.txt"

# 3. the pipeline: 720p H.264 in, overlaid H.264 out, FCN-ResNet101 fp16
python samples/make_sample.py -o "$out/long720.mp4" --seconds 40
python run_live.py -q video "$out/long720.mp4" -o "$out/long720.seg.mp4" --overwrite --weights random \
    --device cuda --precision fp16 --stats "$out/video-stats.json"
cat "$out/video-stats.json"

# 4. live from the loopback MJPEG source at 30 fps for 30 s
python tests/mjpeg.py --port 8765 --fps 30 --size 1280x720 --duration 40 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
sleep 2
python run_live.py live --source http://127.0.0.1:8765/stream.mjpg --display none --duration 30 \
    --weights random --device cuda --precision fp16 --stats "$out/live-stats.json"
cat "$out/live-stats.json"
