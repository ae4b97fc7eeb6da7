# Submission image: `docker build -t <team> .`; the organisers then run, once per case,
#   docker container run -m 8G --rm -v $PWD/inputs/:/workspace/inputs/ -v $PWD/outputs/:/workspace/outputs/ \
#     <team>:latest /bin/bash -c "sh predict.sh"
# Runtime only: numpy, OpenCV, OpenVINO, ONNX Runtime (infer/requirements.txt), no torch; the code is
# infer/ and the challenge format it reads and writes (challenge/).
# work_dir/ must hold the exported model folders the routing table names: by default
# infer/routing.json (the mission table: official LiteMedSAM, its PET/microscopy fine-tune and
# EfficientSAM-Ti, exported as README.md says). With only `make models` (the official LiteMedSAM):
#   docker build --build-arg ROUTING=infer/routing_official.json -t <team> .
# and the demo model with --build-arg ROUTING=infer/routing_demo.json.
FROM python:3.11.7-slim-bookworm

ARG ROUTING=infer/routing.json

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN groupadd --system --gid 1000 user && useradd --system --uid 1000 --gid 1000 --create-home user

WORKDIR /opt/app

COPY infer/requirements.txt infer/requirements.txt
RUN pip install --no-cache-dir -r infer/requirements.txt

COPY challenge/ challenge/
COPY infer/ infer/
# The chosen table becomes the image's default one.
RUN if [ "${ROUTING}" != infer/routing.json ]; then cp "${ROUTING}" infer/routing.json; fi
COPY predict.sh ./
COPY work_dir/ work_dir/

# Compile every routed model into the OpenVINO cache now, so the first case imports blobs; the
# cache stays writable by the runtime user in case the host CPU needs a blob of its own.
RUN python -m infer.warm_cache --models work_dir --cache-dir work_dir/ov_cache \
    && chown -R 1000:1000 work_dir/ov_cache

USER 1000:1000

CMD ["sh", "predict.sh"]
