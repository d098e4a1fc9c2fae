# The worker/simulator image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
# The CPU build of torch: the default index would pull a multi-GB CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY stream_app ./stream_app
COPY agents ./agents
COPY schemas ./schemas
RUN pip install .
ENTRYPOINT ["stream-app"]
CMD ["worker"]
