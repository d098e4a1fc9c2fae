# The worker/trainer/simulator image used by docker-compose.yml and deploy/kubernetes/.
# Two stages: dependencies are installed into a virtualenv in `build`, and only that virtualenv
# reaches the runtime image (no pip cache, no build context, no embedded broker).
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The CPU build of torch: the default index would pull a multi-GB CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY stream_app ./stream_app
COPY agents ./agents
COPY schemas ./schemas
# No extras: production talks to Apache Kafka, the embedded broker (`embedded` extra) stays out.
RUN pip install .

FROM python:3.11.11-slim-bookworm AS runtime
# A fixed uid/gid so volume ownership and Kubernetes' runAsUser/fsGroup agree with the image.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app \
 && mkdir -p /models /data \
 && chown app:app /models /data
COPY --from=build /opt/venv /opt/venv
# MODEL_DIR is the shared model store; DATA_DIR and HOME (any library cache) are scratch, a
# tmpfs/emptyDir when the root filesystem is read-only. Bytecode was compiled at install time.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODEL_DIR=/models \
    DATA_DIR=/data \
    METRICS_PORT=9102 \
    METRICS_BIND_ADDRESS=0.0.0.0
WORKDIR /data
USER 10001:10001
EXPOSE 9102
# Liveness of a worker (its event loop answers); the slim image has no curl. Other commands of
# this image (train, simulate) serve no HTTP: compose disables the check for them.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('METRICS_PORT', '9102'), timeout=4)"]
ENTRYPOINT ["stream-app"]
CMD ["worker"]
