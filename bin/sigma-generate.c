/* sigma-generate: continue prompts with a trained model, through a
 * key-value cache on the CPU or a GPU, greedily or by sampling: one prompt
 * to text (or ids), or JSON Lines of prompts to JSON Lines of completions.
 * The work is in lib/model (generate.c: the rows and steps; sample.c: the
 * choice of a token; kvcache.h: the cache on each device); this is the
 * command line: options, prompts in, text out. */
#include "base/base.h"
#include "base/json.h"
#include "base/threads.h"
#include "model/device.h"
#include "model/generate.h"
#include "model/sample.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "train/ckpt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void help(FILE *out)
{
    fprintf(out,
            "usage: sigma-generate CKPT -t TOKENIZER [OPTIONS] [-p TEXT | FILE]\n"
            "       sigma-generate CKPT -t TOKENIZER --jsonl [OPTIONS] [FILE]\n"
            "\n"
            "Continues a prompt (--prompt, else FILE or standard input; empty: a new document)\n"
            "with the model of a checkpoint (a run directory or one step-N directory) and\n"
            "writes the continuation to standard output; with --jsonl, a prompt per JSON line\n"
            "in and a completion per JSON line out, batched.\n"
            "\n"
            "  -t, --tokenizer FILE         the tokenizer the model was trained with\n"
            "  -p, --prompt TEXT            the prompt (else FILE or standard input)\n"
            "  -n, --max-tokens N           tokens to generate at most (default 64)\n"
            "      --temperature X          0 = greedy (default); else sample softmax(logits / X)\n"
            "      --top-k K                sample among the K most likely tokens (default all)\n"
            "      --top-p P                ... among the most likely tokens holding P of the mass\n"
            "      --min-p P                ... among the tokens at least P times as likely as the first\n"
            "      --repetition-penalty X   divide the logits of tokens already seen by X (default 1)\n"
            "      --stop TEXT              stop where TEXT appears, leaving it out (repeatable)\n"
            "      --seed N                 of the sampling (default 1)\n"
            "      --keep-going             do not stop at end-of-text (or <|im_end|>)\n"
            "      --chat                   apply the chat template; stop at <|im_end|>\n"
            "      --stream                 write the text as it is generated\n"
            "      --ids                    write token ids, one per line, instead of text\n"
            "      --jsonl                  JSON Lines in ({\"prompt\"} or {\"messages\"}) and out\n"
            "      --batch N                prompts generated together (default 8)\n"
            "      --skip-bad               skip (and count) bad JSON lines instead of stopping\n"
            "      --slide                  at a full window drop its oldest half and go on\n"
            "      --device NAME            cpu, cuda or auto (default auto: cuda when a GPU is present)\n"
            "  -j, --threads N              CPU threads (default: every core)\n"
            "\n");
    cli_help_end(out);
}

typedef struct {
    const char *tok_path, *prompt, *device;
    uint64_t max_tokens, seed;
    SampleOptions sample;
    char **stop;
    size_t n_stop;
    int ids, keep_going, chat, stream, jsonl, batch, skip_bad, slide, threads;
} Opts;

/* One prompt and what became of it. */
typedef struct {
    GenRequest spec;           /* what to do, as read */
    GenRequest *r;             /* the generator's request (r->user is this item): what became of it */
    TokIds prompt;
    uint64_t line;             /* of the JSON Lines input */
    cJSON *echo;               /* JSON Lines: the line's prompt or messages, and id, for the output */
    char **stop;               /* the stop strings: the line's, else the command line's */
    size_t n_stop;
    int own_stop;              /* stop is the line's, freed with it */
    TokBytes text;             /* the completion, cut before a stop string */
    size_t shown;              /* bytes of text written (--stream) */
    int stop_string, done;
} Item;

/* What the generator's callbacks need. */
typedef struct {
    const Opts *o;
    const Tokenizer *tok;
    Item *items;
    size_t n, emitted;
    int window;
} Run;

/* ---- options ------------------------------------------------------------------ */

static void set_sample(SampleOptions *s, const char *opt, const char *name, const char *arg)
{
    int known;
    const char *err = sample_set(s, name, parse_double(opt, arg, -INFINITY, INFINITY), &known);
    if (err) usage_error("%s: %s", opt, err);
}

static int parse_options(Opts *o, int argc, char **argv)
{
    enum { O_TEMP = 256, O_TOPK, O_TOPP, O_MINP, O_PENALTY, O_STOP, O_SEED, O_IDS, O_KEEP, O_CHAT, O_STREAM, O_JSONL, O_BATCH,
           O_SKIP_BAD, O_SLIDE, O_DEVICE };
    static const struct option longopts[] = {
        {"tokenizer", required_argument, 0, 't'}, {"prompt", required_argument, 0, 'p'},
        {"max-tokens", required_argument, 0, 'n'}, {"temperature", required_argument, 0, O_TEMP},
        {"top-k", required_argument, 0, O_TOPK}, {"top-p", required_argument, 0, O_TOPP}, {"min-p", required_argument, 0, O_MINP},
        {"repetition-penalty", required_argument, 0, O_PENALTY}, {"stop", required_argument, 0, O_STOP},
        {"seed", required_argument, 0, O_SEED}, {"ids", no_argument, 0, O_IDS}, {"keep-going", no_argument, 0, O_KEEP},
        {"chat", no_argument, 0, O_CHAT}, {"stream", no_argument, 0, O_STREAM}, {"jsonl", no_argument, 0, O_JSONL},
        {"batch", required_argument, 0, O_BATCH}, {"skip-bad", no_argument, 0, O_SKIP_BAD}, {"slide", no_argument, 0, O_SLIDE},
        {"device", required_argument, 0, O_DEVICE}, {"threads", required_argument, 0, 'j'}, CLI_COMMON_OPTIONS};
    *o = (Opts){.max_tokens = 64, .seed = 1, .sample = sample_defaults(), .device = "auto", .batch = 8};
    int c;
    while ((c = cli_getopt(argc, argv, "t:p:n:j:", longopts, help)) != -1) {
        switch (c) {
        case 't': o->tok_path = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'n': o->max_tokens = parse_count("--max-tokens", optarg, 0, 1u << 24); break;
        case O_TEMP: set_sample(&o->sample, "--temperature", "temperature", optarg); break;
        case O_TOPK: set_sample(&o->sample, "--top-k", "top_k", optarg); break;
        case O_TOPP: set_sample(&o->sample, "--top-p", "top_p", optarg); break;
        case O_MINP: set_sample(&o->sample, "--min-p", "min_p", optarg); break;
        case O_PENALTY: set_sample(&o->sample, "--repetition-penalty", "repetition_penalty", optarg); break;
        case O_STOP:
            if (!*optarg) usage_error("--stop: an empty string would stop at once");
            o->stop = xrealloc(o->stop, (o->n_stop + 1) * sizeof *o->stop);
            o->stop[o->n_stop++] = optarg;
            break;
        case O_SEED: o->seed = parse_u64("--seed", optarg, 0, UINT64_MAX); break;
        case O_IDS: o->ids = 1; break;
        case O_KEEP: o->keep_going = 1; break;
        case O_CHAT: o->chat = 1; break;
        case O_STREAM: o->stream = 1; break;
        case O_JSONL: o->jsonl = 1; break;
        case O_BATCH: o->batch = (int)parse_u64("--batch", optarg, 1, 4096); break;
        case O_SKIP_BAD: o->skip_bad = 1; break;
        case O_SLIDE: o->slide = 1; break;
        case O_DEVICE:
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda") && strcmp(optarg, "auto"))
                usage_error("--device: expected cpu, cuda or auto, got '%s'", optarg);
            o->device = optarg;
            break;
        case 'j': o->threads = (int)parse_u64("--threads", optarg, 1, 4096); break;
        }
    }
    if (optind >= argc) usage_error("expected one checkpoint (a run directory or a step-N directory)");
    if (argc - optind > 2) usage_error("expected a checkpoint and at most one FILE");
    if (!o->tok_path) usage_error("missing -t TOKENIZER");
    if (o->prompt && argc - optind == 2) usage_error("--prompt or a FILE, not both");
    if (o->jsonl && o->prompt) usage_error("--jsonl reads its prompts from FILE or standard input, not --prompt");
    if (o->jsonl && o->stream) usage_error("--stream writes one text as it comes: not with --jsonl");
    if (!sample_draws(&o->sample) && (o->sample.top_k || o->sample.top_p < 1 || o->sample.min_p > 0))
        warn("--top-k, --top-p and --min-p filter what is sampled: greedy (--temperature 0) ignores them");
    return optind;
}

/* ---- prompts in ------------------------------------------------------------------ */

/* A prompt's ids: after an end-of-text token, as a new document begins in
 * training (so an empty prompt is a new document). */
static void encode_text(Item *it, const Tokenizer *tok, const char *text, size_t len)
{
    int64_t eot = tokenizer_special(tok, TOK_ENDOFTEXT);
    if (eot >= 0) {
        it->prompt.ids = xmalloc(sizeof(uint32_t));
        it->prompt.ids[0] = (uint32_t)eot;
        it->prompt.len = it->prompt.cap = 1;
    }
    tokenizer_encode(tok, &it->prompt, (const uint8_t *)text, len, 0);
    if (!it->prompt.len) die("an empty prompt needs the tokenizer's %s token, which it lacks", TOK_ENDOFTEXT);
}

/* A conversation's ids: ChatML and the generation prompt (text/chat.h). */
static void encode_chat(Item *it, const Tokenizer *tok, const ChatMessage *m, size_t n)
{
    chat_encode(tok, m, n, 1, 0, &it->prompt, NULL, NULL);
}

static void item_init(Item *it, const Opts *o)
{
    memset(it, 0, sizeof *it);
    it->spec.sample = o->sample;
    it->spec.max_tokens = o->max_tokens;
    it->spec.rng = o->seed;
    it->stop = o->stop;
    it->n_stop = o->n_stop;
}

/* The one prompt: --prompt, FILE or standard input (less one final
 * newline, which echo adds). With --chat it is the user's message, or, read
 * from a file beginning with '[' or '{', a JSON conversation: a list of
 * messages or {"messages": [...]}. */
static void read_prompt(Item *it, const Opts *o, const Tokenizer *tok, const char *file)
{
    item_init(it, o);
    const char *name = file ? file : "standard input";
    size_t len = 0;
    char *text = o->prompt ? xstrdup(o->prompt)
                 : !file && isatty(STDIN_FILENO) ? xstrdup("")
                                                 : read_file(file ? file : "-", (size_t)1 << 30, &len);
    if (o->prompt) len = strlen(text);
    else if (len && text[len - 1] == '\n') len--;
    size_t lead = 0;
    while (lead < len && (text[lead] == ' ' || text[lead] == '\n' || text[lead] == '\t' || text[lead] == '\r')) lead++;
    if (o->chat && !o->prompt && lead < len && (text[lead] == '[' || text[lead] == '{')) {
        size_t err = 0;
        cJSON *j = json_parse(text, len, &err);
        if (!j) die("%s: not a JSON conversation (byte %zu)", name, err + 1);
        const cJSON *msgs = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "messages") : j;
        ChatMessage *m = NULL;
        size_t cap = 0, n;
        char why[160];
        if (!(n = chat_messages_from_json(msgs, &m, &cap, why, sizeof why))) die("%s: %s", name, why);
        encode_chat(it, tok, m, n);
        free(m);
        cJSON_Delete(j);
    } else if (o->chat) {
        ChatMessage m = {ROLE_USER, text};
        text[len] = 0;
        encode_chat(it, tok, &m, 1);
    } else {
        encode_text(it, tok, text, len);
    }
    free(text);
}

/* A whole number from 0 to hi in a JSON line's field, or -1. */
static double line_count(const cJSON *f, double hi)
{
    return cJSON_IsNumber(f) && f->valuedouble >= 0 && f->valuedouble <= hi && f->valuedouble == floor(f->valuedouble) ? f->valuedouble
                                                                                                                        : -1;
}

/* A JSON line's "stop": a non-empty string or a list of them, pointing
 * into the line (kept as the item's echo); 0 when bad. */
static int line_stops(Item *it, const cJSON *f)
{
    int n = cJSON_IsString(f) ? 1 : cJSON_IsArray(f) ? cJSON_GetArraySize(f) : 0;
    if (!n) return 0;
    it->stop = xcalloc((size_t)n, sizeof *it->stop);
    it->own_stop = 1;
    it->n_stop = 0;
    for (const cJSON *s = cJSON_IsString(f) ? f : f->child; s; s = cJSON_IsString(f) ? NULL : s->next) {
        if (!cJSON_IsString(s) || !*s->valuestring) return 0;
        it->stop[it->n_stop++] = s->valuestring;
    }
    return 1;
}

/* A JSON line's own options over the command line's: max_tokens, seed,
 * stop and sample.h's; other fields are the line's business. 0 when bad
 * (and skipped). */
static int read_line_options(LineSource *src, const cJSON *j, Item *it)
{
    for (const cJSON *f = j->child; f; f = f->next) {
        const char *key = f->string;
        int known;
        SampleOptions probe = it->spec.sample;
        const char *err = sample_set(&probe, key, cJSON_IsNumber(f) ? f->valuedouble : 0, &known);
        if (known == 0) {   /* a sampling option */
            if (!cJSON_IsNumber(f)) return line_bad(src, "\"%s\" is not a number", key);
            if (err) return line_bad(src, "\"%s\" %s", key, err);
            it->spec.sample = probe;
        } else if (!strcmp(key, "max_tokens")) {
            double v = line_count(f, 1 << 24);
            if (v < 0) return line_bad(src, "\"max_tokens\" must be a whole number from 0 to %d", 1 << 24);
            it->spec.max_tokens = (uint64_t)v;
        } else if (!strcmp(key, "seed")) {
            double v = line_count(f, 9007199254740992.0);
            if (v < 0) return line_bad(src, "\"seed\" must be a whole number from 0 to 2^53");
            it->spec.rng = (uint64_t)v;
        } else if (!strcmp(key, "stop") && !line_stops(it, f)) {
            return line_bad(src, "\"stop\" must be a non-empty string or a list of them");
        }
    }
    return 1;
}

/* One JSON line into *it; 0 when the line is bad (and skipped). */
static int read_line(LineSource *src, cJSON *j, Item *it, const Opts *o, const Tokenizer *tok, int window, int *chat_lines)
{
    item_init(it, o);
    it->line = src->line;
    it->spec.rng = o->seed + src->line - 1;   /* line L draws with --seed + L - 1, unless it gives its own */
    if (!cJSON_IsObject(j)) return line_bad(src, "not a JSON object");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(j, "prompt"), *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    if (prompt && msgs) return line_bad(src, "both \"prompt\" and \"messages\": give one");
    if (!prompt && !msgs) return line_bad(src, "neither a \"prompt\" string nor a \"messages\" list");
    if (prompt && !cJSON_IsString(prompt)) return line_bad(src, "\"prompt\" is not a string");
    if (!read_line_options(src, j, it)) return 0;
    if (msgs || o->chat) {
        if (msgs) *chat_lines += 1;
        chat_check_tokenizer(tok, o->tok_path);
        ChatMessage *m = NULL, one = {ROLE_USER, prompt ? prompt->valuestring : NULL};
        size_t cap = 0, n = 1;
        char why[160];
        if (msgs && !(n = chat_messages_from_json(msgs, &m, &cap, why, sizeof why))) return line_bad(src, "%s", why);
        encode_chat(it, tok, msgs ? m : &one, n);
        free(m);
    } else {
        encode_text(it, tok, prompt->valuestring, strlen(prompt->valuestring));
    }
    if (it->prompt.len > (size_t)window && !o->slide)
        return line_bad(src, "the prompt is %zu tokens, more than the model's window of %d (--slide keeps its newest %d)",
                        it->prompt.len, window, window / 2);
    return 1;
}

/* Every line of FILE (or standard input) first, so that a bad line stops
 * the run before any work. Blank lines are skipped. */
static Item *read_jsonl(const Opts *o, const Tokenizer *tok, const char *file, int window, size_t *n_items, uint64_t *skipped,
                        int *chat_lines)
{
    size_t len, cap = 0, n = 0;
    char *text = read_file(file ? file : "-", (size_t)1 << 34, &len);
    LineSource src = {.path = file ? file : "standard input", .skip_bad = o->skip_bad};
    Item *items = NULL;
    for (char *p = text; p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p)), *end = nl ? nl : text + len;
        src.line++;
        size_t ll = (size_t)(end - p);
        while (ll && (p[ll - 1] == '\r' || p[ll - 1] == ' ' || p[ll - 1] == '\t')) ll--;
        char *line = p;
        p = end + 1;
        if (ll == 0) continue;
        size_t err = 0;
        cJSON *j = json_has_nul_escape(line, ll) ? NULL : json_parse(line, ll, &err);
        if (!j) {
            line_bad(&src, "not JSON (byte %zu)", err + 1);
            continue;
        }
        if (n == cap) items = xrealloc(items, (cap = 2 * cap + 64) * sizeof *items);
        Item *it = &items[n];
        if (read_line(&src, j, it, o, tok, window, chat_lines)) {
            /* the output echoes the line's prompt or messages and id; the
             * stop strings point into the same copy */
            it->echo = j;
            n++;
        } else {
            if (it->own_stop) free(it->stop);
            tokids_free(&it->prompt);
            cJSON_Delete(j);
        }
    }
    free(text);
    *n_items = n;
    *skipped = src.skipped;
    return items;
}

/* ---- text out ------------------------------------------------------------------- */

/* --stream: the text so far, less what might begin a stop string */
static void show(Item *it, int final)
{
    size_t hold = 0;
    for (size_t i = 0; !final && i < it->n_stop; i++) {
        size_t sl = strlen(it->stop[i]);
        hold = sl - 1 > hold ? sl - 1 : hold;
    }
    size_t upto = it->text.len > hold ? it->text.len - hold : 0;
    if (upto <= it->shown) return;
    xfwrite(it->text.bytes + it->shown, upto - it->shown, stdout, "<stdout>");
    xfflush(stdout, "<stdout>");
    it->shown = upto;
}

static int on_token(void *ctx, GenRequest *r, uint32_t id)
{
    Run *run = ctx;
    Item *it = r->user;
    size_t from = it->text.len;
    tokenizer_decode(run->tok, &it->text, &id, 1);
    long at = stop_find((const char *)it->text.bytes, it->text.len, from, it->stop, it->n_stop);
    if (at >= 0) {
        it->text.len = (size_t)at;
        it->stop_string = 1;
    }
    if (run->o->stream && run->o->ids) {
        printf("%u\n", id);
        xfflush(stdout, "<stdout>");
    } else if (run->o->stream) {
        show(it, 0);
    }
    return at >= 0;
}

/* Why the one prompt's generation ended, on stderr. */
static void say_why(const Run *run, const Item *it)
{
    const GenRequest *r = it->r;
    unsigned long long n = (unsigned long long)r->n_out;
    if (r->stop_id >= 0)
        info("the model ended the %s (%s) after %llu tokens", run->o->chat ? "reply" : "text",
             tokenizer_special(run->tok, CHAT_END) == r->stop_id ? CHAT_END : "end-of-text", n);
    else if (it->stop_string) info("a stop string ended the text after %llu tokens", n);
    else if (r->window_full) info("%llu tokens: the model's window of %d tokens is full (--slide goes on)", n, run->window);
    else info("%llu tokens: the --max-tokens limit", n);
    if (r->slides) info("the window slid %llu times", (unsigned long long)r->slides);
}

static void finish_text(Run *run, Item *it)
{
    const Opts *o = run->o;
    if (o->ids && !o->stream)
        for (size_t i = 0; i < it->r->n_out; i++) printf("%u\n", it->r->out[i]);
    if (!o->ids) {
        show(it, 1);
        if (!it->text.len || it->text.bytes[it->text.len - 1] != '\n') putchar('\n');   /* text ends with a newline, as text files do */
    }
    xfflush(stdout, "<stdout>");
    say_why(run, it);
}

/* {"prompt" or "messages", "id" where given, "completion", "tokens", "prompt_tokens", "finish_reason", "ids" with --ids} */
static void emit_json(const Run *run, Item *it)
{
    const GenRequest *r = it->r;
    putchar('{');
    static const char *const echo[] = {"id", "prompt", "messages"};
    for (int i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(it->echo, echo[i]);
        if (!v) continue;
        printf("\"%s\":", echo[i]);
        if (cJSON_IsString(v)) {   /* as valid UTF-8, as the completion */
            json_write_bytes(stdout, v->valuestring, strlen(v->valuestring), "<stdout>");
        } else {
            char *s = json_print(v, 0);
            fputs(s, stdout);
            free(s);
        }
        putchar(',');
    }
    printf("\"completion\":");
    json_write_bytes(stdout, it->text.bytes, it->text.len, "<stdout>");
    printf(",\"tokens\":%zu,\"prompt_tokens\":%zu,\"finish_reason\":\"%s\"", r->n_out, it->prompt.len, finish_name(r->finish));
    if (run->o->ids) {
        printf(",\"ids\":[");
        for (size_t i = 0; i < r->n_out; i++) printf("%s%u", i ? "," : "", r->out[i]);
        putchar(']');
    }
    printf("}\n");
    xfflush(stdout, "<stdout>");
}

static void item_free(Item *it)
{
    generate_free_request(it->r);
    tokids_free(&it->prompt);
    tokbytes_free(&it->text);
    if (it->own_stop) free(it->stop);
    cJSON_Delete(it->echo);
    it->echo = NULL;
}

/* JSON Lines come out in the order they went in, each as soon as it and
 * those before it are done. */
static void on_done(void *ctx, GenRequest *r)
{
    Run *run = ctx;
    Item *it = r->user;
    it->done = 1;
    if (!run->o->jsonl) {
        finish_text(run, it);
        return;
    }
    while (run->emitted < run->n && run->items[run->emitted].done) {
        emit_json(run, &run->items[run->emitted]);
        item_free(&run->items[run->emitted++]);
    }
}

/* ---- the model -------------------------------------------------------------------- */

/* The checkpoint's model on its device, as sigma-eval opens it; *routing:
 * by the expert bias where the run was trained with one. */
static Device *load_model(const Opts *o, const char *ckpt, const Tokenizer *tok, Model *m, BalanceOptions *routing)
{
    char *dir = ckpt_resolve(ckpt);
    if (!dir) die("%s: not a checkpoint (no config.json) nor a run directory (no latest)", ckpt);
    Config c;
    TokHeader ck_tok, file_tok = tokenizer_header(tok);
    cJSON_Delete(ckpt_read_config(dir, &c, &ck_tok));
    tokenizer_match(&ck_tok, ckpt, &file_tok, o->tok_path);
    const char *why;
    const DeviceOps *ops = device_select(o->device, &why);
    verbose("device: %s (%s)", ops->name, why);
    Device *d = device_open(ops, m, &c, 1, 1, NULL, sg_verbose);   /* no forward: the cache's steps only */
    ckpt_read_tensors(dir, "model.safetensors", m->tensors, m->n_tensors, m->params, ckpt_model_hash(dir), 0);
    *routing = (BalanceOptions){.kind = ckpt_read_routing_bias(dir, m->expert_bias, (size_t)c.n_layers * c.n_experts)
                                            ? BALANCE_BIAS : BALANCE_NONE};
    device_set_state(d, m->params, NULL);
    free(dir);
    return d;
}

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    Opts o;
    int at = parse_options(&o, argc, argv);
    const char *ckpt = argv[at], *file = at + 1 < argc ? argv[at + 1] : NULL;
    if (file && !strcmp(file, "-")) file = NULL;
    if (o.threads) omp_set_num_threads(o.threads);
    Tokenizer *tok = tokenizer_load(o.tok_path, NULL);
    if (o.chat) chat_check_tokenizer(tok, o.tok_path);
    Model m;
    BalanceOptions routing;
    Device *dev = load_model(&o, ckpt, tok, &m, &routing);
    Run run = {.o = &o, .tok = tok, .window = m.cfg.max_seq_len};

    uint64_t skipped = 0;
    int chat_lines = 0;
    if (o.jsonl) {
        run.items = read_jsonl(&o, tok, file, run.window, &run.n, &skipped, &chat_lines);
    } else {
        run.items = xmalloc(sizeof *run.items);
        run.n = 1;
        read_prompt(run.items, &o, tok, file);
        if (run.items->prompt.len > (size_t)run.window && !o.slide)
            die("the prompt is %zu tokens, more than the model's window of %d (--slide keeps its newest %d)", run.items->prompt.len,
                run.window, run.window / 2);
    }

    /* a row ends at end-of-text, and at the end of a chat turn */
    uint32_t stop_ids[2];
    int n_stop_ids = 0;
    int64_t eot = tokenizer_special(tok, TOK_ENDOFTEXT), im_end = tokenizer_special(tok, CHAT_END);
    if (!o.keep_going && eot >= 0) stop_ids[n_stop_ids++] = (uint32_t)eot;
    if (!o.keep_going && im_end >= 0 && (o.chat || chat_lines)) stop_ids[n_stop_ids++] = (uint32_t)im_end;

    /* the generator's requests, each pointing at its item */
    GenRequest *r = xmalloc((run.n ? run.n : 1) * sizeof *r);
    for (size_t i = 0; i < run.n; i++) {
        Item *it = &run.items[i];
        r[i] = it->spec;
        r[i].prompt = it->prompt.ids;
        r[i].n_prompt = it->prompt.len;
        r[i].user = it;
        it->r = &r[i];
    }
    Generator g = {.dev = dev, .routing = &routing, .rows = o.batch, .max_step = 512, .window = run.window, .slide = o.slide,
                   .stop_ids = stop_ids, .n_stop_ids = n_stop_ids, .on_token = on_token, .on_done = on_done, .ctx = &run};
    generate_run(&g, r, run.n);
    if (g.prefill_tokens)
        verbose("prefill: %llu tokens in %.4f s, %.1f tokens/s", (unsigned long long)g.prefill_tokens, g.prefill_s,
                g.prefill_tokens / fmax(g.prefill_s, 1e-9));
    if (g.decode_steps)
        verbose("decode: %llu tokens in %.4f s, %.1f tokens/s (%llu steps, %.2f rows a step)", (unsigned long long)g.decode_tokens,
                g.decode_s, g.decode_tokens / fmax(g.decode_s, 1e-9), (unsigned long long)g.decode_steps,
                (double)g.decode_tokens / (double)g.decode_steps);
    if (o.jsonl) info("%zu prompts", run.n);
    if (skipped) warn("skipped %llu bad lines", (unsigned long long)skipped);

    if (!o.jsonl) item_free(run.items);
    free(run.items);
    free(r);
    free(o.stop);
    device_close(dev);   /* and the host model */
    tokenizer_free(tok);
    return 0;
}
