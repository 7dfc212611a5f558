#!/usr/bin/env bash
# Builds relbert with the `cuda` feature, on a machine with or without a GPU, from NVIDIA's CUDA
# 13.0 wheels on PyPI (no system toolkit needed), and writes the environment to run it.
#
#   scripts/build-cuda.sh [CARGO_BUILD_ARGS...]      # default: --release --bin relbert
#   source .cuda/env.sh && target/release/relbert embed --device cuda:0 --dtype bf16 ...
#
# What it does, and why:
# - `pip install --no-deps --target .cuda/site` the toolkit wheels below (nvcc, its crt/nvvm,
#   cudart, cccl headers, cuBLAS, cuRAND, NVRTC); they are merged by symlinks into one
#   CUDA_HOME (.cuda/home: bin, include, lib64, nvvm) because nvcc finds cicc and libdevice
#   relative to itself and cudarc's build looks in $CUDA_HOME;
# - unversioned `.so` symlinks (`-lcublas` needs libcublas.so; the wheels ship libcublas.so.13);
# - a link-time stub libcuda.so (.cuda/stub) exporting the driver symbols cudarc binds, so the
#   binary links where no driver is installed; at run time the real driver's libcuda is used
#   (the stub is never on LD_LIBRARY_PATH);
# - CUDA_COMPUTE_CAP (default 90, H100/H200) and CUDARC_CUDA_VERSION=13000: no GPU is probed;
# - candle's kernel crate is the cut-down one in vendor/candle-kernels (only the kernels the
#   encoder launches), so the build takes minutes, not ~30.
# Drivers of the CUDA 13.0 branch JIT only PTX ISA <= 9.0: keep nvcc at 13.0.x for them.
#
# Environment: RELBERT_CUDA_DIR (default .cuda), CUDA_COMPUTE_CAP, PYTHON (default python3),
# CARGO_TARGET_DIR. Needs network (PyPI) only the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=${RELBERT_CUDA_DIR:-$root/.cuda}
py=${PYTHON:-python3}
wheels=(
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88
    nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.2.14
    nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88
)
start=$SECONDS
if [ ! -f "$dir/site/.installed" ]; then
    echo "build-cuda: installing the CUDA 13.0 toolkit wheels into $dir/site" >&2
    rm -rf "$dir/site"
    "$py" -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir/site" "${wheels[@]}"
    touch "$dir/site/.installed"
fi

# One CUDA_HOME from every wheel's tree (nvidia/<name>/{bin,include,lib,nvvm,...}).
home=$dir/home
rm -rf "$home" && mkdir -p "$home"
for tree in "$dir"/site/nvidia/*/; do
    cp -rs "$tree." "$home/" 2>/dev/null || cp -rsf "$tree." "$home/"
done
[ -d "$home/lib" ] && [ ! -e "$home/lib64" ] && ln -s lib "$home/lib64"
for so in "$home"/lib/lib*.so.*; do
    base=${so%%.so.*}.so
    [ -e "$base" ] || ln -s "$(basename "$so")" "$base"
done
[ -x "$home/bin/nvcc" ] || { echo "build-cuda: no nvcc in $home/bin" >&2; exit 1; }

# Link-time stub of the driver library: every cu* symbol cudarc's driver bindings name.
stub=$dir/stub
mkdir -p "$stub"
cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$(awk '/^name = "cudarc"/{getline; gsub(/"/,"",$3); print $3}' Cargo.lock)" 2>/dev/null | head -1 || true)
if [ -z "$cudarc" ]; then
    cargo fetch --quiet
    cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$(awk '/^name = "cudarc"/{getline; gsub(/"/,"",$3); print $3}' Cargo.lock)" | head -1)
fi
grep -ohE '\bcu[A-Z][A-Za-z0-9_]*\b' "$cudarc"/src/driver/sys/*.rs | sort -u |
    awk '{print "void " $1 "(void) {}"}' > "$stub/libcuda_stub.c"
# soname libcuda.so.1: what the driver installs (libcuda.so comes only with dev packages).
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub/libcuda.so" "$stub/libcuda_stub.c"
ln -sf libcuda.so "$stub/libcuda.so.1"

export CUDA_HOME=$home CUDA_PATH=$home
export PATH=$home/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDARC_CUDA_VERSION=13000
export LIBRARY_PATH=$stub:$home/lib${LIBRARY_PATH:+:$LIBRARY_PATH}
echo "build-cuda: toolkit ready in $((SECONDS - start)) s; nvcc $(nvcc --version | tail -1)" >&2

args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--release --bin relbert)
cargo build --features cuda "${args[@]}"
echo "build-cuda: cargo build --features cuda ${args[*]} done in $((SECONDS - start)) s" >&2

# What running needs: the wheels' cuBLAS/cuRAND/cudart/NVRTC and the system driver's libcuda.
cat > "$dir/env.sh" <<ENV
# Source before running a --features cuda relbert (written by scripts/build-cuda.sh).
export LD_LIBRARY_PATH=$home/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
ENV
echo "build-cuda: run with: source $dir/env.sh" >&2
