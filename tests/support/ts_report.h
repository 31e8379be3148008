/*
 * ts_report.h — lines every benchmark report starts with: the machine and the
 * libraries it was measured with.
 */
#ifndef SLUICE_TS_REPORT_H
#define SLUICE_TS_REPORT_H

#include <stddef.h>

/* Appends "- machine: ..." and "- libraries: ..." lines (ts_appendf). */
void ts_report_machine(char *out, size_t cap, size_t *pos);

#endif
