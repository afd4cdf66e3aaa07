# syntax=docker/dockerfile:1
# Container image for vram-exporter: the exporter plus nvml-sim and its scenarios, so that
# `docker run IMAGE --simulate demo` works on a machine without a GPU (see docs/deploy.md).
#
# Two final targets share one runtime stage:
#   runtime (the default)  compiles from source in the builder stage:   docker build .
#   runtime-prebuilt       takes an already laid-out release directory:
#       docker build --target runtime-prebuilt --build-arg DIST=dist/vram-exporter-0.1.0-linux-x86_64 .
# Base images are build arguments so that an offline builder can substitute local ones
# (scripts/build-image does: a rootfs of the same few files, taken from a Debian one made by mmdebstrap).
ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---- builder: compiles the exporter and the simulated NVML library from the locked dependency set,
# then lays them out in /dist as a release directory (the layout `scripts/release` produces).
FROM ${RUST_IMAGE} AS builder
# The git revision for --version and vram_exporter_build_info when the context has no usable .git
# (build.rs falls back to `git rev-parse`, then to "unknown").
ARG REVISION=
WORKDIR /src
COPY . .
# The registry and git caches survive between builds; target/ stays in this (discarded) stage.
# scripts/release --layout-only strips the binaries and adds the example configuration and scenarios;
# without it (an older tree), scripts/build-image --layout does the same for the files the image uses.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    VRAM_EXPORTER_REVISION="${REVISION}" cargo build --release --locked -p vram-exporter -p nvml-sim \
 && rm -rf dist \
 && if [ -x scripts/release ]; then \
        scripts/release --layout-only && mv dist/vram-exporter-*-linux-*/ /dist; \
    else \
        scripts/build-image --layout target/release /dist; \
    fi

# ---- runtime-base: everything but the exporter's own files. A base of only what the binaries load
# (glibc, libgcc_s, the dynamic loader), CA certificates and /etc/passwd with the UID 65532 user:
# distroless/cc, or its offline twin from scripts/build-image. No shell and no package manager, so
# nothing here may RUN; the user comes from the base, and health is checked by the orchestrator
# through /-/healthy and /-/ready (docs/deploy.md) rather than by a HEALTHCHECK, which would need a shell.
FROM ${RUNTIME_IMAGE} AS runtime-base

ARG RUNTIME_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="vram-exporter" \
      org.opencontainers.image.description="Prometheus exporter for NVIDIA GPU memory with soft/hard limits, leak drift and OOM-prevention actions" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"

# Read by the NVIDIA container toolkit: expose every GPU, and only the driver parts NVML needs.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=utility

USER 65532:65532
EXPOSE 18726

ENTRYPOINT ["/usr/local/bin/vram-exporter"]

# ---- runtime-prebuilt: the image from a release directory in the build context (scripts/release's
# dist/vram-exporter-VERSION-linux-ARCH/, or what `scripts/build-image --layout` makes of target/release).
# nvml-sim carries the SONAME libnvidia-ml.so.1, so it lives in a private directory that the dynamic
# linker never searches (ldconfig does not descend into /usr/local/lib/*/); the exporter finds it there
# only for --simulate, and the real library injected by the NVIDIA container toolkit wins otherwise.
FROM runtime-base AS runtime-prebuilt
ARG DIST=dist/vram-exporter-0.1.0-linux-x86_64
COPY ${DIST}/vram-exporter /usr/local/bin/vram-exporter
COPY ${DIST}/libnvml_sim.so /usr/local/lib/vram-exporter/libnvml_sim.so
COPY ${DIST}/scenarios/ /usr/share/vram-exporter/scenarios/
COPY ${DIST}/vram-exporter.toml /usr/share/vram-exporter/vram-exporter.toml

# ---- runtime (the default target): the same files, from the builder stage.
FROM runtime-base AS runtime
COPY --from=builder /dist/vram-exporter /usr/local/bin/vram-exporter
COPY --from=builder /dist/libnvml_sim.so /usr/local/lib/vram-exporter/libnvml_sim.so
COPY --from=builder /dist/scenarios/ /usr/share/vram-exporter/scenarios/
COPY --from=builder /dist/vram-exporter.toml /usr/share/vram-exporter/vram-exporter.toml
