# medtl runtime image. All set-up is scripts/install.sh, the same script `make test` and CI run.
#   docker build -t medtl .
#   docker run --gpus all -v $PWD:/work -w /work medtl prepare brats ...
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MEDTL_EXTRAS="" \
    PATH=/opt/medtl/.venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /bin/bash medtl \
    && mkdir -p /opt/medtl \
    && chown medtl:medtl /opt/medtl

WORKDIR /opt/medtl
COPY --chown=medtl:medtl . .
USER 10001
RUN bash scripts/install.sh /opt/medtl/.venv

WORKDIR /work
ENTRYPOINT ["medtl"]
CMD ["--help"]
