/* sigma-generate: continue a prompt with a trained model, greedily or by
 * sampling, and write the text (or ids) to stdout. */
#include "base/base.h"
#include "data/tokstream.h"
#include "model/model.h"
#include "text/tokenizer.h"
#include "train/ckpt.h"
#include "train/loader.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void help(FILE *out)
{
    fprintf(out,
            "usage: sigma-generate CKPT -t TOKENIZER [OPTIONS] [-p TEXT]\n"
            "\n"
            "Continues a prompt (--prompt, else standard input; empty: a new document) with\n"
            "the model of a checkpoint (a run directory or one step-N directory) and\n"
            "writes the continuation to standard output.\n"
            "\n"
            "  -t, --tokenizer FILE     the tokenizer the model was trained with\n"
            "  -p, --prompt TEXT        the prompt (else read from standard input)\n"
            "  -n, --max-tokens N       tokens to generate (default 64)\n"
            "      --temperature X      0 = greedy (default); else sample softmax(logits / X)\n"
            "      --top-k K            sample among the K most likely tokens only (default all)\n"
            "      --seed N             of the sampling (default 1)\n"
            "      --ids                write token ids, one per line, instead of text\n"
            "      --keep-going         do not stop at the end-of-text token\n"
            "\n");
    cli_help_end(out);
}

/* The index of the next token: argmax, or a sample from softmax(logits/temp)
 * restricted to the top_k largest. */
static uint32_t pick(const float *logits, int V, double temp, int top_k, uint64_t *rng, double *probs, int *order)
{
    int best = 0;
    for (int i = 1; i < V; i++) best = logits[i] > logits[best] ? i : best;
    if (temp <= 0) return (uint32_t)best;
    int n = V;
    for (int i = 0; i < V; i++) order[i] = i;
    if (top_k > 0 && top_k < V) {   /* partial selection of the top_k largest */
        for (int i = 0; i < top_k; i++) {
            int m = i;
            for (int j = i + 1; j < V; j++) m = logits[order[j]] > logits[order[m]] ? j : m;
            int tmp = order[i]; order[i] = order[m]; order[m] = tmp;
        }
        n = top_k;
    }
    double sum = 0;
    for (int i = 0; i < n; i++) sum += probs[i] = exp((logits[order[i]] - logits[best]) / temp);
    double u = (double)(splitmix64(rng) >> 11) * 0x1.0p-53 * sum;
    for (int i = 0; i < n; i++) {
        if ((u -= probs[i]) < 0) return (uint32_t)order[i];
    }
    return (uint32_t)order[n - 1];
}

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    const char *tok_path = NULL, *prompt = NULL;
    uint64_t max_tokens = 64, seed = 1;
    double temperature = 0;
    int top_k = 0, ids_out = 0, keep_going = 0;
    enum { O_TEMP = 256, O_TOPK, O_SEED, O_IDS, O_KEEP };
    static const struct option longopts[] = {
        {"tokenizer", required_argument, 0, 't'}, {"prompt", required_argument, 0, 'p'},
        {"max-tokens", required_argument, 0, 'n'}, {"temperature", required_argument, 0, O_TEMP},
        {"top-k", required_argument, 0, O_TOPK}, {"seed", required_argument, 0, O_SEED},
        {"ids", no_argument, 0, O_IDS}, {"keep-going", no_argument, 0, O_KEEP}, CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli_getopt(argc, argv, "t:p:n:", longopts, help)) != -1) {
        switch (c) {
        case 't': tok_path = optarg; break;
        case 'p': prompt = optarg; break;
        case 'n': max_tokens = parse_count("--max-tokens", optarg, 0, 1u << 24); break;
        case O_TEMP: temperature = parse_double("--temperature", optarg, 0, 100); break;
        case O_TOPK: top_k = (int)parse_u64("--top-k", optarg, 0, 1u << 30); break;
        case O_SEED: seed = parse_u64("--seed", optarg, 0, UINT64_MAX); break;
        case O_IDS: ids_out = 1; break;
        case O_KEEP: keep_going = 1; break;
        }
    }
    if (optind + 1 != argc) usage_error("expected one checkpoint (a run directory or a step-N directory)");
    if (!tok_path) usage_error("missing -t TOKENIZER");

    Tokenizer *tok = tokenizer_load(tok_path, NULL);
    Model m;
    TokHeader model_tok, th = tokenizer_header(tok);
    int uses_bias = ckpt_load_model(&m, argv[optind], 1, 0, &model_tok);
    tokenizer_match(&model_tok, argv[optind], &th, tok_path);
    int64_t eot = tokenizer_special(tok, TOK_ENDOFTEXT);

    size_t plen = 0;
    char *text = prompt ? xstrdup(prompt) : (isatty(STDIN_FILENO) ? xstrdup("") : read_file("-", (size_t)1 << 30, &plen));
    if (prompt) plen = strlen(prompt);
    else if (plen && text[plen - 1] == '\n') plen--;   /* the newline that echo adds */
    TokIds ids = {0};
    if (eot >= 0) {   /* a new document begins after an end-of-text token, as in training */
        uint32_t e = (uint32_t)eot;
        ids.ids = xmalloc(sizeof e);
        ids.ids[0] = e;
        ids.len = ids.cap = 1;
    }
    tokenizer_encode(tok, &ids, (const uint8_t *)text, plen, 0);
    free(text);

    const int V = m.cfg.vocab_size, T = m.T;
    uint32_t *window = xmalloc((size_t)T * sizeof(uint32_t));
    double *probs = xmalloc((size_t)V * sizeof(double));
    int *order = xmalloc((size_t)V * sizeof(int));
    uint64_t rng = seed;
    BalanceOptions routing = {.kind = uses_bias ? BALANCE_BIAS : BALANCE_NONE};   /* an aux-loss-free run routes with its bias */
    TokBytes out = {0};
    int at_eot = 0, ends_in_newline = 0;
    uint64_t made = 0;
    for (uint64_t i = 0; i < max_tokens; i++) {
        size_t n = ids.len < (size_t)T ? ids.len : (size_t)T;   /* the last T tokens */
        memcpy(window, ids.ids + ids.len - n, n * sizeof(uint32_t));
        model_forward(&m, window, NULL, NULL, NULL, 1, (int)n, &routing);
        uint32_t next = pick(model_logits(&m) + (n - 1) * (size_t)V, V, temperature, top_k, &rng, probs, order);
        if (!keep_going && (int64_t)next == eot) { at_eot = 1; break; }
        made++;
        if (ids.len == ids.cap) ids.ids = xrealloc(ids.ids, (ids.cap = 2 * ids.cap + 16) * sizeof(uint32_t));
        ids.ids[ids.len++] = next;
        if (ids_out) {
            printf("%u\n", next);
        } else {
            out.len = 0;
            tokenizer_decode(tok, &out, &next, 1);
            xfwrite(out.bytes, out.len, stdout, "<stdout>");
            if (out.len) ends_in_newline = out.bytes[out.len - 1] == '\n';
        }
        xfflush(stdout, "<stdout>");
    }
    if (!ids_out && !ends_in_newline) putchar('\n');   /* text ends with a newline, as text files do */
    xfflush(stdout, "<stdout>");
    if (at_eot) info("the model ended the text (end-of-text) after %llu tokens", (unsigned long long)made);
    else info("%llu tokens: the --max-tokens limit", (unsigned long long)made);
    tokbytes_free(&out);
    tokids_free(&ids);
    free(window);
    free(probs);
    free(order);
    model_free(&m);
    tokenizer_free(tok);
    return 0;
}
