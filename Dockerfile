# medtl runtime image. All set-up is scripts/install.sh, the same script `make test` and CI run.
#   docker build -t medtl .
#   docker run --rm --gpus all --user "$(id -u):$(id -g)" -v "$PWD:/work" medtl prepare brats ...
# The base is a build argument: a CUDA runtime by default; CI builds FROM a Debian base it imports
# from a debootstrap rootfs (no registry is reachable there) and installs from a local wheelhouse
# (--build-arg PIP_FIND_LINKS=http://127.0.0.1:PORT/ --build-arg PIP_NO_INDEX=1 --network host).
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

ARG MEDTL_TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MEDTL_EXTRAS="" \
    MEDTL_IN_CONTAINER=1 \
    HOME=/home/medtl \
    PATH=/opt/medtl/.venv/bin:$PATH

# /home/medtl is writable by any uid, so `docker run --user $(id -u):$(id -g)` keeps a cache.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /bin/bash medtl \
    && chmod 1777 /home/medtl \
    && mkdir -p /opt/medtl /work \
    && chown medtl:medtl /opt/medtl /work

# Only what the install needs (the same list as .dockerignore and apptainer.def's %files). Torch and
# the dependencies go in a layer of their own, rebuilt only when pyproject.toml or the script change.
WORKDIR /opt/medtl
COPY --chown=medtl:medtl pyproject.toml README.md ./
COPY --chown=medtl:medtl scripts/install.sh scripts/install.sh
USER 10001
RUN MEDTL_INSTALL_STEP=deps bash scripts/install.sh /opt/medtl/.venv
COPY --chown=medtl:medtl medtl medtl
COPY --chown=medtl:medtl cli cli
RUN bash scripts/install.sh /opt/medtl/.venv

WORKDIR /work
HEALTHCHECK --interval=5m --timeout=2m --start-period=2m CMD ["medtl", "doctor", "--quiet"]
ENTRYPOINT ["medtl"]
CMD ["--help"]
