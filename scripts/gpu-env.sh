# Sourced by the GPU check scripts (gpu-check.sh, gpu-serve-check.sh, gpu-qdrant-check.sh), from
# the repository's root with $py set: puts cuBLAS, cuRAND, cudart and NVRTC from the CUDA wheels
# PyTorch installed on LD_LIBRARY_PATH (libcuda is the driver's), and .cuda/env.sh's libraries
# where scripts/build-cuda.sh ran on this machine.
libs=$("$py" - <<'PY' 2>/dev/null
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except Exception:
    roots = []
print(":".join(sorted({os.path.dirname(p) for r in roots for p in glob.glob(os.path.join(r, "**", "lib*.so*"), recursive=True)})))
PY
)
# No empty entry (it would search the current directory) when no wheel was found.
export LD_LIBRARY_PATH=${libs}${libs:+${LD_LIBRARY_PATH:+:}}${LD_LIBRARY_PATH:-}
# `if`, not `&&`: a missing file must not end a sourcing script that runs under `set -e`.
if [ -f .cuda/env.sh ]; then . .cuda/env.sh; fi
