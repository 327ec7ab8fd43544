# maur: one image for every mode (`maur up`, `serve`, `worker`, `migrate`).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
RUN cargo build --release --locked --bin maur

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 maur
COPY --from=build /src/target/release/maur /usr/local/bin/maur
USER maur
WORKDIR /home/maur
ENV MAUR_LISTEN=0.0.0.0:8000 \
    MAUR_DATA_DIR=/home/maur/data \
    MAUR_LOG_FORMAT=json
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8000"]
ENTRYPOINT ["maur"]
CMD ["up"]
