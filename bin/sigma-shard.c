/* sigma-shard: token stream -> shard set directory; verify, info, cat. */
#include "base/base.h"
#include "base/json.h"
#include "data/shard.h"
#include "data/tokstream.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IO_TOKENS (1u << 20)

static void help(FILE *out)
{
    fprintf(out,
            "usage: sigma-shard [OPTIONS] -o DIR [STREAM...]   token stream(s) -> shard set\n"
            "       sigma-shard verify DIR                     check every byte of a shard set\n"
            "       sigma-shard info DIR                       JSON summary\n"
            "       sigma-shard cat [--split train|val] DIR    the token stream back\n"
            "\n"
            "Reads token streams (stdin when none is named, '-' too) and writes a shard set\n"
            "(sigma-formats(5)): shards of --shard-tokens tokens, 16-bit tokens for\n"
            "vocabularies up to 65536, zstd-compressed, checksummed, with a seeded\n"
            "train/validation split by document.\n"
            "\n"
            "Writing a shard set\n"
            "  -o, --out DIR            the shard set to create (refused if it exists)\n"
            "  -f, --force              replace DIR if it exists (once the new one is complete);\n"
            "                           with cat, write even to a terminal\n"
            "      --shard-tokens N     tokens per shard (default 16777216; k, M, G allowed)\n"
            "  -l, --level N            zstd level 1-19 (default 3); 0 stores tokens raw\n"
            "      --no-compress        the same as --level 0\n"
            "      --val-fraction F     share of documents for validation (default 0.01)\n"
            "      --val-docs N         at most N validation documents\n"
            "      --seed N             seed of the split (default 0)\n"
            "cat\n"
            "      --split NAME         train or val only (default: both, in input order)\n"
            "\n");
    cli_help_end(out);
}

typedef struct {
    const char *out;
    int force;
    ShardOptions opt;
    int split;                 /* for cat: -1 both */
} Args;

/* Said now rather than found at training time: a validation split was
 * asked for and no document was drawn into it. */
static void warn_empty_val(const char *dir)
{
    ShardSet set;
    shardset_open(&set, dir);
    if (set.opt.val_fraction > 0 && set.split[SPLIT_VAL].docs == 0)
        warn("%s: the validation split is empty: --val-fraction %g drew none of the %llu documents (sigma-pretrain will "
             "report no validation loss; a larger fraction or more, shorter documents give one)", dir, set.opt.val_fraction,
             (unsigned long long)set.docs);
    shardset_free(&set);
}

static void write_set(const Args *a, char **inputs, int n_inputs)
{
    static char *stdin_only[] = {"-"};
    if (n_inputs == 0) { inputs = stdin_only; n_inputs = 1; }
    uint32_t *buf = xmalloc(IO_TOKENS * sizeof(uint32_t));
    ShardWriter *w = NULL;
    TokHeader first = {0};
    Progress p;
    progress_init(&p, 10);
    uint64_t tokens = 0, docs = 0;
    for (int i = 0; i < n_inputs; i++) {
        const char *name = strcmp(inputs[i], "-") ? inputs[i] : "<stdin>";
        if (!strcmp(inputs[i], "-") && isatty(STDIN_FILENO))
            usage_error("standard input is a terminal: pipe a token stream in or name a file");
        FILE *f = xfopen(inputs[i], "rb");
        TokReader r;
        tokreader_open(&r, f, name);
        if (!w) {
            first = r.hdr;
            w = shardwriter_open(a->out, a->force, &r.hdr, &a->opt);
        } else {
            tokenizer_match(&r.hdr, name, &first, "the first input");
        }
        int doc_end;
        size_t n;
        while ((n = tokreader_read(&r, buf, IO_TOKENS, &doc_end)) || doc_end) {
            shardwriter_put(w, buf, n);
            tokens += n;
            if (doc_end) { shardwriter_end_doc(w); docs++; }
            double dt = now_seconds() - p.start;
            progress_update(&p, "%.1fM tokens, %llu documents, %.0f MB/s in", tokens / 1e6, (unsigned long long)docs,
                            dt > 0 ? (double)r.offset / dt / 1e6 : 0);
        }
        tokreader_close(&r);
        xfclose(f, name);
    }
    shardwriter_close(w);
    progress_done(&p, "%s: %llu tokens, %llu documents in %.1f s", a->out, (unsigned long long)tokens,
                  (unsigned long long)docs, now_seconds() - p.start);
    free(buf);
    warn_empty_val(a->out);
}

static void cat_set(const char *dir, int split, int force)
{
    if (!force && isatty(STDOUT_FILENO))
        die("refusing to write a binary token stream to a terminal (redirect or pipe it, or -f)");
    ShardSet set;
    shardset_open(&set, dir);
    SetReader *r = setreader_open(&set, split);
    TokWriter w;
    tokwriter_open(&w, stdout, "<stdout>", &set.tok);
    uint32_t *buf = xmalloc(IO_TOKENS * sizeof(uint32_t));
    int doc_end;
    size_t n;
    while ((n = setreader_read(r, buf, IO_TOKENS, &doc_end)) || doc_end) {
        tokwriter_put(&w, buf, n);
        if (doc_end) tokwriter_end_doc(&w);
    }
    tokwriter_close(&w);
    setreader_close(r);
    free(buf);
    shardset_free(&set);
}

static void verify_set(const char *dir)
{
    ShardSet set;
    shardset_open(&set, dir);
    SetReader *r = setreader_open(&set, -1);
    uint32_t *buf = xmalloc(IO_TOKENS * sizeof(uint32_t));
    int doc_end;
    uint64_t tokens = 0;
    size_t n;
    while ((n = setreader_read(r, buf, IO_TOKENS, &doc_end)) || doc_end) tokens += n;
    setreader_close(r);
    free(buf);
    if (tokens != set.tokens) die("%s: the shards hold %llu tokens, the manifest says %llu", dir, (unsigned long long)tokens, (unsigned long long)set.tokens);
    info("%s: ok (%zu shards, %llu documents, %llu tokens)", dir, set.split[0].n_shards + set.split[1].n_shards,
         (unsigned long long)set.docs, (unsigned long long)set.tokens);
    shardset_free(&set);
}

static void info_set(const char *dir)
{
    ShardSet set;
    shardset_open(&set, dir);
    cJSON *o = json_obj(), *tok = json_obj(), *splits = json_obj();
    char fp[33];
    fingerprint_hex(fp, set.tok.fingerprint);
    json_add_str(o, "dir", dir);
    json_add_str(tok, "fingerprint", fp);
    json_add_u64(tok, "vocab_size", set.tok.vocab_size);
    json_add(o, "tokenizer", tok);
    json_add_u64(o, "token_width", set.token_width);
    json_add_str(o, "compression", set.opt.level > 0 ? "zstd" : "none");
    json_add_u64(o, "level", (uint64_t)set.opt.level);
    json_add_u64(o, "shard_tokens", set.opt.shard_tokens);
    json_add_u64(o, "documents", set.docs);
    json_add_u64(o, "tokens", set.tokens);
    uint64_t bytes = 0;
    for (int s = 0; s < N_SPLITS; s++) {
        const SplitInfo *si = &set.split[s];
        cJSON *so = json_obj();
        uint64_t sb = 0;
        for (size_t i = 0; i < si->n_shards; i++) sb += si->shards[i].bytes;
        json_add_u64(so, "documents", si->docs);
        json_add_u64(so, "tokens", si->tokens);
        json_add_u64(so, "shards", si->n_shards);
        json_add_u64(so, "bytes", sb);
        json_add(splits, split_names[s], so);
        bytes += sb;
    }
    json_add(o, "splits", splits);
    json_add_u64(o, "bytes", bytes);
    json_add_num(o, "compression_ratio", bytes ? (double)set.tokens * set.token_width / (double)bytes : 0);
    char *s = json_print(o, 1);
    printf("%s\n", s);
    xfflush(stdout, "<stdout>");
    cJSON_free(s);
    cJSON_Delete(o);
    shardset_free(&set);
}

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    Args a = {.opt = {.shard_tokens = 1u << 24, .level = 3, .seed = 0, .val_fraction = 0.01, .val_docs = UINT64_MAX},
              .split = -1};
    enum { O_SHARD_TOKENS = 256, O_NO_COMPRESS, O_VAL_FRACTION, O_VAL_DOCS, O_SEED, O_SPLIT };
    static const struct option longopts[] = {
        {"out", required_argument, 0, 'o'},          {"force", no_argument, 0, 'f'},
        {"shard-tokens", required_argument, 0, O_SHARD_TOKENS},
        {"level", required_argument, 0, 'l'},        {"no-compress", no_argument, 0, O_NO_COMPRESS},
        {"val-fraction", required_argument, 0, O_VAL_FRACTION},
        {"val-docs", required_argument, 0, O_VAL_DOCS},
        {"seed", required_argument, 0, O_SEED},      {"split", required_argument, 0, O_SPLIT},
        CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli_getopt(argc, argv, "o:fl:", longopts, help)) != -1) {
        switch (c) {
        case 'o': a.out = optarg; break;
        case 'f': a.force = 1; break;
        case O_SHARD_TOKENS: a.opt.shard_tokens = parse_count("--shard-tokens", optarg, 1, SHARD_MAX_TOKENS); break;
        case 'l': a.opt.level = (int)parse_u64("--level", optarg, 0, 19); break;
        case O_NO_COMPRESS: a.opt.level = 0; break;
        case O_VAL_FRACTION: a.opt.val_fraction = parse_double("--val-fraction", optarg, 0, 1); break;
        case O_VAL_DOCS: a.opt.val_docs = parse_count("--val-docs", optarg, 0, UINT64_MAX - 1); break;
        case O_SEED: a.opt.seed = parse_u64("--seed", optarg, 0, UINT64_MAX); break;
        case O_SPLIT:
            a.split = split_from_name(optarg);
            if (a.split < 0) usage_error("--split: expected train or val, got '%s'", optarg);
            break;
        }
    }
    /* the options each form takes: the first is writing a set (no subcommand) */
    static const CliCommand commands[] = {
        {"writing a shard set", "out force shard-tokens level no-compress val-fraction val-docs seed"},
        {"verify", ""},
        {"info", ""},
        {"cat", "split force"},
    };
    const char *cmd = optind < argc ? argv[optind] : NULL;
    size_t which = 0;
    for (size_t i = 1; cmd && i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(cmd, commands[i].what)) which = i;
    cli_check_command(&commands[which], commands, sizeof commands / sizeof *commands);
    if (which) {
        if (argc - optind != 2) usage_error("%s takes one shard set directory", cmd);
        const char *dir = argv[optind + 1];
        if (!strcmp(cmd, "verify")) verify_set(dir);
        else if (!strcmp(cmd, "info")) info_set(dir);
        else cat_set(dir, a.split, a.force);
        return 0;
    }
    if (!a.out) usage_error("missing -o DIR (the shard set to write)");
    write_set(&a, argv + optind, argc - optind);
    return 0;
}
