/* sigma-pretrain: train a Sigma-MoE model on a shard set. */
#include "base/base.h"
#include "train/options.h"

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
            "Model and data\n"
            "      --preset NAME        sigma-moe-tiny, nano, micro or test (vocabulary from the shards)\n"
            "  -c, --config FILE        a model config JSON (sigma-formats(5))\n"
            "      --init-std X         initialization std (default 0.02)\n"
            "  -d, --data DIR           the shard set (sigma-shard)\n");
    TrainOptions d;
    train_options_default(&d);
    train_options_help(out, &d);
    fprintf(out, "\n");
    cli_help_end(out);
}

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    TrainOptions o;
    train_options_default(&o);
    enum { O_INIT_STD = TRAIN_OPT_END, O_PRESET };
    static const struct option own[] = {
        {"preset", required_argument, 0, O_PRESET}, {"config", required_argument, 0, 'c'},
        {"init-std", required_argument, 0, O_INIT_STD}, {0, 0, 0, 0}};
    struct option *longopts = train_longopts(own);
    int c;
    while ((c = cli_getopt(argc, argv, "c:d:o:j:", longopts, help)) != -1) {
        if (train_parse_option(&o, c, optarg, longopts)) continue;
        switch (c) {
        case O_PRESET: o.preset = optarg; break;
        case 'c': o.config = optarg; break;
        case O_INIT_STD: o.init_std = parse_double("--init-std", optarg, 1e-6, 1); break;
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (!o.preset == !o.config && !o.resume) usage_error("give one of --preset NAME or --config FILE");
    if (!o.dry_run && !o.data) usage_error("missing --data SHARDS");
    if (!o.dry_run && !o.out) usage_error("missing --out RUN");
    if (!train_option_was_given(&o, "min-lr")) o.lr.min_lr = o.lr.max_lr / 10;
    if (!train_option_was_given(&o, "warmup")) o.lr.warmup = o.steps / 20;
    o.lr.total = o.steps;
    int rc = run_training(&o);
    free(longopts);
    return rc;
}
