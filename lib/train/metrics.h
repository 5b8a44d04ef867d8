/* Metrics as JSON Lines (sigma-formats(5)): one object per line, each with
 * "type" and "step", flushed line by line so that `tail -f | jq` works. */
#ifndef SIGMA_METRICS_H
#define SIGMA_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "base/json.h"

typedef struct {
    FILE *f;                   /* NULL: metrics off */
    char *path;
} Metrics;

/* Opens PATH for appending. "step" in a line is the 0-based index of the
 * optimizer step it belongs to, and a checkpoint after R steps holds steps
 * 0 .. R-1; so when resuming at R, lines of steps R and later (written
 * before a kill, and about to be written again) are dropped first, and the
 * file reads as one uninterrupted run. path NULL: off. */
void metrics_open(Metrics *m, const char *path, int resuming, uint64_t resume_step);
/* Writes obj (which must hold "type" and "step") as one line, then frees it. */
void metrics_write(Metrics *m, cJSON *obj);
void metrics_close(Metrics *m);

#endif
