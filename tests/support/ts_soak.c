/* ts_soak.c — see ts_soak.h. */
#include "ts_soak.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice_shim.h"
#include "ts_util.h"

#define TICK_S 0.0005          /* pacing timer */
#define MAX_PER_TICK 2000      /* a generator that falls behind skips, never bursts */
#define CHURN_S 0.1            /* churn and retirement checks */
#define DEFAULT_CRED_TTL_S 3600
#define DEFAULT_LINGER_MS 1000
#define CLIENT_QUEUE (1u << 20)
#define CLIENT_MAX_AGE_MS 10000

typedef enum inst_state { I_OPENING, I_OPEN, I_RETIRING, I_CLOSING } inst_state_t;

/* One tunnel, from open to on_close (or ts_soak_free). */
typedef struct inst {
    ts_soak_t *s;
    sluice_tunnel_t *t;
    inst_state_t state;
    uint32_t serial;
    uint32_t next_seq, max_rx_seq;
    int have_rx;
    uint64_t sent, rx;
    int64_t linger_until_ns;    /* I_RETIRING */
    struct inst *prev, *next;   /* every instance */
} inst_t;

struct ts_soak {
    struct ev_loop *loop;
    ts_soak_opts_t o;
    sluice_client_t **clients;
    size_t nclients;
    inst_t **slot;              /* the live tunnel of each slot, NULL: reopen */
    inst_t *all;                /* every instance not yet ended */
    size_t retiring;
    uint32_t next_serial;
    size_t next_replace;
    double churn_credit;
    ev_timer tick, churn;
    int pacing, finishing;
    int64_t t0_ns;
    uint64_t j;
    ts_soak_window_t w;
    ts_soak_totals_t tot;
    uint8_t buf[TS_SOAK_MAX_SIZE];
};

static void note(ts_soak_t *s, const char *what, const char *detail)
{
    s->tot.unexpected++;
    if (!s->tot.why[0])
        snprintf(s->tot.why, sizeof s->tot.why, "%.100s: %.140s", what, detail);
}

static void inst_unlink(inst_t *i)
{
    if (i->prev)
        i->prev->next = i->next;
    else
        i->s->all = i->next;
    if (i->next)
        i->next->prev = i->prev;
}

/* The tunnel has ended: its loss is final. */
static void inst_end(inst_t *i)
{
    ts_soak_t *s = i->s;
    uint64_t lost = i->sent > i->rx ? i->sent - i->rx : 0;
    s->tot.lost += lost;
    s->w.lost += lost;
    if (lost)
        s->tot.short_tunnels++;
    if (i->state == I_RETIRING)
        s->retiring--;
    inst_unlink(i);
    free(i);
}

static void retire(ts_soak_t *s, inst_t *i);

static void on_state(sluice_client_t *c, sluice_state_t state, const char *detail, void *ud)
{
    ts_soak_t *s = ud;
    if (state == SLUICE_FAILED || state == SLUICE_CLOSED) {
        note(s, sluice_state_name(state), detail);
        s->w.unexpected++;
    }
}

static void on_open(sluice_tunnel_t *t, void *ud)
{
    inst_t *i = ud;
    if (i->state == I_OPENING) {
        i->state = I_OPEN;
        i->s->tot.opened++;
        i->s->w.opened++;
        if (i->s->finishing)
            retire(i->s, i); /* closed by the next retire_check */
    }
}

static void on_packet(sluice_tunnel_t *t, const uint8_t *p, size_t len, int is_signal, void *ud)
{
    inst_t *i = ud;
    ts_soak_t *s = i->s;
    int64_t now = ts_now_ns();
    uint32_t serial, seq;
    int64_t sent_ns;
    if (len < TS_SOAK_HDR || p[0] != 0x80 || p[1] != TS_SOAK_MARK) {
        s->tot.bad++;
        s->w.bad++;
        return;
    }
    memcpy(&serial, p + 2, sizeof serial);
    memcpy(&seq, p + 6, sizeof seq);
    memcpy(&sent_ns, p + 10, sizeof sent_ns);
    if (serial != i->serial || seq >= i->next_seq || now < sent_ns) {
        s->tot.bad++; /* another tunnel's packet, or one never sent */
        s->w.bad++;
        return;
    }
    i->rx++;
    s->tot.rx++;
    s->w.rx++;
    ts_hist_add(&s->w.rtt, (uint64_t)(now - sent_ns));
    if (i->have_rx && seq <= i->max_rx_seq) {
        s->tot.reordered++;
    } else {
        i->max_rx_seq = seq;
        i->have_rx = 1;
    }
}

static void on_close(sluice_tunnel_t *t, int status, uint64_t code, const char *reason,
                     void *ud)
{
    inst_t *i = ud;
    ts_soak_t *s = i->s;
    if (i->state == I_CLOSING) {
        s->tot.closed++;
        s->w.closed++;
    } else {
        char what[96];
        snprintf(what, sizeof what, "tunnel %u ended, status %d (%s)", i->serial, status,
                 sluice_close_name(code));
        note(s, what, reason);
        s->w.unexpected++;
        for (size_t k = 0; k < s->o.tunnels; k++)
            if (s->slot[k] == i)
                s->slot[k] = NULL; /* reopened on the next churn tick */
    }
    inst_end(i);
}

/* A new tunnel in slot k. */
static int slot_open(ts_soak_t *s, size_t k)
{
    inst_t *i = calloc(1, sizeof *i);
    if (!i)
        return -1;
    *i = (inst_t){.s = s, .state = I_OPENING, .serial = s->next_serial++};
    char user[32], username[256], credential[64];
    snprintf(user, sizeof user, "soak%u", i->serial);
    uint64_t expiry = (uint64_t)time(NULL) + s->o.cred_ttl_s;
    if (sluice_cred_mint(SLUICE_HASH_SHA1, s->o.secret, strlen(s->o.secret), expiry, user,
                         username, sizeof username, credential, sizeof credential) != SLUICE_OK) {
        free(i);
        return -1;
    }
    /* Client queues that never drop what is offered (as in bench_load): a
     * loss is the gateway's or the kernel's, not the generator's when it
     * waits for a CPU. */
    sluice_tunnel_opts_t to = {.tenant = s->o.tenant, .kind = "sfu", .username = username,
                               .credential = credential, .media_queue_bytes = CLIENT_QUEUE,
                               .media_max_age_ms = CLIENT_MAX_AGE_MS, .on_open = on_open,
                               .on_packet = on_packet, .on_close = on_close, .ud = i};
    i->next = s->all;
    if (s->all)
        s->all->prev = i;
    s->all = i;
    i->t = sluice_tunnel_open(s->clients[k % s->nclients], &to);
    if (!i->t) {
        inst_unlink(i);
        free(i);
        return -1;
    }
    s->slot[k] = i;
    return 0;
}

/* Stops i's sending; it closes once its echoes are back (retire_check). */
static void retire(ts_soak_t *s, inst_t *i)
{
    i->state = I_RETIRING;
    i->linger_until_ns = ts_now_ns() + (int64_t)s->o.linger_ms * 1000000;
    s->retiring++;
}

static void close_inst(ts_soak_t *s, inst_t *i)
{
    if (i->state == I_RETIRING)
        s->retiring--;
    i->state = I_CLOSING;
    sluice_tunnel_close(i->t); /* on_close may run inside: i is not touched after */
}

static void retire_check(ts_soak_t *s)
{
    int64_t now = ts_now_ns();
    inst_t *next;
    for (inst_t *i = s->all; i; i = next) {
        next = i->next;
        if (i->state == I_RETIRING && (i->rx >= i->sent || now >= i->linger_until_ns))
            close_inst(s, i);
    }
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    ts_soak_t *s = (ts_soak_t *)((char *)w - offsetof(ts_soak_t, tick));
    if (!s->pacing)
        return;
    int64_t now = ts_now_ns();
    uint64_t due = (uint64_t)((double)(now - s->t0_ns) / 1e9 * s->o.pps * (double)s->o.tunnels);
    uint8_t *p = s->buf;
    p[0] = 0x80;
    p[1] = TS_SOAK_MARK;
    for (int n = 0; s->j < due && n < MAX_PER_TICK; n++, s->j++) {
        inst_t *i = s->slot[s->j % s->o.tunnels];
        if (!i || i->state != I_OPEN) {
            s->tot.skipped++;
            s->w.skipped++;
            continue;
        }
        int64_t t = ts_now_ns();
        memcpy(p + 2, &i->serial, sizeof i->serial);
        memcpy(p + 6, &i->next_seq, sizeof i->next_seq);
        memcpy(p + 10, &t, sizeof t);
        if (sluice_tunnel_send(i->t, p, s->o.size) == SLUICE_OK) {
            i->next_seq++;
            i->sent++;
            s->tot.sent++;
            s->w.sent++;
        }
    }
    if (s->j < due) { /* behind by more than a tick's cap: not offered later */
        s->tot.skipped += due - s->j;
        s->w.skipped += due - s->j;
        s->j = due;
    }
}

static void on_churn(struct ev_loop *loop, ev_timer *w, int revents)
{
    ts_soak_t *s = (ts_soak_t *)((char *)w - offsetof(ts_soak_t, churn));
    retire_check(s);
    if (!s->pacing || s->finishing)
        return;
    s->churn_credit += s->o.churn * (double)s->o.tunnels * CHURN_S;
    for (size_t tries = 0; s->churn_credit >= 1.0 && tries < s->o.tunnels &&
                           s->retiring < TS_SOAK_MAX_RETIRING;
         tries++) {
        size_t k = s->next_replace++ % s->o.tunnels;
        inst_t *i = s->slot[k];
        if (!i || i->state != I_OPEN)
            continue; /* still opening: replaced on a later turn */
        s->slot[k] = NULL;
        retire(s, i);
        s->churn_credit -= 1.0;
    }
    for (size_t k = 0; k < s->o.tunnels; k++)
        if (!s->slot[k] && slot_open(s, k) < 0)
            note(s, "tunnel", "sluice_tunnel_open failed");
}

ts_soak_t *ts_soak_open(struct ev_loop *loop, const ts_soak_opts_t *o, int64_t deadline,
                        char *why, size_t cap)
{
    if (o->tunnels < 1 || o->tunnels > TS_SOAK_MAX_TUNNELS || o->clients < 1 ||
        o->clients > TS_SOAK_MAX_CLIENTS || !(o->pps > 0) || o->size < TS_SOAK_HDR ||
        o->size > TS_SOAK_MAX_SIZE || o->churn < 0 || o->churn > 1) {
        snprintf(why, cap, "ts_soak_open: options out of range");
        return NULL;
    }
    ts_soak_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    s->loop = loop;
    s->o = *o;
    if (!s->o.linger_ms)
        s->o.linger_ms = DEFAULT_LINGER_MS;
    if (!s->o.cred_ttl_s)
        s->o.cred_ttl_s = DEFAULT_CRED_TTL_S;
    ts_hist_init(&s->w.rtt);
    ev_timer_init(&s->tick, on_tick, TICK_S, TICK_S);
    ev_timer_init(&s->churn, on_churn, CHURN_S, CHURN_S);
    s->clients = calloc(o->clients, sizeof *s->clients);
    s->slot = calloc(o->tunnels, sizeof *s->slot);
    char err[200] = "";
    sluice_tls_t *tls = s->clients && s->slot ? sluice_tls_new(o->ca_file, err, sizeof err) : NULL;
    if (!tls) {
        snprintf(why, cap, "setup: %s", err[0] ? err : "out of memory");
        ts_soak_free(s);
        return NULL;
    }
    sluice_client_opts_t co = {.host = "127.0.0.1", .port = o->port, .tls = tls,
                               .on_state = on_state, .ud = s};
    for (size_t k = 0; k < o->clients; k++) {
        sluice_client_t *c = sluice_client_new(loop, &co, err, sizeof err);
        if (!c || sluice_client_connect(c) != SLUICE_OK) {
            snprintf(why, cap, "cannot start client %zu: %s", k, c ? "connect" : err);
            sluice_client_free(c);
            sluice_tls_free(tls);
            ts_soak_free(s);
            return NULL;
        }
        s->clients[s->nclients++] = c;
    }
    sluice_tls_free(tls);
    for (size_t k = 0; k < o->tunnels; k++) {
        if (slot_open(s, k) < 0) {
            snprintf(why, cap, "sluice_tunnel_open failed");
            ts_soak_free(s);
            return NULL;
        }
    }
    while (s->tot.opened < o->tunnels && !s->tot.unexpected && ts_now_ms() < deadline)
        ev_run(loop, EVRUN_ONCE);
    if (s->tot.opened < o->tunnels || s->tot.unexpected) {
        if (s->tot.unexpected)
            snprintf(why, cap, "%s", s->tot.why);
        else
            snprintf(why, cap, "%llu of %zu tunnels open at the deadline",
                     (unsigned long long)s->tot.opened, o->tunnels);
        ts_soak_free(s);
        return NULL;
    }
    ev_timer_start(loop, &s->churn);
    return s;
}

void ts_soak_start(ts_soak_t *s)
{
    s->t0_ns = ts_now_ns();
    s->j = 0;
    s->pacing = 1;
    ev_timer_start(s->loop, &s->tick);
}

void ts_soak_window(ts_soak_t *s, ts_soak_window_t *w)
{
    *w = s->w;
    memset(&s->w, 0, sizeof s->w);
    ts_hist_init(&s->w.rtt);
}

void ts_soak_totals(const ts_soak_t *s, ts_soak_totals_t *t)
{
    *t = s->tot;
    t->live = 0;
    for (size_t k = 0; k < s->o.tunnels; k++)
        t->live += s->slot[k] != NULL;
    t->retiring = s->retiring;
}

int ts_soak_finish(ts_soak_t *s, int64_t deadline)
{
    s->pacing = 0;
    s->finishing = 1;
    ev_timer_stop(s->loop, &s->tick);
    for (size_t k = 0; k < s->o.tunnels; k++) {
        inst_t *i = s->slot[k];
        s->slot[k] = NULL;
        if (!i)
            continue;
        /* One still opening is retired once open (on_open): cancelling it
         * could leave the gateway a stream reset after its 200, which it
         * parks for a resume (resume_grace_ms) with its backend socket. */
        if (i->state == I_OPEN)
            retire(s, i);
    }
    retire_check(s);
    while (s->all && ts_now_ms() < deadline)
        ev_run(s->loop, EVRUN_ONCE);
    return s->all ? -1 : 0;
}

void ts_soak_free(ts_soak_t *s)
{
    if (!s)
        return;
    ev_timer_stop(s->loop, &s->tick);
    ev_timer_stop(s->loop, &s->churn);
    for (size_t k = 0; k < s->nclients; k++)
        sluice_client_free(s->clients[k]); /* no callbacks after this */
    while (s->all) {
        inst_t *i = s->all;
        s->all = i->next;
        free(i);
    }
    free(s->clients);
    free(s->slot);
    free(s);
}

