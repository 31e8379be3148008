/*
 * test_names.c — the shim takes tenant and region names by the gateway's rule
 * (proto/name.h): --tenant and --region accept exactly what name_valid
 * accepts, so a name the shim lets through is never a 400 at the gateway.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../../client-shim/lib/shim_cli.h"
#include "../../proto/name.h"

static int parse_with(const char *opt, const char *value)
{
    char *argv[] = {"sluice-shim", "--gateway", "https://127.0.0.1:8443", "--tenant", "demo",
                    "--kind", "sfu", "--listen", "127.0.0.1:0", "--secret", "s",
                    (char *)opt, (char *)value, NULL};
    int argc = (int)(sizeof argv / sizeof argv[0]) - 1;
    if (!strcmp(opt, "--tenant")) { /* replace the default instead of repeating it */
        argv[4] = (char *)value;
        argc -= 2;
        argv[argc] = NULL;
    }
    shim_cli_opts_t o;
    char err[256] = "";
    int rc = shim_cli_parse(argc, argv, &o, err, sizeof err);
    if (rc != 0)
        cr_expect(strstr(err, opt), "%s %s: the message \"%s\" does not name the option", opt,
                  value, err);
    return rc;
}

Test(names, tenant_and_region_follow_the_gateway_rule)
{
    char long64[NAME_LEN_MAX + 1], long65[NAME_LEN_MAX + 2];
    memset(long64, 'a', NAME_LEN_MAX);
    long64[NAME_LEN_MAX] = '\0';
    memset(long65, 'b', NAME_LEN_MAX + 1);
    long65[NAME_LEN_MAX + 1] = '\0';
    const char *names[] = {"demo", "eu-west", "a.b_c-9", long64, long65, "a~b", "a b",
                           "a/b", "a%2f", "caf\xc3\xa9", "a:b"};
    static const char *const opts[] = {"--tenant", "--region"};
    for (size_t k = 0; k < 2; k++) {
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            int want = name_valid(names[i], strlen(names[i]));
            int got = parse_with(opts[k], names[i]) == 0;
            cr_expect_eq(got, want, "%s \"%s\": shim %s, gateway rule %s", opts[k], names[i],
                         got ? "accepts" : "refuses", want ? "accepts" : "refuses");
        }
    }
}
