/* utf8proc's character classes against tiktoken's Unicode tables: every
 * code point below U+40000 and in U+E0000..U+E0FFF, embedded so that its
 * class decides the pre-tokenizer's split, encoded with r50k, cl100k and
 * o200k and compared block by block with tests/fixtures/tokenize/
 * codepoints.txt (made by tests/make_tokenize_fixtures.py). */
#include <stdlib.h>
#include <string.h>

#include "../tap.h"
#include "base/base.h"
#include "text/tokenizer.h"

static size_t put_utf8(uint8_t *o, uint32_t c)
{
    if (c < 0x80) { o[0] = (uint8_t)c; return 1; }
    if (c < 0x800) { o[0] = (uint8_t)(0xC0 | c >> 6); o[1] = (uint8_t)(0x80 | (c & 63)); return 2; }
    if (c < 0x10000) {
        o[0] = (uint8_t)(0xE0 | c >> 12); o[1] = (uint8_t)(0x80 | ((c >> 6) & 63)); o[2] = (uint8_t)(0x80 | (c & 63));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | c >> 18); o[1] = (uint8_t)(0x80 | ((c >> 12) & 63));
    o[2] = (uint8_t)(0x80 | ((c >> 6) & 63)); o[3] = (uint8_t)(0x80 | (c & 63));
    return 4;
}

/* As codepoint_block() in the script: "a" c "b " c "9" c ",\n" per code point. */
static size_t block_text(uint8_t *o, uint32_t first)
{
    size_t n = 0;
    for (uint32_t c = first; c < first + 4096; c++) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        o[n++] = 'a'; n += put_utf8(o + n, c);
        o[n++] = 'b'; o[n++] = ' '; n += put_utf8(o + n, c);
        o[n++] = '9'; n += put_utf8(o + n, c);
        o[n++] = ','; o[n++] = '\n';
    }
    return n;
}

static uint64_t fnv1a64(const uint32_t *ids, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++) h = (h ^ ((ids[i] >> (8 * k)) & 0xFF)) * 0x100000001b3ull;
    return h;
}

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    const char *root = getenv("SIGMA_ROOT"), *data = getenv("SIGMA_DATA");
    char *fix = xasprintf("%s/tests/fixtures/tokenize/codepoints.txt", root ? root : ".");
    static const char *const names[3] = {"r50k", "cl100k", "o200k"};
    Tokenizer *tok[3];
    for (int k = 0; k < 3; k++) {
        char *p = xasprintf("%s/tokenizers/%s_base.tiktoken", data ? data : "../shared/data", names[k]);
        if (!path_exists(p)) {   /* a clone without the shared data: skip, leaking nothing (LeakSanitizer) */
            ok(1, "# SKIP %s not found ($SIGMA_DATA)", p);
            free(p);
            free(fix);
            for (int j = 0; j < k; j++) tokenizer_free(tok[j]);
            return tap_done();
        }
        tok[k] = tokenizer_load(p, names[k]);
        free(p);
    }
    FILE *f = xfopen(fix, "r");
    char line[256], enc[16];
    unsigned first;
    size_t want_n, blocks[3] = {0}, good[3] = {0};
    unsigned long long want_h;
    uint8_t *text = xmalloc(4096 * 20);
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        if (sscanf(line, "%15s %x %zu %llx", enc, &first, &want_n, &want_h) != 4) die("%s: bad line '%s'", fix, line);
        int k = 0;
        while (k < 3 && strcmp(enc, names[k])) k++;
        if (k == 3) die("%s: unknown encoding %s", fix, enc);
        TokIds ids = {0};
        tokenizer_encode(tok[k], &ids, text, block_text(text, first), 0);
        blocks[k]++;
        if (ids.len == want_n && fnv1a64(ids.ids, ids.len) == want_h) good[k]++;
        else diag("%s: block U+%05X differs from tiktoken (%zu tokens, want %zu)", enc, first, ids.len, want_n);
        tokids_free(&ids);
    }
    xfclose(f, fix);
    for (int k = 0; k < 3; k++) {
        ok(blocks[k] == 65 && good[k] == blocks[k], "%s: %zu of %zu blocks of 4096 code points as tiktoken", names[k], good[k], blocks[k]);
        tokenizer_free(tok[k]);
    }
    free(text);
    free(fix);
    return tap_done();
}
