/*
 * test_resume.c — session resume (proto/README.md §8.1), PING capsules,
 * per-kind idle limits and downlink bursts, driven in memory by the harness
 * with a real UDP backend socket: the backend's view of the tunnel's source
 * address is what proves that a resumed tunnel kept its flow.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../../gateway/session.h"
#include "../../gateway/tunnel.h"
#include "../../gateway/util.h"
#include "../../proto/capsule.h"
#include "../../proto/token.h"
#include "harness.c"

#define PATH "/v1/tunnel/acme/sfu"
/* Media may wait while parked: these tests resume within it. */
#define LONG_AGE "\"media_queue_age_ms\":60000"

static const uint8_t rtp[] = {0x80, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0,
                              0x12, 0x34, 0x56, 0x78, 'm',  'e',  'd',  'i', 'a'};
static const uint8_t stun[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2,
                                 3,    4,    5,    6,    7,    8,    9,    10,   11, 12};

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
    return x->sin_family == y->sin_family && x->sin_port == y->sin_port &&
           x->sin_addr.s_addr == y->sin_addr.s_addr;
}

/* The one session in the table, or NULL. */
static session_t *only_session(harness_t *h)
{
    session_t *found = NULL;
    for (size_t i = 0; i < SESSION_BUCKETS; i++) {
        list_t *head = &h->srv.sessions.buckets[i];
        if (!list_empty(head)) {
            cr_assert_null(found, "more than one session");
            found = LIST_ENTRY(head->next, session_t, _link);
        }
    }
    return found;
}

static int parked_holds(harness_t *h, void *arg)
{
    session_t *s = only_session(h);
    return s && session_parked(s) && sendq_queued(&s->t->down) >= *(size_t *)arg;
}

static int parked_expired(harness_t *h, void *arg)
{
    return h->srv.counters.sessions_expired == 1;
}

static int stream_closed(harness_t *h, void *arg)
{
    return h->streams[*(int *)arg].closed;
}

static int stream_ended(harness_t *h, void *arg)
{
    return h->streams[*(int *)arg].end_stream;
}

static int stream_has_close(harness_t *h, void *arg)
{
    int idx = *(int *)arg;
    return h_count_capsules(h, idx, CAPSULE_CLOSE) > 0;
}

/* Opens a tunnel, proves it with one datagram, and returns the backend's view
 * of its source address; the session token goes to token. */
static struct sockaddr_storage open_live(harness_t *h, const char *path, char *token)
{
    int s = h_open(h, path);
    cr_assert_eq(h->streams[s].status, 200);
    cr_assert_eq(strlen(h->streams[s].session), TOKEN_TEXT_LEN, "tunnel-session \"%s\"",
                 h->streams[s].session);
    uint8_t raw[TOKEN_BYTES];
    cr_assert_eq(token_decode(h->streams[s].session, TOKEN_TEXT_LEN, raw), 0);
    strcpy(token, h->streams[s].session);
    return h_relay_up(h, s, rtp, sizeof rtp);
}

Test(resume, after_the_connection_dies_the_flow_keeps_its_port_and_parked_packets)
{
    harness_t h;
    h_init(&h, LONG_AGE, 0);
    char token[32];
    struct sockaddr_storage before = open_live(&h, PATH, token);

    h_reconnect(&h); /* the TCP connection is gone */
    cr_assert_eq(h.srv.counters.sessions_parked, 1u);
    cr_assert_eq(h.srv.counters.tunnels_active, 1u, "the parked tunnel is still open");

    /* The backend keeps talking while nobody is attached. */
    h_backend_send(&h, &before, rtp, sizeof rtp);
    h_backend_send(&h, &before, stun, sizeof stun);
    size_t want = sizeof rtp + sizeof stun;
    cr_assert(h_loop_until(&h, parked_holds, &want, 2000), "the parked tunnel queued nothing");

    int s = h_open_as(&h, PATH, 600, NULL, token);
    cr_assert_eq(h.streams[s].status, 200);
    cr_assert_str_eq(h.streams[s].session, token, "the same token comes back");
    h_wait_capsules(&h, s, 2);
    cr_assert_eq(h_count_capsules(&h, s, CAPSULE_DATAGRAM), 1);
    cr_assert_eq(h_count_capsules(&h, s, CAPSULE_SIGNAL), 1);
    uint64_t type;
    const uint8_t *v;
    size_t len;
    h_nth_capsule(&h, s, 1, &type, &v, &len);
    cr_assert_eq(type, CAPSULE_DATAGRAM, "signaling first, then the media");
    cr_assert_arr_eq(v + 1, rtp, sizeof rtp);

    struct sockaddr_storage after = h_relay_up(&h, s, rtp, sizeof rtp);
    cr_assert(same_addr(&before, &after), "the backend sees one source address and port");
    cr_assert_eq(h.srv.counters.sessions_resumed, 1u);
    cr_assert_eq(h.srv.counters.tunnels_active, 1u);
    cr_assert_eq(h.srv.counters.tunnels_opened, 1u, "a resume opens no new flow");
    h_fini(&h);
}

Test(resume, a_client_reset_without_close_parks_too)
{
    harness_t h;
    h_init(&h, LONG_AGE, 0);
    char token[32];
    struct sockaddr_storage before = open_live(&h, PATH, token);
    int first = 0;
    nghttp2_submit_rst_stream(h.client, NGHTTP2_FLAG_NONE, h.streams[first].id, NGHTTP2_CANCEL);
    cr_assert(h_until(&h, stream_closed, &first, 2000));
    cr_assert_eq(h.srv.counters.sessions_parked, 1u);

    int s = h_open_as(&h, PATH, 600, NULL, token);
    cr_assert_eq(h.streams[s].status, 200);
    struct sockaddr_storage after = h_relay_up(&h, s, rtp, sizeof rtp);
    cr_assert(same_addr(&before, &after));
    h_fini(&h);
}

Test(resume, refusals_are_one_answer_for_every_mismatch)
{
    harness_t h;
    h_init_turn(&h, LONG_AGE, 0, 1);
    char token[32];
    open_live(&h, PATH, token);
    h_reconnect(&h);

    char unknown[TOKEN_TEXT_LEN + 1];
    uint8_t raw[TOKEN_BYTES] = {0};
    token_encode(raw, unknown);
    struct {
        const char *path, *user, *token;
        int status;
    } cases[] = {
        {PATH, NULL, unknown, 410},                    /* no such session */
        {PATH, "mallory", token, 410},                 /* another user */
        {"/v1/tunnel/other/sfu", NULL, token, 410},    /* another tenant */
        {"/v1/tunnel/acme/turn", NULL, token, 410},    /* another kind */
        {PATH, NULL, "short", 400},
        {PATH, NULL, "AAAAAAAAAAAAAAAAAAAAA+", 400},   /* not base64url */
        {PATH, NULL, "AAAAAAAAAAAAAAAAAAAAAB", 400},   /* not canonical */
        {PATH, NULL, "AAAAAAAAAAAAAAAAAAAAAAAA", 400}, /* too long */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int s = h_open_as(&h, cases[i].path, 600, cases[i].user, cases[i].token);
        cr_assert_eq(h.streams[s].status, cases[i].status, "case %zu: %d, want %d", i,
                     h.streams[s].status, cases[i].status);
        cr_assert_str_eq(h.streams[s].session, "", "no token on a refusal");
        if (cases[i].status == 410) {
            cr_assert(h_until(&h, stream_ended, &s, 2000));
            cr_assert(h.streams[s].down_len >= 26);
            cr_assert(memcmp(h.streams[s].down, "session unknown or expired", 26) == 0);
        }
        if (h.nstreams == H_STREAMS)
            h_reconnect(&h);
    }
    cr_assert_eq(h.srv.counters.requests_rejected[request_status_index(410)], 4u);
    /* None of them disturbed the parked session. */
    int s = h_open_as(&h, PATH, 600, NULL, token);
    cr_assert_eq(h.streams[s].status, 200);
    h_fini(&h);
}

Test(resume, after_the_grace_period_the_socket_closes)
{
    harness_t h;
    h_init(&h, "\"resume_grace_ms\":50", 0);
    char token[32];
    open_live(&h, PATH, token);
    h_reconnect(&h);
    cr_assert_eq(h.srv.counters.tunnels_active, 1u);
    cr_assert(h_loop_until(&h, parked_expired, NULL, 2000), "the grace period never ended");
    cr_assert_eq(h.srv.counters.tunnels_active, 0u, "the parked socket is closed");
    cr_assert_null(only_session(&h));
    int s = h_open_as(&h, PATH, 600, NULL, token);
    cr_assert_eq(h.streams[s].status, 410);
    h_fini(&h);
}

Test(resume, a_resume_of_an_attached_session_takes_it_over)
{
    harness_t h;
    h_init(&h, LONG_AGE, 0);
    char token[32];
    struct sockaddr_storage before = open_live(&h, PATH, token);
    int first = 0;
    int s = h_open_as(&h, PATH, 600, NULL, token);
    cr_assert_eq(h.streams[s].status, 200);
    cr_assert_str_eq(h.streams[s].session, token);
    h_wait_capsules(&h, first, 1);
    h_assert_close(&h, first, 0, CLOSE_TAKEN_OVER);
    cr_assert(h.streams[first].end_stream, "the old stream ends");
    cr_assert_eq(h.srv.counters.sessions_taken_over, 1u);

    struct sockaddr_storage after = h_relay_up(&h, s, rtp, sizeof rtp);
    cr_assert(same_addr(&before, &after));
    h_backend_send(&h, &after, stun, sizeof stun);
    h_wait_capsules(&h, s, 1);
    cr_assert_eq(h_count_capsules(&h, first, CAPSULE_SIGNAL), 0, "nothing more for the old one");
    h_fini(&h);
}

Test(resume, credential_expiry_parks_and_a_fresh_credential_resumes, .timeout = 20)
{
    harness_t h;
    h_init(&h, LONG_AGE, 0);
    int first = h_open_ttl(&h, PATH, 2); /* not 1: see test_tunnel's expiry test */
    cr_assert_eq(h.streams[first].status, 200);
    char token[32];
    strcpy(token, h.streams[first].session);
    struct sockaddr_storage before = h_relay_up(&h, first, rtp, sizeof rtp);
    cr_assert(h_until(&h, stream_has_close, &first, 5000), "no CLOSE at expiry");
    h_assert_close(&h, first, 0, CLOSE_CREDENTIAL_EXPIRED);
    cr_assert_eq(h.srv.counters.sessions_parked, 1u);

    int s = h_open_as(&h, PATH, 600, NULL, token);
    cr_assert_eq(h.streams[s].status, 200);
    struct sockaddr_storage after = h_relay_up(&h, s, rtp, sizeof rtp);
    cr_assert(same_addr(&before, &after), "the flow survives the credential's expiry");
    tunnel_t *t = nghttp2_session_get_stream_user_data(h.conn->h2, h.streams[s].id);
    cr_assert_not_null(t);
    cr_assert_gt(t->expires, compat_mono_ns() + 500 * UTIL_MS_NS, "the new expiry counts");
    h_fini(&h);
}

Test(resume, no_resume_after_close_end_stream_or_drain)
{
    harness_t h;
    h_init(&h, LONG_AGE, 0);
    char token[32];
    open_live(&h, PATH, token);
    h_send_capsule(&h, 0, CAPSULE_CLOSE, "\x00", 1);
    int first = 0;
    cr_assert(h_until(&h, stream_ended, &first, 2000));
    int s = h_open_as(&h, PATH, 600, NULL, token);
    cr_assert_eq(h.streams[s].status, 410, "CLOSE ends the session");

    h_reconnect(&h);
    open_live(&h, PATH, token);
    h_end(&h, 0);
    cr_assert(h_until(&h, stream_closed, &first, 2000));
    s = h_open_as(&h, PATH, 600, NULL, token);
    cr_assert_eq(h.streams[s].status, 410, "END_STREAM ends the session");

    h_reconnect(&h);
    open_live(&h, PATH, token);
    conn_drain(h.conn);
    h_pump(&h);
    h_reconnect(&h);
    s = h_open_as(&h, PATH, 600, NULL, token);
    cr_assert_eq(h.streams[s].status, 410, "a drained tunnel is not parked");
    cr_assert_eq(h.srv.counters.sessions_parked, 0u);
    h_fini(&h);
}

Test(resume, parked_sessions_count_toward_max_tunnels)
{
    harness_t h;
    h_init(&h, LONG_AGE ",\"max_tunnels\":1", 0);
    char token[32];
    open_live(&h, PATH, token);
    h_reconnect(&h);
    int s = h_open(&h, PATH);
    cr_assert_eq(h.streams[s].status, 503, "the parked tunnel holds the only slot");
    s = h_open_as(&h, PATH, 600, NULL, token);
    cr_assert_eq(h.streams[s].status, 200, "a resume needs no new slot");
    h_fini(&h);
}

Test(resume, off_when_the_grace_period_is_zero)
{
    harness_t h;
    h_init(&h, "\"resume_grace_ms\":0", 0);
    int s = h_open(&h, PATH);
    cr_assert_eq(h.streams[s].status, 200);
    cr_assert_str_eq(h.streams[s].session, "", "no tunnel-session header");
    h_relay_up(&h, s, rtp, sizeof rtp);
    h_reconnect(&h);
    cr_assert_eq(h.srv.counters.tunnels_active, 0u, "nothing parked");
    char tok[TOKEN_TEXT_LEN + 1];
    uint8_t raw[TOKEN_BYTES] = {1};
    token_encode(raw, tok);
    s = h_open_as(&h, PATH, 600, NULL, tok);
    cr_assert_eq(h.streams[s].status, 410);
    h_fini(&h);
}

/* Issue 8 §4: the fleet's peers, as fleet.c would give them. */
static const char *peer_stub(void *ud, uint32_t tag)
{
    return tag == token_node_tag("gw-b", 4) ? "127.0.0.1:9443" : NULL;
}

static void tagged(const char *node, uint8_t fill, char out[TOKEN_TEXT_LEN + 1])
{
    uint8_t raw[TOKEN_BYTES];
    memset(raw, fill, sizeof raw);
    token_set_tag(raw, token_node_tag(node, strlen(node)));
    token_encode(raw, out);
}

Test(resume, tokens_name_their_node_and_another_nodes_get_a_421)
{
    harness_t h;
    h_init(&h, LONG_AGE, 0);
    h.cfg->node.id = strdup("gw-a"); /* the harness's snapshot, as $.node.id would set it */
    char token[32];
    open_live(&h, PATH, token);
    uint8_t raw[TOKEN_BYTES];
    cr_assert_eq(token_decode(token, TOKEN_TEXT_LEN, raw), 0);
    cr_assert_eq(token_tag(raw), token_node_tag("gw-a", 4), "the token names this node");

    char b[TOKEN_TEXT_LEN + 1], a[TOKEN_TEXT_LEN + 1], z[TOKEN_TEXT_LEN + 1];
    tagged("gw-b", 7, b);
    tagged("gw-a", 7, a);
    tagged("gw-z", 7, z);
    /* No fleet: every miss is a 410. */
    int s = h_open_as(&h, PATH, 600, NULL, b);
    cr_assert_eq(h.streams[s].status, 410);
    cr_assert_str_eq(h.streams[s].node, "");

    h.srv.sessions.peer = peer_stub;
    s = h_open_as(&h, PATH, 600, NULL, b);
    cr_assert_eq(h.streams[s].status, 421, "another live node's session");
    cr_assert_str_eq(h.streams[s].node, "127.0.0.1:9443");
    cr_assert_str_eq(h.streams[s].session, "", "no token of ours");
    cr_assert_eq(h.srv.counters.requests_rejected[request_status_index(421)], 1u);
    s = h_open_as(&h, PATH, 600, NULL, a);
    cr_assert_eq(h.streams[s].status, 410, "our own tag, no such session: never a loop");
    s = h_open_as(&h, PATH, 600, NULL, z);
    cr_assert_eq(h.streams[s].status, 410, "a node the fleet does not know");
    /* The real session still resumes. */
    s = h_open_as(&h, PATH, 600, NULL, token);
    cr_assert_eq(h.streams[s].status, 200);
    h.srv.sessions.peer = NULL;
    h_fini(&h);
}
