/* units.h: formatting of durations and sizes in the config's own syntax, for messages and docs. */
#ifndef TP_CONFIG_UNITS_H
#define TP_CONFIG_UNITS_H

#include <stddef.h>
#include <stdint.h>

#include "turnpike/settings.h"

/* The largest unit that divides exactly: 90000 -> "90s", 3600000 -> "1h", 0 -> "0". Returns buf. */
char *tp__format_duration(uint64_t ms, char *buf, size_t len);

/* The largest binary unit that divides exactly: 65536 -> "64KiB", 100 -> "100". Returns buf. */
char *tp__format_size(uint64_t bytes, char *buf, size_t len);

/* A setting's bound as the user writes it: a duration or size in units, else a plain number. */
const char *tp__format_bound(const tp_setting_t *s, int64_t v, char *buf, size_t size);

#endif
