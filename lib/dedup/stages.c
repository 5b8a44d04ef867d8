/* The deduplication stages (stages.h). */
#include "dedup/stages.h"
#include "base/json.h"
#include "dedup/output.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <xxhash.h>
#ifdef _OPENMP
#include "base/threads.h"
#endif

/* ---- what every stage shares ------------------------------------------------------- */

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Whether OUT is already a complete stage file of this kind, index,
 * parameters and source: then the stage's work is done. */
static int complete(const char *out, uint32_t kind, uint32_t index, const DdParams *p, uint64_t source, int force)
{
    if (force || !path_exists(out)) return 0;
    DdFile f;
    char why[512];
    if (!ddf_try_open(&f, out, why, sizeof why)) {
        info("%s: remaking it (%s)", out, why);
        return 0;
    }
    int same = f.kind == kind && f.index == index && !dd_params_differ(&f.params, p, why, sizeof why) &&
               f.source == source;
    ddf_close(&f);
    /* the output is current: its time says so too, for make */
    if (same && utimensat(AT_FDCWD, out, NULL, 0) != 0) die("cannot touch %s: %s", out, strerror(errno));
    if (same) info("%s is complete: skipped", out);
    else info("%s was made from other inputs or with other parameters: remaking it", out);
    return same;
}

/* A stage over every shard opens one file per shard at once. */
static void raise_file_limit(size_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need + 64) return;
    rl.rlim_cur = rl.rlim_max < need + 64 ? rl.rlim_max : need + 64;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < need + 16)
        die("%zu files to open at once, and the limit on open files is %llu (ulimit -n)", need,
            (unsigned long long)rl.rlim_cur);
}

/* The signature files of every shard, in the order given: that order
 * numbers the documents, as the order of FILEs does in one process. */
typedef struct {
    DdFile *f;
    size_t n;
    DdShard *shards;    /* [n] each file's shard, with its fingerprint */
    uint64_t source;    /* XXH3-64 of the fingerprints in order */
} SigSet;

static void sigs_open(SigSet *s, char **paths, size_t n)
{
    raise_file_limit(n);
    s->n = n;
    s->f = xcalloc(n, sizeof *s->f);
    s->shards = xcalloc(n, sizeof *s->shards);
    uint64_t *fp = xmalloc(n * sizeof *fp);
    char why[256];
    for (size_t i = 0; i < n; i++) {
        ddf_open(&s->f[i], paths[i], DDF_SIGNATURES);
        if (i && dd_params_differ(&s->f[i].params, &s->f[0].params, why, sizeof why))
            die("%s was made with other parameters than %s: %s", paths[i], paths[0], why);
        s->shards[i] = s->f[i].shards[0];
        s->shards[i].sig = fp[i] = s->f[i].fingerprint;
    }
    /* the removal list finds a shard by its name */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (!strcmp(s->shards[i].name, s->shards[j].name))
                die("%s and %s are signatures of two inputs named %s: input shards need distinct file names", paths[i],
                    paths[j], s->shards[i].name);
    s->source = XXH3_64bits(fp, n * sizeof *fp);
    free(fp);
}

static void sigs_close(SigSet *s)
{
    for (size_t i = 0; i < s->n; i++) ddf_close(&s->f[i]);
    free(s->f);
    free(s->shards);
}

/* ---- signatures ---------------------------------------------------------------------- */

typedef struct {
    uint64_t hi, lo;
    uint32_t doc;
} HashKey;

/* The signatures of the documents read since the last run was written. */
typedef struct {
    const DdParams *p;
    size_t cap, n;          /* documents it holds, and may hold */
    BandKey *band, *tmp;    /* [bands][cap], [cap] */
    size_t *band_n;         /* [bands] */
    HashKey *hash;          /* [cap] */
    BandKey *hash_order;    /* [cap] high half and place in hash[], to sort */
    size_t hash_n;
    uint32_t *bad;          /* [2 * cap] document, status */
    size_t bad_n;
} Run;

static void run_init(Run *r, const DdParams *p, uint64_t memory)
{
    memset(r, 0, sizeof *r);
    r->p = p;
    uint64_t per_doc = 16 * ((p->near ? (uint64_t)p->bands : 0) + 1) + (p->exact ? sizeof(HashKey) + 16 : 0) + 8;
    r->cap = (size_t)(memory / per_doc);
    if (r->cap < 16) r->cap = 16;
    r->tmp = xmalloc(r->cap * sizeof *r->tmp);
    if (p->near) {
        r->band = xmalloc((size_t)p->bands * r->cap * sizeof *r->band);
        r->band_n = xcalloc(p->bands, sizeof *r->band_n);
    }
    if (p->exact) {
        r->hash = xmalloc(r->cap * sizeof *r->hash);
        r->hash_order = xmalloc(r->cap * sizeof *r->hash_order);
    }
    r->bad = xmalloc(2 * r->cap * sizeof *r->bad);
}

static void run_free(Run *r)
{
    free(r->band);
    free(r->tmp);
    free(r->band_n);
    free(r->hash);
    free(r->hash_order);
    free(r->bad);
}

/* Sorts the run and writes it: a section per band, per partition that
 * has hashes, and for the bad records. */
static void run_write(Run *r, DdWriter *w)
{
    const DdParams *p = r->p;
    uint8_t e[20];
    for (uint32_t b = 0; p->near && b < p->bands; b++) {
        BandKey *k = r->band + (size_t)b * r->cap;
        size_t n = r->band_n[b];
        if (n == 0) continue;
        dd_sort_band(k, r->tmp, n);
        ddw_begin(w, SEC_BAND, b);
        for (size_t i = 0; i < n; i++) {
            dd_wr64(e, k[i].key);
            dd_wr32(e + 8, (uint32_t)k[i].idx);
            ddw_put(w, e);
        }
        ddw_end(w);
        r->band_n[b] = 0;
    }
    /* By high half (stable: documents in order), then by low half among
     * equal high halves, which are exact copies but for a 2^-64 chance. */
    BandKey *o = r->hash_order;
    dd_sort_band(o, r->tmp, r->hash_n);
    for (size_t i = 1; i < r->hash_n; i++)
        for (size_t j = i; j > 0 && o[j - 1].key == o[j].key && r->hash[o[j - 1].idx].lo > r->hash[o[j].idx].lo; j--) {
            BandKey t = o[j];
            o[j] = o[j - 1];
            o[j - 1] = t;
        }
    for (size_t i = 0; i < r->hash_n;) {
        uint32_t part = dd_partition(o[i].key, p->partitions);
        ddw_begin(w, SEC_HASH, part);
        for (; i < r->hash_n && dd_partition(o[i].key, p->partitions) == part; i++) {
            const HashKey *h = &r->hash[o[i].idx];
            dd_wr64(e, h->hi);
            dd_wr64(e + 8, h->lo);
            dd_wr32(e + 16, h->doc);
            ddw_put(w, e);
        }
        ddw_end(w);
    }
    if (r->bad_n) {
        ddw_begin(w, SEC_BAD, 0);
        for (size_t i = 0; i < r->bad_n; i++) ddw_put(w, r->bad + 2 * i);
        ddw_end(w);
    }
    r->n = r->hash_n = r->bad_n = 0;
}

/* What a batch of records became, filled in parallel. */
typedef struct {
    size_t cap;
    uint8_t *status, *has_sig;
    uint64_t *exact;   /* [2 * cap] */
    uint64_t *keys;    /* [bands * cap] */
} Batch;

enum { BATCH = 4096, BATCH_BYTES = 4 << 20 };

static void sign_batch(Batch *b, const DdRaw *recs, size_t n, const DdParams *p, const DdOptions *o,
                       const MinHashParams *mp, DdSigner *signers)
{
#pragma omp parallel for schedule(dynamic, 16)
    for (size_t i = 0; i < n; i++) {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        DdSigner *s = &signers[t];
        const char *text;
        size_t len;
        b->status[i] = (uint8_t)dd_text((DdFormat)p->format, p->field, recs[i].p, recs[i].len, &s->json, &text, &len);
        b->has_sig[i] = 0;
        if (b->status[i] == DD_OK)
            b->has_sig[i] = (uint8_t)dd_sign(s, mp, o, text, len, b->exact + 2 * i, b->keys + i * (size_t)p->bands);
    }
}

/* The identity of an input as make would see it: its name, size and
 * modification time (a changed input makes its signatures again). */
static uint64_t input_source(const char *input)
{
    struct stat st;
    if (stat(input, &st) != 0) die("%s: %s", input, strerror(errno));
    uint64_t v[3] = {(uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec};
    const char *name = base_name(input);
    return XXH3_64bits_withSeed(name, strlen(name), XXH3_64bits(v, sizeof v));
}

void dd_stage_signatures(const char *out, const char *input, const DdParams *p, const DdStageOptions *so)
{
    uint64_t source = input_source(input);
    if (complete(out, DDF_SIGNATURES, 0, p, source, so->force)) return;
    DdOptions o;
    dd_options_of(&o, p);
    MinHashParams mp = {0};
    if (p->near) minhash_params_init(&mp, (int)(p->bands * p->rows), p->seed);
    int threads = 1;
#ifdef _OPENMP
    if (so->threads > 0) omp_set_num_threads(so->threads);
    threads = omp_get_max_threads();
#endif
    DdSigner *signers = xcalloc((size_t)threads, sizeof *signers);
    for (int t = 0; t < threads; t++) dd_signer_init(&signers[t], &o);
    Batch b = {.cap = BATCH};
    b.status = xmalloc(BATCH);
    b.has_sig = xmalloc(BATCH);
    b.exact = xcalloc(2 * BATCH, sizeof *b.exact);
    b.keys = xmalloc((size_t)BATCH * p->bands * sizeof *b.keys);
    DdRaw *recs = xmalloc(BATCH * sizeof *recs);
    Run r;
    run_init(&r, p, so->memory);
    DdStream st;
    dd_stream_open(&st, input, (DdFormat)p->format);
    DdWriter w;
    ddw_open(&w, out);

    DdShard sh = {0};
    snprintf(sh.name, sizeof sh.name, "%s", base_name(input));
    if (strlen(base_name(input)) >= sizeof sh.name) die("%s: a file name longer than %zu bytes", input, sizeof sh.name - 1);
    uint64_t first_bad = 0;
    int first_status = 0;
    Progress pr;
    progress_init(&pr, 10);
    double t0 = now_seconds();
    size_t n;
    while ((n = dd_stream_next(&st, recs, BATCH, BATCH_BYTES)) > 0) {
        if (sh.docs + n > UINT32_MAX) die("%s: more than %u records: cut it into smaller shards", input, UINT32_MAX);
        sign_batch(&b, recs, n, p, &o, &mp, signers);
        for (size_t i = 0; i < n; i++) {
            uint32_t doc = (uint32_t)(sh.docs + i);
            if (r.n == r.cap) run_write(&r, &w);
            r.n++;
            if (b.status[i] != DD_OK) {
                if (!p->skip_bad) {
                    char where[512];
                    dd_where(where, sizeof where, (DdFormat)p->format, st.name, (uint64_t)doc + 1);
                    die("%s: %s (--skip-bad skips such records)", where, dd_status_message((DdStatus)b.status[i]));
                }
                if (sh.bad++ == 0) first_bad = doc, first_status = b.status[i];
                r.bad[2 * r.bad_n] = doc;
                r.bad[2 * r.bad_n++ + 1] = b.status[i];
                continue;
            }
            if (p->exact) {
                r.hash_order[r.hash_n] = (BandKey){b.exact[2 * i + 1], r.hash_n};
                r.hash[r.hash_n++] = (HashKey){b.exact[2 * i + 1], b.exact[2 * i], doc};
            }
            if (p->near && !b.has_sig[i]) sh.unsigned_docs++;
            for (uint32_t k = 0; p->near && b.has_sig[i] && k < p->bands; k++)
                r.band[(size_t)k * r.cap + r.band_n[k]++] = (BandKey){b.keys[i * p->bands + k], doc};
        }
        sh.docs += n;
        double dt = now_seconds() - t0;
        progress_update(&pr, "%s: %llu documents, %.1f MB, %.1f MB/s", st.name, (unsigned long long)sh.docs,
                        (double)st.bytes / 1e6, dt > 0 ? (double)st.bytes / 1e6 / dt : 0.0);
    }
    if (pr.drawn) progress_done(&pr, "%s: %llu documents signed", st.name, (unsigned long long)sh.docs);
    run_write(&r, &w);
    sh.bytes = st.bytes;
    sh.xxh3 = dd_stream_close(&st);
    ddw_commit(&w, DDF_SIGNATURES, 0, source, p, &sh, 1);
    double dt = now_seconds() - t0;
    if (sh.bad) {
        char where[512];
        dd_where(where, sizeof where, (DdFormat)p->format, input, first_bad + 1);
        warn("skipped %llu bad record%s, the first at %s: %s", (unsigned long long)sh.bad, sh.bad == 1 ? "" : "s", where,
             dd_status_message((DdStatus)first_status));
    }
    info("%s: %llu documents, %.1f MB in %.2f s (%.1f MB/s, %d thread%s) -> %s", input, (unsigned long long)sh.docs,
         (double)sh.bytes / 1e6, dt, dt > 0 ? (double)sh.bytes / 1e6 / dt : 0.0, threads, threads == 1 ? "" : "s", out);
    uint64_t hits = 0;
    for (int t = 0; t < threads; t++) hits += signers[t].hits;
    verbose("%llu of %llu documents were copies of a text signed lately (their keys reused)", (unsigned long long)hits,
            (unsigned long long)sh.docs);
    run_free(&r);
    for (int t = 0; t < threads; t++) dd_signer_free(&signers[t]);
    free(signers);
    free(b.status);
    free(b.has_sig);
    free(b.exact);
    free(b.keys);
    free(recs);
    minhash_params_free(&mp);
}

/* ---- exact and buckets: a merge of sorted runs over every shard --------------------- */

/* One sorted run of one shard's signature file. */
typedef struct {
    DdCursor c;
    uint32_t shard;
    uint64_t docs;
    uint64_t k0, k1, doc;   /* the current entry; doc as a global id */
    int started;
} Source;

static int source_next(Source *s)
{
    const uint8_t *e = ddc_next(&s->c);
    if (!e) return 0;
    uint64_t k0 = dd_rd64(e), k1 = s->c.s->type == SEC_HASH ? dd_rd64(e + 8) : 0;
    uint32_t d = dd_rd32(e + (s->c.s->type == SEC_HASH ? 16 : 8));
    if (d >= s->docs)
        die("%s: document %u at byte %llu, but its shard has %llu", s->c.f->path, d, (unsigned long long)ddc_offset(&s->c),
            (unsigned long long)s->docs);
    uint64_t g = DD_GLOBAL(s->shard, d);
    if (s->started && (k0 < s->k0 || (k0 == s->k0 && (k1 < s->k1 || (k1 == s->k1 && g <= s->doc)))))
        die("%s: the section at byte %llu is out of order at byte %llu", s->c.f->path, (unsigned long long)s->c.s->offset,
            (unsigned long long)ddc_offset(&s->c));
    s->k0 = k0, s->k1 = k1, s->doc = g, s->started = 1;
    return 1;
}

static int source_less(const Source *a, const Source *b)
{
    if (a->k0 != b->k0) return a->k0 < b->k0;
    if (a->k1 != b->k1) return a->k1 < b->k1;
    return a->doc < b->doc;
}

/* A binary min-heap of sources by their current entry. */
typedef struct {
    Source **h;
    size_t n;
} Heap;

static void heap_down(Heap *q, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < q->n && source_less(q->h[l], q->h[m])) m = l;
        if (l + 1 < q->n && source_less(q->h[l + 1], q->h[m])) m = l + 1;
        if (m == i) return;
        Source *t = q->h[i];
        q->h[i] = q->h[m];
        q->h[m] = t;
        i = m;
    }
}

/* The top's next entry, or its removal when it has none. */
static void heap_advance(Heap *q)
{
    if (!source_next(q->h[0])) q->h[0] = q->h[--q->n];
    heap_down(q, 0);
}

/* Every run of section type `type` and index `index` over the shards. */
typedef struct {
    Source *src;
    size_t n;
    Heap q;
} Merge;

static void merge_open(Merge *m, const SigSet *s, uint32_t type, uint32_t index, uint64_t memory)
{
    m->n = 0;
    for (size_t i = 0; i < s->n; i++)
        for (size_t k = 0; k < s->f[i].n_sec; k++) m->n += s->f[i].sec[k].type == type && s->f[i].sec[k].index == index;
    m->src = xcalloc(m->n ? m->n : 1, sizeof *m->src);
    m->q.h = xmalloc((m->n ? m->n : 1) * sizeof *m->q.h);
    m->q.n = 0;
    uint64_t buf = m->n ? memory / m->n : 0;
    if (buf < 4096) buf = 4096;
    if (buf > (1 << 20)) buf = 1 << 20;
    size_t j = 0;
    for (size_t i = 0; i < s->n; i++)
        for (size_t k = 0; k < s->f[i].n_sec; k++) {
            if (s->f[i].sec[k].type != type || s->f[i].sec[k].index != index) continue;
            Source *src = &m->src[j++];
            ddc_open(&src->c, &s->f[i], k, (size_t)buf);
            src->shard = (uint32_t)i;
            src->docs = s->shards[i].docs;
            if (source_next(src)) m->q.h[m->q.n++] = src;
        }
    for (size_t i = m->q.n / 2; i-- > 0;) heap_down(&m->q, i);
}

static void merge_close(Merge *m)
{
    for (size_t i = 0; i < m->n; i++) ddc_close(&m->src[i].c);
    free(m->src);
    free(m->q.h);
}

void dd_stage_exact(const char *out, uint32_t partition, char **sigs, size_t n, const DdStageOptions *so)
{
    SigSet s;
    sigs_open(&s, sigs, n);
    const DdParams *p = &s.f[0].params;
    if (!p->exact) die("%s was made with --mode near: it holds no exact hashes", sigs[0]);
    if (partition >= p->partitions)
        usage_error("--partition %u: the signatures have %u partitions (0 to %u)", partition, p->partitions, p->partitions - 1);
    if (!complete(out, DDF_EXACT, partition, p, s.source, so->force)) {
        Merge m;
        merge_open(&m, &s, SEC_HASH, partition, so->memory);
        DdWriter w;
        ddw_open(&w, out);
        ddw_begin(&w, SEC_DUPS, partition);
        uint64_t k0 = 0, k1 = 0, first = 0, dups = 0;
        int any = 0;
        while (m.q.n) {
            Source *t = m.q.h[0];
            if (any && t->k0 == k0 && t->k1 == k1) {
                uint8_t e[16];
                dd_wr64(e, t->doc);
                dd_wr64(e + 8, first);
                ddw_put(&w, e);
                dups++;
            } else {
                k0 = t->k0, k1 = t->k1, first = t->doc, any = 1;
            }
            heap_advance(&m.q);
        }
        ddw_end(&w);
        ddw_commit(&w, DDF_EXACT, partition, s.source, p, s.shards, s.n);
        info("exact partition %u of %u over %zu shards: %llu exact duplicates -> %s", partition, p->partitions, n,
             (unsigned long long)dups, out);
        merge_close(&m);
    }
    sigs_close(&s);
}

void dd_stage_buckets(const char *out, uint32_t band, char **sigs, size_t n, const DdStageOptions *so)
{
    SigSet s;
    sigs_open(&s, sigs, n);
    const DdParams *p = &s.f[0].params;
    if (!p->near) die("%s was made with --mode exact: it holds no band keys", sigs[0]);
    if (band >= p->bands) usage_error("--band %u: the signatures have %u bands (0 to %u)", band, p->bands, p->bands - 1);
    if (!complete(out, DDF_PAIRS, band, p, s.source, so->force)) {
        Merge m;
        merge_open(&m, &s, SEC_BAND, band, so->memory);
        DdWriter w;
        ddw_open(&w, out);
        ddw_begin(&w, SEC_PAIRS, band);
        uint64_t key = 0, prev = 0, pairs = 0;
        int any = 0;
        /* Members of a bucket come in document order; each is linked to
         * the one before it, which makes the bucket one cluster (as in
         * one process). */
        while (m.q.n) {
            Source *t = m.q.h[0];
            if (any && t->k0 == key && t->doc != prev) {
                uint8_t e[16];
                dd_wr64(e, prev);
                dd_wr64(e + 8, t->doc);
                ddw_put(&w, e);
                pairs++;
            }
            key = t->k0, prev = t->doc, any = 1;
            heap_advance(&m.q);
        }
        ddw_end(&w);
        ddw_commit(&w, DDF_PAIRS, band, s.source, p, s.shards, s.n);
        info("band %u of %u over %zu shards: %llu candidate pairs -> %s", band, p->bands, n, (unsigned long long)pairs, out);
        merge_close(&m);
    }
    sigs_close(&s);
}

/* ---- clusters ------------------------------------------------------------------------- */

/* Union-find over the documents that appear in pairs, found through an
 * open-addressing table from global id to node; the root of a set is its
 * lowest document, as in one process. */
typedef struct {
    uint64_t *slot_key;   /* [cap] global id + 1; 0 is empty */
    uint32_t *slot_node;  /* [cap] */
    size_t cap;
    uint64_t *doc;        /* [n] node -> global id */
    uint32_t *parent;     /* [n] */
    size_t n, node_cap;
} Uf;

static size_t slot_of(uint64_t g, size_t cap)
{
    uint64_t x = g * 0x9E3779B97F4A7C15ull;
    return (size_t)(x ^ (x >> 29)) & (cap - 1);
}

static void uf_grow(Uf *u)
{
    size_t cap = u->cap ? 2 * u->cap : 1 << 16;
    uint64_t *key = xcalloc(cap, sizeof *key);
    uint32_t *node = xmalloc(cap * sizeof *node);
    for (size_t i = 0; i < u->cap; i++) {
        if (!u->slot_key[i]) continue;
        size_t j = slot_of(u->slot_key[i] - 1, cap);
        while (key[j]) j = (j + 1) & (cap - 1);
        key[j] = u->slot_key[i];
        node[j] = u->slot_node[i];
    }
    free(u->slot_key);
    free(u->slot_node);
    u->slot_key = key;
    u->slot_node = node;
    u->cap = cap;
}

static uint32_t uf_node(Uf *u, uint64_t g)
{
    if (2 * (u->n + 1) > u->cap) uf_grow(u);
    size_t j = slot_of(g, u->cap);
    while (u->slot_key[j] && u->slot_key[j] != g + 1) j = (j + 1) & (u->cap - 1);
    if (u->slot_key[j]) return u->slot_node[j];
    if (u->n == UINT32_MAX) die("more than %u documents in candidate pairs", UINT32_MAX);
    if (u->n == u->node_cap) {
        u->node_cap = u->node_cap ? 2 * u->node_cap : 1 << 16;
        u->doc = xrealloc(u->doc, u->node_cap * sizeof *u->doc);
        u->parent = xrealloc(u->parent, u->node_cap * sizeof *u->parent);
    }
    u->slot_key[j] = g + 1;
    u->slot_node[j] = (uint32_t)u->n;
    u->doc[u->n] = g;
    u->parent[u->n] = (uint32_t)u->n;
    return (uint32_t)u->n++;
}

static uint32_t uf_find(Uf *u, uint32_t x)
{
    while (u->parent[x] != x) {
        u->parent[x] = u->parent[u->parent[x]];   /* path halving */
        x = u->parent[x];
    }
    return x;
}

static void uf_union(Uf *u, uint32_t a, uint32_t b)
{
    a = uf_find(u, a);
    b = uf_find(u, b);
    if (a == b) return;
    if (u->doc[a] < u->doc[b]) u->parent[b] = a;
    else u->parent[a] = b;
}

typedef struct {
    uint64_t doc, dup_of;
    uint16_t verdict, status;
} Removal;

static int cmp_removal(const void *a, const void *b)
{
    const Removal *x = a, *y = b;
    if (x->doc != y->doc) return x->doc < y->doc ? -1 : 1;
    return (x->verdict > y->verdict) - (x->verdict < y->verdict);
}

typedef struct {
    Removal *r;
    size_t n, cap;
} Removals;

static void removal_push(Removals *l, uint64_t doc, uint64_t dup_of, int verdict, int status)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1 << 16;
        l->r = xrealloc(l->r, l->cap * sizeof *l->r);
    }
    l->r[l->n++] = (Removal){doc, dup_of, (uint16_t)verdict, (uint16_t)status};
}

/* A global id that names a document of the shard table (else dies). */
static void check_doc(const DdFile *f, const DdCursor *c, uint64_t g)
{
    uint32_t s = DD_SHARD_OF(g);
    if (s >= f->n_shards || DD_DOC_OF(g) >= f->shards[s].docs)
        die("%s: document %u of shard %u at byte %llu is not in the shard table", f->path, DD_DOC_OF(g), s,
            (unsigned long long)ddc_offset(c));
}

/* The inputs of clusters, sorted by kind; pairs and exact files by index. */
typedef struct {
    SigSet sigs;
    DdFile *exact, *pairs;   /* [partitions], [bands]: fd < 0 where absent */
    uint64_t source;
} ClusterInputs;

static void place(DdFile *slot, DdFile *f, const char *what, uint32_t index)
{
    if (slot->fd >= 0) die("%s and %s are both the %s %u", slot->path, f->path, what, index);
    *slot = *f;
}

static void cluster_inputs(ClusterInputs *in, char **paths, size_t n)
{
    char **sigs = xmalloc(n * sizeof *sigs);
    size_t n_sigs = 0;
    DdFile *others = xcalloc(n, sizeof *others);
    size_t n_others = 0;
    raise_file_limit(n);
    for (size_t i = 0; i < n; i++) {
        DdFile f;
        ddf_open(&f, paths[i], 0);
        if (f.kind == DDF_SIGNATURES) sigs[n_sigs++] = paths[i];
        else if (f.kind == DDF_REMOVAL) die("%s is a removal list: clusters makes one from signature, exact and pairs files", paths[i]);
        else {
            others[n_others++] = f;
            continue;
        }
        ddf_close(&f);
    }
    if (!n_sigs) die("clusters needs the signature files of every shard too (their shard table and bad records)");
    sigs_open(&in->sigs, sigs, n_sigs);
    const DdParams *p = &in->sigs.f[0].params;
    in->exact = xcalloc(p->partitions, sizeof *in->exact);
    in->pairs = xcalloc(p->bands, sizeof *in->pairs);
    for (uint32_t i = 0; i < p->partitions; i++) in->exact[i].fd = -1;
    for (uint32_t i = 0; i < p->bands; i++) in->pairs[i].fd = -1;
    char why[256];
    for (size_t i = 0; i < n_others; i++) {
        DdFile *f = &others[i];
        if (dd_params_differ(&f->params, p, why, sizeof why))
            die("%s was made with other parameters than %s: %s", f->path, sigs[0], why);
        int same = f->n_shards == in->sigs.n;
        for (size_t k = 0; same && k < f->n_shards; k++) same = f->shards[k].sig == in->sigs.shards[k].sig;
        if (!same) die("%s was made from other signature files than those given, or in another order", f->path);
        if (f->kind == DDF_EXACT) place(&in->exact[f->index], f, "exact duplicates of partition", f->index);
        else place(&in->pairs[f->index], f, "pairs of band", f->index);
    }
    XXH3_state_t *h = XXH3_createState();
    XXH3_64bits_reset(h);
    XXH3_64bits_update(h, &in->sigs.source, 8);
    for (uint32_t i = 0; p->exact && i < p->partitions; i++) {
        if (in->exact[i].fd < 0) die("no exact duplicates file for partition %u among the inputs (sigma-dedup exact)", i);
        XXH3_64bits_update(h, &in->exact[i].fingerprint, 8);
    }
    for (uint32_t i = 0; p->near && i < p->bands; i++) {
        if (in->pairs[i].fd < 0) die("no pairs file for band %u among the inputs (sigma-dedup buckets)", i);
        XXH3_64bits_update(h, &in->pairs[i].fingerprint, 8);
    }
    in->source = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    free(sigs);
    free(others);
}

static void cluster_inputs_close(ClusterInputs *in)
{
    const DdParams *p = &in->sigs.f[0].params;
    for (uint32_t i = 0; i < p->partitions; i++)
        if (in->exact[i].fd >= 0) ddf_close(&in->exact[i]);
    for (uint32_t i = 0; i < p->bands; i++)
        if (in->pairs[i].fd >= 0) ddf_close(&in->pairs[i]);
    free(in->exact);
    free(in->pairs);
    sigs_close(&in->sigs);
}

enum { CURSOR_BUF = 1 << 20 };

static uint64_t join_pairs(Uf *u, const DdFile *f)
{
    DdCursor c;
    ddc_open(&c, f, 0, CURSOR_BUF);
    const uint8_t *e;
    uint64_t n = 0;
    while ((e = ddc_next(&c))) {
        uint64_t a = dd_rd64(e), b = dd_rd64(e + 8);
        check_doc(f, &c, a);
        check_doc(f, &c, b);
        if (a >= b) die("%s: pair at byte %llu is not in order (a < b)", f->path, (unsigned long long)ddc_offset(&c));
        uf_union(u, uf_node(u, a), uf_node(u, b));
        n++;
    }
    ddc_close(&c);
    return n;
}

static void collect_exact(Removals *l, const DdFile *f)
{
    DdCursor c;
    ddc_open(&c, f, 0, CURSOR_BUF);
    const uint8_t *e;
    while ((e = ddc_next(&c))) {
        uint64_t d = dd_rd64(e), first = dd_rd64(e + 8);
        check_doc(f, &c, d);
        check_doc(f, &c, first);
        if (first >= d) die("%s: duplicate at byte %llu comes before its first copy", f->path, (unsigned long long)ddc_offset(&c));
        removal_push(l, d, first, DD_EXACT, DD_OK);
    }
    ddc_close(&c);
}

static void collect_bad(Removals *l, const DdFile *f, uint32_t shard)
{
    for (size_t k = 0; k < f->n_sec; k++) {
        if (f->sec[k].type != SEC_BAD) continue;
        DdCursor c;
        ddc_open(&c, f, k, CURSOR_BUF);
        const uint8_t *e;
        while ((e = ddc_next(&c))) {
            uint32_t d = dd_rd32(e), st = dd_rd32(e + 4);
            if (d >= f->shards[0].docs || st == DD_OK || st > DD_NUL_ESCAPE)
                die("%s: bad record entry at byte %llu out of range", f->path, (unsigned long long)ddc_offset(&c));
            removal_push(l, DD_GLOBAL(shard, d), 0, DD_SKIPPED, (int)st);
        }
        ddc_close(&c);
    }
}

static void write_removal(const char *out, const Removals *l, const ClusterInputs *in)
{
    DdWriter w;
    ddw_open(&w, out);
    size_t i = 0;
    for (uint32_t s = 0; s < in->sigs.n; s++) {
        ddw_begin(&w, SEC_REMOVE, s);
        for (; i < l->n && DD_SHARD_OF(l->r[i].doc) == s; i++) {
            uint8_t e[16];
            dd_wr32(e, DD_DOC_OF(l->r[i].doc));
            dd_wr16(e + 4, l->r[i].verdict);
            dd_wr16(e + 6, l->r[i].status);
            dd_wr64(e + 8, l->r[i].dup_of);
            ddw_put(&w, e);
        }
        ddw_end(&w);
    }
    ddw_commit(&w, DDF_REMOVAL, 0, in->source, &in->sigs.f[0].params, in->sigs.shards, in->sigs.n);
}

static void write_cluster_stats(const char *path, const ClusterInputs *in, const uint64_t count[4], uint64_t pairs,
                                double secs)
{
    const DdParams *p = &in->sigs.f[0].params;
    uint64_t docs = 0, too_short = 0, bytes = 0;
    for (size_t i = 0; i < in->sigs.n; i++) {
        docs += in->sigs.shards[i].docs;
        too_short += in->sigs.shards[i].unsigned_docs;
        bytes += in->sigs.shards[i].bytes;
    }
    cJSON *s = json_obj();
    dd_stats_head(s, (int)p->format, (int)p->norm, p->exact, p->near);
    json_add_u64(s, "shards", in->sigs.n);
    json_add_u64(s, "documents_in", docs);
    json_add_u64(s, "documents_out", docs - count[DD_EXACT] - count[DD_NEAR] - count[DD_SKIPPED]);
    json_add_u64(s, "exact_removed", count[DD_EXACT]);
    json_add_u64(s, "near_removed", count[DD_NEAR]);
    json_add_u64(s, "bad_skipped", count[DD_SKIPPED]);
    json_add_u64(s, "too_short_for_minhash", too_short);
    json_add_u64(s, "candidate_pairs", pairs);
    json_add_u64(s, "bytes_in", bytes);
    json_add_num(s, "seconds", secs);
    cJSON *m = dd_stats_minhash(p->ngram, p->bands, p->rows, p->seed);
    json_add_u64(m, "partitions", p->partitions);
    json_add(s, "minhash", m);
    json_write_file_atomic(path, s);
    cJSON_Delete(s);
}

void dd_stage_clusters(const char *out, char **paths, size_t n, const DdStageOptions *so)
{
    double t0 = now_seconds();
    ClusterInputs in;
    cluster_inputs(&in, paths, n);
    const DdParams *p = &in.sigs.f[0].params;
    /* complete, and its --stats there when asked for: nothing to do */
    if ((!so->stats || path_exists(so->stats)) && complete(out, DDF_REMOVAL, 0, p, in.source, so->force)) {
        cluster_inputs_close(&in);
        return;
    }
    Uf u = {0};
    uint64_t pairs = 0;
    for (uint32_t b = 0; p->near && b < p->bands; b++) pairs += join_pairs(&u, &in.pairs[b]);
    Removals l = {0};
    for (uint32_t k = 0; p->exact && k < p->partitions; k++) collect_exact(&l, &in.exact[k]);
    for (uint32_t s = 0; s < in.sigs.n; s++) collect_bad(&l, &in.sigs.f[s], s);
    for (size_t i = 0; i < u.n; i++) {
        uint32_t r = uf_find(&u, (uint32_t)i);
        if (r != i) removal_push(&l, u.doc[i], u.doc[r], DD_NEAR, DD_OK);
    }
    free(u.slot_key);
    free(u.slot_node);
    free(u.doc);
    free(u.parent);
    /* An exact copy is also in its first copy's cluster: exact comes first
     * and is kept, as in one process, where near never sees it. */
    qsort(l.r, l.n, sizeof *l.r, cmp_removal);
    size_t m = 0;
    uint64_t count[4] = {0};
    for (size_t i = 0; i < l.n; i++)
        if (m == 0 || l.r[i].doc != l.r[m - 1].doc) {
            l.r[m++] = l.r[i];
            count[l.r[i].verdict]++;
        }
    l.n = m;
    write_removal(out, &l, &in);
    info("%zu shards: %llu exact and %llu near duplicates, %llu bad records -> %s", in.sigs.n,
         (unsigned long long)count[DD_EXACT], (unsigned long long)count[DD_NEAR], (unsigned long long)count[DD_SKIPPED], out);
    if (so->stats) write_cluster_stats(so->stats, &in, count, pairs, now_seconds() - t0);
    free(l.r);
    cluster_inputs_close(&in);
}

/* ---- filter ---------------------------------------------------------------------------- */

static int newer_than(const char *out, const char *in)
{
    struct stat a, b;
    if (stat(out, &a) != 0 || stat(in, &b) != 0) return 0;
    return a.st_mtim.tv_sec > b.st_mtim.tv_sec ||
           (a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec >= b.st_mtim.tv_nsec);
}

/* The removal list's entries for one shard, in document order. */
typedef struct {
    DdCursor c;
    const DdFile *f;
    uint64_t docs;
    int has;
    uint32_t doc;
    int verdict, status;
    uint64_t dup_of;
} RemovalReader;

static void removal_next(RemovalReader *r)
{
    const uint8_t *e = ddc_next(&r->c);
    if (!e) {
        r->has = 0;
        return;
    }
    uint32_t d = dd_rd32(e);
    int v = dd_rd16(e + 4), st = dd_rd16(e + 6);
    uint64_t dup = dd_rd64(e + 8);
    unsigned long long at = (unsigned long long)ddc_offset(&r->c);
    if (d >= r->docs || (r->has && d <= r->doc))
        die("%s: entry at byte %llu: document %u is out of order or beyond the shard's %llu", r->f->path, at, d,
            (unsigned long long)r->docs);
    if (v == DD_SKIPPED ? st == DD_OK || st > DD_NUL_ESCAPE : (v != DD_EXACT && v != DD_NEAR) || st != DD_OK)
        die("%s: entry at byte %llu: reason %d, status %d", r->f->path, at, v, st);
    if (v != DD_SKIPPED) {
        uint32_t s = DD_SHARD_OF(dup);
        if (s >= r->f->n_shards || DD_DOC_OF(dup) >= r->f->shards[s].docs || dup >= DD_GLOBAL(r->c.s->index, d))
            die("%s: entry at byte %llu: a duplicate of a document that is not before it", r->f->path, at);
    }
    r->has = 1, r->doc = d, r->verdict = v, r->status = st, r->dup_of = dup;
}

void dd_stage_filter(const char *out, const char *removal, const char *input, const DdStageOptions *so)
{
    if (!so->force && newer_than(out, input) && newer_than(out, removal) && (!so->removed || newer_than(so->removed, input))) {
        info("%s is newer than %s and %s: skipped", out, input, removal);
        return;
    }
    DdFile f;
    ddf_open(&f, removal, DDF_REMOVAL);
    const char *name = base_name(input);
    uint32_t s = 0;
    uint64_t first = 0;   /* the global number of the shard's first document */
    while (s < f.n_shards && strcmp(f.shards[s].name, name)) first += f.shards[s++].docs;
    if (s == f.n_shards) die("%s: no shard named %s in it (it names %zu shards, the first %s)", removal, name, f.n_shards, f.shards[0].name);
    uint64_t *base = xmalloc(f.n_shards * sizeof *base);
    for (size_t i = 0, at = 0; i < f.n_shards; at += f.shards[i++].docs) base[i] = at;
    DdFormat format = (DdFormat)f.params.format;

    RemovalReader rr = {.f = &f, .docs = f.shards[s].docs};
    ddc_open(&rr.c, &f, s, CURSOR_BUF);
    removal_next(&rr);
    DdStream st;
    dd_stream_open(&st, input, format);
    AtomicFile af, rf;
    atomic_file_open(&af, out);
    FILE *o = is_zst_path(out) ? zstd_writer(af.f, out, 3) : af.f;
    FILE *ro = NULL;
    if (so->removed) {
        atomic_file_open(&rf, so->removed);
        ro = is_zst_path(so->removed) ? zstd_writer(rf.f, so->removed, 3) : rf.f;
    }
    DdRaw *recs = xmalloc(BATCH * sizeof *recs);
    uint64_t doc = 0, kept = 0;
    int pending = 0;
    size_t n;
    Progress pr;
    progress_init(&pr, 10);
    while ((n = dd_stream_next(&st, recs, BATCH, BATCH_BYTES)) > 0) {
        progress_update(&pr, "%s: %llu of %llu documents, %.1f MB", input, (unsigned long long)doc,
                        (unsigned long long)f.shards[s].docs, (double)st.bytes / 1e6);
        for (size_t i = 0; i < n; i++, doc++) {
            if (rr.has && rr.doc == doc) {
                if (so->removed) {
                    uint64_t dup = rr.verdict == DD_SKIPPED ? 0 : base[DD_SHARD_OF(rr.dup_of)] + DD_DOC_OF(rr.dup_of);
                    dd_write_removed_line(ro, format, first + doc, rr.verdict, dup, rr.status, recs[i].p, recs[i].len, NULL);
                }
                removal_next(&rr);
                continue;
            }
            dd_write_raw(o, format, recs[i].p, recs[i].len, recs[i].term, &pending);
            kept++;
        }
    }
    if (pr.drawn) progress_done(&pr, "%s: %llu documents read", input, (unsigned long long)doc);
    uint64_t bytes = st.bytes, h = dd_stream_close(&st);
    if (doc != f.shards[s].docs || bytes != f.shards[s].bytes || h != f.shards[s].xxh3)
        die("%s is not the input the removal list %s was made from: %llu records and %llu bytes of text, it says %llu and %llu%s",
            input, removal, (unsigned long long)doc, (unsigned long long)bytes, (unsigned long long)f.shards[s].docs,
            (unsigned long long)f.shards[s].bytes, doc == f.shards[s].docs && bytes == f.shards[s].bytes ? " (the text differs)" : "");
    if (rr.has) die("%s: an entry for document %u, beyond the input's records", removal, rr.doc);
    if (ddc_next(&rr.c)) BUG("entries after the end");
    if (o != af.f) xfclose(o, out);   /* the zstd frame's end */
    if (ro && ro != rf.f) xfclose(ro, so->removed);
    atomic_file_commit(&af);
    if (so->removed) atomic_file_commit(&rf);
    info("%s: %llu of %llu documents kept -> %s", input, (unsigned long long)kept, (unsigned long long)doc, out);
    ddc_close(&rr.c);
    free(recs);
    free(base);
    ddf_close(&f);
}
