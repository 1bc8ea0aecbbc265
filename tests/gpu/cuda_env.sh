# Sourced by check_cuda.sh and run.sh: the build tools (protoc, cmake, a CUDA toolkit: the machine's, else nvcc
# and the CUDA headers from PyPI, fixtures/tools/cuda.sh) and the variables candle's CUDA build reads. A script
# that sources it sets CUDA_COMPUTE_CAP first when it knows the GPU; without one, Ampere (80) is compiled for.
PROTOC="$(bash fixtures/tools/protoc.sh)"
CMAKE="$(bash fixtures/tools/cmake.sh)"
CUDA_ROOT="$(bash fixtures/tools/cuda.sh)"
export PROTOC CMAKE CUDA_ROOT
export CUDA_HOME="$CUDA_ROOT" CUDA_PATH="$CUDA_ROOT" NVCC="$CUDA_ROOT/bin/nvcc" PATH="$CUDA_ROOT/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
# candle's kernel build runs half as many nvcc jobs as there are cores unless told.
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
