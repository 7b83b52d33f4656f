#ifndef FTPSGATE_HEALTHCHECK_H
#define FTPSGATE_HEALTHCHECK_H
#include <stdio.h>

#include "config.h"

/* `ftpsgate --healthcheck`: is the ftpsgate that runs with this configuration
 * answering on every listener? For container HEALTHCHECKs and Kubernetes exec
 * probes, which have no shell, no curl and possibly no admin endpoint.
 *
 * Each listener is connected to at its bind address, a wildcard bind (0.0.0.0,
 * [::]) at the loopback address of its family. An explicit listener must send a
 * 220 greeting (the proxy relays the backend's, so a backend that is down shows
 * as 421 and fails the check); the check then sends QUIT. An implicit listener,
 * or one that expects a PROXY protocol header, must accept the TCP connection;
 * nothing is sent on it. Blocking sockets, each step bounded by timeout_ms.
 *
 * Writes one line per listener to report. Returns FG_OK when every listener
 * passed, else FG_IO. */
int healthcheck_run(const config_t *cfg, unsigned timeout_ms, FILE *report);

#endif
