#!/bin/sh
# Challenge entry point, run as `sh predict.sh` in the image's working directory: segments every
# case in /workspace/inputs into /workspace/outputs. Tests and local runs override the folders
# (INPUT_DIR, OUTPUT_DIR), the interpreter (PYTHON) and add flags (INFER_ARGS, word-split).
set -eu
cd "$(dirname "$0")"
# shellcheck disable=SC2086
exec "${PYTHON:-python3}" -m infer -i "${INPUT_DIR:-/workspace/inputs}" -o "${OUTPUT_DIR:-/workspace/outputs}" ${INFER_ARGS:-}
