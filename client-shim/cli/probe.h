/*
 * probe.h — `sluice-shim probe`: runs only the checks of the fallback ladder
 * (docs/shim.md, "Fallback ladder") and prints which rungs work, with times.
 */
#ifndef CLI_PROBE_H
#define CLI_PROBE_H

#include "../lib/shim_cli.h"

/* Runs the probe on its own loop and prints its report on stdout. The
 * proxy options of o are honoured as by the relay, with proxy_user and
 * proxy_password (from --proxy-user-file; NULL: none, borrowed for the
 * call). Returns the exit code: 0 when direct UDP or a tunnel works, 1 when
 * neither does, 2 for a CA file that cannot be loaded. */
int probe_run(const shim_cli_opts_t *o, const char *proxy_user, const char *proxy_password);

#endif
