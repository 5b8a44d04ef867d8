/* sigma-sft: fine-tune a checkpoint on chat data (supervised fine-tuning). */
#include "base/base.h"
#include "train/options.h"

#include <stdlib.h>
#include <string.h>

static void help(FILE *out)
{
    fprintf(out,
            "usage: sigma-sft --init CKPT -t TOKENIZER --data CHAT.jsonl --out RUN [OPTIONS]\n"
            "\n"
            "Fine-tunes a checkpoint on conversations, {\"messages\": [{\"role\", \"content\"}...]}\n"
            "or {\"prompt\", \"completion\"} lines, in the ChatML template: the loss falls on\n"
            "the assistant's replies, conversations are packed into rows without seeing\n"
            "each other, and RUN holds checkpoints of sigma-pretrain's format.\n"
            "\n"
            "Model and data\n"
            "      --init CKPT          the checkpoint or run to start from (sigma-pretrain's, or\n"
            "                           a Hugging Face model brought in by sigma-export --import)\n"
            "  -t, --tokenizer FILE     its tokenizer, with <|im_start|> and <|im_end|>\n"
            "      --add-chat-tokens    add those two to a tokenizer without them (RUN/tokenizer),\n"
            "                           growing the embedding and the head by their rows\n"
            "  -d, --data FILE          chat JSON Lines\n"
            "      --val-data FILE      held-out conversations (default: a share of --data)\n"
            "      --val-fraction F     that share (default 0.05)\n"
            "      --epochs X           passes over the data (default 3)\n"
            "      --train-on WHAT      assistant (default: its replies and their <|im_end|>) or all\n"
            "      --long WHAT          conversations longer than --seq-len: cut (default) or drop\n"
            "      --pack               several conversations a row, apart (the default)\n"
            "      --no-pack            one conversation a row, padded\n"
            "      --skip-bad           skip bad lines (counted) instead of stopping at the first\n");
    TrainOptions d;
    sft_options_default(&d);
    train_options_help(out, &d);
    fprintf(out, "\n");
    cli_help_end(out);
}

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    TrainOptions o;
    sft_options_default(&o);
    enum { O_INIT = TRAIN_OPT_END, O_VAL_DATA, O_VAL_FRACTION, O_EPOCHS, O_TRAIN_ON, O_LONG, O_PACK, O_NO_PACK, O_SKIP_BAD, O_ADD_CHAT };
    static const struct option own[] = {
        {"init", required_argument, 0, O_INIT}, {"tokenizer", required_argument, 0, 't'},
        {"add-chat-tokens", no_argument, 0, O_ADD_CHAT}, {"val-data", required_argument, 0, O_VAL_DATA},
        {"val-fraction", required_argument, 0, O_VAL_FRACTION}, {"epochs", required_argument, 0, O_EPOCHS},
        {"train-on", required_argument, 0, O_TRAIN_ON}, {"long", required_argument, 0, O_LONG},
        {"pack", no_argument, 0, O_PACK}, {"no-pack", no_argument, 0, O_NO_PACK},
        {"skip-bad", no_argument, 0, O_SKIP_BAD}, {0, 0, 0, 0}};
    struct option *longopts = train_longopts(own);
    int c;
    while ((c = cli_getopt(argc, argv, "d:o:j:t:", longopts, help)) != -1) {
        if (train_parse_option(&o, c, optarg, longopts)) continue;
        switch (c) {
        case O_INIT: o.init = optarg; break;
        case 't': o.tokenizer = optarg; break;
        case O_ADD_CHAT: o.add_chat_tokens = 1; break;
        case O_VAL_DATA: o.val_data = optarg; break;
        case O_VAL_FRACTION: o.val_fraction = parse_double("--val-fraction", optarg, 0, 0.99); break;
        case O_EPOCHS: o.epochs = parse_double("--epochs", optarg, 1e-6, 1e6); break;
        case O_TRAIN_ON:
            if (strcmp(optarg, "assistant") && strcmp(optarg, "all")) usage_error("--train-on: expected assistant or all, got '%s'", optarg);
            o.train_on = optarg;
            break;
        case O_LONG:
            if (strcmp(optarg, "cut") && strcmp(optarg, "drop")) usage_error("--long: expected cut or drop, got '%s'", optarg);
            o.long_rows = optarg;
            break;
        case O_PACK: o.pack = 1; train_option_given(&o, "pack"); break;
        case O_NO_PACK: o.pack = 0; train_option_given(&o, "pack"); break;
        case O_SKIP_BAD: o.skip_bad = 1; break;
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (!o.init && !o.resume) usage_error("missing --init CKPT (the model to fine-tune)");
    if (!o.dry_run && !o.tokenizer) usage_error("missing --tokenizer FILE");
    if (!o.dry_run && !o.data) usage_error("missing --data CHAT.jsonl");
    if (!o.dry_run && !o.out) usage_error("missing --out RUN");
    if (o.val_data && train_option_was_given(&o, "val-fraction")) usage_error("give --val-data or --val-fraction, not both");
    if (!train_option_was_given(&o, "min-lr")) o.lr.min_lr = o.lr.max_lr / 10;
    int rc = run_training(&o);
    free(longopts);
    return rc;
}
