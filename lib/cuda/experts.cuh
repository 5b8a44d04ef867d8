// The experts of a MoE layer, after the router and the sort of its
// assignments by expert: the gather of each assignment's token into
// expert order, the experts' SwiGLU MLPs over their rows, and the
// probability-weighted combine, written as a gather (no atomics). The
// products by either path (ExpertsPath, chosen once in gpu_model_create):
//   EXPERTS_CUBLAS: a cuBLAS product per expert over its rows (offsets on
//     the host, from route_sort), spread over a few side streams.
//   EXPERTS_GROUPED: one grouped kernel per product over all experts
//     (grouped.cu), the offsets and tiles on the device (grouped_route).
//   EXPERTS_CUTLASS: the same sort, then CUTLASS's sm90 grouped GEMM
//     (cutlass_experts.cu) through a CutlassExperts the model made.
// A = N*k (token, slot) assignments; an expert's weights are gate | up as
// one [2de, d], then down [d, de], 3*de*d elements from one expert's to the
// next.
#ifndef SIGMA_CUDA_EXPERTS_CUH
#define SIGMA_CUDA_EXPERTS_CUH

#include "cuda/common.cuh"
#include "cuda/cutlass_experts.h"
#include "cuda/grouped.cuh"
#include "cuda/matmul.cuh"

extern "C" {
#include "model/device.h"
}

// ---------------------------------------------------------------- kernels

// xe[A, d] = u[order[r] / k]: each assignment's token, in expert order.
static __global__ void gather_rows_kernel(bf16 *xe, const bf16 *u, const int *order, int A, int d, int k)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)A * d) return;
    long r = i / d;
    xe[i] = u[(long)(order[r] / k) * d + i % d];
}
// du[N, d] = sum over a token's k assignments of dxe[row] (fixed order).
static __global__ void scatter_rows_kernel(float *du, const float *dxe, const int *row, int N, int d, int k)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)N * d) return;
    long n = i / d, c = i % d;
    float s = 0;
    for (int j = 0; j < k; j++) s += dxe[(long)row[n * k + j] * d + c];
    du[i] = s;
}

// act[A, de] = silu(gu[:, :de]) * gu[:, de:]
static __global__ void swiglu_forward_kernel(bf16 *act, const bf16 *gu, int A, int de)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)A * de) return;
    long r = i / de, c = i % de;
    float g = to_f(gu[r * 2 * de + c]), u = to_f(gu[r * 2 * de + de + c]);
    act[i] = __float2bfloat16(g / (1.0f + expf(-g)) * u);
}
// dgu[A, 2de] from dact[A, de]
static __global__ void swiglu_backward_kernel(bf16 *dgu, const float *dact, const bf16 *gu, int A, int de)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)A * de) return;
    long r = i / de, c = i % de;
    float g = to_f(gu[r * 2 * de + c]), u = to_f(gu[r * 2 * de + de + c]), sg = 1.0f / (1.0f + expf(-g)), d = dact[i];
    dgu[r * 2 * de + c] = __float2bfloat16(d * u * sg * (1.0f + g * (1.0f - sg)));
    dgu[r * 2 * de + de + c] = __float2bfloat16(d * g * sg);
}

// out[N, d] = h + sum over a token's k choices of p * ye[row]: a gather.
static __global__ void combine_forward_kernel(float *out, const float *h, const bf16 *ye, const float *p, const int *sel,
                                              const int *row, int N, int d, int E, int k)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)N * d) return;
    long n = i / d, c = i % d;
    float v = h[i];
    for (int s = 0; s < k; s++) {
        int as = (int)n * k + s;
        v += p[n * E + sel[as]] * to_f(ye[(long)row[as] * d + c]);
    }
    out[i] = v;
}
// One warp per assignment: dye[row] = p * dout[n] (bf16), dpsel = dout[n] . ye[row].
static __global__ void combine_backward_kernel(bf16 *dye, float *dpsel, const float *dout, const bf16 *ye, const float *p,
                                               const int *sel, const int *row, int N, int d, int E, int k)
{
    int as = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (as >= N * k) return;
    int n = as / k, r = row[as];
    float pe = p[(long)n * E + sel[as]], dot = 0;
    for (int c = lane; c < d; c += 32) {
        float g = dout[(long)n * d + c];
        dot += g * to_f(ye[(long)r * d + c]);
        dye[(long)r * d + c] = __float2bfloat16(pe * g);
    }
    dot = warp_sum(dot);
    if (lane == 0) dpsel[as] = dot;
}

// ---------------------------------------------------------------- the products' streams

// The experts' cuBLAS products are small: spread over a few side streams
// (each with its own handle, so no two share a cuBLAS workspace) they run
// side by side. Experts write disjoint memory. The side streams are ordered
// against the main one by events: fork (the main stream's work so far)
// before the products, join[i] (side i's products) after them.
typedef struct {
    int n;                                      // side streams in use, 1 .. GPU_MAX_EXPERT_STREAMS
    GpuCtx side[GPU_MAX_EXPERT_STREAMS];
    cudaEvent_t fork, join[GPU_MAX_EXPERT_STREAMS];
} ExpertStreams;

static void expert_streams_create(ExpertStreams *s, int n)
{
    s->n = n;
    for (int i = 0; i < n; i++) {
        CUDA_CHECK(cudaStreamCreateWithFlags(&s->side[i].stream, cudaStreamNonBlocking));
        CUBLAS_CHECK(cublasCreate(&s->side[i].blas));
        CUBLAS_CHECK(cublasSetStream(s->side[i].blas, s->side[i].stream));
        CUDA_CHECK(cudaEventCreateWithFlags(&s->join[i], cudaEventDisableTiming));
    }
    CUDA_CHECK(cudaEventCreateWithFlags(&s->fork, cudaEventDisableTiming));
}
static void expert_streams_destroy(ExpertStreams *s)
{
    for (int i = 0; i < s->n; i++) {
        CUBLAS_CHECK(cublasDestroy(s->side[i].blas));
        CUDA_CHECK(cudaStreamDestroy(s->side[i].stream));
        CUDA_CHECK(cudaEventDestroy(s->join[i]));
    }
    CUDA_CHECK(cudaEventDestroy(s->fork));
}
// The side streams wait for the main stream's work so far.
static void expert_streams_fork(const ExpertStreams *s, GpuCtx ctx)
{
    CUDA_CHECK(cudaEventRecord(s->fork, ctx.stream));
    for (int i = 0; i < s->n; i++) CUDA_CHECK(cudaStreamWaitEvent(s->side[i].stream, s->fork, 0));
}
// The main stream waits for the side streams' work.
static void expert_streams_join(const ExpertStreams *s, GpuCtx ctx)
{
    for (int i = 0; i < s->n; i++) {
        CUDA_CHECK(cudaEventRecord(s->join[i], s->side[i].stream));
        CUDA_CHECK(cudaStreamWaitEvent(ctx.stream, s->join[i], 0));
    }
}

// One product of every expert over its sorted rows, the weights w_e = w +
// e * w_stride (gate|up, or down), [n, k]:
//   forward:  out[rows, n] (bf16) = inp[rows, k] . w_e^T
//   backward: dinp[rows, k] (fp32) = dout[rows, n] . w_e;  dw_e += dout^T inp
// Grouped: offs, tiles [E+1] on the device (tiles of bm rows). CUTLASS:
// offs and the model's CutlassExperts. cuBLAS: h_offs[E+1] on the host, a
// product per expert, expert e on side stream e % n.
static void experts_linear_forward(bf16 *out, const bf16 *inp, const bf16 *w, long w_stride, const int *offs, const int *tiles,
                                   int bm, const int *h_offs, int A, int E, int k, int n, ExpertsPath path,
                                   const ExpertStreams *streams, CutlassExperts *cutlass, GpuCtx ctx)
{
    if (path == EXPERTS_CUTLASS) {
        cutlass_linear_forward(cutlass, out, inp, w, w_stride, offs, E, k, n, ctx.stream);
        return;
    }
    if (path == EXPERTS_GROUPED) {
        grouped_linear_forward(out, inp, w, w_stride, offs, tiles, bm, A, E, k, n, ctx.stream);
        return;
    }
    expert_streams_fork(streams, ctx);
    for (int e = 0; e < E; e++) {
        int rows = h_offs[e + 1] - h_offs[e];
        if (rows)
            linear_forward(out + (size_t)h_offs[e] * n, CUDA_R_16BF, inp + (size_t)h_offs[e] * k, w + e * w_stride, rows, k, n, 0.0f,
                           streams->side[e % streams->n]);
    }
    expert_streams_join(streams, ctx);
}
static void experts_linear_backward(float *dinp, float *dw, const bf16 *dout, const bf16 *inp, const bf16 *w, long w_stride,
                                    const int *offs, const int *tiles, int bm, const int *h_offs, int A, int E, int k, int n,
                                    ExpertsPath path, const ExpertStreams *streams, CutlassExperts *cutlass, GpuCtx ctx)
{
    if (path == EXPERTS_CUTLASS) {
        cutlass_linear_backward_input(cutlass, dinp, dout, w, w_stride, offs, E, k, n, ctx.stream);
        cutlass_linear_backward_weight(cutlass, dw, w_stride, dout, inp, offs, E, k, n, ctx.stream);
        return;
    }
    if (path == EXPERTS_GROUPED) {
        grouped_linear_backward_input(dinp, dout, w, w_stride, offs, tiles, bm, A, E, k, n, ctx.stream);
        grouped_linear_backward_weight(dw, w_stride, dout, inp, offs, E, k, n, ctx.stream);
        return;
    }
    expert_streams_fork(streams, ctx);
    for (int e = 0; e < E; e++) {
        int rows = h_offs[e + 1] - h_offs[e];
        if (!rows) continue;   // no token, no gradient
        size_t r0 = h_offs[e], we = (size_t)e * w_stride;
        linear_backward(dinp + r0 * k, 0.0f, dw + we, dout + r0 * n, inp + r0 * k, w + we, rows, k, n,
                        streams->side[e % streams->n]);
    }
    expert_streams_join(streams, ctx);
}

// gu[A, 2de] = xe . Wgu_e^T and act[A, de] = swiglu(gu) over each expert's rows.
static void experts_up(bf16 *gu, bf16 *act, const bf16 *xe, const bf16 *w, const int *offs, const int *tiles, int bm,
                       const int *h_offs, int A, int d, int de, int E, ExpertsPath path, const ExpertStreams *streams,
                       CutlassExperts *cutlass, GpuCtx ctx)
{
    experts_linear_forward(gu, xe, w, 3L * de * d, offs, tiles, bm, h_offs, A, E, d, 2 * de, path, streams, cutlass, ctx);
    if (A) LAUNCH(swiglu_forward_kernel, cdiv((long)A * de, 256), 256, 0, ctx.stream, act, gu, A, de);
    LAUNCHED();
}

// ---------------------------------------------------------------- launchers

// xe[A, d] (bf16) = u[N, d] at each assignment's token, in expert order:
// order[A] is the sorted rows' assignments (assignment = token * k + slot).
static void gather_forward(bf16 *xe, const bf16 *u, const int *order, int A, int d, int k, GpuCtx ctx)
{
    LAUNCH(gather_rows_kernel, cdiv((long)A * d, 256), 256, 0, ctx.stream, xe, u, order, A, d, k);
    LAUNCHED();
}
// du[N, d] (fp32) = the sum of each token's k rows of dxe[A, d], in slot
// order; row[A] is each assignment's sorted row.
static void gather_backward(float *du, const float *dxe, const int *row, int N, int d, int k, GpuCtx ctx)
{
    LAUNCH(scatter_rows_kernel, cdiv((long)N * d, 256), 256, 0, ctx.stream, du, dxe, row, N, d, k);
    LAUNCHED();
}

// ye[A, d] (bf16) from xe[A, d] (sorted by expert): for each expert e over
// its rows, gu[A, 2de] = xe . Wgu_e^T, act[A, de] = silu(gate) * up, ye =
// act . Wd_e^T. w: expert 0's weights (bf16). The rows of each expert:
// offs, tiles [E+1] on the device with tiles of bm rows (grouped; CUTLASS
// reads offs only), or h_offs[E+1] on the host (cuBLAS). cutlass: the
// model's CutlassExperts (EXPERTS_CUTLASS), or NULL.
static void experts_forward(bf16 *ye, bf16 *gu, bf16 *act, const bf16 *xe, const bf16 *w, const int *offs, const int *tiles, int bm,
                            const int *h_offs, int A, int d, int de, int E, ExpertsPath path, const ExpertStreams *streams,
                            CutlassExperts *cutlass, GpuCtx ctx)
{
    experts_up(gu, act, xe, w, offs, tiles, bm, h_offs, A, d, de, E, path, streams, cutlass, ctx);
    experts_linear_forward(ye, act, w + (size_t)2 * de * d, 3L * de * d, offs, tiles, bm, h_offs, A, E, de, d, path, streams, cutlass,
                           ctx);   // down
}

// dxe[A, d] (fp32) and dw (fp32, the weights' gradients, laid out as w)
// from dye[A, d] (bf16); dgu[A, 2de], dact[A, de] scratch. gu, act as the
// forward left them, or, with recompute, computed again here from xe
// first. An expert without rows gets no gradient. The rest as in the
// forward.
static void experts_backward(float *dxe, float *dw, bf16 *dgu, float *dact, bf16 *gu, bf16 *act, const bf16 *dye, const bf16 *xe,
                             const bf16 *w, const int *offs, const int *tiles, int bm, const int *h_offs, int A, int d, int de,
                             int E, int recompute, ExpertsPath path, const ExpertStreams *streams, CutlassExperts *cutlass,
                             GpuCtx ctx)
{
    long stride = 3L * de * d;
    size_t down = (size_t)2 * de * d;
    if (recompute) experts_up(gu, act, xe, w, offs, tiles, bm, h_offs, A, d, de, E, path, streams, cutlass, ctx);
    experts_linear_backward(dact, dw + down, dye, act, w + down, stride, offs, tiles, bm, h_offs, A, E, de, d, path, streams, cutlass,
                            ctx);   // down
    if (A) LAUNCH(swiglu_backward_kernel, cdiv((long)A * de, 256), 256, 0, ctx.stream, dgu, dact, gu, A, de);
    LAUNCHED();
    experts_linear_backward(dxe, dw, dgu, xe, w, stride, offs, tiles, bm, h_offs, A, E, d, 2 * de, path, streams, cutlass,
                            ctx);   // gate|up
}

// out[N, d] (fp32) = h[N, d] + the sum over each token's k choices of
// p[N, E] at the choice times its expert's output ye[A, d]; sel[A] the
// choices, row[A] each assignment's sorted row.
static void combine_forward(float *out, const float *h, const bf16 *ye, const float *p, const int *sel, const int *row, int N, int d,
                            int E, int k, GpuCtx ctx)
{
    LAUNCH(combine_forward_kernel, cdiv((long)N * d, 256), 256, 0, ctx.stream, out, h, ye, p, sel, row, N, d, E, k);
    LAUNCHED();
}
// dye[A, d] (bf16) = p * dout[N, d] at each assignment's row, and
// dpsel[A] = dout . ye[row] (the gradient of each chosen probability).
static void combine_backward(bf16 *dye, float *dpsel, const float *dout, const bf16 *ye, const float *p, const int *sel,
                             const int *row, int N, int d, int E, int k, GpuCtx ctx)
{
    LAUNCH(combine_backward_kernel, cdiv(N * k, 8), 256, 0, ctx.stream, dye, dpsel, dout, ye, p, sel, row, N, d, E, k);
    LAUNCHED();
}

// ---------------------------------------------------------------- a step's few rows (inference)

// A decode step routes a token or a few: each assignment's expert is read
// once, for its one row, a matrix-vector product whose cost is the
// weights' bytes. So no sort and no gather: the products go straight from
// sel[A] to each assignment's expert, a warp per output row, 16-byte loads
// where the rows allow them.

// Eight bf16 as one 16-byte load: a union, so that reading the halves of
// what was loaded as a whole is defined (the CPU emulation's host compiler
// would otherwise drop the load under strict aliasing).
union Bf16x8 {
    uint4 v;
    bf16 h[8];
};

// sum over i < C of w[i] * x[i] (bf16), this lane's share; the warp sums.
__device__ static inline float row_dot_part(const bf16 *w, const bf16 *x, int C, int lane)
{
    float s = 0;
    if (C % 8 == 0 && (((uintptr_t)w | (uintptr_t)x) & 15) == 0) {
        for (int i = lane * 8; i < C; i += 32 * 8) {
            Bf16x8 wv, xv;
            wv.v = *(const uint4 *)(w + i);
            xv.v = *(const uint4 *)(x + i);
            for (int j = 0; j < 8; j++) s += to_f(wv.h[j]) * to_f(xv.h[j]);
        }
    } else {
        for (int i = lane; i < C; i += 32) s += to_f(w[i]) * to_f(x[i]);
    }
    return s;
}

// act[a, r] = silu(gate_e[r] . u[a / k]) * (up_e[r] . u[a / k]), e = sel[a]:
// one warp per (assignment, r < de); grid.y = assignments.
static __global__ void experts_rows_up_kernel(bf16 *act, const bf16 *u, const bf16 *w, long w_stride, const int *sel, int k, int d,
                                              int de)
{
    int a = blockIdx.y, r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= de) return;
    const bf16 *we = w + sel[a] * w_stride, *x = u + (long)(a / k) * d;
    float g = warp_sum(row_dot_part(we + (long)r * d, x, d, lane)), up = warp_sum(row_dot_part(we + (long)(de + r) * d, x, d, lane));
    if (lane == 0) act[(long)a * de + r] = __float2bfloat16(g / (1.0f + expf(-g)) * up);
}

// ye[a, r] = down_e[r] . act[a], e = sel[a]: one warp per (assignment, r < d).
static __global__ void experts_rows_down_kernel(bf16 *ye, const bf16 *act, const bf16 *w, long w_stride, const int *sel, int d, int de)
{
    int a = blockIdx.y, r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= d) return;
    const bf16 *wd = w + sel[a] * w_stride + (long)2 * de * d;
    float y = warp_sum(row_dot_part(wd + (long)r * de, act + (long)a * de, de, lane));
    if (lane == 0) ye[(long)a * d + r] = __float2bfloat16(y);
}

// The experts of A = N*k assignments, each its own expert's SwiGLU MLP on
// its token's row of u[N, d]: ye[A, d] (bf16, in assignment order: combine
// with row[a] = a), act[A, de] scratch; w the layer's expert blocks (bf16,
// w_stride = 3 de d apart), sel[A] the router's choices.
static void experts_rows_forward(bf16 *ye, bf16 *act, const bf16 *u, const bf16 *w, const int *sel, int A, int k, int d, int de,
                                 GpuCtx ctx)
{
    if (A > 65535) BUG("%d assignments in one step: the grid holds 65535", A);
    long stride = (long)3 * de * d;
    LAUNCH(experts_rows_up_kernel, dim3(cdiv(de, 8), A), 256, 0, ctx.stream, act, u, w, stride, sel, k, d, de);
    LAUNCH(experts_rows_down_kernel, dim3(cdiv(d, 8), A), 256, 0, ctx.stream, ye, act, w, stride, sel, d, de);
    LAUNCHED();
}

#endif
