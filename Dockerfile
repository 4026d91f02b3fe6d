# ferrinit as an image: a Rust build stage, then the static binary alone in `FROM scratch`.
#
#   docker build -t ferrinit .        (or podman build, buildah build: the base image is named in
#                                      full, as they resolve no short names by default)
#
# With no registry access, build the static binary on the host (README, Building) and hand it in
# as the "build" stage, as the tests do; then no image is pulled at all:
#
#   podman build --build-context build=DIR --file Dockerfile --tag ferrinit DIR
#
# where DIR holds the binary alone, named ferrinit.
#
# Use it in your own image (never at /sbin/init: podman takes that for systemd):
#
#   COPY --from=ferrinit /ferrinit /ferrinit
#   ENTRYPOINT ["/ferrinit", "--"]
#   CMD ["your-program", "--its-flags"]

FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
# The workspace manifest names its members, so their manifests come along; .cargo/config.toml
# makes the release build static.
COPY Cargo.toml Cargo.lock LICENSE ./
COPY .cargo .cargo
COPY src src
COPY tests/testkit tests/testkit
COPY bench bench
RUN cargo build --release --locked -p ferrinit \
 && cp target/x86_64-unknown-linux-gnu/release/ferrinit /ferrinit

FROM scratch
COPY --from=build /ferrinit /ferrinit
ENTRYPOINT ["/ferrinit", "--"]
