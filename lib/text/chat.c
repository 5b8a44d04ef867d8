/* ChatML; see chat.h. */
#include "text/chat.h"
#include "base/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const role_names[N_ROLES] = {"system", "user", "assistant"};

int chat_role_parse(const char *name, ChatRole *role)
{
    for (int i = 0; i < N_ROLES; i++)
        if (!strcmp(name, role_names[i])) { *role = (ChatRole)i; return 0; }
    return -1;
}

const char *chat_role_name(ChatRole role) { return role_names[role]; }

const char *const chat_template_jinja =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

int chat_tokenizer(const Tokenizer *tok)
{
    return tokenizer_special(tok, CHAT_START) >= 0 && tokenizer_special(tok, CHAT_END) >= 0;
}

void chat_check_tokenizer(const Tokenizer *tok, const char *what)
{
    if (!chat_tokenizer(tok))
        die("%s has no %s and %s tokens: train one with them (sigma-tokenize train --chat), or grow the model's "
            "vocabulary by them (sigma-sft --add-chat-tokens)", what, CHAT_START, CHAT_END);
}

Tokenizer *chat_add_tokens(const Tokenizer *tok, const char *what)
{
    if (tokenizer_special(tok, CHAT_START) >= 0 || tokenizer_special(tok, CHAT_END) >= 0)
        die("%s already has the chat tokens %s and %s: no need to add them", what, CHAT_START, CHAT_END);
    size_t n = tokenizer_n_ranks(tok), ns = tokenizer_n_specials(tok);
    if (ns + 2 > TOK_MAX_SPECIALS) die("%s: no room for two more special tokens (%zu of %d)", what, ns, TOK_MAX_SPECIALS);
    uint64_t *off = xmalloc((n + 1) * sizeof *off), total = 0;
    for (size_t r = 0; r < n; r++) {
        size_t len;
        if (!tokenizer_token(tok, (uint32_t)r, &len)) BUG("rank %zu of %s has no bytes", r, what);
        off[r] = total;
        total += len;
    }
    off[n] = total;
    uint8_t *bytes = xmalloc(total ? total : 1);
    for (size_t r = 0; r < n; r++) {
        size_t len;
        const uint8_t *b = tokenizer_token(tok, (uint32_t)r, &len);
        memcpy(bytes + off[r], b, len);
    }
    const char *names[TOK_MAX_SPECIALS];
    uint32_t ids[TOK_MAX_SPECIALS];
    for (size_t i = 0; i < ns; i++) { names[i] = tokenizer_special_name(tok, i); ids[i] = tokenizer_special_id(tok, i); }
    uint32_t next = tokenizer_n_vocab(tok);
    names[ns] = CHAT_START; ids[ns] = next;
    names[ns + 1] = CHAT_END; ids[ns + 1] = next + 1;
    Tokenizer *grown = tokenizer_build(what, tokenizer_pattern(tok), bytes, off, n, names, ids, ns + 2);
    free(bytes);
    free(off);
    return grown;
}

static void push(TokIds *ids, uint8_t **mask, size_t *mask_cap, uint32_t id, int learn)
{
    if (ids->len == ids->cap) ids->ids = xrealloc(ids->ids, (ids->cap = 2 * ids->cap + 64) * sizeof(uint32_t));
    if (mask && ids->len >= *mask_cap) *mask = xrealloc(*mask, *mask_cap = 2 * ids->cap + 64);
    if (mask) (*mask)[ids->len] = (uint8_t)learn;
    ids->ids[ids->len++] = id;
}

/* The text between two specials, "ROLE\nCONTENT", encoded whole (as
 * transformers does); a token learns when it reaches into the content. */
static void push_text(const Tokenizer *tok, const char *text, size_t len, size_t learn_from, TokIds *ids, uint8_t **mask,
                      size_t *mask_cap)
{
    TokIds seg = {0};
    TokBytes bytes = {0};
    tokenizer_encode(tok, &seg, (const uint8_t *)text, len, 0);
    size_t at = 0;
    for (size_t i = 0; i < seg.len; i++) {
        bytes.len = 0;
        tokenizer_decode(tok, &bytes, &seg.ids[i], 1);
        at += bytes.len;
        push(ids, mask, mask_cap, seg.ids[i], at > learn_from);
    }
    tokids_free(&seg);
    tokbytes_free(&bytes);
}

void chat_encode(const Tokenizer *tok, const ChatMessage *messages, size_t n, int add_generation_prompt, int train_all,
                 TokIds *ids, uint8_t **mask, size_t *mask_cap)
{
    uint32_t start = (uint32_t)tokenizer_special(tok, CHAT_START), end = (uint32_t)tokenizer_special(tok, CHAT_END);
    for (size_t i = 0; i < n; i++) {
        int assistant = messages[i].role == ROLE_ASSISTANT;
        const char *role = role_names[messages[i].role];
        char *text = xasprintf("%s\n%s", role, messages[i].content);
        size_t head = strlen(role) + 1, len = strlen(text);
        push(ids, mask, mask_cap, start, train_all);
        push_text(tok, text, len, train_all ? 0 : assistant ? head : (size_t)-1, ids, mask, mask_cap);
        push(ids, mask, mask_cap, end, train_all || assistant);
        push_text(tok, "\n", 1, train_all ? 0 : (size_t)-1, ids, mask, mask_cap);
        free(text);
    }
    if (add_generation_prompt) {
        push(ids, mask, mask_cap, start, train_all);
        push_text(tok, "assistant\n", 10, train_all ? 0 : (size_t)-1, ids, mask, mask_cap);
    }
}

size_t chat_messages_from_json(const cJSON *arr, ChatMessage **m, size_t *cap, char *why, size_t why_len)
{
    size_t n = 0;
    if (!cJSON_IsArray(arr)) {
        snprintf(why, why_len, "\"messages\" is not an array");
        return 0;
    }
    for (const cJSON *e = arr->child; e; e = e->next, n++) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role"), *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (n == *cap) *m = xrealloc(*m, (*cap = 2 * *cap + 8) * sizeof **m);
        if (!cJSON_IsString(role)) {
            snprintf(why, why_len, "message %zu has no string \"role\"", n + 1);
            return 0;
        }
        if (chat_role_parse(role->valuestring, &(*m)[n].role)) {
            snprintf(why, why_len, "message %zu: unknown role \"%.40s\" (system, user or assistant)", n + 1, role->valuestring);
            return 0;
        }
        if (!cJSON_IsString(content)) {
            snprintf(why, why_len, "message %zu: \"content\" is not a string", n + 1);
            return 0;
        }
        (*m)[n].content = content->valuestring;
    }
    if (!n) snprintf(why, why_len, "no messages");
    return n;
}
