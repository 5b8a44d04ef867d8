// The experts' products through CUTLASS's sm90 grouped GEMM: see
// cutlass_experts.h. Three kernels, one per product, because the products
// differ in the layout of their operands (A row- or column-major, B k- or
// n-contiguous) and in what the epilogue writes (bf16; fp32; fp32 added to
// what is there): each is one instantiation of one tile configuration, the
// fewest that cover them, since each costs minutes of compilation.
//
// CUTLASS's pointer-array kernel takes, per group, its M x N x K and a
// pointer and stride for each operand, all in device memory: problems()
// writes them from the sorted offsets with route_gemm (route_plan.h,
// tested on the host), one thread per expert, just before the product, on
// the same stream. The arguments of a kernel (those arrays' addresses, E,
// alpha, beta) never change, so each kernel is initialised once, in
// cutlass_experts_create, and a product is two launches. The grid is
// persistent (one block per SM), each block walking the groups' tiles
// from device memory: no size ever reaches the host.
//
// Built only where the headers are (scripts/gpu-libs: SIGMA_CUTLASS) and
// never on the CPU emulation, which cannot run TMA or warpgroup MMA: there
// cutlass_experts_create says why not, and the model takes another path.
#include "cuda/cutlass_experts.h"

#include "cuda/cuda_check.h"
#include "cuda/route_plan.h"

#include <stdio.h>

#if defined(SIGMA_CUTLASS) && !defined(SIGMA_EMU)

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/group_array_problem_shape.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"

static inline void cutlass_check(cutlass::Status s, const char *what, const char *file, int line)
{
    if (s != cutlass::Status::kSuccess) die_at(file, line, "CUTLASS: %s: %s", what, cutlassGetStatusString(s));
}
#define CUTLASS_CHECK(call) cutlass_check((call), #call, __FILE__, __LINE__)

namespace sigma_cutlass {

using namespace cute;
using bf16 = cutlass::bfloat16_t;   // the same bits as __nv_bfloat16
using Problems = cutlass::gemm::GroupProblemShape<Shape<int, int, int>>;   // M, N, K per group

// One tile configuration for all three: 128 x 128 tiles, 64 deep (128
// bytes of bf16, TMA's widest swizzle), two consumer warpgroups sharing a
// tile (cooperative), no clusters (a cluster's blocks would have to share
// an expert, and tiny4's experts get one tile of rows). Which tile is
// fastest is for a GPU to say; this is the one place to change it.
using Tile = Shape<_128, _128, _64>;
using Cluster = Shape<_1, _1, _1>;
using MainloopSchedule = cutlass::gemm::KernelPtrArrayTmaWarpSpecializedCooperative;
using EpilogueSchedule = cutlass::epilogue::PtrArrayTmaWarpSpecializedCooperative;

// A product: where A and B sit (route_gemm's a_col and b_kn: A row- or
// column-major; B's columns k-contiguous, CUTLASS's ColumnMajor B, or its
// rows n-contiguous, RowMajor), C (void: not read) and D, always row-major.
template <int A_COL, int B_KN, class ElementC, class ElementD> struct Product {
    static constexpr int a_col = A_COL, b_kn = B_KN;
    using LayoutA = cute::conditional_t<A_COL, cutlass::layout::ColumnMajor, cutlass::layout::RowMajor>;
    using LayoutB = cute::conditional_t<B_KN, cutlass::layout::RowMajor, cutlass::layout::ColumnMajor>;
    using LayoutD = cutlass::layout::RowMajor;
    static constexpr int align_ab = 8, align_d = 128 / cutlass::sizeof_bits<ElementD>::value;   // 16 bytes
    using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
        cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Cluster, cutlass::epilogue::collective::EpilogueTileAuto, float,
        float, ElementC, LayoutD *, align_d, ElementD, LayoutD *, align_d, EpilogueSchedule,
        cutlass::epilogue::fusion::LinearCombination<ElementD, float, ElementC, float>>::CollectiveOp;
    using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
        cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, bf16, LayoutA *, align_ab, bf16, LayoutB *, align_ab, float, Tile,
        Cluster, cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
        MainloopSchedule>::CollectiveOp;
    using Kernel = cutlass::gemm::kernel::GemmUniversal<Problems, Mainloop, Epilogue>;
    using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
    using StrideA = typename Kernel::InternalStrideA;
    using StrideB = typename Kernel::InternalStrideB;
    using StrideC = typename Kernel::InternalStrideC;
    using StrideD = typename Kernel::InternalStrideD;
    static constexpr bool reads_c = !cute::is_void_v<ElementC>;
    using C = cute::conditional_t<reads_c, ElementC, ElementD>;   // C's pointers' type (unused when not read)

    // The per-group arguments in device memory, E of each.
    struct Arrays {
        Problems::UnderlyingProblemShape *shape;
        const bf16 **a, **b;
        const C **c;
        ElementD **d;
        StrideA *sa;
        StrideB *sb;
        StrideC *sc;
        StrideD *sd;
    };
};

using Forward = Product<0, 0, void, bf16>;          // out = inp . w_e^T
using BackwardInput = Product<0, 1, void, float>;   // dinp = dout . w_e
using BackwardWeight = Product<1, 1, float, float>; // dw_e += dout^T . inp

// A stride of one leading dimension: CuTe's strides have one dynamic mode
// (the leading dimension) beside the static unit stride and batch stride.
template <class S> __device__ static S leading(int64_t ld)
{
    S s{};
    if constexpr (cute::is_static<cute::remove_cvref_t<decltype(cute::get<0>(s))>>::value) cute::get<1>(s) = ld;
    else cute::get<0>(s) = ld;
    return s;
}

// One thread per expert: its problem, operands and strides, route_gemm's.
template <class P>
__global__ void problems(typename P::Arrays arr, int product, const int *offs, int E, int k, int n, long w_stride, const bf16 *A,
                         const bf16 *B, typename P::C *Cbuf, typename P::C *D)
{
    int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= E) return;
    RouteGemm g = route_gemm(product, offs, e, k, n, w_stride);
    if (g.a_col != P::a_col || g.b_kn != P::b_kn) __trap();   // the kernel was built for other layouts
    arr.shape[e] = make_shape(g.M, g.N, g.K);
    arr.a[e] = A + g.a;
    arr.b[e] = B + g.b;
    arr.c[e] = Cbuf ? Cbuf + g.c : nullptr;
    arr.d[e] = D + g.c;
    arr.sa[e] = leading<typename P::StrideA>(g.lda);
    arr.sb[e] = leading<typename P::StrideB>(g.ldb);
    arr.sc[e] = leading<typename P::StrideC>(g.ldc);
    arr.sd[e] = leading<typename P::StrideD>(g.ldc);
}

// A product's kernel, initialised once with its arrays (carved from one
// allocation) and workspace.
template <class P> struct Runner {
    typename P::Gemm gemm;
    typename P::Arrays arr;
    void *workspace = nullptr;

    // the bytes of the arrays for E groups, placed from base when not NULL
    size_t carve(char *base, int E)
    {
        size_t off = 0;
        auto at = [&](auto *&p, size_t bytes) {
            off = (off + 255) & ~(size_t)255;
            if (base) p = reinterpret_cast<cute::remove_reference_t<decltype(p)>>(base + off);
            off += bytes;
        };
        at(arr.shape, E * sizeof *arr.shape);
        at(arr.a, E * sizeof *arr.a);
        at(arr.b, E * sizeof *arr.b);
        at(arr.c, E * sizeof *arr.c);
        at(arr.d, E * sizeof *arr.d);
        at(arr.sa, E * sizeof *arr.sa);
        at(arr.sb, E * sizeof *arr.sb);
        at(arr.sc, E * sizeof *arr.sc);
        at(arr.sd, E * sizeof *arr.sd);
        return off;
    }

    // the kernel's arguments checked and set; CUTLASS's complaint, if any
    cutlass::Status init(int E, float beta, int sm_count)
    {
        cutlass::KernelHardwareInfo hw;
        CUDA_CHECK(cudaGetDevice(&hw.device_id));
        hw.sm_count = sm_count;
        typename P::Gemm::Arguments args;
        decltype(args.epilogue.thread) fusion;
        fusion.alpha = 1.0f;
        fusion.beta = beta;
        fusion.alpha_ptr = nullptr;
        fusion.beta_ptr = nullptr;
        fusion.alpha_ptr_array = nullptr;
        fusion.beta_ptr_array = nullptr;
        fusion.dAlpha = {_0{}, _0{}, 0};   // one alpha and one beta for every group
        fusion.dBeta = {_0{}, _0{}, 0};
        // no host copy of the problem sizes: the grid is one block per SM,
        // and the blocks read the sizes on the device; C only where it is read
        using PtrC = decltype(args.epilogue.ptr_C);
        PtrC c = nullptr;
        if constexpr (P::reads_c) c = arr.c;
        args = typename P::Gemm::Arguments{
            cutlass::gemm::GemmUniversalMode::kGrouped, {E, arr.shape, nullptr}, {arr.a, arr.sa, arr.b, arr.sb}, {fusion, c, arr.sc, arr.d, arr.sd}, hw};
        cutlass::Status st = gemm.can_implement(args);
        if (st != cutlass::Status::kSuccess) return st;
        size_t bytes = P::Gemm::get_workspace_size(args);
        if (bytes) CUDA_CHECK(cudaMalloc(&workspace, bytes));
        return gemm.initialize(args, workspace);
    }

    void run(int product, const int *offs, int E, int k, int n, long w_stride, const bf16 *A, const bf16 *B, typename P::C *C,
             typename P::C *D, cudaStream_t stream)
    {
        problems<P><<<(E + 127) / 128, 128, 0, stream>>>(arr, product, offs, E, k, n, w_stride, A, B, C, D);
        CUDA_CHECK(cudaGetLastError());
        CUTLASS_CHECK(gemm.run(stream));
    }

    void free_workspace() { if (workspace) CUDA_CHECK(cudaFree(workspace)); }
};

} // namespace sigma_cutlass
using namespace sigma_cutlass;

struct CutlassExperts {
    int E;
    char *arrays;   // the three runners' argument arrays, one allocation
    Runner<Forward> forward;
    Runner<BackwardInput> backward_input;
    Runner<BackwardWeight> backward_weight;
};

extern "C" CutlassExperts *cutlass_experts_create(int E, char *why, size_t n)
{
    int dev, major, minor, sms;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    if (major != 9 || minor != 0) {   // sm_90a code runs on sm_90 alone
        snprintf(why, n, "CUTLASS's grouped products are built for sm_90 (H100, H200), this GPU is sm_%d%d", major, minor);
        return NULL;
    }
    CutlassExperts *c = new CutlassExperts();
    c->E = E;
    size_t b0 = (c->forward.carve(NULL, E) + 255) & ~(size_t)255, b1 = (c->backward_input.carve(NULL, E) + 255) & ~(size_t)255,
           b2 = c->backward_weight.carve(NULL, E);   // each runner's arrays from a 256-byte boundary
    CUDA_CHECK(cudaMalloc(&c->arrays, b0 + b1 + b2));
    c->forward.carve(c->arrays, E);
    c->backward_input.carve(c->arrays + b0, E);
    c->backward_weight.carve(c->arrays + b0 + b1, E);
    cutlass::Status st[3] = {c->forward.init(E, 0.0f, sms), c->backward_input.init(E, 0.0f, sms),
                             c->backward_weight.init(E, 1.0f, sms)};   // the last added to the gradient already there
    for (int i = 0; i < 3; i++)
        if (st[i] != cutlass::Status::kSuccess) {
            snprintf(why, n, "CUTLASS cannot set up its %s product: %s", i == 0 ? "forward" : i == 1 ? "input gradient's" : "weight gradient's",
                     cutlassGetStatusString(st[i]));
            cutlass_experts_free(c);
            return NULL;
        }
    // initialize() prepared the workspaces on the legacy default stream,
    // which the model's non-blocking streams do not wait for
    CUDA_CHECK(cudaDeviceSynchronize());
    return c;
}

extern "C" void cutlass_experts_free(CutlassExperts *c)
{
    if (!c) return;
    c->forward.free_workspace();
    c->backward_input.free_workspace();
    c->backward_weight.free_workspace();
    CUDA_CHECK(cudaFree(c->arrays));
    delete c;
}

static void check_aligned(const void *p, const char *what)
{
    if ((uintptr_t)p % 16) BUG("CUTLASS expert product: %s at %p is not 16-byte aligned", what, p);
}
static void check_call(const CutlassExperts *c, int E, long w_stride, const void *a, const void *b, const void *d)
{
    if (E != c->E) BUG("CUTLASS expert products made for %d experts, called for %d", c->E, E);
    if (w_stride % 8) BUG("CUTLASS expert product: experts %ld elements apart, not whole 16-byte rows", w_stride);
    check_aligned(a, "A");
    check_aligned(b, "B");
    check_aligned(d, "D");
}

extern "C" void cutlass_linear_forward(CutlassExperts *c, __nv_bfloat16 *out, const __nv_bfloat16 *inp, const __nv_bfloat16 *w,
                                       long w_stride, const int *offs, int E, int k, int n, cudaStream_t stream)
{
    check_call(c, E, w_stride, inp, w, out);
    c->forward.run(ROUTE_FORWARD, offs, E, k, n, w_stride, (const bf16 *)inp, (const bf16 *)w, nullptr, (bf16 *)out, stream);
}

extern "C" void cutlass_linear_backward_input(CutlassExperts *c, float *dinp, const __nv_bfloat16 *dout, const __nv_bfloat16 *w,
                                              long w_stride, const int *offs, int E, int k, int n, cudaStream_t stream)
{
    check_call(c, E, w_stride, dout, w, dinp);
    c->backward_input.run(ROUTE_BACKWARD_INPUT, offs, E, k, n, w_stride, (const bf16 *)dout, (const bf16 *)w, nullptr, dinp, stream);
}

extern "C" void cutlass_linear_backward_weight(CutlassExperts *c, float *dw, long w_stride, const __nv_bfloat16 *dout,
                                               const __nv_bfloat16 *inp, const int *offs, int E, int k, int n, cudaStream_t stream)
{
    check_call(c, E, w_stride, dout, inp, dw);
    c->backward_weight.run(ROUTE_BACKWARD_WEIGHT, offs, E, k, n, w_stride, (const bf16 *)dout, (const bf16 *)inp, dw, dw, stream);
}

#else   // no CUTLASS in this build: the model takes another path

struct CutlassExperts {
    int unused;
};

extern "C" CutlassExperts *cutlass_experts_create(int E, char *why, size_t n)
{
#ifdef SIGMA_EMU
    snprintf(why, n, "the CPU emulation of CUDA does not run CUTLASS's kernels");
#else
    snprintf(why, n, "this build has no CUTLASS kernels (built with LIBKERNELS=0, or without CUTLASS's headers: scripts/gpu-libs)");
#endif
    return NULL;
}
extern "C" void cutlass_experts_free(CutlassExperts *c) { (void)c; }
#define NOT_BUILT BUG("CUTLASS expert products called in a build without them")
extern "C" void cutlass_linear_forward(CutlassExperts *, __nv_bfloat16 *, const __nv_bfloat16 *, const __nv_bfloat16 *, long,
                                       const int *, int, int, int, cudaStream_t) { NOT_BUILT; }
extern "C" void cutlass_linear_backward_input(CutlassExperts *, float *, const __nv_bfloat16 *, const __nv_bfloat16 *, long,
                                              const int *, int, int, int, cudaStream_t) { NOT_BUILT; }
extern "C" void cutlass_linear_backward_weight(CutlassExperts *, float *, long, const __nv_bfloat16 *, const __nv_bfloat16 *,
                                               const int *, int, int, int, cudaStream_t) { NOT_BUILT; }
#undef NOT_BUILT

#endif

extern "C" int cutlass_experts_supported(int k, int n) { return k > 0 && n > 0 && k % 8 == 0 && n % 8 == 0; }
