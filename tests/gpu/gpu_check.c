/* The CUDA core against the CPU reference (model.c): the same weights and
 * the same real text through both, then losses, logits and every
 * parameter's gradient compared tensor by tensor (relative error of the
 * whole tensor, bf16 bounds as in METHOD.md), for each balance loss, top-1
 * and top-2, masks, tied embeddings and recomputed experts; every GPU
 * buffer poisoned with NaN first. Then determinism (two runs, the same
 * bits), experts without tokens (zero gradient), the gradient norm and
 * AdamW on the same gradients. The cases run again with the fused
 * attention and with the grouped expert products, and on a GPU with
 * cuDNN's attention and CUTLASS's expert products (the emulation cannot
 * run those; there, asking for them must give the cuBLAS paths back).
 * Every case checks that the model took the paths it was asked for. Packed rows (pos, as
 * model_forward's: documents of uneven lengths one after another in a row)
 * are checked the same way against the CPU, and each document's logits
 * against the same document run alone on the GPU. Needs a GPU; TAP on
 * stdout. Built with -DSIGMA_EMU and linked with the CUDA core built for
 * the CPU emulation (tests/emu/cuda_emu.h), it runs in make test: the whole
 * CUDA model's logic against the CPU's, on a machine without a GPU. */
#include "../tap.h"
#include "../compare.h"
#include "base/base.h"
#include "cuda/gpu_model.h"
#include "model/model.h"
#include "model/adamw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOL_GRAD 3e-2   /* relative L2 error of a gradient tensor, bf16 activations */
#define TOL_NORM 5e-2   /* a norm weight's: a sum over tokens of terms that largely cancel */
#define TOL_LOSS 1e-2

static unsigned char *text;
static size_t text_len;

/* Real text as byte tokens: the repository's own README, man pages and source. */
static void load_text(void)
{
    const char *files[] = {"README.md", "man/sigma-pretrain.1", "man/sigma-formats.5", "man/sigma-tokenize.1", "lib/model/model.c"};
    const char *root = getenv("SIGMA_ROOT");
    text = NULL;
    text_len = 0;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *path = xasprintf("%s/%s", root ? root : ".", files[i]);
        if (path_exists(path)) {
            size_t n;
            char *b = read_file(path, SIZE_MAX, &n);
            text = xrealloc(text, text_len + n);
            memcpy(text + text_len, b, n);
            text_len += n;
            free(b);
        }
        free(path);
    }
    if (text_len < 50000) BUG("too little text for the GPU test (%zu bytes)", text_len);
}

static int close_to(double a, double b, double tol) { return fabs(a - b) <= tol * fmax(fabs(b), 1e-3); }

typedef struct {
    const char *name;
    const char *preset;
    int vocab, B, T, tie, recompute, mask;
    int k[2];                  /* top-k of the first layer, of the rest */
    BalanceOptions bo;
    int global;                /* lbl over supplied global counts */
    int head_dim;              /* 0: the preset's */
    int packed;                /* rows of several documents, positions restarting at each */
} Case;

static uint64_t seed;

/* pos[B*T]: each row cut into documents of uneven lengths (1 + T/6 up to
 * about T/2 + T/6, the last cut at T), positions 0, 1, ... in each. */
static void packed_positions(int *pos, int B, int T, uint64_t *s)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T;) {
            int len = 1 + T / 6 + (int)(splitmix64(s) % (uint64_t)(T / 2));
            for (int i = 0; i < len && t < T; i++) pos[(size_t)b * T + t++] = i;
        }
}

/* Each document of a packed forward's rows run alone (one row of its
 * length, no positions) on the GPU: its logits as the packed row's, but for
 * the rounding of the attention's sums taken in another order. */
static void check_documents_alone(GpuModel *g, const Case *cs, const Config *c, const uint32_t *in, const int *pos,
                                  const float *glogits, const BalanceOptions *bo, const float *bias)
{
    const int B = cs->B, T = cs->T, V = c->vocab_size;
    double worst = 0;
    int docs = 0, finite = 1;
    for (int b = 0; b < B; b++)
        for (int t0 = 0; t0 < T;) {
            int len = 1;
            while (t0 + len < T && pos[(size_t)b * T + t0 + len]) len++;
            size_t n0 = (size_t)b * T + t0;
            gpu_model_forward(g, c, in + n0, NULL, NULL, NULL, 1, len, bo, bias, NULL);
            const float *alone = gpu_model_logits(g);
            for (size_t i = 0; i < (size_t)len * V; i++) finite &= isfinite(alone[i]);
            double e = rel_l2_err(alone, glogits + n0 * V, (size_t)len * V);
            worst = e > worst ? e : worst;
            docs++;
            t0 += len;
        }
    ok(finite && worst < TOL_LOSS, "%s: each of %d documents run alone has the packed rows' logits (worst relative error %.2e)",
       cs->name, docs, worst);
}

static void run_case(const Case *cs, size_t offset)
{
    Config c;
    config_preset(&c, cs->preset, cs->vocab);
    c.tie_embeddings = cs->tie;
    if (cs->head_dim) c.head_dim = cs->head_dim;
    for (int l = 0; l < c.n_layers; l++) c.top_k[l] = l ? cs->k[1] : cs->k[0];
    const int B = cs->B, T = cs->T, N = B * T, L = c.n_layers, E = c.n_experts;
    Model m;
    model_init(&m, &c, B, T);
    model_init_params(&m, seed + offset, 0.02f);
    uint64_t s = seed + offset + 99;
    for (int i = 0; i < L * E; i++) m.expert_bias[i] = balance_uses_bias(&cs->bo) ? (float)((double)(splitmix64(&s) >> 11) * 0x1.0p-53 * 0.2) : 0.0f;
    uint32_t *in = xmalloc((size_t)N * sizeof(uint32_t)), *tg = xmalloc((size_t)N * sizeof(uint32_t));
    float *mask = xmalloc((size_t)N * sizeof(float));
    int *pos = NULL;
    if (cs->packed) {
        pos = xmalloc((size_t)N * sizeof(int));
        packed_positions(pos, B, T, &s);
    }
    offset = (offset + splitmix64(&s)) % text_len;   /* a fresh stretch of text each run */
    for (int n = 0; n < N; n++) {
        in[n] = text[(offset + (size_t)n) % (text_len - 1)];
        tg[n] = text[(offset + (size_t)n + 1) % (text_len - 1)];
        mask[n] = text[(offset + (size_t)n) % text_len] != ' ';
    }
    BalanceOptions bo = cs->bo;
    float *gcounts = xcalloc((size_t)L * E, sizeof(float)), *gtokens = xcalloc((size_t)L, sizeof(float));
    if (cs->global) {   /* a step of two micro-batches: this one and another whose counts we make up */
        BalanceOptions none = {.kind = BALANCE_NONE};
        model_forward(&m, in, tg, NULL, pos, B, T, &none);
        for (int i = 0; i < L * E; i++) gcounts[i] = m.counts[i] + (float)(i % 7);
        for (int l = 0; l < L; l++) {
            float t = 0;
            for (int e = 0; e < E; e++) t += gcounts[l * E + e];
            gtokens[l] = t / (float)c.top_k[l];
        }
        bo.global_counts = gcounts;
        bo.global_tokens = gtokens;
    }
    const float *mk = cs->mask ? mask : NULL;

    /* the CPU's own routing, for the comparison of routings below */
    model_forward(&m, in, tg, mk, pos, B, T, &bo);
    int *cpu_sel[MODEL_MAX_LAYERS], kc[MODEL_MAX_LAYERS];
    for (int l = 0; l < L; l++) {
        const int *sc = model_selection(&m, l, &kc[l]);
        cpu_sel[l] = xmalloc((size_t)N * kc[l] * sizeof(int));
        memcpy(cpu_sel[l], sc, (size_t)N * kc[l] * sizeof(int));
    }

    GpuPaths paths;   /* the environment's (run_cases sets it), and the case's recompute */
    gpu_paths_default(&paths);
    paths.recompute = cs->recompute;
    GpuPaths asked = paths;
    GpuModel *g = gpu_model_create(&m, &c, B, T, &paths, 0);
    ok(paths.attention == asked.attention && paths.experts == asked.experts, "%s: %s attention and %s experts taken as asked",
       cs->name, attention_path_name(paths.attention), experts_path_name(paths.experts));
    gpu_model_set_params(g, m.params);
    gpu_model_poison(g);
    gpu_model_zero_grads(g);
    float *gc = xmalloc((size_t)L * E * sizeof(float));
    Losses lg = gpu_model_forward(g, &c, in, tg, mk, pos, B, T, &bo, m.expert_bias, gc);
    float *glogits = xmalloc((size_t)N * c.vocab_size * sizeof(float));
    memcpy(glogits, gpu_model_logits(g), (size_t)N * c.vocab_size * sizeof(float));
    gpu_model_backward(g, 1.0f, 1.0f);
    float *gg = xmalloc(m.n_params * sizeof(float));
    gpu_model_get_grads(g, gg);

    /* Routing: the same experts for every token but near ties, which bf16
     * rounding may tip over. The reference is then the CPU replaying the
     * GPU's routing (forced_sel), so that both run the same discrete
     * computation and differ by rounding alone. */
    int moved = 0, worst_layer = 0, *gpu_sel[MODEL_MAX_LAYERS];
    for (int l = 0; l < L; l++) {
        int kg, here = 0;
        const int *sg = gpu_model_selection(g, l, &kg);
        gpu_sel[l] = xmalloc((size_t)N * kg * sizeof(int));
        memcpy(gpu_sel[l], sg, (size_t)N * kg * sizeof(int));
        for (int n = 0; n < N; n++) {
            int same = kc[l] == kg;
            for (int a = 0; a < kc[l] && same; a++) {
                int found = 0;
                for (int b2 = 0; b2 < kg; b2++) found |= cpu_sel[l][n * kc[l] + a] == sg[n * kg + b2];
                same &= found;
            }
            here += !same;
        }
        moved += here;
        worst_layer = here > worst_layer ? here : worst_layer;
        m.forced_sel[l] = gpu_sel[l];
    }
    model_zero_grads(&m);
    Losses lc = model_forward(&m, in, tg, mk, pos, B, T, &bo);
    model_backward(&m, 1.0f, 1.0f);
    double lerr = rel_l2_err(glogits, model_logits(&m), (size_t)N * c.vocab_size);
    for (int l = 0; l < L; l++) m.forced_sel[l] = NULL;

    diag("%s: ce cpu %.6f gpu %.6f, balance %.6f / %.6f, z %.6f / %.6f; logits error %.2e; %d token-layers routed differently",
         cs->name, lc.ce, lg.ce, lc.balance, lg.balance, lc.z, lg.z, lerr, moved);
    ok(close_to(lg.ce, lc.ce, TOL_LOSS) && close_to(lg.balance, lc.balance, TOL_LOSS) && close_to(lg.z, lc.z, TOL_LOSS),
       "%s: losses match the CPU", cs->name);
    ok(lerr < TOL_LOSS, "%s: logits match the CPU (relative error %.2e)", cs->name, lerr);
    ok(worst_layer <= N / 25, "%s: routing matches the CPU but for near ties (at most %d of %d tokens in a layer)", cs->name,
       worst_layer, N);
    double worst = 0;
    const char *worst_name = "";
    int finite = 1, zero_ok = 1, bad = 0;
    for (size_t i = 0; i < m.n_params; i++) finite &= isfinite(gg[i]);
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamTensor *t = &m.tensors[i];
        double e = rel_l2_err(gg + t->offset, m.grads + t->offset, t->numel);
        int l, x;
        char kind[32];
        /* an expert that no token reached: exactly zero on the GPU */
        if (sscanf(t->name, "model.layers.%d.mlp.experts.%d.%31[a-z_]", &l, &x, kind) == 3 && gc[l * E + x] == 0)
            for (size_t j = 0; j < t->numel; j++) zero_ok &= gg[t->offset + j] == 0.0f;
        if (e > (t->ndim == 1 ? TOL_NORM : TOL_GRAD)) {
            if (bad++ < 5) diag("%s: %s gradient relative error %.3e", cs->name, t->name, e);
        }
        if (e > worst) { worst = e; worst_name = t->name; }
    }
    ok(finite, "%s: every GPU gradient is finite (no poisoned value read)", cs->name);
    ok(bad == 0, "%s: every gradient tensor within %.0e of the CPU's, norms' %.0e (worst %.2e, %s)", cs->name, TOL_GRAD,
       TOL_NORM, worst, worst_name);
    ok(zero_ok, "%s: experts that received no token have zero gradients", cs->name);

    /* the same inputs again: the same bits */
    gpu_model_zero_grads(g);
    Losses l2 = gpu_model_forward(g, &c, in, tg, mk, pos, B, T, &bo, m.expert_bias, gc);
    gpu_model_backward(g, 1.0f, 1.0f);
    float *gg2 = xmalloc(m.n_params * sizeof(float));
    gpu_model_get_grads(g, gg2);
    ok(l2.loss == lg.loss && !memcmp(gg, gg2, m.n_params * sizeof(float)), "%s: deterministic (same loss and gradients bit for bit)",
       cs->name);
    free(gg2);
    if (pos) check_documents_alone(g, cs, &c, in, pos, glogits, &bo, m.expert_bias);

    gpu_model_free(g);
    model_free(&m);
    free(in);
    free(tg);
    free(mask);
    free(pos);
    free(gc);
    free(gg);
    free(gcounts);
    free(gtokens);
    free(glogits);
    for (int l = 0; l < L; l++) {
        free(cpu_sel[l]);
        free(gpu_sel[l]);
    }
}

/* The gradient norm and AdamW on the same gradients as the CPU's. */
static void check_optimizer(void)
{
    Config c;
    config_preset(&c, "micro", 4096);
    Model m;
    model_init(&m, &c, 1, 8);
    model_init_params(&m, 5, 0.02f);
    uint64_t s = 3;
    float *mom = xcalloc(2 * m.n_params, sizeof(float));
    for (size_t i = 0; i < m.n_params; i++) m.grads[i] = (float)(((double)(splitmix64(&s) >> 11) * 0x1.0p-53 - 0.5) * 1e-2);
    for (size_t i = 0; i < 2 * m.n_params; i++) mom[i] = (float)((double)(splitmix64(&s) >> 11) * 0x1.0p-53 * 1e-4);
    for (size_t i = m.n_params; i < 2 * m.n_params; i++) mom[i] *= mom[i];
    GpuModel *g = gpu_model_create(&m, &c, 1, 8, NULL, 0);
    gpu_model_set_params(g, m.params);
    gpu_model_set_moments(g, mom);
    gpu_model_set_grads(g, m.grads);
    double nc = l2_norm(m.grads, m.n_params), ng = gpu_model_grad_norm(g);
    ok(fabs(nc - ng) <= 1e-9 * nc, "gradient norm: GPU %.12f, CPU %.12f", ng, nc);
    AdamWStep st = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_scale = 0.5f, .t = 7};
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamTensor *p = &m.tensors[i];
        adamw_update(m.params + p->offset, mom + p->offset, mom + m.n_params + p->offset, m.grads + p->offset, p->numel, &st,
                     p->ndim == 2);
    }
    gpu_model_adamw(g, &st);
    float *pg = xmalloc(m.n_params * sizeof(float)), *mg = xmalloc(2 * m.n_params * sizeof(float));
    gpu_model_get_params(g, pg);
    gpu_model_get_moments(g, mg);
    /* elementwise, both in fp32: differences of rounding (fused multiply-adds) only */
    double dp = 0, dm = 0, mmax = 0, vmax = 0;
    for (size_t i = 0; i < m.n_params; i++) dp = fmax(dp, fabs(pg[i] - m.params[i]));
    for (size_t i = 0; i < m.n_params; i++) mmax = fmax(mmax, fabs(mom[i]));
    for (size_t i = m.n_params; i < 2 * m.n_params; i++) vmax = fmax(vmax, fabs(mom[i]));
    for (size_t i = 0; i < 2 * m.n_params; i++) dm = fmax(dm, fabs(mg[i] - mom[i]) / (i < m.n_params ? mmax : vmax));
    ok(dp < 1e-7 && dm < 1e-6, "AdamW: weights within %.1e, moments within %.1e (of their largest) of the CPU's", dp, dm);
    gpu_model_free(g);
    model_free(&m);
    free(mom);
    free(pg);
    free(mg);
}

#ifdef SIGMA_EMU
/* A path this build cannot take (the libraries' on the emulation) is
 * reported and replaced by cuBLAS's, and the model trains on. */
static void check_fallback(void)
{
    Config c;
    config_preset(&c, "micro", 512);   /* head size 32: both fused paths take it */
    Model m;
    model_init(&m, &c, 1, 8);
    model_init_params(&m, 7, 0.02f);
    GpuPaths p;
    gpu_paths_default(&p);
    p.attention = ATTENTION_CUDNN;
    p.experts = EXPERTS_CUTLASS;
    GpuModel *g = gpu_model_create(&m, &c, 1, 8, &p, 0);
    ok(p.attention == ATTENTION_CUBLAS && p.experts == EXPERTS_CUBLAS,
       "asked for cuDNN attention and CUTLASS experts on the emulation: %s and %s taken", attention_path_name(p.attention),
       experts_path_name(p.experts));
    uint32_t in[8], tg[8];
    for (int i = 0; i < 8; i++) in[i] = text[i], tg[i] = text[i + 1];
    gpu_model_set_params(g, m.params);
    Losses l = gpu_model_forward(g, &c, in, tg, NULL, NULL, 1, 8, NULL, m.expert_bias, NULL);
    gpu_model_backward(g, 1.0f, 1.0f);
    ok(isfinite(l.loss) && l.loss > 0, "  and trains on (loss %.4f)", l.loss);
    gpu_model_free(g);
    model_free(&m);
}
#endif

/* The cases whose indices are in `which`, with env=value set and the name
 * prefixed; each from its own stretch of text. */
static void run_cases(const Case *cases, size_t n, const char *which, const char *prefix, const char *env, const char *value,
                      size_t offset)
{
    if (env) setenv(env, value, 1);
    for (size_t i = 0; i < n; i++) {
        if (!strchr(which, (int)('0' + i))) continue;
        Case c = cases[i];
        char *name = xasprintf("%s%s", prefix, c.name);
        c.name = name;
        run_case(&c, 1000 * (i + offset));
        free(name);
    }
    if (env) unsetenv(env);
}

int main(void)
{
    sg_init("gpu_check");
    if (!gpu_count()) {
        printf("1..0 # SKIP no CUDA device\n");
        return 0;
    }
    load_text();
    /* fresh inputs each run on a GPU, the seed printed to repeat one; one
     * fixed seed on the emulation, which runs in every make test */
    const char *env = getenv("SIGMA_SEED");
#ifdef SIGMA_EMU
    seed = env ? strtoull(env, NULL, 10) : 20261130;
#else
    seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
#endif
    diag("seed %llu (SIGMA_SEED=%llu repeats this run)", (unsigned long long)seed, (unsigned long long)seed);
    const Case cases[] = {
        {"test, top-2/top-1, top-1 LBL, z-loss, mask", "test", 512, 2, 64, 0, 0, 1, {2, 1},
         {.kind = BALANCE_TOP1_LBL, .coef = 0.05f, .tau = 0.1f, .z_coef = 0.01f}, 0, 0, 0},
        {"test, top-1, LBL, tied embeddings", "test", 512, 4, 32, 1, 0, 0, {1, 1}, {.kind = BALANCE_LBL, .coef = 0.01f}, 0, 0, 0},
        {"micro, top-1, LBL over a global batch, recomputed experts", "micro", 4096, 4, 128, 0, 1, 0, {1, 1},
         {.kind = BALANCE_LBL, .coef = 0.01f}, 1, 0, 0},
        {"micro, top-2, aux-loss-free bias, z-loss", "micro", 4096, 2, 256, 0, 0, 0, {2, 2},
         {.kind = BALANCE_BIAS, .z_coef = 0.001f}, 0, 0, 0},
        /* the fused attention's tiles of 64: sequences that end inside one, other head sizes */
        {"micro, head size 64, T 100, top-1 LBL, mask", "micro", 4096, 3, 100, 0, 0, 1, {1, 1},
         {.kind = BALANCE_TOP1_LBL, .coef = 0.01f, .tau = 0.2f}, 0, 64, 0},
        {"micro, head size 128, T 200", "micro", 4096, 1, 200, 0, 0, 0, {1, 1}, {.kind = BALANCE_LBL, .coef = 0.01f}, 0, 128, 0},
        {"micro, head size 96, T 130, top-2", "micro", 4096, 2, 130, 0, 0, 0, {2, 1}, {.kind = BALANCE_LBL, .coef = 0.01f}, 0, 96, 0},
        /* packed rows: 2-4 documents of uneven lengths a row, beginning inside the fused attention's tiles */
        {"test, top-2/top-1, LBL, mask, packed rows", "test", 512, 2, 96, 0, 0, 1, {2, 1}, {.kind = BALANCE_LBL, .coef = 0.01f}, 0,
         0, 1},
        {"micro, top-1 LBL, z-loss, T 150, packed rows", "micro", 4096, 2, 150, 0, 0, 0, {1, 1},
         {.kind = BALANCE_TOP1_LBL, .coef = 0.01f, .tau = 0.2f, .z_coef = 0.001f}, 0, 0, 1},
        {"micro, head size 64, T 200, top-2, mask, packed rows", "micro", 4096, 2, 200, 0, 0, 1, {2, 1},
         {.kind = BALANCE_LBL, .coef = 0.01f}, 0, 64, 1},
    };
    const size_t n = sizeof cases / sizeof *cases;
    /* Which cases each path runs: the default; the fused attention (its
     * tiles and head sizes); the grouped expert products. Built against
     * the CPU emulation (make test), a few of each: it runs a warp one lane
     * at a time. */
#ifdef SIGMA_EMU
    const char *plain = "01237", *fused = "468", *grouped = "02";
#else
    const char *plain = "0123456789", *fused = "2345689", *grouped = "0123456789";
#endif
    run_cases(cases, n, plain, "", NULL, NULL, 0);
    run_cases(cases, n, fused, "fused attention, ", "SIGMA_ATTENTION", "flash", n);
    run_cases(cases, n, grouped, "grouped experts, ", "SIGMA_EXPERTS", "grouped", 2 * n);
#ifdef SIGMA_EMU
    check_fallback();
#else
    /* the libraries' paths: cuDNN's on the fused attention's cases (the
     * head sizes both take; packed rows go to the fused kernels), CUTLASS's
     * on every case, then both together on a few */
    run_cases(cases, n, fused, "cuDNN attention, ", "SIGMA_ATTENTION", "cudnn", 3 * n);
    run_cases(cases, n, grouped, "CUTLASS experts, ", "SIGMA_EXPERTS", "cutlass", 4 * n);
    setenv("SIGMA_EXPERTS", "cutlass", 1);
    run_cases(cases, n, "358", "cuDNN attention and CUTLASS experts, ", "SIGMA_ATTENTION", "cudnn", 5 * n);
    unsetenv("SIGMA_EXPERTS");
#endif
    check_optimizer();
    return tap_done();
}
