/* sigma-tokenize: train a byte-level BPE tokenizer, encode text to a token
 * stream (or ids), decode it back, describe a tokenizer. The work is in
 * lib/text (pretok, tokenizer, bpe_train, docs); this is the command line. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "base/json.h"
#include "data/tokstream.h"
#include "text/bpe_train.h"
#include "text/docs.h"
#include "text/pretok.h"
#include "text/tokenizer.h"

static void help(FILE *out)
{
    fprintf(out,
            "usage: sigma-tokenize train -o TOK [--vocab-size N] [--pattern P] [--special NAME]... [--chat]\n"
            "                            [--lines | --jsonl [--field F] [--skip-bad]] [-j N] [FILE...]\n"
            "       sigma-tokenize encode -t TOK [--pattern P] [--lines | --jsonl [--field F] [--skip-bad]]\n"
            "                            [--ids] [-j N] [-o OUT] [-f] [FILE...]\n"
            "       sigma-tokenize decode -t TOK [--pattern P] [--ids] [--lines] [-o OUT] [FILE]\n"
            "       sigma-tokenize info -t TOK [--pattern P]\n"
            "\n"
            "Byte-level BPE that encodes exactly as tiktoken. Text comes a document per\n"
            "file (default), per line (--lines) or per JSON Lines record (--jsonl, field\n"
            "--field, default text); no FILE or \"-\" reads stdin. An option is refused by\n"
            "a command that does not take it.\n"
            "\n"
            "  -t, --tokenizer TOK      a sigma tokenizer file or a tiktoken rank file\n"
            "      --pattern P          gpt2 (= r50k), cl100k or o200k: required with a rank\n"
            "                           file; train's default is o200k\n"
            "  -o, --out PATH           train: the tokenizer file; encode, decode: instead of stdout\n"
            "      --output PATH        the same as --out\n"
            "      --vocab-size N       train: all tokens, specials included (default 32000)\n"
            "      --special NAME       train: one more special token (repeatable); <|endoftext|>\n"
            "                           is always the first\n"
            "      --chat               train: reserve <|im_start|> and <|im_end|> for chat data\n"
            "      --lines              a document per line (decode: a newline after each)\n"
            "      --jsonl              train, encode: a document per JSON Lines record, its --field\n"
            "      --field F            the JSON field holding the text (default text)\n"
            "      --skip-bad           skip (and count) JSON lines that are invalid or lack the field\n"
            "      --ids                encode: decimal ids, a document per line, no end-of-text;\n"
            "                           decode: read that\n"
            "  -j, --threads N          train, encode: threads (default: every core); output does\n"
            "                           not depend on it\n"
            "  -f, --force              encode: write a token stream to a terminal\n"
            "\n");
    cli_help_end(out);
}

/* The options each command takes (cli_check_command refuses the others). */
static const CliCommand commands[] = {
    {"train", "out pattern vocab-size special chat lines jsonl field skip-bad threads"},
    {"encode", "tokenizer pattern out lines jsonl field skip-bad ids threads force"},
    {"decode", "tokenizer pattern out ids lines"},
    {"info", "tokenizer pattern"},
};
#define N_COMMANDS (sizeof commands / sizeof *commands)

enum { OPT_PATTERN = 256, OPT_VOCAB, OPT_SPECIAL, OPT_CHAT, OPT_LINES, OPT_JSONL, OPT_FIELD, OPT_SKIP_BAD,
       OPT_IDS };

typedef struct {
    const char *tok_path, *pattern, *output, *field;
    uint64_t vocab_size;
    const char *specials[TOK_MAX_SPECIALS];
    size_t n_specials;
    int chat, skip_bad, ids, threads, force, lines;
    DocsMode mode;
} Opts;

/* ---- encode --------------------------------------------------------------- */

/* A batch of documents copied out of the reader, cut into units that are
 * encoded in parallel. A long document is cut where the cut cannot change
 * its encoding (tokenizer_cut_point), at fixed sizes, so that one big file
 * uses every thread and the output does not depend on their number. */
typedef struct {
    const Tokenizer *tok;
    uint8_t *text;           /* [text_len] the documents back to back */
    size_t text_len, text_cap;
    uint64_t *begin, *end;   /* [n] unit i is text[begin[i] .. end[i]) */
    uint8_t *last;           /* [n] unit i ends its document */
    size_t n, cap, docs;
    TokIds *out;             /* [cap] ids of unit i */
} Batch;

#define BATCH_BYTES (4u << 20)
#define BATCH_DOCS 8192
#define UNIT_BYTES (256u << 10)

static void batch_unit(Batch *b, uint64_t begin, uint64_t end, int last)
{
    if (b->n == b->cap) {
        size_t old = b->cap;
        b->cap = b->cap ? 2 * b->cap : 1024;
        b->begin = xrealloc(b->begin, b->cap * sizeof *b->begin);
        b->end = xrealloc(b->end, b->cap * sizeof *b->end);
        b->last = xrealloc(b->last, b->cap * sizeof *b->last);
        b->out = xrealloc(b->out, b->cap * sizeof *b->out);
        memset(b->out + old, 0, (b->cap - old) * sizeof *b->out);
    }
    b->begin[b->n] = begin;
    b->end[b->n] = end;
    b->last[b->n++] = (uint8_t)last;
}

/* Adds a document, or a part of one that continues unless `ends`. */
static void batch_add(Batch *b, const uint8_t *doc, size_t len, int ends)
{
    if (b->text_len + len > b->text_cap) {
        b->text_cap = 2 * (b->text_len + len) + 4096;
        b->text = xrealloc(b->text, b->text_cap);
    }
    uint64_t base = b->text_len;
    if (len) memcpy(b->text + base, doc, len);
    b->text_len += len;
    b->docs += ends;
    size_t at = 0;
    while (len - at > UNIT_BYTES) {
        size_t cut = tokenizer_cut_point(doc, len, at + UNIT_BYTES);
        if (cut == len) break;
        batch_unit(b, base + at, base + cut, 0);
        at = cut;
    }
    batch_unit(b, base + at, base + len, ends);
}

static void batch_reset(Batch *b) { b->n = b->docs = b->text_len = 0; }

static void batch_free(Batch *b)
{
    for (size_t i = 0; i < b->cap; i++) tokids_free(&b->out[i]);
    free(b->out);
    free(b->begin);
    free(b->end);
    free(b->last);
    free(b->text);
}

static void encode_one(void *ctx, size_t i, int thread)
{
    Batch *b = ctx;
    b->out[i].len = 0;
    tokenizer_encode(b->tok, &b->out[i], b->text + b->begin[i], b->end[i] - b->begin[i], 0);
}

static size_t put_u32(char *o, uint32_t v)
{
    char t[10];
    size_t n = 0;
    do { t[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    for (size_t i = 0; i < n; i++) o[i] = t[n - 1 - i];
    return n;
}

/* Decimal ids separated by spaces; *first says whether one was written
 * yet on this line. */
static void write_ids(FILE *f, const char *name, const TokIds *ids, int *first)
{
    char buf[65536];
    size_t k = 0;
    for (size_t i = 0; i < ids->len; i++) {
        if (k + 12 > sizeof buf) { xfwrite(buf, k, f, name); k = 0; }
        if (!*first) buf[k++] = ' ';
        *first = 0;
        k += put_u32(buf + k, ids->ids[i]);
    }
    xfwrite(buf, k, f, name);
}

typedef struct {
    FILE *f;
    const char *name;
    AtomicFile af;
    int atomic;
} Output;

static void output_open(Output *o, const char *path, int binary, int force)
{
    *o = (Output){0};
    if (path && strcmp(path, "-")) {
        atomic_file_open(&o->af, path);
        o->f = o->af.f;
        o->name = path;
        o->atomic = 1;
    } else {
        if (binary && !force && isatty(STDOUT_FILENO))
            die("will not write a binary token stream to a terminal (redirect it, use --ids, or -f)");
        o->f = stdout;
        o->name = "stdout";
    }
}

static void output_close(Output *o)
{
    if (o->atomic) atomic_file_commit(&o->af);
    else xfclose(o->f, o->name);
}

static int cmd_encode(const Opts *o, char *const *files, size_t n_files)
{
    Tokenizer *tok = tokenizer_load(o->tok_path, o->pattern);
    int64_t eot = tokenizer_special(tok, TOK_ENDOFTEXT);
    if (eot < 0) die("%s: the tokenizer has no %s token", o->tok_path, TOK_ENDOFTEXT);
    Output out;
    output_open(&out, o->output, !o->ids, o->force);
    TokWriter w;
    if (!o->ids) {
        TokHeader hdr = tokenizer_header(tok);
        tokwriter_open(&w, out.f, out.name, &hdr);
    }
    Docs docs;
    docs_open(&docs, o->mode, o->field, o->skip_bad, files, n_files);
    Batch b = {.tok = tok};
    Progress prog;
    progress_init(&prog, 10);
    uint64_t n_docs = 0, n_tokens = 0, text_bytes = 0;   /* the documents' own bytes, not the JSON around them */
    double t0 = now_seconds();
    const uint8_t *doc;
    size_t len;
    int more = 1, ends;
    uint32_t eot32 = (uint32_t)eot;
    int first = 1;
    while (more) {
        batch_reset(&b);
        while (b.docs < BATCH_DOCS && b.text_len < BATCH_BYTES && (more = docs_next(&docs, &doc, &len, &ends))) batch_add(&b, doc, len, ends);
        if (b.n == 0) break;
        docs_parallel(o->threads, b.n, encode_one, &b);
        for (size_t i = 0; i < b.n; i++) {
            if (o->ids) {
                write_ids(out.f, out.name, &b.out[i], &first);
                if (b.last[i]) { xfwrite("\n", 1, out.f, out.name); first = 1; }
            } else {
                tokwriter_put(&w, b.out[i].ids, b.out[i].len);
                if (b.last[i]) {
                    tokwriter_put(&w, &eot32, 1);
                    tokwriter_end_doc(&w);
                }
            }
            n_tokens += b.out[i].len;
        }
        n_docs += b.docs;
        text_bytes += b.text_len;
        double dt = now_seconds() - t0;
        progress_update(&prog, "%" PRIu64 " documents, %.1f MB, %" PRIu64 " tokens, %.1f MB/s", n_docs,
                        docs.bytes_read / 1e6, n_tokens, dt > 0 ? docs.bytes_read / 1e6 / dt : 0.0);
    }
    if (!o->ids) tokwriter_close(&w);
    output_close(&out);
    progress_done(&prog, "encoded %" PRIu64 " documents, %.1f MB of text into %" PRIu64 " tokens (%.2f bytes of text a token)",
                  n_docs, text_bytes / 1e6, n_tokens, n_tokens ? (double)text_bytes / (double)n_tokens : 0.0);
    if (docs.skipped) warn("skipped %" PRIu64 " bad JSON lines", docs.skipped);
    batch_free(&b);
    docs_close(&docs);
    tokenizer_free(tok);
    return 0;
}

/* ---- decode --------------------------------------------------------------- */

static void decode_doc(const Tokenizer *tok, int64_t eot, Output *out, TokIds *ids, int lines)
{
    TokBytes text = {0};
    size_t n = ids->len;
    if (n && (int64_t)ids->ids[n - 1] == eot) n--;   /* the one encode put after the document */
    tokenizer_decode(tok, &text, ids->ids, n);
    if (lines) {
        uint8_t nl = '\n';
        TokBytes *t = &text;
        if (t->len == t->cap) { t->cap = t->cap * 2 + 1; t->bytes = xrealloc(t->bytes, t->cap); }
        t->bytes[t->len++] = nl;
    }
    if (text.len) xfwrite(text.bytes, text.len, out->f, out->name);
    tokbytes_free(&text);
    ids->len = 0;
}

static void ids_add(TokIds *v, uint32_t id)
{
    if (v->len == v->cap) { v->cap = v->cap ? 2 * v->cap : 1024; v->ids = xrealloc(v->ids, v->cap * sizeof *v->ids); }
    v->ids[v->len++] = id;
}

static int cmd_decode(const Opts *o, char *const *files, size_t n_files)
{
    if (n_files > 1) usage_error("decode reads one input");
    const char *path = n_files ? files[0] : "-";
    Tokenizer *tok = tokenizer_load(o->tok_path, o->pattern);
    int64_t eot = tokenizer_special(tok, TOK_ENDOFTEXT);
    FILE *in = xfopen(path, "r");
    const char *name = strcmp(path, "-") ? path : "stdin";
    Output out;
    output_open(&out, o->output, 0, o->force);
    TokIds ids = {0};
    if (o->ids) {
        char *line = NULL;
        size_t cap = 0;
        uint64_t line_no = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, in)) >= 0) {
            line_no++;
            char *p = line;
            for (;;) {
                while (*p == ' ' || *p == '\t') p++;
                if (*p == '\n' || *p == '\r' || !*p) break;
                if (*p < '0' || *p > '9') die("%s, line %" PRIu64 ": '%c' is not part of a token id", name, line_no, *p);
                char *e;
                unsigned long v = strtoul(p, &e, 10);
                if (v >= tokenizer_n_vocab(tok) || !tokenizer_token(tok, (uint32_t)v, &(size_t){0}))
                    die("%s, line %" PRIu64 ": token id %lu is not in the vocabulary", name, line_no, v);
                ids_add(&ids, (uint32_t)v);
                p = e;
            }
            decode_doc(tok, -1, &out, &ids, o->lines);
        }
        free(line);
    } else {
        TokReader r;
        tokreader_open(&r, in, name);
        TokHeader th = tokenizer_header(tok);
        tokenizer_match(&r.hdr, name, &th, o->tok_path);
        uint32_t buf[65536];
        for (;;) {
            int end = 0;
            size_t k = tokreader_read(&r, buf, sizeof buf / sizeof *buf, &end);
            for (size_t i = 0; i < k; i++) ids_add(&ids, buf[i]);
            if (end) decode_doc(tok, eot, &out, &ids, o->lines);
            else if (k == 0) break;
        }
        tokreader_close(&r);
    }
    xfclose(in, name);
    output_close(&out);
    tokids_free(&ids);
    tokenizer_free(tok);
    return 0;
}

/* ---- info ----------------------------------------------------------------- */

static int cmd_info(const Opts *o)
{
    Tokenizer *tok = tokenizer_load(o->tok_path, o->pattern);
    cJSON *j = json_obj();
    json_add_u64(j, "vocab_size", tokenizer_n_vocab(tok));
    json_add_u64(j, "ranks", tokenizer_n_ranks(tok));
    json_add_str(j, "pattern", pretok_name(tokenizer_pattern(tok)));
    json_add_str(j, "regex", pretok_regex(tokenizer_pattern(tok)));
    cJSON *sp = json_obj();
    for (size_t i = 0; i < tokenizer_n_specials(tok); i++)
        json_add_u64(sp, tokenizer_special_name(tok, i), tokenizer_special_id(tok, i));
    json_add(j, "special_tokens", sp);
    char hex[33];
    fingerprint_hex(hex, tokenizer_fingerprint(tok));
    json_add_str(j, "fingerprint", hex);
    char *s = json_print(j, 1);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
    tokenizer_free(tok);
    xfclose(stdout, "stdout");
    return 0;
}

/* ---- train ---------------------------------------------------------------- */

typedef struct {
    Batch *b;
    BpeCounts **counts;   /* [threads] */
} CountJob;

static void count_one(void *ctx, size_t i, int thread)
{
    CountJob *j = ctx;
    bpe_counts_add(j->counts[thread], j->b->text + j->b->begin[i], j->b->end[i] - j->b->begin[i]);
}

static int cmd_train(const Opts *o, char *const *files, size_t n_files)
{
    if (!o->output) usage_error("train needs -o TOKENIZER_FILE");
    int pattern = pretok_by_name(o->pattern ? o->pattern : "o200k");
    if (pattern < 0) usage_error("unknown pattern '%s' (gpt2, r50k, cl100k or o200k)", o->pattern);
    const char *names[TOK_MAX_SPECIALS + 3];
    size_t n_names = 0;
    names[n_names++] = TOK_ENDOFTEXT;
    if (o->chat) { names[n_names++] = "<|im_start|>"; names[n_names++] = "<|im_end|>"; }
    for (size_t i = 0; i < o->n_specials; i++) names[n_names++] = o->specials[i];
    if (o->vocab_size < 256 + n_names)
        usage_error("--vocab-size %" PRIu64 " is smaller than 256 single bytes plus %zu special tokens", o->vocab_size, n_names);
    int threads = docs_threads(o->threads);
    BpeCounts **counts = xmalloc((size_t)threads * sizeof *counts);
    for (int t = 0; t < threads; t++) counts[t] = bpe_counts_new(pattern);
    Docs docs;
    docs_open(&docs, o->mode, o->field, o->skip_bad, files, n_files);
    Batch b = {0};
    CountJob job = {&b, counts};
    Progress prog;
    progress_init(&prog, 10);
    const uint8_t *doc;
    size_t len;
    int more = 1, ends;
    uint64_t n_docs = 0;
    while (more) {
        batch_reset(&b);
        while (b.docs < BATCH_DOCS && b.text_len < BATCH_BYTES && (more = docs_next(&docs, &doc, &len, &ends))) batch_add(&b, doc, len, ends);
        if (b.n == 0) break;
        docs_parallel(threads, b.n, count_one, &job);
        n_docs += b.docs;
        progress_update(&prog, "counting pieces: %" PRIu64 " documents, %.1f MB", n_docs, docs.bytes_read / 1e6);
    }
    for (int t = 1; t < threads; t++) {
        bpe_counts_merge(counts[0], counts[t]);
        bpe_counts_free(counts[t]);
    }
    progress_done(&prog, "counted %" PRIu64 " pieces (%zu distinct) in %" PRIu64 " documents, %.1f MB",
                  bpe_counts_total(counts[0]), bpe_counts_distinct(counts[0]), n_docs, docs.bytes_read / 1e6);
    if (docs.skipped) warn("skipped %" PRIu64 " bad JSON lines", docs.skipped);
    Tokenizer *tok = bpe_train(counts[0], (uint32_t)(o->vocab_size - n_names), names, n_names);
    tokenizer_save(tok, o->output);
    char hex[33];
    fingerprint_hex(hex, tokenizer_fingerprint(tok));
    info("wrote %s: %u tokens, pattern %s, fingerprint %s", o->output, tokenizer_n_vocab(tok), pretok_name(pattern), hex);
    tokenizer_free(tok);
    bpe_counts_free(counts[0]);
    free(counts);
    batch_free(&b);
    docs_close(&docs);
    return 0;
}

/* ---- main ----------------------------------------------------------------- */

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    static const struct option longopts[] = {
        {"tokenizer", required_argument, 0, 't'}, {"pattern", required_argument, 0, OPT_PATTERN},
        {"out", required_argument, 0, 'o'}, {"output", required_argument, 0, 'o'},
        {"vocab-size", required_argument, 0, OPT_VOCAB}, {"special", required_argument, 0, OPT_SPECIAL},
        {"chat", no_argument, 0, OPT_CHAT}, {"lines", no_argument, 0, OPT_LINES}, {"jsonl", no_argument, 0, OPT_JSONL},
        {"field", required_argument, 0, OPT_FIELD}, {"skip-bad", no_argument, 0, OPT_SKIP_BAD},
        {"ids", no_argument, 0, OPT_IDS}, {"threads", required_argument, 0, 'j'},
        {"force", no_argument, 0, 'f'}, CLI_COMMON_OPTIONS};
    Opts o = {.field = "text", .vocab_size = 32000};
    int lines = 0, jsonl = 0, field_given = 0, c;
    while ((c = cli_getopt(argc, argv, "t:o:j:f", longopts, help)) != -1) {
        switch (c) {
        case 't': o.tok_path = optarg; break;
        case 'o': o.output = optarg; break;
        case 'f': o.force = 1; break;
        case OPT_PATTERN:
            if (pretok_by_name(optarg) < 0) usage_error("unknown pattern '%s' (gpt2, r50k, cl100k or o200k)", optarg);
            o.pattern = optarg;
            break;
        case OPT_VOCAB: o.vocab_size = parse_count("--vocab-size", optarg, 1, UINT32_MAX / 2); break;
        case OPT_SPECIAL:
            if (o.n_specials == TOK_MAX_SPECIALS) usage_error("too many --special tokens");
            o.specials[o.n_specials++] = optarg;
            break;
        case OPT_CHAT: o.chat = 1; break;
        case OPT_LINES: lines = 1; break;
        case OPT_JSONL: jsonl = 1; break;
        case OPT_FIELD: o.field = optarg; field_given = 1; break;
        case OPT_SKIP_BAD: o.skip_bad = 1; break;
        case OPT_IDS: o.ids = 1; break;
        case 'j': o.threads = (int)parse_u64("--threads", optarg, 1, 1024); break;
        }
    }
    if (optind >= argc) usage_error("no command (train, encode, decode or info)");
    const char *cmd = argv[optind++];
    size_t which = 0;
    while (which < N_COMMANDS && strcmp(cmd, commands[which].what)) which++;
    if (which == N_COMMANDS) usage_error("unknown command '%s' (train, encode, decode or info)", cmd);
    cli_check_command(&commands[which], commands, N_COMMANDS);
    if (lines && jsonl) usage_error("--lines and --jsonl exclude each other");
    if ((field_given || o.skip_bad) && !jsonl) usage_error("--field and --skip-bad go with --jsonl");
    o.mode = jsonl ? DOCS_JSONL : lines ? DOCS_LINES : DOCS_FILE;
    o.lines = lines;
    char *const *files = argv + optind;
    size_t n_files = (size_t)(argc - optind);
    if (!strcmp(cmd, "train")) return cmd_train(&o, files, n_files);
    if (!o.tok_path) usage_error("%s needs -t TOKENIZER", cmd);
    if (!strcmp(cmd, "encode")) return cmd_encode(&o, files, n_files);
    if (!strcmp(cmd, "decode")) return cmd_decode(&o, files, n_files);
    if (n_files) usage_error("info takes no files");
    return cmd_info(&o);
}
