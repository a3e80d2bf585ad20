# The tracing API on Python 3.11, run as a non-root user. See docker-compose.yml and the README.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN groupadd --system tracing \
    && useradd --system --gid tracing --home-dir /app --no-create-home --shell /usr/sbin/nologin tracing

WORKDIR /app
COPY . /app

# Editable on purpose: alembic/ (and openapi/) sit beside the package in the source tree and are
# found relative to it, which a regular wheel install would not carry along.
RUN pip install --no-cache-dir -e . \
    && chmod 0755 /app/scripts/docker-entrypoint

USER tracing
EXPOSE 8000

# Waits for the database (retrying `tracing migrate`), then serves on 0.0.0.0:8000.
ENTRYPOINT ["/app/scripts/docker-entrypoint"]
