# slotgate container image: the proxy only (no Redis inside).
#   docker build -t slotgate .
#   docker run -p 6380:6380 slotgate --listen 0.0.0.0:6380 --cluster redis-1:6379,redis-2:6379

# --- build ---------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# .dockerignore keeps target/ and .git out of the context.
COPY . .
RUN cargo build --release --locked

# --- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system slotgate \
    && useradd --system --gid slotgate --no-create-home --shell /usr/sbin/nologin slotgate
COPY --from=builder /src/target/release/slotgate /usr/local/bin/slotgate
USER slotgate
EXPOSE 6380
ENTRYPOINT ["/usr/local/bin/slotgate"]
# The upstream cannot be known at build time: pass `--cluster host:port[,host:port...]` when
# running. Arguments given to `docker run` replace this CMD, so repeat `--listen` with them.
CMD ["--listen","0.0.0.0:6380"]
