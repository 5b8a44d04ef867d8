/* JSON for configs, manifests and JSON Lines, on cJSON.
 *
 * Why cJSON: on 100 MB of JSON Lines (bench/jsonl.c) it parsed 404 MB/s
 * where jansson did 64 and libjq's jv 94, it passes invalid UTF-8 through
 * as bytes (the dedup and tokenize tools must not drop such documents), and
 * it is one small well-kept Debian library. Its one gap: strings are
 * NUL-terminated, so a JSON "\u0000" escape would cut a string short;
 * json_has_nul_escape() lets readers refuse such records by line number
 * instead of truncating them silently.
 *
 * Getters that take a `what` string die with "what: field F ..." so every
 * config error names the file and the field. */
#ifndef SIGMA_JSON_H
#define SIGMA_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Parse a whole file of at most JSON_MAX_BYTES; dies naming the file and
 * the byte offset of the error. */
#define JSON_MAX_BYTES ((size_t)256 << 20)
cJSON *json_parse_file(const char *path);
/* A JSON file that carries its own checksum: its last member "xxh3" holds
 * the XXH3-64 of the file's bytes with these 16 digits written as zeros.
 * Writing adds the field (and removes it from v after); reading checks it
 * when present (*sealed = 1) and dies "checksum mismatch" when it is wrong. */
void json_write_file_sealed(const char *path, cJSON *v);
cJSON *json_parse_file_sealed(const char *path, int *sealed);
/* Parse a buffer; on error returns NULL and sets *err_offset (if non-NULL). */
cJSON *json_parse(const char *buf, size_t len, size_t *err_offset);

/* Required fields: die "WHAT: field 'KEY' is missing / not a ..." */
const cJSON *json_req(const cJSON *obj, const char *key, const char *what);
uint64_t json_req_u64(const cJSON *obj, const char *key, const char *what);
/* A size for an int: at most JSON_MAX_INT, refused beyond ("too large")
 * before any cast, so 2^32 + 5 is never read as 5. */
#define JSON_MAX_INT (1 << 30)
int json_req_int(const cJSON *obj, const char *key, const char *what);
int json_opt_int(const cJSON *obj, const char *key, int def, const char *what);
int64_t json_req_i64(const cJSON *obj, const char *key, const char *what);
double json_req_num(const cJSON *obj, const char *key, const char *what);
const char *json_req_str(const cJSON *obj, const char *key, const char *what);
int json_req_bool(const cJSON *obj, const char *key, const char *what);
/* Optional fields: the default when absent, an error when of the wrong type. */
uint64_t json_opt_u64(const cJSON *obj, const char *key, uint64_t def, const char *what);
double json_opt_num(const cJSON *obj, const char *key, double def, const char *what);
const char *json_opt_str(const cJSON *obj, const char *key, const char *def, const char *what);
int json_opt_bool(const cJSON *obj, const char *key, int def, const char *what);

/* Integers beyond 2^53 do not survive a double: large u64 values (checksums)
 * are written as 16-digit hex strings instead. */
uint64_t json_req_hex64(const cJSON *obj, const char *key, const char *what);

/* Printing: an owned string (free with free()), pretty or on one line. */
char *json_print(const cJSON *v, int pretty);
/* Write a cJSON value to `path` atomically, pretty, with a final newline. */
void json_write_file_atomic(const char *path, const cJSON *v);

/* Checked constructors (die on allocation failure). */
cJSON *json_obj(void);
cJSON *json_arr(void);
/* A number that prints in the fewest digits that read back as exactly v. */
cJSON *json_number(double v);
void json_add_num(cJSON *obj, const char *key, double v);
void json_add_u64(cJSON *obj, const char *key, uint64_t v);   /* exact below 2^53, else dies */
void json_add_str(cJSON *obj, const char *key, const char *s);
void json_add_bool(cJSON *obj, const char *key, int v);
void json_add_hex64(cJSON *obj, const char *key, uint64_t v);
void json_add(cJSON *obj, const char *key, cJSON *item);
void json_push(cJSON *arr, cJSON *item);

/* bytes[n] as a JSON string on f: valid UTF-8 as it is, '"', '\\' and
 * control characters escaped (NUL too: cJSON's strings would end there),
 * each byte that is no part of valid UTF-8 as \ufffd (U+FFFD, as Python's
 * errors="replace"), so that any bytes make valid JSON; `name` names f in
 * an error. */
void json_write_bytes(FILE *f, const void *bytes, size_t n, const char *name);

/* Does this raw JSON text contain a \u0000 escape (which cJSON would cut at)? */
int json_has_nul_escape(const char *buf, size_t len);

#endif
