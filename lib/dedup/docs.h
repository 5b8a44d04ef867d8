/* Documents for deduplication: JSON Lines (the text in one field), one per
 * line, one per NUL-terminated record, or one per file. A path ending in
 * .zst is decompressed as it is read.
 *
 * Two readers cut records the same way. The one-process mode maps its
 * inputs (DdCorpus: a pipe or a .zst file is first copied to an unlinked
 * temporary file), so the text of a corpus costs page cache, not process
 * memory, and a record is a pointer into the mapping: kept records are
 * written back byte for byte. The stages stream one input shard through a
 * buffer (DdStream), so their memory does not grow with the shard. */
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

/* The text of a record's raw bytes: JSON Lines parse the line and copy the
 * field into scratch; other formats are their own text. */
DdStatus dd_text(DdFormat format, const char *field, const char *raw, size_t n, DdBuf *scratch, const char **text,
                 size_t *len);

/* Record i's raw bytes (JSON Lines: the whole line), without terminator. */
const char *dd_record_raw(const DdCorpus *c, size_t i, size_t *len);
/* Record i's text: JSON Lines parse the line and copy the field into
 * scratch; other formats point into the mapping. */
DdStatus dd_record_text(const DdCorpus *c, size_t i, DdBuf *scratch, const char **text, size_t *len);
const char *dd_status_message(DdStatus st);
/* "file, line N" (or "record N", or the file name) for messages; static
 * buffer per call site is not thread safe: caller's buffer. */
void dd_record_where(char *buf, size_t cap, const DdCorpus *c, size_t i);
/* The same for record k (from 1) of the input `name`. */
void dd_where(char *buf, size_t cap, DdFormat format, const char *name, uint64_t k);

/* Writes record i as it was read, with its terminator; a record that had
 * none (the end of an input) gets one when more output follows, which the
 * caller signals through *pending. */
void dd_write_record(FILE *f, const DdCorpus *c, size_t i, int *pending);

/* A record of a stream: a pointer into the reader's buffer. */
typedef struct {
    const char *p;
    size_t len;          /* without the terminator */
    int term;            /* 1 when a terminator followed */
} DdRaw;

/* One input read front to back in batches of records, as DdCorpus would
 * cut it. The bytes read are hashed (XXH3-64) as they pass: the identity
 * of the text a stage worked on. */
typedef struct {
    FILE *f;
    char *name;
    char sep;
    char *buf;
    size_t cap, len, pos;   /* buf[pos..len) is read and not yet handed out */
    int eof;
    uint64_t records, bytes;
    void *hash;             /* XXH3_state_t */
} DdStream;

void dd_stream_open(DdStream *s, const char *path, DdFormat format);
/* The next records, at most max of them and about max_bytes (at least
 * one record however long), into out[]; their bytes stay valid until the
 * next call. Returns how many, 0 at the end. */
size_t dd_stream_next(DdStream *s, DdRaw *out, size_t max, size_t max_bytes);
/* Closes the input; returns the XXH3-64 of all its bytes. */
uint64_t dd_stream_close(DdStream *s);

/* Writes a record as it was read, with its terminator; a record that had
 * none gets one when more output follows (*pending, as dd_write_record). */
void dd_write_raw(FILE *f, DdFormat format, const char *raw, size_t n, int term, int *pending);

#endif
