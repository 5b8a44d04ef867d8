/* MinHash signatures of shingle sets, as FineWeb computes them.
 *
 * Hash k of a shingle h is ((a_k * h + b_k) mod 2^64) mod (2^61 - 1): the
 * product wraps at 64 bits before the reduction, as in datatrove, whose
 * numpy arithmetic does this, so that signatures agree bit for bit. The
 * parameters are drawn as datatrove draws them: numpy's legacy
 * RandomState(seed) (MT19937), a_k = randint(1, 2^61-1) for all k, then
 * b_k = randint(0, 2^61-1). The signature is the minimum of each hash over
 * the document's shingles, cut into bands of `rows` consecutive values. */
#ifndef SIGMA_DEDUP_MINHASH_H
#define SIGMA_DEDUP_MINHASH_H

#include <stddef.h>
#include <stdint.h>

#define DD_MERSENNE61 ((UINT64_C(1) << 61) - 1)

typedef struct {
    int num_hashes;   /* bands * rows */
    uint64_t *a, *b;  /* [num_hashes] */
} MinHashParams;

void minhash_params_init(MinHashParams *p, int num_hashes, uint32_t seed);
void minhash_params_free(MinHashParams *p);

/* sig[num_hashes]: the signature of shingles[n] (n > 0). With AVX-512 (a
 * check at run time) eight hashes a instruction; elsewhere the portable
 * loop, which the compiler vectorizes for what the machine has. */
void minhash_signature(uint64_t *sig, const MinHashParams *p, const uint64_t *shingles, size_t n);
void minhash_signature_portable(uint64_t *sig, const MinHashParams *p, const uint64_t *shingles, size_t n);

/* One 64-bit key per band (XXH3 of its `rows` values): two documents share
 * a bucket in band j when their keys j are equal. keys[bands]. */
void minhash_band_keys(uint64_t *keys, const uint64_t *sig, int bands, int rows);

#endif
