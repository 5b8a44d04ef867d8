/* sigma-export: a sigma checkpoint as a Hugging Face model directory
 * (Qwen3MoeForCausalLM), and such a directory back as a sigma checkpoint. */
#include "base/base.h"
#include "base/json.h"
#include "data/tokstream.h"
#include "model/hf.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "train/ckpt.h"

#include <stdlib.h>
#include <string.h>

static void help(FILE *out)
{
    fprintf(out,
            "usage: sigma-export CKPT -o HFDIR [-t TOKENIZER] [--dtype bf16|fp32] [--max-shard-size N] [-f]\n"
            "       sigma-export --import HFDIR -o CKPTDIR [-t TOKENIZER] [-f]\n"
            "\n"
            "Writes the model of a checkpoint (a run directory or one step-N directory) as a\n"
            "Hugging Face directory that AutoModelForCausalLM loads as Qwen3MoeForCausalLM,\n"
            "with tokenizer.json for AutoTokenizer when -t names the model's tokenizer (and\n"
            "the chat template if it has the chat tokens; an sft model stops at <|im_end|>);\n"
            "or reads such a directory (from sigma or elsewhere) into a sigma checkpoint.\n"
            "\n"
            "  -o, --out DIR            the directory to write (refused if it exists)\n"
            "  -t, --tokenizer FILE     the model's tokenizer (its fingerprint must match)\n"
            "      --dtype D            bf16 (default) or fp32\n"
            "      --max-shard-size N   bytes per safetensors file (default 5G; k, M, G allowed)\n"
            "      --import HFDIR       read a Hugging Face directory instead\n"
            "  -f, --force              replace DIR if it exists\n"
            "\n");
    cli_help_end(out);
}

static Tokenizer *load_checked_tokenizer(const char *path, const TokHeader *model_tok, const char *what)
{
    Tokenizer *tok = tokenizer_load(path, NULL);
    TokHeader th = tokenizer_header(tok);
    tokenizer_match(model_tok, what, &th, path);
    return tok;
}

/* A model fine-tuned on chat: its config.json has sigma-sft's "sft"
 * section, whose template must be the one chat.c writes. */
static int chat_model(const char *dir)
{
    Config c;
    TokHeader th;
    cJSON *cfg = ckpt_read_config(dir, &c, &th);
    const cJSON *sft = cJSON_GetObjectItemCaseSensitive(cfg, "sft");
    char *what = xasprintf("%s/config.json: sft", dir);
    if (sft && !cJSON_IsObject(sft)) die("%s: not a JSON object", what);
    const char *template = sft ? json_opt_str(sft, "template", "chatml", what) : "chatml";
    if (strcmp(template, "chatml")) die("%s: template \"%s\"; this sigma knows ChatML (\"chatml\") only", what, template);
    free(what);
    int chat = sft != NULL;
    cJSON_Delete(cfg);
    return chat;
}

static void import_dir(const char *hf, const char *out, const char *tok_path, int force)
{
    Config c;
    hf_config_read(&c, hf);
    Model m;
    model_init(&m, &c, 1, 1);
    hf_weights_read(&m, hf);
    TokHeader th = {.vocab_size = (uint32_t)c.vocab_size};   /* no tokenizer given: unknown */
    if (tok_path) {
        Tokenizer *tok = tokenizer_load(tok_path, NULL);
        th = tokenizer_header(tok);
        if (th.vocab_size > (uint32_t)c.vocab_size)
            die("%s: vocabulary %u is larger than the model's %d", tok_path, th.vocab_size, c.vocab_size);
        tokenizer_free(tok);
    }
    AtomicDir ad;
    atomic_dir_begin(&ad, out, force);
    cJSON *sections = json_obj();
    json_add_str(sections, "imported_from", hf);
    json_add_str(sections, "created_by", "sigma-export " SIGMA_VERSION);
    ckpt_write_config(&ad, &c, &th, sections);
    ckpt_write_tensors(&ad, "model.safetensors", m.tensors, m.n_tensors, m.params);
    atomic_dir_commit(&ad);
    model_free(&m);
}

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    const char *out = NULL, *tok_path = NULL, *import = NULL;
    int force = 0, bf16 = 1;
    uint64_t max_shard = 5000000000ull;
    enum { O_DTYPE = 256, O_MAX_SHARD, O_IMPORT };
    static const struct option longopts[] = {
        {"out", required_argument, 0, 'o'}, {"tokenizer", required_argument, 0, 't'},
        {"dtype", required_argument, 0, O_DTYPE}, {"max-shard-size", required_argument, 0, O_MAX_SHARD},
        {"import", required_argument, 0, O_IMPORT}, {"force", no_argument, 0, 'f'}, CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli_getopt(argc, argv, "o:t:f", longopts, help)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 't': tok_path = optarg; break;
        case O_DTYPE:
            if (!strcmp(optarg, "bf16")) bf16 = 1;
            else if (!strcmp(optarg, "fp32")) bf16 = 0;
            else usage_error("--dtype: expected bf16 or fp32, got '%s'", optarg);
            break;
        case O_MAX_SHARD: max_shard = parse_count("--max-shard-size", optarg, 1, UINT64_MAX); break;
        case O_IMPORT: import = optarg; break;
        case 'f': force = 1; break;
        }
    }
    if (!out) usage_error("missing -o DIR");
    if (import) {
        if (optind != argc) usage_error("--import takes no checkpoint argument");
        import_dir(import, out, tok_path, force);
        return 0;
    }
    if (optind + 1 != argc) usage_error("expected one checkpoint (a run directory or a step-N directory)");
    /* one checkpoint for the weights and the config, though a run's latest may move on meanwhile */
    char *dir = ckpt_resolve(argv[optind]);
    if (!dir) die("%s: not a checkpoint (no config.json) nor a run directory (no latest)", argv[optind]);
    Model m;
    TokHeader model_tok;
    if (ckpt_load_model(&m, dir, 1, 1, &model_tok))
        warn("%s was trained with the aux-loss-free routing bias, which Qwen3-MoE has no place for: transformers will "
             "choose its experts without it, and its outputs will differ from sigma's", argv[optind]);
    HfExportOptions o = {.bf16 = bf16, .max_shard = max_shard, .force = force, .chat = chat_model(dir)};
    Tokenizer *tok = tok_path ? load_checked_tokenizer(tok_path, &model_tok, argv[optind]) : NULL;
    if (tok && o.chat) chat_check_tokenizer(tok, tok_path);
    hf_export(&m, tok, out, &o);
    if (tok) tokenizer_free(tok);
    model_free(&m);
    free(dir);
    return 0;
}
