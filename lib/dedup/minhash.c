/* MinHash: datatrove-compatible parameters (MT19937 as numpy's legacy
 * RandomState draws bounded uint64 values) and signatures. */
#include "dedup/minhash.h"
#include "base/base.h"

#include <stdlib.h>
#include <string.h>
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

/* Eight hashes at once in a vector; with AVX-512 (x86-64-v4: 64-bit
 * vector multiplies) a vector is one register, elsewhere the compiler
 * splits it. Blocks of 16 hashes keep their minima in registers while all
 * shingles stream past. */
typedef uint64_t V8 __attribute__((vector_size(64)));

/* m = min(m, ((h * a + b) mod 2^64) mod P), lane by lane; a macro, as a
 * function passing vectors would change the ABI between the clones. */
#define V8_HASH_MIN(m, h, a, b)                            \
    do {                                                   \
        const V8 P_ = (V8){0} + DD_MERSENNE61;             \
        V8 v_ = (h) * (a) + (b);                           \
        V8 r_ = (v_ & P_) + (v_ >> 61);                    \
        r_ -= P_ & (V8)(r_ >= P_);                         \
        V8 lt_ = (V8)(r_ < (m));                           \
        (m) = (r_ & lt_) | ((m) & ~lt_);                   \
    } while (0)

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "default")))
#endif
void minhash_signature(uint64_t *sig, const MinHashParams *p, const uint64_t *shingles, size_t n)
{
    int K = p->num_hashes, k = 0;
    for (; k + 16 <= K; k += 16) {
        V8 a0, a1, b0, b1;
        memcpy(&a0, p->a + k, sizeof a0);
        memcpy(&a1, p->a + k + 8, sizeof a1);
        memcpy(&b0, p->b + k, sizeof b0);
        memcpy(&b1, p->b + k + 8, sizeof b1);
        V8 m0 = (V8){0} + UINT64_MAX, m1 = m0;
        for (size_t i = 0; i < n; i++) {
            V8 h = (V8){0} + shingles[i];
            V8_HASH_MIN(m0, h, a0, b0);
            V8_HASH_MIN(m1, h, a1, b1);
        }
        memcpy(sig + k, &m0, sizeof m0);
        memcpy(sig + k + 8, &m1, sizeof m1);
    }
    for (; k < K; k++) {   /* hash counts that are not a multiple of 16 */
        uint64_t m = UINT64_MAX;
        for (size_t i = 0; i < n; i++) {
            uint64_t v = mod61(shingles[i] * p->a[k] + p->b[k]);
            m = v < m ? v : m;
        }
        sig[k] = m;
    }
}

void minhash_band_keys(uint64_t *keys, const uint64_t *sig, int bands, int rows)
{
    for (int j = 0; j < bands; j++) keys[j] = XXH3_64bits(sig + (size_t)j * rows, (size_t)rows * sizeof *sig);
}
