/* The training run: data, model, optimizer, schedules, balance, guards,
 * evaluation, checkpoints and exact resume. One step:
 *
 *   k per layer <- top-k schedule; lr <- learning-rate schedule
 *   accum micro-batches of B x T tokens from the seeded loader
 *   [lbl-global: a forward pass over them all to count tokens per expert]
 *   forward + backward of each, gradients scaled by 1/accum
 *   non-finite loss or gradient: skip the step (counted, bounded)
 *   else clip to the global norm and take an AdamW step
 *   [bias: move each expert's routing bias toward balance]
 *   metrics, validation, checkpoint
 *
 * On the CPU every result is a function of the seed and the data, so a run
 * killed at any moment and resumed from its last checkpoint gives the same
 * losses, bit for bit, as one never interrupted.
 *
 * Fine-tuning (o->sft) takes the same step over rows of conversations: each
 * target has a loss weight (mask: the assistant's tokens) and each token its
 * place in its conversation (pos: packed rows without cross-talk), and the
 * step's cross-entropy is the mean over all its learned tokens, each
 * micro-batch weighted by its share of them.
 *
 * Many processes (mpirun, srun; comm/comm.h) split every step's
 * micro-batches between them: each rank reads the whole step from the same
 * loader and computes its share, the gradients, routing counts and losses
 * are summed over the ranks, and every rank takes the same AdamW step, so N
 * ranks see exactly the tokens one process would and their weights stay
 * identical. Rank 0 alone writes checkpoints, metrics and the log. */
#include "train/trainer.h"
#include "base/base.h"
#include "base/json.h"
#include "comm/comm.h"
#include "data/shard.h"
#include "model/adamw.h"
#include "model/device.h"
#include "model/model.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "train/chat_data.h"
#include "train/ckpt.h"
#include "train/loader.h"
#include "train/metrics.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include "base/threads.h"
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define LOSS_WINDOW CKPT_LOSS_WINDOW

void train_options_default(TrainOptions *o)
{
    memset(o, 0, sizeof *o);
    o->init_std = 0.02;
    o->steps = 1000;
    o->batch_tokens = 16384;
    o->micro_batch = 8;
    o->seq_len = 256;
    o->seed = 1;
    o->lr = (LrSchedule){.kind = LR_WSD, .max_lr = 3e-3, .min_lr = 3e-4, .warmup = 50, .total = 1000, .decay_fraction = 0.2};
    o->weight_decay = 0.1;
    o->beta1 = 0.9;
    o->beta2 = 0.95;
    o->eps = 1e-8;
    o->clip = 1.0;
    o->balance = BALANCE_LBL_GLOBAL;
    o->balance_coef = 1e-2;   /* pipelines/balance-study.md: 1e-3 left top-1 unbalanced */
    o->balance_tau = 0.1;
    o->bias_rate = 1e-2;      /* the same study: 1e-3 left experts starved */
    o->eval_every = 100;
    o->eval_batches = 8;
    o->save_every = 500;
    o->keep = 3;
    o->max_skips = 20;
    o->spike_z = 6;
    o->device = "auto";
    o->ep = 1;
    o->tool = "sigma-pretrain";
    o->val_fraction = 0.05;
    o->epochs = 3;
    o->train_on = "assistant";
    o->long_rows = "cut";
    o->pack = 1;
}

void sft_options_default(TrainOptions *o)
{
    train_options_default(o);
    o->tool = "sigma-sft";
    o->sft = 1;
    o->lr.kind = LR_COSINE;
    o->lr.max_lr = 3e-4;
    o->lr.min_lr = 3e-5;
    o->weight_decay = 0;
    o->eval_every = 50;
}

typedef struct {
    const TrainOptions *o;     /* &opt */
    Comm *comm;                /* the run's processes; size 1 without a launcher */
    int rank, nproc;
    /* expert parallelism (--ep): the world's ranks in groups of ep
     * consecutive ranks, each holding a slice of every layer's experts
     * (ep_comm, whose all-to-alls carry the rows); the ranks that hold the
     * same slice, one a group, sum its gradients (edp_comm). With --ep 1
     * every rank holds all experts and edp_comm is the world. */
    int ep;
    Comm *ep_comm, *edp_comm;
    ExpertExchange exchange;   /* ep_comm's, for the model */
    size_t dense;              /* the weights every rank holds, [0, dense); its experts after */
    uint32_t a0, a1;           /* this rank's micro-batches of a step: [a0, a1) */
    int stop_agreed;           /* many ranks: a stop signal reached one of them by the last step's end */
    CommStats comm_logged;     /* the collectives' totals at the last step logged */
    TrainOptions opt;          /* the command's options, completed from the checkpoint on --resume */
    char *owned[16];           /* strings taken from the checkpoint */
    int n_owned;
    Config cfg;
    Model model;               /* the host side: configuration, tensor table, expert bias, counts */
    const DeviceOps *device;   /* what computes */
    const char *device_why;    /* why that one (for the log) */
    GpuPaths paths;            /* the GPU's kernel paths, as taken */
    Device *dev;
    TokHeader tok;             /* the data's tokenizer: the shard set's, or sft's */
    ShardSet set;              /* pretraining's data */
    Tokenizer *tokenizer;      /* sft: the model's, chat tokens included */
    ChatData chat;             /* sft's data */
    uint64_t data_hash, val_hash;  /* sft: of --data and --val-data, which a resumed run must be given again */
    uint32_t base_vocab;       /* sft --add-chat-tokens: the vocabulary before the chat tokens */
    Loader train, val;
    int have_val;
    TopkSchedule topk;
    uint32_t accum;            /* micro-batches per step */
    float *moments;            /* [2 * n_params]: AdamW m, then v */
    ParamTensor *moment_tensors;   /* [2 * n_tensors] "m.NAME", "v.NAME" over moments */
    /* rank 0: the whole model's tables (this rank's with --ep 1), which its checkpoints hold */
    ParamTensor *full_tensors, *full_moment_tensors;
    int n_full;
    size_t full_params;
    /* the step's data and routing counts */
    uint32_t *inputs, *targets;    /* [accum * B * T] */
    float *mask;                   /* [accum * B * T] sft: each target's loss weight; NULL in pretraining */
    int *pos;                      /* [accum * B * T] sft: each token's place in its conversation */
    uint64_t step_learned;         /* targets with loss in the last step */
    float *step_counts;            /* [L * E] tokens per expert over the step */
    float *step_tokens;            /* [L] tokens over the step */
    /* state that a checkpoint carries */
    uint64_t step;             /* steps done */
    uint64_t tokens_seen;
    uint64_t skipped;
    double loss_hist[LOSS_WINDOW];
    uint64_t n_hist;
    Metrics metrics;
} Trainer;

static volatile sig_atomic_t stop_requested;
static void on_stop_signal(int sig) { (void)sig; stop_requested = 1; }
/* Many ranks stop at the step where any of them was signalled (they agree
 * on it at the step's end), or one would wait for the others for ever. */
static int stopping(const Trainer *t) { return t->nproc > 1 ? t->stop_agreed : stop_requested; }

/* ---- configuration ---------------------------------------------------------- */

static void check_vocab(const Trainer *t)
{
    if ((uint32_t)t->cfg.vocab_size < t->tok.vocab_size)
        die("the model's vocabulary (%d) is smaller than the %s's (%u, %s)", t->cfg.vocab_size, t->o->sft ? "tokenizer" : "shard set",
            t->tok.vocab_size, t->o->sft ? t->o->tokenizer : t->set.dir);
}

static void fresh_config(Trainer *t, int vocab)
{
    const TrainOptions *o = t->o;
    if (o->preset) {
        if (config_preset(&t->cfg, o->preset, vocab) != 0)
            usage_error("--preset: unknown preset '%s' (sigma-moe-tiny, nano, micro, test)", o->preset);
    } else {
        cJSON *j = json_parse_file(o->config);
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");   /* a checkpoint's config.json too */
        config_from_json(&t->cfg, model ? model : j, o->config);
        cJSON_Delete(j);
    }
    config_validate(&t->cfg, o->preset ? o->preset : o->config);
}

/* What one rank of a run holds, estimated from the shapes (the dry run
 * allocates nothing), in bytes: the CPU's fp32 buffers, and what the CUDA
 * core would hold (bf16 copies of the weights and activations, fp32 master
 * weights, gradients and moments). Expert parallelism shares each layer's
 * experts among the ep ranks of a group; ZeRO-1 shares the moments of every
 * weight among the ranks that hold it, so each rank keeps 1/nproc of them.
 * Both devices allocate the held experts' rows for the bound (every row of
 * the group to one rank: ep times a rank's own); the all-to-all's volume is
 * at even routing. */
#define GIB 1073741824.0

typedef struct {
    double params, experts;    /* the model's; of them in experts */
    double held;               /* parameters this rank holds */
    double state;              /* CPU: fp32 weights and gradients of those, and its share of the moments */
    double acts;               /* CPU: activations of one micro-batch, fp32 */
    double gpu_state;          /* GPU: bf16 weights, fp32 master weights and gradients, its share of the moments */
    double gpu_acts[2];        /* GPU: activations of one micro-batch, the experts' gate/up kept / recomputed */
    double alltoall;           /* sent to other ranks by the all-to-alls of one micro-batch (the GPU's, even routing) */
} Plan;

static Plan plan_rank(const Config *c, const TrainOptions *o, int nproc, int ep)
{
    uint64_t total, active;
    config_count_params(c, &total, &active);
    double d = c->d_model, de = c->d_expert, E = c->n_experts, L = c->n_layers, T = o->seq_len, N = (double)o->micro_batch * T;
    double V = c->vocab_size, H = c->n_heads, qd = H * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim;
    double qkv = qd + 2 * kvd, k = 1;
    for (int l = 0; l < c->n_layers; l++) k = c->top_k[l] > k ? c->top_k[l] : k;
    Plan p = {.params = (double)total, .experts = L * E * 3 * de * d};
    p.held = p.params - p.experts + p.experts / ep;
    double moments = p.params * 8 / (nproc > 0 ? nproc : 1);
    /* CPU floats kept per token and layer: norms, q/k/v (before and after rope), attention output,
     * the residual, router logits and probabilities, and per chosen expert its input, gate, up, act */
    double cpu_layer = 6 * d + 2 * qkv + 2 * E + k * ep * (d + 3 * de) + H * T;
    p.state = p.held * 8 + moments;
    p.acts = N * (L * cpu_layer + 3 * V + 4 * d) * 4;
    /* the GPU's carve (gpu_model.cu) per token: each layer's residuals and norms, q/k/v and their
     * rotations, router logits, probabilities and tempered softmax, expert inputs and outputs, the
     * received rows (ep), and gate/up/act unless recomputed (then one layer's); the logits and their
     * gradient; scratch. The held experts' buffers hold the bound, ep times a rank's rows. */
    double R = k * ep, xr = ep > 1 ? 2 * d : 0;
    double gpu_layer = 4 * d + 2 * d + 2 * qkv + 2 * (qd + kvd) + 2 * qd + 4 * d + 2 * d + 12 * E + 4 * k * d + R * xr;
    double gate_up = R * 6 * de, head = 6 * V;
    double scratch = 20 * d + 8 * qkv + 4 * H * c->head_dim + k * 6 * d + R * 8 * de + (ep > 1 ? R * 12 * d : 0);
    p.gpu_state = p.held * (2 + 4 + 4) + moments;
    p.gpu_acts[0] = N * (L * (gpu_layer + gate_up) + head + scratch);
    p.gpu_acts[1] = N * (L * gpu_layer + gate_up + head + scratch);
    /* each layer sends its rows for other ranks' experts and takes the results back, (ep - 1) / ep
     * of its N k rows of d: bf16 both ways forward; backward the outputs' gradients in bf16 and
     * the inputs' in fp32; the global LBL's counting forward once more */
    double row_bytes = 2 + 2 + 2 + 4 + (o->balance == BALANCE_LBL_GLOBAL ? 4 : 0);
    p.alltoall = L * N * k * d * row_bytes * (ep - 1) / ep;
    return p;
}

/* Memory this machine can give now (MemAvailable), in bytes; 0 when unknown. */
static double available_memory(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (double)kb * 1024;
}

/* On the CPU, before anything is allocated: a run that cannot fit is
 * refused with the numbers and what to change, rather than dying in an
 * allocation halfway through setting up. */
static void check_memory(const Trainer *t)
{
    if (t->device != &cpu_device_ops) return;   /* the GPU's own setup prints each buffer and checks every allocation */
    double have = available_memory();
    Plan p = plan_rank(&t->cfg, t->o, t->nproc, t->ep);
    if (have > 0 && p.state + p.acts > have)
        die("this run needs about %.1f GiB on the CPU (%.1f GiB of parameters, gradients and AdamW moments, %.1f GiB of "
            "activations; --dry-run shows them) and %.1f GiB of memory is available: use a smaller model, --micro-batch "
            "or --seq-len%s", (p.state + p.acts) / GIB, p.state / GIB, p.acts / GIB, have / GIB,
            strcmp(t->o->device, "cpu") ? ", or a machine with a GPU (--device cuda)" : "");
}

/* An 80 GB H100 or A100 shows 79.1 GiB; CUDA's context, cuBLAS's and NCCL's
 * buffers take about a GiB of it. */
#define GPU_80GB_USABLE (78.0 * GIB)

static void print_plan(const Config *c, const TrainOptions *o, uint32_t accum, int ep)
{
    uint64_t total, active;
    config_count_params(c, &total, &active);
    int nproc = o->nproc > 1 ? o->nproc : 1;
    Plan one = plan_rank(c, o, 1, 1), p = plan_rank(c, o, nproc, ep);
    double B = o->micro_batch, T = o->seq_len;
    printf("parameters: %llu total, %llu active per token (%.2fB / %.3fB), %.1f%% in experts\n", (unsigned long long)total,
           (unsigned long long)active, total / 1e9, active / 1e9, 100 * one.experts / one.params);
    printf("batch: %u x %u tokens per micro-batch, %u micro-batches, %llu tokens per step\n", o->micro_batch, o->seq_len,
           accum, (unsigned long long)accum * o->micro_batch * o->seq_len);
    printf("memory: %.2f GiB parameters, gradients and AdamW moments (fp32) + about %.2f GiB activations = %.2f GiB\n",
           one.state / GIB, one.acts / GIB, (one.state + one.acts) / GIB);
    if (accum % (uint32_t)nproc)
        printf("note: %u micro-batches a step cannot be shared by %d processes: make --batch-tokens a multiple of %llu\n", accum,
               nproc, (unsigned long long)nproc * o->micro_batch * o->seq_len);
    if (nproc > 1) {
        char groups[64] = "";
        if (ep > 1) snprintf(groups, sizeof groups, ", experts shared by groups of %d (--ep)", ep);
        printf("per rank of %d%s: holds %.4gB parameters (%.2f GiB fp32 weights and gradients) + %.2f GiB of the AdamW "
               "moments (ZeRO-1) + about %.2f GiB activations = %.2f GiB on the CPU\n", nproc,
               groups, p.held / 1e9, p.held * 8 / GIB,
               (p.state - p.held * 8) / GIB, p.acts / GIB, (p.state + p.acts) / GIB);
    }
    printf("a GPU%s: %.2f GiB bf16 weights + %.2f GiB fp32 master weights + %.2f GiB fp32 gradients + %.2f GiB AdamW moments "
           "= %.2f GiB; activations about %.2f GiB, %.2f GiB with --recompute-experts; %.1f / %.1f GiB in all: %s\n",
           nproc > 1 ? " per rank" : "", p.held * 2 / GIB, p.held * 4 / GIB, p.held * 4 / GIB, (p.gpu_state - p.held * 10) / GIB,
           p.gpu_state / GIB, p.gpu_acts[0] / GIB, p.gpu_acts[1] / GIB, (p.gpu_state + p.gpu_acts[0]) / GIB,
           (p.gpu_state + p.gpu_acts[1]) / GIB,
           p.gpu_state + p.gpu_acts[0] <= GPU_80GB_USABLE ? "fits an 80 GB device"
           : p.gpu_state + p.gpu_acts[1] <= GPU_80GB_USABLE ? "fits an 80 GB device with --recompute-experts"
                                                              : "does not fit an 80 GB device");
    if (ep > 1)
        printf("all-to-all: %.2f GB sent per rank per micro-batch at even routing (%.2f GB a step): %.1f ms over NVLink at "
               "450 GB/s each way (H100 SXM), %.0f ms over 400 Gb/s InfiniBand\n", p.alltoall / 1e9,
               p.alltoall * accum / nproc / 1e9, p.alltoall / 450e9 * 1e3, p.alltoall / 50e9 * 1e3);
    double flops = config_train_flops(c, (int)T);
    printf("flops: about %.3g per token (6 x (active + head) + attention), %.3g per step\n", flops, flops * accum * B * T);
}

/* ---- the run's settings ------------------------------------------------------
 * What a checkpoint records in config.json's "training", written and read
 * through one table. --resume takes every setting the command line leaves
 * out from the checkpoint; one it gives must agree with it, except those
 * that may change as a run goes on (its length, evaluation, checkpoints,
 * guards, where the metrics go), which apply from the resumed step on. */

void train_option_given(TrainOptions *o, const char *name)
{
    if (train_option_was_given(o, name)) return;
    if (o->n_given == (int)(sizeof o->given / sizeof o->given[0])) BUG("too many options");
    o->given[o->n_given++] = name;
}

int train_option_was_given(const TrainOptions *o, const char *name)
{
    for (int i = 0; i < o->n_given; i++)
        if (!strcmp(o->given[i], name)) return 1;
    return 0;
}

typedef enum { SET_U64, SET_U32, SET_UNSIGNED, SET_DOUBLE, SET_SEED, SET_STRING, SET_FLAG, SET_BALANCE, SET_LR_KIND } SettingType;
enum { KEEPS, MAY_CHANGE };
typedef struct {
    const char *key;           /* in "training" */
    const char *option;        /* the long option that sets it */
    SettingType type;
    size_t offset;             /* of the field in TrainOptions */
    int on_resume;
    int sft_only;              /* a fine-tuning setting: recorded by sigma-sft alone */
} Setting;

#define SETTING(key, option, type, field, on_resume) {key, option, type, offsetof(TrainOptions, field), on_resume, 0}
#define SFT_SETTING(key, option, type, field, on_resume) {key, option, type, offsetof(TrainOptions, field), on_resume, 1}
static const Setting settings[] = {
    SETTING("topk_schedule", "topk-schedule", SET_STRING, topk_schedule, KEEPS),
    SETTING("balance", "balance", SET_BALANCE, balance, KEEPS),
    SETTING("balance_coef", "balance-coef", SET_DOUBLE, balance_coef, KEEPS),
    SETTING("balance_tau", "balance-tau", SET_DOUBLE, balance_tau, KEEPS),
    SETTING("z_loss", "z-loss", SET_DOUBLE, z_loss, KEEPS),
    SETTING("bias_rate", "bias-rate", SET_DOUBLE, bias_rate, KEEPS),
    SETTING("seq_len", "seq-len", SET_U32, seq_len, KEEPS),
    SETTING("micro_batch", "micro-batch", SET_U32, micro_batch, KEEPS),
    SETTING("batch_tokens", "batch-tokens", SET_U64, batch_tokens, KEEPS),
    SETTING("seed", "seed", SET_SEED, seed, KEEPS),
    SETTING("steps", "steps", SET_U64, steps, MAY_CHANGE),
    SETTING("schedule", "schedule", SET_LR_KIND, lr.kind, KEEPS),
    SETTING("lr", "lr", SET_DOUBLE, lr.max_lr, KEEPS),
    SETTING("min_lr", "min-lr", SET_DOUBLE, lr.min_lr, KEEPS),
    SETTING("warmup", "warmup", SET_U64, lr.warmup, KEEPS),
    SETTING("decay_fraction", "decay-fraction", SET_DOUBLE, lr.decay_fraction, KEEPS),
    SETTING("weight_decay", "weight-decay", SET_DOUBLE, weight_decay, KEEPS),
    SETTING("beta1", "beta1", SET_DOUBLE, beta1, KEEPS),
    SETTING("beta2", "beta2", SET_DOUBLE, beta2, KEEPS),
    SETTING("eps", "eps", SET_DOUBLE, eps, KEEPS),
    SETTING("clip", "clip", SET_DOUBLE, clip, KEEPS),
    SETTING("init_std", "init-std", SET_DOUBLE, init_std, KEEPS),
    SETTING("eval_every", "eval-every", SET_U64, eval_every, MAY_CHANGE),
    SETTING("eval_batches", "eval-batches", SET_U64, eval_batches, MAY_CHANGE),
    SETTING("save_every", "save-every", SET_U64, save_every, MAY_CHANGE),
    SETTING("keep", "keep", SET_UNSIGNED, keep, MAY_CHANGE),
    SETTING("max_skips", "max-skips", SET_U64, max_skips, MAY_CHANGE),
    SETTING("spike_z", "spike-z", SET_DOUBLE, spike_z, MAY_CHANGE),
    SETTING("metrics", "metrics", SET_STRING, metrics, MAY_CHANGE),
    SFT_SETTING("train_on", "train-on", SET_STRING, train_on, KEEPS),
    SFT_SETTING("long", "long", SET_STRING, long_rows, KEEPS),
    SFT_SETTING("pack", "pack", SET_FLAG, pack, KEEPS),
    SFT_SETTING("val_fraction", "val-fraction", SET_DOUBLE, val_fraction, KEEPS),
    SFT_SETTING("add_chat_tokens", "add-chat-tokens", SET_FLAG, add_chat_tokens, KEEPS),
    SFT_SETTING("epochs", "epochs", SET_DOUBLE, epochs, MAY_CHANGE),
};
#undef SETTING
#undef SFT_SETTING

static int setting_applies(const Setting *s, const TrainOptions *o) { return !s->sft_only || o->sft; }

/* A setting's value as text: the same form for the checkpoint's and the command's. */
static void setting_format(char *out, size_t n, const Setting *s, const TrainOptions *o)
{
    const char *f = (const char *)o + s->offset;
    switch (s->type) {
    case SET_U64: snprintf(out, n, "%llu", (unsigned long long)*(const uint64_t *)f); break;
    case SET_U32: snprintf(out, n, "%u", *(const uint32_t *)f); break;
    case SET_UNSIGNED: snprintf(out, n, "%u", *(const unsigned *)f); break;
    case SET_DOUBLE: snprintf(out, n, "%.17g", *(const double *)f); break;
    case SET_SEED: snprintf(out, n, "%llu", (unsigned long long)*(const uint64_t *)f); break;
    case SET_STRING: snprintf(out, n, "%s", *(const char *const *)f ? *(const char *const *)f : "(none)"); break;
    case SET_FLAG: snprintf(out, n, "%s", *(const int *)f ? "true" : "false"); break;
    case SET_BALANCE: snprintf(out, n, "%s", balance_kind_name(*(const BalanceKind *)f)); break;
    case SET_LR_KIND: snprintf(out, n, "%s", lr_kind_name(*(const LrKind *)f)); break;
    }
}

static void setting_to_json(cJSON *j, const Setting *s, const TrainOptions *o)
{
    const char *f = (const char *)o + s->offset;
    char text[512];
    switch (s->type) {
    case SET_U64: json_add_u64(j, s->key, *(const uint64_t *)f); break;
    case SET_U32: json_add_u64(j, s->key, *(const uint32_t *)f); break;
    case SET_UNSIGNED: json_add_u64(j, s->key, *(const unsigned *)f); break;
    case SET_DOUBLE: json_add_num(j, s->key, *(const double *)f); break;
    case SET_SEED: json_add_hex64(j, s->key, *(const uint64_t *)f); break;
    case SET_STRING:
        if (*(const char *const *)f) json_add_str(j, s->key, *(const char *const *)f);
        break;
    case SET_FLAG: json_add_bool(j, s->key, *(const int *)f); break;
    default: setting_format(text, sizeof text, s, o); json_add_str(j, s->key, text); break;
    }
}

/* The checkpoint's value into the field; strings are copied into owned[]. */
static void setting_from_json(TrainOptions *o, const Setting *s, const cJSON *j, const char *what, char **owned)
{
    char *f = (char *)o + s->offset;
    switch (s->type) {
    case SET_U64: *(uint64_t *)f = json_req_u64(j, s->key, what); break;
    case SET_U32: *(uint32_t *)f = (uint32_t)json_req_u64(j, s->key, what); break;
    case SET_UNSIGNED: *(unsigned *)f = (unsigned)json_req_u64(j, s->key, what); break;
    case SET_DOUBLE: *(double *)f = json_req_num(j, s->key, what); break;
    case SET_SEED: *(uint64_t *)f = json_req_hex64(j, s->key, what); break;
    case SET_STRING: *(const char **)f = *owned = xstrdup(json_req_str(j, s->key, what)); break;
    case SET_FLAG: *(int *)f = json_req_bool(j, s->key, what); break;
    case SET_BALANCE:
        if (balance_kind_parse(json_req_str(j, s->key, what), (BalanceKind *)f)) die("%s: unknown balance '%s'", what, json_req_str(j, s->key, what));
        break;
    case SET_LR_KIND:
        if (lr_kind_parse(json_req_str(j, s->key, what), (LrKind *)f)) die("%s: unknown schedule '%s'", what, json_req_str(j, s->key, what));
        break;
    }
}

static cJSON *training_json(const Trainer *t)
{
    TrainOptions o = *t->o;
    char *topk = topk_format(&t->topk);
    o.topk_schedule = topk;   /* the schedule as parsed: the config's k when none was given */
    cJSON *j = json_obj();
    for (size_t i = 0; i < sizeof settings / sizeof *settings; i++)
        if (setting_applies(&settings[i], &o)) setting_to_json(j, &settings[i], &o);
    free(topk);
    json_add_u64(j, "accum", t->accum);
    json_add_str(j, "device", t->device->name);
    if (t->device != &cpu_device_ops) {
        cJSON *g = json_obj();
        json_add_str(g, "attention", attention_path_name(t->paths.attention));
        json_add_str(g, "experts", experts_path_name(t->paths.experts));
        json_add_u64(g, "expert_streams", (uint64_t)t->paths.expert_streams);
        json_add_bool(g, "recompute_experts", t->paths.recompute);
        json_add(j, "gpu_paths", g);
    }
    return j;
}

/* A top-k schedule as topk_format writes it, for comparing one typed on the
 * command line with the one a checkpoint recorded. */
static void topk_normalize(char *out, size_t n, const char *spec, const Config *c)
{
    TopkSchedule ts;
    char err[256];
    if (topk_parse(&ts, spec, c->n_layers, c->n_experts, err, sizeof err)) usage_error("--topk-schedule: %s", err);
    char *f = topk_format(&ts);
    snprintf(out, n, "%s", f);
    free(f);
    topk_free(&ts);
}

/* --resume: the checkpoint's settings where the command gives none; a
 * given one that differs is refused, naming both values, unless it may change. */
static void resume_settings(Trainer *t, const cJSON *tr, const char *what)
{
    TrainOptions *o = &t->opt;
    for (size_t i = 0; i < sizeof settings / sizeof *settings; i++) {
        const Setting *s = &settings[i];
        if (!setting_applies(s, o) || !cJSON_GetObjectItemCaseSensitive(tr, s->key)) continue;   /* not recorded: the command's */
        TrainOptions was = *o;
        char *owned = NULL;
        setting_from_json(&was, s, tr, what, &owned);
        if (!train_option_was_given(o, s->option)) {
            setting_from_json(o, s, tr, what, &t->owned[t->n_owned]);
            if (t->owned[t->n_owned]) t->n_owned++;
            free(owned);
            continue;
        }
        char a[512], b[512];
        setting_format(a, sizeof a, s, &was);
        setting_format(b, sizeof b, s, o);
        free(owned);
        if (s->offset == offsetof(TrainOptions, topk_schedule)) topk_normalize(b, sizeof b, o->topk_schedule, &t->cfg);
        if (!strcmp(a, b)) continue;
        if (s->on_resume == KEEPS)
            die("%s: the run was made with --%s %s, this command asks for --%s %s (a resumed run keeps its settings: "
                "leave --%s out, or start a new run)", what, s->option, a, s->option, b, s->option);
        if (s->offset == offsetof(TrainOptions, steps))
            info("--steps: %s until now, %s from here on: the learning rate follows the %s schedule of a %s-step run "
                 "(warmup and decay fraction as before)", a, b, lr_kind_name(o->lr.kind), b);
        else
            info("--%s: %s until now, %s from here on", s->option, a, b);
    }
}

/* PATH from the root, so that a resumed run finds its metrics file from any
 * directory: its directory resolved, its name kept. */
static char *absolute_path(const char *path)
{
    char *copy = xstrdup(path), *slash = strrchr(copy, '/');
    const char *dir = slash ? (slash == copy ? "/" : copy) : ".", *name = slash ? slash + 1 : copy;
    if (slash) *slash = 0;
    char *real = realpath(dir, NULL);
    if (!real) die("--metrics %s: %s: %s", path, dir, strerror(errno));
    char *abs = xasprintf("%s/%s", strcmp(real, "/") ? real : "", name);
    free(real);
    free(copy);
    return abs;
}

/* ---- fine-tuning: tokenizer, data and first weights --------------------------- */

/* The tokenizer as the model knows it: the file given, grown by the chat
 * tokens when the run adds them (a resumed run may be given the grown one,
 * which the run directory keeps, or the first one again). */
static void sft_tokenizer(Trainer *t, TokHeader *given)
{
    const TrainOptions *o = t->o;
    Tokenizer *tok = tokenizer_load(o->tokenizer, NULL);
    *given = tokenizer_header(tok);
    if (o->add_chat_tokens && (!o->resume || tokenizer_special(tok, CHAT_START) < 0)) {
        t->base_vocab = tokenizer_n_vocab(tok);
        Tokenizer *grown = chat_add_tokens(tok, o->tokenizer);
        tokenizer_free(tok);
        tok = grown;
    }
    chat_check_tokenizer(tok, o->tokenizer);
    t->tokenizer = tok;
    t->tok = tokenizer_header(tok);
}

static cJSON *sft_json(const Trainer *t)
{
    const ChatData *d = &t->chat;
    cJSON *j = json_obj();
    json_add_str(j, "template", "chatml");
    json_add_hex64(j, "data_xxh3", t->data_hash);
    if (t->o->val_data) json_add_hex64(j, "val_data_xxh3", t->val_hash);
    json_add_u64(j, "conversations", d->train.n);
    json_add_u64(j, "val_conversations", d->val.n);
    json_add_u64(j, "rows", d->train_rows.n_rows);
    json_add_u64(j, "learned_tokens_per_epoch", d->train_rows.learned);
    return j;
}

/* A resumed run continues over the same conversations: its position in
 * them means nothing over others. */
static void sft_same_data(Trainer *t, const cJSON *sft, const char *what)
{
    const TrainOptions *o = t->o;
    t->data_hash = file_hash64(o->data);
    if (json_req_hex64(sft, "data_xxh3", what) != t->data_hash)
        die("%s: the run was made on other data than %s (its XXH3 %016llx, recorded %016llx): resume with the same "
            "--data, or start a new run", what, o->data, (unsigned long long)t->data_hash,
            (unsigned long long)json_req_hex64(sft, "data_xxh3", what));
    if (o->val_data) {
        t->val_hash = file_hash64(o->val_data);
        if (!cJSON_GetObjectItemCaseSensitive(sft, "val_data_xxh3") || json_req_hex64(sft, "val_data_xxh3", what) != t->val_hash)
            die("%s: the run was made with other validation data than --val-data %s", what, o->val_data);
    }
}

/* --init: the checkpoint's model, its vocabulary grown to the tokenizer's
 * when the run adds the chat tokens. The balance and sequence length the
 * command leaves out are the checkpoint's own: a model fine-tunes as it
 * was trained (one trained with the aux-loss-free bias routes by it). */
static void init_config(Trainer *t, const char *dir, const TokHeader *given)
{
    TokHeader init_tok;
    cJSON *cfg = ckpt_read_config(dir, &t->cfg, &init_tok);
    char *path = xasprintf("%s/config.json", dir);
    tokenizer_match(&init_tok, path, given, t->o->tokenizer);
    static const char *const inherited[] = {"balance", "balance_coef", "balance_tau", "z_loss", "bias_rate", "seq_len"};
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(cfg, "training");
    for (size_t i = 0; tr && i < sizeof settings / sizeof *settings; i++)
        for (size_t k = 0; k < sizeof inherited / sizeof *inherited; k++)
            if (!strcmp(settings[i].key, inherited[k]) && !train_option_was_given(t->o, settings[i].option) &&
                cJSON_GetObjectItemCaseSensitive(tr, inherited[k]))
                setting_from_json(&t->opt, &settings[i], tr, path, NULL);
    if (t->opt.seq_len > (uint32_t)t->cfg.max_seq_len) t->opt.seq_len = (uint32_t)t->cfg.max_seq_len;
    if ((uint32_t)t->cfg.vocab_size < t->tok.vocab_size) t->cfg.vocab_size = (int)t->tok.vocab_size;
    config_validate(&t->cfg, path);
    cJSON_Delete(cfg);
    free(path);
}

/* The rows of ids [from, to) of a [V, d] tensor set to the mean of its rows [0, from). */
static void mean_rows(float *w, size_t from, size_t to, size_t d)
{
    for (size_t i = 0; i < d; i++) {
        double s = 0;
        for (size_t r = 0; r < from; r++) s += w[r * d + i];
        for (size_t r = from; r < to; r++) w[r * d + i] = (float)(s / (double)from);
    }
}

/* --init's weights into the model, tensor by tensor (the vocabulary may
 * have grown); the rows of the chat tokens the run adds, in the embedding
 * and the head, take the mean of the old tokens' rows (as users do when
 * they add tokens: a new token starts as an average one). */
static void load_init_weights(Trainer *t, const char *dir)
{
    Model *m = &t->model;
    Config c0;
    TokHeader th;
    cJSON_Delete(ckpt_read_config(dir, &c0, &th));
    int n0 = param_tensors_slice(NULL, &c0, m->experts);   /* this rank's experts */
    ParamTensor *t0 = xcalloc((size_t)n0, sizeof *t0);
    param_tensors_slice(t0, &c0, m->experts);
    ParamLayout lay0;
    param_layout_slice(&lay0, &c0, m->experts);
    float *p0 = xmalloc(lay0.total * sizeof(float));
    ckpt_read_tensors(dir, "model.safetensors", t0, n0, p0, ckpt_model_hash(dir), t->ep > 1);
    if (n0 != m->n_tensors) BUG("%s: %d tensors, the model %d", dir, n0, m->n_tensors);
    for (int i = 0; i < n0; i++)   /* the same walk: only the vocabulary's rows may differ */
        memcpy(m->params + m->tensors[i].offset, p0 + t0[i].offset, t0[i].numel * sizeof(float));
    if (t->base_vocab) {
        ParamLayout lay;
        param_layout_slice(&lay, &t->cfg, m->experts);
        mean_rows(m->params + lay.embed, t->base_vocab, t->tok.vocab_size, (size_t)t->cfg.d_model);
        if (lay.head != lay.embed) mean_rows(m->params + lay.head, t->base_vocab, t->tok.vocab_size, (size_t)t->cfg.d_model);
    }
    size_t nb = (size_t)t->cfg.n_layers * t->cfg.n_experts;
    int uses_bias = ckpt_read_routing_bias(dir, m->expert_bias, nb);
    if (uses_bias && t->o->balance != BALANCE_BIAS) {
        memset(m->expert_bias, 0, nb * sizeof(float));
        warn("%s routes with its aux-loss-free bias; --balance %s fine-tunes it without (the bias is dropped)", dir,
             balance_kind_name(t->o->balance));
    }
    free(p0);
    free(t0);
}

static void read_chat(Trainer *t)
{
    const TrainOptions *o = t->o;
    ChatLayout lay = {.T = (int)o->seq_len, .train_all = !strcmp(o->train_on, "all"), .pack = o->pack,
                      .cut_long = !strcmp(o->long_rows, "cut"), .skip_bad = o->skip_bad, .seed = o->seed};
    chat_data_open(&t->chat, o->data, o->val_data, o->val_data ? 0 : o->val_fraction, t->tokenizer, &lay);
    if (!t->data_hash) t->data_hash = file_hash64(o->data);
    if (o->val_data && !t->val_hash) t->val_hash = file_hash64(o->val_data);
    const ChatSet *s = &t->chat.train;
    const ChatRows *r = &t->chat.train_rows;
    info("data: %zu conversations in %zu rows of %u (%.0f%% filled), %llu tokens with loss; %zu held out; skipped %llu "
         "without an assistant turn, %llu bad lines; %llu longer than a row %s",
         s->n, r->n_rows, o->seq_len, 100.0 * (double)r->tokens / ((double)r->n_rows * o->seq_len),
         (unsigned long long)r->learned, t->chat.val.n, (unsigned long long)(s->no_assistant + t->chat.val.no_assistant),
         (unsigned long long)(s->bad + t->chat.val.bad), (unsigned long long)(s->cut + s->dropped + t->chat.val.cut + t->chat.val.dropped),
         strcmp(o->long_rows, "cut") ? "dropped" : "cut");
}

/* ---- checkpoints ---------------------------------------------------------- */

/* A checkpoint holds the whole model whatever --ep was, so that any number
 * of processes resumes it: rank 0 writes it, and the experts it does not
 * hold come from the other ranks of its group, one layer's slice at a
 * time, in the order the writer reaches them (weights, then m, then v;
 * layer by layer; rank by rank). */
typedef struct {
    const Trainer *t;
    const float *local;        /* this rank's buffer: the weights, or the moments (m, then v) */
    size_t full_n, local_n;    /* floats of one kind (weights, m or v) in the whole model and here */
    float *slice;              /* [Eh * 3 de d] the slice received last */
    size_t have;               /* which: (kind * L + layer) * ep + rank + 1, 0 for none */
} SaveSource;

static const float *save_source(void *ctx, int i, const ParamTensor *pt)
{
    (void)i;
    SaveSource *s = ctx;
    const Trainer *t = s->t;
    const Config *c = &t->cfg;
    size_t kind = pt->offset / s->full_n, off = pt->offset % s->full_n, D = t->dense;
    const float *base = s->local + kind * s->local_n;
    if (off < D) return base + off;   /* the replicated weights lie alike in both layouts */
    size_t per = 3 * (size_t)c->d_expert * c->d_model, layer = (off - D) / ((size_t)c->n_experts * per);
    size_t e = (off - D) / per % (size_t)c->n_experts, within = (off - D) % per, eh = (size_t)t->model.experts.count;
    size_t j = e / eh, local = D + (layer * eh + e % eh) * per + within;
    if (j == 0) return base + local;
    size_t key = (kind * (size_t)c->n_layers + layer) * (size_t)t->ep + j + 1;
    if (s->have != key) {   /* the next slice from rank j (ranks are numbered in their group from 0) */
        comm_pass(t->comm, s->slice, eh * per * sizeof(float), (int)j, 0);
        s->have = key;
    }
    return s->slice + (e % eh) * per + within;
}

/* The other ranks of the first group: their slices to rank 0 in that order. */
static void serve_checkpoint(const Trainer *t)
{
    const Config *c = &t->cfg;
    if (t->rank == 0 || t->rank >= t->ep) return;
    size_t per = 3 * (size_t)c->d_expert * c->d_model, eh = (size_t)t->model.experts.count, n = t->model.n_params;
    const float *kinds[3] = {t->model.params, t->moments, t->moments + n};
    for (int k = 0; k < 3; k++)
        for (int l = 0; l < c->n_layers; l++)
            comm_pass(t->comm, (void *)(kinds[k] + t->dense + (size_t)l * eh * per), eh * per * sizeof(float), t->rank, 0);
}

static uint64_t save_tensors(const Trainer *t, const AtomicDir *ad, const char *name, const ParamTensor *full, int n,
                             const float *local)
{
    const Config *c = &t->cfg;
    SaveSource s = {.t = t, .local = local, .full_n = t->full_params, .local_n = t->model.n_params};
    if (t->ep > 1) s.slice = xmalloc((size_t)t->model.experts.count * 3 * c->d_expert * c->d_model * sizeof(float));
    uint64_t h = ckpt_write_tensors_from(ad, name, full, n, save_source, &s);
    free(s.slice);
    return h;
}

static void save_checkpoint(Trainer *t)
{
    AtomicDir ad;
    ckpt_begin(&ad, t->o->out, t->step);
    Model *m = &t->model;
    cJSON *sections = json_obj();
    json_add(sections, "training", training_json(t));
    char *by = xasprintf("%s %s", t->o->tool, SIGMA_VERSION);
    json_add_str(sections, "created_by", by);
    free(by);
    if (t->o->sft) json_add(sections, "sft", sft_json(t));
    ckpt_write_config(&ad, &t->cfg, &t->tok, sections);
    uint64_t model_hash = save_tensors(t, &ad, "model.safetensors", t->full_tensors, t->n_full, m->params);
    uint64_t opt_hash = save_tensors(t, &ad, "optimizer.safetensors", t->full_moment_tensors, 2 * t->n_full, t->moments);

    TrainerState st = {.model_xxh3 = model_hash, .optimizer_xxh3 = opt_hash, .step = t->step, .tokens_seen = t->tokens_seen,
                       .skipped = t->skipped, .epoch = t->train.pos.epoch, .group = t->train.pos.group,
                       .index = t->train.pos.index, .n_hist = t->n_hist, .expert_bias = m->expert_bias,
                       .n_bias = (size_t)t->cfg.n_layers * t->cfg.n_experts};
    memcpy(st.loss_hist, t->loss_hist, sizeof st.loss_hist);
    ckpt_write_state(&ad, &st);

    ckpt_commit(&ad, t->o->out, t->step, t->o->keep);
    verbose("checkpoint %s/step-%08llu", t->o->out, (unsigned long long)t->step);
}

/* Resuming: the checkpoint fixes the model; the options that decide the
 * data order and the batches must be the same as when it was written. */
static void check_same(const cJSON *tr, const char *key, double now, const char *what)
{
    double was = json_req_num(tr, key, what);
    if (was != now) die("%s: the run was made with %s %.17g, this command asks for %.17g", what, key, was, now);
}

static void load_checkpoint(Trainer *t, const char *dir)
{
    TokHeader tok;
    cJSON *cfg = ckpt_read_config(dir, &t->cfg, &tok);
    char *path = xasprintf("%s/config.json", dir);
    resume_settings(t, json_req(cfg, "training", path), path);
    t->opt.lr.total = t->opt.steps;
    if (t->o->sft) {   /* the settings say whether the run grew the tokenizer */
        TokHeader given;
        sft_tokenizer(t, &given);
        sft_same_data(t, json_req(cfg, "sft", path), path);
    }
    tokenizer_match(&tok, path, &t->tok, t->o->sft ? t->o->tokenizer : "the shard set");
    cJSON_Delete(cfg);
    free(path);
}

static void load_state(Trainer *t, const char *dir)
{
    Model *m = &t->model;
    TrainerState st = {.expert_bias = m->expert_bias};
    StateLimits lim = {.tokens_per_step = (uint64_t)t->accum * t->o->micro_batch * t->o->seq_len,
                       .seqs_per_step = (uint64_t)t->accum * t->o->micro_batch, .n_sequences = t->train.n_sequences,
                       .n_groups = loader_groups(&t->train), .bias_rate = t->o->bias_rate,
                       .n_bias = (size_t)t->cfg.n_layers * t->cfg.n_experts};
    ckpt_read_state(dir, &st, &lim);
    Config c;
    TokHeader tok;
    cJSON *cfg = ckpt_read_config(dir, &c, &tok);
    char *cfg_path = xasprintf("%s/config.json", dir);
    check_same(json_req(cfg, "training", cfg_path), "accum", t->accum, cfg_path);
    free(cfg_path);
    cJSON_Delete(cfg);
    int slice = t->ep > 1;   /* this rank's experts of the file's */
    ckpt_read_tensors(dir, "model.safetensors", m->tensors, m->n_tensors, m->params, st.model_xxh3, slice);
    ckpt_read_tensors(dir, "optimizer.safetensors", t->moment_tensors, 2 * m->n_tensors, t->moments, st.optimizer_xxh3, slice);
    t->step = st.step;
    t->tokens_seen = st.tokens_seen;
    t->skipped = st.skipped;
    char *what = xasprintf("%s/trainer.json: data_position", dir);
    loader_seek(&t->train, (LoaderPos){st.epoch, st.group, st.index}, what);
    free(what);
    t->n_hist = st.n_hist;
    memcpy(t->loss_hist, st.loss_hist, sizeof t->loss_hist);
}

/* ---- the step ----------------------------------------------------------------- */

static BalanceOptions balance_options(const Trainer *t, int global)
{
    const TrainOptions *o = t->o;
    BalanceOptions bo = {.kind = o->balance, .coef = (float)o->balance_coef, .tau = (float)o->balance_tau,
                         .z_coef = (float)o->z_loss};
    if (global) { bo.global_counts = t->step_counts; bo.global_tokens = t->step_tokens; }
    return bo;
}

/* Weights and moments: into the device after initialisation or loading,
 * back to the host before saving. */
static void state_to_device(Trainer *t) { device_set_state(t->dev, t->model.params, t->moments); }
static void state_to_host(Trainer *t)
{
    device_get_state(t->dev, t->model.params, t->moments);
    /* ZeRO-1: each rank holds its share of the moments; the first group's
     * ranks gather their experts', rank 0 the rest, and saves them all */
    size_t n = t->model.n_params, D = t->dense;
    for (int h = 0; h < 2; h++) {
        comm_gather_shards(t->comm, t->moments + h * n, D);
        comm_gather_shards(t->edp_comm, t->moments + h * n + D, n - D);
    }
}

/* ---- the two groups of a step's sums ------------------------------------------------------
 * The replicated weights' gradients are summed over every rank, the
 * experts' over the ranks that hold the same ones; ZeRO-1 gives each rank
 * its share of each, so the optimizer state of every weight lives once. */

static void exchange_counts(void *ctx, const int *send, int *recv, int per) { comm_alltoall_ints(ctx, send, recv, per); }
static void exchange_rows(void *ctx, const void *send, const int *send_rows, void *recv, const int *recv_rows, size_t row_bytes)
{
    comm_alltoallv(ctx, send, send_rows, recv, recv_rows, row_bytes);
}

/* This rank's shares: of the replicated weights over the world, of its
 * experts over the ranks that hold them. */
static int zero_spans(const Trainer *t, Span *s)
{
    size_t D = t->dense, P = t->model.n_params;
    int es = comm_size(t->edp_comm), er = comm_rank(t->edp_comm);
    s[0] = (Span){comm_shard_begin(D, t->rank, t->nproc), comm_shard_begin(D, t->rank + 1, t->nproc)};
    s[1] = (Span){D + comm_shard_begin(P - D, er, es), D + comm_shard_begin(P - D, er + 1, es)};
    return 2;
}

static void reduce_scatter_grads(Trainer *t)
{
    float *g = device_grads(t->dev);
    comm_reduce_scatter(t->comm, g, t->dense);
    comm_reduce_scatter(t->edp_comm, g + t->dense, t->model.n_params - t->dense);
}

static void allgather_params(Trainer *t)
{
    float *w = device_params(t->dev);
    comm_allgather(t->comm, w, t->dense);
    comm_allgather(t->edp_comm, w + t->dense, t->model.n_params - t->dense);
    device_params_changed(t->dev);
}

/* The moments' table over [2 * n_params]: "m.NAME" over the first half,
 * "v.NAME" over the second. */
static ParamTensor *moment_table(const ParamTensor *t, int n, size_t n_params)
{
    ParamTensor *mt = xcalloc(2 * (size_t)n, sizeof *mt);
    for (int i = 0; i < n; i++)
        for (int h = 0; h < 2; h++) {
            ParamTensor *p = &mt[h * n + i];
            *p = t[i];
            size_t len = strlen(t[i].name);
            if (len + 3 > sizeof p->name) BUG("tensor name %s too long for its moment's", t[i].name);
            p->name[0] = h ? 'v' : 'm';
            p->name[1] = '.';
            memcpy(p->name + 2, t[i].name, len + 1);
            p->offset += h ? n_params : 0;
        }
    return mt;
}

/* The step's mask and positions from token `at`: NULL in pretraining. */
static const float *mask_at(const Trainer *t, size_t at) { return t->mask ? t->mask + at : NULL; }
static const int *pos_at(const Trainer *t, size_t at) { return t->pos ? t->pos + at : NULL; }

/* Targets with loss among n from `at`: all of them (`all`) without a mask. */
static uint64_t mask_sum(const float *mask, size_t at, size_t n, uint64_t all)
{
    if (!mask) return all;
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) s += mask[at + i] != 0;
    return s;
}

static void add_counts(Trainer *t)
{
    size_t n = (size_t)t->cfg.n_layers * t->cfg.n_experts;
    for (size_t i = 0; i < n; i++) t->step_counts[i] += t->model.counts[i];
}

/* One optimizer step; returns its losses (summed over micro-batches / accum). */
static Losses train_step(Trainer *t, double *grad_norm, int *skipped_now)
{
    const TrainOptions *o = t->o;
    Model *m = &t->model;
    const int B = (int)o->micro_batch, T = (int)o->seq_len, L = t->cfg.n_layers, E = t->cfg.n_experts;
    const size_t mb = (size_t)B * T;
    loader_next(&t->train, t->inputs, t->targets, t->mask, t->pos, (size_t)t->accum * B);
    t->step_learned = mask_sum(t->mask, 0, (size_t)t->accum * mb, (uint64_t)t->accum * mb);

    int global = o->balance == BALANCE_LBL_GLOBAL;
    memset(t->step_counts, 0, (size_t)L * E * sizeof(float));
    if (global) {   /* the step's expert counts first, so every micro-batch sees them */
        for (uint32_t a = t->a0; a < t->a1; a++) {
            BalanceOptions none = {.kind = BALANCE_NONE};
            device_forward(t->dev, t->inputs + a * mb, t->targets + a * mb, mask_at(t, a * mb), pos_at(t, a * mb), B, T,
                           &none);
            add_counts(t);
        }
        comm_sum_floats(t->comm, t->step_counts, (size_t)L * E);
        for (int l = 0; l < L; l++) t->step_tokens[l] = (float)(t->accum * mb);
    }
    BalanceOptions bo = balance_options(t, global);
    Losses sum = {0};
    device_zero_grads(t->dev);
    float scale = 1.0f / (float)t->accum;
    for (uint32_t a = t->a0; a < t->a1; a++) {
        /* the ce's share of the step: each micro-batch's learned tokens over the step's */
        float ce_scale = t->mask ? (t->step_learned ? (float)((double)mask_sum(t->mask, a * mb, mb, mb) / (double)t->step_learned) : 0.0f)
                                 : scale;
        Losses l = device_forward(t->dev, t->inputs + a * mb, t->targets + a * mb, mask_at(t, a * mb), pos_at(t, a * mb), B,
                                  T, &bo);
        device_backward(t->dev, ce_scale, scale);
        if (!global) add_counts(t);
        sum.loss += t->mask ? l.ce * ce_scale + (l.balance + l.z) * scale : l.loss * scale;
        sum.ce += l.ce * ce_scale;
        sum.balance += l.balance * scale;
        sum.z += l.z * scale;
    }
    if (t->nproc > 1) {   /* the ranks' shares into the step's sums; the stop request too, so all stop together */
        double v[5] = {sum.loss, sum.ce, sum.balance, sum.z, stop_requested ? 1 : 0};
        comm_sum_doubles(t->comm, v, 5);
        sum = (Losses){.loss = (float)v[0], .ce = (float)v[1], .balance = (float)v[2], .z = (float)v[3]};
        t->stop_agreed = v[4] > 0;
        if (!global) comm_sum_floats(t->comm, t->step_counts, (size_t)L * E);
        reduce_scatter_grads(t);   /* ZeRO-1: each rank its share of the sum */
    }
    *grad_norm = device_grad_norm(t->dev);
    if (t->nproc > 1) {   /* of the shares' norms */
        double sq = *grad_norm * *grad_norm;
        comm_sum_doubles(t->comm, &sq, 1);
        *grad_norm = sqrt(sq);
    }
    *skipped_now = !isfinite(sum.loss) || !isfinite(*grad_norm);
    if (*skipped_now) return sum;

    AdamWStep s = {.lr = (float)lr_at(&o->lr, t->step), .beta1 = (float)o->beta1, .beta2 = (float)o->beta2,
                   .eps = (float)o->eps, .weight_decay = (float)o->weight_decay,
                   .grad_scale = clip_scale(*grad_norm, o->clip), .t = t->step + 1 - t->skipped};
    device_adamw(t->dev, &s);
    if (t->nproc > 1) allgather_params(t);   /* every rank's updated share to every rank that holds it */
    if (o->balance == BALANCE_BIAS) {   /* the bias follows the whole step's counts */
        memcpy(m->counts, t->step_counts, (size_t)L * E * sizeof(float));
        model_update_bias(m, (float)o->bias_rate);
    }
    return sum;
}

/* The validation loss; *tokens: the targets it is a mean over. */
static double evaluate(Trainer *t, uint64_t *tokens)
{
    const int B = (int)t->o->micro_batch, T = (int)t->o->seq_len;
    loader_seek(&t->val, (LoaderPos){0, 0, 0}, "validation");
    /* no balance term; an aux-loss-free run routes with its bias, as in training and at inference */
    BalanceOptions none = {.kind = t->o->balance == BALANCE_BIAS ? BALANCE_BIAS : BALANCE_NONE};
    double sum = 0, weight = 0, count = 0;
    uint64_t n = t->o->eval_batches;
    if (n > (t->val.n_sequences + B - 1) / B) n = (t->val.n_sequences + B - 1) / B;   /* no sequence twice */
    uint64_t rounds = (n + (uint64_t)t->nproc - 1) / (uint64_t)t->nproc;
    for (uint64_t i = 0; i < rounds * (uint64_t)t->nproc; i++) {
        if (i < n) loader_next(&t->val, t->inputs, t->targets, t->mask, t->pos, (size_t)B);
        if ((int)(i % (uint64_t)t->nproc) != t->rank) continue;   /* the ranks take turns */
        if (i >= n) {   /* no batch left for this rank: an expert-parallel group's ranks compute in step all the same */
            if (t->ep == 1) continue;
            memset(t->inputs, 0, (size_t)B * T * sizeof(uint32_t));
            device_forward(t->dev, t->inputs, t->inputs, NULL, NULL, B, T, &none);
            continue;
        }
        uint64_t first = i * (uint64_t)B, rows = t->val.n_sequences - first < (uint64_t)B ? t->val.n_sequences - first : (uint64_t)B;
        if (t->mask)   /* the last batch's rows beyond the split came round again: no loss on them */
            memset(t->mask + rows * T, 0, ((size_t)B - rows) * T * sizeof(float));
        double w = (double)mask_sum(t->mask, 0, (size_t)B * T, 1);   /* sft: a mean over learned tokens */
        sum += w * device_forward(t->dev, t->inputs, t->targets, t->mask, t->pos, B, T, &none).ce;
        weight += w;
        count += t->mask ? w : (double)B * T;
    }
    double v[3] = {sum, weight, count};
    comm_sum_doubles(t->comm, v, 3);
    *tokens = (uint64_t)v[2];
    return v[1] > 0 ? v[0] / v[1] : 0;
}

static void event(Trainer *t, const char *what, const char *fmt, ...) SG_PRINTF(3, 4);
static void event(Trainer *t, const char *what, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    cJSON *e = json_obj();
    json_add_str(e, "type", "event");
    json_add_u64(e, "step", t->step);
    json_add_str(e, "what", what);
    json_add_str(e, "details", detail);
    metrics_write(&t->metrics, e);
    info("step %llu: %s: %s", (unsigned long long)t->step, what, detail);
}

/* Loss spikes: a z-score against the last LOSS_WINDOW steps. */
static void watch_loss(Trainer *t, double loss)
{
    uint64_t n = t->n_hist < LOSS_WINDOW ? t->n_hist : LOSS_WINDOW;
    if (n >= 10 && t->o->spike_z > 0) {
        double mean = 0, var = 0;
        for (uint64_t i = 0; i < n; i++) mean += t->loss_hist[i];
        mean /= (double)n;
        for (uint64_t i = 0; i < n; i++) var += (t->loss_hist[i] - mean) * (t->loss_hist[i] - mean);
        double sd = sqrt(var / (double)n), z = sd > 0 ? (loss - mean) / sd : 0;
        if (z > t->o->spike_z) event(t, "loss_spike", "loss %.4f is %.1f standard deviations above the mean %.4f of the last %llu steps", loss, z, mean, (unsigned long long)n);
    }
    t->loss_hist[t->n_hist % LOSS_WINDOW] = loss;
    t->n_hist++;
}

/* What this rank's collectives moved, over its three groups. */
static CommStats comm_totals(const Trainer *t)
{
    CommStats s = comm_stats(t->comm);
    const Comm *groups[2] = {t->ep_comm, t->edp_comm};
    for (int i = 0; i < 2; i++) {
        CommStats g = comm_stats(groups[i]);
        s.bytes += g.bytes;
        s.seconds += g.seconds;
        s.calls += g.calls;
        s.alltoall_bytes += g.alltoall_bytes;
        s.alltoall_seconds += g.alltoall_seconds;
    }
    return s;
}

static void log_step(Trainer *t, Losses l, double grad_norm, double lr, double tok_s, int skipped)
{
    cJSON *j = json_obj(), *k = json_arr(), *hi = json_arr(), *lo = json_arr();
    json_add_str(j, "type", "train");
    json_add_u64(j, "step", t->step);
    json_add_num(j, "loss", l.loss);
    json_add_num(j, "ce", l.ce);
    json_add_num(j, "balance", l.balance);
    json_add_num(j, "z", l.z);
    json_add_num(j, "lr", lr);
    json_add_num(j, "grad_norm", grad_norm);
    json_add_u64(j, "tokens", t->tokens_seen);
    if (t->mask) json_add_u64(j, "learned", t->step_learned);   /* the step's targets with loss */
    if (t->nproc > 1) {   /* what the step's collectives of buffers moved, and the time they took */
        CommStats c = comm_totals(t);
        json_add_u64(j, "comm_bytes", c.bytes - t->comm_logged.bytes);
        json_add_num(j, "comm_s", round((c.seconds - t->comm_logged.seconds) * 1e6) / 1e6);
        if (t->ep > 1) {
            json_add_u64(j, "alltoall_bytes", c.alltoall_bytes - t->comm_logged.alltoall_bytes);
            json_add_num(j, "alltoall_s", round((c.alltoall_seconds - t->comm_logged.alltoall_seconds) * 1e6) / 1e6);
        }
        t->comm_logged = c;
    }
    json_add_num(j, "tokens_per_s", round(tok_s));
    json_add_bool(j, "skipped", skipped);
    for (int layer = 0; layer < t->cfg.n_layers; layer++) {
        double a, b;
        load_deviation(t->step_counts + (size_t)layer * t->cfg.n_experts, t->cfg.n_experts, &a, &b);
        json_push(k, cJSON_CreateNumber(t->cfg.top_k[layer]));
        json_push(hi, cJSON_CreateNumber(round(a * 1e4) / 1e4));
        json_push(lo, cJSON_CreateNumber(round(b * 1e4) / 1e4));
    }
    json_add(j, "topk", k);
    json_add(j, "load_max", hi);
    json_add(j, "load_min", lo);
    if (t->ep > 1) {   /* the busiest rank's rows: it sets the pace of the group */
        cJSON *r = json_arr();
        int eh = t->cfg.n_experts / t->ep;
        float *per_rank = xmalloc((size_t)t->ep * sizeof(float));
        for (int layer = 0; layer < t->cfg.n_layers; layer++) {
            const float *cnt = t->step_counts + (size_t)layer * t->cfg.n_experts;
            for (int g = 0; g < t->ep; g++) {
                per_rank[g] = 0;
                for (int e = g * eh; e < (g + 1) * eh; e++) per_rank[g] += cnt[e];
            }
            double a, b;
            load_deviation(per_rank, t->ep, &a, &b);
            json_push(r, cJSON_CreateNumber(round(a * 1e4) / 1e4));
        }
        free(per_rank);
        json_add(j, "rank_load_max", r);
    }
    metrics_write(&t->metrics, j);
}

/* ---- the run ------------------------------------------------------------------ */

/* Ranks started with other options, another binary or other data would
 * compute apart without a word: each is compared with rank 0's. */
static void check_same_start(Trainer *t)
{
    if (t->nproc == 1) return;
    XXH3_state_t *h = XXH3_createState();
    XXH3_64bits_reset(h);
    char text[512];
    for (size_t i = 0; i < sizeof settings / sizeof *settings; i++) {
        setting_format(text, sizeof text, &settings[i], t->o);
        XXH3_64bits_update(h, text, strlen(text) + 1);
    }
    const char *paths[] = {t->o->data, t->o->out, t->o->init, t->o->tokenizer, t->o->val_data, t->device->name};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        XXH3_64bits_update(h, paths[i] ? paths[i] : "", paths[i] ? strlen(paths[i]) + 1 : 1);
    comm_check_same(t->comm, XXH3_64bits_digest(h), "the options");
    XXH3_freeState(h);
    comm_check_same(t->comm, file_hash64("/proc/self/exe"), "the program (its binary)");
    uint64_t data = t->data_hash ^ t->val_hash;
    if (!t->o->sft)
        for (int s = 0; s < N_SPLITS; s++)
            for (size_t i = 0; i < t->set.split[s].n_shards; i++) data = data * 0x100000001b3ull ^ t->set.split[s].shards[i].xxh3;
    comm_check_same(t->comm, data, "the data (the checksums of its files)");
}

/* Fine-tuning's length: --epochs over the rows unless --steps is given,
 * the warmup a twentieth of it unless given (or resumed). */
static void sft_steps(Trainer *t)
{
    TrainOptions *o = &t->opt;
    uint64_t rows_per_step = (uint64_t)t->accum * o->micro_batch;
    if (!train_option_was_given(o, "steps")) {
        double steps = ceil(o->epochs * (double)t->chat.train_rows.n_rows / (double)rows_per_step);
        o->steps = steps < 1 ? 1 : (uint64_t)steps;
    }
    if (!o->resume && !train_option_was_given(o, "warmup")) o->lr.warmup = o->steps / 20;
    o->lr.total = o->steps;
    info("%llu steps of %llu rows: %.2f epochs", (unsigned long long)o->steps, (unsigned long long)rows_per_step,
         (double)o->steps * (double)rows_per_step / (double)t->chat.train_rows.n_rows);
}

static void check_ep(const Trainer *t)
{
    if (t->cfg.n_experts % t->ep) usage_error("--ep %d must divide the %d experts of a layer", t->ep, t->cfg.n_experts);
}

static void setup(Trainer *t)
{
    const TrainOptions *o = t->o;
    Model *m = &t->model;
    size_t tokens_per_micro = (size_t)o->micro_batch * o->seq_len;
    t->accum = (uint32_t)((o->batch_tokens + tokens_per_micro / 2) / tokens_per_micro);
    if (t->accum == 0) t->accum = 1;
    if (t->accum % (uint32_t)t->nproc)
        usage_error("%u micro-batches a step (--batch-tokens / (--micro-batch x --seq-len)) cannot be shared by %d processes: "
                    "make --batch-tokens a multiple of %llu", t->accum, t->nproc,
                    (unsigned long long)t->nproc * tokens_per_micro);
    t->a0 = t->accum / (uint32_t)t->nproc * (uint32_t)t->rank;
    t->a1 = t->a0 + t->accum / (uint32_t)t->nproc;
    if (o->sft) sft_steps(t);
    check_ep(t);
    if ((uint64_t)o->seq_len > (uint64_t)t->cfg.max_seq_len)
        usage_error("--seq-len %u is above the model's max_seq_len %d", o->seq_len, t->cfg.max_seq_len);
    check_memory(t);

    char err[256];
    char *spec = o->topk_schedule ? xstrdup(o->topk_schedule) : NULL;
    if (!spec) {   /* the config's k at every step */
        size_t cap = 16 + 12 * (size_t)t->cfg.n_layers, len = 0;
        spec = xmalloc(cap);
        len += (size_t)snprintf(spec, cap, "0:");
        for (int l = 0; l < t->cfg.n_layers; l++) len += (size_t)snprintf(spec + len, cap - len, "%s%d", l ? "," : "", t->cfg.top_k[l]);
    }
    if (topk_parse(&t->topk, spec, t->cfg.n_layers, t->cfg.n_experts, err, sizeof err))
        usage_error("--topk-schedule: %s", err);
    free(spec);

    /* the model's buffers hold the largest k each layer will see */
    Config alloc = t->cfg;
    for (size_t ph = 0; ph < t->topk.n_phases; ph++)
        for (int l = 0; l < alloc.n_layers; l++) {
            int k = t->topk.k[ph * (size_t)alloc.n_layers + l];
            alloc.top_k[l] = ph == 0 || k > alloc.top_k[l] ? k : alloc.top_k[l];
        }
    gpu_paths_default(&t->paths);
    t->paths.recompute = o->recompute;
    t->device->use_local_rank(comm_local_rank(t->comm));
    t->exchange = (ExpertExchange){.size = t->ep, .rank = t->rank % t->ep, .counts = exchange_counts, .rows = exchange_rows};
    t->dev = device_open_ep(t->device, m, &alloc, (int)o->micro_batch, (int)o->seq_len, &t->paths, &t->exchange, !sg_quiet);
    comm_bind_device(t->comm, t->device->name);
    t->ep_comm = comm_split(t->comm, t->rank / t->ep, t->rank);
    t->edp_comm = comm_split(t->comm, t->rank % t->ep, t->rank);
    t->exchange.ctx = t->ep_comm;   /* before the first forward */
    ParamLayout pl;
    param_layout_slice(&pl, &t->cfg, m->experts);
    t->dense = pl.experts_begin;
    /* ZeRO-1: each rank keeps the AdamW moments of its shares of the weights */
    Span spans[DEVICE_MAX_SPANS];
    device_own(t->dev, spans, zero_spans(t, spans));
    m->cfg = t->cfg;
    t->moments = xcalloc(2 * m->n_params, sizeof(float));
    t->moment_tensors = moment_table(m->tensors, m->n_tensors, m->n_params);
    t->n_full = param_tensors(NULL, &t->cfg);
    t->full_tensors = xcalloc((size_t)t->n_full, sizeof(ParamTensor));
    param_tensors(t->full_tensors, &t->cfg);
    param_layout(&pl, &t->cfg);
    t->full_params = pl.total;
    t->full_moment_tensors = moment_table(t->full_tensors, t->n_full, t->full_params);
    size_t step_tokens = (size_t)t->accum * tokens_per_micro;
    t->inputs = xmalloc(step_tokens * sizeof(uint32_t));
    t->targets = xmalloc(step_tokens * sizeof(uint32_t));
    if (o->sft) {
        t->mask = xmalloc(step_tokens * sizeof(float));
        t->pos = xmalloc(step_tokens * sizeof(int));
    }
    t->step_counts = xcalloc((size_t)t->cfg.n_layers * t->cfg.n_experts, sizeof(float));
    t->step_tokens = xcalloc((size_t)t->cfg.n_layers, sizeof(float));
    if (o->sft) {
        loader_init_rows(&t->train, &t->chat.train_rows, o->seed, 1);
        t->have_val = o->eval_every > 0 && t->chat.val_rows.n_rows > 0;
        if (t->have_val) loader_init_rows(&t->val, &t->chat.val_rows, o->seed, 0);
        return;
    }
    loader_init(&t->train, &t->set, SPLIT_TRAIN, o->seq_len, o->seed, 1, 2);
    t->have_val = o->eval_every > 0 && t->set.split[SPLIT_VAL].tokens > o->seq_len;
    if (o->eval_every > 0 && !t->have_val)
        warn("%s: the validation split has no sequence of %u tokens: no validation loss", o->data, o->seq_len + 1);
    if (t->have_val) loader_init(&t->val, &t->set, SPLIT_VAL, o->seq_len, o->seed, 0, 1);
}

static void teardown(Trainer *t)
{
    loader_free(&t->train);
    if (t->have_val) loader_free(&t->val);
    device_close(t->dev);   /* and the host model with it */
    topk_free(&t->topk);
    metrics_close(&t->metrics);
    if (t->o->sft) {
        chat_data_free(&t->chat);
        tokenizer_free(t->tokenizer);
    } else {
        shardset_free(&t->set);
    }
    free(t->mask);
    free(t->pos);
    free(t->moments);
    free(t->moment_tensors);
    free(t->full_tensors);
    free(t->full_moment_tensors);
    free(t->inputs);
    free(t->targets);
    free(t->step_counts);
    free(t->step_tokens);
    for (int i = 0; i < t->n_owned; i++) free(t->owned[i]);
    comm_close(t->ep_comm);
    comm_close(t->edp_comm);
    comm_close(t->comm);
}

int run_training(const TrainOptions *command)
{
    const TrainOptions *o = command;
    Trainer t;
    memset(&t, 0, sizeof t);
    t.opt = *command;
    t.o = o = &t.opt;   /* from here on, the options as completed from a checkpoint */
    if (o->metrics && strcmp(o->metrics, "-")) t.opt.metrics = t.owned[t.n_owned++] = absolute_path(o->metrics);
    if (o->threads) omp_set_num_threads(o->threads);
    t.device = device_select(o->device, &t.device_why);
    t.comm = comm_open();
    t.rank = comm_rank(t.comm);
    t.nproc = comm_size(t.comm);
    t.ep = o->ep;
    int ranks = o->dry_run && o->nproc > 0 && t.nproc == 1 ? o->nproc : t.nproc;
    if (ranks % t.ep)
        usage_error("--ep %d: the %d process%s must be groups of %d (mpirun -n a multiple of %d)", t.ep, ranks, ranks > 1 ? "es" : "",
                    t.ep, t.ep);
    if (t.nproc > 1) {   /* one voice, rank 0's; every rank names itself in its errors */
        static char name[128];
        snprintf(name, sizeof name, "%s[%d]", sg_prog, t.rank);
        sg_prog = name;
        if (t.rank) sg_quiet = 1;
    }

    if (o->dry_run) {   /* the vocabulary of the data when given, else the preset's own */
        int vocab = 0;
        if (o->sft) {   /* the model that --init names */
            char *dir = ckpt_resolve(o->init);
            if (!dir) die("%s: not a checkpoint (no config.json) nor a run directory (no latest)", o->init);
            TokHeader th;
            cJSON_Delete(ckpt_read_config(dir, &t.cfg, &th));
            free(dir);
        } else if (o->data) {
            shardset_open(&t.set, o->data);
            vocab = (int)t.set.tok.vocab_size;
            shardset_free(&t.set);
        }
        if (!o->sft) fresh_config(&t, vocab);
        if (t.nproc > 1) t.opt.nproc = t.nproc;   /* under a launcher: its ranks */
        check_ep(&t);
        size_t tpm = (size_t)o->micro_batch * o->seq_len;
        uint32_t accum = (uint32_t)((o->batch_tokens + tpm / 2) / tpm);
        print_plan(&t.cfg, o, accum ? accum : 1, t.ep);
        printf("device: %s (%s)\n", t.device->name, t.device_why);
        if (t.device != &cpu_device_ops) {
            GpuPaths p;
            gpu_paths_default(&p);
            printf("gpu paths: attention %s, experts %s over %d streams%s (where the shapes allow)\n",
                   attention_path_name(p.attention), experts_path_name(p.experts), p.expert_streams,
                   o->recompute ? ", recomputed in backward" : "");
        }
        comm_close(t.comm);
        return 0;
    }

    if (t.rank == 0) ckpt_run_open(o->out, o->resume);   /* before any work: the output is usable and ours alone */
    comm_barrier(t.comm);
    if (!o->sft) {
        shardset_open(&t.set, o->data);
        t.tok = t.set.tok;
    }
    char *resume_dir = o->resume ? ckpt_resolve(o->out) : NULL;
    if (o->resume && !resume_dir) die("%s: no checkpoint to resume from (no latest)", o->out);
    if (!o->resume && path_exists(o->out)) {
        char *existing = ckpt_resolve(o->out);
        if (existing) die("%s already holds a run (use --resume to continue it, or another --out)", o->out);
    }
    char *init_dir = NULL;
    if (resume_dir) {
        load_checkpoint(&t, resume_dir);
    } else if (o->sft) {
        init_dir = ckpt_resolve(o->init);
        if (!init_dir) die("--init %s: not a checkpoint (no config.json) nor a run directory (no latest)", o->init);
        TokHeader given;
        sft_tokenizer(&t, &given);
        init_config(&t, init_dir, &given);
        if (t.base_vocab && t.rank == 0) {   /* the grown tokenizer exists nowhere else: the run keeps it */
            char *path = xasprintf("%s/tokenizer", o->out);
            tokenizer_save(t.tokenizer, path);
            info("the tokenizer with the chat tokens (ids %u and %u): %s", t.base_vocab, t.base_vocab + 1, path);
            free(path);
        }
    } else {
        fresh_config(&t, (int)t.tok.vocab_size);
    }
    if (o->sft) read_chat(&t);
    check_vocab(&t);
    check_same_start(&t);
    setup(&t);
    if (resume_dir) {
        load_state(&t, resume_dir);
        info("resuming %s at step %llu", resume_dir, (unsigned long long)t.step);
    } else if (init_dir) {
        load_init_weights(&t, init_dir);
        info("fine-tuning %s", init_dir);
    } else {
        model_init_params(&t.model, o->seed, (float)o->init_std);
    }
    free(init_dir);
    state_to_device(&t);
    free(resume_dir);
    metrics_open(&t.metrics, t.rank == 0 ? o->metrics : NULL, o->resume, t.step);

    uint64_t total, active;
    config_count_params(&t.cfg, &total, &active);
    if (t.device == &cpu_device_ops) info("device: cpu (%s)", t.device_why);
    else info("device: %s (%s); attention %s, experts %s over %d streams%s", t.device->name, t.device_why,
              attention_path_name(t.paths.attention), experts_path_name(t.paths.experts), t.paths.expert_streams,
              t.paths.recompute ? ", recomputed in backward" : "");
    info("model: %d layers, d %d, %d experts of %d; %.2fM parameters, %.2fM active; %u x %u x %u tokens a step",
         t.cfg.n_layers, t.cfg.d_model, t.cfg.n_experts, t.cfg.d_expert, total / 1e6, active / 1e6, t.accum,
         o->micro_batch, o->seq_len);

    struct sigaction sa = {0};
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND;   /* a second signal stops at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    Progress p;
    progress_init(&p, 10);
    RateWindow speed = {0};   /* tokens per second over the last steps, saves and validation included */
    rate_mark(&speed, now_seconds());
    size_t prev_phase = topk_phase(&t.topk, t.step);
    uint64_t start_step = t.step;
    double t_start = now_seconds();
    while (t.step < o->steps && !stopping(&t)) {
        size_t phase = topk_phase(&t.topk, t.step);
        memcpy(t.cfg.top_k, topk_at(&t.topk, t.step), (size_t)t.cfg.n_layers * sizeof(int));
        memcpy(t.model.cfg.top_k, t.cfg.top_k, (size_t)t.cfg.n_layers * sizeof(int));
        if (phase != prev_phase) {
            char *spec = topk_format(&t.topk);
            event(&t, "topk_switch", "phase %zu of '%s' begins", phase, spec);
            free(spec);
            prev_phase = phase;
        }
        double t0 = now_seconds(), grad_norm;
        int skipped;
        Losses l = train_step(&t, &grad_norm, &skipped);
        double lr = lr_at(&o->lr, t.step), dt = now_seconds() - t0;
        uint64_t step_tokens = (uint64_t)t.accum * o->micro_batch * o->seq_len;
        t.tokens_seen += step_tokens;
        if (skipped) {
            t.skipped++;
            event(&t, "skipped", "non-finite loss (%g) or gradient norm (%g); %llu skipped so far", l.loss, grad_norm,
                  (unsigned long long)t.skipped);
            if (t.skipped > o->max_skips)
                die("%llu steps skipped for non-finite values (more than --max-skips %llu); the last checkpoint in %s is intact",
                    (unsigned long long)t.skipped, (unsigned long long)o->max_skips, o->out);
        } else {
            watch_loss(&t, l.loss);
        }
        log_step(&t, l, grad_norm, lr, step_tokens / dt, skipped);
        t.step++;
        rate_mark(&speed, now_seconds());
        double elapsed = now_seconds() - t_start, per_step = elapsed / (double)(t.step - start_step);
        progress_update(&p, "%llu/%llu steps  loss %.4f  ce %.4f  lr %.2e  %.0f tok/s  ETA %.0f s", (unsigned long long)t.step,
                        (unsigned long long)o->steps, l.loss, l.ce, lr, rate_per_second(&speed, (double)step_tokens),
                        per_step * (double)(o->steps - t.step));
        if (t.have_val && (t.step % o->eval_every == 0 || t.step == o->steps)) {
            uint64_t val_tokens;
            double v = evaluate(&t, &val_tokens);
            cJSON *j = json_obj();
            json_add_str(j, "type", "val");
            json_add_u64(j, "step", t.step - 1);   /* metrics name a step by its index */
            json_add_num(j, "val_loss", v);
            json_add_u64(j, "val_tokens", val_tokens);
            metrics_write(&t.metrics, j);
            info("step %llu: validation loss %.4f", (unsigned long long)t.step - 1, v);
        }
        if ((o->save_every && t.step % o->save_every == 0) || t.step == o->steps || stopping(&t)) {
            state_to_host(&t);
            if (t.rank == 0) save_checkpoint(&t);
            else serve_checkpoint(&t);
        }
    }
    if (stopping(&t)) info("stopped by a signal after %llu steps; resume with --resume", (unsigned long long)t.step);
    else progress_done(&p, "%llu steps in %.1f s, last checkpoint %s/step-%08llu", (unsigned long long)(t.step - start_step),
                       now_seconds() - t_start, o->out, (unsigned long long)t.step);
    teardown(&t);
    return 0;
}
