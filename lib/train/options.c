/* The training options sigma-pretrain and sigma-sft share; see options.h. */
#include "train/options.h"
#include "base/base.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const struct option shared[] = {
    {"data", required_argument, 0, 'd'}, {"out", required_argument, 0, 'o'},
    {"resume", no_argument, 0, TRAIN_OPT_RESUME}, {"metrics", required_argument, 0, TRAIN_OPT_METRICS},
    {"steps", required_argument, 0, TRAIN_OPT_STEPS}, {"batch-tokens", required_argument, 0, TRAIN_OPT_BATCH_TOKENS},
    {"micro-batch", required_argument, 0, TRAIN_OPT_MICRO_BATCH}, {"seq-len", required_argument, 0, TRAIN_OPT_SEQ_LEN},
    {"seed", required_argument, 0, TRAIN_OPT_SEED}, {"lr", required_argument, 0, TRAIN_OPT_LR},
    {"min-lr", required_argument, 0, TRAIN_OPT_MIN_LR}, {"warmup", required_argument, 0, TRAIN_OPT_WARMUP},
    {"schedule", required_argument, 0, TRAIN_OPT_SCHEDULE}, {"decay-fraction", required_argument, 0, TRAIN_OPT_DECAY_FRACTION},
    {"weight-decay", required_argument, 0, TRAIN_OPT_WEIGHT_DECAY}, {"beta1", required_argument, 0, TRAIN_OPT_BETA1},
    {"beta2", required_argument, 0, TRAIN_OPT_BETA2}, {"eps", required_argument, 0, TRAIN_OPT_EPS},
    {"clip", required_argument, 0, TRAIN_OPT_CLIP}, {"topk-schedule", required_argument, 0, TRAIN_OPT_TOPK},
    {"balance", required_argument, 0, TRAIN_OPT_BALANCE}, {"balance-coef", required_argument, 0, TRAIN_OPT_BALANCE_COEF},
    {"balance-tau", required_argument, 0, TRAIN_OPT_BALANCE_TAU}, {"z-loss", required_argument, 0, TRAIN_OPT_Z_LOSS},
    {"bias-rate", required_argument, 0, TRAIN_OPT_BIAS_RATE}, {"eval-every", required_argument, 0, TRAIN_OPT_EVAL_EVERY},
    {"eval-batches", required_argument, 0, TRAIN_OPT_EVAL_BATCHES}, {"save-every", required_argument, 0, TRAIN_OPT_SAVE_EVERY},
    {"keep", required_argument, 0, TRAIN_OPT_KEEP}, {"max-skips", required_argument, 0, TRAIN_OPT_MAX_SKIPS},
    {"spike-z", required_argument, 0, TRAIN_OPT_SPIKE_Z}, {"threads", required_argument, 0, 'j'},
    {"device", required_argument, 0, TRAIN_OPT_DEVICE}, {"recompute-experts", no_argument, 0, TRAIN_OPT_RECOMPUTE},
    {"dry-run", no_argument, 0, TRAIN_OPT_DRY_RUN}, {"nproc", required_argument, 0, TRAIN_OPT_NPROC},
    {"ep", required_argument, 0, TRAIN_OPT_EP}, CLI_COMMON_OPTIONS};

struct option *train_longopts(const struct option *own)
{
    size_t n_own = 0, n_shared = sizeof shared / sizeof *shared;   /* its end marker included */
    while (own[n_own].name) n_own++;
    struct option *all = xmalloc((n_own + n_shared) * sizeof *all);
    memcpy(all, own, n_own * sizeof *all);
    memcpy(all + n_own, shared, n_shared * sizeof *all);
    return all;
}

/* Records the long name of option c (every option has its own value):
 * --resume takes every setting not given from the checkpoint. */
static void note_given(TrainOptions *o, int c, const struct option *longopts)
{
    for (int i = 0; longopts[i].name; i++)
        if (longopts[i].val == c) { train_option_given(o, longopts[i].name); return; }
}

int train_parse_option(TrainOptions *o, int c, const char *arg, const struct option *longopts)
{
    note_given(o, c, longopts);
    switch (c) {
    case 'd': o->data = arg; break;
    case 'o': o->out = arg; break;
    case TRAIN_OPT_RESUME: o->resume = 1; break;
    case TRAIN_OPT_METRICS: o->metrics = arg; break;
    case TRAIN_OPT_STEPS: o->steps = parse_count("--steps", arg, 1, 1ull << 40); break;
    case TRAIN_OPT_BATCH_TOKENS: o->batch_tokens = parse_count("--batch-tokens", arg, 1, 1ull << 40); break;
    case TRAIN_OPT_MICRO_BATCH: o->micro_batch = (uint32_t)parse_u64("--micro-batch", arg, 1, 1u << 20); break;
    case TRAIN_OPT_SEQ_LEN: o->seq_len = (uint32_t)parse_u64("--seq-len", arg, 1, 1u << 24); break;
    case TRAIN_OPT_SEED: o->seed = parse_u64("--seed", arg, 0, UINT64_MAX); break;
    case TRAIN_OPT_LR: o->lr.max_lr = parse_double("--lr", arg, 0, 1e38); break;
    case TRAIN_OPT_MIN_LR: o->lr.min_lr = parse_double("--min-lr", arg, 0, 10); break;
    case TRAIN_OPT_WARMUP: o->lr.warmup = parse_count("--warmup", arg, 0, 1ull << 40); break;
    case TRAIN_OPT_SCHEDULE:
        if (lr_kind_parse(arg, &o->lr.kind)) usage_error("--schedule: expected wsd, cosine or constant, got '%s'", arg);
        break;
    case TRAIN_OPT_DECAY_FRACTION: o->lr.decay_fraction = parse_double("--decay-fraction", arg, 0, 1); break;
    case TRAIN_OPT_WEIGHT_DECAY: o->weight_decay = parse_double("--weight-decay", arg, 0, 10); break;
    case TRAIN_OPT_BETA1: o->beta1 = parse_double("--beta1", arg, 0, 0.999999); break;
    case TRAIN_OPT_BETA2: o->beta2 = parse_double("--beta2", arg, 0, 0.999999); break;
    case TRAIN_OPT_EPS: o->eps = parse_double("--eps", arg, 1e-30, 1); break;
    case TRAIN_OPT_CLIP: o->clip = parse_double("--clip", arg, 0, 1e9); break;
    case TRAIN_OPT_TOPK: o->topk_schedule = arg; break;
    case TRAIN_OPT_BALANCE:
        if (balance_kind_parse(arg, &o->balance))
            usage_error("--balance: expected lbl, lbl-global, top1-lbl, bias or none, got '%s'", arg);
        break;
    case TRAIN_OPT_BALANCE_COEF: o->balance_coef = parse_double("--balance-coef", arg, 0, 100); break;
    case TRAIN_OPT_BALANCE_TAU: o->balance_tau = parse_double("--balance-tau", arg, 1e-6, 100); break;
    case TRAIN_OPT_Z_LOSS: o->z_loss = parse_double("--z-loss", arg, 0, 100); break;
    case TRAIN_OPT_BIAS_RATE: o->bias_rate = parse_double("--bias-rate", arg, 0, 10); break;
    case TRAIN_OPT_EVAL_EVERY: o->eval_every = parse_count("--eval-every", arg, 0, 1ull << 40); break;
    case TRAIN_OPT_EVAL_BATCHES: o->eval_batches = parse_count("--eval-batches", arg, 1, 1ull << 30); break;
    case TRAIN_OPT_SAVE_EVERY: o->save_every = parse_count("--save-every", arg, 0, 1ull << 40); break;
    case TRAIN_OPT_KEEP: o->keep = (unsigned)parse_u64("--keep", arg, 0, 1u << 20); break;
    case TRAIN_OPT_MAX_SKIPS: o->max_skips = parse_u64("--max-skips", arg, 0, UINT64_MAX); break;
    case TRAIN_OPT_SPIKE_Z: o->spike_z = parse_double("--spike-z", arg, 0, 1e9); break;
    case 'j': o->threads = (int)parse_u64("--threads", arg, 1, 4096); break;
    case TRAIN_OPT_DEVICE:
        if (strcmp(arg, "cpu") && strcmp(arg, "cuda") && strcmp(arg, "auto"))
            usage_error("--device: expected cpu, cuda or auto, got '%s'", arg);
        o->device = arg;
        break;
    case TRAIN_OPT_RECOMPUTE: o->recompute = 1; break;
    case TRAIN_OPT_DRY_RUN: o->dry_run = 1; break;
    case TRAIN_OPT_NPROC: o->nproc = (int)parse_u64("--nproc", arg, 1, 1u << 20); break;
    case TRAIN_OPT_EP: o->ep = (int)parse_u64("--ep", arg, 1, 1u << 20); break;
    default: return 0;
    }
    return 1;
}

void train_options_help(FILE *out, const TrainOptions *d)
{
    fprintf(out,
            "Output\n"
            "  -o, --out DIR            the run directory: step-N checkpoints and 'latest'\n"
            "      --resume             continue the run in --out from its latest checkpoint\n"
            "      --metrics FILE       JSON Lines of every step ('-' for stdout)\n"
            "      --dry-run            print parameter counts and memory, then exit\n"
            "      --nproc N            --dry-run: each rank's memory with N processes\n"
            "      --ep N               expert parallelism: each group of N ranks shares every layer's experts\n"
            "Batch\n"
            "      --steps N            optimizer steps (default %s)\n"
            "      --batch-tokens N     tokens per step; accumulation fills it (default %llu)\n"
            "      --micro-batch B      sequences per forward/backward (default %u)\n"
            "      --seq-len T          tokens per sequence (default %s)\n"
            "      --seed N             initialization and data order (default %llu)\n",
            d->sft ? "--epochs over the data" : "1000", (unsigned long long)d->batch_tokens, d->micro_batch,
            d->sft ? "the --init run's" : "256", (unsigned long long)d->seed);
    fprintf(out,
            "Optimizer\n"
            "      --lr X               peak learning rate (default %g)\n"
            "      --min-lr X           final learning rate (default lr/10)\n"
            "      --warmup N           warmup steps (default steps/20)\n"
            "      --schedule NAME      wsd, cosine or constant (default %s)\n"
            "      --decay-fraction F   WSD: the decaying end of the run (default %g)\n"
            "      --weight-decay X     on matrices only (default %g)\n"
            "      --beta1 X            AdamW's beta1 (default %g)\n"
            "      --beta2 X            AdamW's beta2 (default %g)\n"
            "      --eps X              AdamW's epsilon (default %g)\n"
            "      --clip X             global gradient-norm clip (default %g; 0 off)\n",
            d->lr.max_lr, lr_kind_name(d->lr.kind), d->lr.decay_fraction, d->weight_decay, d->beta1, d->beta2, d->eps, d->clip);
    fprintf(out,
            "Sparsity and balance%s\n"
            "      --topk-schedule S    e.g. '0:8,8,8,8,1...; 2000:1...' (default: the config's k)\n"
            "      --balance KIND       lbl, lbl-global, top1-lbl, bias or none (default %s)\n"
            "      --balance-coef X     a (default %g)\n"
            "      --balance-tau X      top1-lbl temperature (default %g)\n"
            "      --z-loss X           router z-loss coefficient (default %g)\n"
            "      --bias-rate X        aux-loss-free bias update rate (default %g)\n",
            d->sft ? " (defaults: the --init run's own, else these)" : "", balance_kind_name(d->balance), d->balance_coef,
            d->balance_tau, d->z_loss, d->bias_rate);
    fprintf(out,
            "Evaluation, checkpoints, guards\n"
            "      --eval-every N       validation loss every N steps (default %llu; 0 off)\n"
            "      --eval-batches N     micro-batches per validation (default %llu)\n"
            "      --save-every N       checkpoint every N steps (default %llu; always at the end)\n"
            "      --keep N             checkpoints kept (default %u; 0 all)\n"
            "      --max-skips N        stop after N steps skipped for NaN/Inf (default %llu)\n"
            "      --spike-z X          log a loss spike above X standard deviations (default %g)\n"
            "  -j, --threads N          CPU threads (default: all cores)\n"
            "      --device NAME        cpu, cuda or auto (default auto: cuda when a GPU is present)\n"
            "      --recompute-experts  GPU: recompute the experts' gate/up products in backward (less memory)\n",
            (unsigned long long)d->eval_every, (unsigned long long)d->eval_batches, (unsigned long long)d->save_every, d->keep,
            (unsigned long long)d->max_skips, d->spike_z);
}
