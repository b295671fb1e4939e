# slotgate container image: the proxy only (no Redis inside).
#   docker build -t slotgate .
#   docker run -p 6380:6380 -e SLOTGATE_CLUSTER__SEEDS='["redis-1:6379","redis-2:6379"]' slotgate
#   docker run -p 6380:6380 slotgate --cluster redis-1:6379,redis-2:6379      (flags work too)
# Every config key can come from SLOTGATE_<SECTION>__<KEY> (docs/DEPLOY.md); no file needed.

# --- build ---------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# .dockerignore keeps target/ and .git out of the context.
COPY . .
RUN cargo build --release --locked --bin slotgate

# --- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system slotgate \
    && useradd --system --gid slotgate --no-create-home --shell /usr/sbin/nologin slotgate
COPY --from=builder /src/target/release/slotgate /usr/local/bin/slotgate
USER slotgate
# Listen on every interface of the container by default. An environment variable, not a CMD
# flag, so `-e SLOTGATE_PROXY__LISTEN=…` can change it and arguments given to `docker run`
# (which replace CMD) need not repeat it. A flag (--listen) still wins over it.
ENV SLOTGATE_PROXY__LISTEN=0.0.0.0:6380
EXPOSE 6380
# Liveness without extra tools: bash (part of the base image) opens a TCP connection with
# /dev/tcp and sends PING; +PONG, or -NOAUTH when [auth] is configured, means it serves.
# Orchestrators with probes should use /healthz and /readyz on the admin listener instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/6380 && printf 'PING\\r\\n' >&3 && IFS= read -r -t 2 reply <&3 && [[ $reply == +PONG* || $reply == -NOAUTH* ]]"]
ENTRYPOINT ["/usr/local/bin/slotgate"]
