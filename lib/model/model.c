/* The Sigma-MoE model on the CPU, fp32, forward and backward: see model.h.
 *
 * Layout of this file, llm.c style: the parameter table; the layer
 * functions in forward/backward pairs (outputs first, then inputs, then
 * sizes); the activation buffer; model_forward and model_backward, which
 * call the layers in order and in reverse. N = B*T tokens throughout. */
#include "model/model.h"
#include "model/kvcache.h"
#include "model/route.h"
#include "base/base.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/threads.h"
#ifdef SIGMA_BLAS
#include <cblas.h>
#endif

/* ============================ parameters ============================== */

/* Pointers into the parameter (or gradient) buffer for one layer. */
typedef struct {
    float *ln1;                /* [d] */
    float *wq, *wk, *wv, *wo;  /* [H*hd, d], [KV*hd, d], [KV*hd, d], [d, H*hd] */
    float *qnorm, *knorm;      /* [hd], [hd] */
    float *ln2;                /* [d] */
    float *router;             /* [E, d] */
    float *expert;             /* the held experts' blocks of {gate [de, d], up [de, d], down [d, de]} */
} LayerParams;

typedef struct {
    float *embed;              /* [V, d] */
    LayerParams layer[MODEL_MAX_LAYERS];
    float *norm;               /* [d] */
    float *head;               /* [V, d]; the embedding when tied */
} Params;

/* The layout's offsets (layout.c) as pointers into base. */
static Params param_pointers(const Model *m, float *base)
{
    const Config *c = &m->cfg;
    ParamLayout pl;
    param_layout_slice(&pl, c, m->experts);
    Params p = {.embed = base + pl.embed, .norm = base + pl.norm, .head = base + pl.head};
    for (int l = 0; l < c->n_layers; l++) {
        const size_t *o = pl.layer[l];
        p.layer[l] = (LayerParams){.ln1 = base + o[PT_LN1], .wq = base + o[PT_Q], .wk = base + o[PT_K], .wv = base + o[PT_V],
                                   .wo = base + o[PT_O], .qnorm = base + o[PT_QNORM], .knorm = base + o[PT_KNORM],
                                   .ln2 = base + o[PT_LN2], .router = base + o[PT_ROUTER], .expert = base + o[PT_EXPERTS]};
    }
    return p;
}

/* ============================ exp ===================================== */

/* exp(x), within about 2 ulp of expf, written so that a simd loop
 * vectorises it: glibc's expf is one call per element, and the softmax of
 * the head alone takes N*V of them. x = n ln2 + r with |r| <= ln2/2, a
 * degree-6 polynomial for e^r (Cephes' coefficients), 2^n put straight
 * into the exponent bits; x is clamped to [-87, 88] so that 2^n stays a
 * normal number (exp(-87) is 1.6e-38: nothing beside a sum of at least 1),
 * and a NaN stays NaN, so that a run that diverged still shows a NaN loss.
 * test_model_fd compiles this file with float as double, where the
 * polynomial would be too coarse: there it is exp itself. */
static inline float exp_simd(float x)
{
    if (sizeof(float) == sizeof(double)) return expf(x);
    /* The clamp on the bits, as integers: a float compare and select is a
     * branch that GCC will not vectorise under -ftrapping-math. Positive
     * floats order as signed ints, negative ones as unsigned. */
    int32_t xi, nan;
    uint32_t xu;
    memcpy(&xi, &x, sizeof xi);
    nan = (xi & 0x7fffffff) > 0x7f800000 ? 0x7fc00000 : 0;
    xi = xi < 0x42b00000 ? xi : 0x42b00000;       /* 88 */
    xu = (uint32_t)xi;
    xu = xu < 0xc2ae0000u ? xu : 0xc2ae0000u;     /* -87 */
    memcpy(&x, &xu, sizeof x);
    /* round to nearest by the 1.5 * 2^23 trick: no SSE4 rounding needed */
    float t = x * 1.44269504088896341f + 12582912.0f, n = t - 12582912.0f, two;
    int32_t bits;
    float r = x - n * 0.693359375f - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    memcpy(&bits, &t, sizeof bits);   /* the low bits of t are n */
    bits = (bits - 0x4b400000 + 127) << 23;
    memcpy(&two, &bits, sizeof two);
    p *= two;
    memcpy(&bits, &p, sizeof bits);
    bits |= nan;
    memcpy(&p, &bits, sizeof p);
    return p;
}

/* The element-wise kernels of the exponential are compiled three times,
 * for AVX-512, AVX2 and the baseline the build targets (x86-64: SSE2, no
 * FMA, where the integer clamp alone takes a dozen instructions), and the
 * loader picks one for the machine: at the head's N*V exponentials the
 * baseline took 2.6 ns an element, AVX2 0.7, AVX-512 0.5. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SIMD_CLONES
#endif

/* e[n] = exp(x[n] - max x) (e may be x), *mx = max x; returns sum e: the
 * softmax unnormalised. The sum in simd lanes is still one fixed order. */
SIMD_CLONES static float softmax_exp(float *e, const float *x, int n, float *mx)
{
    float m = x[0], s = 0;
#pragma omp simd reduction(max : m)
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += e[i] = exp_simd(x[i] - m);
    *mx = m;
    return s;
}

float log_sum_exp(const float *x, int n, float *scratch)
{
    float mx, s = softmax_exp(scratch, x, n, &mx);
    return mx + logf(s);
}

static inline float sigmoid(float x) { return 1.0f / (1.0f + exp_simd(-x)); }

/* act[n, de] = silu(g) * u from gu[n, 2de], each row g then u */
SIMD_CLONES static void swiglu_forward(float *act, const float *gu, int n, int de)
{
    for (int r = 0; r < n; r++) {
        const float *g = gu + (size_t)r * 2 * de, *u = g + de;
        float *o = act + (size_t)r * de;
#pragma omp simd
        for (int j = 0; j < de; j++) o[j] = g[j] * sigmoid(g[j]) * u[j];
    }
}

/* dgu[n, 2de] (written) from dact[n, de] */
SIMD_CLONES static void swiglu_backward(float *dgu, const float *dact, const float *gu, int n, int de)
{
    for (int r = 0; r < n; r++) {
        const float *g = gu + (size_t)r * 2 * de, *u = g + de, *da = dact + (size_t)r * de;
        float *dg = dgu + (size_t)r * 2 * de, *du = dg + de;
#pragma omp simd
        for (int j = 0; j < de; j++) {
            float sg = sigmoid(g[j]);
            dg[j] = da[j] * u[j] * sg * (1.0f + g[j] * (1.0f - sg));
            du[j] = da[j] * g[j] * sg;
        }
    }
}

/* ============================ matmul ================================== */

/* Matrix products in two levels. The kernels below are serial: one
 * thread's share of a product (OpenBLAS single-threaded, or plain loops).
 * The parallel layers split the work among OpenMP threads themselves: one
 * pool of threads, none oversubscribed (OpenBLAS's own threads and
 * OpenMP's fought over two cores and lost a third of the time to
 * yielding). */

/* out[N, OC] (= or +=) inp[N, C] . w[OC, C]^T, out's rows ldo apart: a
 * block of w's rows gives the matching columns of out */
static void gemm_nt_ld(float *out, int ldo, const float *inp, const float *w, int N, int C, int OC, int accumulate)
{
#ifdef SIGMA_BLAS
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, w, C, accumulate ? 1.0f : 0.0f, out, ldo);
#else
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            const float *x = inp + (size_t)n * C, *wr = w + (size_t)o * C;
            float s = 0;
            for (int i = 0; i < C; i++) s += x[i] * wr[i];
            out[(size_t)n * ldo + o] = accumulate ? out[(size_t)n * ldo + o] + s : s;
        }
#endif
}

/* out[N, OC] (= or +=) inp[N, C] . w[OC, C]^T */
static void gemm_nt(float *out, const float *inp, const float *w, int N, int C, int OC, int accumulate)
{
    gemm_nt_ld(out, OC, inp, w, N, C, OC, accumulate);
}

/* dinp[N, C] (= or +=) dout[N, OC] . w[OC, C] */
static void gemm_nn(float *dinp, const float *dout, const float *w, int N, int C, int OC, int accumulate)
{
#ifdef SIGMA_BLAS
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, w, C, accumulate ? 1.0f : 0.0f, dinp, C);
#else
    for (int n = 0; n < N; n++) {
        float *dx = dinp + (size_t)n * C;
        if (!accumulate)
            for (int i = 0; i < C; i++) dx[i] = 0;
        for (int o = 0; o < OC; o++) {
            float g = dout[(size_t)n * OC + o];
            const float *wr = w + (size_t)o * C;
            for (int i = 0; i < C; i++) dx[i] += g * wr[i];
        }
    }
#endif
}

/* dw[OC, C] += dout[N, OC]^T . inp[N, C], dout's rows ldd apart: a block
 * of dw's rows takes the matching columns of dout */
static void gemm_tn(float *dw, const float *dout, int ldd, const float *inp, int N, int C, int OC)
{
#ifdef SIGMA_BLAS
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, ldd, inp, C, 1.0f, dw, C);
#else
    for (int o = 0; o < OC; o++)
        for (int n = 0; n < N; n++) {
            float g = dout[(size_t)n * ldd + o];
            const float *x = inp + (size_t)n * C;
            float *dwr = dw + (size_t)o * C;
            for (int i = 0; i < C; i++) dwr[i] += g * x[i];
        }
#endif
}

/* Rows per task of the parallel products, fixed: OpenBLAS picks its
 * kernel (and so its order of summation) by the shape, so a split by the
 * number of threads gave other bits on one thread than on two. */
enum { MM_ROWS = 128, MM_WROWS = 64 };

static int min_int(int a, int b) { return a < b ? a : b; }

/* out[N, OC] (= or +=) inp[N, C] . w[OC, C]^T, by blocks of rows */
static void matmul_forward(float *out, const float *inp, const float *w, int N, int C, int OC, int accumulate)
{
#pragma omp parallel for schedule(static)
    for (int n0 = 0; n0 < N; n0 += MM_ROWS)
        gemm_nt(out + (size_t)n0 * OC, inp + (size_t)n0 * C, w, min_int(MM_ROWS, N - n0), C, OC, accumulate);
}

/* dinp[N, C] (= or +=) dout[N, OC] . w[OC, C] (skipped when dinp is
 * NULL); dw[OC, C] += dout^T . inp. One loop of tasks, dealt out
 * dynamically: first blocks of dw's rows (the larger tasks: each over all
 * N rows in order), then blocks of dinp's rows. */
static void matmul_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int N, int C, int OC,
                            int accumulate)
{
    int nw = (OC + MM_WROWS - 1) / MM_WROWS, nx = dinp ? (N + MM_ROWS - 1) / MM_ROWS : 0;
#pragma omp parallel for schedule(dynamic)
    for (int t = 0; t < nw + nx; t++) {
        if (t < nw) {
            int o0 = t * MM_WROWS;
            gemm_tn(dw + (size_t)o0 * C, dout + o0, OC, inp, N, C, min_int(MM_WROWS, OC - o0));
        } else {
            int n0 = (t - nw) * MM_ROWS;
            gemm_nn(dinp + (size_t)n0 * C, dout + (size_t)n0 * OC, w, min_int(MM_ROWS, N - n0), C, OC, accumulate);
        }
    }
}

/* ============================ layers ================================== */

/* Columns per task where a weight's gradient sums over all rows: the
 * rows in order for each column, whatever the split. */
enum { NORM_COLS = 32 };

/* out[N, C] = x * rstd * w over rows; rstd[N] = 1/sqrt(mean(x^2) + eps) */
static void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float ss = 0;
        for (int i = 0; i < C; i++) ss += xr[i] * xr[i];
        float r = 1.0f / sqrtf(ss / C + eps);
        rstd[n] = r;
        for (int i = 0; i < C; i++) out[(size_t)n * C + i] = xr[i] * r * w[i];
    }
}

/* dx[N, C] += ...; dw[C] += ... from dout[N, C] */
static void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd, int N, int C)
{
#pragma omp parallel
    {
#pragma omp for schedule(static) nowait
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C, *g = dout + (size_t)n * C;
            float r = rstd[n], dot = 0;
            for (int i = 0; i < C; i++) dot += g[i] * w[i] * xr[i];
            float k = dot * r * r * r / C;
            for (int i = 0; i < C; i++) dx[(size_t)n * C + i] += g[i] * w[i] * r - xr[i] * k;
        }
        /* dw sums over every row in order: split by columns instead */
#pragma omp for schedule(static)
        for (int c0 = 0; c0 < C; c0 += NORM_COLS) {
            int nc = min_int(NORM_COLS, C - c0);
            float acc[NORM_COLS];   /* in registers: dw might alias the inputs */
            memcpy(acc, dw + c0, (size_t)nc * sizeof(float));
            for (int n = 0; n < N; n++) {
                const float *xr = x + (size_t)n * C + c0, *g = dout + (size_t)n * C + c0;
                for (int i = 0; i < nc; i++) acc[i] += g[i] * xr[i] * rstd[n];
            }
            memcpy(dw + c0, acc, (size_t)nc * sizeof(float));
        }
    }
}

/* The position of token n of a batch of rows of T: its place in its row, or
 * pos[n] where rows are packed with documents whose positions restart at 0. */
static inline int position(const int *pos, int n, int T) { return pos ? pos[n] : n % T; }

/* Per-head QK-norm then rotate-half RoPE: out[N, nh, hd] from x[N, nh, hd]
 * (the projection's output), with normed[N, nh, hd] (before the rotation)
 * and rstd[N, nh] kept for backward; cos/sin tables [T, hd/2]. */
static void qknorm_rope_forward(float *out, float *normed, float *rstd, const float *x, const float *w, const float *cosv,
                                const float *sinv, const int *pos, int N, int T, int nh, int hd, float eps)
{
    int half = hd / 2;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *cs = cosv + (size_t)position(pos, n, T) * half, *sn = sinv + (size_t)position(pos, n, T) * half;
        for (int h = 0; h < nh; h++) {
            size_t base = ((size_t)n * nh + h) * hd;
            const float *v = x + base;
            float *nv = normed + base, *o = out + base;
            float ss = 0;
            for (int i = 0; i < hd; i++) ss += v[i] * v[i];
            float r = 1.0f / sqrtf(ss / hd + eps);
            rstd[(size_t)n * nh + h] = r;
            for (int i = 0; i < hd; i++) nv[i] = v[i] * r * w[i];
            for (int i = 0; i < half; i++) {
                o[i] = nv[i] * cs[i] - nv[i + half] * sn[i];
                o[i + half] = nv[i + half] * cs[i] + nv[i] * sn[i];
            }
        }
    }
}

/* dx[N, nh, hd] (written) and dw[hd] (+=) from dout[N, nh, hd]. */
static void qknorm_rope_backward(float *dx, float *dw, const float *dout, const float *x, const float *rstd, const float *w,
                                 const float *cosv, const float *sinv, const int *pos, int N, int T, int nh, int hd)
{
    enum { MAX_HD = 1024 };
    int half = hd / 2;
    SG_ASSERT(hd <= MAX_HD);
#pragma omp parallel
    {
#pragma omp for schedule(static) nowait
        for (int n = 0; n < N; n++) {
            const float *cs = cosv + (size_t)position(pos, n, T) * half, *sn = sinv + (size_t)position(pos, n, T) * half;
            float dn[MAX_HD];
            for (int h = 0; h < nh; h++) {
                size_t base = ((size_t)n * nh + h) * hd;
                const float *g = dout + base, *v = x + base;
                for (int i = 0; i < half; i++) {   /* the rotation's transpose */
                    dn[i] = g[i] * cs[i] + g[i + half] * sn[i];
                    dn[i + half] = g[i + half] * cs[i] - g[i] * sn[i];
                }
                float r = rstd[(size_t)n * nh + h], dot = 0;
                for (int i = 0; i < hd; i++) dot += dn[i] * w[i] * v[i];
                float k = dot * r * r * r / hd;
                for (int i = 0; i < hd; i++) dx[base + i] = dn[i] * w[i] * r - v[i] * k;
            }
        }
        /* dw sums over every (token, head) in order: split by columns, the
         * two halves that the rotation pairs, dn recomputed */
#pragma omp for schedule(static)
        for (int c = 0; c < 2; c++) {
            float acc[MAX_HD / 2];   /* in registers: dw might alias the inputs */
            memcpy(acc, dw + c * half, (size_t)half * sizeof(float));
            for (int n = 0; n < N; n++) {
                const float *cs = cosv + (size_t)position(pos, n, T) * half, *sn = sinv + (size_t)position(pos, n, T) * half;
                for (int h = 0; h < nh; h++) {
                    size_t base = ((size_t)n * nh + h) * hd;
                    const float *g = dout + base, *v = x + base;
                    float r = rstd[(size_t)n * nh + h];
                    if (c == 0)
                        for (int i = 0; i < half; i++) acc[i] += (g[i] * cs[i] + g[i + half] * sn[i]) * v[i] * r;
                    else
                        for (int i = 0; i < half; i++) acc[i] += (g[i + half] * cs[i] - g[i] * sn[i]) * v[i + half] * r;
                }
            }
            memcpy(dw + c * half, acc, (size_t)half * sizeof(float));
        }
    }
}

#ifdef SIGMA_BLAS
/* Query rows per block of the causal attention: a block of rows [t0, t1)
 * needs the keys [0, t1) only, so the products skip the blocks above the
 * diagonal (a quarter of the work at T = 128, near half at long T). */
enum { ATT_ROWS = 64 };

/* Causal grouped-query attention. out[N, H*hd] from q[N, H*hd], k, v
 * [N, KV*hd]; att[B, H, T, T] keeps the probabilities for backward (the
 * columns of row t past the end of its block unwritten). With BLAS each
 * (row, head, block of query rows) is two products, scores Q K^T and then
 * P V, the masked part of the diagonal block computed and thrown away. */
static void attention_forward(float *out, float *att, const float *q, const float *k, const float *v, const int *pos, int B, int T,
                              int H, int KV, int hd)
{
    int group = H / KV, qd = H * hd, kvd = KV * hd;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            int kh = h / group;
            float *a = att + ((size_t)b * H + h) * T * T;
            const float *qb = q + (size_t)b * T * qd + h * hd, *kb = k + (size_t)b * T * kvd + kh * hd;
            const float *vb = v + (size_t)b * T * kvd + kh * hd;
            for (int t0 = 0; t0 < T; t0 += ATT_ROWS) {
                int t1 = min_int(T, t0 + ATT_ROWS);
                float *ab = a + (size_t)t0 * T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t1 - t0, t1, hd, scale, qb + (size_t)t0 * qd, qd, kb, kvd, 0.0f,
                            ab, T);
                for (int t = t0; t < t1; t++) {   /* keys [first, t]: this token's document's */
                    int first = t - position(pos, b * T + t, T);
                    float *r = a + (size_t)t * T, mx, inv = 1.0f / softmax_exp(r + first, r + first, t + 1 - first, &mx);
#pragma omp simd
                    for (int s2 = first; s2 <= t; s2++) r[s2] *= inv;
                    for (int s2 = 0; s2 < first; s2++) r[s2] = 0;
                    for (int s2 = t + 1; s2 < t1; s2++) r[s2] = 0;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t1 - t0, hd, t1, 1.0f, ab, T, vb, kvd, 0.0f,
                            out + ((size_t)b * T + t0) * qd + h * hd, qd);
            }
        }
    }
}
#else
/* Causal grouped-query attention. out[N, H*hd] from q[N, H*hd], k, v
 * [N, KV*hd]; att[B, H, T, T] keeps the probabilities for backward. */
static void attention_forward(float *out, float *att, const float *q, const float *k, const float *v, const int *pos, int B, int T,
                              int H, int KV, int hd)
{
    int group = H / KV, qd = H * hd, kvd = KV * hd;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            int kh = h / group;
            for (int t = 0; t < T; t++) {
                const float *qt = q + ((size_t)b * T + t) * qd + h * hd;
                float *a = att + (((size_t)b * H + h) * T + t) * T;
                float mx = -INFINITY;
                int first = t - position(pos, b * T + t, T);   /* keys [first, t]: this token's document's */
                for (int s = 0; s < first; s++) a[s] = 0;
                for (int s = first; s <= t; s++) {
                    const float *ks = k + ((size_t)b * T + s) * kvd + kh * hd;
                    float dot = 0;
#pragma omp simd reduction(+ : dot)
                    for (int i = 0; i < hd; i++) dot += qt[i] * ks[i];
                    a[s] = dot * scale;
                    mx = a[s] > mx ? a[s] : mx;
                }
                float sum = 0;
                for (int s = first; s <= t; s++) sum += a[s] = expf(a[s] - mx);
                for (int s = first; s <= t; s++) a[s] /= sum;
                for (int s = t + 1; s < T; s++) a[s] = 0;
                float *o = out + ((size_t)b * T + t) * qd + h * hd;
                for (int i = 0; i < hd; i++) o[i] = 0;
                for (int s = 0; s <= t; s++) {
                    const float *vs = v + ((size_t)b * T + s) * kvd + kh * hd;
                    for (int i = 0; i < hd; i++) o[i] += a[s] * vs[i];
                }
            }
        }
    }
}
#endif

#ifdef SIGMA_BLAS
/* dq[N, H*hd], dk, dv[N, KV*hd] (all written) from
 * dout[N, H*hd]; scratch[B, T, T]. By the blocks of query rows of the
 * forward. Parallel over batch rows only: the heads of a group share dk
 * and dv. */
static void attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *att, const float *q,
                               const float *k, const float *v, int B, int T, int H, int KV, int hd)
{
    int group = H / KV, qd = H * hd, kvd = KV * hd;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *ds = scratch + (size_t)b * T * T;   /* dP, then dS in place */
        memset(dk + (size_t)b * T * kvd, 0, (size_t)T * kvd * sizeof(float));   /* the heads add up */
        memset(dv + (size_t)b * T * kvd, 0, (size_t)T * kvd * sizeof(float));
        for (int h = 0; h < H; h++) {
            int kh = h / group;
            const float *a = att + ((size_t)b * H + h) * T * T;
            const float *go = dout + (size_t)b * T * qd + h * hd, *qb = q + (size_t)b * T * qd + h * hd;
            const float *kb = k + (size_t)b * T * kvd + kh * hd, *vb = v + (size_t)b * T * kvd + kh * hd;
            float *dqb = dq + (size_t)b * T * qd + h * hd, *dkb = dk + (size_t)b * T * kvd + kh * hd;
            float *dvb = dv + (size_t)b * T * kvd + kh * hd;
            for (int t0 = 0; t0 < T; t0 += ATT_ROWS) {
                int t1 = min_int(T, t0 + ATT_ROWS), m = t1 - t0;
                const float *ab = a + (size_t)t0 * T, *gob = go + (size_t)t0 * qd;
                float *dsb = ds + (size_t)t0 * T;
                /* dV += P^T dO;  dP = dO V^T;  dS = P (dP - rowsum(P dP)) scale */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, t1, hd, m, 1.0f, ab, T, gob, qd, 1.0f, dvb, kvd);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, t1, hd, 1.0f, gob, qd, vb, kvd, 0.0f, dsb, T);
                for (int t = t0; t < t1; t++) {
                    const float *pr = a + (size_t)t * T;
                    float *r = ds + (size_t)t * T, sum = 0;
#pragma omp simd reduction(+ : sum)
                    for (int s2 = 0; s2 <= t; s2++) sum += pr[s2] * r[s2];
#pragma omp simd
                    for (int s2 = 0; s2 <= t; s2++) r[s2] = pr[s2] * (r[s2] - sum) * scale;
                    for (int s2 = t + 1; s2 < t1; s2++) r[s2] = 0;
                }
                /* dQ = dS K;  dK += dS^T Q */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, t1, 1.0f, dsb, T, kb, kvd, 0.0f, dqb + (size_t)t0 * qd, qd);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, t1, hd, m, 1.0f, dsb, T, qb + (size_t)t0 * qd, qd, 1.0f, dkb, kvd);
            }
        }
    }
}
#else
/* dq[N, H*hd], dk, dv[N, KV*hd] (all written) from
 * dout[N, H*hd]; dprow[B, T] is scratch. Parallel over batch rows only:
 * the heads of a group share dk and dv. */
static void attention_backward(float *dq, float *dk, float *dv, float *dprow, const float *dout, const float *att, const float *q,
                               const float *k, const float *v, int B, int T, int H, int KV, int hd)
{
    int group = H / KV, qd = H * hd, kvd = KV * hd;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *dp = dprow + (size_t)b * T;
        memset(dk + (size_t)b * T * kvd, 0, (size_t)T * kvd * sizeof(float));   /* the heads add up */
        memset(dv + (size_t)b * T * kvd, 0, (size_t)T * kvd * sizeof(float));
        for (int h = 0; h < H; h++) {
            int kh = h / group;
            for (int t = 0; t < T; t++) {
                const float *a = att + (((size_t)b * H + h) * T + t) * T;
                const float *go = dout + ((size_t)b * T + t) * qd + h * hd;
                const float *qt = q + ((size_t)b * T + t) * qd + h * hd;
                float *dqt = dq + ((size_t)b * T + t) * qd + h * hd;
                /* dP[s] = go . v_s;  dS[s] = P[s] (dP[s] - sum_j P[j] dP[j]) */
                float sum = 0;
                for (int s = 0; s <= t; s++) {
                    const float *vs = v + ((size_t)b * T + s) * kvd + kh * hd;
                    float x = 0;
#pragma omp simd reduction(+ : x)
                    for (int i = 0; i < hd; i++) x += go[i] * vs[i];
                    dp[s] = x;
                    sum += a[s] * x;
                }
                for (int i = 0; i < hd; i++) dqt[i] = 0;
                for (int s = 0; s <= t; s++) {
                    const float *ks = k + ((size_t)b * T + s) * kvd + kh * hd;
                    float *dks = dk + ((size_t)b * T + s) * kvd + kh * hd;
                    float *dvs = dv + ((size_t)b * T + s) * kvd + kh * hd;
                    float ds = a[s] * (dp[s] - sum) * scale, as = a[s];
                    for (int i = 0; i < hd; i++) {
                        dqt[i] += ds * ks[i];
                        dks[i] += ds * qt[i];
                        dvs[i] += as * go[i];
                    }
                }
            }
        }
    }
}
#endif

/* ============================ activations ============================= */

struct Activations {
    int kcap[MODEL_MAX_LAYERS];    /* top-k the buffers hold, per layer */
    int kused[MODEL_MAX_LAYERS];   /* top-k of the last forward */
    float *cosv, *sinv;            /* [T, hd/2] RoPE tables */
    /* per layer, N = B*T tokens, A = N*k assignments (token, slot) */
    float *x[MODEL_MAX_LAYERS + 1];/* [N, d] residual stream entering layer l; x[L] leaves the last */
    float *ln1[MODEL_MAX_LAYERS], *r1[MODEL_MAX_LAYERS];   /* [N, d], [N] */
    float *q[MODEL_MAX_LAYERS], *k[MODEL_MAX_LAYERS], *v[MODEL_MAX_LAYERS];   /* [N, H*hd], [N, KV*hd] x2 */
    float *qn[MODEL_MAX_LAYERS], *kn[MODEL_MAX_LAYERS];    /* normed, before the rotation */
    float *qr[MODEL_MAX_LAYERS], *kr[MODEL_MAX_LAYERS];    /* rotated */
    float *qrs[MODEL_MAX_LAYERS], *krs[MODEL_MAX_LAYERS];  /* [N, H], [N, KV] */
    float *att[MODEL_MAX_LAYERS];                          /* [B, H, T, T] */
    float *ao[MODEL_MAX_LAYERS];                           /* [N, H*hd] */
    float *h[MODEL_MAX_LAYERS];                            /* [N, d] after the attention residual */
    float *ln2[MODEL_MAX_LAYERS], *r2[MODEL_MAX_LAYERS];   /* [N, d], [N] */
    float *z[MODEL_MAX_LAYERS], *p[MODEL_MAX_LAYERS];      /* [N, E] router logits, probabilities */
    float *lse[MODEL_MAX_LAYERS];                          /* [N] log-sum-exp of z */
    int *sel[MODEL_MAX_LAYERS];                            /* [A] expert of each assignment n*k+s */
    int *order[MODEL_MAX_LAYERS];                          /* [A] assignments sorted by expert (stable) */
    int *row[MODEL_MAX_LAYERS];                            /* [A] inverse: the sorted row of an assignment */
    int *offs[MODEL_MAX_LAYERS];                           /* [E+1] first row of each expert */
    float *xe[MODEL_MAX_LAYERS], *ye[MODEL_MAX_LAYERS];    /* [A, d] expert inputs, outputs (sorted rows) */
    /* the rows this process's experts compute, R of them, by expert (Eh
     * held experts); without expert parallelism the sorted rows themselves
     * (xr = xe, roffs = offs, R = A); with it, the rows the group's ranks
     * sent, by expert, then by rank, then in the sender's order */
    float *xr[MODEL_MAX_LAYERS];                           /* [R, d] */
    int *roffs[MODEL_MAX_LAYERS];                          /* [Eh+1] first row of each held expert */
    int *rcnt[MODEL_MAX_LAYERS];                           /* [S*Eh] rows from rank j for held expert i at j*Eh+i */
    float *gu[MODEL_MAX_LAYERS];                           /* [R, 2de] gate and up projections, side by side */
    float *act[MODEL_MAX_LAYERS];                          /* [R, de] silu(g) * u */
    float *lnf, *rf;                                       /* [N, d], [N] */
    float *logits;                                         /* [N, V] */
    float *lsef, *rsum;                                    /* [N] log-sum-exp, 1 / sum of the exponentials */
    /* gradients of activations, reused layer by layer */
    float *dx, *du, *dln;                                  /* [N, d] */
    float *dq, *dqr, *dao;                                 /* [N, H*hd] */
    float *dk, *dkr, *dv;                                  /* [N, KV*hd] */
    float *dp, *dz;                                        /* [N, E] */
    float *dprow;                                          /* [B, T, T] attention scratch */
    float *dye, *dxe;                                      /* [Amax, d] */
    float *dyr, *dxr;                                      /* [Rmax, d] (dye, dxe without expert parallelism) */
    float *dact;                                           /* [Rmax, de] */
    float *dgu;                                            /* [Rmax, 2de] */
    /* expert parallelism's scratch: rows in the exchange's order, the
     * experts' outputs by expert, block offsets and counts */
    float *xfer, *yr;                                      /* [Rmax, d] (yr: ye without it) */
    int *scnt;                                             /* [S*Eh] rows to rank j for its expert i */
    int *srows, *rrows;                                    /* [S] rows to, from each rank */
    int *at_rank, *at_expert;                              /* [S*Eh] block (j, i) in either order */
    int S, Eh;                                             /* ranks of the group (1 without), experts held */
    size_t rmax;                                           /* rows the experts' buffers hold */
    float *dlogits;                                        /* [N, V] the exponentials from the forward, then dlogits */
    /* the last forward */
    const uint32_t *inputs, *targets;
    const float *mask;
    const int *pos;                                        /* [N] or NULL: see position() */
    int B, T;
    BalanceOptions bo;
    float fhat_cache;
    int have_forward;
};

/* ints take a float's room: both are 4 bytes. With expert parallelism
 * (S > 1) a process may compute the rows of every rank of its group: Rmax =
 * S x Amax rows, the bound when all of them choose its experts. */
static size_t activation_floats(const Config *c, const int *kcap, int B, int T, int S, int Eh, int carve_it, Activations *a, float *base)
{
    size_t N = (size_t)B * T, d = (size_t)c->d_model, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t E = (size_t)c->n_experts, de = (size_t)c->d_expert, V = (size_t)c->vocab_size, half = (size_t)c->head_dim / 2;
    size_t off = 0, amax = 0, blocks = (size_t)S * Eh;
#define CARVE(field, n) do { if (carve_it) field = base + off; off += (n); } while (0)
#define CARVEI(field, n) do { if (carve_it) field = (int *)(void *)(base + off); off += (n); } while (0)
    CARVE(a->cosv, (size_t)T * half);
    CARVE(a->sinv, (size_t)T * half);
    for (int l = 0; l < c->n_layers; l++) {
        size_t A = N * (size_t)kcap[l], R = A * (size_t)S;
        amax = A > amax ? A : amax;
        CARVE(a->x[l], N * d);
        CARVE(a->ln1[l], N * d); CARVE(a->r1[l], N);
        CARVE(a->q[l], N * qd); CARVE(a->k[l], N * kvd); CARVE(a->v[l], N * kvd);
        CARVE(a->qn[l], N * qd); CARVE(a->kn[l], N * kvd);
        CARVE(a->qr[l], N * qd); CARVE(a->kr[l], N * kvd);
        CARVE(a->qrs[l], N * (size_t)c->n_heads); CARVE(a->krs[l], N * (size_t)c->n_kv_heads);
        CARVE(a->att[l], (size_t)B * c->n_heads * T * T);
        CARVE(a->ao[l], N * qd);
        CARVE(a->h[l], N * d);
        CARVE(a->ln2[l], N * d); CARVE(a->r2[l], N);
        CARVE(a->z[l], N * E); CARVE(a->p[l], N * E); CARVE(a->lse[l], N);
        CARVEI(a->sel[l], A); CARVEI(a->order[l], A); CARVEI(a->row[l], A); CARVEI(a->offs[l], E + 1);
        CARVE(a->xe[l], A * d); CARVE(a->ye[l], A * d);
        if (S > 1) {
            CARVE(a->xr[l], R * d); CARVEI(a->roffs[l], (size_t)Eh + 1); CARVEI(a->rcnt[l], blocks);
        } else if (carve_it) {
            a->xr[l] = a->xe[l];
            a->roffs[l] = a->offs[l];
        }
        CARVE(a->gu[l], R * 2 * de); CARVE(a->act[l], R * de);
    }
    size_t rmax = amax * (size_t)S;
    CARVE(a->x[c->n_layers], N * d);
    CARVE(a->lnf, N * d); CARVE(a->rf, N);
    CARVE(a->logits, N * V); CARVE(a->lsef, N); CARVE(a->rsum, N);
    CARVE(a->dx, N * d); CARVE(a->du, N * d); CARVE(a->dln, N * d);
    CARVE(a->dq, N * qd); CARVE(a->dqr, N * qd); CARVE(a->dao, N * qd);
    CARVE(a->dk, N * kvd); CARVE(a->dkr, N * kvd); CARVE(a->dv, N * kvd);
    CARVE(a->dp, N * E); CARVE(a->dz, N * E); CARVE(a->dprow, N * (size_t)T);
    CARVE(a->dye, amax * d); CARVE(a->dxe, amax * d);
    if (S > 1) {
        CARVE(a->dyr, rmax * d); CARVE(a->dxr, rmax * d);
        CARVE(a->xfer, rmax * d); CARVE(a->yr, rmax * d);
        CARVEI(a->scnt, blocks); CARVEI(a->srows, (size_t)S); CARVEI(a->rrows, (size_t)S);
        CARVEI(a->at_rank, blocks); CARVEI(a->at_expert, blocks);
    } else if (carve_it) {
        a->dyr = a->dye;
        a->dxr = a->dxe;
    }
    CARVE(a->dact, rmax * de); CARVE(a->dgu, rmax * 2 * de);
    CARVE(a->dlogits, N * V);
    if (carve_it) {
        a->S = S;
        a->Eh = Eh;
        a->rmax = rmax;
    }
#undef CARVE
#undef CARVEI
    return off;
}

/* ============================ model =================================== */

void rope_tables(float *cosv, float *sinv, const Config *c, int T)
{
    int half = c->head_dim / 2;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double ang = t * pow((double)c->rope_theta, -2.0 * i / c->head_dim);
            cosv[(size_t)t * half + i] = (float)cos(ang);
            sinv[(size_t)t * half + i] = (float)sin(ang);
        }
}

void model_init(Model *m, const Config *c, int B, int T) { model_init_ep(m, c, B, T, NULL); }

void model_init_ep(Model *m, const Config *c, int B, int T, const ExpertExchange *ep)
{
#ifdef SIGMA_BLAS
    openblas_set_num_threads(1);   /* OpenMP spreads the products, see matmul_forward */
#endif
    memset(m, 0, sizeof *m);
    config_validate(c, "model");
    int S = ep ? ep->size : 1;
    if (S < 1 || c->n_experts % S || (ep && (ep->rank < 0 || ep->rank >= S)))
        die("expert parallelism over %d processes: it must divide the %d experts of a layer", S, c->n_experts);
    m->cfg = *c;
    m->B = B;
    m->T = T;
    m->ep = S > 1 ? ep : NULL;
    m->experts = (ExpertRange){.first = ep ? ep->rank * (c->n_experts / S) : 0, .count = c->n_experts / S};
    ParamLayout pl;
    param_layout_slice(&pl, c, m->experts);
    m->n_params = pl.total;
    m->n_tensors = param_tensors_slice(NULL, c, m->experts);
    m->tensors = xcalloc((size_t)m->n_tensors, sizeof(ParamTensor));
    param_tensors_slice(m->tensors, c, m->experts);
    m->params = xcalloc(m->n_params, sizeof(float));
    m->grads = xcalloc(m->n_params, sizeof(float));
    size_t le = (size_t)c->n_layers * c->n_experts;
    m->expert_bias = xcalloc(le, sizeof(float));
    m->counts = xcalloc(le, sizeof(float));
    Activations *a = xcalloc(1, sizeof *a);
    for (int l = 0; l < c->n_layers; l++) a->kcap[l] = c->top_k[l];
    size_t n = activation_floats(c, a->kcap, B, T, S, m->experts.count, 0, a, NULL);
    float *buf = xcalloc(n, sizeof(float));
    activation_floats(c, a->kcap, B, T, S, m->experts.count, 1, a, buf);
    rope_tables(a->cosv, a->sinv, c, T);
    m->acts = a;
}

void model_free(Model *m)
{
    if (m->acts) free(m->acts->cosv);   /* the start of the one activation buffer */
    free(m->acts);
    free(m->params);
    free(m->grads);
    free(m->tensors);
    free(m->expert_bias);
    free(m->counts);
    memset(m, 0, sizeof *m);
}

static double normal(uint64_t *s)
{
    double u1 = ((double)(splitmix64(s) >> 11) + 0.5) * 0x1.0p-53, u2 = (double)(splitmix64(s) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Each tensor from its own stream, seeded by the seed and its name: the
 * same weights whatever the buffer's order and whichever experts a process
 * holds. */
void model_init_params(Model *m, uint64_t seed, float std)
{
    float out_std = std / sqrtf(2.0f * m->cfg.n_layers);
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        uint64_t s = hash64(t->name, strlen(t->name), seed ^ 0x5167d5a3c1e2b4f7ull);
        float *w = m->params + t->offset;
        if (t->ndim == 1) {   /* norm scales */
            for (size_t j = 0; j < t->numel; j++) w[j] = 1.0f;
            continue;
        }
        float sd = strstr(t->name, "o_proj") || strstr(t->name, "down_proj") ? out_std : std;
        for (size_t j = 0; j < t->numel; j++) w[j] = (float)(sd * normal(&s));
    }
    memset(m->expert_bias, 0, (size_t)m->cfg.n_layers * m->cfg.n_experts * sizeof(float));
}

const ParamTensor *model_tensor(const Model *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

void model_zero_grads(Model *m) { memset(m->grads, 0, m->n_params * sizeof(float)); }
const float *model_logits(const Model *m) { return m->acts->logits; }

/* ============================ MoE ===================================== */

/* Router: z[N, E] = u . Wr^T, p = softmax(z), lse[N]; then for each token
 * the k experts of largest p (+ bias when on; ties: lower index), or the
 * forced ones, a stable counting sort of the N*k assignments by expert, and
 * counts[E]. */
static void route_forward(Activations *a, int l, float *counts, const float *u, const float *wr, const float *bias,
                          const int *forced, int N, int d, int E, int k)
{
    float *z = a->z[l], *p = a->p[l];
    int *sel = a->sel[l], *order = a->order[l], *row = a->row[l], *offs = a->offs[l];
    matmul_forward(z, u, wr, N, d, E, 0);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *zn = z + (size_t)n * E, *pn = p + (size_t)n * E;
        float mx = zn[0];
        for (int e = 1; e < E; e++) mx = zn[e] > mx ? zn[e] : mx;
        double sum = 0;
        for (int e = 0; e < E; e++) sum += pn[e] = expf(zn[e] - mx);
        for (int e = 0; e < E; e++) pn[e] = (float)(pn[e] / sum);
        a->lse[l][n] = mx + (float)log(sum);
        for (int s = 0; s < k && forced; s++) sel[(size_t)n * k + s] = forced[(size_t)n * k + s];
        for (int s = 0; s < k && !forced; s++) {   /* k passes of argmax: k is small */
            int best = -1;
            float bv = 0;
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int j = 0; j < s; j++) taken |= sel[(size_t)n * k + j] == e;
                float v = pn[e] + (bias ? bias[e] : 0.0f);
                if (!taken && (best < 0 || v > bv)) { best = e; bv = v; }
            }
            sel[(size_t)n * k + s] = best;
        }
    }
    route_sort(order, row, offs, counts, sel, N * k, E);   /* stable: assignments in order (route.h) */
}

/* Rows of an expert per task: fixed, so that neither the bits nor the
 * balance depend on the number of threads. */
enum { EXPERT_ROWS = 64 };

/* Experts over their groups of rows: for each of the n experts of w,
 * rows offs[e] .. offs[e+1] of x give y = down(silu(gate . x) * up . x),
 * keeping gu and act for backward. gate [de, d] and up [de, d] lie one
 * after the other, so they are one product of [2de, d]. The tasks are
 * blocks of an expert's rows, dealt out dynamically (experts' loads
 * differ), each with serial kernels: one parallel region in all. */
static void experts_ffn_forward(float *y, float *gu, float *act, const float *x, const float *w, const int *offs, int n_experts,
                                int d, int de)
{
#pragma omp parallel
    for (int e = 0; e < n_experts; e++) {
        const float *wgu = w + (size_t)e * 3 * de * d, *wd = wgu + (size_t)2 * de * d;
#pragma omp for schedule(dynamic) nowait
        for (int r0 = offs[e]; r0 < offs[e + 1]; r0 += EXPERT_ROWS) {
            int n = offs[e + 1] - r0 < EXPERT_ROWS ? offs[e + 1] - r0 : EXPERT_ROWS;
            float *gr = gu + (size_t)r0 * 2 * de, *ar = act + (size_t)r0 * de;
            gemm_nt(gr, x + (size_t)r0 * d, wgu, n, d, 2 * de, 0);
            swiglu_forward(ar, gr, n, de);
            gemm_nt(y + (size_t)r0 * d, ar, wd, n, de, d, 0);
        }
    }
}

/* From dy over the same rows: dx (written) and the n experts' weight
 * gradients dw (+=); dact, dgu scratch. First by blocks of rows, dact, dgu
 * and dx; then, after the barrier, the weight gradients, two tasks an
 * expert, each over all the expert's rows in order (blocks of the
 * gradients' rows measured no faster). An expert that received no row gets
 * no gradient. */
static void experts_ffn_backward(float *dx, float *dw, float *dact, float *dgu, const float *dy, const float *x, const float *gu,
                                 const float *act, const float *w, const int *offs, int n_experts, int d, int de)
{
#pragma omp parallel
    {
        for (int e = 0; e < n_experts; e++) {
            const float *wgu = w + (size_t)e * 3 * de * d, *wd = wgu + (size_t)2 * de * d;
#pragma omp for schedule(dynamic) nowait
            for (int r0 = offs[e]; r0 < offs[e + 1]; r0 += EXPERT_ROWS) {
                int n = offs[e + 1] - r0 < EXPERT_ROWS ? offs[e + 1] - r0 : EXPERT_ROWS;
                float *da = dact + (size_t)r0 * de, *dg = dgu + (size_t)r0 * 2 * de;
                gemm_nn(da, dy + (size_t)r0 * d, wd, n, de, d, 0);
                swiglu_backward(dg, da, gu + (size_t)r0 * 2 * de, n, de);
                gemm_nn(dx + (size_t)r0 * d, dg, wgu, n, d, 2 * de, 0);
            }
        }
#pragma omp barrier
#pragma omp for schedule(dynamic)
        for (int t = 0; t < 2 * n_experts; t++) {   /* an expert's dwgu [2de, d], then its dwd [d, de] */
            int e = t / 2, r0 = offs[e], n = offs[e + 1] - offs[e];
            float *dwgu = dw + (size_t)e * 3 * de * d, *dwd = dwgu + (size_t)2 * de * d;
            if (n > 0 && t % 2 == 0)
                gemm_tn(dwgu, dgu + (size_t)r0 * 2 * de, 2 * de, x + (size_t)r0 * d, n, d, 2 * de);
            else if (n > 0)
                gemm_tn(dwd, dy + (size_t)r0 * d, d, act + (size_t)r0 * de, n, de, d);
        }
    }
}

/* ---- expert parallelism: the rows to the experts' ranks and back ----------
 * The sorted rows are in expert order, and rank j holds experts j*Eh ..
 * (j+1)*Eh - 1, so the rows to rank j are one block and the counts to send
 * are the experts' counts. A rank receives from each rank in rank order
 * (the exchange's order) and computes by expert: the rows of held expert i
 * from rank 0, then from rank 1, ..., each in its sender's order, so the
 * result depends on neither timing nor the number of threads. */

/* Layer l's exchange (route.h), from its counts. */
static void ep_plan(Activations *a, int l)
{
    ExchangePlan p = {.S = a->S, .Eh = a->Eh, .srows = a->srows, .rrows = a->rrows, .roffs = a->roffs[l], .at_rank = a->at_rank,
                      .at_expert = a->at_expert};
    route_exchange_plan(&p, a->offs[l], a->rcnt[l]);
}

/* Layer l's received rows of width d between rank order and expert order. */
static void regroup_rows(float *dst, const float *src, const Activations *a, int l, int to_experts, int d)
{
    const int *from = to_experts ? a->at_rank : a->at_expert, *to = to_experts ? a->at_expert : a->at_rank, *cnt = a->rcnt[l];
#pragma omp parallel for schedule(dynamic)
    for (int b = 0; b < a->S * a->Eh; b++)
        memcpy(dst + (size_t)to[b] * d, src + (size_t)from[b] * d, (size_t)cnt[b] * d * sizeof(float));
}

/* Rows to the ranks that hold their experts: layer l's sorted rows x (the
 * experts' inputs forward, the gradients of their outputs backward) into
 * xr by held expert. Forward first exchanges the counts. */
static void ep_dispatch(const ExpertExchange *ep, Activations *a, int l, const float *x, float *xr, int d, int forward)
{
    if (forward) {
        for (int b = 0; b < a->S * a->Eh; b++) a->scnt[b] = a->offs[l][b + 1] - a->offs[l][b];
        ep->counts(ep->ctx, a->scnt, a->rcnt[l], a->Eh);
    }
    ep_plan(a, l);
    if ((size_t)a->roffs[l][a->Eh] > a->rmax)
        BUG("layer %d: %d rows for this rank's experts, the buffers hold %zu", l, a->roffs[l][a->Eh], a->rmax);
    ep->rows(ep->ctx, x, a->srows, a->xfer, a->rrows, (size_t)d * sizeof(float));
    regroup_rows(xr, a->xfer, a, l, 1, d);
}

/* And back: results by held expert y into the senders' sorted rows out
 * (the experts' outputs forward, the gradients of their inputs backward). */
static void ep_return(const ExpertExchange *ep, Activations *a, int l, float *out, const float *y, int d)
{
    ep_plan(a, l);
    regroup_rows(a->xfer, y, a, l, 0, d);
    ep->rows(ep->ctx, a->xfer, a->rrows, out, a->srows, (size_t)d * sizeof(float));
}

/* The experts of layer l over its N*k assignments: gathered into the
 * sorted rows xe, to their ranks and back under expert parallelism, the
 * outputs in ye (sorted rows). */
static void experts_forward(Activations *a, int l, const ExpertExchange *ep, const float *u, const float *w, int k, int d, int de)
{
    const int *order = a->order[l];
    float *xe = a->xe[l];
    int A = a->offs[l][a->S * a->Eh];
#pragma omp parallel for schedule(static)
    for (int r = 0; r < A; r++) memcpy(xe + (size_t)r * d, u + (size_t)(order[r] / k) * d, (size_t)d * sizeof(float));
    if (!ep) {
        experts_ffn_forward(a->ye[l], a->gu[l], a->act[l], xe, w, a->offs[l], a->Eh, d, de);
        return;
    }
    ep_dispatch(ep, a, l, xe, a->xr[l], d, 1);
    experts_ffn_forward(a->yr, a->gu[l], a->act[l], a->xr[l], w, a->roffs[l], a->Eh, d, de);
    ep_return(ep, a, l, a->ye[l], a->yr, d);
}

/* out[N, d] = h + sum over a token's k choices of p * ye */
static void combine_forward(float *out, const float *h, const Activations *a, int l, int N, int d, int E, int k)
{
    const float *p = a->p[l], *ye = a->ye[l];
    const int *sel = a->sel[l], *row = a->row[l];
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * d;
        memcpy(o, h + (size_t)n * d, (size_t)d * sizeof(float));
        for (int s = 0; s < k; s++) {
            int as = n * k + s;
            float pe = p[(size_t)n * E + sel[as]];
            const float *y = ye + (size_t)row[as] * d;
            for (int i = 0; i < d; i++) o[i] += pe * y[i];
        }
    }
}

/* The top-1 LBL's statistics of layer l: fhat[E] = mean over tokens of
 * softmax(z / tau), *pbar = mean probability of each token's first choice. */
static void top1_stats(double *fhat, double *pbar, const Activations *a, int l, double tau, int N, int E, int k)
{
    *pbar = 0;
    for (int e = 0; e < E; e++) fhat[e] = 0;
    for (int n = 0; n < N; n++) {
        const float *zn = a->z[l] + (size_t)n * E;
        double mx = zn[0], s = 0;
        for (int j = 1; j < E; j++) mx = zn[j] > mx ? zn[j] : mx;
        for (int j = 0; j < E; j++) s += exp((zn[j] - mx) / tau);
        for (int j = 0; j < E; j++) fhat[j] += exp((zn[j] - mx) / tau) / s / N;
        *pbar += a->p[l][(size_t)n * E + a->sel[l][(size_t)n * k]] / (double)N;
    }
}

/* The balance terms of one layer (loss values), see model.h. */
static void balance_forward(Losses *out, const Activations *a, int l, const float *counts, const BalanceOptions *bo, int N, int E, int k)
{
    const float *p = a->p[l];
    if (balance_is_lbl(bo->kind)) {
        double sum_p[MODEL_MAX_EXPERTS];
        for (int e = 0; e < E; e++) {
            sum_p[e] = 0;
            for (int n = 0; n < N; n++) sum_p[e] += p[(size_t)n * E + e];
        }
        out->balance += (float)lbl_loss(bo, counts, sum_p, l, N, k, E);
    } else if (bo->kind == BALANCE_TOP1_LBL) {
        double fh[MODEL_MAX_EXPERTS], pbar;
        top1_stats(fh, &pbar, a, l, bo->tau, N, E, k);
        out->balance += (float)top1_lbl_loss(bo, fh, pbar, E);
    }
    if (bo->z_coef > 0) {
        double zs = 0;
        for (int n = 0; n < N; n++) zs += (double)a->lse[l][n] * a->lse[l][n];
        out->z += (float)z_loss(bo, zs, N);
    }
}

/* ============================ loss ==================================== */

/* The head's tasks: blocks of rows of the logits (the cross-entropy reads
 * a block's logits while they are still in cache) and, in backward, of
 * rows of its gradient. Fixed, so that the bits do not depend on the
 * number of threads; 64 to 256 rows measured the same. */
enum { HEAD_ROWS = 128, HEAD_COLS = 512 };

/* Scoring wants the logits of a few rows (a continuation's): those whose
 * mask is non-zero, gathered, multiplied, scattered back; the other rows'
 * logits are left as they were. The head is most of a small model's work. */
static void logits_of_rows(Activations *a, const float *w, const float *mask, int N, int d, int V)
{
    float *x = a->du, *lg = a->dlogits;   /* [N, d], [N, V] scratch: a forward without targets has no backward */
    int n_rows = 0;
    for (int n = 0; n < N; n++)
        if (mask[n] != 0) memcpy(x + (size_t)n_rows++ * d, a->lnf + (size_t)n * d, (size_t)d * sizeof(float));
#pragma omp parallel for schedule(static)
    for (int n0 = 0; n0 < n_rows; n0 += HEAD_ROWS)
        gemm_nt(lg + (size_t)n0 * V, x + (size_t)n0 * d, w, n_rows - n0 < HEAD_ROWS ? n_rows - n0 : HEAD_ROWS, d, V, 0);
    for (int n = 0, r = 0; n < N; n++)
        if (mask[n] != 0) memcpy(a->logits + (size_t)n * V, lg + (size_t)r++ * V, (size_t)V * sizeof(float));
}

/* logits[N, V] = x[N, d] . w[V, d]^T and, with targets, the masked mean
 * cross-entropy, returned. For backward it keeps ex[N, V] = exp(logits -
 * row max) and rsum[N] = 1 / their sum (backward scales the row anyway, so
 * normalising here would be one more pass over N*V), and lse[N]; rowloss[N]
 * is scratch, summed in order afterwards so the result does not depend on
 * the number of threads. */
static float head_forward(float *logits, float *ex, float *rsum, float *lse, float *rowloss, const float *x, const float *w,
                          const uint32_t *targets, const float *mask, int N, int d, int V)
{
#pragma omp parallel for schedule(static)
    for (int n0 = 0; n0 < N; n0 += HEAD_ROWS) {
        int nb = N - n0 < HEAD_ROWS ? N - n0 : HEAD_ROWS;
        gemm_nt(logits + (size_t)n0 * V, x + (size_t)n0 * d, w, nb, d, V, 0);
        for (int n = n0; targets && n < n0 + nb; n++) {
            const float *lg = logits + (size_t)n * V;
            float mx, s = softmax_exp(ex + (size_t)n * V, lg, V, &mx);
            rsum[n] = 1.0f / s;
            lse[n] = mx + logf(s);
            rowloss[n] = (mask ? mask[n] : 1.0f) * (lse[n] - lg[targets[n]]);
        }
    }
    if (!targets) return 0;
    double loss = 0, msum = 0;
    for (int n = 0; n < N; n++) {
        loss += rowloss[n];
        msum += mask ? mask[n] : 1.0;
    }
    return msum > 0 ? (float)(loss / msum) : 0.0f;
}

/* dx[N, d] (written) and dw[V, d] (+=) from head_forward's ex[N, V],
 * turned in place into dlogits = (softmax - onehot) * mask / sum(mask) *
 * scale. First by blocks of rows, each block's dlogits then its dx while
 * in cache; after the barrier dw by blocks of its rows, each over all N
 * rows in order. */
static void head_backward(float *dx, float *dw, float *ex, const float *rsum, const float *x, const float *w,
                          const uint32_t *targets, const float *mask, float scale, int N, int d, int V)
{
    double msum = 0;
    for (int n = 0; n < N; n++) msum += mask ? mask[n] : 1.0;
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int n0 = 0; n0 < N; n0 += HEAD_ROWS) {
            int nb = N - n0 < HEAD_ROWS ? N - n0 : HEAD_ROWS;
            for (int n = n0; n < n0 + nb; n++) {
                float wt = msum > 0 ? (float)((mask ? mask[n] : 1.0) / msum * scale) : 0.0f, f = wt * rsum[n];
                float *dl = ex + (size_t)n * V;
#pragma omp simd
                for (int v = 0; v < V; v++) dl[v] *= f;
                dl[targets[n]] -= wt;
            }
            gemm_nn(dx + (size_t)n0 * d, ex + (size_t)n0 * V, w, nb, d, V, 0);
        }
#pragma omp for schedule(static)
        for (int v0 = 0; v0 < V; v0 += HEAD_COLS)
            gemm_tn(dw + (size_t)v0 * d, ex + v0, V, x, N, d, V - v0 < HEAD_COLS ? V - v0 : HEAD_COLS);
    }
}

/* ============================ forward ================================= */

Losses model_forward(Model *m, const uint32_t *inputs, const uint32_t *targets, const float *mask, const int *pos, int B, int T,
                     const BalanceOptions *bo)
{
    const Config *c = &m->cfg;
    Activations *a = m->acts;
    const int N = B * T, d = c->d_model, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    const int qd = H * hd, kvd = KV * hd, E = c->n_experts, de = c->d_expert, V = c->vocab_size;
    if (N > m->B * m->T || T > m->T) BUG("forward of %d x %d tokens, the buffers hold %d x %d", B, T, m->B, m->T);
    Params P = param_pointers(m, m->params);
    static const BalanceOptions none = {.kind = BALANCE_NONE};
    if (!bo) bo = &none;
    if (pos) model_check_positions(pos, B, T);
    a->inputs = inputs;
    a->targets = targets;
    a->pos = pos;
    a->mask = mask;
    a->B = B;
    a->T = T;
    a->bo = *bo;
    Losses out = {0};

    for (int n = 0; n < N; n++) {
        if (inputs[n] >= (uint32_t)V) die("token %u at position %d is outside the model's vocabulary of %d", inputs[n], n, V);
        memcpy(a->x[0] + (size_t)n * d, P.embed + (size_t)inputs[n] * d, (size_t)d * sizeof(float));
    }
    for (int l = 0; l < c->n_layers; l++) {
        const LayerParams *L = &P.layer[l];
        int k = c->top_k[l];
        if (k > a->kcap[l]) BUG("layer %d at top-%d, the buffers hold top-%d", l, k, a->kcap[l]);
        a->kused[l] = k;
        /* attention block */
        rmsnorm_forward(a->ln1[l], a->r1[l], a->x[l], L->ln1, N, d, c->norm_eps);
        matmul_forward(a->q[l], a->ln1[l], L->wq, N, d, qd, 0);
        matmul_forward(a->k[l], a->ln1[l], L->wk, N, d, kvd, 0);
        matmul_forward(a->v[l], a->ln1[l], L->wv, N, d, kvd, 0);
        qknorm_rope_forward(a->qr[l], a->qn[l], a->qrs[l], a->q[l], L->qnorm, a->cosv, a->sinv, pos, N, T, H, hd, c->norm_eps);
        qknorm_rope_forward(a->kr[l], a->kn[l], a->krs[l], a->k[l], L->knorm, a->cosv, a->sinv, pos, N, T, KV, hd, c->norm_eps);
        attention_forward(a->ao[l], a->att[l], a->qr[l], a->kr[l], a->v[l], pos, B, T, H, KV, hd);
        memcpy(a->h[l], a->x[l], (size_t)N * d * sizeof(float));
        matmul_forward(a->h[l], a->ao[l], L->wo, N, qd, d, 1);
        /* MoE block */
        rmsnorm_forward(a->ln2[l], a->r2[l], a->h[l], L->ln2, N, d, c->norm_eps);
        float *counts = m->counts + (size_t)l * E;
        route_forward(a, l, counts, a->ln2[l], L->router, balance_uses_bias(bo) ? m->expert_bias + (size_t)l * E : NULL, m->forced_sel[l],
                      N, d, E, k);
        experts_forward(a, l, m->ep, a->ln2[l], L->expert, k, d, de);
        combine_forward(a->x[l + 1], a->h[l], a, l, N, d, E, k);
        balance_forward(&out, a, l, counts, bo, N, E, k);
    }
    rmsnorm_forward(a->lnf, a->rf, a->x[c->n_layers], P.norm, N, d, c->norm_eps);
    for (int n = 0; targets && n < N; n++)
        if (targets[n] >= (uint32_t)V) die("target %u at position %d is outside the model's vocabulary of %d", targets[n], n, V);
    if (!targets && mask) logits_of_rows(a, P.head, mask, N, d, V);
    else out.ce = head_forward(a->logits, a->dlogits, a->rsum, a->lsef, a->dprow, a->lnf, P.head, targets, mask, N, d, V);
    a->have_forward = 1;
    out.loss = out.ce + out.balance + out.z;
    return out;
}

/* ============================ backward ================================ */

/* dp[N, E], dz[N, E] (+=) of one layer's balance terms, times scale. */
static void balance_backward(Activations *a, int l, const float *counts, const BalanceOptions *bo, float scale, int N, int E, int k)
{
    const float *p = a->p[l], *z = a->z[l];
    float *dp = a->dp, *dz = a->dz;
    if (balance_is_lbl(bo->kind)) {
        for (int e = 0; e < E; e++) {
            float g = (float)lbl_grad(bo, counts, l, e, N, k, E, scale);
            for (int n = 0; n < N; n++) dp[(size_t)n * E + e] += g;
        }
    } else if (bo->kind == BALANCE_TOP1_LBL) {
        double fh[MODEL_MAX_EXPERTS], gf[MODEL_MAX_EXPERTS], pbar;
        top1_stats(fh, &pbar, a, l, bo->tau, N, E, k);
        double gp = top1_lbl_grads(gf, bo, fh, pbar, E, scale);   /* dL/dfhat, dL/dpbar */
        for (int n = 0; n < N; n++) {
            const float *zn = z + (size_t)n * E;
            double mx = zn[0], s = 0, dot = 0;
            for (int j = 1; j < E; j++) mx = zn[j] > mx ? zn[j] : mx;
            for (int j = 0; j < E; j++) s += exp((zn[j] - mx) / bo->tau);
            for (int j = 0; j < E; j++) dot += exp((zn[j] - mx) / bo->tau) / s * gf[j];
            for (int j = 0; j < E; j++) {
                double q = exp((zn[j] - mx) / bo->tau) / s;
                dz[(size_t)n * E + j] += (float)(q * (gf[j] - dot) / (bo->tau * N));
            }
            dp[(size_t)n * E + a->sel[l][(size_t)n * k]] += (float)(gp / N);
        }
    }
    if (bo->z_coef > 0)
        for (int n = 0; n < N; n++)
            for (int e = 0; e < E; e++)
                dz[(size_t)n * E + e] += (float)(scale * bo->z_coef * 2.0 * a->lse[l][n] * p[(size_t)n * E + e] / N);
}

/* The MoE block backward: from dout[N, d] (the gradient of the layer's
 * output) into du[N, d] (of the normed input, written) and the expert and
 * router gradients. */
static void moe_backward(Model *m, int l, const LayerParams *L, const LayerParams *G, const float *dout, float scale)
{
    const Config *c = &m->cfg;
    Activations *a = m->acts;
    const int N = a->B * a->T, d = c->d_model, E = c->n_experts, de = c->d_expert, k = a->kused[l];
    const int *sel = a->sel[l], *row = a->row[l];
    const float *p = a->p[l];
    float *dp = a->dp, *dz = a->dz, *du = a->du;
    memset(dp, 0, (size_t)N * E * sizeof(float));
    memset(dz, 0, (size_t)N * E * sizeof(float));
    /* combine: out += p * ye */
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = dout + (size_t)n * d;
        for (int s = 0; s < k; s++) {
            int as = n * k + s, r = row[as], e = sel[as];
            const float *y = a->ye[l] + (size_t)r * d;
            float *dy = a->dye + (size_t)r * d, pe = p[(size_t)n * E + e], dot = 0;
            for (int i = 0; i < d; i++) { dot += g[i] * y[i]; dy[i] = pe * g[i]; }
            dp[(size_t)n * E + e] += dot;
        }
    }
    /* the experts, where they are held */
    if (m->ep) ep_dispatch(m->ep, a, l, a->dye, a->dyr, d, 0);
    experts_ffn_backward(a->dxr, G->expert, a->dact, a->dgu, a->dyr, a->xr[l], a->gu[l], a->act[l], L->expert, a->roffs[l], a->Eh,
                         d, de);
    if (m->ep) ep_return(m->ep, a, l, a->dxe, a->dxr, d);
    /* scatter back into du (written), each token its k rows in slot
     * order: deterministic */
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++) {
        float *dst = du + (size_t)t * d;
        memcpy(dst, a->dxe + (size_t)row[t * k] * d, (size_t)d * sizeof(float));
        for (int s = 1; s < k; s++) {
            const float *src = a->dxe + (size_t)row[t * k + s] * d;
            for (int i = 0; i < d; i++) dst[i] += src[i];
        }
    }
    balance_backward(a, l, m->counts + (size_t)l * E, &a->bo, scale, N, E, k);
    /* softmax: dz += p * (dp - sum p dp) */
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *pn = p + (size_t)n * E;
        float *dpn = dp + (size_t)n * E, *dzn = dz + (size_t)n * E, dot = 0;
        for (int e = 0; e < E; e++) dot += pn[e] * dpn[e];
        for (int e = 0; e < E; e++) dzn[e] += pn[e] * (dpn[e] - dot);
    }
    matmul_backward(du, G->router, dz, a->ln2[l], L->router, N, d, E, 1);
}

void model_backward(Model *m, float ce_scale, float aux_scale)
{
    const Config *c = &m->cfg;
    Activations *a = m->acts;
    if (!a->have_forward || !a->targets) BUG("model_backward without a forward with targets");
    const int B = a->B, T = a->T, N = B * T, d = c->d_model, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    const int qd = H * hd, kvd = KV * hd, V = c->vocab_size;
    Params P = param_pointers(m, m->params), G = param_pointers(m, m->grads);

    head_backward(a->dln, G.head, a->dlogits, a->rsum, a->lnf, P.head, a->targets, a->mask, ce_scale, N, d, V);
    memset(a->dx, 0, (size_t)N * d * sizeof(float));
    rmsnorm_backward(a->dx, G.norm, a->dln, a->x[c->n_layers], P.norm, a->rf, N, d);

    for (int l = c->n_layers - 1; l >= 0; l--) {
        const LayerParams *L = &P.layer[l], *GL = &G.layer[l];
        /* x[l+1] = h + moe(rms(h)): the residual's gradient passes
         * through, so dx becomes dh in place once the MoE has read it */
        moe_backward(m, l, L, GL, a->dx, aux_scale);
        rmsnorm_backward(a->dx, GL->ln2, a->du, a->h[l], L->ln2, a->r2[l], N, d);
        /* h = x + Wo . attention: dx goes on from dh in place likewise */
        matmul_backward(a->dao, GL->wo, a->dx, a->ao[l], L->wo, N, qd, d, 0);
        attention_backward(a->dqr, a->dkr, a->dv, a->dprow, a->dao, a->att[l], a->qr[l], a->kr[l], a->v[l], B, T, H, KV, hd);
        qknorm_rope_backward(a->dq, GL->qnorm, a->dqr, a->q[l], a->qrs[l], L->qnorm, a->cosv, a->sinv, a->pos, N, T, H, hd);
        qknorm_rope_backward(a->dk, GL->knorm, a->dkr, a->k[l], a->krs[l], L->knorm, a->cosv, a->sinv, a->pos, N, T, KV, hd);
        matmul_backward(a->dln, GL->wq, a->dq, a->ln1[l], L->wq, N, d, qd, 0);
        matmul_backward(a->dln, GL->wk, a->dk, a->ln1[l], L->wk, N, d, kvd, 1);
        matmul_backward(a->dln, GL->wv, a->dv, a->ln1[l], L->wv, N, d, kvd, 1);
        rmsnorm_backward(a->dx, GL->ln1, a->dln, a->x[l], L->ln1, a->r1[l], N, d);
    }
    /* the embedding: a token may repeat, so split by columns, the tokens
     * in order for each */
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < d; c0 += NORM_COLS)
        for (int n = 0; n < N; n++) {
            float *g = G.embed + (size_t)a->inputs[n] * d;
            const float *src = a->dx + (size_t)n * d;
            for (int i = c0; i < min_int(d, c0 + NORM_COLS); i++) g[i] += src[i];
        }
}

/* ============================ packing ================================= */

void model_check_positions(const int *pos, int B, int T)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int p = pos[(size_t)b * T + t], prev = t ? pos[(size_t)b * T + t - 1] : -1;
            if (p != 0 && p != prev + 1)
                BUG("positions of row %d: %d at %d follows %d (a document's positions count from 0 by 1)", b, p, t, prev);
        }
}

/* ============================ statistics ============================== */

RouteSums model_route_sums(const Model *m, int layer)
{
    const Activations *a = m->acts;
    const int E = m->cfg.n_experts, N = a->B * a->T, k = a->kused[layer];
    RouteSums r = {.tokens = N};
    for (int n = 0; n < N; n++) {
        const float *pn = a->p[layer] + (size_t)n * E;
        r.top1_p += pn[a->sel[layer][(size_t)n * k]];
        for (int e = 0; e < E; e++)
            if (pn[e] > 0) r.entropy -= pn[e] * log(pn[e]);
    }
    return r;
}

void model_update_bias(Model *m, float rate)
{
    const int E = m->cfg.n_experts;
    for (int l = 0; l < m->cfg.n_layers; l++) bias_update(m->expert_bias + (size_t)l * E, m->counts + (size_t)l * E, E, rate);
}

const int *model_selection(const Model *m, int layer, int *k)
{
    *k = m->acts->kused[layer];
    return m->acts->sel[layer];
}

/* ============================ inference: the key-value cache ========== */

/* Inference (kvcache.h): a step runs the forward's layer functions over its
 * new tokens only; their keys and values go into the cache, and attention
 * reads the cache. Nothing is kept for a backward. */

/* Columns per task of a decode step's products: fixed, as MM_ROWS. */
enum { MM_COLS = 256 };

/* matmul_forward for a step: a decode step has a row or a few, so its
 * tasks are blocks of w's rows (each thread reads its share of the weights,
 * which is the step's cost); a prefill of many rows goes by rows. */
static void matmul_step(float *out, const float *inp, const float *w, int N, int C, int OC, int accumulate)
{
    if (N >= MM_ROWS) {
        matmul_forward(out, inp, w, N, C, OC, accumulate);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int o0 = 0; o0 < OC; o0 += MM_COLS)
        gemm_nt_ld(out + o0, OC, inp, w + (size_t)o0 * C, N, C, min_int(MM_COLS, OC - o0), accumulate);
}

/* The step's keys and values into the cache at their rows and positions:
 * kc, vc [rows, KV, max_len, hd] from k, v [n, KV*hd]. */
static void kv_append(float *kc, float *vc, const float *k, const float *v, const int *rows, const int *pos, int n, int KV, int hd,
                      int max_len)
{
    for (int t = 0; t < n; t++)
        for (int h = 0; h < KV; h++) {
            size_t at = (((size_t)rows[t] * KV + h) * max_len + pos[t]) * hd, from = ((size_t)t * KV + h) * hd;
            memcpy(kc + at, k + from, (size_t)hd * sizeof(float));
            memcpy(vc + at, v + from, (size_t)hd * sizeof(float));
        }
}

/* Each new token's attention over its row's cache up to itself (its own
 * key and value already appended): out[n, H*hd] from q[n, H*hd] (normed and
 * rotated) and the positions 0 .. pos[t] of row rows[t] of kc, vc [rows, KV,
 * max_len, hd]; a query head reads its group's KV head. scores[threads,
 * max_len] is scratch. */
static void attention_cached_forward(float *out, float *scores, const float *q, const float *kc, const float *vc, const int *rows,
                                     const int *pos, int n, int H, int KV, int hd, int max_len, int threads)
{
    int group = H / KV, qd = H * hd;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
    for (int t = 0; t < n; t++) {
        for (int h = 0; h < H; h++) {
            float *s = scores + (size_t)omp_get_thread_num() * max_len, mx;
            const float *qt = q + (size_t)t * qd + (size_t)h * hd;
            size_t base = ((size_t)rows[t] * KV + h / group) * max_len * hd;
            const float *kb = kc + base, *vb = vc + base;
            int len = pos[t] + 1;
            for (int j = 0; j < len; j++) {
                const float *kj = kb + (size_t)j * hd;
                float dot = 0;
#pragma omp simd reduction(+ : dot)
                for (int i = 0; i < hd; i++) dot += qt[i] * kj[i];
                s[j] = dot * scale;
            }
            float inv = 1.0f / softmax_exp(s, s, len, &mx);
            float *o = out + (size_t)t * qd + (size_t)h * hd;
            for (int i = 0; i < hd; i++) o[i] = 0;
            for (int j = 0; j < len; j++) {
                const float *vj = vb + (size_t)j * hd;
                float pj = s[j] * inv;
#pragma omp simd
                for (int i = 0; i < hd; i++) o[i] += pj * vj[i];
            }
        }
    }
}

/* The CPU's cache: the keys and values, and the scratch of a step of up
 * to S tokens, reused layer by layer. The MoE's layer functions take a
 * layer of an Activations: `a` points its layer 0 at this scratch. */
typedef struct {
    float *k, *v;              /* [L, rows, KV, max_len, hd] */
    float *cosv, *sinv;        /* [max_len, hd/2] */
    float *x, *h, *ln;         /* [S, d] */
    float *rs;                 /* [S] */
    float *q, *qn, *qr;        /* [S, qd] */
    float *kp, *kn, *kr, *vp;  /* [S, kvd] */
    float *qrs, *krs;          /* [S, H], [S, KV] */
    float *ao;                 /* [S, qd] */
    float *scores;             /* [threads, max_len] */
    int threads;
    float *lnf, *logits;       /* [rows, d], [rows, V] */
    int *pos, *last;           /* [S] */
    Activations a;             /* layer 0: z, p [S, E], lse [S], sel, order, row [S*k], offs [E+1], xe, ye [S*k, d], gu [S*k, 2de], act [S*k, de] */
    float *buf;                /* the one allocation */
} CpuKv;

static size_t cpu_kv_carve(CpuKv *s, const Config *c, const KvCache *kv, float *base)
{
    size_t S = (size_t)kv->max_step, d = (size_t)c->d_model, qd = (size_t)c->n_heads * c->head_dim;
    size_t kvd = (size_t)c->n_kv_heads * c->head_dim, E = (size_t)c->n_experts, de = (size_t)c->d_expert, kmax = 0, off = 0;
    size_t cache = (size_t)c->n_layers * kv->rows * kvd * kv->max_len, R = (size_t)kv->rows, half = (size_t)c->head_dim / 2;
    for (int l = 0; l < c->n_layers; l++) kmax = (size_t)c->top_k[l] > kmax ? (size_t)c->top_k[l] : kmax;
    size_t A = S * kmax;
#define CARVE(field, n) do { if (base) field = base + off; off += (n); } while (0)
#define CARVEI(field, n) do { if (base) field = (int *)(void *)(base + off); off += (n); } while (0)
    CARVE(s->k, cache); CARVE(s->v, cache);
    CARVE(s->cosv, (size_t)kv->max_len * half); CARVE(s->sinv, (size_t)kv->max_len * half);
    CARVE(s->x, S * d); CARVE(s->h, S * d); CARVE(s->ln, S * d); CARVE(s->rs, S);
    CARVE(s->q, S * qd); CARVE(s->qn, S * qd); CARVE(s->qr, S * qd);
    CARVE(s->kp, S * kvd); CARVE(s->kn, S * kvd); CARVE(s->kr, S * kvd); CARVE(s->vp, S * kvd);
    CARVE(s->qrs, S * c->n_heads); CARVE(s->krs, S * c->n_kv_heads); CARVE(s->ao, S * qd);
    CARVE(s->scores, (size_t)s->threads * kv->max_len);
    CARVE(s->lnf, R * d); CARVE(s->logits, R * c->vocab_size);
    CARVEI(s->pos, S); CARVEI(s->last, S);
    Activations *a = &s->a;
    CARVE(a->z[0], S * E); CARVE(a->p[0], S * E); CARVE(a->lse[0], S);
    CARVEI(a->sel[0], A); CARVEI(a->order[0], A); CARVEI(a->row[0], A); CARVEI(a->offs[0], E + 1);
    CARVE(a->xe[0], A * d); CARVE(a->ye[0], A * d); CARVE(a->gu[0], A * 2 * de); CARVE(a->act[0], A * de);
    if (base) {   /* one process computes every expert */
        a->xr[0] = a->xe[0];
        a->roffs[0] = a->offs[0];
        a->S = 1;
        a->Eh = (int)E;
    }
#undef CARVE
#undef CARVEI
    return off;
}

KvCache *model_kv_open(const Model *m, int rows, int max_len, int max_step)
{
    const Config *c = &m->cfg;
    if (m->ep) die("inference with a key-value cache runs in one process holding every expert");
    KvCache *kv = xmalloc(sizeof *kv);
    kv_cache_init(kv, c, rows, max_len, max_step);
    CpuKv *s = xcalloc(1, sizeof *s);
    s->threads = omp_get_max_threads();
    for (int l = 0; l < c->n_layers; l++) s->a.kcap[l] = c->top_k[l];
    s->buf = xmalloc(cpu_kv_carve(s, c, kv, NULL) * sizeof(float));
    cpu_kv_carve(s, c, kv, s->buf);
    rope_tables(s->cosv, s->sinv, c, max_len);
    kv->impl = s;
    return kv;
}

void model_kv_free(KvCache *kv)
{
    if (!kv) return;
    CpuKv *s = kv->impl;
    free(s->buf);
    free(s);
    kv_cache_free_host(kv);
    free(kv);
}

const float *model_step(Model *m, KvCache *kv, const uint32_t *tokens, const int *rows, int n, const BalanceOptions *bo)
{
    const Config *c = &m->cfg;
    CpuKv *s = kv->impl;
    const int d = c->d_model, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, qd = H * hd, kvd = KV * hd;
    const int E = c->n_experts, de = c->d_expert, V = c->vocab_size, W = kv->max_len;
    static const BalanceOptions none = {.kind = BALANCE_NONE};
    if (!bo) bo = &none;
    int groups = kv_plan(kv, rows, n, s->pos, s->last);
    Params P = param_pointers(m, m->params);
    for (int t = 0; t < n; t++) {
        if (tokens[t] >= (uint32_t)V) die("token %u is outside the model's vocabulary of %d", tokens[t], V);
        memcpy(s->x + (size_t)t * d, P.embed + (size_t)tokens[t] * d, (size_t)d * sizeof(float));
    }
    for (int l = 0; l < c->n_layers; l++) {
        const LayerParams *L = &P.layer[l];
        int k = c->top_k[l];
        if (k > s->a.kcap[l]) BUG("layer %d at top-%d, the cache's buffers hold top-%d", l, k, s->a.kcap[l]);
        size_t at = (size_t)l * kv->rows * kvd * W;
        /* attention block: the new keys and values join the cache first, so
         * that a prefill's tokens see each other */
        rmsnorm_forward(s->ln, s->rs, s->x, L->ln1, n, d, c->norm_eps);
        matmul_step(s->q, s->ln, L->wq, n, d, qd, 0);
        matmul_step(s->kp, s->ln, L->wk, n, d, kvd, 0);
        matmul_step(s->vp, s->ln, L->wv, n, d, kvd, 0);
        qknorm_rope_forward(s->qr, s->qn, s->qrs, s->q, L->qnorm, s->cosv, s->sinv, s->pos, n, W, H, hd, c->norm_eps);
        qknorm_rope_forward(s->kr, s->kn, s->krs, s->kp, L->knorm, s->cosv, s->sinv, s->pos, n, W, KV, hd, c->norm_eps);
        kv_append(s->k + at, s->v + at, s->kr, s->vp, rows, s->pos, n, KV, hd, W);
        attention_cached_forward(s->ao, s->scores, s->qr, s->k + at, s->v + at, rows, s->pos, n, H, KV, hd, W, s->threads);
        memcpy(s->h, s->x, (size_t)n * d * sizeof(float));
        matmul_step(s->h, s->ao, L->wo, n, qd, d, 1);
        /* MoE block */
        rmsnorm_forward(s->ln, s->rs, s->h, L->ln2, n, d, c->norm_eps);
        route_forward(&s->a, 0, m->counts + (size_t)l * E, s->ln, L->router, balance_uses_bias(bo) ? m->expert_bias + (size_t)l * E : NULL,
                      NULL, n, d, E, k);
        experts_forward(&s->a, 0, NULL, s->ln, L->expert, k, d, de);
        combine_forward(s->x, s->h, &s->a, 0, n, d, E, k);
    }
    /* the head, over each row's last token only */
    for (int g = 0; g < groups; g++) memcpy(s->h + (size_t)g * d, s->x + (size_t)s->last[g] * d, (size_t)d * sizeof(float));
    rmsnorm_forward(s->lnf, s->rs, s->h, P.norm, groups, d, c->norm_eps);
    matmul_step(s->logits, s->lnf, P.head, groups, d, V, 0);
    return s->logits;
}
