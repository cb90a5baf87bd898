# GPU image for `runner`.
#   docker build -t runner .
#   docker run --gpus all -v "$PWD":/work -v runner-hf-cache:/cache runner run spec.yaml
# Installs exactly like the README: `pip install torch==2.13.0 .` from the repository root.
# On Linux, pip picks torch's CUDA wheel, which brings its own CUDA libraries; the host needs
# only an NVIDIA driver recent enough for them (and the NVIDIA Container Toolkit).

# Tag for readers, digest so a rebuild gets the same base.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04@sha256:ac55d124da4882b497f732d8dfd9a702d5447a5f29d08d56da6f64f0a1eb34bc

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Ubuntu's Python is externally managed (PEP 668): install into a virtual environment.
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch alone first, so that editing the project does not download it again.
RUN pip install torch==2.13.0

WORKDIR /opt/runner
COPY . .
RUN pip install torch==2.13.0 .

# A non-root user; uid 1000 (the base image's `ubuntu` user is removed to free it) matches the
# first user of most hosts, so files written to a mounted /work stay theirs. Others: --user.
RUN (userdel --remove ubuntu 2>/dev/null || true) \
    && useradd --uid 1000 --create-home --shell /bin/bash runner \
    && mkdir -p /cache/huggingface /work \
    && chown -R runner:runner /cache /work \
    && chmod 1777 /cache /cache/huggingface

# Model and dataset downloads: mount a volume on /cache to keep them between runs.
ENV HF_HOME=/cache/huggingface
VOLUME /cache

USER runner
WORKDIR /work
ENTRYPOINT ["runner"]
CMD ["--help"]
