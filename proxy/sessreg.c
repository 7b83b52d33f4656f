#include "sessreg.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fgerr.h"
#include "netaddr.h"

#define SESSREG_BUCKETS 1024u
#define SESSREG_USER_MAX 256u

typedef struct entry {
    struct entry *next;
    unsigned char token[TLS_ENGINE_TOKEN_LEN];
    struct sockaddr_storage client;
    char user[SESSREG_USER_MAX];
} entry_t;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static entry_t *reg_buckets[SESSREG_BUCKETS];
static size_t reg_count;

/* Tokens are random: their first bytes spread them evenly. */
static entry_t **bucket_of(const unsigned char *token)
{
    unsigned h = ((unsigned)token[0] << 8 | token[1]) % SESSREG_BUCKETS;
    return &reg_buckets[h];
}

static entry_t **find(const unsigned char *token)
{
    entry_t **p = bucket_of(token);
    while (*p && memcmp((*p)->token, token, TLS_ENGINE_TOKEN_LEN) != 0)
        p = &(*p)->next;
    return p;
}

/* Under the lock: removes token's entry, if any. */
static void drop_locked(const unsigned char *token)
{
    entry_t **p = find(token);
    if (*p) {
        entry_t *old = *p;
        *p = old->next;
        free(old);
        reg_count--;
    }
}

int sessreg_put(const unsigned char token[TLS_ENGINE_TOKEN_LEN], const struct sockaddr *client, const char *user)
{
    entry_t *e = calloc(1, sizeof *e);
    if (!e)
        return FG_NOMEM;
    memcpy(e->token, token, TLS_ENGINE_TOKEN_LEN);
    memcpy(&e->client, client, netaddr_len(client));
    size_t n = strlen(user);
    if (n >= sizeof e->user)
        n = sizeof e->user - 1;
    memcpy(e->user, user, n);
    pthread_mutex_lock(&reg_lock);
    drop_locked(token);
    e->next = *bucket_of(token);
    *bucket_of(token) = e;
    reg_count++;
    pthread_mutex_unlock(&reg_lock);
    return FG_OK;
}

void sessreg_drop(const unsigned char token[TLS_ENGINE_TOKEN_LEN])
{
    pthread_mutex_lock(&reg_lock);
    drop_locked(token);
    pthread_mutex_unlock(&reg_lock);
}

int sessreg_same_client(const unsigned char token[TLS_ENGINE_TOKEN_LEN], const struct sockaddr *client,
                        const char *user)
{
    pthread_mutex_lock(&reg_lock);
    entry_t *e = *find(token);
    int same = e && netaddr_same_ip((const struct sockaddr *)&e->client, client) && strcmp(e->user, user) == 0;
    pthread_mutex_unlock(&reg_lock);
    return same;
}

size_t sessreg_count(void)
{
    pthread_mutex_lock(&reg_lock);
    size_t n = reg_count;
    pthread_mutex_unlock(&reg_lock);
    return n;
}
