#ifndef FTPSGATE_DATAOPEN_H
#define FTPSGATE_DATAOPEN_H
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "metrics.h"
#include "portpool.h"
#include "tstream.h"

/* How the two connections of a data link come to be (DESIGN.md §3). Each end
 * is listened for (a port of the passive pool that the client connects to,
 * or an ephemeral port that the backend connects to after our PORT/EPRT:
 * only the expected IP gets in, datasock.h) or dialled (the client's PORT/EPRT
 * address, the backend's 227/229 port), from a chosen source address when
 * the listener says so (TPROXY, source-IP transparency). Each connection is
 * handed to the owner once it is connected and is the owner's from then on.
 *
 * Reports through dataopen_cbs_t from libuv callbacks, never inside a
 * dataopen_* call. It counts its own handles (listening sockets, connections
 * being dialled, a poke); after dataopen_close, on_closed follows once every
 * one is closed, and the memory goes right after it. */

typedef struct dataopen dataopen_t;

typedef enum { DATAOPEN_CLIENT = 0, DATAOPEN_BACKEND } dataopen_side_t;

/* One end: how its connection comes. */
typedef struct {
    int dial;                       /* 1: we connect to addr (dataopen_dial); 0: we listen */
    struct sockaddr_storage addr;   /* dial: the peer (its port may come later: dataopen_set_port);
                                       listen: the local address (its port is ignored) */
    portpool_t *pool;               /* listen: a port of this pool; NULL: an ephemeral port */
    int has_expect;
    struct sockaddr_storage expect; /* listen: only this IP may connect */
    int has_source;
    struct sockaddr_storage source; /* dial: connect from this address */
    int transparent;                /* the listening address or the source may be another host's */
} dataopen_end_t;

/* Why a dial failed: the reply the client gets, and whether the backend's
 * side broke (its own reply then says why better than ours). */
typedef struct {
    int code;
    const char *text;
    int backend_failed;
} dataopen_failure_t;

typedef struct {
    /* side's connection is here (accepted from the expected IP, or our dial
     * connected), with no callbacks: the owner adopts it (tstream_set_userdata). */
    void (*on_connected)(void *owner, dataopen_side_t side, tstream_t *s);
    /* A dial did not connect (logged). */
    void (*on_failed)(void *owner, const dataopen_failure_t *f);
    /* After dataopen_close: every handle is closed; the memory goes after this. */
    void (*on_closed)(void *owner);
} dataopen_cbs_t;

/* Listens for the ends that are listened for. FG_OK and *out; FG_RANGE when
 * the pool has no free port, FG_IO when nothing could be bound, FG_NOMEM
 * (nothing to close then, no callback). */
int dataopen_new(uv_loop_t *loop, const dataopen_end_t *client, const dataopen_end_t *backend, metrics_t *metrics,
                 unsigned long long sid, const char *peer, const dataopen_cbs_t *cbs, void *owner,
                 dataopen_t **out);

/* The client's passive port (a listened-for client end). */
uint16_t dataopen_client_port(const dataopen_t *o);
/* A listened-for backend end: the address to give in PORT/EPRT. */
const struct sockaddr *dataopen_backend_listen_addr(const dataopen_t *o);
/* A dialled backend end: its port, from the 227/229 reply. */
void dataopen_set_port(dataopen_t *o, uint16_t port);

/* Dials side's end now (once; a backend end once its port is known, else
 * nothing happens yet). FG_OK, or FG_IO and *f when the dial cannot start. */
int dataopen_dial(dataopen_t *o, dataopen_side_t side, dataopen_failure_t *f);

/* The transfer is an upload: a backend connection being dialled is reset,
 * not ended, if ftpsgate dies (tstream_reset_if_killed). */
void dataopen_guard_upload(dataopen_t *o);

/* The client never brought a usable data connection, but a passive backend
 * that has the transfer command waits (for minutes) on its port: connect and
 * reset, so that it fails the transfer now and its final reply comes
 * promptly. Only for a dialled backend end that was not dialled, once its
 * port is known. */
void dataopen_poke_backend(dataopen_t *o);

/* Stops listening and dialling (a connection handed over stays the owner's;
 * a poke goes on). */
void dataopen_stop(dataopen_t *o);
/* As dataopen_stop, for good: on_closed follows. */
void dataopen_close(dataopen_t *o);

#endif
