#!/usr/bin/env bash
# The GPU benchmarks, on a machine with an NVIDIA GPU, the CUDA toolkit (nvcc and its libraries: cuBLAS, cuRAND,
# NVRTC) and a Python with CUDA PyTorch, transformers, sentence-transformers and faiss-cpu:
#
#   bash tests/gpu/run.sh            (about 10 minutes after the build; each bench has its own time limit)
#
# It builds vlmdb with the `cuda` feature (vlmdb itself at opt-level 2, as for the CPU benches), writes the CLIP
# ViT-B/32 architecture with random weights (tests/peers/write_clip_b32.py), and runs `vlmdb --device cuda bench
# embed|eval|knn|kmeans|train|finetune`, each beside its peer on the same GPU (`--device cuda`: PyTorch, under AMP
# (bf16 autocast) for the CLIP towers and fine-tuning; faiss's kNN and k-means stay on the CPU), then prints the
# ratio lines of all of them as one table. The full outputs are in $OUT (default /tmp/vlmdb-gpu-bench).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out="${OUT:-/tmp/vlmdb-gpu-bench}"
mkdir -p "$out"

nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader | tee "$out/gpu.txt"
CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d .)}"
source tests/gpu/cuda_env.sh
export LIBRARY_PATH="$CUDA_ROOT/lib64:$CUDA_ROOT/lib:${LIBRARY_PATH:-}"
export LD_LIBRARY_PATH="$CUDA_ROOT/lib64:$CUDA_ROOT/lib:${LD_LIBRARY_PATH:-}"
cargo build --locked --features cuda --config 'profile.dev.package.vlmdb.opt-level=2'
vlmdb="$PWD/target/debug/vlmdb"

clip="$out/clip-b32-random"
[[ -f "$clip/config.json" ]] || python3 tests/peers/write_clip_b32.py "$clip"
bash fixtures/models/fetch_minilm.sh >/dev/null

run() {
    local name="$1" limit="$2"
    shift 2
    echo "+ vlmdb --device cuda bench $name $*" | tee "$out/$name.txt"
    if ! timeout "$limit" "$vlmdb" --device cuda bench "$name" "$@" 2>&1 | tee -a "$out/$name.txt"; then
        echo "bench $name failed or ran past ${limit} s" | tee -a "$out/$name.txt"
    fi
}
run embed 150 --image-model "$clip" --images 2048 --texts 10000 --batch 64
run eval 60 --images 5000 --per-image 5 --dim 512
run knn 150 --n 30000 --hnsw-n 20000 --dim 512
run kmeans 90 --n 100000 --dim 512 --k 100
run train 60 --dim 512 --batch 256
run finetune 120 --model "$clip" --batch 32

echo
echo "GPU: $(cat "$out/gpu.txt")"
printf '%-10s %s\n' bench "line (vlmdb beside its peer)"
for name in embed eval knn kmeans train finetune; do
    grep -E "ratio|speed-up|/ faiss|/ PyTorch|vlmdb / |x$" "$out/$name.txt" | sed "s/^/$(printf '%-10s' "$name") /" || true
done
