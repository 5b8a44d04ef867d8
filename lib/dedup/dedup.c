/* The deduplication stages: signatures, exact, near (LSH + union-find). */
#include "dedup/dedup.h"
#include "base/base.h"
#include "dedup/minhash.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#ifdef _OPENMP
#include "base/threads.h"
#endif

void dd_options_default(DdOptions *o)
{
    *o = (DdOptions){.norm = DD_NORM_DATATROVE, .exact = 1, .near = 1, .ngram = 5, .bands = 14, .rows = 8,
                     .seed = 1, .verify = 0, .skip_bad = 0, .threads = 0};
}

void dd_signer_init(DdSigner *s, const DdOptions *o)
{
    memset(s, 0, sizeof *s);
    s->sig = xmalloc((size_t)(o->bands * o->rows) * sizeof *s->sig);
    if (o->near) s->cache = xcalloc(DD_SIGN_CACHE * (3 + (size_t)o->bands), sizeof *s->cache);
}

void dd_signer_free(DdSigner *s)
{
    ddbuf_free(&s->json);
    ddbuf_free(&s->norm);
    ddbuf_free(&s->words);
    ddbuf_free(&s->shingles);
    free(s->sig);
    free(s->cache);
}

/* The word text of a document (see dd_word_text); with datatrove's
 * normalization also the normalized text, for the exact hash. */
static const char *word_text(DdSigner *s, size_t *wn, const char *text, size_t len, DdNorm norm)
{
    if (norm == DD_NORM_DATATROVE) {
        dd_normalize_datatrove(&s->norm, text, len);
        return dd_word_text(&s->words, wn, s->norm.p, s->norm.len, DD_NORM_DATATROVE);
    }
    return dd_word_text(&s->words, wn, text, len, DD_NORM_NONE);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sorted distinct shingle hashes of a text into s->shingles; returns count. */
static size_t shingle_set(DdSigner *s, const char *text, size_t len, DdNorm norm, int ngram)
{
    size_t wn;
    const char *w = word_text(s, &wn, text, len, norm);
    size_t n = dd_shingles(&s->shingles, w, wn, ngram);
    uint64_t *h = (uint64_t *)(void *)s->shingles.p;
    if (n == 0) return 0;
    qsort(h, n, sizeof *h, cmp_u64);
    size_t u = 1;
    for (size_t i = 1; i < n; i++)
        if (h[i] != h[u - 1]) h[u++] = h[i];
    return u;
}

double dd_jaccard(const char *a, size_t na, const char *b, size_t nb, DdNorm norm, int ngram)
{
    DdSigner sa = {0}, sb = {0};
    size_t ka = shingle_set(&sa, a, na, norm, ngram), kb = shingle_set(&sb, b, nb, norm, ngram);
    const uint64_t *x = (const uint64_t *)(void *)sa.shingles.p, *y = (const uint64_t *)(void *)sb.shingles.p;
    size_t i = 0, j = 0, inter = 0;
    while (i < ka && j < kb) {
        if (x[i] == y[j]) inter++, i++, j++;
        else if (x[i] < y[j]) i++;
        else j++;
    }
    dd_signer_free(&sa);
    dd_signer_free(&sb);
    size_t uni = ka + kb - inter;
    return uni ? (double)inter / (double)uni : (ka == 0 && kb == 0 ? 1.0 : 0.0);
}

typedef struct {
    uint64_t lo, hi;
    uint64_t idx;
} ExactKey;

static int cmp_exact(const void *a, const void *b)
{
    const ExactKey *x = a, *y = b;
    if (x->hi != y->hi) return x->hi < y->hi ? -1 : 1;
    if (x->lo != y->lo) return x->lo < y->lo ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Stable LSD radix sort by key, a byte a pass. */
static void sort_lsd(BandKey *a, BandKey *tmp, size_t n)
{
    for (int shift = 0; shift < 64; shift += 8) {
        size_t count[257] = {0};
        for (size_t i = 0; i < n; i++) count[((a[i].key >> shift) & 0xff) + 1]++;
        if (count[((a[0].key >> shift) & 0xff) + 1] == n) continue;   /* one bucket: nothing moves */
        for (int b = 0; b < 256; b++) count[b + 1] += count[b];
        for (size_t i = 0; i < n; i++) tmp[count[(a[i].key >> shift) & 0xff]++] = a[i];
        memcpy(a, tmp, n * sizeof *a);
    }
}

/* Keys are hashes, spread evenly: one stable pass on their top bits leaves
 * buckets of a few keys, each put in order by insertion (stable too); a
 * bucket of many (equal keys: duplicates) by the byte passes. Three passes
 * over the data instead of sixteen. */
void dd_sort_band(BandKey *a, BandKey *tmp, size_t n)
{
    if (n < 2) return;
    int bits = 8;
    while (bits < 16 && ((size_t)1 << (bits + 1)) < n) bits++;
    int shift = 64 - bits;
    size_t nb = (size_t)1 << bits;
    uint32_t *start = xcalloc(nb + 1, sizeof *start);
    for (size_t i = 0; i < n; i++) start[(a[i].key >> shift) + 1]++;
    for (size_t b = 0; b < nb; b++) start[b + 1] += start[b];
    for (size_t i = 0; i < n; i++) tmp[start[a[i].key >> shift]++] = a[i];
    /* start[b] is now the end of bucket b */
    for (size_t b = 0, lo = 0; b < nb; lo = start[b++]) {
        size_t hi = start[b];
        if (hi - lo > 32) {
            size_t k = lo + 1;
            while (k < hi && tmp[k].key == tmp[lo].key) k++;
            if (k < hi) sort_lsd(tmp + lo, a + lo, hi - lo);   /* else all equal: copies of one text */
            continue;
        }
        for (size_t i = lo + 1; i < hi; i++) {
            BandKey x = tmp[i];
            size_t j = i;
            for (; j > lo && tmp[j - 1].key > x.key; j--) tmp[j] = tmp[j - 1];
            tmp[j] = x;
        }
    }
    memcpy(a, tmp, n * sizeof *a);
    free(start);
}

typedef struct {
    uint64_t a, b;   /* a < b */
} Pair;

static int cmp_pair(const void *p, const void *q)
{
    const Pair *x = p, *y = q;
    if (x->a != y->a) return x->a < y->a ? -1 : 1;
    return (x->b > y->b) - (x->b < y->b);
}

typedef struct {
    Pair *p;
    size_t n, cap;
} PairList;

static void pair_push(PairList *l, uint64_t a, uint64_t b)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->p = xrealloc(l->p, l->cap * sizeof *l->p);
    }
    l->p[l->n++] = (Pair){a, b};
}

/* Union-find over parent[]: the root is the lowest index of its set. */
static uint64_t uf_find(uint64_t *parent, uint64_t x)
{
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];   /* path halving */
        x = parent[x];
    }
    return x;
}

static void uf_union(uint64_t *parent, uint64_t a, uint64_t b)
{
    a = uf_find(parent, a);
    b = uf_find(parent, b);
    if (a == b) return;
    if (a < b) parent[b] = a;
    else parent[a] = b;
}

/* Without verification a bucket's members are chained (consecutive pairs:
 * the same clusters as all pairs). With it, each member is paired with up
 * to VERIFY_FAN earlier members, so one dissimilar member does not cut a
 * bucket of similar ones in two. */
enum { VERIFY_FAN = 8 };

static void band_pairs(PairList *out, const uint64_t *keys, const uint8_t *alive, size_t n, int band, int bands,
                       int verify)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) m += alive[i];
    BandKey *bk = xmalloc((m ? m : 1) * sizeof *bk), *tmp = xmalloc((m ? m : 1) * sizeof *tmp);
    m = 0;
    for (size_t i = 0; i < n; i++)
        if (alive[i]) bk[m++] = (BandKey){keys[i * (size_t)bands + (size_t)band], i};
    if (m > 1) dd_sort_band(bk, tmp, m);
    free(tmp);
    for (size_t s = 0, e; s < m; s = e) {
        for (e = s + 1; e < m && bk[e].key == bk[s].key; e++) {
            if (!verify) pair_push(out, bk[e - 1].idx, bk[e].idx);
            else
                for (size_t k = e; k-- > s && e - k <= VERIFY_FAN;) pair_push(out, bk[k].idx, bk[e].idx);
        }
    }
    free(bk);
}

int dd_sign(DdSigner *s, const MinHashParams *mp, const DdOptions *o, const char *text, size_t len, uint64_t exact[2],
            uint64_t *keys)
{
    const char *t = text;   /* what the exact hash and the words come from */
    size_t tn = len;
    if (o->norm == DD_NORM_DATATROVE) {
        dd_normalize_datatrove(&s->norm, text, len);
        t = s->norm.p, tn = s->norm.len;
    }
    XXH128_hash_t h = XXH3_128bits(t, tn);
    exact[0] = h.low64;
    exact[1] = h.high64;
    if (!o->near) return 0;
    /* A text met lately (equal hashes: what the exact stage takes for
     * equal texts too) has the same band keys: copies are common. */
    size_t row = 3 + (size_t)o->bands;
    uint64_t *c = s->cache + (h.low64 & (DD_SIGN_CACHE - 1)) * row;
    if (c[2] && c[0] == h.low64 && c[1] == h.high64) {
        s->hits++;
        if (c[2] == 2) memcpy(keys, c + 3, (size_t)o->bands * sizeof *keys);
        return c[2] == 2;
    }
    size_t wn;
    const char *w = dd_word_text(&s->words, &wn, t, tn, o->norm);
    size_t k = dd_shingles(&s->shingles, w, wn, o->ngram);
    c[0] = h.low64, c[1] = h.high64, c[2] = k ? 2 : 1;
    if (k == 0) return 0;
    minhash_signature(s->sig, mp, (const uint64_t *)(void *)s->shingles.p, k);
    minhash_band_keys(keys, s->sig, o->bands, o->rows);
    memcpy(c + 3, keys, (size_t)o->bands * sizeof *keys);
    return 1;
}

/* Signatures (band keys) and exact hashes of every document, in parallel. */
static void sign_all(DdResult *r, uint64_t *keys, ExactKey *ek, uint8_t *has_sig, const DdCorpus *c,
                     const DdOptions *o, const MinHashParams *mp)
{
    size_t n = c->n, done = 0;
    uint64_t unsigned_docs = 0;
    Progress pr;
    progress_init(&pr, 10);
#pragma omp parallel reduction(+ : unsigned_docs)
    {
        DdSigner s;
        dd_signer_init(&s, o);
        int leader = 1;
#ifdef _OPENMP
        leader = omp_get_thread_num() == 0;
#endif
#pragma omp for schedule(dynamic, 64)
        for (size_t i = 0; i < n; i++) {
            if (i % 4096 == 0) {
                size_t d;
#pragma omp atomic capture
                d = done += 4096;
                if (leader) progress_update(&pr, "%.0f%% of %zu documents hashed", 100.0 * (double)(d < n ? d : n) / (double)n, n);
            }
            const char *text;
            size_t len;
            DdStatus st = dd_record_text(c, i, &s.json, &text, &len);
            r->status[i] = (uint8_t)st;
            ek[i].idx = i;
            if (st != DD_OK) continue;
            uint64_t h[2] = {0, 0};
            has_sig[i] = (uint8_t)dd_sign(&s, mp, o, text, len, h, o->near ? keys + i * (size_t)o->bands : NULL);
            ek[i].lo = h[0];
            ek[i].hi = h[1];
            if (o->near && !has_sig[i]) unsigned_docs++;
        }
        dd_signer_free(&s);
    }
    if (pr.drawn) progress_done(&pr, "%zu documents hashed", n);
    r->unsigned_docs = unsigned_docs;
}

static void exact_stage(DdResult *r, ExactKey *ek, size_t n)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (r->status[i] == DD_OK) ek[m++] = ek[i];
    qsort(ek, m, sizeof *ek, cmp_exact);
    for (size_t s = 0, e; s < m; s = e) {
        for (e = s + 1; e < m && ek[e].hi == ek[s].hi && ek[e].lo == ek[s].lo; e++) {
            r->verdict[ek[e].idx] = DD_EXACT;
            r->dup_of[ek[e].idx] = ek[s].idx;
        }
    }
}

/* Every member that is not its cluster's root (the lowest index) is a near
 * duplicate of the root, and its link is made to point straight at it. */
static void finish_clusters(DdResult *r, uint64_t *parent, const uint8_t *alive, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!alive[i]) continue;
        parent[i] = uf_find(parent, i);
        if (parent[i] != i) r->verdict[i] = DD_NEAR;
    }
}

static void near_stage(DdResult *r, const uint64_t *keys, uint8_t *alive, const DdCorpus *c, const DdOptions *o)
{
    size_t n = c->n;
    int verify = o->verify > 0;
    uint64_t *parent = r->dup_of;
    for (size_t i = 0; i < n; i++)
        if (alive[i]) parent[i] = i;
    if (!verify) {
        /* The clusters (and their lowest-index roots) do not depend on the
         * order of the unions: each band's links are joined as soon as the
         * band is sorted, in band order, so only one list per thread lives. */
#pragma omp parallel for ordered schedule(static, 1)
        for (int b = 0; b < o->bands; b++) {
            PairList l = {0};
            band_pairs(&l, keys, alive, n, b, o->bands, 0);
#pragma omp ordered
            {
                for (size_t k = 0; k < l.n; k++) uf_union(parent, l.p[k].a, l.p[k].b);
                r->candidate_pairs += l.n;
            }
            free(l.p);
        }
        r->verified_pairs = r->candidate_pairs;
        finish_clusters(r, parent, alive, n);
        return;
    }
    PairList *lists = xcalloc((size_t)o->bands, sizeof *lists);
#pragma omp parallel for schedule(dynamic, 1)
    for (int b = 0; b < o->bands; b++) band_pairs(&lists[b], keys, alive, n, b, o->bands, verify);
    PairList all = {0};
    for (int b = 0; b < o->bands; b++) {
        for (size_t k = 0; k < lists[b].n; k++) pair_push(&all, lists[b].p[k].a, lists[b].p[k].b);
        free(lists[b].p);
    }
    free(lists);
    if (all.n > 1) qsort(all.p, all.n, sizeof *all.p, cmp_pair);
    size_t u = 0;
    for (size_t k = 0; k < all.n; k++)
        if (u == 0 || all.p[k].a != all.p[u - 1].a || all.p[k].b != all.p[u - 1].b) all.p[u++] = all.p[k];
    all.n = u;
    r->candidate_pairs = u;

    /* Verification is independent per pair: in parallel, then the unions
     * in pair order, so the clusters do not depend on the thread count. */
    uint8_t *pass = xmalloc(u ? u : 1);
    {
#pragma omp parallel
        {
            DdBuf ja = {0}, jb = {0};
#pragma omp for schedule(dynamic, 16)
            for (size_t k = 0; k < u; k++) {
                const char *ta, *tb;
                size_t na, nb;
                dd_record_text(c, all.p[k].a, &ja, &ta, &na);
                dd_record_text(c, all.p[k].b, &jb, &tb, &nb);
                pass[k] = dd_jaccard(ta, na, tb, nb, o->norm, o->ngram) >= o->verify;
            }
            ddbuf_free(&ja);
            ddbuf_free(&jb);
        }
    }
    for (size_t k = 0; k < u; k++)
        if (pass[k]) {
            r->verified_pairs++;
            uf_union(parent, all.p[k].a, all.p[k].b);
        }
    finish_clusters(r, parent, alive, n);
    free(pass);
    free(all.p);
}

void dd_run(DdResult *r, const DdCorpus *c, const DdOptions *o)
{
    size_t n = c->n;
    memset(r, 0, sizeof *r);
    r->n = n;
    r->verdict = xcalloc(n ? n : 1, 1);
    r->status = xcalloc(n ? n : 1, 1);
    r->dup_of = xcalloc(n ? n : 1, sizeof *r->dup_of);
#ifdef _OPENMP
    if (o->threads > 0) omp_set_num_threads(o->threads);
#endif
    MinHashParams mp = {0};
    if (o->near) minhash_params_init(&mp, o->bands * o->rows, o->seed);
    uint64_t *keys = o->near ? xmalloc((n ? n : 1) * (size_t)o->bands * sizeof *keys) : NULL;
    uint8_t *has_sig = xcalloc(n ? n : 1, 1);
    ExactKey *ek = xcalloc(n ? n : 1, sizeof *ek);

    sign_all(r, keys, ek, has_sig, c, o, &mp);
    for (size_t i = 0; i < n; i++)
        if (r->status[i] != DD_OK) {
            if (r->bad == 0) r->first_bad = i;
            r->bad++;
            r->verdict[i] = DD_SKIPPED;
        }
    if (o->exact) exact_stage(r, ek, n);
    free(ek);
    if (o->near) {
        /* has_sig becomes "alive": signed and not already an exact copy. */
        for (size_t i = 0; i < n; i++) has_sig[i] = has_sig[i] && r->verdict[i] == DD_KEEP;
        near_stage(r, keys, has_sig, c, o);
    }
    free(has_sig);
    free(keys);
    minhash_params_free(&mp);

    for (size_t i = 0; i < n; i++) {
        uint64_t bytes = c->rec[i].len + c->rec[i].term;
        r->bytes_in += bytes;
        switch (r->verdict[i]) {
        case DD_KEEP: r->kept++; r->bytes_out += bytes; break;
        case DD_EXACT: r->exact_removed++; break;
        case DD_NEAR: r->near_removed++; break;
        default: break;
        }
    }
}

void dd_result_free(DdResult *r)
{
    free(r->verdict);
    free(r->status);
    free(r->dup_of);
    memset(r, 0, sizeof *r);
}
