#!/bin/sh
# The backend environment for this machine, from the NVIDIA driver: cuda13 or cuda12 after
# the "CUDA Version" that nvidia-smi reports (the newest CUDA the driver runs), else cpu.
# NVIDIA_SMI names another nvidia-smi (the tests give a fake one, or none).
version=$("${NVIDIA_SMI:-nvidia-smi}" 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\..*/\1/p' | head -n 1)
if [ -z "$version" ]; then
    echo cpu
elif [ "$version" -ge 13 ]; then
    echo cuda13
elif [ "$version" -eq 12 ]; then
    echo cuda12
else
    echo cpu  # older than CUDA 12: no CuPy wheel of ours runs on it
fi
