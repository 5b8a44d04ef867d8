/* JSON Lines through both readers: sigma-tokenize's documents (docs_next,
 * --jsonl --field text, bad records skipped and counted) and sigma-dedup's
 * corpus (dd_corpus_open and every record's text). */
#include "common.h"
#include "base/base.h"
#include "dedup/docs.h"
#include "text/docs.h"

#include <stdlib.h>

static void tokenize_docs(void *arg)
{
    char *paths[] = {arg};
    Docs d;
    docs_open(&d, DOCS_JSONL, "text", 1, paths, 1);
    const uint8_t *doc;
    size_t len;
    int ends;
    while (docs_next(&d, &doc, &len, &ends)) {}
    docs_close(&d);
}

static void dedup_docs(void *arg)
{
    char *paths[] = {arg};
    DdCorpus c;
    dd_corpus_open(&c, DD_JSONL, "text", paths, 1);
    DdBuf scratch = {0};
    for (size_t i = 0; i < c.n; i++) {
        const char *text;
        size_t len;
        dd_record_text(&c, i, &scratch, &text, &len);
    }
    ddbuf_free(&scratch);
    dd_corpus_close(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *path = fz_file("docs.jsonl", data, size);
    fz_run(tokenize_docs, path);
    fz_run(dedup_docs, path);
    free(path);
    return 0;
}
