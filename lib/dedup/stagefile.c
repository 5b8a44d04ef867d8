/* The stage files' container: writing, and reading with every field
 * checked before it is used (the bytes may come from anywhere). */
#include "dedup/stagefile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

const uint32_t ddf_entry_size[SEC_TYPES] = {0, 12, 20, 8, 16, 16, 16};
static const char *const sec_names[SEC_TYPES] = {"?", "band", "hash", "bad", "dups", "pairs", "remove"};
static const char *const kind_names[] = {"?", "signature file", "exact duplicates file", "pairs file", "removal list"};

const char *ddf_kind_name(uint32_t kind) { return kind >= 1 && kind <= 4 ? kind_names[kind] : "?"; }

/* ---- parameters ------------------------------------------------------------------ */

void dd_params_of(DdParams *p, const DdOptions *o, DdFormat format, const char *field, int partitions)
{
    memset(p, 0, sizeof *p);
    p->format = (uint32_t)format;
    p->norm = (uint32_t)o->norm;
    p->exact = (uint32_t)o->exact;
    p->near = (uint32_t)o->near;
    p->ngram = (uint32_t)o->ngram;
    p->bands = (uint32_t)o->bands;
    p->rows = (uint32_t)o->rows;
    p->seed = o->seed;
    p->partitions = (uint32_t)partitions;
    p->skip_bad = (uint32_t)o->skip_bad;
    if (strlen(field) >= sizeof p->field) usage_error("--field is longer than %zu bytes", sizeof p->field - 1);
    strcpy(p->field, format == DD_JSONL ? field : "text");
}

void dd_options_of(DdOptions *o, const DdParams *p)
{
    dd_options_default(o);
    o->norm = (DdNorm)p->norm;
    o->exact = (int)p->exact;
    o->near = (int)p->near;
    o->ngram = (int)p->ngram;
    o->bands = (int)p->bands;
    o->rows = (int)p->rows;
    o->seed = p->seed;
    o->skip_bad = (int)p->skip_bad;
}

static const char *mode_name(const DdParams *p) { return p->exact && p->near ? "both" : p->exact ? "exact" : "near"; }

int dd_params_differ(const DdParams *a, const DdParams *b, char *why, size_t cap)
{
    static const char *const formats[] = {"--jsonl", "--lines", "--nul"};
#define DIFF(cond, ...) do { if (cond) { snprintf(why, cap, __VA_ARGS__); return 1; } } while (0)
    DIFF(a->format != b->format, "%s, not %s", formats[a->format], formats[b->format]);
    DIFF(strcmp(a->field, b->field), "--field %s, not %s", a->field, b->field);
    DIFF(a->exact != b->exact || a->near != b->near, "--mode %s, not %s", mode_name(a), mode_name(b));
    DIFF(a->norm != b->norm, "--normalize %s", a->norm == DD_NORM_DATATROVE ? "datatrove, not none" : "none, not datatrove");
    DIFF(a->ngram != b->ngram, "--ngram %u, not %u", a->ngram, b->ngram);
    DIFF(a->bands != b->bands, "--bands %u, not %u", a->bands, b->bands);
    DIFF(a->rows != b->rows, "--rows %u, not %u", a->rows, b->rows);
    DIFF(a->seed != b->seed, "--seed %u, not %u", a->seed, b->seed);
    DIFF(a->partitions != b->partitions, "--partitions %u, not %u", a->partitions, b->partitions);
    DIFF(a->skip_bad != b->skip_bad, "%s --skip-bad", a->skip_bad ? "with" : "without");
#undef DIFF
    return 0;
}

/* ---- writing ----------------------------------------------------------------------- */

enum { PUT_BUF = 1 << 16 };

void ddw_open(DdWriter *w, const char *path)
{
    memset(w, 0, sizeof *w);
    atomic_file_open(&w->af, path);
    if (!w->af.tmp) die("%s: a stage file must be a regular file (its header is written last, at its start)", path);
    w->path = xstrdup(path);
    static const uint8_t zero[DDF_PREAMBLE];
    xfwrite(zero, sizeof zero, w->af.f, path);
    w->off = DDF_PREAMBLE;
    w->hash = XXH3_createState();
    w->buf = xmalloc(PUT_BUF);
    if (!w->hash) BUG("XXH3_createState failed");
}

void ddw_begin(DdWriter *w, uint32_t type, uint32_t index)
{
    if (w->n_sec == w->cap_sec) {
        w->cap_sec = w->cap_sec ? 2 * w->cap_sec : 64;
        w->sec = xrealloc(w->sec, w->cap_sec * sizeof *w->sec);
    }
    w->sec[w->n_sec++] = (DdSection){.type = type, .index = index, .offset = w->off};
    XXH3_64bits_reset(w->hash);
}

static void flush_buf(DdWriter *w)
{
    XXH3_64bits_update(w->hash, w->buf, w->buf_len);
    xfwrite(w->buf, w->buf_len, w->af.f, w->path);
    w->off += w->buf_len;
    w->buf_len = 0;
}

void ddw_put(DdWriter *w, const void *entry)
{
    DdSection *s = &w->sec[w->n_sec - 1];
    uint32_t n = ddf_entry_size[s->type];
    if (w->buf_len + n > PUT_BUF) flush_buf(w);
    memcpy(w->buf + w->buf_len, entry, n);
    w->buf_len += n;
    s->count++;
}

void ddw_end(DdWriter *w)
{
    flush_buf(w);
    w->sec[w->n_sec - 1].xxh3 = XXH3_64bits_digest(w->hash);
}

/* A growable byte string for the meta. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} Bytes;

static void put(Bytes *b, const void *v, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = 2 * (b->n + n) + 256;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, v, n);
    b->n += n;
}
static void put16(Bytes *b, uint16_t v) { put(b, &v, 2); }
static void put32(Bytes *b, uint32_t v) { put(b, &v, 4); }
static void put64(Bytes *b, uint64_t v) { put(b, &v, 8); }

static void put_params(Bytes *b, const DdParams *p)
{
    const uint32_t v[] = {p->format, p->norm, p->exact, p->near, p->ngram, p->bands, p->rows, p->seed, p->partitions,
                          p->skip_bad};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) put32(b, v[i]);
    put32(b, (uint32_t)strlen(p->field));
    put(b, p->field, strlen(p->field));
}

void ddw_commit(DdWriter *w, uint32_t kind, uint32_t index, uint64_t source, const DdParams *p, const DdShard *shards,
                size_t n_shards)
{
    Bytes m = {0};
    put32(&m, index);
    put64(&m, source);
    put_params(&m, p);
    put32(&m, (uint32_t)n_shards);
    for (size_t i = 0; i < n_shards; i++) {
        const DdShard *s = &shards[i];
        const uint64_t v[] = {s->docs, s->bad, s->unsigned_docs, s->bytes, s->xxh3, s->sig};
        for (size_t k = 0; k < sizeof v / sizeof *v; k++) put64(&m, v[k]);
        put16(&m, (uint16_t)strlen(s->name));
        put(&m, s->name, strlen(s->name));
    }
    put32(&m, (uint32_t)w->n_sec);
    for (size_t i = 0; i < w->n_sec; i++) {
        const DdSection *s = &w->sec[i];
        put32(&m, s->type);
        put32(&m, s->index);
        put64(&m, s->count);
        put64(&m, s->offset);
        put64(&m, s->xxh3);
    }
    if (m.n > DDF_MAX_META) die("%s: the table of shards and sections is %zu bytes, above the %u a reader takes", w->path, m.n, DDF_MAX_META);
    xfwrite(m.p, m.n, w->af.f, w->path);
    uint8_t pre[DDF_PREAMBLE] = {0};
    memcpy(pre, DDF_MAGIC, 8);
    dd_wr32(pre + 8, DDF_VERSION);
    dd_wr32(pre + 12, kind);
    dd_wr64(pre + 16, w->off + m.n);
    dd_wr64(pre + 24, w->off);
    dd_wr64(pre + 32, m.n);
    dd_wr64(pre + 40, XXH3_64bits(m.p, m.n));
    dd_wr64(pre + 56, XXH3_64bits(pre, 56));
    if (fseek(w->af.f, 0, SEEK_SET) != 0) die("%s: cannot seek to write its header: %s", w->path, strerror(errno));
    xfwrite(pre, sizeof pre, w->af.f, w->path);
    atomic_file_commit(&w->af);
    free(m.p);
    free(w->sec);
    free(w->buf);
    free(w->path);
    XXH3_freeState(w->hash);
    memset(w, 0, sizeof *w);
}

/* ---- reading ------------------------------------------------------------------------ */

/* A failed check: the reason, and 0 for the caller to return. */
static int fail(char *why, size_t cap, const char *fmt, ...) SG_PRINTF(3, 4);
static int fail(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return 0;
}

static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    for (size_t got = 0; got < n;) {
        ssize_t k = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return 0;
        got += (size_t)k;
    }
    return 1;
}

/* The meta, read front to back; `at` is its offset in the file, for
 * messages. */
typedef struct {
    const uint8_t *p;
    size_t n, pos;
    uint64_t at;
} Meta;

static int get(Meta *m, void *v, size_t n, char *why, size_t cap)
{
    if (m->n - m->pos < n) return fail(why, cap, "the meta ends early (byte %llu)", (unsigned long long)(m->at + m->n));
    memcpy(v, m->p + m->pos, n);
    m->pos += n;
    return 1;
}

static int plain_name(const char *s)
{
    if (!*s || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '/') return 0;
    return 1;
}

#define GET(m, v) do { if (!get((m), &(v), sizeof(v), why, cap)) return 0; } while (0)
#define AT(m) ((unsigned long long)((m)->at + (m)->pos))

static int get_params(Meta *m, DdParams *p, char *why, size_t cap)
{
    memset(p, 0, sizeof *p);
    uint64_t at = m->at + m->pos;
    uint32_t v[10], flen = 0;
    for (int i = 0; i < 10; i++) GET(m, v[i]);
    *p = (DdParams){.format = v[0], .norm = v[1], .exact = v[2], .near = v[3], .ngram = v[4], .bands = v[5],
                    .rows = v[6], .seed = v[7], .partitions = v[8], .skip_bad = v[9]};
    const char *bad = p->format > DD_NUL ? "format" : p->norm > DD_NORM_DATATROVE ? "normalize"
                      : p->exact > 1 || p->near > 1 || !(p->exact || p->near) ? "mode"
                      : p->ngram < 1 || p->ngram > 64 ? "ngram"
                      : p->bands < 1 || p->bands > 1024 ? "bands"
                      : p->rows < 1 || p->rows > 1024 || p->bands * p->rows > 4096 ? "rows"
                      : p->partitions < 1 || p->partitions > 65536 ? "partitions"
                      : p->skip_bad > 1 ? "skip_bad" : NULL;
    if (bad) return fail(why, cap, "parameter '%s' out of range (meta byte %llu)", bad, (unsigned long long)at);
    GET(m, flen);
    if (flen < 1 || flen >= sizeof p->field) return fail(why, cap, "field name of %u bytes (byte %llu)", flen, AT(m));
    if (!get(m, p->field, flen, why, cap)) return 0;
    if (memchr(p->field, 0, flen)) return fail(why, cap, "field name holds a NUL byte (byte %llu)", AT(m));
    return 1;
}

static int get_shard(Meta *m, DdShard *s, int in_sig, char *why, size_t cap)
{
    uint64_t at = m->at + m->pos;
    GET(m, s->docs);
    GET(m, s->bad);
    GET(m, s->unsigned_docs);
    GET(m, s->bytes);
    GET(m, s->xxh3);
    GET(m, s->sig);
    uint16_t nl = 0;
    GET(m, nl);
    if (nl < 1 || nl >= sizeof s->name) return fail(why, cap, "shard name of %u bytes (byte %llu)", nl, AT(m));
    if (!get(m, s->name, nl, why, cap)) return 0;
    s->name[nl] = 0;
    if (!plain_name(s->name) || strlen(s->name) != nl)
        return fail(why, cap, "shard name is not a plain file name (byte %llu)", (unsigned long long)at);
    if (s->docs > UINT32_MAX || s->bad > s->docs || s->unsigned_docs > s->docs)
        return fail(why, cap, "shard %s: counts out of range (byte %llu)", s->name, (unsigned long long)at);
    if (in_sig != (s->sig == 0))
        return fail(why, cap, "shard %s: signature fingerprint %s (byte %llu)", s->name, in_sig ? "set" : "missing",
                    (unsigned long long)at);
    return 1;
}

/* Whether section type t belongs in a file of kind k. */
static int type_fits(uint32_t kind, uint32_t t)
{
    switch (kind) {
    case DDF_SIGNATURES: return t == SEC_BAND || t == SEC_HASH || t == SEC_BAD;
    case DDF_EXACT: return t == SEC_DUPS;
    case DDF_PAIRS: return t == SEC_PAIRS;
    case DDF_REMOVAL: return t == SEC_REMOVE;
    }
    return 0;
}

static int get_sections(Meta *m, DdFile *f, uint64_t meta_off, char *why, size_t cap)
{
    uint32_t n = 0;
    GET(m, n);
    if ((uint64_t)n * 32 > m->n - m->pos)
        return fail(why, cap, "%u sections do not fit in the meta (byte %llu)", n, AT(m));
    f->sec = xcalloc(n ? n : 1, sizeof *f->sec);
    f->n_sec = n;
    uint64_t end = DDF_PREAMBLE;
    for (uint32_t i = 0; i < n; i++) {
        DdSection *s = &f->sec[i];
        uint64_t at = m->at + m->pos, bytes;
        GET(m, s->type);
        GET(m, s->index);
        GET(m, s->count);
        GET(m, s->offset);
        GET(m, s->xxh3);
        if (s->type < 1 || s->type >= SEC_TYPES || !type_fits(f->kind, s->type))
            return fail(why, cap, "section %u: type %u does not belong in a %s (byte %llu)", i, s->type,
                        ddf_kind_name(f->kind), (unsigned long long)at);
        uint32_t limit = s->type == SEC_BAND ? f->params.bands : s->type == SEC_HASH ? f->params.partitions
                         : s->type == SEC_REMOVE ? (uint32_t)f->n_shards : 1;
        if (s->type == SEC_DUPS || s->type == SEC_PAIRS) {
            if (s->index != f->index)
                return fail(why, cap, "section %u: index %u, the file's is %u (byte %llu)", i, s->index, f->index,
                            (unsigned long long)at);
        } else if (s->index >= limit || (s->type == SEC_REMOVE && s->index != i)) {
            return fail(why, cap, "section %u: %s index %u out of range (byte %llu)", i, sec_names[s->type], s->index,
                        (unsigned long long)at);
        }
        if (s->offset != end)
            return fail(why, cap, "section %u begins at byte %llu, the one before ends at %llu (meta byte %llu)", i,
                        (unsigned long long)s->offset, (unsigned long long)end, (unsigned long long)at);
        if (!mul_u64(s->count, ddf_entry_size[s->type], &bytes) || bytes > meta_off - end)
            return fail(why, cap, "section %u: %llu entries run past the sections' end at byte %llu (meta byte %llu)", i,
                        (unsigned long long)s->count, (unsigned long long)meta_off, (unsigned long long)at);
        end += bytes;
    }
    if (end != meta_off)
        return fail(why, cap, "the sections end at byte %llu, the meta begins at %llu", (unsigned long long)end,
                    (unsigned long long)meta_off);
    if ((f->kind == DDF_EXACT || f->kind == DDF_PAIRS) && n != 1)
        return fail(why, cap, "%u sections, a %s has one", n, ddf_kind_name(f->kind));
    if (f->kind == DDF_REMOVAL && n != f->n_shards)
        return fail(why, cap, "%u sections for %zu shards", n, f->n_shards);
    return 1;
}

static int parse_meta(DdFile *f, Meta *m, uint64_t meta_off, char *why, size_t cap)
{
    GET(m, f->index);
    GET(m, f->source);
    if (!get_params(m, &f->params, why, cap)) return 0;
    uint32_t limit = f->kind == DDF_EXACT ? f->params.partitions : f->kind == DDF_PAIRS ? f->params.bands : 1;
    if (f->index >= limit) return fail(why, cap, "index %u out of range (meta byte %llu)", f->index, (unsigned long long)m->at);
    uint32_t n = 0;
    GET(m, n);
    if (n > DDF_MAX_SHARDS || (uint64_t)n * 51 > m->n - m->pos)
        return fail(why, cap, "%u shards do not fit in the meta (byte %llu)", n, AT(m));
    if (f->kind == DDF_SIGNATURES ? n != 1 : n < 1)
        return fail(why, cap, "%u shards in a %s (byte %llu)", n, ddf_kind_name(f->kind), AT(m));
    f->shards = xcalloc(n, sizeof *f->shards);
    f->n_shards = n;
    for (uint32_t i = 0; i < n; i++)
        if (!get_shard(m, &f->shards[i], f->kind == DDF_SIGNATURES, why, cap)) return 0;
    if (!get_sections(m, f, meta_off, why, cap)) return 0;
    if (m->pos != m->n) return fail(why, cap, "%zu bytes after the meta's end (byte %llu)", m->n - m->pos, AT(m));
    return 1;
}

static int try_open(DdFile *f, const char *path, char *why, size_t cap)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->path = xstrdup(path);
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) return fail(why, cap, "%s", strerror(errno));
    struct stat st;
    if (fstat(f->fd, &st) != 0) return fail(why, cap, "%s", strerror(errno));
    if (!S_ISREG(st.st_mode)) return fail(why, cap, "not a regular file");
    uint8_t pre[DDF_PREAMBLE];
    if ((uint64_t)st.st_size < DDF_PREAMBLE || !pread_all(f->fd, pre, sizeof pre, 0))
        return fail(why, cap, "%llu bytes, too short for a sigma-dedup stage file", (unsigned long long)st.st_size);
    if (memcmp(pre, DDF_MAGIC, 8)) return fail(why, cap, "not a sigma-dedup stage file (bad magic at byte 0)");
    uint32_t version = dd_rd32(pre + 8);
    if (version != DDF_VERSION)
        return fail(why, cap, "stage file version %u, this sigma reads version %u (byte 8)", version, DDF_VERSION);
    if (dd_rd64(pre + 56) != XXH3_64bits(pre, 56)) return fail(why, cap, "header checksum mismatch (byte 56)");
    f->kind = dd_rd32(pre + 12);
    f->size = dd_rd64(pre + 16);
    uint64_t meta_off = dd_rd64(pre + 24), meta_n = dd_rd64(pre + 32);
    f->fingerprint = dd_rd64(pre + 56);
    if (f->kind < DDF_SIGNATURES || f->kind > DDF_REMOVAL) return fail(why, cap, "unknown kind %u (byte 12)", f->kind);
    if (f->size != (uint64_t)st.st_size)
        return fail(why, cap, "%llu bytes, the header says %llu (byte 16): %s", (unsigned long long)st.st_size,
                    (unsigned long long)f->size, (uint64_t)st.st_size < f->size ? "truncated" : "bytes after its end");
    if (dd_rd64(pre + 48) != 0) return fail(why, cap, "reserved bytes 48-55 are not zero");
    if (meta_n > DDF_MAX_META || meta_off < DDF_PREAMBLE || meta_off > f->size || meta_n != f->size - meta_off)
        return fail(why, cap, "the meta at byte %llu, %llu bytes, does not end the file (bytes 24-39)",
                    (unsigned long long)meta_off, (unsigned long long)meta_n);
    uint8_t *buf = xmalloc(meta_n ? meta_n : 1);
    int ok = pread_all(f->fd, buf, meta_n, meta_off);
    if (!ok) fail(why, cap, "read error in the meta at byte %llu", (unsigned long long)meta_off);
    else if (XXH3_64bits(buf, meta_n) != dd_rd64(pre + 40)) ok = fail(why, cap, "meta checksum mismatch (byte 40)");
    else {
        Meta m = {buf, meta_n, 0, meta_off};
        ok = parse_meta(f, &m, meta_off, why, cap);
    }
    free(buf);
    return ok;
}

int ddf_try_open(DdFile *f, const char *path, char *why, size_t cap)
{
    if (try_open(f, path, why, cap)) return 1;
    ddf_close(f);
    return 0;
}

void ddf_open(DdFile *f, const char *path, uint32_t want)
{
    char why[512];
    if (!try_open(f, path, why, sizeof why)) die("%s: %s", path, why);
    if (want && f->kind != want) die("%s: a %s, not a %s", path, ddf_kind_name(f->kind), ddf_kind_name(want));
}

void ddf_close(DdFile *f)
{
    if (f->fd >= 0) close(f->fd);
    free(f->path);
    free(f->shards);
    free(f->sec);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

/* ---- cursors ----------------------------------------------------------------------- */

void ddc_open(DdCursor *c, const DdFile *f, size_t section, size_t bufsize)
{
    memset(c, 0, sizeof *c);
    c->f = f;
    c->s = &f->sec[section];
    c->esize = ddf_entry_size[c->s->type];
    c->cap = bufsize / c->esize * c->esize;
    if (c->cap < c->esize) c->cap = c->esize;
    c->buf = xmalloc(c->cap);
    c->next = c->s->offset;
    c->left = c->s->count;
    c->hash = XXH3_createState();
    if (!c->hash) BUG("XXH3_createState failed");
    XXH3_64bits_reset(c->hash);
}

/* Once the last of a section is read, before any of it is handed out. */
static void check_section(DdCursor *c)
{
    if (XXH3_64bits_digest(c->hash) != c->s->xxh3)
        die("%s: checksum mismatch in the %s section at byte %llu: the file is corrupt", c->f->path,
            sec_names[c->s->type], (unsigned long long)c->s->offset);
}

const uint8_t *ddc_next(DdCursor *c)
{
    if (c->pos == c->len) {
        if (c->left == 0) {
            if (c->s->count == 0) check_section(c);
            return NULL;
        }
        uint64_t k = c->cap / c->esize < c->left ? c->cap / c->esize : c->left;
        size_t n = (size_t)k * c->esize;
        if (!pread_all(c->f->fd, c->buf, n, c->next))
            die("%s: read error at byte %llu: %s", c->f->path, (unsigned long long)c->next, strerror(errno));
        XXH3_64bits_update(c->hash, c->buf, n);
        c->next += n;
        c->left -= k;
        c->pos = 0;
        c->len = n;
        if (c->left == 0) check_section(c);
    }
    const uint8_t *e = c->buf + c->pos;
    c->pos += c->esize;
    return e;
}

uint64_t ddc_offset(const DdCursor *c) { return c->next - c->len + c->pos - c->esize; }

void ddc_close(DdCursor *c)
{
    if (c->hash) XXH3_freeState(c->hash);
    free(c->buf);
    memset(c, 0, sizeof *c);
}
