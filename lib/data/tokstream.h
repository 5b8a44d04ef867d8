/* The token stream: what sigma-tokenize writes and sigma-shard reads,
 * through a pipe. Specified in sigma-formats(5); in short, little-endian:
 *
 *   header, 40 bytes:
 *     magic "SIGMATOK" (8) | version u32 = 2 | vocab_size u32 |
 *     tokenizer fingerprint (16 bytes; all zero when there is no tokenizer) |
 *     u64 XXH3-64 of bytes 0-31
 *   (version 1, still read, is the first 32 bytes alone: no checksum)
 *   records, each a u32 word W then tokens:
 *     W = n | (1<<31)*ends   n tokens (u32 each, n < 2^31) that continue the
 *                            current document; `ends` closes it. An empty
 *                            document is W = 1<<31 with no tokens.
 *     W = 0xFFFFFFFF         the trailer: u64 documents, u64 tokens,
 *                            u64 XXH3-64 of every token (u32 LE) in order.
 *   Nothing may follow the trailer. A stream that ends without a trailer is
 *   truncated; a token >= vocab_size, a trailer that disagrees with what came
 *   before, or a document left open at the trailer are errors. Every error
 *   names the stream and the byte offset. */
#ifndef SIGMA_TOKSTREAM_H
#define SIGMA_TOKSTREAM_H

#include <stdint.h>
#include <stdio.h>
#include <xxhash.h>

#define TOKSTREAM_MAGIC "SIGMATOK"
#define TOKSTREAM_VERSION 2u
#define TOKSTREAM_HEADER_BYTES 40      /* version 2; version 1's is 32 */
#define TOKSTREAM_V1_HEADER_BYTES 32
#define TOKSTREAM_END_BIT 0x80000000u
#define TOKSTREAM_TRAILER 0xFFFFFFFFu
#define TOKSTREAM_MAX_CHUNK 0x7FFFFFFFu

typedef struct {
    uint32_t vocab_size;
    uint8_t fingerprint[16];   /* of the tokenizer file; zeros when none */
} TokHeader;

/* Writer: buffered; tokens are checked against vocab_size as they come. */
typedef struct {
    FILE *f;
    const char *name;
    TokHeader hdr;
    uint32_t *buf;             /* [cap] tokens of the current chunk */
    size_t len, cap;
    uint64_t docs, tokens;
    XXH3_state_t *hash;
    int in_doc;                /* a chunk of the current document was written */
} TokWriter;

void tokwriter_open(TokWriter *w, FILE *f, const char *name, const TokHeader *hdr);
void tokwriter_put(TokWriter *w, const uint32_t *tokens, size_t n);
void tokwriter_end_doc(TokWriter *w);
/* Writes the trailer and flushes; dies if a document is still open. */
void tokwriter_close(TokWriter *w);

/* Reader: validates everything it reads and dies naming name and offset. */
typedef struct {
    FILE *f;
    const char *name;
    TokHeader hdr;
    uint64_t offset;           /* byte offset of the next unread byte */
    uint64_t docs, tokens;     /* completed documents, tokens so far */
    uint32_t left;             /* tokens left in the current record */
    int ends;                  /* the current record closes its document */
    int done;                  /* trailer read and checked */
    int tokens_in_doc_open;    /* a record of an unfinished document was read */
    XXH3_state_t *hash;
} TokReader;

void tokreader_open(TokReader *r, FILE *f, const char *name);
/* Reads up to cap tokens of the current document into buf and returns how
 * many; *doc_end is set when the document ends with the last token returned
 * (possibly after 0 tokens, for an empty document or a record boundary).
 * Returns 0 with *doc_end = 0 once the trailer has been read and checked. */
size_t tokreader_read(TokReader *r, uint32_t *buf, size_t cap, int *doc_end);
void tokreader_close(TokReader *r);

/* Fingerprint helpers: 32 lowercase hex digits. */
void fingerprint_hex(char out[33], const uint8_t fp[16]);
int fingerprint_parse(uint8_t fp[16], const char *hex);
/* The one check that two things were made with the same tokenizer (a
 * stream and a tokenizer file, a checkpoint and a shard set, ...): dies
 * "A_NAME: made with another tokenizer: FP (vocabulary N) differs from
 * B_NAME's FP (vocabulary M)" when both are known and differ. An unknown
 * one (all-zero fingerprint: a stream made without a tokenizer, a model
 * imported without one) matches a known one, with a warning; two unknown
 * ones match when their vocabularies do. */
void tokenizer_match(const TokHeader *a, const char *a_name, const TokHeader *b, const char *b_name);

#endif
