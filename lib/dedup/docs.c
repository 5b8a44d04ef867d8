/* Mapping inputs and cutting them into records. */
#include "dedup/docs.h"
#include "base/base.h"
#include "base/json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* A pipe (or anything not seekable), or a .zst file decompressed, into an
 * unlinked temporary file that can be mapped. */
static int spool(FILE *in, const char *name)
{
    const char *dir = getenv("TMPDIR");
    char *tmpl = xasprintf("%s/sigma-dedup.XXXXXX", dir && *dir ? dir : "/tmp");
    int t = mkstemp(tmpl);
    if (t < 0) die("cannot create a temporary file to hold %s (%s): %s", name, tmpl, strerror(errno));
    unlink(tmpl);
    free(tmpl);
    static char buf[1 << 16];
    size_t r;
    while ((r = xfread_some(buf, sizeof buf, in, name)) > 0) {
        for (size_t w = 0; w < r;) {
            ssize_t k = write(t, buf + w, r - w);
            if (k < 0) {
                if (errno == EINTR) continue;
                die("cannot spool %s to a temporary file: %s", name, strerror(errno));
            }
            w += (size_t)k;
        }
    }
    return t;
}

static void map_source(DdSource *s, const char *path)
{
    int is_stdin = strcmp(path, "-") == 0;
    s->name = xstrdup(is_stdin ? "stdin" : path);
    int fd;
    if (is_zst_path(path)) {
        FILE *z = xfopen_read(path);
        fd = spool(z, s->name);
        xfclose(z, s->name);
    } else {
        fd = is_stdin ? 0 : open(path, O_RDONLY);
        if (fd < 0) die("%s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) die("%s: %s", s->name, strerror(errno));
    if (S_ISDIR(st.st_mode)) die("%s: is a directory", s->name);
    if (!S_ISREG(st.st_mode)) {
        FILE *in = fdopen(is_stdin ? dup(fd) : fd, "rb");
        if (!in) die("%s: %s", s->name, strerror(errno));
        int t = spool(in, s->name);
        fclose(in);
        fd = t;
        if (fstat(fd, &st) != 0) die("%s: %s", s->name, strerror(errno));
    }
    s->size = (size_t)st.st_size;
    s->data = "";
    if (s->size > 0) {
        void *p = mmap(NULL, s->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) die("%s: cannot map %zu bytes: %s", s->name, s->size, strerror(errno));
        madvise(p, s->size, MADV_SEQUENTIAL);
        s->data = p;
    }
    if (fd != 0) close(fd);
}

static void add_record(DdCorpus *c, size_t *cap, uint32_t src, uint64_t off, uint64_t len, int term)
{
    if (c->n == *cap) {
        *cap = *cap ? *cap * 2 : 1024;
        c->rec = xrealloc(c->rec, *cap * sizeof *c->rec);
    }
    c->rec[c->n++] = (DdRecord){.off = off, .len = len, .src = src, .term = (uint8_t)term};
}

void dd_corpus_open(DdCorpus *c, DdFormat format, const char *field, char **paths, int npaths)
{
    static char *stdin_only[] = {"-"};
    memset(c, 0, sizeof *c);
    c->format = format;
    c->field = field;
    if (npaths == 0) {
        if (format == DD_FILES) usage_error("--files needs the files to read as operands");
        paths = stdin_only;
        npaths = 1;
    }
    c->src = xcalloc((size_t)npaths, sizeof *c->src);
    c->nsrc = (size_t)npaths;
    size_t cap = 0;
    char sep = format == DD_NUL ? '\0' : '\n';
    for (int f = 0; f < npaths; f++) {
        DdSource *s = &c->src[f];
        map_source(s, paths[f]);
        s->first = c->n;
        c->bytes += s->size;
        if (format == DD_FILES) {
            add_record(c, &cap, (uint32_t)f, 0, s->size, 0);
            continue;
        }
        size_t pos = 0;
        while (pos < s->size) {
            const char *e = memchr(s->data + pos, sep, s->size - pos);
            size_t end = e ? (size_t)(e - s->data) : s->size;
            add_record(c, &cap, (uint32_t)f, pos, end - pos, e != NULL);
            pos = end + 1;
        }
    }
}

void dd_corpus_close(DdCorpus *c)
{
    for (size_t f = 0; f < c->nsrc; f++) {
        if (c->src[f].size > 0) munmap((void *)c->src[f].data, c->src[f].size);
        free(c->src[f].name);
    }
    free(c->src);
    free(c->rec);
    memset(c, 0, sizeof *c);
}

const char *dd_record_raw(const DdCorpus *c, size_t i, size_t *len)
{
    const DdRecord *r = &c->rec[i];
    *len = r->len;
    return c->src[r->src].data + r->off;
}

DdStatus dd_text(DdFormat format, const char *field, const char *raw, size_t n, DdBuf *scratch, const char **text,
                 size_t *len)
{
    if (format != DD_JSONL) {
        *text = raw;
        *len = n;
        return DD_OK;
    }
    /* cJSON would cut a string at \u0000: refuse the record rather than
     * deduplicate a truncated text. */
    if (json_has_nul_escape(raw, n)) return DD_NUL_ESCAPE;
    cJSON *v = json_parse(raw, n, NULL);
    if (!v) return DD_BAD_JSON;
    DdStatus st = DD_OK;
    cJSON *f = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, field) : NULL;
    if (!cJSON_IsObject(v)) st = DD_NOT_OBJECT;
    else if (!f) st = DD_NO_FIELD;
    else if (!cJSON_IsString(f) || !f->valuestring) st = DD_NOT_STRING;
    else {
        /* the string becomes the scratch buffer: no copy of the text */
        free(scratch->p);
        scratch->p = f->valuestring;
        scratch->len = strlen(f->valuestring);
        scratch->cap = scratch->len + 1;
        f->valuestring = NULL;
        *text = scratch->p;
        *len = scratch->len;
    }
    cJSON_Delete(v);
    return st;
}

DdStatus dd_record_text(const DdCorpus *c, size_t i, DdBuf *scratch, const char **text, size_t *len)
{
    size_t n;
    const char *raw = dd_record_raw(c, i, &n);
    return dd_text(c->format, c->field, raw, n, scratch, text, len);
}

const char *dd_status_message(DdStatus st)
{
    switch (st) {
    case DD_OK: return "ok";
    case DD_BAD_JSON: return "invalid JSON";
    case DD_NOT_OBJECT: return "not a JSON object";
    case DD_NO_FIELD: return "the text field is missing";
    case DD_NOT_STRING: return "the text field is not a string";
    case DD_NUL_ESCAPE: return "a \\u0000 escape (NUL characters are not supported)";
    }
    return "?";
}

void dd_where(char *buf, size_t cap, DdFormat format, const char *name, uint64_t k)
{
    switch (format) {
    case DD_JSONL:
    case DD_LINES: snprintf(buf, cap, "%s, line %llu", name, (unsigned long long)k); break;
    case DD_NUL: snprintf(buf, cap, "%s, record %llu", name, (unsigned long long)k); break;
    case DD_FILES: snprintf(buf, cap, "%s", name); break;
    }
}

void dd_record_where(char *buf, size_t cap, const DdCorpus *c, size_t i)
{
    const DdSource *s = &c->src[c->rec[i].src];
    dd_where(buf, cap, c->format, s->name, i - s->first + 1);
}

void dd_write_raw(FILE *f, DdFormat format, const char *raw, size_t n, int term, int *pending)
{
    char sep = format == DD_NUL ? '\0' : '\n';
    if (*pending) fputc(sep, f);
    fwrite(raw, 1, n, f);
    if (term) fputc(sep, f);
    *pending = !term;
}

void dd_write_record(FILE *f, const DdCorpus *c, size_t i, int *pending)
{
    if (c->format == DD_FILES) {
        fputs(c->src[c->rec[i].src].name, f);
        fputc('\n', f);
        return;
    }
    size_t n;
    const char *raw = dd_record_raw(c, i, &n);
    dd_write_raw(f, c->format, raw, n, c->rec[i].term, pending);
}

/* ---- streaming ------------------------------------------------------------------ */

enum { STREAM_READ = 1 << 22 };   /* bytes read at a time */

void dd_stream_open(DdStream *s, const char *path, DdFormat format)
{
    if (format == DD_FILES) BUG("a stream of --files");
    memset(s, 0, sizeof *s);
    s->name = xstrdup(strcmp(path, "-") ? path : "stdin");
    s->f = xfopen_read(path);
    s->sep = format == DD_NUL ? '\0' : '\n';
    s->cap = 2 * STREAM_READ;
    s->buf = xmalloc(s->cap);
    s->hash = XXH3_createState();
    if (!s->hash) BUG("XXH3_createState failed");
    XXH3_64bits_reset(s->hash);
}

/* Moves what is left to the front and reads more after it; a buffer that
 * one unfinished record fills is doubled. */
static void stream_fill(DdStream *s)
{
    memmove(s->buf, s->buf + s->pos, s->len - s->pos);
    s->len -= s->pos;
    s->pos = 0;
    if (s->cap - s->len < STREAM_READ) {
        s->cap = s->len + STREAM_READ > 2 * s->cap ? s->len + STREAM_READ : 2 * s->cap;
        s->buf = xrealloc(s->buf, s->cap);
    }
    size_t got = xfread_some(s->buf + s->len, s->cap - s->len, s->f, s->name);
    if (got == 0) s->eof = 1;
    XXH3_64bits_update(s->hash, s->buf + s->len, got);
    s->len += got;
    s->bytes += got;
}

size_t dd_stream_next(DdStream *s, DdRaw *out, size_t max, size_t max_bytes)
{
    size_t n = 0, taken = 0;
    /* the records handed out last time are done with: room to read */
    if (!s->eof && s->len - s->pos < STREAM_READ) stream_fill(s);
    while (n < max && taken < max_bytes) {
        if (s->pos == s->len && s->eof) break;
        const char *e = memchr(s->buf + s->pos, s->sep, s->len - s->pos);
        if (!e && !s->eof) {
            if (n > 0) break;   /* the rest after the next fill */
            stream_fill(s);
            continue;
        }
        size_t end = e ? (size_t)(e - s->buf) : s->len;
        out[n++] = (DdRaw){s->buf + s->pos, end - s->pos, e != NULL};
        taken += end - s->pos + 1;
        s->pos = e ? end + 1 : end;
    }
    s->records += n;
    return n;
}

uint64_t dd_stream_close(DdStream *s)
{
    uint64_t h = XXH3_64bits_digest(s->hash);
    XXH3_freeState(s->hash);
    xfclose(s->f, s->name);
    free(s->buf);
    free(s->name);
    memset(s, 0, sizeof *s);
    return h;
}
