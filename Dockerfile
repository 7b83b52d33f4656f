# ftpsgate container image: built on Debian 12, run from an image that holds only what it needs.
#   docker build -t ftpsgate .
#   docker run -d --read-only --cap-drop ALL -v /path/to/conf:/etc/ftpsgate:ro \
#       -p 21:21 -p 50000-50099:50000-50099 ftpsgate
# The config is read from /etc/ftpsgate/config.json (mount it, with the certificate and key
# files it names). See README.md "Docker".

# ---- build: Debian 12 with the compiler and the -dev packages ------------------------------
FROM debian:12-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev make cmake pkg-config \
        libuv1-dev libssl-dev libjansson-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFTPSGATE_INTEGRATION=OFF \
 && cmake --build build --target ftpsgate -j "$(nproc)" \
 && strip build/ftpsgate
# The run-time file system, gathered in /rootfs: the binary, exactly the shared libraries
# (and the dynamic loader) it loads, CA certificates, and passwd/group entries for the
# unprivileged user. glibc 2.36 has its "files" and "dns" NSS modules built in, so getpwnam
# (the "user" key) and backend name lookups need no further library.
RUN set -e; mkdir -p /rootfs/usr/local/bin /rootfs/etc/ftpsgate /rootfs/etc/ssl/certs \
 && cp build/ftpsgate /rootfs/usr/local/bin/ftpsgate \
 && for lib in $(ldd build/ftpsgate | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do \
        cp --parents -L "$lib" /rootfs; \
    done \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nftpsgate:x:10001:10001:ftpsgate:/nonexistent:/usr/sbin/nologin\n' \
        > /rootfs/etc/passwd \
 && printf 'root:x:0:\nftpsgate:x:10001:\n' > /rootfs/etc/group \
 && printf 'passwd: files\ngroup: files\nhosts: files dns\n' > /rootfs/etc/nsswitch.conf \
 && mkdir -p /rootfs/usr/share/doc/ftpsgate && cp config.example.json /rootfs/usr/share/doc/ftpsgate/ \
 && chroot /rootfs /usr/local/bin/ftpsgate --version

# ---- run: nothing but /rootfs -----------------------------------------------------------------
FROM scratch
COPY --from=build /rootfs/ /
# Runs as the unprivileged user ftpsgate, uid/gid 10001 (numeric, so that Kubernetes'
# runAsNonRoot can check it); make the mounted key readable by it. Docker lets unprivileged
# processes bind ports below 1024 inside a container's own network namespace
# (net.ipv4.ip_unprivileged_port_start=0), so 21 and 990 need no capability. With host
# networking that does not hold: then run as root (--user 0) and set "user": "ftpsgate" in
# the config, so that ftpsgate drops root after binding.
USER 10001:10001
# 21: explicit FTPS. 990: implicit FTPS. 50000-50099: passive data ports
# (listeners[].passive.ports); published under other numbers (-p 31000-31099:50000-50099),
# set passive.announce_ports to the published range (README "Behind NAT / in Docker").
EXPOSE 21 990 50000-50099
# No shell in the image: ftpsgate checks its own listeners (a 220 greeting on explicit
# ones, an accepted connection on implicit ones) and exits 0 or 1.
HEALTHCHECK --interval=15s --timeout=10s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/ftpsgate", "--healthcheck", "--config", "/etc/ftpsgate/config.json"]
# SIGTERM (docker stop) drains live sessions for up to 30 s, then exits 0: give it
# `docker stop -t 40` (Compose: stop_grace_period: 40s). SIGHUP reloads. Logs go to stderr.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ftpsgate", "--config", "/etc/ftpsgate/config.json"]
LABEL org.opencontainers.image.title="ftpsgate" \
      org.opencontainers.image.description="TLS-terminating FTP proxy: FTPS in front, plain FTP behind"
