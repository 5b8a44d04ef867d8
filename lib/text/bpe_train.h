/* Byte-level BPE training. First the text is pre-tokenized with the same
 * pattern the encoder will use and the distinct pieces are counted (memory
 * grows with the number of distinct pieces, not with the corpus). Then,
 * starting from the 256 single bytes (ranks 0..255 = byte values), the most
 * frequent adjacent pair of tokens within pieces is merged into a new token
 * again and again, until the vocabulary has the requested size.
 *
 * Tie rule: among pairs of equal count, the one whose first token has the
 * smaller id wins, then the smaller second id (ids: byte values, then the
 * order in which tokens were made). A pair whose bytes equal an existing
 * token's (ab+c after a+bc) reuses that token and adds no rank. The result
 * is deterministic: the same pieces give the same ranks, whatever the order
 * of the input and the number of threads that counted them. */
#ifndef SIGMA_BPE_TRAIN_H
#define SIGMA_BPE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "text/tokenizer.h"

/* Pieces longer than this are counted as consecutive chunks of this size,
 * so that one pathological piece cannot make merging quadratic. */
#define BPE_TRAIN_MAX_PIECE 256

typedef struct BpeCounts BpeCounts;
BpeCounts *bpe_counts_new(int pattern);
void bpe_counts_add(BpeCounts *c, const uint8_t *text, size_t len);
/* Adds every piece of `from` into `into` (counts summed). */
void bpe_counts_merge(BpeCounts *into, const BpeCounts *from);
size_t bpe_counts_distinct(const BpeCounts *c);
uint64_t bpe_counts_total(const BpeCounts *c);   /* pieces counted */
void bpe_counts_free(BpeCounts *c);

/* Learns ranks up to n_ranks (>= 256) and returns the tokenizer with the
 * special tokens given ids n_ranks, n_ranks + 1, ... in order. Fewer ranks
 * result when the pieces run out of pairs (a warning says so). */
Tokenizer *bpe_train(const BpeCounts *c, uint32_t n_ranks, const char *const *special_names, size_t n_specials);

#endif
