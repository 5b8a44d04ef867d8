/* What sigma-dedup writes: kept records, the removed list, the summary. */
#ifndef SIGMA_DEDUP_OUTPUT_H
#define SIGMA_DEDUP_OUTPUT_H

#include <stdio.h>

#include "base/json.h"
#include "dedup/dedup.h"
#include "dedup/docs.h"

/* The kept records, in input order, as they were read. */
void dd_write_kept(FILE *f, const char *name, const DdCorpus *c, const DdResult *r);

/* One JSON line per dropped record, in input order:
 *   {"index": I, "duplicate_of": J, "reason": "exact"|"near", DOC}
 * or {"index": I, "reason": "bad", "error": "...", DOC}, where DOC is
 * "record": the original JSON object (JSON Lines), "text": the document as
 * a JSON string (lines, NUL records; bytes that are not UTF-8 are written
 * as they are) or "file": its path. I and J are 0-based record numbers
 * over all inputs (with JSON Lines and lines, the line number minus one). */
void dd_write_removed(FILE *f, const char *name, const DdCorpus *c, const DdResult *r);
/* One such line: a document's number, verdict (DdVerdict), what it
 * duplicates, its status (DdStatus, for a bad one), its raw bytes and, for
 * --files, its path. */
void dd_write_removed_line(FILE *f, DdFormat format, uint64_t index, int verdict, uint64_t dup_of, int status,
                           const char *raw, size_t n, const char *file);

/* The summary for --stats (owned by the caller). */
cJSON *dd_stats_json(const DdCorpus *c, const DdResult *r, const DdOptions *o, double seconds, int threads);
/* What one process's summary and the clusters stage's share, named once:
 * format, normalize and mode into s; and the "minhash" object of the
 * parameters (each adds its own fields after). */
void dd_stats_head(cJSON *s, int format, int norm, int exact, int near);
cJSON *dd_stats_minhash(uint64_t ngram, uint64_t bands, uint64_t rows, uint64_t seed);

#endif
