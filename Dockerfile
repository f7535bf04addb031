# syntax=docker/dockerfile:1.12
# check=error=true

# Build stage. Runs on the build host's platform and cross-compiles, so
# multi-arch images do not need emulation. The RUN line with `go build` is the
# single source of the release build flags: `task lint:docker` extracts it and
# runs it verbatim to build and verify the binary outside Docker.
ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Never let `go` download another toolchain in the middle of an image build.
ENV GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG TARGETOS TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o .bin/infura-gateway .

# Runtime stage: static binary on distroless (no shell, no package manager).
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
COPY --from=build /src/.bin/infura-gateway /usr/local/bin/infura-gateway
# Numeric uid:gid so Kubernetes runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# 8000: clients (-listen). 9090: the admin listener (-admin-listen): /metrics, /status,
# probes, pprof; loopback by default (the health check below runs inside the container),
# ADMIN_LISTEN=:9090 opens it to a scraper; never publish it where clients reach.
EXPOSE 8000 9090
# No shell in distroless: the binary probes itself. Liveness (/health on the admin
# listener), not readiness: a gateway that is starting or draining is healthy, and a
# failing health check gets a container restarted.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/infura-gateway", "healthcheck", "-url", "http://127.0.0.1:9090/health"]
ENTRYPOINT ["/usr/local/bin/infura-gateway"]
