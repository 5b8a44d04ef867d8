/* Hugging Face model directories: export a sigma model as Qwen3-MoE
 * (config.json, safetensors in fp32 or bf16, sharded with an index above a
 * size, generation_config.json, and tokenizer.json from a sigma tokenizer)
 * and import such a directory back. Our tensor names are Hugging Face's,
 * so the weights need only a dtype. */
#include "model/hf.h"
#include "base/base.h"
#include "base/json.h"
#include "text/chat.h"
#include "text/pretok.h"

#include <dirent.h>
#include <math.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

/* ---- bf16 ------------------------------------------------------------------ */

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);   /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1);   /* round to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

/* ---- config ------------------------------------------------------------------- */

/* The tokens that begin and end a text; -1 where the export has no tokenizer. */
typedef struct {
    int64_t bos;           /* <|endoftext|>, after which a document begins */
    int64_t eos[2];        /* what ends generation, first the one a reply ends with */
    int n_eos;
    const char *eos_name;  /* eos[0]'s */
} EndTokens;

/* A document ends with <|endoftext|>; a chat model's reply with <|im_end|>,
 * which comes first, the one transformers' tokenizer calls eos_token (as
 * Qwen's instruct models have it). */
static EndTokens end_tokens(const Tokenizer *tok, int chat)
{
    EndTokens e = {.bos = -1};
    if (!tok) return e;
    e.bos = tokenizer_special(tok, TOK_ENDOFTEXT);
    if (chat) {
        chat_check_tokenizer(tok, "the chat model's tokenizer");
        e.eos[e.n_eos++] = tokenizer_special(tok, CHAT_END);
        e.eos_name = CHAT_END;
    }
    if (e.bos >= 0) e.eos[e.n_eos++] = e.bos;
    if (!e.eos_name && e.n_eos) e.eos_name = TOK_ENDOFTEXT;
    return e;
}

static cJSON *hf_config(const Config *c, int k, int bf16, const EndTokens *e)
{
    cJSON *j = json_obj(), *arch = json_arr();
    json_push(arch, cJSON_CreateString("Qwen3MoeForCausalLM"));
    json_add(j, "architectures", arch);
    json_add_str(j, "model_type", "qwen3_moe");
    json_add_u64(j, "vocab_size", (uint64_t)c->vocab_size);
    json_add_u64(j, "hidden_size", (uint64_t)c->d_model);
    json_add_u64(j, "num_hidden_layers", (uint64_t)c->n_layers);
    json_add_u64(j, "num_attention_heads", (uint64_t)c->n_heads);
    json_add_u64(j, "num_key_value_heads", (uint64_t)c->n_kv_heads);
    json_add_u64(j, "head_dim", (uint64_t)c->head_dim);
    json_add_u64(j, "num_experts", (uint64_t)c->n_experts);
    json_add_u64(j, "num_experts_per_tok", (uint64_t)k);
    json_add_u64(j, "moe_intermediate_size", (uint64_t)c->d_expert);
    json_add_u64(j, "intermediate_size", (uint64_t)c->d_expert);   /* no dense layer uses it */
    json_add_bool(j, "norm_topk_prob", 0);
    json_add_u64(j, "decoder_sparse_step", 1);
    json_add(j, "mlp_only_layers", json_arr());
    json_add_num(j, "rope_theta", c->rope_theta);
    json_add_num(j, "rms_norm_eps", c->norm_eps);
    json_add_bool(j, "tie_word_embeddings", c->tie_embeddings);
    json_add_u64(j, "max_position_embeddings", (uint64_t)c->max_seq_len);
    json_add_bool(j, "attention_bias", 0);
    json_add_num(j, "attention_dropout", 0);
    json_add_str(j, "hidden_act", "silu");
    json_add_bool(j, "use_sliding_window", 0);
    json_add_bool(j, "output_router_logits", 0);
    json_add_num(j, "router_aux_loss_coef", 0.001);
    json_add_str(j, "torch_dtype", bf16 ? "bfloat16" : "float32");
    if (e->bos >= 0) json_add_u64(j, "bos_token_id", (uint64_t)e->bos);
    if (e->n_eos) json_add_u64(j, "eos_token_id", (uint64_t)e->eos[0]);
    return j;
}

static int final_topk(const Config *c, const char *what)
{
    for (int l = 1; l < c->n_layers; l++)
        if (c->top_k[l] != c->top_k[0])
            die("%s: layers 0 and %d use top-%d and top-%d; Qwen3-MoE has one num_experts_per_tok for every layer", what, l,
                c->top_k[0], c->top_k[l]);
    return c->top_k[0];
}

/* ---- safetensors shards ------------------------------------------------------------ */

static size_t tensor_bytes(const ParamTensor *t, int bf16) { return t->numel * (bf16 ? 2 : 4); }

/* Writes tensors [first, last) of the model into path. */
static void write_shard(const char *path, const Model *m, int first, int last, int bf16)
{
    cJSON *h = json_obj(), *meta = json_obj();
    json_add_str(meta, "format", "pt");
    json_add(h, "__metadata__", meta);
    uint64_t off = 0;
    for (int i = first; i < last; i++) {
        const ParamTensor *t = &m->tensors[i];
        cJSON *e = json_obj(), *shape = json_arr(), *offs = json_arr();
        json_add_str(e, "dtype", bf16 ? "BF16" : "F32");
        for (int d = 0; d < t->ndim; d++) json_push(shape, cJSON_CreateNumber(t->shape[d]));
        json_add(e, "shape", shape);
        json_push(offs, cJSON_CreateNumber((double)off));
        off += tensor_bytes(t, bf16);
        json_push(offs, cJSON_CreateNumber((double)off));
        json_add(e, "data_offsets", offs);
        json_add(h, t->name, e);
    }
    char *js = json_print(h, 0);
    size_t len = strlen(js), padded = (len + 7) / 8 * 8;
    uint64_t n64 = padded;
    FILE *f = xfopen(path, "wb");
    xfwrite(&n64, 8, f, path);
    xfwrite(js, len, f, path);
    for (size_t i = len; i < padded; i++) xfwrite(" ", 1, f, path);
    for (int i = first; i < last; i++) {
        const ParamTensor *t = &m->tensors[i];
        const float *src = m->params + t->offset;
        if (!bf16) {
            xfwrite(src, t->numel * 4, f, path);
            continue;
        }
        enum { CHUNK = 1 << 16 };
        uint16_t buf[CHUNK];
        for (size_t a = 0; a < t->numel; a += CHUNK) {
            size_t n = t->numel - a < CHUNK ? t->numel - a : CHUNK;
            for (size_t b = 0; b < n; b++) buf[b] = to_bf16(src[a + b]);
            xfwrite(buf, n * 2, f, path);
        }
    }
    xfclose(f, path);
    cJSON_free(js);
    cJSON_Delete(h);
}

static void write_weights(const AtomicDir *ad, const Model *m, int bf16, uint64_t max_shard)
{
    /* shards: consecutive tensors up to max_shard bytes each (a larger tensor alone) */
    int *start = xcalloc((size_t)m->n_tensors + 1, sizeof(int));
    int n_shards = 0;
    uint64_t size = 0, total = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        uint64_t b = tensor_bytes(&m->tensors[i], bf16);
        if (i == 0 || (size + b > max_shard && size > 0)) { start[n_shards++] = i; size = 0; }
        size += b;
        total += b;
    }
    start[n_shards] = m->n_tensors;
    if (n_shards == 1) {
        char *path = atomic_dir_file(ad, "model.safetensors");
        write_shard(path, m, 0, m->n_tensors, bf16);
        free(path);
        free(start);
        return;
    }
    cJSON *index = json_obj(), *meta = json_obj(), *map = json_obj();
    json_add_u64(meta, "total_size", total);
    json_add(index, "metadata", meta);
    for (int s = 0; s < n_shards; s++) {
        char *name = xasprintf("model-%05d-of-%05d.safetensors", s + 1, n_shards);
        char *path = atomic_dir_file(ad, name);
        write_shard(path, m, start[s], start[s + 1], bf16);
        for (int i = start[s]; i < start[s + 1]; i++) json_add_str(map, m->tensors[i].name, name);
        free(path);
        free(name);
    }
    json_add(index, "weight_map", map);
    char *path = atomic_dir_file(ad, "model.safetensors.index.json");
    json_write_file_atomic(path, index);
    free(path);
    cJSON_Delete(index);
    free(start);
}

/* ---- tokenizer.json ---------------------------------------------------------------------- */

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others
 * for code points from 256 up, as UTF-8 into out (returns the length). */
static int byte_char(uint8_t b, char out[4])
{
    int cp;
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE)) {
        cp = b;
    } else {
        int n = 0;   /* the position of b among the bytes that are remapped */
        for (int x = 0; x < b; x++)
            if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE))) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

static char *byte_string(const uint8_t *bytes, size_t len)
{
    char *s = xmalloc(len * 2 + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += (size_t)byte_char(bytes[i], s + n);
    s[n] = 0;
    return s;
}

/* The merge that made token `rank`: BPE of its bytes with lower ranks only
 * ends in exactly two parts (tiktoken's ranks are merge order). */
static int merge_of(const Tokenizer *tok, uint32_t rank, size_t *split)
{
    size_t len;
    const uint8_t *b = tokenizer_token(tok, rank, &len);
    enum { MAX_PARTS = 4096 };
    size_t cut[MAX_PARTS + 1], n = len;   /* part i is b[cut[i] .. cut[i+1]) */
    if (len < 2 || len > MAX_PARTS) return 0;
    for (size_t i = 0; i <= len; i++) cut[i] = i;
    while (n > 2) {
        int64_t best = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            int64_t r = tokenizer_rank(tok, b + cut[i], cut[i + 2] - cut[i]);
            if (r >= 0 && (uint32_t)r < rank && (best < 0 || r < best)) { best = r; at = i; }
        }
        if (best < 0) return 0;
        memmove(cut + at + 1, cut + at + 2, (n - at - 1) * sizeof(size_t));
        n--;
    }
    *split = cut[1];
    return 1;
}

static void write_tokenizer(const AtomicDir *ad, const Tokenizer *tok, const EndTokens *e)
{
    cJSON *j = json_obj(), *added = json_arr();
    json_add_str(j, "version", "1.0");
    json_add(j, "truncation", cJSON_CreateNull());
    json_add(j, "padding", cJSON_CreateNull());
    /* every special (<|endoftext|>, the chat tokens) as an added token: the
     * tokenizer splits them out of a text and encodes them by id, as
     * sigma's chat_encode does the chat template's */
    for (size_t i = 0; i < tokenizer_n_specials(tok); i++) {
        cJSON *a = json_obj();
        json_add_u64(a, "id", tokenizer_special_id(tok, i));
        json_add_str(a, "content", tokenizer_special_name(tok, i));
        json_add_bool(a, "single_word", 0);
        json_add_bool(a, "lstrip", 0);
        json_add_bool(a, "rstrip", 0);
        json_add_bool(a, "normalized", 0);
        json_add_bool(a, "special", 1);
        json_push(added, a);
    }
    json_add(j, "added_tokens", added);
    json_add(j, "normalizer", cJSON_CreateNull());
    cJSON *pre = json_obj(), *seq = json_arr(), *split = json_obj(), *pat = json_obj(), *bl = json_obj();
    json_add_str(pre, "type", "Sequence");
    json_add_str(split, "type", "Split");
    json_add_str(pat, "Regex", pretok_regex(tokenizer_pattern(tok)));
    json_add(split, "pattern", pat);
    json_add_str(split, "behavior", "Isolated");
    json_add_bool(split, "invert", 0);
    json_push(seq, split);
    json_add_str(bl, "type", "ByteLevel");
    json_add_bool(bl, "add_prefix_space", 0);
    json_add_bool(bl, "trim_offsets", 1);
    json_add_bool(bl, "use_regex", 0);
    json_push(seq, bl);
    json_add(pre, "pretokenizers", seq);
    json_add(j, "pre_tokenizer", pre);
    json_add(j, "post_processor", cJSON_CreateNull());
    cJSON *dec = json_obj();
    json_add_str(dec, "type", "ByteLevel");
    json_add_bool(dec, "add_prefix_space", 1);
    json_add_bool(dec, "trim_offsets", 1);
    json_add_bool(dec, "use_regex", 1);
    json_add(j, "decoder", dec);

    cJSON *model = json_obj(), *vocab = json_obj(), *merges = json_arr();
    json_add_str(model, "type", "BPE");
    json_add(model, "dropout", cJSON_CreateNull());
    json_add(model, "unk_token", cJSON_CreateNull());
    json_add(model, "continuing_subword_prefix", cJSON_CreateNull());
    json_add(model, "end_of_word_suffix", cJSON_CreateNull());
    json_add_bool(model, "fuse_unk", 0);
    json_add_bool(model, "byte_fallback", 0);
    json_add_bool(model, "ignore_merges", 1);   /* a piece that is a token is that token, as in tiktoken */
    for (uint32_t r = 0; r < tokenizer_n_ranks(tok); r++) {
        size_t len, cut;
        const uint8_t *b = tokenizer_token(tok, r, &len);
        char *s = byte_string(b, len);
        json_add_u64(vocab, s, r);
        if (len >= 2) {
            if (!merge_of(tok, r, &cut)) die("tokenizer: token %u has no merge from lower ranks", r);
            char *l = byte_string(b, cut), *rr = byte_string(b + cut, len - cut);
            cJSON *pair = json_arr();
            json_push(pair, cJSON_CreateString(l));
            json_push(pair, cJSON_CreateString(rr));
            json_push(merges, pair);
            free(l);
            free(rr);
        }
        free(s);
    }
    json_add(model, "vocab", vocab);
    json_add(model, "merges", merges);
    json_add(j, "model", model);
    char *path = atomic_dir_file(ad, "tokenizer.json");
    json_write_file_atomic(path, j);
    free(path);
    cJSON_Delete(j);

    cJSON *tc = json_obj();
    json_add_str(tc, "tokenizer_class", "PreTrainedTokenizerFast");
    json_add_u64(tc, "model_max_length", 1u << 20);
    if (e->n_eos) json_add_str(tc, "eos_token", e->eos_name);
    if (e->bos >= 0) {
        json_add_str(tc, "bos_token", TOK_ENDOFTEXT);
        json_add_str(tc, "pad_token", TOK_ENDOFTEXT);
    }
    json_add_bool(tc, "clean_up_tokenization_spaces", 0);
    /* apply_chat_template renders it, then encodes the text without adding
     * specials: the ids of chat_encode */
    if (chat_tokenizer(tok)) json_add_str(tc, "chat_template", chat_template_jinja);
    path = atomic_dir_file(ad, "tokenizer_config.json");
    json_write_file_atomic(path, tc);
    free(path);
    cJSON_Delete(tc);
}

void hf_export(const Model *m, const Tokenizer *tok, const char *out, const HfExportOptions *o)
{
    int k = final_topk(&m->cfg, out);
    EndTokens e = end_tokens(tok, o->chat);
    AtomicDir ad;
    atomic_dir_begin(&ad, out, o->force);
    cJSON *cfg = hf_config(&m->cfg, k, o->bf16, &e);
    char *path = atomic_dir_file(&ad, "config.json");
    json_write_file_atomic(path, cfg);
    free(path);
    cJSON_Delete(cfg);
    cJSON *gen = json_obj();
    if (e.bos >= 0) json_add_u64(gen, "bos_token_id", (uint64_t)e.bos);
    if (e.n_eos == 1) json_add_u64(gen, "eos_token_id", (uint64_t)e.eos[0]);
    if (e.n_eos > 1) {   /* generate stops at any of them */
        cJSON *ids = json_arr();
        for (int i = 0; i < e.n_eos; i++) json_push(ids, cJSON_CreateNumber((double)e.eos[i]));
        json_add(gen, "eos_token_id", ids);
    }
    json_add_bool(gen, "do_sample", 0);
    path = atomic_dir_file(&ad, "generation_config.json");
    json_write_file_atomic(path, gen);
    free(path);
    cJSON_Delete(gen);
    write_weights(&ad, m, o->bf16, o->max_shard);
    if (tok) write_tokenizer(&ad, tok, &e);
    atomic_dir_commit(&ad);
}

/* ---- import ---------------------------------------------------------------------------- */

void hf_config_read(Config *c, const char *dir)
{
    char *path = dir_member(dir, "config.json", dir);
    cJSON *j = json_parse_file(path);
    const char *type = json_opt_str(j, "model_type", "", path);
    if (strcmp(type, "qwen3_moe")) die("%s: model_type \"%s\", expected \"qwen3_moe\"", path, type);
    if (json_opt_bool(j, "norm_topk_prob", 0, path))
        die("%s: norm_topk_prob is true; sigma's model combines experts with their full-softmax probabilities", path);
    if (json_opt_u64(j, "decoder_sparse_step", 1, path) != 1) die("%s: decoder_sparse_step must be 1 (every layer MoE)", path);
    const cJSON *mlp_only = cJSON_GetObjectItemCaseSensitive(j, "mlp_only_layers");
    if (mlp_only && cJSON_GetArraySize(mlp_only) > 0) die("%s: mlp_only_layers must be empty (every layer MoE)", path);
    if (json_opt_bool(j, "attention_bias", 0, path)) die("%s: attention_bias is true; sigma's model has no biases", path);
    memset(c, 0, sizeof *c);
    c->vocab_size = json_req_int(j, "vocab_size", path);
    c->d_model = json_req_int(j, "hidden_size", path);
    c->n_layers = json_req_int(j, "num_hidden_layers", path);
    c->n_heads = json_req_int(j, "num_attention_heads", path);
    c->n_kv_heads = json_opt_int(j, "num_key_value_heads", c->n_heads, path);
    c->head_dim = json_opt_int(j, "head_dim", c->n_heads ? c->d_model / c->n_heads : 0, path);
    c->n_experts = json_req_int(j, "num_experts", path);
    c->d_expert = json_req_int(j, "moe_intermediate_size", path);
    int k = json_req_int(j, "num_experts_per_tok", path);
    if (c->n_layers < 1 || c->n_layers > MODEL_MAX_LAYERS) die("%s: num_hidden_layers %d is out of range", path, c->n_layers);
    for (int l = 0; l < c->n_layers; l++) c->top_k[l] = k;
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(j, "rope_parameters");   /* transformers 5 */
    c->rope_theta = (float)json_opt_num(rp ? rp : j, "rope_theta", 10000.0, path);
    c->norm_eps = (float)json_opt_num(j, "rms_norm_eps", 1e-6, path);
    c->tie_embeddings = json_opt_bool(j, "tie_word_embeddings", 0, path);
    c->max_seq_len = json_opt_int(j, "max_position_embeddings", 2048, path);
    config_validate(c, path);
    cJSON_Delete(j);
    /* the size the config describes against the weights' files, before
     * anything is allocated for it: at least 2 bytes (bf16) a parameter */
    uint64_t total, active, have = 0;
    config_count_params(c, &total, &active);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        struct stat st;
        char *f = xasprintf("%s/%s", dir, e->d_name);
        if (n > 12 && !strcmp(e->d_name + n - 12, ".safetensors") && stat(f, &st) == 0 && S_ISREG(st.st_mode)) have += (uint64_t)st.st_size;
        free(f);
    }
    if (d) closedir(d);
    if (have < 2 * total)
        die("%s: the model it describes has %llu parameters; the safetensors files in %s hold %llu bytes, too few", path,
            (unsigned long long)total, dir, (unsigned long long)have);
    free(path);
}

/* The weights through sigma's one safetensors reader (st_open), F32 or
 * BF16; the files that the index names are opened once each, and every
 * name must be a plain file inside DIR. */
void hf_weights_read(Model *m, const char *dir)
{
    char *index = xasprintf("%s/model.safetensors.index.json", dir);
    cJSON *map = NULL, *idx = NULL;
    if (path_exists(index)) {
        free(index);
        index = dir_member(dir, "model.safetensors.index.json", dir);
        idx = json_parse_file(index);
        map = (cJSON *)json_req(idx, "weight_map", index);
        if (!cJSON_IsObject(map)) die("%s: weight_map must be a JSON object", index);
    }
    enum { MAX_FILES = 4096 };
    StFile *files = xcalloc(MAX_FILES, sizeof(StFile));
    int n_files = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        const char *name = "model.safetensors";
        if (map) {
            const cJSON *file = cJSON_GetObjectItemCaseSensitive(map, t->name);
            if (!file) die("%s: tensor %s is missing from weight_map", index, t->name);
            if (!cJSON_IsString(file)) die("%s: weight_map: tensor %s: the file must be a string", index, t->name);
            name = file->valuestring;
        }
        char *what = xasprintf("%s: weight_map: tensor %s", map ? index : dir, t->name);
        char *path = dir_member(dir, name, what);
        free(what);
        int f = 0;
        while (f < n_files && strcmp(files[f].path, path)) f++;
        if (f == n_files) {
            if (n_files == MAX_FILES) die("%s: the weights are in more than %d files", dir, MAX_FILES);
            st_open(&files[n_files++], path);
        }
        const StTensor *e = st_find(&files[f], t->name);
        if (!e) die("%s: tensor %s is missing", path, t->name);
        st_read(&files[f], e, t, 1, m->params + t->offset);
        free(path);
    }
    for (int f = 0; f < n_files; f++) st_close(&files[f]);
    free(files);
    cJSON_Delete(idx);
    free(index);
}
