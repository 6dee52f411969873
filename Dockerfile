# ich-server and ichctl in a container. Two stages: the Swift toolchain image (Debian 12)
# builds with the Makefile's commands; Debian 12 slim runs with only the runtime libraries.
#
#   docker build -t ich-triage .
#   docker run -p 8080:8080 -v ich-data:/var/lib/ich ich-triage
#
# The image serves Models/default (a trained bundle, see README "Container"): the build
# context must hold it.

FROM swift:6.3-bookworm AS build
# Unpinned like the Makefile's: Debian 12's stable packages, security fixes included.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libdcmtk-dev libopenblas-dev libsqlite3-dev libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that a source change does not fetch them again.
COPY Package.swift ./
RUN swift package resolve
COPY Sources/ Sources/
# The same commands as `make test` and `make run`.
RUN swift build -c release --product ichctl \
    && swift build -c release --product ich-server \
    && mkdir -p /out/bin /out/swift \
    && cp "$(swift build -c release --show-bin-path)/ich-server" "$(swift build -c release --show-bin-path)/ichctl" /out/bin/ \
    && cp /usr/lib/swift/linux/*.so /out/swift/

FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libdcmtk17 libopenblas0 libsqlite3-0 libcurl4 libstdc++6 ca-certificates curl tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ich \
    && useradd --system --uid 10001 --gid ich --home-dir /var/lib/ich --shell /usr/sbin/nologin ich \
    && mkdir -p /var/lib/ich \
    && chown ich:ich /var/lib/ich
# The Swift runtime (Foundation, Dispatch, the standard library) from the toolchain that built the binaries.
COPY --from=build /out/swift/ /usr/lib/swift/linux/
RUN echo /usr/lib/swift/linux > /etc/ld.so.conf.d/swift.conf && ldconfig
COPY --from=build /out/bin/ /usr/local/bin/
COPY Models/ /opt/ich/Models/
WORKDIR /opt/ich
ENV ICH_HOST=0.0.0.0 \
    ICH_PORT=8080 \
    ICH_DATA_DIR=/var/lib/ich \
    ICH_MODEL=/opt/ich/Models/default
VOLUME ["/var/lib/ich"]
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["ich-server", "serve"]
