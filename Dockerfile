# Fat Controller's image: the wheel and its runtime dependencies on python:3.11-slim, run as a non-root user.
#
#   docker build -t fatcontroller .
#   docker run --env-file fatcontroller.env -v "$PWD/app.yaml:/etc/fatcontroller/app.yaml:ro" -p 8080:8080 fatcontroller
#
# The image holds no app.yaml: mount one at /etc/fatcontroller/app.yaml, or build FROM this image with it
# copied there. Secrets come from the environment (README, "Running it in production").

# -- build: the wheel only, so the image holds no sources, tests or build tools ----------------------------
FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# -- run -------------------------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FATCONTROLLER_HTTP_PORT=8080
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# A numeric uid, so that an orchestrator's "run as non-root" check can verify it. Its home is the working
# directory: the default SQLite database (for a try-out; production uses PostgreSQL) is written there.
RUN groupadd --system --gid 10001 fatcontroller \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/fatcontroller --create-home fatcontroller
USER 10001:10001
WORKDIR /var/lib/fatcontroller
EXPOSE 8080
# Liveness: /healthz answers 503 when the job loop stops ticking; urllib exits non-zero on it and on no answer.
# No proxy: an HTTP_PROXY given to the bot must not carry its own probe away.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.build_opener(r.ProxyHandler({})).open('http://127.0.0.1:%s/healthz' % os.environ.get('FATCONTROLLER_HTTP_PORT', '8080'), timeout=4)"]
# SIGTERM (docker stop, ECS) stops the bot cleanly: the step under way finishes within the lease (30 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["fatcontroller"]
CMD ["run", "--config", "/etc/fatcontroller/app.yaml"]
