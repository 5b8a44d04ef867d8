/* The shard set: a directory that sigma-shard writes and the trainers read.
 * Specified in sigma-formats(5); in short:
 *
 *   DIR/manifest.json            tokenizer fingerprint, vocabulary, token
 *                                width, split rule, and per split the list of
 *                                shards with counts, sizes and XXH3-64 of the
 *                                whole file
 *   DIR/train-000000.shard ...   the training split, in input order
 *   DIR/val-000000.shard ...     the validation split, in input order
 *
 * A shard file, little-endian:
 *   header, 128 bytes (see SHARD_* offsets in shard.c), ending in an XXH3-64
 *   of its first 104 bytes; then the document index: for every document
 *   that ENDS in this shard, {u64 end (token offset, exclusive), u64
 *   ordinal (the document's number in the input stream)}; then the payload:
 *   n_tokens tokens of token_width bytes, raw or as one zstd frame.
 *   A document may begin in one shard and end in a later one: the header
 *   says whether the first token continues a document (first_continues) and
 *   the ordinal of a document left open at the end (tail_ordinal). */
#ifndef SIGMA_SHARD_H
#define SIGMA_SHARD_H

#include <stdint.h>
#include <stdio.h>

#include "data/tokstream.h"

#define SHARD_MAGIC "SIGSHARD"
#define SHARD_VERSION 1u
#define SHARD_HEADER_BYTES 128
#define SHARDSET_VERSION 1
#define NO_ORDINAL UINT64_MAX
#define SHARD_MAX_TOKENS (1ull << 31)   /* shard_tokens: the most a shard set may ask for */

enum { SPLIT_TRAIN = 0, SPLIT_VAL = 1, N_SPLITS = 2 };
extern const char *const split_names[N_SPLITS];
int split_from_name(const char *name);   /* -1 if unknown */

typedef struct {
    char *file;                /* name inside the directory */
    uint64_t tokens, docs;     /* docs = documents that end in this shard */
    uint64_t bytes;            /* file size */
    uint64_t xxh3;             /* XXH3-64 of the whole file */
} ShardEntry;

typedef struct {
    ShardEntry *shards;        /* [n_shards] */
    size_t n_shards;
    uint64_t tokens, docs;
} SplitInfo;

/* Options of a shard set, as written into its manifest. */
typedef struct {
    uint64_t shard_tokens;     /* tokens per shard (the last one may hold fewer) */
    int level;                 /* zstd level; 0 = stored raw */
    uint64_t seed;             /* of the train/validation split */
    double val_fraction;       /* each document goes to val with this probability */
    uint64_t val_docs;         /* at most this many validation documents (UINT64_MAX: no cap) */
} ShardOptions;

typedef struct {
    char *dir;
    TokHeader tok;             /* vocabulary size and tokenizer fingerprint */
    uint32_t token_width;      /* 2 or 4 bytes */
    ShardOptions opt;
    uint64_t docs, tokens;     /* both splits */
    SplitInfo split[N_SPLITS];
} ShardSet;

/* Reads and checks manifest.json (not the shards); dies naming the field. */
void shardset_open(ShardSet *set, const char *dir);
void shardset_free(ShardSet *set);
char *shardset_path(const ShardSet *set, int split, size_t i);   /* caller frees */
uint32_t token_width_for(uint32_t vocab_size);
/* Is document `ordinal` in the validation split? The seeded draw alone (the
 * val_docs cap is applied by the writer, which counts). */
int split_draw_val(uint64_t seed, double val_fraction, uint64_t ordinal);

/* One shard in memory, fully checked: sizes, every checksum, the manifest's
 * counts, token ids below the vocabulary, ordinals increasing. */
typedef struct {
    uint64_t n_tokens, n_docs;
    uint32_t *tokens;          /* [n_tokens], widened to 32 bits */
    uint64_t *doc_end;         /* [n_docs] token offsets, exclusive */
    uint64_t *doc_ordinal;     /* [n_docs] */
    int first_continues;
    uint64_t tail_ordinal;     /* NO_ORDINAL when the shard ends at a boundary */
} Shard;

void shard_load(Shard *s, const ShardSet *set, int split, size_t i);
void shard_free(Shard *s);

/* ---- writing ---------------------------------------------------------------- */
typedef struct ShardWriter ShardWriter;
ShardWriter *shardwriter_open(const char *dir, int force, const TokHeader *tok, const ShardOptions *opt);
/* Tokens of the current document (which may be split across shards). */
void shardwriter_put(ShardWriter *w, const uint32_t *tokens, size_t n);
void shardwriter_end_doc(ShardWriter *w);
/* Writes the manifest and moves the directory into place. */
void shardwriter_close(ShardWriter *w);

/* ---- reading documents back ------------------------------------------------ */
/* Reads one split, or both merged by document ordinal (split = -1), in input
 * order, one shard in memory per split. Checks that the ordinals it meets
 * are exactly 0, 1, 2, ... when both splits are merged. */
typedef struct SetReader SetReader;
SetReader *setreader_open(const ShardSet *set, int split);
/* Like tokreader_read: up to cap tokens of the current document; *doc_end
 * when it ends; 0 with *doc_end == 0 at the end of the set. */
size_t setreader_read(SetReader *r, uint32_t *buf, size_t cap, int *doc_end);
void setreader_close(SetReader *r);

#endif
