/* dedup_truth CORPUS.jsonl MIN_J: the ground truth for sigma-dedup's quality
 * test. Reads JSON Lines ({"text": ...}), and prints
 *   P i j J     every pair i < j whose word 5-gram shingle sets have exact
 *               Jaccard J >= MIN_J (counted through an inverted index, so
 *               every pair sharing a shingle is counted exactly; pairs
 *               sharing none have J = 0)
 *   E i j       document i's normalized text equals document j's, j < i the
 *               first such (compared as strings, not hashes)
 * Shingles as sigma-dedup defines them (datatrove normalization, words,
 * XXH64 of 5-grams); this checks the MinHash/LSH estimate, not the words. */
#include "base/base.h"
#include "dedup/docs.h"
#include "dedup/normalize.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t h;
    uint32_t doc;
} Posting;

static int cmp_posting(const void *a, const void *b)
{
    const Posting *x = a, *y = b;
    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    return (x->doc > y->doc) - (x->doc < y->doc);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

typedef struct {
    char *s;
    size_t n;
    uint32_t doc;
} Norm;

static int cmp_norm(const void *a, const void *b)
{
    const Norm *x = a, *y = b;
    size_t m = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, m);
    if (c) return c;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return (x->doc > y->doc) - (x->doc < y->doc);
}

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    if (argc != 3) usage_error("usage: dedup_truth CORPUS.jsonl MIN_J");
    double min_j = parse_double("MIN_J", argv[2], 0, 1);
    DdCorpus c;
    dd_corpus_open(&c, DD_JSONL, "text", argv + 1, 1);
    size_t n = c.n;
    uint32_t *size = xcalloc(n, sizeof *size);
    Norm *norms = xcalloc(n, sizeof *norms);
    Posting *post = NULL;
    size_t np = 0, cap = 0;
    DdBuf json = {0}, norm = {0}, words = {0}, sh = {0};
    for (size_t i = 0; i < n; i++) {
        const char *t;
        size_t len;
        if (dd_record_text(&c, i, &json, &t, &len) != DD_OK) die("%s: record %zu: bad record", argv[1], i);
        dd_normalize_datatrove(&norm, t, len);
        norms[i] = (Norm){xmalloc(norm.len + 1), norm.len, (uint32_t)i};
        memcpy(norms[i].s, norm.p, norm.len);
        size_t wn;
        const char *w = dd_word_text(&words, &wn, norm.p, norm.len, DD_NORM_DATATROVE);
        size_t k = dd_shingles(&sh, w, wn, 5);
        uint64_t *h = (uint64_t *)(void *)sh.p;
        qsort(h, k, sizeof *h, cmp_u64);
        size_t u = 0;
        for (size_t m = 0; m < k; m++)
            if (u == 0 || h[m] != h[u - 1]) h[u++] = h[m];
        size[i] = (uint32_t)u;
        if (np + u > cap) {
            cap = (np + u) * 2;
            post = xrealloc(post, cap * sizeof *post);
        }
        for (size_t m = 0; m < u; m++) post[np++] = (Posting){h[m], (uint32_t)i};
    }
    qsort(post, np, sizeof *post, cmp_posting);
    /* Intersections of every pair that shares a shingle: an n x n count
     * matrix (upper triangle), fine for the few thousand documents here. */
    uint32_t *inter = xcalloc(n * n, sizeof *inter);
    for (size_t s = 0, e; s < np; s = e) {
        for (e = s + 1; e < np && post[e].h == post[s].h; e++) {}
        for (size_t a = s; a < e; a++)
            for (size_t b = a + 1; b < e; b++) inter[(size_t)post[a].doc * n + post[b].doc]++;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            uint32_t x = inter[i * n + j];
            if (!x) continue;
            double J = (double)x / (double)(size[i] + size[j] - x);
            if (J >= min_j) printf("P %zu %zu %.6f\n", i, j, J);
        }
    qsort(norms, n, sizeof *norms, cmp_norm);
    for (size_t s = 0, e; s < n; s = e)
        for (e = s + 1; e < n && norms[e].n == norms[s].n && memcmp(norms[e].s, norms[s].s, norms[s].n) == 0; e++)
            printf("E %u %u\n", norms[e].doc, norms[s].doc);
    for (size_t i = 0; i < n; i++) free(norms[i].s);
    free(norms);
    free(inter);
    free(post);
    free(size);
    ddbuf_free(&json);
    ddbuf_free(&norm);
    ddbuf_free(&words);
    ddbuf_free(&sh);
    dd_corpus_close(&c);
    return 0;
}
