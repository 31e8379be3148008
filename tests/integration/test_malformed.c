/*
 * test_malformed.c — a malformed capsule stream ends only its own stream.
 *
 * nghttp (an independent HTTP/2 client) uploads bad capsule bytes on a tunnel
 * request. The gateway must answer that stream with a CLOSE(protocol error)
 * capsule and reset it (RFC 9297 §3.3: a malformed capsule is a stream error),
 * while a shim tunnel on the same gateway keeps echoing before and after.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../proto/capsule.h"
#include "../../proto/cred.h"
#include "../support/ts_config.h"
#include "../support/ts_fixture.h"
#include "../support/ts_flow.h"
#include "../support/ts_pkt.h"
#include "../support/ts_proc.h"
#include "../support/ts_util.h"

static ts_fixture_t fx;
static ts_flow_t flows[2];
static size_t nflows;
static int fd = -1;
static ts_run_t run;

static void teardown(void)
{
    for (size_t i = 0; i < nflows; i++)
        ts_flow_free(&flows[i]);
    if (fd >= 0)
        close(fd);
    ts_run_free(&run);
    ts_fixture_teardown(&fx);
}

/* Round trips 10 packets through the shim; tag tells before from after. */
static void shim_still_echoes(const ts_shim_t *s, uint16_t tag, const char *when)
{
    ts_flow_t *f = &flows[nflows++];
    cr_assert_eq(ts_flow_init_mixed(f, fd, &s->listen, 10, tag, 4), 0);
    ts_flows_run(f, 1, ts_deadline(ts_ms(10000)));
    cr_expect_eq(f->matched, f->n, "shim tunnel %s the bad stream: %zu of %zu came back", when,
                 f->matched, f->n);
    cr_expect_eq(f->foreign, 0, "shim tunnel %s the bad stream: %zu foreign replies", when,
                 f->foreign);
}

static void bad_stream(const char *label, const uint8_t *bytes, size_t len)
{
    cr_assert_not_null(ts_build_dir(), "SLUICE_BUILD is not set (tests/run.sh sets it)");
    cr_assert_eq(ts_fixture_start(&fx, AF_INET, NULL), 0, "sluiced did not start (output above)");
    ts_shim_t *s;
    const char *why = NULL;
    cr_assert_eq(ts_fixture_add_live_shim(&fx, &s, &fd, &why), 0, "%s", why);
    shim_still_echoes(s, 1, "before");

    char file[PATH_MAX], url[256], uh[CRED_USERNAME_MAX + 32], ch[CRED_B64_MAX + 64];
    char username[CRED_USERNAME_MAX], cred[CRED_B64_MAX + 1];
    cr_assert_eq(ts_tmppath("bad-capsules.bin", file, sizeof file), 0);
    cr_assert_eq(ts_write_file(file, bytes, len), 0);
    cr_assert_eq(ts_cred_mint(CRED_SHA1, TS_FX_SECRET, 600, NULL, username, sizeof username,
                              cred, sizeof cred),
                 0);
    snprintf(uh, sizeof uh, "tunnel-username: %s", username);
    snprintf(ch, sizeof ch, "tunnel-credential: %s", cred);
    cr_assert_eq(ts_gateway_url(&fx.gw, 0, "/v1/tunnel/acme/sfu", url, sizeof url), 0);
    char *argv[] = {"nghttp", "-v", "-t", "10", "-H", uh, "-H", ch, "-d", file, url, NULL};
    cr_assert_eq(ts_run(argv, NULL, ts_deadline(ts_ms(20000)), &run), 0, "cannot run nghttp");

    /* nghttp -v prints frames and the response body to stdout, interleaved. */
    cr_expect(ts_memmem(run.out, run.out_len, ":status: 200"),
              "%s: no 200 response headers before the error; nghttp said:\n%s", label, run.out);
    uint64_t code = UINT64_MAX;
    char reason[256] = "";
    int found = ts_find_close((const uint8_t *)run.out, run.out_len, &code, reason, sizeof reason);
    cr_expect_eq(found, 0, "%s: no CLOSE capsule in the response; nghttp said:\n%s", label,
                 run.out);
    if (found == 0)
        cr_log_info("%s: CLOSE %llu \"%s\"", label, (unsigned long long)code, reason);
    if (found == 0)
        cr_expect_eq(code, CLOSE_PROTOCOL_ERROR,
                     "%s: CLOSE code %llu (%s, \"%s\"), expected %d (protocol error)", label,
                     (unsigned long long)code, capsule_close_name(code), reason,
                     CLOSE_PROTOCOL_ERROR);
    cr_expect(ts_memmem(run.out, run.out_len, "recv RST_STREAM"),
              "%s: the stream was not reset (no RST_STREAM received); nghttp said:\n%s", label,
              run.out);
    cr_expect(!ts_memmem(run.out, run.out_len, "recv GOAWAY"),
              "%s: the gateway closed the whole connection (GOAWAY) for a stream error", label);

    size_t nsrc = ts_echo_sources(fx.echo, NULL, 0);
    cr_expect_eq(nsrc, 1, "%s: the backend saw %zu sources; only the shim's tunnel should have "
                          "reached it (nothing after a malformed capsule is delivered)",
                 label, nsrc);

    shim_still_echoes(s, 2, "after");
    const char *what;
    int exit_code;
    cr_assert_eq(ts_fixture_stop(&fx, &what, &exit_code), 0, "%s exited with code %d", what,
                 exit_code);
}

Test(malformed, oversized_capsule, .fini = teardown)
{
    /* DATAGRAM declaring a 1,000,000-byte value (> the 65535 default
     * max_capsule): an error as soon as the length is read. */
    uint8_t bytes[64] = {0x00, 0x80, 0x0f, 0x42, 0x40};
    memset(bytes + 5, 0xab, sizeof bytes - 5);
    bad_stream("oversized DATAGRAM", bytes, sizeof bytes);
}

Test(malformed, datagram_without_context_id, .fini = teardown)
{
    /* DATAGRAM with an empty value: no context id (the sluice v1 DATAGRAM value
     * starts with one, as in RFC 9298 §5), followed by a valid DATAGRAM that
     * must not be delivered: the stream is dead after the error. */
    uint8_t bytes[64] = {0x00, 0x00};
    uint8_t pkt[32];
    size_t n = ts_pkt_rtp(pkt, sizeof pkt, sizeof pkt, 1, 0, 1, 1);
    ssize_t w = capsule_encode_datagram(bytes + 2, sizeof bytes - 2, pkt, n);
    cr_assert_gt(w, 0);
    bad_stream("empty DATAGRAM", bytes, 2 + (size_t)w);
}
