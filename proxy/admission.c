#include "admission.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define ADMISSION_BUCKETS 4096u

typedef struct ipcount {
    struct ipcount *next;
    unsigned char ip[16]; /* IPv4 as v4-mapped IPv6, so both forms count as one */
    unsigned n;
} ipcount_t;

struct admission {
    pthread_mutex_t lock;
    unsigned total;
    ipcount_t *buckets[ADMISSION_BUCKETS];
};

static void ip_key(const struct sockaddr *sa, unsigned char key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

static unsigned hash(const unsigned char key[16])
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    return h % ADMISSION_BUCKETS;
}

/* Under the lock: the entry for key, created when create is set. */
static ipcount_t *find(admission_t *a, const unsigned char key[16], int create)
{
    ipcount_t **slot = &a->buckets[hash(key)];
    for (ipcount_t *e = *slot; e; e = e->next)
        if (memcmp(e->ip, key, 16) == 0)
            return e;
    if (!create)
        return NULL;
    ipcount_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    memcpy(e->ip, key, 16);
    e->next = *slot;
    *slot = e;
    return e;
}

static void drop_if_zero(admission_t *a, const unsigned char key[16])
{
    ipcount_t **slot = &a->buckets[hash(key)];
    for (; *slot; slot = &(*slot)->next) {
        if (memcmp((*slot)->ip, key, 16) == 0) {
            if ((*slot)->n == 0) {
                ipcount_t *dead = *slot;
                *slot = dead->next;
                free(dead);
            }
            return;
        }
    }
}

admission_t *admission_new(void)
{
    admission_t *a = calloc(1, sizeof *a);
    if (a)
        pthread_mutex_init(&a->lock, NULL);
    return a;
}

void admission_free(admission_t *a)
{
    if (!a)
        return;
    for (unsigned i = 0; i < ADMISSION_BUCKETS; i++) {
        while (a->buckets[i]) {
            ipcount_t *next = a->buckets[i]->next;
            free(a->buckets[i]);
            a->buckets[i] = next;
        }
    }
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* Under the lock. */
static const char *enter_ip_locked(admission_t *a, const struct sockaddr *ip, unsigned max_per_ip)
{
    unsigned char key[16];
    ip_key(ip, key);
    ipcount_t *e = find(a, key, 1);
    if (!e)
        return "out of memory";
    if (max_per_ip && e->n >= max_per_ip) {
        drop_if_zero(a, key);
        return "too many sessions from this address";
    }
    e->n++;
    return NULL;
}

const char *admission_enter(admission_t *a, const struct sockaddr *ip, unsigned max_total, unsigned max_per_ip)
{
    const char *why = NULL;
    pthread_mutex_lock(&a->lock);
    if (max_total && a->total >= max_total)
        why = "too many sessions";
    else if (ip)
        why = enter_ip_locked(a, ip, max_per_ip);
    if (!why)
        a->total++;
    pthread_mutex_unlock(&a->lock);
    return why;
}

const char *admission_enter_ip(admission_t *a, const struct sockaddr *ip, unsigned max_per_ip)
{
    pthread_mutex_lock(&a->lock);
    const char *why = enter_ip_locked(a, ip, max_per_ip);
    pthread_mutex_unlock(&a->lock);
    return why;
}

void admission_leave(admission_t *a, const struct sockaddr *ip)
{
    pthread_mutex_lock(&a->lock);
    if (a->total > 0)
        a->total--;
    if (ip) {
        unsigned char key[16];
        ip_key(ip, key);
        ipcount_t *e = find(a, key, 0);
        if (e && e->n > 0) {
            e->n--;
            drop_if_zero(a, key);
        }
    }
    pthread_mutex_unlock(&a->lock);
}

unsigned admission_total(admission_t *a)
{
    pthread_mutex_lock(&a->lock);
    unsigned n = a->total;
    pthread_mutex_unlock(&a->lock);
    return n;
}

unsigned admission_from(admission_t *a, const struct sockaddr *ip)
{
    unsigned char key[16];
    ip_key(ip, key);
    pthread_mutex_lock(&a->lock);
    ipcount_t *e = find(a, key, 0);
    unsigned n = e ? e->n : 0;
    pthread_mutex_unlock(&a->lock);
    return n;
}
