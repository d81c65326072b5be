# One image for every part; the command picks the part (s2st asr | mt | tts | capture | play | web).
FROM python:3.11-slim-bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        apertium apertium-eng-spa apertium-eng-cat apertium-spa-cat apertium-fr-es apertium-es-pt \
        espeak-ng ffmpeg libsndfile1 redis-tools \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bus bus
COPY workers workers
COPY capture_agent capture_agent
COPY player_agent player_agent
COPY ops ops
# EXTRAS and TORCH_INDEX: the gpu profile of docker-compose.yml builds s2st:gpu with the llm
# extra and the CUDA wheels of torch (same pinned version).
ARG EXTRAS=audio,asr,mt,tts,web
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir "torch==2.13.0" --index-url "${TORCH_INDEX}" \
    && pip install --no-cache-dir ".[${EXTRAS}]"
ENV S2ST_LOG_FORMAT=json
ENTRYPOINT ["s2st"]
