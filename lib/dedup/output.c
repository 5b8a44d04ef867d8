/* Writing kept records, removed records and the summary. */
#include "dedup/output.h"
#include "base/base.h"

#include <string.h>

void dd_write_kept(FILE *f, const char *name, const DdCorpus *c, const DdResult *r)
{
    int pending = 0;
    for (size_t i = 0; i < c->n; i++)
        if (r->verdict[i] == DD_KEEP) dd_write_record(f, c, i, &pending);
    xfflush(f, name);
}

/* A JSON string of raw bytes: quotes, backslashes and control characters
 * escaped, everything else (UTF-8 or not) as it is. */
static void put_json_string(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
        fwrite(s + run, 1, i - run, f);
        run = i + 1;
        switch (ch) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\t': fputs("\\t", f); break;
        case '\r': fputs("\\r", f); break;
        default: fprintf(f, "\\u%04x", ch); break;
        }
    }
    fwrite(s + run, 1, n - run, f);
    fputc('"', f);
}

void dd_write_removed_line(FILE *f, DdFormat format, uint64_t index, int verdict, uint64_t dup_of, int status,
                           const char *raw, size_t n, const char *file)
{
    fprintf(f, "{\"index\": %llu, ", (unsigned long long)index);
    if (verdict == DD_SKIPPED) {
        fputs("\"reason\": \"bad\", \"error\": ", f);
        const char *m = dd_status_message((DdStatus)status);
        put_json_string(f, m, strlen(m));
    } else
        fprintf(f, "\"duplicate_of\": %llu, \"reason\": \"%s\"", (unsigned long long)dup_of,
                verdict == DD_EXACT ? "exact" : "near");
    if (format == DD_FILES) {
        fputs(", \"file\": ", f);
        put_json_string(f, file, strlen(file));
    } else if (format == DD_JSONL && verdict != DD_SKIPPED) {
        fputs(", \"record\": ", f);
        /* Valid JSON already; a trailing CR would end up inside. */
        while (n > 0 && (raw[n - 1] == '\r' || raw[n - 1] == ' ' || raw[n - 1] == '\t')) n--;
        fwrite(raw, 1, n, f);
    } else {
        fputs(", \"text\": ", f);
        put_json_string(f, raw, n);
    }
    fputs("}\n", f);
}

void dd_write_removed(FILE *f, const char *name, const DdCorpus *c, const DdResult *r)
{
    for (size_t i = 0; i < c->n; i++) {
        if (r->verdict[i] == DD_KEEP) continue;
        size_t n;
        const char *raw = dd_record_raw(c, i, &n);
        dd_write_removed_line(f, c->format, i, r->verdict[i], r->dup_of[i], r->status[i], raw, n,
                              c->src[c->rec[i].src].name);
    }
    xfflush(f, name);
}

void dd_stats_head(cJSON *s, int format, int norm, int exact, int near)
{
    static const char *formats[] = {"jsonl", "lines", "nul", "files"};
    json_add_str(s, "format", formats[format]);
    json_add_str(s, "normalize", norm == DD_NORM_DATATROVE ? "datatrove" : "none");
    json_add_str(s, "mode", exact && near ? "both" : exact ? "exact" : "near");
}

cJSON *dd_stats_minhash(uint64_t ngram, uint64_t bands, uint64_t rows, uint64_t seed)
{
    cJSON *p = json_obj();
    json_add_u64(p, "ngram", ngram);
    json_add_u64(p, "bands", bands);
    json_add_u64(p, "rows", rows);
    json_add_u64(p, "seed", seed);
    return p;
}

cJSON *dd_stats_json(const DdCorpus *c, const DdResult *r, const DdOptions *o, double seconds, int threads)
{
    cJSON *s = json_obj();
    dd_stats_head(s, c->format, o->norm, o->exact, o->near);
    json_add_u64(s, "documents_in", r->n);
    json_add_u64(s, "documents_out", r->kept);
    json_add_u64(s, "exact_removed", r->exact_removed);
    json_add_u64(s, "near_removed", r->near_removed);
    json_add_u64(s, "bad_skipped", r->bad);
    json_add_u64(s, "too_short_for_minhash", o->near ? r->unsigned_docs : 0);
    json_add_u64(s, "candidate_pairs", r->candidate_pairs);
    json_add_u64(s, "joined_pairs", r->verified_pairs);
    json_add_u64(s, "bytes_in", r->bytes_in);
    json_add_u64(s, "bytes_out", r->bytes_out);
    json_add_num(s, "seconds", seconds);
    json_add_num(s, "mb_per_s", seconds > 0 ? (double)r->bytes_in / 1e6 / seconds : 0);
    json_add_u64(s, "threads", (uint64_t)threads);
    cJSON *p = dd_stats_minhash((uint64_t)o->ngram, (uint64_t)o->bands, (uint64_t)o->rows, o->seed);
    json_add_num(p, "verify", o->verify);
    json_add(s, "minhash", p);
    return s;
}
