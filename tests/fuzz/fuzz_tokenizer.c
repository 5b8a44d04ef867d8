/* A tokenizer file (tokenizer_load, as every tool's -t reads it): a sigma
 * tokenizer file, or a plain tiktoken rank file with the gpt2 pattern;
 * what loads is then used to encode and decode a line. */
#include "common.h"
#include "base/base.h"
#include "text/tokenizer.h"

#include <stdlib.h>
#include <string.h>

static void load(void *arg)
{
    const char *path = arg;
    FILE *f = fopen(path, "rb");
    char head[17] = "";
    if (f) { if (fread(head, 1, 16, f)) {} fclose(f); }
    Tokenizer *t = tokenizer_load(path, strncmp(head, "#sigma-tokenizer", 16) ? "gpt2" : NULL);
    static const char text[] = "Hello, world! It's 2024: <|endoftext|> caf\xc3\xa9 \xf0\x9f\x98\x80 \xff  \n\n";
    TokIds ids = {0};
    TokBytes back = {0};
    tokenizer_encode(t, &ids, (const uint8_t *)text, sizeof text - 1, TOK_ALLOW_SPECIAL);
    tokenizer_decode(t, &back, ids.ids, ids.len);
    if (back.len != sizeof text - 1 || memcmp(back.bytes, text, back.len)) abort();   /* byte-level BPE round-trips */
    tokids_free(&ids);
    tokbytes_free(&back);
    tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *path = fz_file("tokenizer.txt", data, size);
    fz_run(load, path);
    free(path);
    return 0;
}
