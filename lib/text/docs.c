/* Documents from text inputs: see docs.h. */
#include "text/docs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "base/json.h"
#include "text/tokenizer.h"

void docs_open(Docs *d, DocsMode mode, const char *field, int skip_bad, char *const *paths, size_t n_paths)
{
    static char *const stdin_path[] = {"-"};
    *d = (Docs){.mode = mode, .field = field, .skip_bad = skip_bad, .paths = paths, .n_paths = n_paths};
    if (n_paths == 0) { d->paths = stdin_path; d->n_paths = 1; }
}

static int open_next(Docs *d)
{
    if (d->f) { xfclose(d->f, d->name); d->f = NULL; }
    if (d->next_path == d->n_paths) return 0;
    d->name = d->paths[d->next_path++];
    d->f = xfopen_read(d->name);   /* a .zst input is decompressed */
    if (!strcmp(d->name, "-")) d->name = "stdin";
    d->line_no = 0;
    return 1;
}

/* Reads up to `want` more bytes of the current file into doc[doc_len..];
 * returns how many (0 at its end). */
static size_t read_more(Docs *d, size_t want)
{
    if (d->doc_len + want > d->doc_cap) {
        d->doc_cap = 2 * (d->doc_len + want);
        d->doc = xrealloc(d->doc, d->doc_cap);
    }
    size_t k = xfread_some(d->doc + d->doc_len, want, d->f, d->name);
    d->doc_len += k;
    d->bytes_read += k;
    return k;
}

/* A whole file is one document, handed out in parts of about DOCS_PART
 * bytes cut where the cut cannot change the encoding (tokenizer_cut_point),
 * so memory does not grow with the file. Empty files are no document, so
 * empty input is an empty stream. */
static int read_file_part(Docs *d, const uint8_t **doc, size_t *len, int *ends)
{
    /* drop the part handed out last time, keep what followed it */
    if (d->part_len) {
        memmove(d->doc, d->doc + d->part_len, d->doc_len - d->part_len);
        d->doc_len -= d->part_len;
        d->part_len = 0;
    }
    if (!d->in_file) {
        if (d->doc_len) BUG("leftover bytes between files");
        for (;;) {
            if (!open_next(d)) return 0;
            if (read_more(d, DOCS_PART)) break;
        }
        d->in_file = 1;
    }
    for (;;) {
        if (d->doc_len < DOCS_PART && read_more(d, DOCS_PART)) continue;
        if (d->doc_len < DOCS_PART) {   /* the end of the file */
            d->part_len = d->doc_len;
            d->in_file = 0;
            *ends = 1;
            break;
        }
        size_t cut = tokenizer_cut_point((const uint8_t *)d->doc, d->doc_len, d->doc_len / 2);
        if (cut < d->doc_len) {
            d->part_len = cut;
            *ends = 0;
            break;
        }
        if (!read_more(d, d->doc_len)) {   /* no place to cut: take the rest */
            d->part_len = d->doc_len;
            d->in_file = 0;
            *ends = 1;
            break;
        }
    }
    *doc = (const uint8_t *)d->doc;
    *len = d->part_len;
    return 1;
}

/* The next line without its '\n', or 0 at the end of every input. */
static int read_line(Docs *d, size_t *len)
{
    for (;;) {
        if (!d->f && !open_next(d)) return 0;
        errno = 0;
        ssize_t n = getline(&d->line, &d->line_cap, d->f);
        if (n >= 0) {
            d->line_no++;
            d->bytes_read += (size_t)n;
            if (n > 0 && d->line[n - 1] == '\n') n--;
            *len = (size_t)n;
            return 1;
        }
        if (ferror(d->f)) die("%s: read error after line %" PRIu64 ": %s", d->name, d->line_no, strerror(errno));
        if (!open_next(d)) return 0;
    }
}

static void bad_record(Docs *d, const char *why)
{
    if (!d->skip_bad) die("%s, line %" PRIu64 ": %s (--skip-bad skips such lines)", d->name, d->line_no, why);
    d->skipped++;
    verbose("%s, line %" PRIu64 ": %s: skipped", d->name, d->line_no, why);
}

static int read_jsonl(Docs *d, const uint8_t **doc, size_t *len)
{
    size_t n;
    while (read_line(d, &n)) {
        size_t i = 0;
        while (i < n && strchr(" \t\r", d->line[i])) i++;
        if (i == n) continue;   /* blank line */
        size_t at;
        cJSON *v = json_parse(d->line, n, &at);
        if (!v) {
            char *why = xasprintf("invalid JSON at byte %zu", at + 1);
            bad_record(d, why);
            free(why);
            continue;
        }
        const cJSON *f = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, d->field) : NULL;
        if (!f || !cJSON_IsString(f)) {
            char *why = xasprintf(f ? "field '%s' is not a string" : "no field '%s'", d->field);
            bad_record(d, why);
            free(why);
        } else if (json_has_nul_escape(d->line, n)) {
            bad_record(d, "a \\u0000 escape (NUL bytes are not supported in text)");
        } else {
            size_t k = strlen(f->valuestring);
            if (k + 1 > d->doc_cap) { d->doc_cap = 2 * k + 1; d->doc = xrealloc(d->doc, d->doc_cap); }
            d->doc_len = d->part_len = 0;
            memcpy(d->doc, f->valuestring, k);
            cJSON_Delete(v);
            *doc = (const uint8_t *)d->doc;
            *len = k;
            return 1;
        }
        cJSON_Delete(v);
    }
    return 0;
}

int docs_next(Docs *d, const uint8_t **doc, size_t *len, int *ends)
{
    *ends = 1;
    switch (d->mode) {
    case DOCS_FILE: return read_file_part(d, doc, len, ends);
    case DOCS_LINES:
        if (!read_line(d, len)) return 0;
        *doc = (const uint8_t *)d->line;
        return 1;
    default: return read_jsonl(d, doc, len);
    }
}

void docs_close(Docs *d)
{
    if (d->f) xfclose(d->f, d->name);
    free(d->line);
    free(d->doc);
    *d = (Docs){0};
}

/* ---- a parallel for over documents ---------------------------------------- */

int docs_threads(int threads)
{
    if (threads > 0) return threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

typedef struct {
    void (*fn)(void *ctx, size_t i, int thread);
    void *ctx;
    size_t n;
    atomic_size_t next;
} ParJob;

typedef struct { ParJob *job; int thread; } ParArg;

static void *par_worker(void *p)
{
    ParArg *a = p;
    for (size_t i; (i = atomic_fetch_add(&a->job->next, 1)) < a->job->n;) a->job->fn(a->job->ctx, i, a->thread);
    return NULL;
}

void docs_parallel(int threads, size_t n, void (*fn)(void *ctx, size_t i, int thread), void *ctx)
{
    threads = docs_threads(threads);
    if ((size_t)threads > n) threads = n ? (int)n : 1;
    ParJob job = {.fn = fn, .ctx = ctx, .n = n};
    atomic_init(&job.next, 0);
    ParArg *args = xmalloc((size_t)threads * sizeof *args);
    pthread_t *tid = xmalloc((size_t)threads * sizeof *tid);
    for (int t = 0; t < threads; t++) {
        args[t] = (ParArg){&job, t};
        if (t > 0 && pthread_create(&tid[t], NULL, par_worker, &args[t])) die("cannot start a thread");
    }
    par_worker(&args[0]);
    for (int t = 1; t < threads; t++) pthread_join(tid[t], NULL);
    free(args);
    free(tid);
}
