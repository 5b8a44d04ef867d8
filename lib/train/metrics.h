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

/* A metrics file read back (sigma-plot, and any tool that reads a run's
 * record): every line a JSON object with a string "type" and a numeric
 * "step"; anything else dies naming the file and the line, as does a file
 * with no line at all (an empty run). */
typedef struct {
    char *path;
    cJSON **lines;
    size_t *lineno;            /* each line's number in the file (blank lines skipped) */
    size_t n;
} MetricsLog;
void metrics_read(MetricsLog *log, const char *path);
void metrics_log_free(MetricsLog *log);

/* One series: the numbers of a key against step, from every line that
 * holds it. `key` is a field ("loss") or an element of an array field
 * ("load_max[0]"); lines where it is null (a skipped step's NaN) are left
 * out. An absent key dies naming the file and the keys it has; a key that
 * is not a number (or an index past the array) dies naming the line. */
typedef struct {
    double *step, *value;
    size_t n;
} MetricsSeries;
void metrics_series(const MetricsLog *log, const char *key, MetricsSeries *s);
void metrics_series_free(MetricsSeries *s);
/* The number of layers of the per-layer arrays (load_max), or dies. */
int metrics_layers(const MetricsLog *log);

#endif
