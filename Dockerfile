# The API image; the logs pipeline runs from it too (`python -m logs_pipeline run`).
# Dependencies come from uv.lock in their own cached layer; the final stage has no build tools.
FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --extra service --no-install-project
COPY README.md ./
COPY src ./src
COPY logs_pipeline ./logs_pipeline
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --extra service --no-editable
# Training is deterministic: the image carries the same model version as every other build.
RUN /app/.venv/bin/python -m inferlog train --model-dir /app/model

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 inferlog && mkdir /data && chown inferlog /data
COPY --from=build /app/.venv /app/.venv
COPY --from=build /app/model /app/model
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MODEL_DIR=/app/model \
    DATA_DIR=/data \
    API_HOST=0.0.0.0
WORKDIR /app
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
CMD ["python", "-m", "inferlog", "api"]
