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

/* Hash k of the signature, one shingle at a time: the definition. */
static uint64_t signature_one(const MinHashParams *p, int k, const uint64_t *shingles, size_t n)
{
    uint64_t m = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = mod61(shingles[i] * p->a[k] + p->b[k]);
        m = v < m ? v : m;
    }
    return m;
}

/* Eight hashes at once in a vector, for any x86-64 (and elsewhere): the
 * compiler splits a vector into what the machine has. Blocks of 16 hashes
 * keep their minima in registers while all shingles stream past. */
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
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
void minhash_signature_portable(uint64_t *sig, const MinHashParams *p, const uint64_t *shingles, size_t n)
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
    for (; k < K; k++) sig[k] = signature_one(p, k, shingles, n);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* With AVX-512 (64-bit products, unsigned minima in one instruction) the
 * exact reduction leaves the loop: r = (v & P) + (v >> 61) is v mod P except
 * when it lands in [P, P + 7], which is then v mod P + P. The loop keeps the
 * minimum of r and also its maximum; a hash whose maximum reached P (about
 * one in 2^58 values) is done again exactly. Nine instructions for eight
 * hashes of a shingle where the exact form takes twelve. */
__attribute__((target("avx512f,avx512dq")))
static void signature_avx512(uint64_t *sig, const MinHashParams *p, const uint64_t *shingles, size_t n)
{
    int K = p->num_hashes, k = 0;
    const __m512i P = _mm512_set1_epi64((long long)DD_MERSENNE61);
    for (; k + 16 <= K; k += 16) {
        __m512i a0 = _mm512_loadu_si512(p->a + k), a1 = _mm512_loadu_si512(p->a + k + 8);
        __m512i b0 = _mm512_loadu_si512(p->b + k), b1 = _mm512_loadu_si512(p->b + k + 8);
        __m512i m0 = _mm512_set1_epi64(-1), m1 = m0, x0 = _mm512_setzero_si512(), x1 = x0;
        for (size_t i = 0; i < n; i++) {
            __m512i h = _mm512_set1_epi64((long long)shingles[i]);
            __m512i v0 = _mm512_add_epi64(_mm512_mullo_epi64(h, a0), b0);
            __m512i v1 = _mm512_add_epi64(_mm512_mullo_epi64(h, a1), b1);
            __m512i r0 = _mm512_add_epi64(_mm512_and_si512(v0, P), _mm512_srli_epi64(v0, 61));
            __m512i r1 = _mm512_add_epi64(_mm512_and_si512(v1, P), _mm512_srli_epi64(v1, 61));
            m0 = _mm512_min_epu64(m0, r0);
            m1 = _mm512_min_epu64(m1, r1);
            x0 = _mm512_max_epu64(x0, r0);
            x1 = _mm512_max_epu64(x1, r1);
        }
        _mm512_storeu_si512(sig + k, m0);
        _mm512_storeu_si512(sig + k + 8, m1);
        uint32_t redo = (uint32_t)_mm512_cmpge_epu64_mask(x0, P) | (uint32_t)_mm512_cmpge_epu64_mask(x1, P) << 8;
        for (int j = 0; j < 16; j++)
            if (redo >> j & 1) sig[k + j] = signature_one(p, k + j, shingles, n);
    }
    for (; k < K; k++) sig[k] = signature_one(p, k, shingles, n);
}

static int have_avx512(void)
{
    static int have = -1;   /* a race writes the same value */
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    }
    return have;
}
#endif

void minhash_signature(uint64_t *sig, const MinHashParams *p, const uint64_t *shingles, size_t n)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_avx512()) {
        signature_avx512(sig, p, shingles, n);
        return;
    }
#endif
    minhash_signature_portable(sig, p, shingles, n);
}

void minhash_band_keys(uint64_t *keys, const uint64_t *sig, int bands, int rows)
{
    for (int j = 0; j < bands; j++) keys[j] = XXH3_64bits(sig + (size_t)j * rows, (size_t)rows * sizeof *sig);
}
