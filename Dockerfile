# ftpsgate container image: build on Debian 12, run on Debian 12 slim.
#   docker build -t ftpsgate .
#   docker run --rm -v /path/to/conf:/etc/ftpsgate:ro -p 21:21 -p 50000-50099:50000-50099 ftpsgate
# The config is read from /etc/ftpsgate/config.json (mount it, with the certificate and
# key files it names). See README.md "Docker".

FROM debian:12-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config \
        libuv1-dev libssl-dev libjansson-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFTPSGATE_INTEGRATION=OFF \
 && cmake --build build --target ftpsgate -j "$(nproc)"

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libuv1 libssl3 libjansson4 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 ftpsgate \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin ftpsgate \
 && mkdir -p /etc/ftpsgate
COPY --from=build /src/build/ftpsgate /usr/local/bin/ftpsgate
COPY config.example.json /usr/share/doc/ftpsgate/config.example.json
# Runs as the unprivileged user ftpsgate, uid/gid 10001 (make the mounted key readable
# by it). Docker (20.10 and later) lets unprivileged processes bind ports below 1024
# inside a container's own network namespace (net.ipv4.ip_unprivileged_port_start=0),
# so 21 and 990 need no root. With host networking that does not hold: then run as
# root (--user 0) and set "user": "ftpsgate" in the config, so that ftpsgate drops
# root after binding.
USER ftpsgate
# 21: explicit FTPS. 990: implicit FTPS. 50000-50099: passive data ports
# (listeners[].passive.ports); published under other numbers (-p 31000-31099:50000-50099),
# set passive.announce_ports to the published range (README "Behind NAT / in Docker").
EXPOSE 21 990 50000-50099
ENTRYPOINT ["ftpsgate", "--config", "/etc/ftpsgate/config.json"]
