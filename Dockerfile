# kumo in a container (deploy/kubernetes uses it): `docker build -t kumo .`
FROM rust:1-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release -p kumo

FROM debian:bookworm-slim
# curl for the `provided` Lambda runtimes that use it; ca-certificates for guests' HTTPS.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/kumo /usr/local/bin/kumo
EXPOSE 8080
ENTRYPOINT ["kumo"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--data-dir", "/var/lib/kumo"]
