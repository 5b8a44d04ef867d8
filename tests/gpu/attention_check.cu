// The fused attention kernels (lib/cuda/flash.cu) against causal
// grouped-query attention computed on the host in double precision from the
// same bf16 inputs: the output and each row's log-sum-exp, then dQ, dK and
// dV (each KV head's summed over its group of query heads), for every
// supported head size, sequences that end inside a tile, several sequences
// and heads per KV head, and values and their gradient with a row stride of
// their own (as inside the fused qkv rows). Outputs are poisoned first
// (every row must be written, and dV's rows no further than their KV
// heads) and a second run must give the same bits. Then packed rows:
// documents of uneven lengths one after another in each sequence (pos, as
// model.h's), the reference keeping each query to its document's keys, with
// documents that begin inside a tile, span tiles, or hold a single token.
// Needs a GPU; TAP on stdout.
//
// The same source built for the CPU emulation (tests/emu/cuda_emu.h) runs
// in `make test` on machines without a GPU.
#include "cuda/common.cuh"
#include "cuda/flash.h"

extern "C" {
#include "../tap.h"
}
#include "bank_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 7;
static double uniform(void) { return (double)(splitmix64(&rng) >> 11) * 0x1.0p-53; }

template <typename T> static T *device_copy(const T *h, size_t n)
{
    T *d;
    CUDA_CHECK(cudaMalloc(&d, n * sizeof(T)));
    CUDA_CHECK(cudaMemcpy(d, h, n * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
template <typename T> static T *host_copy(const T *d, size_t n)
{
    T *h = (T *)xmalloc(n * sizeof(T));
    CUDA_CHECK(cudaMemcpy(h, d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}
template <typename T> static T *poisoned(size_t n)
{
    T *d;
    CUDA_CHECK(cudaMalloc(&d, n * sizeof(T)));
    CUDA_CHECK(cudaMemset(d, 0xff, n * sizeof(T)));
    return d;
}
// n random bf16 values (device) and the same as doubles (ref)
static bf16 *random_bf16(double *ref, size_t n, double scale)
{
    bf16 *h = (bf16 *)xmalloc(n * sizeof(bf16));
    for (size_t i = 0; i < n; i++) {
        h[i] = __float2bfloat16((float)((uniform() * 2 - 1) * scale));
        ref[i] = __bfloat162float(h[i]);
    }
    bf16 *d = device_copy(h, n);
    free(h);
    return d;
}
static double rel_err(const double *ref, const float *got, size_t n, int *finite)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        *finite &= isfinite(got[i]);
        num += (got[i] - ref[i]) * (got[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return sqrt(num / (den + 1e-300));
}
static float *to_float(const bf16 *h, size_t n)
{
    float *f = (float *)xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) f[i] = __bfloat162float(h[i]);
    return f;
}

// pos[B*T]: row b's documents have the lengths docs[b], docs[b + 1], ...
// (cyclically; docs ends with 0), the last cut at T.
static int *packed_positions(const int *docs, int B, int T)
{
    int nd = 0;
    while (docs[nd]) nd++;
    int *pos = (int *)xmalloc((size_t)B * T * sizeof(int));
    for (int b = 0; b < B; b++)
        for (int t = 0, i = b, p = 0; t < T; t++, p++) {
            if (p == docs[i % nd]) { p = 0; i++; }
            pos[(size_t)b * T + t] = p;
        }
    return pos;
}

// docs: NULL for one document a row, else packed_positions's lengths.
static void check(int B, int T, int H, int KV, int hd, const int *docs = NULL)
{
    const int N = B * T, qd = H * hd, kvd = KV * hd, ldv = kvd + 8, group = H / KV;
    const double scale = 1.0 / sqrt((double)hd);
    double *q = (double *)xmalloc((size_t)N * qd * sizeof(double)), *k = (double *)xmalloc((size_t)N * kvd * sizeof(double));
    double *v = (double *)xmalloc((size_t)N * ldv * sizeof(double)), *dout = (double *)xmalloc((size_t)N * qd * sizeof(double));
    // scores of a few units: softmax neither flat nor one-hot
    bf16 *d_q = random_bf16(q, (size_t)N * qd, 2.0), *d_k = random_bf16(k, (size_t)N * kvd, 2.0);
    bf16 *d_v = random_bf16(v, (size_t)N * ldv, 1.0), *d_dout = random_bf16(dout, (size_t)N * qd, 1.0);
    int *pos = docs ? packed_positions(docs, B, T) : NULL, *d_pos = pos ? device_copy(pos, (size_t)N) : NULL;

    // the reference, one (sequence, head) at a time
    double *o = (double *)xcalloc((size_t)N * qd, sizeof(double)), *lse = (double *)xmalloc((size_t)B * H * T * sizeof(double));
    double *dq = (double *)xcalloc((size_t)N * qd, sizeof(double)), *dk = (double *)xcalloc((size_t)N * kvd, sizeof(double));
    double *dv = (double *)xcalloc((size_t)N * kvd, sizeof(double)), *p = (double *)xmalloc((size_t)T * T * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const int kh = h / group;
            const size_t bh = (size_t)b * H + h;
            auto Q = [&](int i) { return q + ((size_t)b * T + i) * qd + h * hd; };
            auto K = [&](int j) { return k + ((size_t)b * T + j) * kvd + kh * hd; };
            auto Vr = [&](int j) { return v + ((size_t)b * T + j) * ldv + kh * hd; };
            auto dO = [&](int i) { return dout + ((size_t)b * T + i) * qd + h * hd; };
            for (int i = 0; i < T; i++) {
                const int first = pos ? i - pos[(size_t)b * T + i] : 0;   // keys [first, i]: the query's document's
                double mx = -INFINITY, sum = 0;
                for (int j = first; j <= i; j++) {
                    double s = 0;
                    for (int c = 0; c < hd; c++) s += Q(i)[c] * K(j)[c];
                    p[(size_t)i * T + j] = s * scale;
                    mx = fmax(mx, s * scale);
                }
                for (int j = first; j <= i; j++) sum += exp(p[(size_t)i * T + j] - mx);
                lse[bh * T + i] = mx + log(sum);
                double *oi = o + ((size_t)b * T + i) * qd + h * hd;
                for (int j = first; j <= i; j++) {
                    p[(size_t)i * T + j] = exp(p[(size_t)i * T + j] - lse[bh * T + i]);
                    for (int c = 0; c < hd; c++) oi[c] += p[(size_t)i * T + j] * Vr(j)[c];
                }
                double D = 0;
                for (int c = 0; c < hd; c++) D += dO(i)[c] * oi[c];
                for (int j = first; j <= i; j++) {
                    double dp = 0;
                    for (int c = 0; c < hd; c++) dp += dO(i)[c] * Vr(j)[c];
                    double ds = p[(size_t)i * T + j] * (dp - D);
                    for (int c = 0; c < hd; c++) {
                        dq[((size_t)b * T + i) * qd + h * hd + c] += scale * ds * K(j)[c];
                        dk[((size_t)b * T + j) * kvd + kh * hd + c] += scale * ds * Q(i)[c];
                        dv[((size_t)b * T + j) * kvd + kh * hd + c] += p[(size_t)i * T + j] * dO(i)[c];
                    }
                }
            }
        }

    // the kernels, twice
    bf16 *d_o = poisoned<bf16>((size_t)N * qd), *d_dq = poisoned<bf16>((size_t)N * qd);
    bf16 *d_dk = poisoned<bf16>((size_t)N * kvd), *d_dv = poisoned<bf16>((size_t)N * ldv);
    float *d_lse = poisoned<float>((size_t)B * H * T), *d_D = poisoned<float>((size_t)N * H);
    flash_attention_forward(d_o, d_lse, d_q, d_k, d_v, ldv, d_pos, B, T, H, KV, hd, 0);
    flash_attention_backward(d_dq, d_dk, d_dv, d_D, d_dout, d_o, d_q, d_k, d_v, ldv, d_lse, d_pos, B, T, H, KV, hd, 0);
    CUDA_CHECK(cudaDeviceSynchronize());
    bf16 *ho = host_copy(d_o, (size_t)N * qd), *hdq = host_copy(d_dq, (size_t)N * qd);
    float *hl = host_copy(d_lse, (size_t)B * H * T);
    bf16 *hdk = host_copy(d_dk, (size_t)N * kvd), *hdv = host_copy(d_dv, (size_t)N * ldv);
    float *fo = to_float(ho, (size_t)N * qd), *fdq = to_float(hdq, (size_t)N * qd), *fdk = to_float(hdk, (size_t)N * kvd);
    float *fdv = (float *)xmalloc((size_t)N * kvd * sizeof(float));
    int finite = 1, dv_within = 1;
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < kvd; c++) fdv[(size_t)n * kvd + c] = __bfloat162float(hdv[(size_t)n * ldv + c]);
        for (int c = kvd; c < ldv; c++) {
            uint16_t bits;
            memcpy(&bits, &hdv[(size_t)n * ldv + c], 2);
            dv_within &= bits == 0xffff;
        }
    }
    double eo = rel_err(o, fo, (size_t)N * qd, &finite), el = 0;
    for (size_t i = 0; i < (size_t)B * H * T; i++) {
        finite &= isfinite(hl[i]);
        el = fmax(el, fabs(hl[i] - lse[i]));
    }
    double edq = rel_err(dq, fdq, (size_t)N * qd, &finite), edk = rel_err(dk, fdk, (size_t)N * kvd, &finite);
    double edv = rel_err(dv, fdv, (size_t)N * kvd, &finite);
    char what[120];
    snprintf(what, sizeof what, "B %d, T %d, %d heads on %d KV heads of %d%s", B, T, H, KV, hd, pos ? ", packed rows" : "");
    ok(finite, "%s: every output written and finite", what);
    ok(dv_within, "%s: dV's rows written no further than their KV heads", what);
    // bf16 rounding of the output and of the probabilities into P V: about 2^-8 each
    ok(eo < 1e-2 && el < 1e-3, "%s: output within %.2e, log-sum-exp within %.2e of double precision", what, eo, el);
    ok(edq < 2e-2 && edk < 2e-2 && edv < 2e-2, "%s: dQ, dK, dV within %.2e, %.2e, %.2e", what, edq, edk, edv);

    flash_attention_forward(d_o, d_lse, d_q, d_k, d_v, ldv, d_pos, B, T, H, KV, hd, 0);
    flash_attention_backward(d_dq, d_dk, d_dv, d_D, d_dout, d_o, d_q, d_k, d_v, ldv, d_lse, d_pos, B, T, H, KV, hd, 0);
    bf16 *ho2 = host_copy(d_o, (size_t)N * qd), *hdq2 = host_copy(d_dq, (size_t)N * qd);
    bf16 *hdk2 = host_copy(d_dk, (size_t)N * kvd), *hdv2 = host_copy(d_dv, (size_t)N * ldv);
    ok(!memcmp(ho, ho2, (size_t)N * qd * sizeof(bf16)) && !memcmp(hdq, hdq2, (size_t)N * qd * sizeof(bf16)) &&
           !memcmp(hdk, hdk2, (size_t)N * kvd * sizeof(bf16)) && !memcmp(hdv, hdv2, (size_t)N * ldv * sizeof(bf16)),
       "%s: deterministic", what);

    bf16 *dev_b[] = {d_q, d_k, d_v, d_dout, d_o, d_dq, d_dk, d_dv};
    float *dev_f[] = {d_lse, d_D};
    for (bf16 *d : dev_b) CUDA_CHECK(cudaFree(d));
    for (float *d : dev_f) CUDA_CHECK(cudaFree(d));
    if (d_pos) CUDA_CHECK(cudaFree(d_pos));
    void *host[] = {q, k, v, dout, o, lse, dq, dk, dv, p, ho, hdq, hl, hdk, hdv, fo, fdq, fdk, fdv, ho2, hdq2, hdk2, hdv2, pos};
    for (void *h : host) free(h);
}

int main(void)
{
    sg_init("attention_check");
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || !n_dev) {
        printf("1..0 # SKIP no CUDA device\n");
        return 0;
    }
    check(1, 130, 4, 2, 64);    // three query tiles, the last of 2 rows
    check(2, 64, 2, 1, 16);     // two sequences, one tile each
    check(1, 100, 2, 2, 128);   // one head per KV head
    check(1, 70, 3, 1, 96);
    check(1, 33, 2, 1, 32);
    check(1, 96, 8, 2, 64);     // four heads per KV head, as in both presets
    // packed rows: documents beginning inside tiles, a whole key tile before a query tile's first document
    // (skipped), query tiles past a key tile's last document (skipped), one-token documents
    static const int docs1[] = {70, 3, 127, 1, 0}, docs2[] = {20, 45, 1, 30, 0}, docs3[] = {64, 64, 5, 0};
    check(1, 200, 4, 2, 64, docs1);
    check(2, 130, 2, 1, 32, docs2);
    check(3, 140, 4, 1, 16, docs3);
    check(1, 100, 2, 2, 128, docs2);
    check(1, 70, 3, 1, 96, docs1);
#ifdef SIGMA_EMU
    emu::cp_late = false;   // copies landing at once, the last warp ahead, blocks in reverse: races show
    emu::skewed = true;
    check(1, 130, 4, 2, 64);
    check(1, 70, 3, 1, 96);
    check(1, 200, 4, 2, 64, docs1);
    ok_no_bank_conflicts();
#endif
    return tap_done();
}
