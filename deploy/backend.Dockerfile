# A plain-FTP "legacy" server for deploy/docker-compose.example.yml: vsftpd on Debian 12,
# anonymous logins, uploads into /upload, passive ports 40000-40049. A demo, not for production.
# Build context: deploy/ (for backend-vsftpd.conf).
FROM debian:12-slim
# Debian's base image forbids service starts during package installs (policy-rc.d);
# the package also creates the "ftp" user that anonymous sessions run as.
RUN apt-get update \
 && apt-get install -y --no-install-recommends vsftpd \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /srv/ftp/upload /var/run/vsftpd/empty \
 && chown root:root /srv/ftp && chmod 755 /srv/ftp \
 && chown ftp:ftp /srv/ftp/upload \
 && echo 'Hello from the legacy FTP server, through ftpsgate.' > /srv/ftp/hello.txt
COPY backend-vsftpd.conf /etc/vsftpd-backend.conf
EXPOSE 21 40000-40049
ENTRYPOINT ["/usr/sbin/vsftpd", "/etc/vsftpd-backend.conf"]
