/* tokgen: token streams for tests and benchmarks, until and beside
 * sigma-tokenize.
 *   tokgen bytes [--vocab V] [--fingerprint HEX] FILE...
 *       the bytes of each file as tokens, a document per paragraph (text
 *       up to a blank line), each ended by the token 256 (end of text);
 *       vocabulary 257 unless --vocab says more (for 32-bit shards)
 *   tokgen random --tokens N [--vocab V] [--seed S] [--mean-doc L] [--empty-every K]
 *       documents of random length (mean L) of uniform random tokens
 *   --repeat R   emit the input R times (bytes mode)
 *   --raw16      write bare uint16 tokens (no stream framing), for zstd */
#include "base/base.h"
#include "data/tokstream.h"

#include <stdlib.h>
#include <string.h>

static uint64_t rng_state;
static uint64_t rng_next(void) { return splitmix64(&rng_state); }

static int raw16;
static TokWriter w;

static void emit(const uint32_t *t, size_t n)
{
    if (!raw16) { tokwriter_put(&w, t, n); return; }
    for (size_t i = 0; i < n; i++) {
        uint16_t v = (uint16_t)t[i];
        xfwrite(&v, 2, stdout, "<stdout>");
    }
}
static void end_doc(void) { if (!raw16) tokwriter_end_doc(&w); }

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    if (argc < 2) usage_error("usage: tokgen bytes|random [options] [FILE...]");
    const char *mode = argv[1];
    TokHeader h = {.vocab_size = 257};
    uint64_t tokens = 1000000, mean_doc = 1000, empty_every = 0, repeat = 1;
    rng_state = 0;
    int i = 2;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--raw16")) { raw16 = 1; continue; }
        if (i + 1 >= argc) usage_error("%s needs a value", o);
        const char *v = argv[++i];
        if (!strcmp(o, "--vocab")) h.vocab_size = (uint32_t)parse_u64(o, v, 257, UINT32_MAX);
        else if (!strcmp(o, "--fingerprint")) { if (!fingerprint_parse(h.fingerprint, v)) usage_error("bad fingerprint"); }
        else if (!strcmp(o, "--tokens")) tokens = parse_count(o, v, 0, UINT64_MAX);
        else if (!strcmp(o, "--seed")) rng_state = parse_u64(o, v, 0, UINT64_MAX);
        else if (!strcmp(o, "--mean-doc")) mean_doc = parse_u64(o, v, 1, UINT64_MAX);
        else if (!strcmp(o, "--empty-every")) empty_every = parse_u64(o, v, 0, UINT64_MAX);
        else if (!strcmp(o, "--repeat")) repeat = parse_u64(o, v, 1, 1000000);
        else usage_error("unknown option %s", o);
    }
    if (!raw16) tokwriter_open(&w, stdout, "<stdout>", &h);
    uint32_t eot = 256;
    if (!strcmp(mode, "bytes")) {
        for (uint64_t r = 0; r < repeat; r++) {
            for (int f = i; f < argc; f++) {
                size_t len;
                char *text = read_file(argv[f], SIZE_MAX, &len);
                uint32_t *t = xmalloc((len + 1) * sizeof(uint32_t));
                size_t n = 0;
                for (size_t k = 0; k < len; k++) {
                    t[n++] = (uint8_t)text[k];
                    int para_end = text[k] == '\n' && k + 1 < len && text[k + 1] == '\n';
                    if (para_end || k + 1 == len) {
                        emit(t, n);
                        emit(&eot, 1);
                        end_doc();
                        n = 0;
                        if (para_end) k++;   /* the blank line separates, it belongs to no document */
                    }
                }
                free(t);
                free(text);
            }
        }
    } else if (!strcmp(mode, "random")) {
        uint32_t buf[4096];
        uint64_t doc = 0;
        while (tokens > 0) {
            if (empty_every && ++doc % empty_every == 0) { end_doc(); continue; }
            uint64_t len = 1 + rng_next() % (2 * mean_doc);
            if (len > tokens) len = tokens;
            tokens -= len;
            while (len > 0) {
                size_t n = len < 4096 ? (size_t)len : 4096;
                for (size_t k = 0; k < n; k++) buf[k] = (uint32_t)(rng_next() % h.vocab_size);
                emit(buf, n);
                len -= n;
            }
            end_doc();
        }
    } else {
        usage_error("unknown mode %s", mode);
    }
    if (!raw16) tokwriter_close(&w);
    xfflush(stdout, "<stdout>");
    return 0;
}
