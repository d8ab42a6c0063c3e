# syntax=docker/dockerfile:1
# The operator image: `mssql-operator` built with the pinned toolchain (rust-toolchain.toml) from
# the committed Cargo.lock (--locked), on distroless `cc` (glibc, no shell), user nonroot
# (uid 65532). The image holds the binary only.
#
#   docker build -t mssql-operator:0.1.0 .
#
# Not built on the project machine (it has no Docker engine); docs/install.md says so.

FROM docker.io/library/rust:1.95.0-bookworm AS build
# aws-lc-sys (the TLS crypto) builds C code; cmake covers the targets that need it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The toolchain first (its own layer): what rust-toolchain.toml pins.
COPY rust-toolchain.toml .
RUN rustup toolchain install && rustc --version
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p mssql-operator \
 && cp target/release/mssql-operator /mssql-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /mssql-operator /usr/local/bin/mssql-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/mssql-operator"]
CMD ["run"]
