/* sigma-dedup: remove exact and near-duplicate documents (MinHash LSH),
 * writing the kept ones in their input format and order, in one process or
 * as stages over many input shards (signatures, exact, buckets, clusters,
 * filter). The work is in lib/dedup/. */
#include "base/base.h"
#include "base/json.h"
#include "dedup/dedup.h"
#include "dedup/docs.h"
#include "dedup/output.h"
#include "dedup/stages.h"

#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include "base/threads.h"
#endif

static void help(FILE *out)
{
    fprintf(out,
            "usage: sigma-dedup [OPTIONS] [FILE...] > KEPT\n"
            "       sigma-dedup --files [OPTIONS] FILE... > KEPT_PATHS\n"
            "       sigma-dedup signatures [OPTIONS] -o SIG INPUT\n"
            "       sigma-dedup exact --partition P -o EXACT SIG...\n"
            "       sigma-dedup buckets --band B -o PAIRS SIG...\n"
            "       sigma-dedup clusters -o REMOVAL [--stats FILE] SIG... EXACT... PAIRS...\n"
            "       sigma-dedup filter --removal REMOVAL -o KEPT [--removed FILE] INPUT\n\n"
            "Remove exact and near-duplicate documents; write the kept ones to stdout in\n"
            "their input format and order. FILEs are read in turn (none or - is stdin);\n"
            "a name ending in .zst is decompressed. The same work runs as stages over many\n"
            "input shards, each a command whose output is a file (see sigma-dedup(1)).\n\n"
            "Input (one of)\n"
            "      --jsonl              JSON Lines, the text in --field (default)\n"
            "      --field NAME         the JSON field with the text (default: text)\n"
            "      --lines              a document per line\n"
            "  -0, --nul                a document per NUL-terminated record\n"
            "      --files              a document per FILE; writes the kept paths, one a line\n"
            "      --skip-bad           skip bad JSON Lines records (counted) instead of failing\n"
            "Deduplication\n"
            "  -m, --mode MODE          exact, near or both (default: both)\n"
            "      --normalize NORM     datatrove (default) or none\n"
            "      --ngram N            words per shingle (default: 5)\n"
            "      --bands B            LSH bands (default: 14)\n"
            "      --rows R             hashes per band (default: 8)\n"
            "      --seed S             MinHash parameter seed (default: 1, as datatrove)\n"
            "      --verify J           join candidate pairs only at Jaccard >= J (0 < J <= 1)\n"
            "Reports\n"
            "      --removed FILE       the dropped documents as JSON lines, with what they duplicate\n"
            "      --stats FILE         a JSON summary\n"
            "Stages\n"
            "  -o, --out FILE           the stage's output\n"
            "  -f, --force              redo a stage whose output is already complete\n"
            "      --partitions N       signatures: exact hash partitions (default: 16)\n"
            "      --partition P        exact: the partition to deduplicate (0 to N-1)\n"
            "      --band B             buckets: the band to bucket (0 to bands-1)\n"
            "      --memory SIZE        signatures, exact, buckets: bytes of buffers (default: 64M)\n"
            "      --removal FILE       filter: the removal list (from clusters)\n"
            "\n"
            "  -j, --threads N          threads (default: all cores)\n");
    cli_help_end(out);
}

/* The options of each form: the first is the one-process mode. */
static const CliCommand commands[] = {
    {"deduplicating in one process",
     "jsonl field lines nul files skip-bad mode normalize ngram bands rows seed verify removed stats threads"},
    {"signatures", "jsonl field lines nul skip-bad mode normalize ngram bands rows seed partitions memory out force threads"},
    {"exact", "partition memory out force"},
    {"buckets", "band memory out force"},
    {"clusters", "out force stats"},
    {"filter", "removal removed out force"},
};
#define N_COMMANDS (sizeof commands / sizeof *commands)

/* A report goes to a temporary file renamed into place, except where the
 * path is a device, a pipe or a descriptor (/dev/stderr, /dev/fd/3, a FIFO),
 * written directly: renaming over those would replace them. */
/* With -v: the memory used, to check the per-document figure of the man
 * page (RssAnon is the process's own; RssFile the mapped input). */
static void report_memory(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6) || !strncmp(line, "RssAnon:", 8) || !strncmp(line, "RssFile:", 8)) {
            line[strcspn(line, "\n")] = 0;
            verbose("memory: %s", line);
        }
    fclose(f);
}

enum { OPT_JSONL = 256, OPT_FIELD, OPT_LINES, OPT_FILES, OPT_SKIP_BAD, OPT_NORMALIZE, OPT_NGRAM, OPT_BANDS, OPT_ROWS,
       OPT_SEED, OPT_VERIFY, OPT_REMOVED, OPT_STATS, OPT_PARTITIONS, OPT_PARTITION, OPT_BAND, OPT_MEMORY, OPT_REMOVAL };

typedef struct {
    DdStageOptions so;
    const char *out, *removal;
    int partitions;
    int64_t partition, band;   /* -1: not given */
} StageArgs;

/* A stage: the operands checked, then the work (lib/dedup/stages.c). */
static int run_stage(size_t which, const StageArgs *a, const DdOptions *o, DdFormat format, const char *field,
                     char **ops, int n_ops)
{
    const char *cmd = commands[which].what;
    if (!a->out) usage_error("%s needs -o FILE", cmd);
    for (int i = 0; i < n_ops; i++)
        if (!strcmp(ops[i], "-")) usage_error("%s reads files, not standard input (a file's name and time identify it)", cmd);
    if (!strcmp(cmd, "signatures")) {
        if (n_ops != 1) usage_error("signatures takes one input shard, not %d", n_ops);
        DdParams p;
        dd_params_of(&p, o, format, field, a->partitions);
        dd_stage_signatures(a->out, ops[0], &p, &a->so);
    } else if (!strcmp(cmd, "filter")) {
        if (!a->removal) usage_error("filter needs --removal FILE (the removal list that clusters wrote)");
        if (n_ops != 1) usage_error("filter takes one input shard, not %d", n_ops);
        dd_stage_filter(a->out, a->removal, ops[0], &a->so);
    } else {
        if (n_ops < 1) usage_error("%s needs the files of the stages before it", cmd);
        if (!strcmp(cmd, "exact")) {
            if (a->partition < 0) usage_error("exact needs --partition P");
            dd_stage_exact(a->out, (uint32_t)a->partition, ops, (size_t)n_ops, &a->so);
        } else if (!strcmp(cmd, "buckets")) {
            if (a->band < 0) usage_error("buckets needs --band B");
            dd_stage_buckets(a->out, (uint32_t)a->band, ops, (size_t)n_ops, &a->so);
        } else {
            dd_stage_clusters(a->out, ops, (size_t)n_ops, &a->so);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    DdOptions o;
    dd_options_default(&o);
    DdFormat format = DD_JSONL;
    const char *field = "text", *removed = NULL, *stats = NULL;
    StageArgs sa = {.so = {.memory = DD_STAGE_MEMORY}, .partitions = 16, .partition = -1, .band = -1};
    static const struct option longopts[] = {
        {"jsonl", no_argument, 0, OPT_JSONL},       {"field", required_argument, 0, OPT_FIELD},
        {"lines", no_argument, 0, OPT_LINES},       {"nul", no_argument, 0, '0'},
        {"files", no_argument, 0, OPT_FILES},       {"skip-bad", no_argument, 0, OPT_SKIP_BAD},
        {"mode", required_argument, 0, 'm'},        {"normalize", required_argument, 0, OPT_NORMALIZE},
        {"ngram", required_argument, 0, OPT_NGRAM}, {"bands", required_argument, 0, OPT_BANDS},
        {"rows", required_argument, 0, OPT_ROWS},   {"seed", required_argument, 0, OPT_SEED},
        {"verify", required_argument, 0, OPT_VERIFY}, {"removed", required_argument, 0, OPT_REMOVED},
        {"stats", required_argument, 0, OPT_STATS}, {"threads", required_argument, 0, 'j'},
        {"out", required_argument, 0, 'o'},         {"force", no_argument, 0, 'f'},
        {"partitions", required_argument, 0, OPT_PARTITIONS}, {"partition", required_argument, 0, OPT_PARTITION},
        {"band", required_argument, 0, OPT_BAND},   {"memory", required_argument, 0, OPT_MEMORY},
        {"removal", required_argument, 0, OPT_REMOVAL},
        CLI_COMMON_OPTIONS};
    int opt;
    while ((opt = cli_getopt(argc, argv, "0m:j:o:f", longopts, help)) != -1) {
        switch (opt) {
        case OPT_JSONL: format = DD_JSONL; break;
        case OPT_FIELD: field = optarg; break;
        case OPT_LINES: format = DD_LINES; break;
        case '0': format = DD_NUL; break;
        case OPT_FILES: format = DD_FILES; break;
        case OPT_SKIP_BAD: o.skip_bad = 1; break;
        case 'm':
            if (strcmp(optarg, "exact") == 0) o.exact = 1, o.near = 0;
            else if (strcmp(optarg, "near") == 0) o.exact = 0, o.near = 1;
            else if (strcmp(optarg, "both") == 0) o.exact = 1, o.near = 1;
            else usage_error("--mode must be exact, near or both, not '%s'", optarg);
            break;
        case OPT_NORMALIZE:
            if (strcmp(optarg, "datatrove") == 0) o.norm = DD_NORM_DATATROVE;
            else if (strcmp(optarg, "none") == 0) o.norm = DD_NORM_NONE;
            else usage_error("--normalize must be datatrove or none, not '%s'", optarg);
            break;
        case OPT_NGRAM: o.ngram = (int)parse_u64("--ngram", optarg, 1, 64); break;
        case OPT_BANDS: o.bands = (int)parse_u64("--bands", optarg, 1, 1024); break;
        case OPT_ROWS: o.rows = (int)parse_u64("--rows", optarg, 1, 1024); break;
        case OPT_SEED: o.seed = (uint32_t)parse_u64("--seed", optarg, 0, UINT32_MAX); break;
        case OPT_VERIFY:
            o.verify = parse_double("--verify", optarg, 0, 1);
            if (o.verify <= 0) usage_error("--verify takes a Jaccard threshold above 0, got '%s'", optarg);
            break;
        case OPT_REMOVED: removed = optarg; break;
        case OPT_STATS: stats = optarg; break;
        case 'j': o.threads = (int)parse_u64("--threads", optarg, 1, 4096); break;
        case 'o': sa.out = optarg; break;
        case 'f': sa.so.force = 1; break;
        case OPT_PARTITIONS: sa.partitions = (int)parse_u64("--partitions", optarg, 1, 65536); break;
        case OPT_PARTITION: sa.partition = (int64_t)parse_u64("--partition", optarg, 0, 65535); break;
        case OPT_BAND: sa.band = (int64_t)parse_u64("--band", optarg, 0, 1023); break;
        case OPT_MEMORY: sa.so.memory = parse_count("--memory", optarg, 10000, UINT64_C(1) << 40); break;
        case OPT_REMOVAL: sa.removal = optarg; break;
        }
    }
    size_t which = 0;
    for (size_t i = 1; optind < argc && i < N_COMMANDS; i++)
        if (!strcmp(argv[optind], commands[i].what)) which = i;
    cli_check_command(&commands[which], commands, N_COMMANDS);
    if (o.bands * o.rows > 4096) usage_error("--bands times --rows must be at most 4096");
    if (format != DD_JSONL && strcmp(field, "text") != 0) usage_error("--field applies to --jsonl only");
    if (which) {
        sa.so.threads = o.threads;
        sa.so.stats = stats;
        sa.so.removed = removed;
        return run_stage(which, &sa, &o, format, field, argv + optind + 1, argc - optind - 1);
    }

    double t0 = now_seconds();
    DdCorpus c;
    dd_corpus_open(&c, format, field, argv + optind, argc - optind);
    DdResult r;
    dd_run(&r, &c, &o);
    if (r.bad > 0) {
        char where[512];
        dd_record_where(where, sizeof where, &c, r.first_bad);
        if (!o.skip_bad)
            die("%s: %s (--skip-bad skips such records)", where, dd_status_message((DdStatus)r.status[r.first_bad]));
        warn("skipped %llu bad record%s, the first at %s: %s", (unsigned long long)r.bad, r.bad == 1 ? "" : "s",
             where, dd_status_message((DdStatus)r.status[r.first_bad]));
    }

    AtomicFile rf = {0};
    if (removed) atomic_file_open(&rf, removed);   /* /dev/stdout and the like are written in place */
    static char obuf[1 << 20];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    dd_write_kept(stdout, "stdout", &c, &r);
    if (removed) {
        dd_write_removed(rf.f, removed, &c, &r);
        atomic_file_commit(&rf);
    }
    xfclose(stdout, "stdout");
    double secs = now_seconds() - t0;
    int threads = 1;
#ifdef _OPENMP
    threads = o.threads > 0 ? o.threads : omp_get_max_threads();
#endif
    if (stats) {
        cJSON *s = dd_stats_json(&c, &r, &o, secs, threads);
        json_write_file_atomic(stats, s);
        cJSON_Delete(s);
    }
    info("%llu documents in, %llu out: %llu exact and %llu near duplicates removed%s (%.1f MB in %.2f s, %.1f MB/s, "
         "%d thread%s)",
         (unsigned long long)r.n, (unsigned long long)r.kept, (unsigned long long)r.exact_removed,
         (unsigned long long)r.near_removed, r.bad ? ", bad records skipped" : "", (double)r.bytes_in / 1e6, secs,
         secs > 0 ? (double)r.bytes_in / 1e6 / secs : 0.0, threads, threads == 1 ? "" : "s");
    if (sg_verbose) report_memory();
    dd_result_free(&r);
    dd_corpus_close(&c);
    return 0;
}
