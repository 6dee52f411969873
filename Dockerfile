# ich-server and ichctl in a container. Two stages: the Swift toolchain image (Debian 12)
# builds with the Makefile's commands; Debian 12 slim runs with only the runtime libraries.
#
#   docker build -t ich-triage .
#   docker run -p 8080:8080 -v ich-data:/var/lib/ich ich-triage
#
# The image serves Models/default (the synthetic-data bundle of Models/, see README
# "Container"); the build context holds it.

FROM swift:6.3-bookworm AS build
# Unpinned like the Makefile's: Debian 12's stable packages, security fixes included.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libdcmtk-dev libopenjp2-7-dev libopenblas-dev libsqlite3-dev libcurl4-openssl-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that a source change does not fetch them again.
COPY Package.swift ./
RUN swift package resolve
COPY Sources/ Sources/
# The Makefile's commands (`make test`, `make run`), with the Swift runtime linked in
# statically so that the runtime stage needs no toolchain libraries (checked with a local
# build: no libswift*/libFoundation* left in `ldd`).
RUN swift build -c release --static-swift-stdlib --product ichctl \
    && swift build -c release --static-swift-stdlib --product ich-server \
    && mkdir -p /out/bin \
    && cp "$(swift build -c release --static-swift-stdlib --show-bin-path)/ich-server" \
          "$(swift build -c release --static-swift-stdlib --show-bin-path)/ichctl" /out/bin/

FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libdcmtk17 libopenjp2-7 libopenblas0 libsqlite3-0 libcurl4 libssl3 libstdc++6 ca-certificates curl tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ich \
    && useradd --system --uid 10001 --gid ich --home-dir /var/lib/ich --shell /usr/sbin/nologin ich \
    && mkdir -p /var/lib/ich \
    && chown ich:ich /var/lib/ich
COPY --from=build /out/bin/ /usr/local/bin/
COPY Models/ /opt/ich/Models/
WORKDIR /opt/ich
# MALLOC_ARENA_MAX: glibc otherwise keeps per-thread arenas that connection
# bursts grew (193 -> 314 MiB over 25 rounds of 200 slow clients; flat at
# 236 MiB with 2 arenas; docs/RELIABILITY.md, "Load").
ENV ICH_HOST=0.0.0.0 \
    ICH_PORT=8080 \
    ICH_DATA_DIR=/var/lib/ich \
    ICH_MODEL=/opt/ich/Models/default \
    MALLOC_ARENA_MAX=2
VOLUME ["/var/lib/ich"]
USER 10001:10001
EXPOSE 8080
# With ICH_TLS_CERT set the port speaks HTTPS only; the probe then skips verification, since
# the certificate names the host clients use, not 127.0.0.1 (it checks liveness, not identity).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD if [ -n "$ICH_TLS_CERT" ]; then curl -fsSk -o /dev/null "https://127.0.0.1:${ICH_PORT}/healthz"; \
        else curl -fsS -o /dev/null "http://127.0.0.1:${ICH_PORT}/healthz"; fi
ENTRYPOINT ["ich-server", "serve"]
