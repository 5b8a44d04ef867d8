/* MinHash: datatrove-compatible parameters (MT19937 as numpy's legacy
 * RandomState draws bounded uint64 values) and signatures. */
#include "dedup/minhash.h"
#include "base/base.h"

#include <stdlib.h>
#include <xxhash.h>

typedef struct {
    uint32_t mt[624];
    int i;
} Mt19937;

static void mt_seed(Mt19937 *m, uint32_t seed)
{
    m->mt[0] = seed;
    for (int i = 1; i < 624; i++) m->mt[i] = 1812433253u * (m->mt[i - 1] ^ (m->mt[i - 1] >> 30)) + (uint32_t)i;
    m->i = 624;
}

static uint32_t mt_next32(Mt19937 *m)
{
    if (m->i >= 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (m->mt[k] & 0x80000000u) | (m->mt[(k + 1) % 624] & 0x7fffffffu);
            m->mt[k] = m->mt[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1) ? 0x9908b0dfu : 0);
        }
        m->i = 0;
    }
    uint32_t y = m->mt[m->i++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* numpy's masked rejection sampling of an integer in [low, high). */
static uint64_t mt_bounded(Mt19937 *m, uint64_t low, uint64_t high)
{
    uint64_t rng = high - 1 - low, mask = rng;
    for (int s = 1; s < 64; s *= 2) mask |= mask >> s;
    for (;;) {
        uint64_t hi = mt_next32(m);
        uint64_t v = ((hi << 32) | mt_next32(m)) & mask;
        if (v <= rng) return low + v;
    }
}

void minhash_params_init(MinHashParams *p, int num_hashes, uint32_t seed)
{
    Mt19937 m;
    mt_seed(&m, seed);
    p->num_hashes = num_hashes;
    p->a = xmalloc((size_t)num_hashes * sizeof *p->a);
    p->b = xmalloc((size_t)num_hashes * sizeof *p->b);
    for (int k = 0; k < num_hashes; k++) p->a[k] = mt_bounded(&m, 1, DD_MERSENNE61);
    for (int k = 0; k < num_hashes; k++) p->b[k] = mt_bounded(&m, 0, DD_MERSENNE61);
}

void minhash_params_free(MinHashParams *p)
{
    free(p->a);
    free(p->b);
    p->a = p->b = NULL;
}

/* x mod (2^61 - 1) for any 64-bit x, without a division. */
static inline uint64_t mod61(uint64_t x)
{
    uint64_t r = (x & DD_MERSENNE61) + (x >> 61);
    return r >= DD_MERSENNE61 ? r - DD_MERSENNE61 : r;
}

/* The inner loop vectorizes where 64-bit vector multiplies exist
 * (AVX-512DQ); a clone for each, chosen when the program starts. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "default")))
#endif
void minhash_signature(uint64_t *sig, const MinHashParams *p, const uint64_t *shingles, size_t n)
{
    int K = p->num_hashes;
    for (int k = 0; k < K; k++) sig[k] = UINT64_MAX;
    /* Shingles in the outer loop: each shingle's 8 bytes stay in a register
     * while the K independent multiply chains pipeline. */
    for (size_t i = 0; i < n; i++) {
        uint64_t h = shingles[i];
        for (int k = 0; k < K; k++) {
            uint64_t v = mod61(h * p->a[k] + p->b[k]);
            sig[k] = v < sig[k] ? v : sig[k];
        }
    }
}

void minhash_band_keys(uint64_t *keys, const uint64_t *sig, int bands, int rows)
{
    for (int j = 0; j < bands; j++) keys[j] = XXH3_64bits(sig + (size_t)j * rows, (size_t)rows * sizeof *sig);
}
