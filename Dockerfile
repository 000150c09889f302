# syntax=docker/dockerfile:1
# allegro-link production image: build a wheel, install it with runtime dependencies only.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m pip install build
COPY pyproject.toml README.md alembic.ini ./
COPY src ./src
COPY migrations ./migrations
RUN python -m build --wheel --outdir /dist \
 && python -m venv /opt/allegro-link \
 && /opt/allegro-link/bin/pip install /dist/*.whl

FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/allegro-link/bin:$PATH
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /nonexistent --shell /usr/sbin/nologin app
# Only the virtualenv (the package, its migrations and runtime dependencies) comes across.
COPY --from=build /opt/allegro-link /opt/allegro-link
USER app:app
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
# Migrations are a separate step (`allegro-link migrate`, e.g. a release job); serve never migrates.
CMD ["allegro-link", "serve", "--host", "0.0.0.0", "--port", "8000"]
