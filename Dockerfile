# syntax=docker/dockerfile:1
# Ironhold's container image: see docs/deploy.md.
#
#   docker build -t ironhold .                  # the gateway
#   docker build -t ironhold:local --target local .   # and llama.cpp's server, for local models
#
# The final images hold no compiler: wheels are built in the build stages and installed from
# files. They run as an unprivileged user and work on a read-only root filesystem (state in
# /var/lib/ironhold, temporary files in /tmp: mount both writable).


# -- the gateway's wheels (pure Python or prebuilt: no compiler needed) ----------------------
FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt .

# -- llama.cpp's server (compiled here, portable AVX2, as scripts/install.sh builds it) --------
FROM python:3.11.7-slim-bookworm AS build-local
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
COPY constraints.txt /constraints.txt
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels -c /constraints.txt \
        "llama-cpp-python[server]==0.3.36"

# -- the gateway -------------------------------------------------------------------------------
FROM python:3.11.7-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 ironhold \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/ironhold --shell /usr/sbin/nologin ironhold \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/ironhold
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links /wheels ironhold \
    && python -m pip uninstall -y pip setuptools wheel
USER 10001:10001
WORKDIR /var/lib/ironhold
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["ironhold"]
CMD ["serve", "--config", "/var/lib/ironhold/gateway.yaml", "--host", "0.0.0.0", "--port", "8080"]

# -- the gateway and llama.cpp's server, for managed local models ------------------------------
FROM runtime AS local
USER root
RUN --mount=type=bind,from=build-local,source=/wheels,target=/wheels \
    python -m ensurepip \
    && python -m pip install --no-cache-dir --no-index --find-links /wheels \
        "llama-cpp-python[server]" \
    && python -m pip uninstall -y pip setuptools wheel
USER 10001:10001

# The default target is the gateway alone.
FROM runtime
