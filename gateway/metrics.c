/*
 * metrics.c — the /metrics page (see metrics.h).
 */
#include "metrics.h"

#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "stats.h"

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

/* The answer /readyz gives, for alerting without a separate HTTP probe. */
static void render_ready(prom_buf_t *b, const server_t *s)
{
    const char *why = NULL;
    prom_family(b, "sluice_ready", PROM_GAUGE,
                "1 while /readyz answers 200; 0 while draining or no backend of this "
                "region is healthy.");
    prom_u64(b, "sluice_ready", NULL, 0, (uint64_t)(server_ready(s, &why) != 0));
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

/* The relay share: why clients needed the tunnel, and how they reached us
 * (the shim's tunnel-fallback and tunnel-route, proto/README.md §2.1). */
static void render_relay_share(prom_buf_t *b, const stats_table_t *st)
{
    prom_family(b, "sluice_tunnels_by_fallback_total", PROM_COUNTER,
                "Tunnels opened, by tenant, kind and the client's reason for the tunnel "
                "(\"none\": not reported).");
    for (size_t i = 0; i < st->n; i++) {
        const stats_entry_t *e = st->v[i];
        for (int f = 0; f < FALLBACK_COUNT; f++) {
            prom_label_t l[] = {{"tenant", e->tenant},
                                {"kind", config_kind_name(e->kind)},
                                {"reason", fallback_name((enum fallback)f)}};
            prom_u64(b, "sluice_tunnels_by_fallback_total", l, 3, e->by_fallback[f]);
        }
    }
    prom_family(b, "sluice_tunnels_by_route_total", PROM_COUNTER,
                "Tunnels opened, by tenant, kind and the client's route to the gateway "
                "(direct or through a proxy; \"none\": not reported).");
    for (size_t i = 0; i < st->n; i++) {
        const stats_entry_t *e = st->v[i];
        for (int r = 0; r < ROUTE_COUNT; r++) {
            prom_label_t l[] = {{"tenant", e->tenant},
                                {"kind", config_kind_name(e->kind)},
                                {"route", route_name((enum route)r)}};
            prom_u64(b, "sluice_tunnels_by_route_total", l, 3, e->by_route[r]);
        }
    }
}

static void render_tenants(prom_buf_t *b, const stats_table_t *st)
{
    prom_family(b, "sluice_tunnels_open", PROM_GAUGE,
                "Tunnels open now (on a stream, closing or parked), by tenant and kind.");
    for (size_t i = 0; i < st->n; i++) {
        const stats_entry_t *e = st->v[i];
        prom_label_t l[] = {{"tenant", e->tenant}, {"kind", config_kind_name(e->kind)}};
        prom_u64(b, "sluice_tunnels_open", l, 2, e->refs);
    }
    prom_family(b, "sluice_tunnels_opened_total", PROM_COUNTER,
                "Tunnels opened (200), by tenant and kind; resumes are not counted.");
    for (size_t i = 0; i < st->n; i++) {
        const stats_entry_t *e = st->v[i];
        prom_label_t l[] = {{"tenant", e->tenant}, {"kind", config_kind_name(e->kind)}};
        prom_u64(b, "sluice_tunnels_opened_total", l, 2, e->opened);
    }
    render_relay_share(b, st);
    prom_family(b, "sluice_tunnels_closed_total", PROM_COUNTER,
                "Tunnels ended, by tenant, kind and CLOSE code (\"none\": the stream or "
                "connection went without one).");
    for (size_t i = 0; i < st->n; i++) {
        const stats_entry_t *e = st->v[i];
        for (size_t k = 0; k < STATS_CLOSE_SLOTS; k++) {
            prom_label_t l[] = {{"tenant", e->tenant},
                                {"kind", config_kind_name(e->kind)},
                                {"code", close_slot_name(k)}};
            prom_u64(b, "sluice_tunnels_closed_total", l, 3, e->closed[k]);
        }
    }
    prom_family(b, "sluice_packets_total", PROM_COUNTER,
                "Packets relayed, by tenant, kind and direction (up: to the backend).");
    for (size_t i = 0; i < st->n; i++) {
        const stats_entry_t *e = st->v[i];
        prom_label_t l[] = {{"tenant", e->tenant},
                            {"kind", config_kind_name(e->kind)},
                            {"direction", "up"}};
        prom_u64(b, "sluice_packets_total", l, 3, e->traffic.up_packets);
        l[2].value = "down";
        prom_u64(b, "sluice_packets_total", l, 3, e->traffic.down_packets);
    }
    prom_family(b, "sluice_bytes_total", PROM_COUNTER,
                "UDP payload bytes relayed, by tenant, kind and direction.");
    for (size_t i = 0; i < st->n; i++) {
        const stats_entry_t *e = st->v[i];
        prom_label_t l[] = {{"tenant", e->tenant},
                            {"kind", config_kind_name(e->kind)},
                            {"direction", "up"}};
        prom_u64(b, "sluice_bytes_total", l, 3, e->traffic.up_bytes);
        l[2].value = "down";
        prom_u64(b, "sluice_bytes_total", l, 3, e->traffic.down_bytes);
    }
    prom_family(b, "sluice_drops_total", PROM_COUNTER,
                "Packets not relayed, by tenant, kind and reason (docs/operations.md lists "
                "the reasons).");
    for (size_t i = 0; i < st->n; i++) {
        const stats_entry_t *e = st->v[i];
        for (int r = 0; r < DROP_REASON_COUNT; r++) {
            prom_label_t l[] = {{"tenant", e->tenant},
                                {"kind", config_kind_name(e->kind)},
                                {"reason", drop_reason_name((enum drop_reason)r)}};
            prom_u64(b, "sluice_drops_total", l, 3, e->traffic.drops[r]);
        }
    }
}

static void render_backends(prom_buf_t *b, const backend_table_t *bt)
{
    prom_family(b, "sluice_backend_up", PROM_GAUGE,
                "1 while a backend is in selection (probes answered, no ICMP errors).");
    for (size_t i = 0; bt && i < bt->n; i++) {
        prom_label_t l[] = {{"backend", bt->items[i].name}};
        prom_u64(b, "sluice_backend_up", l, 1, (uint64_t)(bt->items[i].up != 0));
    }
    prom_family(b, "sluice_backend_probes_total", PROM_COUNTER,
                "Health probes sent to a backend, by result.");
    for (size_t i = 0; bt && i < bt->n; i++) {
        const backend_t *be = &bt->items[i];
        prom_label_t l[] = {{"backend", be->name}, {"result", "answered"}};
        prom_u64(b, "sluice_backend_probes_total", l, 2, be->probes_answered);
        l[1].value = "unanswered";
        prom_u64(b, "sluice_backend_probes_total", l, 2,
                 be->probes_sent > be->probes_answered ? be->probes_sent - be->probes_answered
                                                        : 0);
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

int metrics_render(const server_t *s, const metrics_info_t *info, prom_buf_t *b)
{
    render_process(b, info);
    render_ready(b, s);
    render_store(b, info, &s->counters);
    render_conns(b, &s->counters);
    render_requests(b, &s->counters);
    render_tenants(b, &s->stats);
    render_backends(b, &s->backends);
    render_latency(b, &s->counters);
    return b->oom ? -1 : 0;
}
