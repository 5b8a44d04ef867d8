/* Documents from text inputs, for sigma-tokenize (encode and train) and any
 * tool that reads text the same ways: a whole file per document, a line per
 * document (--lines), or a field of each JSON Lines record (--jsonl
 * --field F). Paths are read in order; "-" (or no path) is stdin; a path
 * ending in .zst is decompressed. */
#ifndef SIGMA_DOCS_H
#define SIGMA_DOCS_H

#include <stdint.h>
#include <stdio.h>

typedef enum { DOCS_FILE = 0, DOCS_LINES, DOCS_JSONL } DocsMode;

typedef struct {
    DocsMode mode;
    const char *field;         /* DOCS_JSONL: the string field to take */
    int skip_bad;              /* DOCS_JSONL: skip bad records (counted) instead of dying */
    char *const *paths;
    size_t n_paths, next_path;
    FILE *f;
    const char *name;          /* current input, for messages */
    uint64_t line_no;
    uint64_t skipped;          /* bad records skipped */
    uint64_t bytes_read;       /* input bytes consumed, for progress */
    char *line;                /* getline buffer */
    size_t line_cap;
    char *doc;                 /* the current document or part, then what was read after it */
    size_t doc_len, doc_cap, part_len;
    int in_file;               /* DOCS_FILE: a file's document is being handed out */
} Docs;

/* paths may be empty (stdin). */
void docs_open(Docs *d, DocsMode mode, const char *field, int skip_bad, char *const *paths, size_t n_paths);
/* The next document or part of one (valid until the next call), or 0 at
 * the end. *ends is 0 for a part that its document continues after: a
 * whole file is handed out in parts of about DOCS_PART bytes, cut only where
 * the cut does not change its tokens (tokenizer_cut_point), so memory does
 * not grow with the size of a file. */
#define DOCS_PART (4u << 20)
int docs_next(Docs *d, const uint8_t **doc, size_t *len, int *ends);
void docs_close(Docs *d);



/* Runs fn(ctx, i, thread) for i in [0, n) on `threads` threads (0 = every
 * core), items handed out in order as threads come free; thread is in
 * [0, threads). Returns once all are done. */
int docs_threads(int threads);   /* 0 -> the number of online cores */
void docs_parallel(int threads, size_t n, void (*fn)(void *ctx, size_t i, int thread), void *ctx);
#endif
