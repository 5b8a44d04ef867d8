/* The encoder against tiktoken: every TestPlans.txt vector for r50k,
 * cl100k and o200k; round trips of arbitrary bytes; the heap merge for
 * long pieces against a plain quadratic BPE; the tokenizer file and its
 * fingerprint. Needs $SIGMA_DATA/tokenizers; skips without it. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tap.h"
#include "base/base.h"
#include "text/pretok.h"
#include "text/tokenizer.h"

static char *data_path(const char *name)
{
    const char *d = getenv("SIGMA_DATA");
    char *p = xasprintf("%s/tokenizers/%s", d ? d : "../shared/data", name);
    if (!path_exists(p)) { free(p); return NULL; }
    return p;
}

static int same_ids(const TokIds *a, const uint32_t *b, size_t n)
{
    return a->len == n && (n == 0 || !memcmp(a->ids, b, n * sizeof *b));
}

/* "Encoded: [1, 2, 3]" into ids; returns the count. */
static size_t parse_ids(uint32_t *ids, const char *s)
{
    size_t n = 0;
    s = strchr(s, '[') + 1;
    while (*s && *s != ']') {
        char *e;
        ids[n++] = (uint32_t)strtoul(s, &e, 10);
        s = e;
        while (*s == ',' || *s == ' ') s++;
    }
    return n;
}

static void test_plans(Tokenizer *const tok[3])
{
    char *path = data_path("TestPlans.txt");
    if (!path) { diag("no TestPlans.txt under $SIGMA_DATA: skipped"); return; }
    size_t len;
    char *text = read_file(path, SIZE_MAX, &len);
    static const char *const enc_names[3] = {"r50k_base", "cl100k_base", "o200k_base"};
    int counted[3] = {0}, passed[3] = {0};
    uint32_t *want = xmalloc(len * sizeof *want);
    char *enc = NULL, *sample = NULL;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "EncodingName: ", 14)) enc = line + 14;
        else if (!strncmp(line, "Sample: ", 8)) sample = line + 8;
        else if (!strncmp(line, "Sample:", 7)) sample = line + 7;
        else if (!strncmp(line, "Encoded: ", 9) && enc && sample) {
            for (int k = 0; k < 3; k++) {
                if (strcmp(enc, enc_names[k])) continue;
                size_t n = parse_ids(want, line);
                TokIds got = {0};
                tokenizer_encode(tok[k], &got, (const uint8_t *)sample, strlen(sample), 0);
                counted[k]++;
                if (same_ids(&got, want, n)) passed[k]++;
                else diag("%s mismatch on '%.60s'", enc, sample);
                tokids_free(&got);
            }
            sample = NULL;
        }
    }
    for (int k = 0; k < 3; k++)
        ok(counted[k] > 50 && passed[k] == counted[k], "%s: %d of %d TestPlans vectors", enc_names[k], passed[k], counted[k]);
    free(want);
    free(text);
    free(path);
}

/* Plain BPE: merge the lowest-ranked adjacent pair (leftmost on ties)
 * until none is a token; quadratic, obviously right. */
static void naive_bpe(const Tokenizer *t, TokIds *out, const uint8_t *p, size_t n)
{
    size_t *start = xmalloc((n + 1) * sizeof *start), m = n;
    for (size_t i = 0; i <= n; i++) start[i] = i;
    for (;;) {
        int64_t best = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < m; i++) {
            int64_t r = tokenizer_rank(t, p + start[i], start[i + 2] - start[i]);
            if (r >= 0 && (best < 0 || r < best)) { best = r; at = i; }
        }
        if (best < 0) break;
        memmove(start + at + 1, start + at + 2, (m - at - 1) * sizeof *start);
        m--;
    }
    for (size_t i = 0; i < m; i++) {
        TokIds one = {0};
        tokenizer_encode_piece(t, &one, p + start[i], start[i + 1] - start[i]);
        SG_ASSERT(one.len == 1);
        out->ids = xrealloc(out->ids, (out->len + 1) * sizeof *out->ids);
        out->ids[out->len++] = one.ids[0];
        tokids_free(&one);
    }
    free(start);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

/* Random text from a small alphabet of ASCII, multi-byte letters, marks,
 * digits, spaces, newlines and invalid bytes, so that every branch of the
 * pre-tokenizers is reached. */
static size_t random_text(uint8_t *out, size_t n)
{
    static const char *const atoms[] = {"a", "e", "t", "Th", "'s", "'LL", " ", "  ", "\n", "\r\n", "\t", "1", "234",
                                        ".", ",", "/", "!?", "\xc3\xa9", "\xc3\x89", "\xcc\x81", "\xe4\xb8\xad",
                                        "\xf0\x9f\x98\x80", "\xe2\x80\x83", "\xff", "\xc3", "\xed\xa0\x80", "\xc5\xbf",
                                        "\xd9\xa3", "\xe1\xb4\xac", "\xc7\x85"};
    size_t len = 0;
    while (len + 8 < n) {
        const char *a = atoms[next_rand() % (sizeof atoms / sizeof *atoms)];
        memcpy(out + len, a, strlen(a));
        len += strlen(a);
    }
    return len;
}

static void test_round_trips(Tokenizer *const tok[3])
{
    uint8_t buf[600];
    for (int k = 0; k < 3; k++) {
        int good = 1;
        for (int trial = 0; trial < 300 && good; trial++) {
            size_t n = trial % 3 == 0 ? next_rand() % sizeof buf : random_text(buf, next_rand() % sizeof buf);
            if (trial % 3 == 0)
                for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)next_rand();
            TokIds ids = {0};
            TokBytes back = {0};
            tokenizer_encode(tok[k], &ids, buf, n, 0);
            tokenizer_decode(tok[k], &back, ids.ids, ids.len);
            good = back.len == n && (n == 0 || !memcmp(back.bytes, buf, n));
            tokids_free(&ids);
            tokbytes_free(&back);
        }
        ok(good, "%s: decode(encode(x)) == x for random bytes and text", pretok_name(tokenizer_pattern(tok[k])));
    }
}

/* Cutting at tokenizer_cut_point() changes nothing: random text and the
 * committed fixture texts, cut every few bytes where allowed. */
static int cut_encode_same(const Tokenizer *t, const uint8_t *s, size_t n, size_t step, size_t *cuts)
{
    TokIds whole = {0}, parts = {0};
    tokenizer_encode(t, &whole, s, n, 0);
    for (size_t at = 0; at < n;) {
        size_t p = tokenizer_cut_point(s, n, at + step);
        if (p < n) (*cuts)++;
        tokenizer_encode(t, &parts, s + at, p - at, 0);
        at = p;
    }
    int same = whole.len == parts.len && !memcmp(whole.ids, parts.ids, whole.len * sizeof *whole.ids);
    tokids_free(&whole);
    tokids_free(&parts);
    return same;
}

static void test_cut_points(Tokenizer *const tok[3])
{
    static const char *const files[] = {"scripts.txt", "emoji.txt", "runs.txt", "invalid.bin"};
    const char *root = getenv("SIGMA_ROOT");
    uint8_t buf[4000];
    for (int k = 0; k < 3; k++) {
        int good = 1;
        size_t cuts = 0;
        for (int trial = 0; trial < 100 && good; trial++) {
            size_t n = random_text(buf, sizeof buf);
            good = cut_encode_same(tok[k], buf, n, 1 + next_rand() % 64, &cuts);
        }
        for (size_t f = 0; f < sizeof files / sizeof *files && good; f++) {
            char *path = xasprintf("%s/tests/fixtures/tokenize/%s", root ? root : ".", files[f]);
            size_t n;
            uint8_t *text = (uint8_t *)read_file(path, SIZE_MAX, &n);
            good = cut_encode_same(tok[k], text, n, 37, &cuts);
            free(text);
            free(path);
        }
        ok(good && cuts > 100, "%s: encoding cut at cut points = encoding whole (%zu cuts)", pretok_name(tokenizer_pattern(tok[k])), cuts);
    }
}

static void test_long_pieces(const Tokenizer *t)
{
    int good = 1;
    uint8_t buf[400];
    for (int trial = 0; trial < 40 && good; trial++) {
        size_t n = 65 + next_rand() % 300;
        static const char alpha[] = "aaaabbcd ee";
        for (size_t i = 0; i < n; i++)
            buf[i] = trial % 4 == 0 ? (uint8_t)next_rand() : (uint8_t)alpha[next_rand() % (sizeof alpha - 1)];
        TokIds a = {0}, b = {0};
        tokenizer_encode_piece(t, &a, buf, n);
        naive_bpe(t, &b, buf, n);
        good = a.len == b.len && !memcmp(a.ids, b.ids, a.len * sizeof *a.ids);
        tokids_free(&a);
        tokids_free(&b);
    }
    ok(good, "heap merge of long pieces = plain BPE");
}

static void test_file(Tokenizer *o200k)
{
    char tmp[] = "/tmp/sigma-tok-XXXXXX";
    SG_ASSERT(mkdtemp(tmp));
    char *path = xasprintf("%s/o200k.tok", tmp);
    tokenizer_save(o200k, path);
    Tokenizer *again = tokenizer_load(path, NULL);
    ok(!memcmp(tokenizer_fingerprint(again), tokenizer_fingerprint(o200k), 16), "fingerprint survives save and load");
    ok(tokenizer_n_vocab(again) == 200019 && tokenizer_special(again, TOK_ENDOFTEXT) == 199999 &&
           tokenizer_special(again, "<|endofprompt|>") == 200018,
       "o200k: n_vocab 200019, specials 199999 and 200018");
    const char *s = "hello<|endoftext|> world";
    TokIds a = {0}, b = {0};
    tokenizer_encode(again, &a, (const uint8_t *)s, strlen(s), TOK_ALLOW_SPECIAL);
    tokenizer_encode(again, &b, (const uint8_t *)s, strlen(s), 0);
    ok(a.len == 3 && a.ids[1] == 199999, "special token recognised with TOK_ALLOW_SPECIAL");
    ok(b.len > 3, "special token name is ordinary text by default (%zu tokens)", b.len);
    tokids_free(&a);
    tokids_free(&b);
    tokenizer_free(again);
    remove(path);
    rmdir(tmp);
    free(path);
}

static void test_base64(void)
{
    uint8_t out[8];
    char enc[16];
    ok(base64_decode(out, "IQ==", 4) == 1 && out[0] == '!', "base64 one byte");
    ok(base64_decode(out, "IR==", 4) < 0, "base64 non-canonical padding bits refused");
    ok(base64_decode(out, "I*==", 4) < 0 && base64_decode(out, "IQ=", 3) < 0, "base64 bad alphabet or length refused");
    base64_encode(enc, (const uint8_t *)"abcd", 4);
    ok(!strcmp(enc, "YWJjZA=="), "base64 encode");
}

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    test_base64();
    static const char *const files[3] = {"r50k_base.tiktoken", "cl100k_base.tiktoken", "o200k_base.tiktoken"};
    static const char *const pats[3] = {"r50k", "cl100k", "o200k"};
    Tokenizer *tok[3] = {0};
    for (int k = 0; k < 3; k++) {
        char *p = data_path(files[k]);
        if (!p) {
            ok(1, "# SKIP no %s under $SIGMA_DATA", files[k]);
            return tap_done();
        }
        tok[k] = tokenizer_load(p, pats[k]);
        free(p);
    }
    ok(tokenizer_n_vocab(tok[0]) == 50257 && tokenizer_n_vocab(tok[1]) == 100277, "r50k and cl100k vocabulary sizes");
    test_plans(tok);
    test_round_trips(tok);
    test_cut_points(tok);
    test_long_pieces(tok[1]);
    test_file(tok[2]);
    for (int k = 0; k < 3; k++) tokenizer_free(tok[k]);
    return tap_done();
}
