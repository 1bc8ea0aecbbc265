#!/usr/bin/env bash
# Compile vlmdb's `cuda` feature on a machine without a GPU (`cargo check --features cuda`, build scripts included:
# candle's kernels are compiled by nvcc to PTX and to its MoE library), so the CUDA build cannot rot unseen. Run by
# .ci/run after the tests; needs no GPU, only what fixtures/tools/{protoc,cmake,cuda}.sh fetch from PyPI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

PROTOC="$(bash fixtures/tools/protoc.sh)"
CMAKE="$(bash fixtures/tools/cmake.sh)"
CUDA_ROOT="$(bash fixtures/tools/cuda.sh)"
export PROTOC CMAKE CUDA_ROOT
export CUDA_HOME="$CUDA_ROOT" CUDA_PATH="$CUDA_ROOT" NVCC="$CUDA_ROOT/bin/nvcc" PATH="$CUDA_ROOT/bin:$PATH"
# Without a GPU nothing can be asked its compute capability: compile for Ampere (A100; H100s run it too).
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
# candle's kernel build runs half as many nvcc jobs as there are cores unless told.
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
echo "+ cargo check --locked --features cuda --all-targets ($("$NVCC" --version | sed -n 4p))" >&2
start=$(date +%s)
cargo check --locked --features cuda --all-targets
echo "check_cuda.sh: the cuda feature compiles ($(( $(date +%s) - start )) s)" >&2
