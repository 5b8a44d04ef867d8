/* sigma-pretrain: train a Sigma-MoE model on a shard set. */
#include "base/base.h"
#include "train/trainer.h"

#include <stdlib.h>
#include <string.h>

static void help(FILE *out)
{
    fprintf(out,
            "usage: sigma-pretrain (--preset NAME | --config FILE) --data SHARDS --out RUN [OPTIONS]\n"
            "       sigma-pretrain --preset NAME --dry-run\n"
            "\n"
            "Trains a Sigma-MoE model on the train split of a shard set, reports the\n"
            "validation loss, writes checkpoints into RUN, and resumes exactly.\n"
            "\n"
            "Model\n"
            "      --preset NAME        sigma-moe-tiny, nano, micro or test (vocabulary from the shards)\n"
            "  -c, --config FILE        a model config JSON (sigma-formats(5))\n"
            "      --init-std X         initialization std (default 0.02)\n"
            "      --dry-run            print parameter counts and memory, then exit\n"
            "Data and output\n"
            "  -d, --data DIR           the shard set (sigma-shard)\n"
            "  -o, --out DIR            the run directory: step-N checkpoints and 'latest'\n"
            "      --resume             continue the run in --out from its latest checkpoint\n"
            "      --metrics FILE       JSON Lines of every step ('-' for stdout)\n"
            "Batch\n"
            "      --steps N            optimizer steps (default 1000)\n"
            "      --batch-tokens N     tokens per step; accumulation fills it (default 16k)\n"
            "      --micro-batch B      sequences per forward/backward (default 8)\n"
            "      --seq-len T          tokens per sequence (default 256)\n"
            "      --seed N             initialization and data order (default 1)\n"
            "Optimizer\n"
            "      --lr X               peak learning rate (default 3e-3)\n"
            "      --min-lr X           final learning rate (default lr/10)\n"
            "      --warmup N           warmup steps (default steps/20)\n"
            "      --schedule NAME      wsd (default), cosine or constant\n"
            "      --decay-fraction F   WSD: the decaying end of the run (default 0.2)\n"
            "      --weight-decay X     on matrices only (default 0.1)\n"
            "      --beta1 X            AdamW's beta1 (default 0.9)\n"
            "      --beta2 X            AdamW's beta2 (default 0.95)\n"
            "      --eps X              AdamW's epsilon (default 1e-8)\n"
            "      --clip X             global gradient-norm clip (default 1.0; 0 off)\n"
            "Sparsity and balance\n"
            "      --topk-schedule S    e.g. '0:8,8,8,8,1...; 2000:1...' (default: the config's k)\n"
            "      --balance KIND       lbl, lbl-global (default), top1-lbl, bias or none\n"
            "      --balance-coef X     a (default 1e-2)\n"
            "      --balance-tau X      top1-lbl temperature (default 0.1)\n"
            "      --z-loss X           router z-loss coefficient (default 0)\n"
            "      --bias-rate X        aux-loss-free bias update rate (default 1e-2)\n"
            "Evaluation, checkpoints, guards\n"
            "      --eval-every N       validation loss every N steps (default 100; 0 off)\n"
            "      --eval-batches N     micro-batches per validation (default 8)\n"
            "      --save-every N       checkpoint every N steps (default 500; always at the end)\n"
            "      --keep N             checkpoints kept (default 3; 0 all)\n"
            "      --max-skips N        stop after N steps skipped for NaN/Inf (default 20)\n"
            "      --spike-z X          log a loss spike above X standard deviations (default 6)\n"
            "  -j, --threads N          CPU threads (default: all cores)\n"
            "      --device NAME        cpu, cuda or auto (default auto: cuda when a GPU is present)\n"
            "      --recompute-experts  GPU: recompute the experts' gate/up products in backward (less memory)\n"
            "\n");
    cli_help_end(out);
}

/* Records the long name of the option just parsed (every option here has
 * its own value c): --resume takes every setting not given from the checkpoint. */
static void note_given(TrainOptions *o, int c, const struct option *longopts)
{
    for (int i = 0; longopts[i].name; i++)
        if (longopts[i].val == c) { train_option_given(o, longopts[i].name); return; }
}

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    TrainOptions o;
    train_options_default(&o);
    enum {
        O_INIT_STD = 256, O_DRY_RUN, O_RESUME, O_METRICS, O_STEPS, O_BATCH_TOKENS, O_MICRO_BATCH, O_SEQ_LEN, O_SEED,
        O_LR, O_MIN_LR, O_WARMUP, O_SCHEDULE, O_DECAY_FRACTION, O_WEIGHT_DECAY, O_BETA1, O_BETA2, O_EPS, O_CLIP,
        O_TOPK, O_BALANCE, O_BALANCE_COEF, O_BALANCE_TAU, O_Z_LOSS, O_BIAS_RATE, O_EVAL_EVERY, O_EVAL_BATCHES,
        O_SAVE_EVERY, O_KEEP, O_MAX_SKIPS, O_SPIKE_Z, O_DEVICE, O_RECOMPUTE, O_PRESET
    };
    static const struct option longopts[] = {
        {"preset", required_argument, 0, O_PRESET}, {"config", required_argument, 0, 'c'},
        {"init-std", required_argument, 0, O_INIT_STD}, {"dry-run", no_argument, 0, O_DRY_RUN},
        {"data", required_argument, 0, 'd'}, {"out", required_argument, 0, 'o'},
        {"resume", no_argument, 0, O_RESUME}, {"metrics", required_argument, 0, O_METRICS},
        {"steps", required_argument, 0, O_STEPS}, {"batch-tokens", required_argument, 0, O_BATCH_TOKENS},
        {"micro-batch", required_argument, 0, O_MICRO_BATCH}, {"seq-len", required_argument, 0, O_SEQ_LEN},
        {"seed", required_argument, 0, O_SEED}, {"lr", required_argument, 0, O_LR},
        {"min-lr", required_argument, 0, O_MIN_LR}, {"warmup", required_argument, 0, O_WARMUP},
        {"schedule", required_argument, 0, O_SCHEDULE}, {"decay-fraction", required_argument, 0, O_DECAY_FRACTION},
        {"weight-decay", required_argument, 0, O_WEIGHT_DECAY}, {"beta1", required_argument, 0, O_BETA1},
        {"beta2", required_argument, 0, O_BETA2}, {"eps", required_argument, 0, O_EPS},
        {"clip", required_argument, 0, O_CLIP}, {"topk-schedule", required_argument, 0, O_TOPK},
        {"balance", required_argument, 0, O_BALANCE}, {"balance-coef", required_argument, 0, O_BALANCE_COEF},
        {"balance-tau", required_argument, 0, O_BALANCE_TAU}, {"z-loss", required_argument, 0, O_Z_LOSS},
        {"bias-rate", required_argument, 0, O_BIAS_RATE}, {"eval-every", required_argument, 0, O_EVAL_EVERY},
        {"eval-batches", required_argument, 0, O_EVAL_BATCHES}, {"save-every", required_argument, 0, O_SAVE_EVERY},
        {"keep", required_argument, 0, O_KEEP}, {"max-skips", required_argument, 0, O_MAX_SKIPS},
        {"spike-z", required_argument, 0, O_SPIKE_Z}, {"threads", required_argument, 0, 'j'},
        {"device", required_argument, 0, O_DEVICE}, {"recompute-experts", no_argument, 0, O_RECOMPUTE},
        CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli_getopt(argc, argv, "c:d:o:j:", longopts, help)) != -1) {
        note_given(&o, c, longopts);
        switch (c) {
        case O_PRESET: o.preset = optarg; break;
        case 'c': o.config = optarg; break;
        case O_INIT_STD: o.init_std = parse_double("--init-std", optarg, 1e-6, 1); break;
        case O_DRY_RUN: o.dry_run = 1; break;
        case 'd': o.data = optarg; break;
        case 'o': o.out = optarg; break;
        case O_RESUME: o.resume = 1; break;
        case O_METRICS: o.metrics = optarg; break;
        case O_STEPS: o.steps = parse_count("--steps", optarg, 1, 1ull << 40); break;
        case O_BATCH_TOKENS: o.batch_tokens = parse_count("--batch-tokens", optarg, 1, 1ull << 40); break;
        case O_MICRO_BATCH: o.micro_batch = (uint32_t)parse_u64("--micro-batch", optarg, 1, 1u << 20); break;
        case O_SEQ_LEN: o.seq_len = (uint32_t)parse_u64("--seq-len", optarg, 1, 1u << 24); break;
        case O_SEED: o.seed = parse_u64("--seed", optarg, 0, UINT64_MAX); break;
        case O_LR: o.lr.max_lr = parse_double("--lr", optarg, 0, 1e38); break;
        case O_MIN_LR: o.lr.min_lr = parse_double("--min-lr", optarg, 0, 10); break;
        case O_WARMUP: o.lr.warmup = parse_count("--warmup", optarg, 0, 1ull << 40); break;
        case O_SCHEDULE:
            if (lr_kind_parse(optarg, &o.lr.kind)) usage_error("--schedule: expected wsd, cosine or constant, got '%s'", optarg);
            break;
        case O_DECAY_FRACTION: o.lr.decay_fraction = parse_double("--decay-fraction", optarg, 0, 1); break;
        case O_WEIGHT_DECAY: o.weight_decay = parse_double("--weight-decay", optarg, 0, 10); break;
        case O_BETA1: o.beta1 = parse_double("--beta1", optarg, 0, 0.999999); break;
        case O_BETA2: o.beta2 = parse_double("--beta2", optarg, 0, 0.999999); break;
        case O_EPS: o.eps = parse_double("--eps", optarg, 1e-30, 1); break;
        case O_CLIP: o.clip = parse_double("--clip", optarg, 0, 1e9); break;
        case O_TOPK: o.topk_schedule = optarg; break;
        case O_BALANCE:
            if (balance_kind_parse(optarg, &o.balance))
                usage_error("--balance: expected lbl, lbl-global, top1-lbl, bias or none, got '%s'", optarg);
            break;
        case O_BALANCE_COEF: o.balance_coef = parse_double("--balance-coef", optarg, 0, 100); break;
        case O_BALANCE_TAU: o.balance_tau = parse_double("--balance-tau", optarg, 1e-6, 100); break;
        case O_Z_LOSS: o.z_loss = parse_double("--z-loss", optarg, 0, 100); break;
        case O_BIAS_RATE: o.bias_rate = parse_double("--bias-rate", optarg, 0, 10); break;
        case O_EVAL_EVERY: o.eval_every = parse_count("--eval-every", optarg, 0, 1ull << 40); break;
        case O_EVAL_BATCHES: o.eval_batches = parse_count("--eval-batches", optarg, 1, 1ull << 30); break;
        case O_SAVE_EVERY: o.save_every = parse_count("--save-every", optarg, 0, 1ull << 40); break;
        case O_KEEP: o.keep = (unsigned)parse_u64("--keep", optarg, 0, 1u << 20); break;
        case O_MAX_SKIPS: o.max_skips = parse_u64("--max-skips", optarg, 0, UINT64_MAX); break;
        case O_SPIKE_Z: o.spike_z = parse_double("--spike-z", optarg, 0, 1e9); break;
        case 'j': o.threads = (int)parse_u64("--threads", optarg, 1, 4096); break;
        case O_DEVICE:
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda") && strcmp(optarg, "auto"))
                usage_error("--device: expected cpu, cuda or auto, got '%s'", optarg);
            o.device = optarg;
            break;
        case O_RECOMPUTE: o.recompute = 1; break;
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (!o.preset == !o.config && !o.resume) usage_error("give one of --preset NAME or --config FILE");
    if (!o.dry_run && !o.data) usage_error("missing --data SHARDS");
    if (!o.dry_run && !o.out) usage_error("missing --out RUN");
    if (!train_option_was_given(&o, "min-lr")) o.lr.min_lr = o.lr.max_lr / 10;
    if (!train_option_was_given(&o, "warmup")) o.lr.warmup = o.steps / 20;
    o.lr.total = o.steps;
    return run_training(&o);
}
