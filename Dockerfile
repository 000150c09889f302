# syntax=docker/dockerfile:1
# allegro-link production image. Everything installed comes from the hashed locks in requirements/:
# the build stage builds the wheel with the locked build tools and installs it with the locked runtime
# dependencies into a virtualenv; the final stage gets only that virtualenv (no pip caches, no build
# tools, no compilers, no tests). tests/deploy/test_install.py runs the same steps without Docker.
#
#   docker build -t allegro-link .
#   docker run --rm --env-file prod.env allegro-link allegro-link migrate   # before each rollout
#   docker run --read-only -p 8000:8000 --env-file prod.env allegro-link  # serve (the default command)

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INPUT=1
WORKDIR /src
COPY requirements/build.txt requirements/runtime.txt ./requirements/
# Wheels only (--only-binary): nothing compiles, so the build stage needs no compiler either. The
# locked pip installs into a virtualenv that never gets a pip of its own.
RUN python -m pip install --require-hashes --only-binary=:all: -r requirements/build.txt \
 && python -m venv --without-pip /opt/allegro-link \
 && python -m pip --python /opt/allegro-link/bin/python install \
        --require-hashes --only-binary=:all: -r requirements/runtime.txt
COPY pyproject.toml README.md alembic.ini ./
COPY src ./src
COPY migrations ./migrations
RUN python -m pip wheel --no-deps --no-build-isolation --wheel-dir /dist . \
 && python -m pip --python /opt/allegro-link/bin/python install --no-deps /dist/allegro_link-*.whl \
 && python -m compileall -q /opt/allegro-link/lib

FROM python:3.11.14-slim-bookworm AS runtime
# Bytecode was compiled in the build stage, so a read-only root filesystem costs nothing at start-up.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/allegro-link/bin:$PATH
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /nonexistent --shell /usr/sbin/nologin app \
 && python -m pip uninstall --yes pip setuptools wheel
COPY --from=build /opt/allegro-link /opt/allegro-link
WORKDIR /opt/allegro-link
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
# Migrations are a separate step with the same image (`allegro-link migrate`); serve never migrates.
CMD ["allegro-link", "serve", "--host", "0.0.0.0", "--port", "8000"]
