/*
 * metrics.c — the /metrics page (see metrics.h).
 */
#include "metrics.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "log.h"
#include "stats.h"
#include "worker.h"

/* Time inside the gateway: 10 µs to 1 s. */
static const uint64_t residence_ns[] = {
    10000,    25000,    50000,     100000,    250000,    500000,    1000000,   2500000,
    5000000,  10000000, 25000000,  50000000,  100000000, 250000000, 500000000, 1000000000,
};
const prom_bounds_t counters_residence_bounds = {residence_ns,
                                                 sizeof residence_ns / sizeof *residence_ns};

/* Client round trips: 1 ms to 5 s. */
static const uint64_t rtt_ns[] = {
    1000000,   2500000,   5000000,   10000000,   25000000,   50000000,
    100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000,
};
const prom_bounds_t counters_rtt_bounds = {rtt_ns, sizeof rtt_ns / sizeof *rtt_ns};

/* The statuses of server_counters_t.requests_rejected, in its order
 * (request_status_index). */
static const char *const rejected_status[9] = {"400", "401", "403", "404", "405",
                                               "503", "410", "429", "421"};

static void counter(prom_buf_t *b, const char *name, const char *help, uint64_t v)
{
    prom_family(b, name, PROM_COUNTER, help);
    prom_u64(b, name, NULL, 0, v);
}

static void gauge(prom_buf_t *b, const char *name, const char *help, double v)
{
    prom_family(b, name, PROM_GAUGE, help);
    prom_double(b, name, NULL, 0, v);
}

static void render_process(prom_buf_t *b, const metrics_info_t *info)
{
    prom_family(b, "sluice_build_info", PROM_GAUGE, "Always 1; the version in a label.");
    prom_label_t v[] = {{"version", info->version}};
    prom_u64(b, "sluice_build_info", v, 1, 1);
    gauge(b, "process_start_time_seconds", "Start time of the process, unix seconds.",
          info->start_time_s);
}

static void render_store(prom_buf_t *b, const metrics_info_t *info, const server_counters_t *c)
{
    prom_label_t st[] = {{"store", info->store_type}};
    prom_family(b, "sluice_tenant_store_up", PROM_GAUGE,
                "1 while the tenant store is reachable (etcd: the watch runs); 0 while the "
                "gateway serves with its last tenant table.");
    prom_u64(b, "sluice_tenant_store_up", st, 1, (uint64_t)(info->store_up != 0));
    prom_family(b, "sluice_tenant_store_revision", PROM_GAUGE,
                "Revision of the tenant table in use.");
    prom_double(b, "sluice_tenant_store_revision", st, 1, (double)info->store_revision);
    prom_family(b, "sluice_config_reloads_total", PROM_COUNTER,
                "Config reloads (SIGHUP, admin API, tenant store) by result.");
    prom_label_t r[] = {{"result", "success"}};
    prom_u64(b, "sluice_config_reloads_total", r, 1, c->reloads_ok);
    r[0].value = "failure";
    prom_u64(b, "sluice_config_reloads_total", r, 1, c->reloads_failed);
    gauge(b, "sluice_config_last_reload_success_timestamp_seconds",
          "When the last reload succeeded, unix seconds; 0 if none has.",
          (double)c->reload_last_ok);
}

struct metrics_scrape;
static void render_workers(prom_buf_t *b, const struct metrics_scrape *m);

static void render_conns(prom_buf_t *b, const server_counters_t *c)
{
    prom_family(b, "sluice_connections_open", PROM_GAUGE, "Client connections open now.");
    prom_u64(b, "sluice_connections_open", NULL, 0, c->conns_active);
    counter(b, "sluice_connections_accepted_total", "Client connections accepted.",
            c->conns_accepted);
    prom_family(b, "sluice_connections_refused_total", PROM_COUNTER,
                "Connections closed at accept, by reason.");
    uint64_t by_source = c->conns_refused_source[0] + c->conns_refused_source[1] +
                         c->conns_refused_source[2];
    static const char *const src[3] = {"source_rate", "source_pending", "source_table_full"};
    for (int i = 0; i < 3; i++) {
        prom_label_t l[] = {{"reason", src[i]}};
        prom_u64(b, "sluice_connections_refused_total", l, 1, c->conns_refused_source[i]);
    }
    prom_label_t l[] = {{"reason", "max_connections"}};
    prom_u64(b, "sluice_connections_refused_total", l, 1,
             c->conns_refused > by_source ? c->conns_refused - by_source : 0);
    prom_family(b, "sluice_tls_handshake_failures_total", PROM_COUNTER,
                "TLS handshakes that failed or timed out, by reason.");
    for (int f = 0; f < TLS_FAIL_COUNT; f++) {
        prom_label_t k[] = {{"reason", tls_fail_name((enum tls_fail)f)}};
        prom_u64(b, "sluice_tls_handshake_failures_total", k, 1, c->tls_failures_by[f]);
    }
    prom_family(b, "sluice_connections_closed_total", PROM_COUNTER,
                "Client connections ended, by the first cause (docs/operations.md lists "
                "them).");
    for (int e = 0; e < CONN_END_COUNT; e++) {
        prom_label_t k[] = {{"reason", conn_end_name((enum conn_end)e)}};
        prom_u64(b, "sluice_connections_closed_total", k, 1, c->conns_closed[e]);
    }
    counter(b, "sluice_header_overflows_total",
            "Header blocks over the advertised list size or field count.", c->header_overflows);
    counter(b, "sluice_protocol_errors_total", "Tunnels reset for a capsule protocol error.",
            c->protocol_errors);
}

static void render_requests(prom_buf_t *b, const server_counters_t *c)
{
    prom_family(b, "sluice_http_responses_total", PROM_COUNTER,
                "Responses to tunnel requests, by status.");
    prom_label_t l[] = {{"status", "200"}};
    prom_u64(b, "sluice_http_responses_total", l, 1, c->tunnels_opened);
    for (size_t i = 0; i < sizeof rejected_status / sizeof *rejected_status; i++) {
        l[0].value = rejected_status[i];
        prom_u64(b, "sluice_http_responses_total", l, 1, c->requests_rejected[i]);
    }
    prom_family(b, "sluice_auth_failures_total", PROM_COUNTER,
                "Tunnel requests refused with 401, by reason (the client is not told which).");
    for (int a = 0; a < AUTH_FAIL_COUNT; a++) {
        prom_label_t k[] = {{"reason", auth_fail_name((enum auth_fail)a)}};
        prom_u64(b, "sluice_auth_failures_total", k, 1, c->auth_failures[a]);
    }
    prom_family(b, "sluice_sessions_total", PROM_COUNTER,
                "Resumable sessions by event (proto/README.md section 8.1).");
    const struct {
        const char *event;
        uint64_t v;
    } ev[] = {{"parked", c->sessions_parked},
              {"resumed", c->sessions_resumed},
              {"taken_over", c->sessions_taken_over},
              {"expired", c->sessions_expired}};
    for (size_t i = 0; i < sizeof ev / sizeof *ev; i++) {
        prom_label_t k[] = {{"event", ev[i].event}};
        prom_u64(b, "sluice_sessions_total", k, 1, ev[i].v);
    }
}

/* CLOSE codes as label values (proto/README.md section 4), in slot order. */
static const char *close_slot_name(size_t slot)
{
    static const char *const names[STATS_CLOSE_SLOTS] = {
        "normal",         "idle_timeout",  "protocol_error", "credential_expired",
        "tenant_disabled", "backend_unreachable", "overload", "shutting_down",
        "rate_limited",   "internal_error", "taken_over",    "other",
        "none",
    };
    return slot < STATS_CLOSE_SLOTS ? names[slot] : "other";
}

/* Per-tenant families: a head, then the rows of each (tenant, kind) entry.
 * A scrape renders them a slice of entries at a time (metrics_scrape_next),
 * so a long table never holds the loop for long. */

/* The (tenant, kind) labels and one more. */
#define TK_LABELS(e, k3, v3)                                                                  \
    {{"tenant", (e)->tenant}, {"kind", config_kind_name((e)->kind)}, {(k3), (v3)}}

static void rows_open(prom_buf_t *b, const char *name, const stats_entry_t *e)
{
    prom_label_t l[] = TK_LABELS(e, NULL, NULL);
    prom_u64(b, name, l, 2, e->refs);
}

static void rows_opened(prom_buf_t *b, const char *name, const stats_entry_t *e)
{
    prom_label_t l[] = TK_LABELS(e, NULL, NULL);
    prom_u64(b, name, l, 2, e->opened);
}

static void rows_fallback(prom_buf_t *b, const char *name, const stats_entry_t *e)
{
    for (int f = 0; f < FALLBACK_COUNT; f++) {
        prom_label_t l[] = TK_LABELS(e, "reason", fallback_name((enum fallback)f));
        prom_u64(b, name, l, 3, e->by_fallback[f]);
    }
}

static void rows_route(prom_buf_t *b, const char *name, const stats_entry_t *e)
{
    for (int r = 0; r < ROUTE_COUNT; r++) {
        prom_label_t l[] = TK_LABELS(e, "route", route_name((enum route)r));
        prom_u64(b, name, l, 3, e->by_route[r]);
    }
}

static void rows_closed(prom_buf_t *b, const char *name, const stats_entry_t *e)
{
    for (size_t k = 0; k < STATS_CLOSE_SLOTS; k++) {
        prom_label_t l[] = TK_LABELS(e, "code", close_slot_name(k));
        prom_u64(b, name, l, 3, e->closed[k]);
    }
}

static void rows_packets(prom_buf_t *b, const char *name, const stats_entry_t *e)
{
    prom_label_t l[] = TK_LABELS(e, "direction", "up");
    prom_u64(b, name, l, 3, e->traffic.up_packets);
    l[2].value = "down";
    prom_u64(b, name, l, 3, e->traffic.down_packets);
}

static void rows_bytes(prom_buf_t *b, const char *name, const stats_entry_t *e)
{
    prom_label_t l[] = TK_LABELS(e, "direction", "up");
    prom_u64(b, name, l, 3, e->traffic.up_bytes);
    l[2].value = "down";
    prom_u64(b, name, l, 3, e->traffic.down_bytes);
}

static void rows_drops(prom_buf_t *b, const char *name, const stats_entry_t *e)
{
    for (int r = 0; r < DROP_REASON_COUNT; r++) {
        prom_label_t l[] = TK_LABELS(e, "reason", drop_reason_name((enum drop_reason)r));
        prom_u64(b, name, l, 3, e->traffic.drops[r]);
    }
}

typedef struct tenant_family {
    const char *name;
    enum prom_type type;
    const char *help;
    void (*rows)(prom_buf_t *b, const char *name, const stats_entry_t *e);
} tenant_family_t;

static const tenant_family_t tenant_families[] = {
    {"sluice_tunnels_open", PROM_GAUGE,
     "Tunnels open now (on a stream, closing or parked), by tenant and kind.", rows_open},
    {"sluice_tunnels_opened_total", PROM_COUNTER,
     "Tunnels opened (200), by tenant and kind; resumes are not counted.", rows_opened},
    /* The relay share: why clients needed the tunnel, and how they reached us
     * (the shim's tunnel-fallback and tunnel-route, proto/README.md §2.1). */
    {"sluice_tunnels_by_fallback_total", PROM_COUNTER,
     "Tunnels opened, by tenant, kind and the client's reason for the tunnel "
     "(\"none\": not reported).",
     rows_fallback},
    {"sluice_tunnels_by_route_total", PROM_COUNTER,
     "Tunnels opened, by tenant, kind and the client's route to the gateway "
     "(direct or through a proxy; \"none\": not reported).",
     rows_route},
    {"sluice_tunnels_closed_total", PROM_COUNTER,
     "Tunnels ended, by tenant, kind and CLOSE code (\"none\": the stream or "
     "connection went without one).",
     rows_closed},
    {"sluice_packets_total", PROM_COUNTER,
     "Packets relayed, by tenant, kind and direction (up: to the backend).", rows_packets},
    {"sluice_bytes_total", PROM_COUNTER,
     "UDP payload bytes relayed, by tenant, kind and direction.", rows_bytes},
    {"sluice_drops_total", PROM_COUNTER,
     "Packets not relayed, by tenant, kind and reason (docs/operations.md lists the "
     "reasons).",
     rows_drops},
};

#define TENANT_FAMILIES (sizeof tenant_families / sizeof *tenant_families)

/* What the page shows of a backend, copied when the scrape starts. */
typedef struct backend_view {
    char name[64];
    int up;
    uint64_t sent, answered;
} backend_view_t;

static void render_backends(prom_buf_t *b, const backend_view_t *bv, size_t n)
{
    prom_family(b, "sluice_backend_up", PROM_GAUGE,
                "1 while a backend is in selection (probes answered, no ICMP errors).");
    for (size_t i = 0; i < n; i++) {
        prom_label_t l[] = {{"backend", bv[i].name}};
        prom_u64(b, "sluice_backend_up", l, 1, (uint64_t)(bv[i].up != 0));
    }
    prom_family(b, "sluice_backend_probes_total", PROM_COUNTER,
                "Health probes sent to a backend, by result.");
    for (size_t i = 0; i < n; i++) {
        prom_label_t l[] = {{"backend", bv[i].name}, {"result", "answered"}};
        prom_u64(b, "sluice_backend_probes_total", l, 2, bv[i].answered);
        l[1].value = "unanswered";
        prom_u64(b, "sluice_backend_probes_total", l, 2,
                 bv[i].sent > bv[i].answered ? bv[i].sent - bv[i].answered : 0);
    }
}

static void render_latency(prom_buf_t *b, const server_counters_t *c)
{
    prom_family(b, "sluice_packet_residence_seconds", PROM_HISTOGRAM,
                "Time a packet spends inside the gateway: up, from the read of the bytes "
                "that carried it to its send to the backend; down, from its receipt from the "
                "backend to its write into the client's stream.");
    prom_label_t l[] = {{"direction", "up"}};
    prom_hist_write(b, "sluice_packet_residence_seconds", l, 1, &c->up_residence,
                    &counters_residence_bounds);
    l[0].value = "down";
    prom_hist_write(b, "sluice_packet_residence_seconds", l, 1, &c->down_residence,
                    &counters_residence_bounds);
    prom_family(b, "sluice_client_rtt_seconds", PROM_HISTOGRAM,
                "Round trip to the client, from the gateway's PING capsules and their PONGs.");
    prom_hist_write(b, "sluice_client_rtt_seconds", NULL, 0, &c->rtt, &counters_rtt_bounds);
}

/* ------------------------------------------------------------------------ */
/* A scrape: a copy of the counters, rendered a slice at a time              */

struct metrics_scrape {
    metrics_info_t info;
    server_counters_t counters;
    size_t nworkers;                         /* event loops ($.workers) */
    uint64_t worker_accepted[CFG_WORKERS_MAX]; /* per loop: connections accepted */
    uint64_t worker_open[CFG_WORKERS_MAX];     /* per loop: connections open now */
    int ready;
    stats_entry_t *entries; /* copies of the table's entries, in its order */
    size_t n;
    backend_view_t *backends;
    size_t nbackends;
    size_t step; /* 0: the fixed head; 1..TENANT_FAMILIES: a family; then the tail */
    size_t i;    /* the next entry of the family being written */
};

/* One series per event loop, labelled with its index. */
static void per_worker(prom_buf_t *b, const char *name, enum prom_type type, const char *help,
                       const uint64_t *v, size_t n)
{
    prom_family(b, name, type, help);
    for (size_t i = 0; i < n; i++) {
        char id[24];
        snprintf(id, sizeof id, "%zu", i);
        prom_label_t l[] = {{"worker", id}};
        prom_u64(b, name, l, 1, v[i]);
    }
}

/* How the kernel spread connections over the loops (SO_REUSEPORT): every
 * other family is their sum. */
static void render_workers(prom_buf_t *b, const struct metrics_scrape *m)
{
    per_worker(b, "sluice_worker_connections_accepted_total", PROM_COUNTER,
               "Client connections accepted, per event loop ($.workers).", m->worker_accepted,
               m->nworkers);
    per_worker(b, "sluice_worker_connections_open", PROM_GAUGE,
               "Client connections open now, per event loop ($.workers).", m->worker_open,
               m->nworkers);
}

metrics_scrape_t *metrics_scrape_new(const server_t *s, const metrics_info_t *info)
{
    metrics_scrape_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->info = *info;
    m->counters = s->counters;
    const char *why;
    m->ready = server_ready(s, &why);
    size_t cap = s->stats.n;
    m->entries = s->stats.n ? malloc(s->stats.n * sizeof *m->entries) : NULL;
    m->backends = s->backends.n ? calloc(s->backends.n, sizeof *m->backends) : NULL;
    if ((s->stats.n && !m->entries) || (s->backends.n && !m->backends)) {
        metrics_scrape_free(m);
        return NULL;
    }
    for (size_t i = 0; i < s->stats.n; i++)
        m->entries[i] = *s->stats.v[i];
    m->n = s->stats.n;
    /* Every other worker copies its own counters and entries on its own
     * thread (worker.h); they are summed here, off the hot path. A worker
     * that does not answer leaves its part out rather than the page. */
    m->nworkers = s->group ? workers_count(s->group) : 1;
    m->worker_accepted[0] = s->counters.conns_accepted;
    m->worker_open[0] = s->counters.conns_active;
    if (m->nworkers > 1) {
        if (workers_collect(s->group, &m->counters, &m->entries, &m->n, &cap,
                            m->worker_accepted, m->worker_open) < 0)
            log_msg(LOG_WARN, "metrics: a worker's counters are missing from this scrape");
        m->n = stats_merge(m->entries, m->n);
    }
    for (size_t i = 0; i < s->backends.n; i++) {
        const backend_t *be = &s->backends.items[i];
        backend_view_t *v = &m->backends[i];
        snprintf(v->name, sizeof v->name, "%s", be->name);
        v->up = be->up;
        v->sent = be->probes_sent;
        v->answered = be->probes_answered;
    }
    m->nbackends = s->backends.n;
    return m;
}

int metrics_scrape_next(metrics_scrape_t *m, prom_buf_t *b, size_t budget)
{
    size_t start = b->len;
    while (!b->oom && b->len - start < budget) {
        if (m->step == 0) {
            render_process(b, &m->info);
            /* The answer /readyz gives, for alerting without an HTTP probe. */
            prom_family(b, "sluice_ready", PROM_GAUGE,
                        "1 while /readyz answers 200; 0 while draining or no backend of this "
                        "region is healthy.");
            prom_u64(b, "sluice_ready", NULL, 0, (uint64_t)(m->ready != 0));
            render_store(b, &m->info, &m->counters);
            render_conns(b, &m->counters);
            render_workers(b, m);
            render_requests(b, &m->counters);
            m->step++;
        } else if (m->step <= TENANT_FAMILIES) {
            const tenant_family_t *f = &tenant_families[m->step - 1];
            if (m->i == 0)
                prom_family(b, f->name, f->type, f->help);
            if (m->i < m->n) {
                f->rows(b, f->name, &m->entries[m->i++]);
            } else {
                m->step++;
                m->i = 0;
            }
        } else if (m->step == TENANT_FAMILIES + 1) {
            render_backends(b, m->backends, m->nbackends);
            render_latency(b, &m->counters);
            m->step++;
        } else {
            break;
        }
    }
    if (b->oom)
        return -1;
    return m->step <= TENANT_FAMILIES + 1;
}

void metrics_scrape_free(metrics_scrape_t *m)
{
    if (!m)
        return;
    free(m->entries);
    free(m->backends);
    free(m);
}

int metrics_render(const server_t *s, const metrics_info_t *info, prom_buf_t *b)
{
    metrics_scrape_t *m = metrics_scrape_new(s, info);
    int rc = m ? 1 : -1;
    while (rc == 1)
        rc = metrics_scrape_next(m, b, SIZE_MAX);
    metrics_scrape_free(m);
    return rc < 0 || b->oom ? -1 : 0;
}
