/* sigma-dedup's library against datatrove: normalization, words, shingle
 * hashes, MinHash parameters and signatures (tests/fixtures/dedup/,
 * made by tests/make_dedup_fixtures.py), plus exact Jaccard. */
#include "../tap.h"
#include "base/base.h"
#include "base/json.h"
#include "dedup/dedup.h"
#include "dedup/minhash.h"
#include "dedup/normalize.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static uint64_t hex(const cJSON *s)
{
    uint64_t v = 0;
    if (!cJSON_IsString(s) || !parse_hex64(s->valuestring, &v)) BUG("bad hex in fixture");
    return v;
}

/* spaCy also cuts symbols (© ® ™ ‘ ...) off word edges, which sigma-dedup
 * does not: that case's words (and so its shingles) differ by design. */
static int has_symbol_split(const char *text)
{
    return strstr(text, "\xc2\xa9") != NULL;   /* © */
}

static void check_case(const cJSON *c, const MinHashParams *mp, int k)
{
    const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
    const char *simple = cJSON_GetObjectItem(c, "simplified")->valuestring;
    DdBuf norm = {0}, words = {0}, sh = {0};
    dd_normalize_datatrove(&norm, text, strlen(text));
    int same = norm.len == strlen(simple) && memcmp(norm.p, simple, norm.len) == 0;
    ok(same, "case %d: normalized text as datatrove's simplify_text", k);
    if (!same) diag("got '%.*s'\n# want '%s'", (int)norm.len, norm.p, simple);

    size_t wn;
    const char *w = dd_word_text(&words, &wn, norm.p, norm.len, DD_NORM_DATATROVE);
    char *joined = xstrdup("");
    const cJSON *wl = cJSON_GetObjectItem(c, "words"), *it;
    cJSON_ArrayForEach(it, wl)
    {
        char *t = xasprintf("%s%s%s", joined, *joined ? " " : "", it->valuestring);
        free(joined);
        joined = t;
    }
    if (has_symbol_split(text)) {
        ok(1, "case %d: words # SKIP spaCy symbol splits are not reproduced", k);
        ok(1, "case %d: shingles # SKIP", k);
        ok(1, "case %d: signature # SKIP", k);
        goto done;
    }
    same = wn == strlen(joined) && memcmp(w, joined, wn) == 0;
    ok(same, "case %d: words as datatrove's (spaCy) word_tokenize", k);
    if (!same) diag("got '%.*s'\n# want '%s'", (int)wn, w, joined);

    size_t n = dd_shingles(&sh, w, wn, 5);
    const uint64_t *h = (const uint64_t *)(void *)sh.p;
    int want_n = cJSON_GetObjectItem(c, "n_shingles")->valueint;
    int head_ok = (int)n == want_n;
    const cJSON *head = cJSON_GetObjectItem(c, "shingles_head");
    for (int i = 0; head_ok && i < cJSON_GetArraySize(head); i++) head_ok = h[i] == hex(cJSON_GetArrayItem(head, i));
    ok(head_ok, "case %d: %zu shingles (want %d), first hashes equal", k, n, want_n);

    const cJSON *sig = cJSON_GetObjectItem(c, "signature");
    if (!sig) {
        ok(n == 0, "case %d: no signature (fewer than 5 words)", k);
    } else {
        uint64_t s[112];
        minhash_signature(s, mp, h, n);
        int sig_ok = cJSON_GetArraySize(sig) == 112;
        for (int i = 0; sig_ok && i < 112; i++) sig_ok = s[i] == hex(cJSON_GetArrayItem(sig, i));
        ok(sig_ok, "case %d: MinHash signature equals datatrove's, all 112 values", k);
    }
done:
    free(joined);
    ddbuf_free(&norm);
    ddbuf_free(&words);
    ddbuf_free(&sh);
}

static void check_jaccard(void)
{
    const char *a = "one two three four five six seven";   /* 3 shingles */
    const char *b = "one two three four five six eight";   /* 2 shared of 4 */
    ok(dd_jaccard(a, strlen(a), a, strlen(a), DD_NORM_DATATROVE, 5) == 1.0, "jaccard of a text with itself is 1");
    double j = dd_jaccard(a, strlen(a), b, strlen(b), DD_NORM_DATATROVE, 5);
    ok(j > 0.4999 && j < 0.5001, "jaccard 2 shared of 4 shingles = 0.5 (got %g)", j);
    const char *c = "ONE, two; three: four! five six seven";
    ok(dd_jaccard(a, strlen(a), c, strlen(c), DD_NORM_DATATROVE, 5) == 1.0, "case and punctuation normalized away");
    ok(dd_jaccard(a, strlen(a), c, strlen(c), DD_NORM_NONE, 5) < 1.0, "but not with normalization none");
}

/* The signature loops (the one this machine runs and the portable one)
 * against the formula, one hash at a time, for hash counts with and
 * without a remainder after blocks of 16, and with shingles planted where
 * (a h + b) mod 2^64 is 2^64 - 1, the value whose quick reduction lands
 * past 2^61 - 1 (which the AVX-512 loop must then redo exactly). */
static uint64_t inverse64(uint64_t a)   /* a odd: a * inverse64(a) == 1 mod 2^64 */
{
    uint64_t x = a;
    for (int i = 0; i < 6; i++) x *= 2 - a * x;
    return x;
}

static void check_signature_formula(void)
{
    uint64_t sh[300], x = 88172645463325252ull;
    for (int i = 0; i < 300; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        sh[i] = x;
    }
    int counts[] = {112, 20, 7};
    for (int c = 0; c < 3; c++) {
        int K = counts[c], planted = 0;
        MinHashParams mp;
        minhash_params_init(&mp, K, 42);
        for (int k = 0; k < K && planted < 20; k++)
            if (mp.a[k] & 1) sh[280 + planted++] = (UINT64_MAX - mp.b[k]) * inverse64(mp.a[k]);
        uint64_t got[112], port[112], good = 1;
        minhash_signature(got, &mp, sh, 300);
        minhash_signature_portable(port, &mp, sh, 300);
        for (int k = 0; k < K; k++) {
            uint64_t m = UINT64_MAX;
            for (int i = 0; i < 300; i++) {
                uint64_t v = (sh[i] * mp.a[k] + mp.b[k]) % DD_MERSENNE61;
                if (v < m) m = v;
            }
            good &= got[k] == m && port[k] == m;
        }
        ok(good, "signature of %d hashes (%d planted past the quick reduction) equals the formula, both loops", K, planted);
        minhash_params_free(&mp);
    }
}

static int cmp_key_idx(const void *a, const void *b)
{
    const BandKey *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* The band sort against qsort by (key, index), for sizes around its
 * bucket sizes and with runs of equal keys (duplicates). */
static void check_sort_band(void)
{
    size_t sizes[] = {1, 2, 33, 1000, 70000};
    uint64_t x = 1;
    int good = 1;
    for (int s = 0; s < 5; s++) {
        size_t n = sizes[s];
        BandKey *a = xmalloc(n * sizeof *a), *b = xmalloc(n * sizeof *b), *tmp = xmalloc(n * sizeof *tmp);
        for (size_t i = 0; i < n; i++) {
            uint64_t k = splitmix64(&x);
            if (i % 3 == 1) k = a[i - 1].key;              /* equal neighbours */
            if (i % 7 == 2) k = 0xabcdef0000000000ull;      /* a bucket of many equal keys */
            if (i % 11 == 3) k = 0xabcdef0000000000ull + i; /* many distinct keys in one bucket */
            a[i] = (BandKey){k, i};
        }
        memcpy(b, a, n * sizeof *a);
        dd_sort_band(a, tmp, n);
        qsort(b, n, sizeof *b, cmp_key_idx);
        good &= memcmp(a, b, n * sizeof *a) == 0;
        free(a);
        free(b);
        free(tmp);
    }
    ok(good, "dd_sort_band: stable, the order of qsort by key then index");
}

/* dd_shingles against the definition, a word at a time with memchr: the
 * pieces between spaces (empty ones too), but for an empty last one; on
 * random texts of a, b and spaces, around the 64-byte blocks it scans. */
static size_t shingles_ref(uint64_t *h, const char *w, size_t len, int n)
{
    size_t starts[64], count = 0, words = 0, pos = 0;
    while (pos < len) {
        const char *sp = memchr(w + pos, ' ', len - pos);
        size_t end = sp ? (size_t)(sp - w) : len;
        starts[words++ % (size_t)n] = pos;
        if (words >= (size_t)n) {
            size_t s0 = starts[(words - (size_t)n) % (size_t)n];
            h[count++] = XXH64(w + s0, end - s0, 0);
        }
        pos = end + 1;
    }
    return count;
}

static void check_shingles(void)
{
    uint64_t x = 7, want[400];
    char text[400];
    int good = 1;
    DdBuf out = {0};
    for (int t = 0; t < 3000; t++) {
        size_t len = splitmix64(&x) % 300;
        for (size_t i = 0; i < len; i++) text[i] = "ab  c"[splitmix64(&x) % 5];
        int n = 1 + (int)(splitmix64(&x) % 6);
        size_t k = shingles_ref(want, text, len, n), got = dd_shingles(&out, text, len, n);
        good &= got == k && memcmp(out.p, want, k * sizeof *want) == 0;
    }
    ddbuf_free(&out);
    ok(good, "dd_shingles: the definition's shingles on 3000 random texts of words and spaces");
}

static void check_invalid_utf8(void)
{
    const char bad[] = "Caf\xc3 \xff\xfe ok";
    DdBuf n = {0};
    dd_normalize_datatrove(&n, bad, sizeof bad - 1);
    ok(n.len == 10 && memcmp(n.p, "caf\xc3 \xff\xfe ok", 10) == 0, "invalid UTF-8 bytes kept as they are");
    ddbuf_free(&n);
}

int main(void)
{
    const char *root = getenv("SIGMA_ROOT");
    char *path = xasprintf("%s/tests/fixtures/dedup/datatrove.jsonl", root ? root : ".");
    size_t len;
    char *buf = read_file(path, SIZE_MAX, &len);
    MinHashParams mp;
    minhash_params_init(&mp, 112, 1);
    int k = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *c = json_parse(line, strlen(line), NULL);
        if (!c) BUG("bad fixture line");
        const cJSON *p = cJSON_GetObjectItem(c, "params");
        if (p) {
            int pa = 1;
            for (int i = 0; i < 8; i++)
                pa = pa && mp.a[i] == hex(cJSON_GetArrayItem(cJSON_GetObjectItem(p, "a"), i)) &&
                     mp.b[i] == hex(cJSON_GetArrayItem(cJSON_GetObjectItem(p, "b"), i));
            ok(pa, "MinHash parameters drawn as numpy RandomState(1) draws them");
        } else
            check_case(c, &mp, k++);
        cJSON_Delete(c);
    }
    check_jaccard();
    check_invalid_utf8();
    check_sort_band();
    check_shingles();
    check_signature_formula();
    minhash_params_free(&mp);
    free(buf);
    free(path);
    return tap_done();
}
