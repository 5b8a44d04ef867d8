/* Documents for deduplication: JSON Lines (the text in one field), one per
 * line, one per NUL-terminated record, or one per file.
 *
 * Inputs are memory-mapped (a pipe is first copied to an unlinked temporary
 * file), so the text of a corpus costs page cache, not process memory, and
 * a record is handed out as a pointer into the mapping: kept records are
 * written back byte for byte. */
#ifndef SIGMA_DEDUP_DOCS_H
#define SIGMA_DEDUP_DOCS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dedup/normalize.h"

typedef enum { DD_JSONL, DD_LINES, DD_NUL, DD_FILES } DdFormat;

typedef struct {
    char *name;          /* for messages: the path, or "stdin" */
    const char *data;    /* the whole input, mapped */
    size_t size;
    size_t first;        /* index of its first record */
} DdSource;

typedef struct {
    uint64_t off;        /* in its source */
    uint64_t len;        /* without the terminator */
    uint32_t src;
    uint8_t term;        /* 1 when a terminator ('\n' or NUL) follows */
} DdRecord;

typedef struct {
    DdFormat format;
    const char *field;   /* JSON Lines: the text field */
    DdSource *src;
    size_t nsrc;
    DdRecord *rec;       /* [n] */
    size_t n;
    uint64_t bytes;      /* all input bytes */
} DdCorpus;

/* Why a record has no text. */
typedef enum { DD_OK = 0, DD_BAD_JSON, DD_NOT_OBJECT, DD_NO_FIELD, DD_NOT_STRING, DD_NUL_ESCAPE } DdStatus;

/* Maps the inputs (paths; none or "-" is stdin) and finds the records. */
void dd_corpus_open(DdCorpus *c, DdFormat format, const char *field, char **paths, int npaths);
void dd_corpus_close(DdCorpus *c);

/* Record i's raw bytes (JSON Lines: the whole line), without terminator. */
const char *dd_record_raw(const DdCorpus *c, size_t i, size_t *len);
/* Record i's text: JSON Lines parse the line and copy the field into
 * scratch; other formats point into the mapping. */
DdStatus dd_record_text(const DdCorpus *c, size_t i, DdBuf *scratch, const char **text, size_t *len);
const char *dd_status_message(DdStatus st);
/* "file, line N" (or "record N", or the file name) for messages; static
 * buffer per call site is not thread safe: caller's buffer. */
void dd_record_where(char *buf, size_t cap, const DdCorpus *c, size_t i);

/* Writes record i as it was read, with its terminator; a record that had
 * none (the end of an input) gets one when more output follows, which the
 * caller signals through *pending. */
void dd_write_record(FILE *f, const DdCorpus *c, size_t i, int *pending);

#endif
