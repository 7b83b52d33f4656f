# The "legacy" plain-FTP server of the Compose test rig (deploy/compose.yaml), of the sidecar
# example (deploy/sidecar/) and of the container tests: vsftpd on Debian 12, one local user
# test/test with a writable home (/home/test), passive ports 40000-40049 (never published:
# only ftpsgate talks to it). A demo, not for production. Build context: deploy/.
#
# Run it with an init (docker run --init, Compose init: true): a vsftpd that is its
# container's PID 1 stops serving after a few sessions.
# Listen address and port: -o options after the config file, e.g. for a sidecar that
# keeps plain FTP inside its network namespace:
#   ["/usr/sbin/vsftpd", "/etc/vsftpd-backend.conf", "-olisten_address=127.0.0.1"]
# It also carries openssl, for the rig's certificate step (deploy/rig/make-certs.sh).
FROM debian:12-slim
# Debian's base image forbids service starts during package installs (policy-rc.d).
RUN apt-get update \
 && apt-get install -y --no-install-recommends vsftpd openssl \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/run/vsftpd/empty \
 && useradd --create-home --home-dir /home/test --shell /usr/sbin/nologin test \
 && echo 'test:test' | chpasswd \
 && echo 'Hello from the legacy FTP server, through ftpsgate.' > /home/test/hello.txt \
 && chown test:test /home/test/hello.txt \
 && printf 'auth required pam_unix.so\naccount required pam_unix.so\nsession required pam_unix.so\n' \
        > /etc/pam.d/vsftpd-backend
COPY backend-vsftpd.conf /etc/vsftpd-backend.conf
EXPOSE 21
ENTRYPOINT ["/usr/sbin/vsftpd", "/etc/vsftpd-backend.conf"]
