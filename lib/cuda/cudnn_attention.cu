// Causal grouped-query attention through cuDNN's graph API: see
// cudnn_attention.h. The graphs are built with the cudnn-frontend headers
// (scripts/gpu-libs), as llm.c's cudnn_att.cpp builds them, over the
// tensors where the model keeps them (sdpa_plan.h, tested on the host).
//
// libcudnn is not linked: the tools would not start where it is missing,
// on the CPU or with the other attention paths. The frontend calls a few
// functions of cuDNN's C API; this file defines each of them as a call
// through a pointer that cudnn_attention_create fills from dlopen's
// libcudnn.so.9, after checking that its major version is the headers'.
// (The frontend's own dynamic loading would also load the CUDA runtime
// dynamically, a second copy beside the static one the tools link.)
//
// Determinism: cuDNN 9 offers a deterministic fused backward on Hopper
// (set_deterministic_algorithm): dQ is summed in a fixed order, through a
// workspace of B * H * T^2 bf16 (1 GiB for nano's 8 x 2048 x 16 heads),
// or, from cuDNN 9.25 and when CUDNN_FRONTEND_ATTN_DP_WORKSPACE_LIMIT caps
// that workspace, in ordered steps with one linear in T. The forward has no
// reduction across blocks and is deterministic as it is.
//
// Built only where the headers are (SIGMA_CUDNN) and never on the CPU
// emulation: there cudnn_attention_create says why not, and the model
// takes another path.
#include "cuda/cudnn_attention.h"

#include "cuda/cuda_check.h"
#include "cuda/sdpa_plan.h"

#include <math.h>
#include <stdio.h>

int cudnn_attention_supported(int hd) { return hd > 0 && hd <= 128 && hd % 8 == 0; }

#if defined(SIGMA_CUDNN) && !defined(SIGMA_EMU)

#include <dlfcn.h>

#include <cudnn_frontend.h>

#include <map>
#include <memory>
#include <string>
#include <unordered_map>

namespace fe = cudnn_frontend;

static inline void cudnn_check(cudnnStatus_t s, const char *what, const char *file, int line)
{
    if (s != CUDNN_STATUS_SUCCESS) die_at(file, line, "cuDNN: %s: %s", what, cudnnGetErrorString(s));
}
#define CUDNN_CHECK(call) cudnn_check((call), #call, __FILE__, __LINE__)

// ---------------------------------------------------------------- libcudnn, loaded at run time

// The C API's functions the frontend calls, each through a pointer from
// libcudnn.so.9. X(return type, name, parameters, arguments).
#define CUDNN_FUNCTIONS(X)                                                                                                        \
    X(size_t, cudnnGetVersion, (void), ())                                                                                        \
    X(size_t, cudnnGetCudartVersion, (void), ())                                                                                  \
    X(const char *, cudnnGetErrorString, (cudnnStatus_t s), (s))                                                                  \
    X(void, cudnnGetLastErrorString, (char *message, size_t max_size), (message, max_size))                                       \
    X(cudnnStatus_t, cudnnCreate, (cudnnHandle_t * handle), (handle))                                                             \
    X(cudnnStatus_t, cudnnDestroy, (cudnnHandle_t handle), (handle))                                                              \
    X(cudnnStatus_t, cudnnSetStream, (cudnnHandle_t handle, cudaStream_t stream), (handle, stream))                               \
    X(cudnnStatus_t, cudnnGetStream, (cudnnHandle_t handle, cudaStream_t * stream), (handle, stream))                             \
    X(cudnnStatus_t, cudnnBackendCreateDescriptor, (cudnnBackendDescriptorType_t type, cudnnBackendDescriptor_t * d), (type, d))  \
    X(cudnnStatus_t, cudnnBackendDestroyDescriptor, (cudnnBackendDescriptor_t d), (d))                                            \
    X(cudnnStatus_t, cudnnBackendInitialize, (cudnnBackendDescriptor_t d), (d))                                                   \
    X(cudnnStatus_t, cudnnBackendFinalize, (cudnnBackendDescriptor_t d), (d))                                                     \
    X(cudnnStatus_t, cudnnBackendSetAttribute,                                                                                    \
      (cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,            \
       const void *values),                                                                                                       \
      (d, name, type, count, values))                                                                                             \
    X(cudnnStatus_t, cudnnBackendGetAttribute,                                                                                    \
      (cudnnBackendDescriptor_t const d, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,                     \
       int64_t requested, int64_t *count, void *values),                                                                          \
      (d, name, type, requested, count, values))                                                                                  \
    X(cudnnStatus_t, cudnnBackendExecute, (cudnnHandle_t handle, cudnnBackendDescriptor_t plan, cudnnBackendDescriptor_t pack), \
      (handle, plan, pack))

static void *libcudnn;
#define POINTER(ret, name, params, args) static ret(*p_##name) params;
CUDNN_FUNCTIONS(POINTER)
#undef POINTER
// Called before cudnn_attention_create loaded the library: a bug here.
#define DEFINE(ret, name, params, args)                                                                                          \
    extern "C" ret name params                                                                                                    \
    {                                                                                                                             \
        if (!p_##name) BUG("cuDNN's %s called before libcudnn was loaded", #name);                                              \
        return p_##name args;                                                                                                     \
    }
CUDNN_FUNCTIONS(DEFINE)
#undef DEFINE

// The frontend also holds an engine for Blackwell's RMSNorm that compiles
// its kernel with NVRTC: never built for attention, but its calls would
// tie the tools to libnvrtc. Here they fail, as NVRTC would without a GPU.
#define NVRTC_FUNCTIONS(X)                                                                                                        \
    X(nvrtcCreateProgram, (nvrtcProgram *, const char *, const char *, int, const char *const *, const char *const *))            \
    X(nvrtcDestroyProgram, (nvrtcProgram *))                                                                                      \
    X(nvrtcCompileProgram, (nvrtcProgram, int, const char *const *))                                                              \
    X(nvrtcGetCUBINSize, (nvrtcProgram, size_t *))                                                                                \
    X(nvrtcGetCUBIN, (nvrtcProgram, char *))                                                                                      \
    X(nvrtcGetProgramLogSize, (nvrtcProgram, size_t *))                                                                           \
    X(nvrtcGetProgramLog, (nvrtcProgram, char *))
#define UNAVAILABLE(name, params) \
    extern "C" nvrtcResult name params { return NVRTC_ERROR_INTERNAL_ERROR; }
NVRTC_FUNCTIONS(UNAVAILABLE)
#undef UNAVAILABLE

// libcudnn.so.9 (the headers' major version) from the library path, and
// every pointer above; 0, or -1 with why.
static int load_cudnn(int verbose, char *why, size_t n)
{
    if (libcudnn) return 0;
    char name[32];
    snprintf(name, sizeof name, "libcudnn.so.%d", CUDNN_MAJOR);
    void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(why, n, "cannot load %s (%s): set LD_LIBRARY_PATH to a cuDNN %d, e.g. PyTorch's nvidia/cudnn/lib", name, dlerror(),
                 CUDNN_MAJOR);
        return -1;
    }
#define RESOLVE(ret, fname, params, args)                                                                                       \
    if (!(p_##fname = (ret(*) params)dlsym(lib, #fname))) {                                                                      \
        snprintf(why, n, "%s has no %s: not a cuDNN %d", name, #fname, CUDNN_MAJOR);                                           \
        dlclose(lib);                                                                                                            \
        return -1;                                                                                                               \
    }
    CUDNN_FUNCTIONS(RESOLVE)
#undef RESOLVE
    size_t v = p_cudnnGetVersion(), rt = p_cudnnGetCudartVersion();
    if (v / 10000 != CUDNN_MAJOR) {   // the backend API's descriptors and enums are fixed within a major version
        snprintf(why, n, "%s is cuDNN %zu.%zu.%zu; this build's headers are %d.%d", name, v / 10000, v / 100 % 100, v % 100,
                 CUDNN_MAJOR, CUDNN_MINOR);
        dlclose(lib);
        return -1;
    }
    if ((int)(rt / 1000) != CUDART_VERSION / 1000)
        warn("cuDNN %zu.%zu.%zu was built for CUDA %zu, this program for CUDA %d", v / 10000, v / 100 % 100, v % 100, rt / 1000,
             CUDART_VERSION / 1000);
    if (verbose)
        info("cudnn: %s, version %zu.%zu.%zu (headers %d.%d, frontend %d.%d.%d)", name, v / 10000, v / 100 % 100, v % 100, CUDNN_MAJOR,
             CUDNN_MINOR, CUDNN_FRONTEND_MAJOR_VERSION, CUDNN_FRONTEND_MINOR_VERSION, CUDNN_FRONTEND_PATCH_VERSION);
    libcudnn = lib;   // kept for the life of the process, as the pointers are
    return 0;
}

// ---------------------------------------------------------------- the graphs and their plans

enum { UID_Q = 1, UID_K, UID_V, UID_O, UID_STATS, UID_DO, UID_DQ, UID_DK, UID_DV };

struct PlanKey {
    int backward;
    SdpaShape s;
    bool operator<(const PlanKey &o) const { return backward != o.backward ? backward < o.backward : sdpa_shape_cmp(&s, &o.s) < 0; }
};

struct CudnnAttention {
    cudnnHandle_t handle;
    std::map<PlanKey, std::shared_ptr<fe::graph::Graph>> plans;
    void *workspace;
    int64_t workspace_bytes;
};

static std::shared_ptr<fe::graph::Tensor_attributes> tensor(fe::graph::Graph &g, const SdpaTensor *t, int which, int uid,
                                                            const char *name)
{
    const SdpaTensor &x = t[which];
    auto a = fe::graph::Tensor_attributes()
                 .set_name(name)
                 .set_uid(uid)
                 .set_dim({x.dim[0], x.dim[1], x.dim[2], x.dim[3]})
                 .set_stride({x.stride[0], x.stride[1], x.stride[2], x.stride[3]});
    if (which == SDPA_STATS) a.set_data_type(fe::DataType_t::FLOAT);
    return g.tensor(a);
}
// An output's dimensions, strides and uid, as the inputs are set.
static void output(const std::shared_ptr<fe::graph::Tensor_attributes> &o, const SdpaTensor *t, int which, int uid)
{
    const SdpaTensor &x = t[which];
    o->set_output(true).set_uid(uid).set_dim({x.dim[0], x.dim[1], x.dim[2], x.dim[3]}).set_stride(
        {x.stride[0], x.stride[1], x.stride[2], x.stride[3]});
    if (which == SDPA_STATS) o->set_data_type(fe::DataType_t::FLOAT);
}

// A graph checked, lowered and its plan built, by cuDNN's heuristics (A,
// then the fallback list), or the first step's complaint.
#define STEP(call)                                      \
    do {                                                \
        fe::error_object r_ = (call);                   \
        if (!r_.is_good()) return r_;                   \
    } while (0)
static fe::error_object finalize(fe::graph::Graph &g, cudnnHandle_t h)
{
    STEP(g.validate());
    STEP(g.build_operation_graph(h));
    STEP(g.create_execution_plans({fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK}));
    STEP(g.check_support(h));
    STEP(g.build_plans(h));
    return fe::error_object();
}
#undef STEP

// The forward or backward graph of shape s with its plan built; NULL, with
// cuDNN's reason in *err, where cuDNN has none. (Some of the frontend's
// checks throw: build() turns those into a reason too.)
static std::shared_ptr<fe::graph::Graph> build_graph(CudnnAttention *a, int backward, const SdpaShape &s, std::string *err)
{
    SdpaTensor t[SDPA_TENSORS];
    sdpa_tensors(t, &s);
    float scale = 1.0f / sqrtf((float)s.hd);
    auto g = std::make_shared<fe::graph::Graph>();
    g->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    auto Q = tensor(*g, t, SDPA_Q, UID_Q, "Q"), K = tensor(*g, t, SDPA_K, UID_K, "K"), V = tensor(*g, t, SDPA_V, UID_V, "V");
    if (!backward) {
        auto opt = fe::graph::SDPA_attributes().set_name("sdpa").set_generate_stats(true).set_causal_mask(true).set_attn_scale(scale);
        auto [O, stats] = g->sdpa(Q, K, V, opt);
        output(O, t, SDPA_O, UID_O);
        output(stats, t, SDPA_STATS, UID_STATS);
    } else {
        auto O = tensor(*g, t, SDPA_O, UID_O, "O"), dO = tensor(*g, t, SDPA_DO, UID_DO, "dO");
        auto stats = tensor(*g, t, SDPA_STATS, UID_STATS, "stats");
        auto opt = fe::graph::SDPA_backward_attributes()
                       .set_name("sdpa_backward")
                       .set_causal_mask(true)
                       .set_attn_scale(scale)
                       .set_deterministic_algorithm(true);
        auto [dQ, dK, dV] = g->sdpa_backward(Q, K, V, O, dO, stats, opt);
        output(dQ, t, SDPA_DQ, UID_DQ);
        output(dK, t, SDPA_DK, UID_DK);
        output(dV, t, SDPA_DV, UID_DV);
    }
    fe::error_object e = finalize(*g, a->handle);
    if (!e.is_good()) {
        *err = e.get_message();
        return nullptr;
    }
    int64_t bytes = 0;
    if (!g->get_workspace_size(bytes).is_good()) BUG("cuDNN: no workspace size for a built plan");
    if (bytes > a->workspace_bytes) {   // grown, never shrunk: one workspace serves every plan, on one stream
        if (a->workspace) CUDA_CHECK(cudaFree(a->workspace));   // cudaFree waits for the work that used it
        CUDA_CHECK(cudaMalloc(&a->workspace, (size_t)bytes));
        a->workspace_bytes = bytes;
    }
    return g;
}
static std::shared_ptr<fe::graph::Graph> build(CudnnAttention *a, int backward, const SdpaShape &s, std::string *err)
{
    try {
        return build_graph(a, backward, s, err);
    } catch (const std::exception &x) {
        *err = x.what();
        return nullptr;
    }
}

// The cached plan of s, built on first use; a shape cuDNN cannot take,
// after the largest could, is an error.
static fe::graph::Graph &plan(CudnnAttention *a, int backward, const SdpaShape &s)
{
    PlanKey key = {backward, s};
    auto it = a->plans.find(key);
    if (it != a->plans.end()) return *it->second;
    std::string err;
    auto g = build(a, backward, s, &err);
    if (!g)
        die("cuDNN has no %s attention plan for B %d, T %d, %d/%d heads of %d: %s", backward ? "backward" : "forward", s.B, s.T, s.H,
            s.KV, s.hd, err.c_str());
    a->plans[key] = g;
    return *g;
}

static void execute(CudnnAttention *a, fe::graph::Graph &g, std::unordered_map<int64_t, void *> &pack, cudaStream_t stream)
{
    CUDNN_CHECK(cudnnSetStream(a->handle, stream));
    fe::error_object e;
    try {
        e = g.execute(a->handle, pack, a->workspace);
    } catch (const std::exception &x) {
        BUG("cuDNN: execute: %s", x.what());
    }
    if (!e.is_good()) BUG("cuDNN: execute: %s", e.get_message().c_str());
}

extern "C" CudnnAttention *cudnn_attention_create(int B, int T, int H, int KV, int hd, int ldv, int verbose, char *why, size_t n)
{
    if (!cudnn_attention_supported(hd)) {
        snprintf(why, n, "cuDNN's fused attention takes heads of 8 to 128 elements in steps of 8, not %d", hd);
        return NULL;
    }
    if (load_cudnn(verbose, why, n)) return NULL;
    CudnnAttention *a = new CudnnAttention();
    cudnnStatus_t st = cudnnCreate(&a->handle);
    if (st != CUDNN_STATUS_SUCCESS) {
        snprintf(why, n, "cudnnCreate: %s", cudnnGetErrorString(st));
        delete a;
        return NULL;
    }
    SdpaShape s = {B, T, H, KV, hd, ldv};
    for (int backward = 0; backward < 2; backward++) {
        std::string err;
        auto g = build(a, backward, s, &err);
        if (!g) {
            snprintf(why, n, "cuDNN has no %s plan for B %d, T %d, %d/%d heads of %d: %s", backward ? "backward" : "forward", B, T, H, KV,
                     hd, err.c_str());
            cudnn_attention_free(a);
            return NULL;
        }
        a->plans[PlanKey{backward, s}] = g;
    }
    if (verbose) info("gpu memory: %-40s %9.3f GiB", "cuDNN attention workspace", a->workspace_bytes / 1073741824.0);
    return a;
}

extern "C" void cudnn_attention_free(CudnnAttention *a)
{
    if (!a) return;
    a->plans.clear();
    if (a->workspace) CUDA_CHECK(cudaFree(a->workspace));
    CUDNN_CHECK(cudnnDestroy(a->handle));
    delete a;
}

extern "C" void cudnn_attention_forward(CudnnAttention *a, __nv_bfloat16 *out, float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                                        const __nv_bfloat16 *v, int ldv, int B, int T, int H, int KV, int hd, cudaStream_t stream)
{
    SdpaShape s = {B, T, H, KV, hd, ldv};
    std::unordered_map<int64_t, void *> pack = {
        {UID_Q, (void *)q}, {UID_K, (void *)k}, {UID_V, (void *)v}, {UID_O, out}, {UID_STATS, lse}};
    execute(a, plan(a, 0, s), pack, stream);
}

extern "C" void cudnn_attention_backward(CudnnAttention *a, __nv_bfloat16 *dq, __nv_bfloat16 *dk, __nv_bfloat16 *dv,
                                         const __nv_bfloat16 *dout, const __nv_bfloat16 *out, const __nv_bfloat16 *q,
                                         const __nv_bfloat16 *k, const __nv_bfloat16 *v, int ldv, const float *lse, int B, int T, int H,
                                         int KV, int hd, cudaStream_t stream)
{
    SdpaShape s = {B, T, H, KV, hd, ldv};
    std::unordered_map<int64_t, void *> pack = {{UID_Q, (void *)q},     {UID_K, (void *)k},      {UID_V, (void *)v},
                                                {UID_O, (void *)out},   {UID_DO, (void *)dout}, {UID_STATS, (void *)lse},
                                                {UID_DQ, dq},           {UID_DK, dk},           {UID_DV, dv}};
    execute(a, plan(a, 1, s), pack, stream);
}

#else   // no cuDNN in this build: the model takes another path

struct CudnnAttention {
    int unused;
};

extern "C" CudnnAttention *cudnn_attention_create(int B, int T, int H, int KV, int hd, int ldv, int verbose, char *why, size_t n)
{
#ifdef SIGMA_EMU
    snprintf(why, n, "the CPU emulation of CUDA does not run cuDNN");
#else
    snprintf(why, n, "this build has no cuDNN attention (built with LIBKERNELS=0, or without cudnn.h or the frontend's headers)");
#endif
    return NULL;
}
extern "C" void cudnn_attention_free(CudnnAttention *a) { (void)a; }
extern "C" void cudnn_attention_forward(CudnnAttention *, __nv_bfloat16 *, float *, const __nv_bfloat16 *, const __nv_bfloat16 *,
                                        const __nv_bfloat16 *, int, int, int, int, int, int, cudaStream_t)
{
    BUG("cuDNN attention called in a build without it");
}
extern "C" void cudnn_attention_backward(CudnnAttention *, __nv_bfloat16 *, __nv_bfloat16 *, __nv_bfloat16 *, const __nv_bfloat16 *,
                                         const __nv_bfloat16 *, const __nv_bfloat16 *, const __nv_bfloat16 *, const __nv_bfloat16 *, int,
                                         const float *, int, int, int, int, int, cudaStream_t)
{
    BUG("cuDNN attention called in a build without it");
}

#endif
