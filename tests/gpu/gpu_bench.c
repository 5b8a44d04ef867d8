/* Training speed of the CUDA core: forward + backward tokens/s of a preset
 * (optionally cut to fewer layers) at B x T, random weights and tokens,
 * with MFU against the H100/H200 dense bf16 peak (989 TFLOP/s) and against
 * a measured large cuBLAS bf16 product. One JSON line on stdout per
 * variant: the environment's kernel paths (SIGMA_ATTENTION, SIGMA_EXPERTS),
 * or each ATTENTION:EXPERTS pair of --variants in turn, one model after
 * another in this process, from the same host weights (made once, as is
 * the peak). A variant that the build, the machine or the shape does not
 * allow is a line with "error" and no timing: the model would have taken
 * another path, and its numbers would carry the wrong name. With
 * --profile, the time per phase (CUDA events) on stderr.
 * usage: gpu_bench PRESET B T STEPS [--layers N] [--vocab V] [--topk K]
 *                  [--recompute] [--profile] [--optimizer]
 *                  [--variants cublas:cublas,cudnn:cutlass,...] */
#include "base/base.h"
#include "cuda/gpu_model.h"
#include "model/model.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    const char *preset;
    int B, T, steps, recompute, prof, opt;
    double flops_tok, peak;
} Bench;

/* One variant: a model with paths `asked`, warmed up, timed, freed. */
static void bench_variant(const Bench *b, Model *m, const Config *c, const uint32_t *in, const uint32_t *tg, GpuPaths asked)
{
    const int N = b->B * b->T;
    GpuPaths paths = asked;
    paths.recompute = b->recompute;
    const char *att = attention_path_name(asked.attention), *exp = experts_path_name(asked.experts);
    GpuModel *g = gpu_model_create(m, c, b->B, b->T, &paths, 0);   /* writes back the paths it took */
    if (paths.attention != asked.attention || paths.experts != asked.experts) {
        printf("{\"impl\": \"sigma-cuda\", \"preset\": \"%s\", \"attention\": \"%s\", \"experts\": \"%s\", \"error\": \"not taken: the "
               "model took %s attention and %s experts (the warning on stderr says why)\"}\n",
               b->preset, att, exp, attention_path_name(paths.attention), experts_path_name(paths.experts));
        fflush(stdout);
        gpu_model_free(g);
        return;
    }
    gpu_model_set_params(g, m->params);
    BalanceOptions bo = {.kind = BALANCE_LBL, .coef = 1e-3f};
    float *counts = xmalloc((size_t)c->n_layers * c->n_experts * sizeof(float));
    AdamWStep st = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_scale = 1, .t = 1};
    double loss = 0;
    for (int i = 0; i < 2; i++) {   /* warm-up: cuBLAS picks its kernels */
        gpu_model_zero_grads(g);
        gpu_model_forward(g, c, in, tg, NULL, NULL, b->B, b->T, &bo, m->expert_bias, counts);
        gpu_model_backward(g, 1.0f, 1.0f);
    }
    gpu_profiler_range(1);   /* what `ncu --profile-from-start off` records: the timed steps */
    double t0 = now();
    for (int i = 0; i < b->steps; i++) {
        gpu_model_zero_grads(g);
        loss = gpu_model_forward(g, c, in, tg, NULL, NULL, b->B, b->T, &bo, m->expert_bias, counts).loss;
        gpu_model_backward(g, 1.0f, 1.0f);
        if (b->opt) {
            gpu_model_grad_norm(g);
            gpu_model_adamw(g, &st);
        }
    }
    gpu_profiler_range(0);
    gpu_model_grad_norm(g);   /* a sync: the last step's kernels are done */
    double dt = (now() - t0) / b->steps;
    if (b->prof) {   /* after the timing: the events synchronise between phases */
        gpu_model_profile(g, 1);
        for (int i = 0; i < 3; i++) {
            gpu_model_zero_grads(g);
            gpu_model_forward(g, c, in, tg, NULL, NULL, b->B, b->T, &bo, m->expert_bias, counts);
            gpu_model_backward(g, 1.0f, 1.0f);
            gpu_model_grad_norm(g);
            gpu_model_adamw(g, &st);
        }
        fprintf(stderr, "%s attention, %s experts: time per phase over 3 steps (forward, backward, optimizer), CUDA events:\n", att, exp);
        gpu_model_profile_print(g, stderr);
    }
    double tps = N / dt, achieved = tps * b->flops_tok / 1e12;
    printf("{\"impl\": \"sigma-cuda\", \"preset\": \"%s\", \"attention\": \"%s\", \"experts\": \"%s\", \"layers\": %d, \"vocab\": %d, "
           "\"B\": %d, \"T\": %d, \"steps\": %d, \"optimizer\": %s, \"recompute\": %s, \"tokens_per_s\": %.1f, \"ms_per_step\": %.2f, "
           "\"flops_per_token\": %.4e, \"tflops\": %.1f, \"mfu_989\": %.4f, \"gemm_peak_tflops\": %.1f, \"mfu_measured_peak\": %.4f, "
           "\"gpu_gib\": %.2f, \"loss\": %.4f}\n",
           b->preset, att, exp, c->n_layers, c->vocab_size, b->B, b->T, b->steps, b->opt ? "true" : "false",
           b->recompute ? "true" : "false", tps, dt * 1e3, b->flops_tok, achieved, achieved / 989.0, b->peak, achieved / b->peak,
           gpu_model_bytes(g) / 1073741824.0, loss);
    fflush(stdout);   /* each line out before the next variant, which may fail */
    gpu_model_free(g);
    free(counts);
}

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    if (argc < 5)
        usage_error("usage: gpu_bench PRESET B T STEPS [--layers N] [--vocab V] [--topk K] [--recompute] [--profile] [--optimizer] "
                    "[--variants ATTENTION:EXPERTS,...]");
    Bench b = {.preset = argv[1], .B = atoi(argv[2]), .T = atoi(argv[3]), .steps = atoi(argv[4])};
    int layers = 0, vocab = 0, topk = 0;
    const char *variants = NULL;
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "--layers") && i + 1 < argc) layers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc) vocab = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--topk") && i + 1 < argc) topk = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--variants") && i + 1 < argc) variants = argv[++i];
        else if (!strcmp(argv[i], "--recompute")) b.recompute = 1;
        else if (!strcmp(argv[i], "--profile")) b.prof = 1;
        else if (!strcmp(argv[i], "--optimizer")) b.opt = 1;
        else usage_error("unknown argument '%s'", argv[i]);
    }
    /* the variants, checked before any work */
    GpuPaths base, list[ATTENTION_PATHS * EXPERTS_PATHS];
    gpu_paths_default(&base);   /* SIGMA_ATTENTION, SIGMA_EXPERTS, SIGMA_EXPERT_STREAMS from the environment */
    int nv = 0;
    if (!variants) list[nv++] = base;
    else {
        char *v = xstrdup(variants), *save = NULL;
        for (char *tok = strtok_r(v, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            char *colon = strchr(tok, ':');
            GpuPaths p = base;
            if (!colon) usage_error("--variants: '%s' is not ATTENTION:EXPERTS", tok);
            *colon = 0;
            if (attention_path_parse(tok, &p.attention)) usage_error("--variants: no attention path '%s'", tok);
            if (experts_path_parse(colon + 1, &p.experts)) usage_error("--variants: no experts path '%s'", colon + 1);
            if (nv == (int)(sizeof list / sizeof *list)) usage_error("--variants: more than %d", nv);
            list[nv++] = p;
        }
        free(v);
    }
    Config c;
    if (config_preset(&c, b.preset, vocab)) usage_error("unknown preset '%s'", b.preset);
    if (layers) c.n_layers = layers;
    if (topk)
        for (int l = 0; l < c.n_layers; l++) c.top_k[l] = topk;
    if (b.T > c.max_seq_len) c.max_seq_len = b.T;
    config_validate(&c, "gpu_bench");
    const int N = b.B * b.T;
    b.flops_tok = config_train_flops(&c, b.T);   /* 6 x (active + head) + causal attention */

    Model m;
    model_init(&m, &c, 1, 1);   /* the host side: tensor table and weights only */
    /* Uniform weights of std 0.02 (norms at 1): as random as model_init_params's
     * normals for timing, and seconds rather than a minute for billions. */
    uint64_t r = 1;
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamTensor *t = &m.tensors[i];
        for (size_t j = 0; j < t->numel; j++) {
            r ^= r << 13; r ^= r >> 7; r ^= r << 17;
            m.params[t->offset + j] = t->ndim == 1 ? 1.0f : (float)(((double)(r >> 11) * 0x1.0p-53 - 0.5) * 0.0693);
        }
    }
    uint32_t *in = xmalloc((size_t)N * sizeof(uint32_t)), *tg = xmalloc((size_t)N * sizeof(uint32_t));
    uint64_t s = 42;
    for (int n = 0; n < N; n++) { in[n] = (uint32_t)(splitmix64(&s) % (uint64_t)c.vocab_size); tg[n] = (uint32_t)(splitmix64(&s) % (uint64_t)c.vocab_size); }
    b.peak = gpu_gemm_peak_tflops(8192);
    for (int i = 0; i < nv; i++) bench_variant(&b, &m, &c, in, tg, list[i]);
    model_free(&m);
    free(in);
    free(tg);
    return 0;
}
