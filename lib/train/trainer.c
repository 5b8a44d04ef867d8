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
 * losses, bit for bit, as one never interrupted. */
#include "train/trainer.h"
#include "base/base.h"
#include "base/json.h"
#include "data/shard.h"
#include "model/model.h"
#include "model/adamw.h"
#ifdef SIGMA_CUDA
#include "cuda/gpu_model.h"
#endif
#include "train/ckpt.h"
#include "train/loader.h"
#include "train/metrics.h"

#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOSS_WINDOW 50         /* steps of loss history for spike detection */

static const char *const balance_names[] = {"none", "lbl", "lbl-global", "top1-lbl", "bias"};

int balance_kind_parse(const char *name, BalanceKind *kind)
{
    for (int i = 0; i < 5; i++)
        if (!strcmp(name, balance_names[i])) { *kind = (BalanceKind)i; return 0; }
    return -1;
}

const char *balance_kind_name(BalanceKind kind) { return balance_names[kind]; }

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
    o->balance = BAL_LBL_GLOBAL;
    o->balance_coef = 1e-3;
    o->balance_tau = 0.1;
    o->bias_rate = 1e-3;
    o->eval_every = 100;
    o->eval_batches = 8;
    o->save_every = 500;
    o->keep = 3;
    o->max_skips = 20;
    o->spike_z = 6;
    o->device = "auto";
}

typedef struct {
    const TrainOptions *o;
    Config cfg;
    Model model;               /* on the CPU, or the host side of the GPU's */
    struct GpuModel *gpu;      /* the CUDA core, or NULL */
    ShardSet set;
    Loader train, val;
    int have_val;
    TopkSchedule topk;
    uint32_t accum;            /* micro-batches per step */
    float *moments;            /* [2 * n_params]: AdamW m, then v */
    ParamTensor *moment_tensors;   /* [2 * n_tensors] "m.NAME", "v.NAME" over moments */
    /* the step's data and routing counts */
    uint32_t *inputs, *targets;    /* [accum * B * T] */
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

/* ---- configuration ---------------------------------------------------------- */

static void check_vocab(const Trainer *t)
{
    if ((uint32_t)t->cfg.vocab_size < t->set.tok.vocab_size)
        die("the model's vocabulary (%d) is smaller than the shard set's (%u, %s)", t->cfg.vocab_size,
            t->set.tok.vocab_size, t->set.dir);
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

/* Memory a run needs, estimated from the shapes (the dry run allocates nothing). */
static void print_plan(const Config *c, const TrainOptions *o, uint32_t accum)
{
    uint64_t total, active;
    config_count_params(c, &total, &active);
    double d = c->d_model, de = c->d_expert, E = c->n_experts, L = c->n_layers, T = o->seq_len, B = o->micro_batch;
    double qkv = (c->n_heads + 2.0 * c->n_kv_heads) * c->head_dim;
    int kmax = 1;
    for (int l = 0; l < c->n_layers; l++) kmax = c->top_k[l] > kmax ? c->top_k[l] : kmax;
    /* floats kept per token and layer: norms, q/k/v (before and after rope), attention output,
     * the residual, router logits and probabilities, and per chosen expert its input, gate, up, act */
    double per_token_layer = 6 * d + 2 * qkv + 2 * E + kmax * (d + 3 * de) + c->n_heads * T;
    double acts = B * T * (L * per_token_layer + 3.0 * c->vocab_size + 4 * d) * 4;
    double state = (double)total * 4 * 4;   /* params, grads, AdamW m and v */
    printf("parameters: %llu total, %llu active per token (%.2fB / %.3fB)\n", (unsigned long long)total,
           (unsigned long long)active, total / 1e9, active / 1e9);
    printf("batch: %u x %u tokens per micro-batch, %u micro-batches, %llu tokens per step\n", o->micro_batch, o->seq_len,
           accum, (unsigned long long)accum * o->micro_batch * o->seq_len);
    printf("memory: %.2f GiB parameters, gradients and AdamW moments (fp32) + about %.2f GiB activations = %.2f GiB\n",
           state / (1 << 30), acts / (1 << 30), (state + acts) / (1 << 30));
    double flops = config_train_flops(c, (int)T);
    printf("flops: about %.3g per token (6 x (active + head) + attention), %.3g per step\n", flops, flops * accum * B * T);
}

static cJSON *training_json(const Trainer *t)
{
    const TrainOptions *o = t->o;
    cJSON *j = json_obj();
    char *topk = topk_format(&t->topk);
    json_add_str(j, "topk_schedule", topk);
    free(topk);
    json_add_str(j, "balance", balance_kind_name(o->balance));
    json_add_num(j, "balance_coef", o->balance_coef);
    json_add_num(j, "balance_tau", o->balance_tau);
    json_add_num(j, "z_loss", o->z_loss);
    json_add_num(j, "bias_rate", o->bias_rate);
    json_add_u64(j, "seq_len", o->seq_len);
    json_add_u64(j, "micro_batch", o->micro_batch);
    json_add_u64(j, "accum", t->accum);
    json_add_hex64(j, "seed", o->seed);
    json_add_u64(j, "steps", o->steps);
    json_add_str(j, "schedule", lr_kind_name(o->lr.kind));
    json_add_num(j, "lr", o->lr.max_lr);
    json_add_num(j, "min_lr", o->lr.min_lr);
    json_add_u64(j, "warmup", o->lr.warmup);
    json_add_num(j, "decay_fraction", o->lr.decay_fraction);
    json_add_num(j, "weight_decay", o->weight_decay);
    json_add_num(j, "beta1", o->beta1);
    json_add_num(j, "beta2", o->beta2);
    json_add_num(j, "eps", o->eps);
    json_add_num(j, "clip", o->clip);
    json_add_num(j, "init_std", o->init_std);
    return j;
}

/* ---- checkpoints ---------------------------------------------------------- */

/* XXH3-64 of a whole file: safetensors has no checksum of its own, and a
 * resumed run must not start from a corrupt checkpoint. */
static uint64_t file_hash(const char *path)
{
    size_t len;
    char *buf = read_file(path, &len);
    uint64_t h = hash64(buf, len, 0);
    free(buf);
    return h;
}

static void check_file_hash(const char *dir, const char *name, uint64_t want)
{
    char *path = xasprintf("%s/%s", dir, name);
    if (file_hash(path) != want) die("%s: checksum mismatch: the checkpoint is corrupt", path);
    free(path);
}

static void save_checkpoint(Trainer *t)
{
    AtomicDir ad;
    ckpt_begin(&ad, t->o->out, t->step);
    Model *m = &t->model;

    cJSON *cfg = json_obj(), *tok = json_obj();
    char fp[33];
    fingerprint_hex(fp, t->set.tok.fingerprint);
    json_add(cfg, "model", config_to_json(&t->cfg));
    json_add_str(tok, "fingerprint", fp);
    json_add_u64(tok, "vocab_size", t->set.tok.vocab_size);
    json_add(cfg, "tokenizer", tok);
    json_add(cfg, "training", training_json(t));
    json_add_str(cfg, "created_by", "sigma-pretrain " SIGMA_VERSION);
    char *path = atomic_dir_file(&ad, "config.json");
    json_write_file_atomic(path, cfg);
    free(path);
    cJSON_Delete(cfg);

    path = atomic_dir_file(&ad, "model.safetensors");
    safetensors_save(path, m->tensors, m->n_tensors, m->params, "");
    uint64_t model_hash = file_hash(path);
    free(path);
    path = atomic_dir_file(&ad, "optimizer.safetensors");
    safetensors_save(path, t->moment_tensors, 2 * m->n_tensors, t->moments, "");
    uint64_t opt_hash = file_hash(path);
    free(path);

    cJSON *st = json_obj(), *pos = json_obj(), *hist = json_arr(), *bias = json_arr();
    json_add_hex64(st, "model_xxh3", model_hash);
    json_add_hex64(st, "optimizer_xxh3", opt_hash);
    json_add_u64(st, "step", t->step);
    json_add_u64(st, "tokens_seen", t->tokens_seen);
    json_add_u64(st, "skipped", t->skipped);
    json_add_u64(pos, "epoch", t->train.pos.epoch);
    json_add_u64(pos, "group", t->train.pos.group);
    json_add_u64(pos, "index", t->train.pos.index);
    json_add(st, "data_position", pos);
    json_add_u64(st, "loss_history_count", t->n_hist);
    for (int i = 0; i < LOSS_WINDOW; i++) json_push(hist, cJSON_CreateNumber(t->loss_hist[i]));
    json_add(st, "loss_history", hist);
    for (int i = 0; i < t->cfg.n_layers * t->cfg.n_experts; i++) json_push(bias, cJSON_CreateNumber(m->expert_bias[i]));
    json_add(st, "expert_bias", bias);
    path = atomic_dir_file(&ad, "trainer.json");
    json_write_file_atomic(path, st);
    free(path);
    cJSON_Delete(st);

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
    char *path = xasprintf("%s/config.json", dir);
    cJSON *cfg = json_parse_file(path);
    config_from_json(&t->cfg, json_req(cfg, "model", path), path);
    config_validate(&t->cfg, path);
    const cJSON *tok = json_req(cfg, "tokenizer", path);
    uint8_t fp[16];
    if (!fingerprint_parse(fp, json_req_str(tok, "fingerprint", path))) die("%s: bad tokenizer.fingerprint", path);
    if (memcmp(fp, t->set.tok.fingerprint, 16) || json_req_u64(tok, "vocab_size", path) != t->set.tok.vocab_size) {
        char a[33];
        fingerprint_hex(a, t->set.tok.fingerprint);
        die("%s: tokenizer %s (vocabulary %llu) differs from the shard set's %s (vocabulary %u)", path,
            json_req_str(tok, "fingerprint", path), (unsigned long long)json_req_u64(tok, "vocab_size", path), a,
            t->set.tok.vocab_size);
    }
    const cJSON *tr = json_req(cfg, "training", path);
    check_same(tr, "seq_len", t->o->seq_len, path);
    check_same(tr, "micro_batch", t->o->micro_batch, path);
    if (json_req_hex64(tr, "seed", path) != t->o->seed) die("%s: the run was made with another --seed", path);
    cJSON_Delete(cfg);
    free(path);
}

static void load_state(Trainer *t, const char *dir)
{
    Model *m = &t->model;
    char *path = xasprintf("%s/trainer.json", dir);
    cJSON *st = json_parse_file(path);
    check_file_hash(dir, "model.safetensors", json_req_hex64(st, "model_xxh3", path));
    check_file_hash(dir, "optimizer.safetensors", json_req_hex64(st, "optimizer_xxh3", path));
    free(path);
    path = xasprintf("%s/model.safetensors", dir);
    safetensors_load(path, m->tensors, m->n_tensors, m->params, "");
    free(path);
    path = xasprintf("%s/optimizer.safetensors", dir);
    safetensors_load(path, t->moment_tensors, 2 * m->n_tensors, t->moments, "");
    free(path);
    path = xasprintf("%s/config.json", dir);
    cJSON *cfg = json_parse_file(path);
    check_same(json_req(cfg, "training", path), "accum", t->accum, path);
    cJSON_Delete(cfg);
    free(path);
    path = xasprintf("%s/trainer.json", dir);
    t->step = json_req_u64(st, "step", path);
    t->tokens_seen = json_req_u64(st, "tokens_seen", path);
    t->skipped = json_req_u64(st, "skipped", path);
    const cJSON *pos = json_req(st, "data_position", path);
    loader_seek(&t->train, (LoaderPos){json_req_u64(pos, "epoch", path), json_req_u64(pos, "group", path),
                                       json_req_u64(pos, "index", path)});
    t->n_hist = json_req_u64(st, "loss_history_count", path);
    const cJSON *hist = json_req(st, "loss_history", path), *bias = json_req(st, "expert_bias", path);
    if (cJSON_GetArraySize(hist) != LOSS_WINDOW || cJSON_GetArraySize(bias) != t->cfg.n_layers * t->cfg.n_experts)
        die("%s: loss_history or expert_bias has the wrong length", path);
    for (int i = 0; i < LOSS_WINDOW; i++) t->loss_hist[i] = cJSON_GetArrayItem(hist, i)->valuedouble;
    for (int i = 0; i < t->cfg.n_layers * t->cfg.n_experts; i++) m->expert_bias[i] = (float)cJSON_GetArrayItem(bias, i)->valuedouble;
    cJSON_Delete(st);
    free(path);
}

/* ---- the step ----------------------------------------------------------------- */

static BalanceOptions balance_options(const Trainer *t, int global)
{
    const TrainOptions *o = t->o;
    BalanceOptions bo = {.kind = BALANCE_NONE, .coef = (float)o->balance_coef, .tau = (float)o->balance_tau,
                         .z_coef = (float)o->z_loss};
    if (o->balance == BAL_LBL || o->balance == BAL_LBL_GLOBAL) bo.kind = BALANCE_LBL;
    if (o->balance == BAL_TOP1_LBL) bo.kind = BALANCE_TOP1_LBL;
    if (o->balance == BAL_BIAS) bo.use_bias = 1;
    if (global) { bo.global_counts = t->step_counts; bo.global_tokens = t->step_tokens; }
    return bo;
}

/* ---- the model on the run's device --------------------------------------------------
 * With --device cuda the GPU holds the weights, gradients and moments; the
 * host Model keeps the configuration, tensor table and expert bias, and
 * receives the weights and moments only to save them. */

static Losses forward(Trainer *t, const uint32_t *inputs, const uint32_t *targets, int B, int T, const BalanceOptions *bo)
{
#ifdef SIGMA_CUDA
    if (t->gpu)
        return gpu_model_forward(t->gpu, &t->model.cfg, inputs, targets, NULL, B, T, bo, t->model.expert_bias, t->model.counts);
#endif
    return model_forward(&t->model, inputs, targets, NULL, B, T, bo);
}

static void backward(Trainer *t, float scale)
{
#ifdef SIGMA_CUDA
    if (t->gpu) { gpu_model_backward(t->gpu, scale); return; }
#endif
    model_backward(&t->model, scale);
}

static void zero_grads(Trainer *t)
{
#ifdef SIGMA_CUDA
    if (t->gpu) { gpu_model_zero_grads(t->gpu); return; }
#endif
    model_zero_grads(&t->model);
}

static double grad_norm_of(Trainer *t)
{
#ifdef SIGMA_CUDA
    if (t->gpu) return gpu_model_grad_norm(t->gpu);
#endif
    return l2_norm(t->model.grads, t->model.n_params);
}

static int is_matrix(const ParamTensor *p) { return p->ndim == 2; }

static void optimizer_step(Trainer *t, const AdamWStep *s)
{
    Model *m = &t->model;
#ifdef SIGMA_CUDA
    if (t->gpu) { gpu_model_adamw(t->gpu, s); return; }
#endif
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *p = &m->tensors[i];
        adamw_update(m->params + p->offset, t->moments + p->offset, t->moments + m->n_params + p->offset,
                     m->grads + p->offset, p->numel, s, is_matrix(p));
    }
}

/* Weights and moments: host to device after initialisation or loading, back
 * before saving. */
static void state_to_device(Trainer *t)
{
#ifdef SIGMA_CUDA
    if (t->gpu) {
        gpu_model_set_params(t->gpu, t->model.params);
        gpu_model_set_moments(t->gpu, t->moments);
    }
#else
    (void)t;
#endif
}

static void state_to_host(Trainer *t)
{
#ifdef SIGMA_CUDA
    if (t->gpu) {
        gpu_model_get_params(t->gpu, t->model.params);
        gpu_model_get_moments(t->gpu, t->moments);
    }
#else
    (void)t;
#endif
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
    loader_next(&t->train, t->inputs, t->targets, (size_t)t->accum * B);

    int global = o->balance == BAL_LBL_GLOBAL;
    memset(t->step_counts, 0, (size_t)L * E * sizeof(float));
    if (global) {   /* the step's expert counts first, so every micro-batch sees them */
        for (uint32_t a = 0; a < t->accum; a++) {
            BalanceOptions none = {.kind = BALANCE_NONE};
            forward(t, t->inputs + a * mb, t->targets + a * mb, B, T, &none);
            add_counts(t);
        }
        for (int l = 0; l < L; l++) t->step_tokens[l] = (float)(t->accum * mb);
    }
    BalanceOptions bo = balance_options(t, global);
    Losses sum = {0};
    zero_grads(t);
    float scale = 1.0f / (float)t->accum;
    for (uint32_t a = 0; a < t->accum; a++) {
        Losses l = forward(t, t->inputs + a * mb, t->targets + a * mb, B, T, &bo);
        backward(t, scale);
        if (!global) add_counts(t);
        sum.loss += l.loss * scale;
        sum.ce += l.ce * scale;
        sum.balance += l.balance * scale;
        sum.z += l.z * scale;
    }
    *grad_norm = grad_norm_of(t);
    *skipped_now = !isfinite(sum.loss) || !isfinite(*grad_norm);
    if (*skipped_now) return sum;

    AdamWStep s = {.lr = (float)lr_at(&o->lr, t->step), .beta1 = (float)o->beta1, .beta2 = (float)o->beta2,
                   .eps = (float)o->eps, .weight_decay = (float)o->weight_decay,
                   .grad_scale = clip_scale(*grad_norm, o->clip), .t = t->step + 1 - t->skipped};
    optimizer_step(t, &s);
    if (o->balance == BAL_BIAS) {   /* the bias follows the whole step's counts */
        memcpy(m->counts, t->step_counts, (size_t)L * E * sizeof(float));
        model_update_bias(m, (float)o->bias_rate);
    }
    return sum;
}

/* (count - T*k/E) / (T*k/E) of the busiest and idlest expert of a layer, over the step. */
static void load_deviation(const Trainer *t, int layer, double *max_dev, double *min_dev)
{
    const float *c = t->step_counts + (size_t)layer * t->cfg.n_experts;
    double total = 0, hi = c[0], lo = c[0];
    for (int e = 0; e < t->cfg.n_experts; e++) {
        total += c[e];
        hi = c[e] > hi ? c[e] : hi;
        lo = c[e] < lo ? c[e] : lo;
    }
    double mean = total / t->cfg.n_experts;
    *max_dev = mean > 0 ? (hi - mean) / mean : 0;
    *min_dev = mean > 0 ? (lo - mean) / mean : 0;
}

static double evaluate(Trainer *t)
{
    const int B = (int)t->o->micro_batch, T = (int)t->o->seq_len;
    loader_seek(&t->val, (LoaderPos){0, 0, 0});
    BalanceOptions none = {.kind = BALANCE_NONE};
    double sum = 0;
    uint64_t n = t->o->eval_batches;
    if (n > (t->val.n_sequences + B - 1) / B) n = (t->val.n_sequences + B - 1) / B;   /* no sequence twice */
    for (uint64_t i = 0; i < n; i++) {
        loader_next(&t->val, t->inputs, t->targets, (size_t)B);
        sum += forward(t, t->inputs, t->targets, B, T, &none).ce;
    }
    return sum / (double)n;
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
    json_add_num(j, "tokens_per_s", round(tok_s));
    json_add_bool(j, "skipped", skipped);
    for (int layer = 0; layer < t->cfg.n_layers; layer++) {
        double a, b;
        load_deviation(t, layer, &a, &b);
        json_push(k, cJSON_CreateNumber(t->cfg.top_k[layer]));
        json_push(hi, cJSON_CreateNumber(round(a * 1e4) / 1e4));
        json_push(lo, cJSON_CreateNumber(round(b * 1e4) / 1e4));
    }
    json_add(j, "topk", k);
    json_add(j, "load_max", hi);
    json_add(j, "load_min", lo);
    metrics_write(&t->metrics, j);
}

/* ---- the run ------------------------------------------------------------------ */

static void setup(Trainer *t, int use_gpu)
{
    const TrainOptions *o = t->o;
    Model *m = &t->model;
    size_t tokens_per_micro = (size_t)o->micro_batch * o->seq_len;
    t->accum = (uint32_t)((o->batch_tokens + tokens_per_micro / 2) / tokens_per_micro);
    if (t->accum == 0) t->accum = 1;
    if ((uint64_t)o->seq_len > (uint64_t)t->cfg.max_seq_len)
        usage_error("--seq-len %u is above the model's max_seq_len %d", o->seq_len, t->cfg.max_seq_len);

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
    /* On the GPU the host Model holds only the weights' host copy, the table
     * and the bias: no activations for a batch it never runs. */
    model_init(m, &alloc, use_gpu ? 1 : (int)o->micro_batch, use_gpu ? 1 : (int)o->seq_len);
    m->cfg = t->cfg;
#ifdef SIGMA_CUDA
    if (use_gpu) {
        GpuPaths paths;
        gpu_paths_default(&paths);
        paths.recompute = o->recompute;
        t->gpu = gpu_model_create(m, &alloc, (int)o->micro_batch, (int)o->seq_len, &paths, !sg_quiet);
    }
#endif
    t->moments = xcalloc(2 * m->n_params, sizeof(float));
    t->moment_tensors = xcalloc(2 * (size_t)m->n_tensors, sizeof(ParamTensor));
    for (int i = 0; i < m->n_tensors; i++) {
        for (int h = 0; h < 2; h++) {
            ParamTensor *p = &t->moment_tensors[h * m->n_tensors + i];
            *p = m->tensors[i];
            size_t n = strlen(m->tensors[i].name);
            if (n + 3 > sizeof p->name) BUG("tensor name %s too long for its moment's", m->tensors[i].name);
            p->name[0] = h ? 'v' : 'm';
            p->name[1] = '.';
            memcpy(p->name + 2, m->tensors[i].name, n + 1);
            p->offset += h ? m->n_params : 0;
        }
    }
    size_t step_tokens = (size_t)t->accum * tokens_per_micro;
    t->inputs = xmalloc(step_tokens * sizeof(uint32_t));
    t->targets = xmalloc(step_tokens * sizeof(uint32_t));
    t->step_counts = xcalloc((size_t)t->cfg.n_layers * t->cfg.n_experts, sizeof(float));
    t->step_tokens = xcalloc((size_t)t->cfg.n_layers, sizeof(float));
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
#ifdef SIGMA_CUDA
    gpu_model_free(t->gpu);
#endif
    model_free(&t->model);
    topk_free(&t->topk);
    metrics_close(&t->metrics);
    shardset_free(&t->set);
    free(t->moments);
    free(t->moment_tensors);
    free(t->inputs);
    free(t->targets);
    free(t->step_counts);
    free(t->step_tokens);
}

/* "cpu", "cuda", or "auto": cuda when this build has the CUDA core and a GPU is visible. */
static int use_cuda(const char *device)
{
#ifdef SIGMA_CUDA
    if (!strcmp(device, "auto")) return gpu_count() > 0;
    if (!strcmp(device, "cuda") && !gpu_count()) die("--device cuda: no CUDA device is visible");
    return !strcmp(device, "cuda");
#else
    if (!strcmp(device, "cuda")) die("--device cuda: this sigma-pretrain was built without CUDA (no nvcc at build time); use --device cpu");
    return 0;
#endif
}

int run_training(const TrainOptions *o)
{
    Trainer t;
    memset(&t, 0, sizeof t);
    t.o = o;
    if (o->threads) omp_set_num_threads(o->threads);
    int use_gpu = use_cuda(o->device);

    if (o->dry_run) {   /* the vocabulary of the data when given, else the preset's own */
        int vocab = 0;
        if (o->data) {
            shardset_open(&t.set, o->data);
            vocab = (int)t.set.tok.vocab_size;
            shardset_free(&t.set);
        }
        fresh_config(&t, vocab);
        size_t tpm = (size_t)o->micro_batch * o->seq_len;
        uint32_t accum = (uint32_t)((o->batch_tokens + tpm / 2) / tpm);
        print_plan(&t.cfg, o, accum ? accum : 1);
        return 0;
    }

    shardset_open(&t.set, o->data);
    char *resume_dir = o->resume ? ckpt_resolve(o->out) : NULL;
    if (o->resume && !resume_dir) die("%s: no checkpoint to resume from (no latest)", o->out);
    if (!o->resume && path_exists(o->out)) {
        char *existing = ckpt_resolve(o->out);
        if (existing) die("%s already holds a run (use --resume to continue it, or another --out)", o->out);
    }
    if (resume_dir) load_checkpoint(&t, resume_dir);
    else fresh_config(&t, (int)t.set.tok.vocab_size);
    check_vocab(&t);
    setup(&t, use_gpu);
    if (resume_dir) {
        load_state(&t, resume_dir);
        info("resuming %s at step %llu", resume_dir, (unsigned long long)t.step);
    } else {
        model_init_params(&t.model, o->seed, (float)o->init_std);
    }
    state_to_device(&t);
    free(resume_dir);
    metrics_open(&t.metrics, o->metrics, o->resume, t.step);

    uint64_t total, active;
    config_count_params(&t.cfg, &total, &active);
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
    size_t prev_phase = topk_phase(&t.topk, t.step);
    uint64_t start_step = t.step;
    double t_start = now_seconds();
    while (t.step < o->steps && !stop_requested) {
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
        double elapsed = now_seconds() - t_start, per_step = elapsed / (double)(t.step - start_step);
        progress_update(&p, "step %llu/%llu  loss %.4f  ce %.4f  lr %.2e  %.0f tok/s  ETA %.0f s", (unsigned long long)t.step,
                        (unsigned long long)o->steps, l.loss, l.ce, lr, step_tokens / dt, per_step * (double)(o->steps - t.step));
        if (t.have_val && (t.step % o->eval_every == 0 || t.step == o->steps)) {
            double v = evaluate(&t);
            cJSON *j = json_obj();
            json_add_str(j, "type", "val");
            json_add_u64(j, "step", t.step - 1);   /* metrics name a step by its index */
            json_add_num(j, "val_loss", v);
            json_add_u64(j, "val_tokens", (uint64_t)o->eval_batches * o->micro_batch * o->seq_len);
            metrics_write(&t.metrics, j);
            info("step %llu: validation loss %.4f", (unsigned long long)t.step, v);
        }
        if ((o->save_every && t.step % o->save_every == 0) || t.step == o->steps || stop_requested) {
            state_to_host(&t);
            save_checkpoint(&t);
        }
    }
    if (stop_requested) info("stopped by a signal at step %llu; resume with --resume", (unsigned long long)t.step);
    else progress_done(&p, "%llu steps in %.1f s, last checkpoint %s/step-%08llu", (unsigned long long)(t.step - start_step),
                       now_seconds() - t_start, o->out, (unsigned long long)t.step);
    teardown(&t);
    return 0;
}
