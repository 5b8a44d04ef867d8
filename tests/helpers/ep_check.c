/* ep_check [GROUP]: expert parallelism against one process, under mpirun
 * (tests/parallel.t). The ranks form groups of GROUP (default: all of
 * them); every rank builds the whole model and its slice of the experts
 * (model_init_ep over its group), passes a micro-batch of
 * its own through both, and compares: losses and logits, the replicated
 * weights' gradients, and the held experts' gradients against the whole
 * model's summed over the ranks (every rank's tokens reach them). Cases:
 * the model's own routing (top-2 then top-1 layers), and every token forced
 * onto rank 0's first two experts, so that the other ranks receive no row:
 * nothing hangs, and every expert that got no row has a gradient of exactly
 * zero. TAP on rank 0. Built against the CPU emulation of CUDA
 * (ep_check_emu), the rows travel by the NCCL backend's grouped sends and
 * receives, emulated over MPI (tests/emu/nccl_emu.h). */
#include "base/base.h"
#include "comm/comm.h"
#include "model/model.h"
#include "../compare.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int n_test, n_fail;
static Comm *comm, *group;   /* every rank; this rank's expert-parallel group */

/* the worst of every rank's value, on every rank */
static double worst(double v)
{
    int n = comm_size(comm);
    double *all = xcalloc((size_t)n, sizeof *all), w = 0;
    all[comm_rank(comm)] = v;
    comm_sum_doubles(comm, all, (size_t)n);
    for (int r = 0; r < n; r++) w = all[r] > w || isnan(all[r]) ? all[r] : w;
    free(all);
    return w;
}

static void check(int ok, const char *fmt, double v)
{
    n_test++;
    n_fail += !ok;
    if (comm_rank(comm) == 0) {
        printf("%s %d - ", ok ? "ok" : "not ok", n_test);
        printf(fmt, v);
        printf("\n");
    }
}

static void exchange_counts(void *ctx, const int *send, int *recv, int per) { comm_alltoall_ints(ctx, send, recv, per); }
static void exchange_rows(void *ctx, const void *send, const int *send_rows, void *recv, const int *recv_rows, size_t row_bytes)
{
    comm_alltoallv(ctx, send, send_rows, recv, recv_rows, row_bytes);
}

static void run_case(const char *name, const Config *c, int B, int T, int forced)
{
    int S = comm_size(group), rank = comm_rank(comm), N = B * T;
    ExpertExchange ep = {.size = S, .rank = comm_rank(group), .counts = exchange_counts, .rows = exchange_rows, .ctx = group};
    Model whole, part;
    model_init(&whole, c, B, T);
    model_init_ep(&part, c, B, T, &ep);
    model_init_params(&whole, 3, 0.3f);
    model_init_params(&part, 3, 0.3f);
    uint32_t *in = xmalloc((size_t)N * sizeof *in), *tg = xmalloc((size_t)N * sizeof *tg);
    uint64_t s = 77 + (uint64_t)rank;   /* each rank its own tokens */
    for (int i = 0; i < N; i++) {
        in[i] = (uint32_t)(splitmix64(&s) % (uint64_t)c->vocab_size);
        tg[i] = (uint32_t)(splitmix64(&s) % (uint64_t)c->vocab_size);
    }
    int *sel[MODEL_MAX_LAYERS] = {0};
    for (int l = 0; forced && l < c->n_layers; l++) {   /* rank 0's experts 0 and 1 only */
        sel[l] = xmalloc((size_t)N * c->top_k[l] * sizeof(int));
        for (int i = 0; i < N * c->top_k[l]; i++) sel[l][i] = i % c->top_k[l];
        whole.forced_sel[l] = part.forced_sel[l] = sel[l];
    }
    BalanceOptions bo = {.kind = BALANCE_LBL, .coef = 0.1f, .z_coef = 0.01f};
    Losses lw = model_forward(&whole, in, tg, NULL, NULL, B, T, &bo);
    Losses lp = model_forward(&part, in, tg, NULL, NULL, B, T, &bo);
    model_zero_grads(&whole);
    model_zero_grads(&part);
    model_backward(&whole, 1.0f, 1.0f);
    model_backward(&part, 1.0f, 1.0f);

    double d = worst(fabs(lp.loss - lw.loss) / fabs(lw.loss));
    if (rank == 0) printf("# %s\n", name);
    check(d < 1e-6, "  the loss is one process's on every rank (relative %.1e)", d);
    d = worst(rel_max_err(model_logits(&part), model_logits(&whole), (size_t)N * c->vocab_size));
    check(d < 1e-5, "  so are the logits (relative %.1e)", d);
    ParamLayout pw, pp;
    param_layout(&pw, c);
    param_layout_slice(&pp, c, part.experts);
    d = worst(rel_max_err(part.grads, whole.grads, pw.experts_begin));
    check(d < 1e-5, "  and the replicated weights' gradients (relative %.1e)", d);
    comm_sum_floats(group, whole.grads, whole.n_params);   /* every rank's tokens' share of each expert */
    double e = 0;
    int zero_ok = 1, eh = part.experts.count;
    for (int l = 0; l < c->n_layers; l++) {
        const float *gp = part.grads + pp.layer[l][PT_EXPERTS];
        const float *gw = whole.grads + pw.layer[l][PT_EXPERTS] + (size_t)part.experts.first * pw.expert;
        double r = rel_max_err(gp, gw, (size_t)eh * pw.expert);
        e = r > e ? r : e;
        for (int x = 0; forced && x < eh; x++) {   /* the experts no row reached: exactly zero */
            int global = part.experts.first + x;
            if (global < c->top_k[l]) continue;
            for (size_t i = 0; i < pw.expert; i++) zero_ok &= gp[(size_t)x * pw.expert + i] == 0.0f;
        }
    }
    d = worst(e);
    check(d < 1e-5, "  the held experts' gradients are the sum over every rank's tokens (relative %.1e)", d);
    if (forced) check(worst(zero_ok ? 0 : 1) == 0, "  experts that received no row have gradients of exactly zero (%g ranks not)", worst(zero_ok ? 0 : 1));
    for (int l = 0; l < c->n_layers; l++) free(sel[l]);
    free(in);
    free(tg);
    model_free(&whole);
    model_free(&part);
}

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    comm = comm_open();
#ifdef SIGMA_EMU
    comm_bind_device(comm, "cuda");   /* emulated device memory is the host's: the CPU model's buffers will do */
#else
    comm_bind_device(comm, "cpu");
#endif
    int S = argc > 1 ? (int)parse_u64("GROUP", argv[1], 1, 1024) : comm_size(comm);
    if (comm_size(comm) % S) usage_error("groups of %d cannot share %d ranks", S, comm_size(comm));
    group = comm_split(comm, comm_rank(comm) / S, comm_rank(comm));
    if (comm_rank(comm) == 0) printf("# %d ranks in groups of %d over %s\n", comm_size(comm), S, comm_backend(group));
    Config c = {.vocab_size = 61, .d_model = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 8, .n_experts = 4 * S,
                .d_expert = 16, .top_k = {2, 1}, .rope_theta = 10000, .norm_eps = 1e-6f, .max_seq_len = 16};
    if (comm_rank(comm) == 0) printf("1..9\n");
    run_case("the model's own routing, top-2 then top-1", &c, 2, 8, 0);
    run_case("every token to rank 0's first experts: the other ranks receive nothing", &c, 2, 8, 1);
    comm_close(group);
    comm_close(comm);
    return n_fail ? 1 : 0;
}
