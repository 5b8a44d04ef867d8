/* sigma-eval: how good a checkpoint is. The loss of held-out text (nats a
 * token, perplexity, bits per byte) with the experts' load on the way,
 * benchmarks scored as lm-evaluation-harness scores them, and a chat
 * model's replies to held-out conversations. The work is in lib/eval
 * (score, tasks, chat_task); this is the command line. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/json.h"
#include "base/threads.h"
#include "data/shard.h"
#include "eval/chat_task.h"
#include "eval/score.h"
#include "eval/tasks.h"
#include "text/chat.h"
#include "text/docs.h"
#include "text/tokenizer.h"

static void help(FILE *out)
{
    fprintf(out,
            "usage: sigma-eval loss CKPT -t TOK [--data SHARDS [--split NAME] | [--lines | --jsonl [--field F]] FILE...]\n"
            "                  [--window N] [--stride N] [--batch N]\n"
            "       sigma-eval TASK CKPT -t TOK FILE [--labels FILE] [--limit N [--seed S]] [--per-example FILE]\n"
            "                  [--skip-bad] [--window N] [--batch N]\n"
            "       TASK: choice, piqa, lambada, hellaswag, arc or winogrande\n"
            "       sigma-eval chat CKPT -t TOK --data CHAT.jsonl [--max-tokens N] [--per-example FILE]\n"
            "                  [--skip-bad] [--window N] [--batch N]\n"
            "\n"
            "Evaluates a checkpoint (a run directory or a step-N directory): one JSON object\n"
            "on standard output, a readable summary on standard error.\n"
            "\n"
            "  -t, --tokenizer FILE     the checkpoint's tokenizer (its fingerprint must match)\n"
            "      --data SHARDS        loss: a shard set's documents (default: the FILEs);\n"
            "                           chat: the conversations, sigma-sft's JSON Lines\n"
            "      --split NAME         loss: the shard set's split, val (default) or train\n"
            "      --lines              loss: a document per line of the FILEs (default: a file each)\n"
            "      --jsonl              loss: a document per JSON Lines record, its --field\n"
            "      --field F            the JSON field holding the text (default text)\n"
            "      --window N           tokens the model sees at once (default: its max_seq_len)\n"
            "      --stride N           loss: new tokens a window predicts (default: the window,\n"
            "                           disjoint windows; less: sliding windows with context)\n"
            "      --batch N            rows of one forward (default 8)\n"
            "      --labels FILE        piqa: the labels file, aligned with the items by line\n"
            "      --limit N            the first N items (with --seed: N sampled)\n"
            "      --seed S             the sample of --limit (default: none, the first N)\n"
            "      --max-tokens N       chat: the longest reply, in tokens (default 64)\n"
            "      --per-example FILE   every item's log-likelihoods (chat: loss and reply), a JSON\n"
            "                           line each\n"
            "      --skip-bad           skip (and count) bad lines instead of stopping\n"
            "      --device NAME        cpu, cuda or auto (default auto: cuda when a GPU is present)\n"
            "  -j, --threads N          CPU threads (default: every core)\n"
            "\n");
    cli_help_end(out);
}

static const CliCommand commands[] = {
    {"loss", "tokenizer data split lines jsonl field window stride batch device threads skip-bad"},
    {"a benchmark task", "tokenizer labels limit seed per-example skip-bad window batch device threads"},
    {"chat", "tokenizer data max-tokens per-example skip-bad window batch device threads"},
};

typedef struct {
    const char *tok_path, *data, *split, *field, *labels, *per_example, *device;
    int lines, jsonl, skip_bad, window, stride, batch, threads, max_tokens;
    size_t limit;
    uint64_t seed;
} Opts;

static void add_num(cJSON *j, const char *key, double v)
{
    if (isfinite(v)) json_add_num(j, key, v);
    else json_add(j, key, cJSON_CreateNull());
}

static void print_json(cJSON *j)
{
    char *s = json_print(j, 0);
    printf("%s\n", s);
    xfflush(stdout, "<stdout>");
    free(s);
    cJSON_Delete(j);
}

/* ---- loss ------------------------------------------------------------------ */

/* The load of every layer over the pass: the same statistic sigma-pretrain
 * logs (load_max, load_min), the load's entropy, idle experts, and the
 * routing's mean first-choice probability and entropy. */
static cJSON *load_json(const Scorer *s)
{
    const int L = s->cfg.n_layers, E = s->cfg.n_experts;
    cJSON *arr = json_arr();
    info("%-6s %9s %9s %9s %6s %9s %9s", "layer", "load_max", "load_min", "entropy", "idle", "top1_p", "routing_h");
    for (int l = 0; l < L; l++) {
        const float *c = s->counts + (size_t)l * E;
        double hi, lo, h = load_entropy(c, E), n = s->route[l].tokens;
        load_deviation(c, E, &hi, &lo);
        cJSON *j = json_obj();
        json_add_u64(j, "layer", (uint64_t)l);
        json_add_num(j, "load_max", hi);
        json_add_num(j, "load_min", lo);
        json_add_num(j, "load_entropy", h);
        json_add_num(j, "load_entropy_even", log(E));
        json_add_u64(j, "idle_experts", (uint64_t)idle_experts(c, E));
        add_num(j, "top1_p", n > 0 ? s->route[l].top1_p / n : NAN);
        add_num(j, "routing_entropy", n > 0 ? s->route[l].entropy / n : NAN);
        json_push(arr, j);
        info("%-6d %+9.3f %+9.3f %9.3f %6d %9.3f %9.3f", l, hi, lo, h, idle_experts(c, E), n > 0 ? s->route[l].top1_p / n : NAN,
             n > 0 ? s->route[l].entropy / n : NAN);
    }
    return arr;
}

/* The bytes of a document's text: its tokens decoded, end-of-text left out. */
static uint64_t text_bytes(const Tokenizer *tok, uint32_t eot, const uint32_t *ids, size_t n, TokBytes *scratch)
{
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == eot) continue;
        scratch->len = 0;
        tokenizer_decode(tok, scratch, &ids[i], 1);
        bytes += scratch->len;
    }
    return bytes;
}

static int cmd_loss(const Opts *o, const char *ckpt, Tokenizer *tok, char *const *files, size_t n_files)
{
    Scorer s;
    scorer_open(&s, ckpt, tok, o->device, o->window, o->batch, !sg_quiet);
    int stride = o->stride ? o->stride : s.window;
    if (stride > s.window) usage_error("--stride %d is above the window of %d tokens", stride, s.window);
    LossSums sum = {0};
    uint64_t docs = 0;
    TokIds ids = {0};
    TokBytes scratch = {0};
    Progress p;
    progress_init(&p, 10);
    if (o->data) {
        if (n_files) usage_error("--data or FILEs, not both");
        ShardSet set;
        shardset_open(&set, o->data);
        TokHeader file_tok = tokenizer_header(tok);
        tokenizer_match(&set.tok, o->data, &file_tok, o->tok_path);
        int split = split_from_name(o->split ? o->split : "val");
        if (split < 0) usage_error("--split: val or train, got '%s'", o->split);
        SetReader *r = setreader_open(&set, split);
        uint32_t buf[65536];
        int end;
        size_t got;
        while ((got = setreader_read(r, buf, sizeof buf / sizeof *buf, &end)) || end) {
            for (size_t i = 0; i < got; i++) {
                if (ids.len == ids.cap) ids.ids = xrealloc(ids.ids, (ids.cap = 2 * ids.cap + 4096) * sizeof(uint32_t));
                ids.ids[ids.len++] = buf[i];
            }
            if (!end) continue;
            score_document(&s, &sum, ids.ids, ids.len, text_bytes(tok, s.eot, ids.ids, ids.len, &scratch), stride);
            docs++;
            ids.len = 0;
            progress_update(&p, "%llu documents, %llu tokens", (unsigned long long)docs, (unsigned long long)sum.tokens);
        }
        setreader_close(r);
        shardset_free(&set);
    } else {
        Docs d;
        docs_open(&d, o->jsonl ? DOCS_JSONL : o->lines ? DOCS_LINES : DOCS_FILE, o->field, o->skip_bad, files, n_files);
        const uint8_t *doc;
        size_t len;
        int ends;
        uint64_t bytes = 0;
        while (docs_next(&d, &doc, &len, &ends)) {   /* a long file comes in parts cut where its tokens do not change */
            tokenizer_encode(tok, &ids, doc, len, 0);
            bytes += len;
            if (!ends) continue;
            score_document(&s, &sum, ids.ids, ids.len, bytes, stride);
            docs++;
            ids.len = 0;
            bytes = 0;
            progress_update(&p, "%llu documents, %llu tokens", (unsigned long long)docs, (unsigned long long)sum.tokens);
        }
        if (d.skipped) warn("skipped %llu bad JSON lines", (unsigned long long)d.skipped);
        docs_close(&d);
    }
    score_flush(&s, &sum);
    if (sum.tokens == 0) die("no tokens to evaluate");
    double loss = sum.nll / (double)sum.tokens;
    progress_done(&p, "%llu documents, %llu tokens: loss %.4f nats a token, perplexity %.3f, %.4f bits a byte",
                  (unsigned long long)docs, (unsigned long long)sum.tokens, loss, exp(loss),
                  sum.bytes ? sum.nll / log(2.0) / (double)sum.bytes : NAN);
    cJSON *j = json_obj();
    json_add_str(j, "task", "loss");
    json_add_str(j, "checkpoint", ckpt);
    json_add_u64(j, "documents", docs);
    json_add_u64(j, "tokens", sum.tokens);
    json_add_u64(j, "bytes", sum.bytes);
    json_add_num(j, "nll_sum", sum.nll);
    json_add_num(j, "loss", loss);
    json_add_num(j, "perplexity", exp(loss));
    add_num(j, "bits_per_byte", sum.bytes ? sum.nll / log(2.0) / (double)sum.bytes : NAN);
    json_add_u64(j, "window", (uint64_t)s.window);
    json_add_u64(j, "stride", (uint64_t)stride);
    json_add_u64(j, "windows", sum.windows);
    json_add(j, "load", load_json(&s));
    print_json(j);
    tokids_free(&ids);
    tokbytes_free(&scratch);
    scorer_close(&s);
    return 0;
}

/* ---- benchmarks ------------------------------------------------------------------ */

static int cmd_task(const Opts *o, TaskKind kind, const char *ckpt, Tokenizer *tok, const char *file)
{
    Scorer s;
    scorer_open(&s, ckpt, tok, o->device, o->window, o->batch, !sg_quiet);
    AtomicFile examples = {0};
    if (o->per_example) atomic_file_open(&examples, o->per_example);   /* checked before the work, written after */
    Task t;
    task_read(&t, kind, file, o->labels, &s, o->skip_bad, o->limit, o->seed);
    double t0 = now_seconds();
    score_requests(&s, t.requests, t.n_requests);
    double dt = now_seconds() - t0;
    TaskResult r = task_result(&t);
    if (o->per_example) {
        task_write_examples(&t, examples.f, o->per_example);
        atomic_file_commit(&examples);
    }
    cJSON *j = json_obj();
    json_add_str(j, "task", task_name(kind));
    json_add_str(j, "file", file);
    json_add_str(j, "checkpoint", ckpt);
    json_add_u64(j, "n", r.n);
    add_num(j, "acc", r.acc);
    add_num(j, "acc_stderr", r.acc_stderr);
    if (isfinite(r.acc_norm)) {
        add_num(j, "acc_norm", r.acc_norm);
        add_num(j, "acc_norm_stderr", r.acc_norm_stderr);
    }
    if (isfinite(r.perplexity)) json_add_num(j, "perplexity", r.perplexity);
    json_add_u64(j, "truncated", r.truncated);
    json_add_u64(j, "skipped", t.skipped);
    json_add_u64(j, "requests", t.n_requests);
    info("%s: %zu items (%zu requests) in %.1f s, %.1f items/s", task_name(kind), r.n, t.n_requests, dt, dt > 0 ? r.n / dt : 0);
    info("  acc       %.4f +- %.4f", r.acc, r.acc_stderr);
    if (isfinite(r.acc_norm)) info("  acc_norm  %.4f +- %.4f", r.acc_norm, r.acc_norm_stderr);
    if (isfinite(r.perplexity)) info("  perplexity %.3f", r.perplexity);
    if (r.truncated) info("  %zu items' contexts were cut from the left to the window of %d tokens", r.truncated, s.window);
    if (t.skipped) warn("skipped %llu bad lines of %s", (unsigned long long)t.skipped, file);
    print_json(j);
    task_free(&t);
    scorer_close(&s);
    return 0;
}

/* ---- chat ------------------------------------------------------------------------- */

static int cmd_chat(const Opts *o, const char *ckpt, Tokenizer *tok)
{
    chat_check_tokenizer(tok, o->tok_path);   /* before the model: the tokenizer alone says it */
    Scorer s;
    scorer_open(&s, ckpt, tok, o->device, o->window, o->batch, !sg_quiet);
    AtomicFile examples = {0};
    if (o->per_example) atomic_file_open(&examples, o->per_example);   /* checked before the work, written after */
    ChatTask t;
    chat_task_read(&t, o->data, tok, o->skip_bad);
    double t0 = now_seconds();
    scorer_reserve(&s, chat_task_rows(&t, o->max_tokens));
    score_marked(&s, t.marked, t.set.n);
    uint32_t ends[2];
    int n_ends = chat_reply_ends(tok, ends);
    Progress p;
    progress_init(&p, 10);
    for (size_t i = 0; i < t.set.n; i++) {
        TokIds reply = {0};
        int cut, ended = score_greedy(&s, t.items[i].prompt.ids, t.items[i].prompt.len, ends, n_ends, o->max_tokens, &reply, &cut);
        chat_task_reply(&t, i, tok, &reply, ended, cut);
        tokids_free(&reply);
        progress_update(&p, "%zu of %zu replies", i + 1, t.set.n);
    }
    double dt = now_seconds() - t0;
    progress_done(&p, "chat: %zu conversations in %.1f s", t.set.n, dt);
    ChatResult r = chat_task_result(&t);
    if (o->per_example) {
        chat_task_write_examples(&t, examples.f, o->per_example);
        atomic_file_commit(&examples);
    }
    cJSON *j = json_obj();
    json_add_str(j, "task", "chat");
    json_add_str(j, "file", o->data);
    json_add_str(j, "checkpoint", ckpt);
    json_add_u64(j, "n", r.n);
    add_num(j, "loss", r.loss);
    json_add_u64(j, "tokens", r.tokens);
    add_num(j, "exact", r.exact);
    add_num(j, "exact_stderr", r.exact_stderr);
    add_num(j, "f1", r.f1);
    add_num(j, "f1_stderr", r.f1_stderr);
    json_add_u64(j, "ended", r.ended);
    json_add_u64(j, "max_tokens", (uint64_t)o->max_tokens);
    json_add_u64(j, "truncated", r.truncated);
    json_add_u64(j, "skipped", t.set.bad);
    json_add_u64(j, "no_assistant", t.set.no_assistant);
    info("  loss      %.4f nats over %llu assistant tokens", r.loss, (unsigned long long)r.tokens);
    info("  exact     %.4f +- %.4f", r.exact, r.exact_stderr);
    info("  f1        %.4f +- %.4f", r.f1, r.f1_stderr);
    info("  %zu replies ended by the model, %zu at --max-tokens %d", r.ended, r.n - r.ended, o->max_tokens);
    if (r.truncated) info("  %zu conversations were cut to the window of %d tokens", r.truncated, s.window);
    if (t.set.bad) warn("skipped %llu bad lines of %s", (unsigned long long)t.set.bad, o->data);
    if (t.set.no_assistant) warn("skipped %llu conversations of %s without an assistant turn", (unsigned long long)t.set.no_assistant, o->data);
    print_json(j);
    chat_task_free(&t);
    scorer_close(&s);
    return 0;
}

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    enum { O_DATA = 256, O_SPLIT, O_LINES, O_JSONL, O_FIELD, O_WINDOW, O_STRIDE, O_BATCH, O_LABELS, O_LIMIT, O_SEED,
           O_PER_EXAMPLE, O_SKIP_BAD, O_DEVICE, O_MAX_TOKENS };
    static const struct option longopts[] = {
        {"tokenizer", required_argument, 0, 't'}, {"data", required_argument, 0, O_DATA},
        {"split", required_argument, 0, O_SPLIT}, {"lines", no_argument, 0, O_LINES}, {"jsonl", no_argument, 0, O_JSONL},
        {"field", required_argument, 0, O_FIELD}, {"window", required_argument, 0, O_WINDOW},
        {"stride", required_argument, 0, O_STRIDE}, {"batch", required_argument, 0, O_BATCH},
        {"labels", required_argument, 0, O_LABELS}, {"limit", required_argument, 0, O_LIMIT},
        {"seed", required_argument, 0, O_SEED}, {"per-example", required_argument, 0, O_PER_EXAMPLE},
        {"skip-bad", no_argument, 0, O_SKIP_BAD}, {"device", required_argument, 0, O_DEVICE},
        {"max-tokens", required_argument, 0, O_MAX_TOKENS}, {"threads", required_argument, 0, 'j'}, CLI_COMMON_OPTIONS};
    Opts o = {.field = "text", .device = "auto", .batch = 8, .max_tokens = 64};
    int c;
    while ((c = cli_getopt(argc, argv, "t:j:", longopts, help)) != -1) {
        switch (c) {
        case 't': o.tok_path = optarg; break;
        case O_DATA: o.data = optarg; break;
        case O_SPLIT: o.split = optarg; break;
        case O_LINES: o.lines = 1; break;
        case O_JSONL: o.jsonl = 1; break;
        case O_FIELD: o.field = optarg; break;
        case O_WINDOW: o.window = (int)parse_u64("--window", optarg, 2, 1u << 24); break;
        case O_STRIDE: o.stride = (int)parse_u64("--stride", optarg, 1, 1u << 24); break;
        case O_BATCH: o.batch = (int)parse_u64("--batch", optarg, 1, 1u << 16); break;
        case O_LABELS: o.labels = optarg; break;
        case O_LIMIT: o.limit = (size_t)parse_count("--limit", optarg, 1, 1ull << 40); break;
        case O_SEED: o.seed = parse_u64("--seed", optarg, 1, UINT64_MAX); break;
        case O_PER_EXAMPLE: o.per_example = optarg; break;
        case O_SKIP_BAD: o.skip_bad = 1; break;
        case O_MAX_TOKENS: o.max_tokens = (int)parse_u64("--max-tokens", optarg, 1, 1u << 20); break;
        case O_DEVICE:
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda") && strcmp(optarg, "auto"))
                usage_error("--device: expected cpu, cuda or auto, got '%s'", optarg);
            o.device = optarg;
            break;
        case 'j': o.threads = (int)parse_u64("--threads", optarg, 1, 4096); break;
        }
    }
    if (optind >= argc) usage_error("no command (loss, chat, or a task: choice, piqa, lambada, hellaswag, arc, winogrande)");
    const char *cmd = argv[optind++];
    TaskKind kind = N_TASKS;
    int chat = !strcmp(cmd, "chat");
    if (!chat && strcmp(cmd, "loss") && task_parse(cmd, &kind))
        usage_error("unknown command '%s' (loss, chat, choice, piqa, lambada, hellaswag, arc or winogrande)", cmd);
    cli_check_command(&commands[chat ? 2 : strcmp(cmd, "loss") ? 1 : 0], commands, sizeof commands / sizeof *commands);
    if (o.lines && o.jsonl) usage_error("--lines and --jsonl exclude each other");
    if (o.seed && !o.limit) usage_error("--seed samples the items of --limit: give both");
    if (optind >= argc) usage_error("expected a checkpoint (a run directory or a step-N directory)");
    const char *ckpt = argv[optind++];
    if (!o.tok_path) usage_error("missing -t TOKENIZER");
    if (chat && optind != argc) usage_error("chat reads its conversations from --data, not '%s'", argv[optind]);
    if (chat && !o.data) usage_error("chat needs its conversations (--data CHAT.jsonl)");
    if (o.threads) omp_set_num_threads(o.threads);
    Tokenizer *tok = tokenizer_load(o.tok_path, NULL);
    int rc;
    if (chat) {
        rc = cmd_chat(&o, ckpt, tok);
    } else if (kind == N_TASKS) {
        rc = cmd_loss(&o, ckpt, tok, argv + optind, (size_t)(argc - optind));
    } else {
        if (optind + 1 != argc) usage_error("%s takes one FILE of items", cmd);
        rc = cmd_task(&o, kind, ckpt, tok, argv[optind]);
    }
    tokenizer_free(tok);
    return rc;
}
