/* lib base and the token stream format: numbers, hashes, JSON helpers,
 * atomic files and directories, the token stream writer and reader. */
#include "../tap.h"
#include "base/base.h"
#include "base/json.h"
#include "data/shard.h"
#include "data/tokstream.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_numbers(void)
{
    ok(parse_count("--n", "64M", 0, UINT64_MAX) == 64000000, "parse_count 64M");
    ok(parse_count("--n", "1e8", 0, UINT64_MAX) == 100000000, "parse_count 1e8");
    ok(parse_count("--n", "100k", 0, UINT64_MAX) == 100000, "parse_count 100k");
    ok(parse_u64("--n", "18446744073709551615", 0, UINT64_MAX) == UINT64_MAX, "parse_u64 max");
    ok(parse_double("--f", "0.25", 0, 1) == 0.25, "parse_double");
    char hex[17];
    uint64_t back = 0;
    hex64(hex, 0x0123456789abcdefull);
    ok(!strcmp(hex, "0123456789abcdef") && parse_hex64(hex, &back) && back == 0x0123456789abcdefull, "hex64 round trip");
    ok(!parse_hex64("0123456789abcdeg", &back) && !parse_hex64("123", &back), "parse_hex64 rejects bad digits and lengths");
    /* XXH3-64 of the empty input with seed 0 is a published constant */
    ok(hash64("", 0, 0) == 0x2d06800538d394c2ull, "XXH3-64 of empty input");
}

static void test_json(void)
{
    const char *text = "{\"a\": 3, \"s\": \"x\", \"b\": true, \"f\": 0.5}";
    size_t off;
    cJSON *v = json_parse(text, strlen(text), &off);
    ok(v && json_req_u64(v, "a", "t") == 3 && !strcmp(json_req_str(v, "s", "t"), "x") && json_req_bool(v, "b", "t") &&
       json_req_num(v, "f", "t") == 0.5, "json_req getters");
    ok(json_opt_u64(v, "missing", 42, "t") == 42, "json_opt default");
    cJSON_Delete(v);
    ok(json_parse("{\"a\": 1} x", 10, &off) == NULL && off == 9, "trailing garbage is an error at its offset");
    ok(json_parse("{\"a\": }", 7, &off) == NULL, "a syntax error");
    ok(json_has_nul_escape("{\"t\": \"a\\u0000b\"}", 16), "finds a \\u0000 escape");
    ok(!json_has_nul_escape("{\"t\": \"a\\\\u0000b\"}", 17), "an escaped backslash before u0000 is not one");
    cJSON *o = json_obj();
    json_add_hex64(o, "h", 0xfedcba9876543210ull);
    json_add_u64(o, "n", 9007199254740992ull);
    ok(json_req_hex64(o, "h", "t") == 0xfedcba9876543210ull && json_req_u64(o, "n", "t") == 9007199254740992ull,
       "u64 values survive as hex and up to 2^53 as numbers");
    cJSON_Delete(o);
}

static void test_atomic(const char *tmp)
{
    char *path = xasprintf("%s/file", tmp);
    write_file_atomic(path, "hello", 5);
    size_t len;
    char *got = read_file(path, SIZE_MAX, &len);
    ok(len == 5 && !memcmp(got, "hello", 5), "atomic file written");
    free(got);
    AtomicFile af;
    atomic_file_open(&af, path);
    fputs("partial", af.f);
    atomic_file_abort(&af);
    got = read_file(path, SIZE_MAX, &len);
    ok(len == 5 && !memcmp(got, "hello", 5), "an aborted atomic write leaves the old file");
    free(got);

    char *dir = xasprintf("%s/dir", tmp);
    AtomicDir ad;
    atomic_dir_begin(&ad, dir, 0);
    char *inner = atomic_dir_file(&ad, "x");
    write_file_atomic(inner, "1", 1);
    ok(!path_exists(dir), "a directory is not visible before commit");
    atomic_dir_commit(&ad);
    ok(is_dir(dir), "visible after commit");
    atomic_dir_begin(&ad, dir, 1);
    free(inner);
    inner = atomic_dir_file(&ad, "y");
    write_file_atomic(inner, "2", 1);
    atomic_dir_abort(&ad);
    char *old = xasprintf("%s/x", dir);
    ok(path_exists(old), "an aborted replacement keeps the old directory");
    atomic_dir_begin(&ad, dir, 1);
    free(inner);
    inner = atomic_dir_file(&ad, "y");
    write_file_atomic(inner, "2", 1);
    atomic_dir_commit(&ad);
    char *newer = xasprintf("%s/y", dir);
    ok(!path_exists(old) && path_exists(newer), "--force replaces the directory whole");
    free(inner); free(old); free(newer); free(dir); free(path);
}

/* Write documents of varied lengths (0, 1, across many records), read them
 * back with buffers of varied sizes: the same documents come back. */
static void test_tokstream(const char *tmp)
{
    char *path = xasprintf("%s/s.tok", tmp);
    FILE *f = xfopen(path, "wb");
    TokWriter w;
    TokHeader h = {.vocab_size = 50000};
    memset(h.fingerprint, 0xab, 16);
    tokwriter_open(&w, f, path, &h);
    size_t lens[] = {0, 1, 5, 65535, 65536, 65537, 200000, 0, 3};
    size_t n_docs = sizeof lens / sizeof lens[0], total = 0;
    uint64_t x = 1;
    for (size_t d = 0; d < n_docs; d++) {
        for (size_t i = 0; i < lens[d]; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t t = (uint32_t)(x >> 33) % 50000;
            tokwriter_put(&w, &t, 1);
        }
        tokwriter_end_doc(&w);
        total += lens[d];
    }
    tokwriter_close(&w);
    xfclose(f, path);

    size_t caps[] = {1, 7, 65536, 1 << 20};
    for (size_t c = 0; c < 4; c++) {
        f = xfopen(path, "rb");
        TokReader r;
        tokreader_open(&r, f, path);
        uint32_t *buf = xmalloc(caps[c] * sizeof(uint32_t));
        size_t d = 0, in_doc = 0, n, got = 0;
        int doc_end, good = r.hdr.vocab_size == 50000 && r.hdr.fingerprint[7] == 0xab;
        x = 1;
        while ((n = tokreader_read(&r, buf, caps[c], &doc_end)) || doc_end) {
            for (size_t i = 0; i < n; i++) {
                x = x * 6364136223846793005ull + 1442695040888963407ull;
                good &= buf[i] == (uint32_t)(x >> 33) % 50000;
            }
            in_doc += n;
            got += n;
            if (doc_end) { good &= d < n_docs && in_doc == lens[d]; d++; in_doc = 0; }
        }
        ok(good && d == n_docs && got == total && r.done, "token stream read back with buffers of %zu tokens", caps[c]);
        tokreader_close(&r);
        free(buf);
        xfclose(f, path);
    }
    free(path);
}

/* The streaming checksum of a checkpoint file is the one-shot hash of its
 * bytes, across block boundaries (blocks are 1 MiB). */
static void test_file_hash(const char *tmp)
{
    size_t n = (3u << 20) + 12345;
    char *buf = xmalloc(n);
    uint64_t s = 7;
    for (size_t i = 0; i < n; i++) buf[i] = (char)splitmix64(&s);
    char *path = xasprintf("%s/blob", tmp);
    write_file_atomic(path, buf, n);
    ok(file_hash64(path) == hash64(buf, n, 0), "file_hash64 equals hash64 over 3 MiB and a bit");
    write_file_atomic(path, buf, 0);
    ok(file_hash64(path) == hash64("", 0, 0), "file_hash64 of an empty file");
    free(path);
    free(buf);
}

/* The progress line's rate: over a window of intervals, so one slow one
 * (a checkpoint save) shows as a dip of its share, not as the speed. */
static void test_rate(void)
{
    RateWindow r = {0};
    ok(rate_per_second(&r, 100) == 0, "no rate before two marks");
    double t = 0;
    rate_mark(&r, t);
    for (int i = 0; i < 30; i++) rate_mark(&r, t += 1.0);   /* 100 units a second */
    ok(fabs(rate_per_second(&r, 100) - 100) < 1e-9, "steady: 100 a second");
    rate_mark(&r, t += 11.0);   /* one interval 11 times as long: a save */
    ok(fabs(rate_per_second(&r, 100) - 100.0 * RATE_WINDOW / (RATE_WINDOW + 10)) < 1e-9,
       "a slow interval counts for its share of the window (%.1f a second)", rate_per_second(&r, 100));
    for (int i = 0; i < RATE_WINDOW; i++) rate_mark(&r, t += 1.0);
    ok(fabs(rate_per_second(&r, 100) - 100) < 1e-9, "and leaves the window after %d intervals", RATE_WINDOW);
}

static void test_split_draw(void)
{
    size_t val = 0, n = 100000;
    for (uint64_t i = 0; i < n; i++) val += (size_t)split_draw_val(7, 0.1, i);
    ok(val > 9500 && val < 10500, "the seeded split draws about the asked fraction (%zu of %zu)", val, n);
    ok(split_draw_val(7, 0.1, 12345) == split_draw_val(7, 0.1, 12345), "the draw is deterministic");
    ok(!split_draw_val(7, 0, 1) && split_draw_val(7, 1, 1), "fractions 0 and 1");
    ok(token_width_for(65536) == 2 && token_width_for(65537) == 4 && token_width_for(257) == 2, "token widths");
}

int main(void)
{
    sg_init("test_base");
    char tmpl[] = "/tmp/sigma-unit.XXXXXX";
    char *tmp = mkdtemp(tmpl);
    if (!tmp) BUG("mkdtemp");
    test_numbers();
    test_json();
    test_atomic(tmp);
    test_tokstream(tmp);
    test_file_hash(tmp);
    test_rate();
    test_split_draw();
    remove_tree(tmp);
    return tap_done();
}
