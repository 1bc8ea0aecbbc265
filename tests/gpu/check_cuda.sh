#!/usr/bin/env bash
# Compile vlmdb's `cuda` feature on a machine without a GPU (`cargo check --features cuda`, build scripts included:
# candle's kernels are compiled by nvcc to PTX and to its MoE library), so the CUDA build cannot rot unseen. Run by
# .ci/run after the tests; needs no GPU, only what fixtures/tools/{protoc,cmake,cuda}.sh fetch from PyPI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

# Without a GPU nothing can be asked its compute capability: cuda_env.sh compiles for Ampere (A100; H100s run it
# too).
source tests/gpu/cuda_env.sh
echo "+ cargo check --locked --features cuda --all-targets ($("$NVCC" --version | sed -n 4p))" >&2
start=$(date +%s)
cargo check --locked --features cuda --all-targets
echo "check_cuda.sh: the cuda feature compiles ($(( $(date +%s) - start )) s)" >&2
