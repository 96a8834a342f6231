// json.h - a small strict JSON (RFC 8259) parser for file headers and
// configuration.
//
// Accepts exactly one value surrounded by optional whitespace: objects,
// arrays, strings (all escapes, \uXXXX with surrogate pairs decoded to
// UTF-8; raw control characters and invalid UTF-8 refused), numbers in the
// JSON grammar, true, false, null.  Nesting depth and the number of values
// are bounded, and objects may be required to have distinct keys.  An error
// names the byte offset in the text, what was expected and what was found.
// The parser never reads past text + len (the text need not end with NUL).
//
// Usage sketch (compiled by tests/test_safetensors.c):
//
//     McErr err;
//     JsonOptions opt = {.reject_duplicates = 1};
//     JsonDoc *doc = json_parse(text, len, &opt, &err);
//     if (!doc) { fprintf(stderr, "config.json: %s\n", err.msg); return -1; }
//     const JsonValue *w = json_get(json_root(doc), "width");
//     int64_t width;
//     if (w && json_int(w, &width) == 0) ...;
//     json_free(doc);
//
// Limitations: numbers are held as double (plus an exact int64 when the
// literal is an integer that fits); strings containing \u0000 keep their
// length in `len` but look shorter to C string functions.
#ifndef MCLIP_JSON_H
#define MCLIP_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "../tensor/tensor.h"

typedef enum {
    JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT
} JsonType;

typedef struct JsonValue {
    JsonType type;
    int      boolean;              // JSON_BOOL: 0 or 1
    int      is_int;               // JSON_NUMBER: the literal is an integer fitting int64
    int64_t  integer;              // JSON_NUMBER with is_int
    double   number;               // JSON_NUMBER (nearest double)
    const char *str;               // JSON_STRING: UTF-8, NUL-terminated
    size_t   len;                  // JSON_STRING: bytes; ARRAY/OBJECT: elements
    const struct JsonValue *items; // ARRAY: [len] elements; OBJECT: [len] values
    const struct JsonValue *keys;  // OBJECT: [len] keys (JSON_STRING), file order
    size_t   offset;               // byte offset of the value in the text
} JsonValue;

typedef struct JsonOptions {
    int    max_depth;          // nesting limit; 0 means JSON_DEFAULT_DEPTH
    size_t max_values;         // limit on values parsed; 0 means JSON_DEFAULT_VALUES
    int    reject_duplicates;  // 1: an object with a repeated key is an error
} JsonOptions;

#define JSON_DEFAULT_DEPTH  64
#define JSON_DEFAULT_VALUES ((size_t)1 << 20)

typedef struct JsonDoc JsonDoc;

// Parse text[0..len).  opt may be NULL (defaults, duplicates allowed).
// Returns NULL with err set ("byte 17: expected ':' after object key, found
// ','") on any error.
JsonDoc *json_parse(const char *text, size_t len, const JsonOptions *opt, McErr *err);
void     json_free(JsonDoc *doc);
const JsonValue *json_root(const JsonDoc *doc);

// Object member by key (the last one when keys repeat), or NULL when v is
// not an object or lacks the key.
const JsonValue *json_get(const JsonValue *v, const char *key);
// Exact integer value: 0, or -1 when v is not an integer-valued number.
int json_int(const JsonValue *v, int64_t *out);
// "null", "bool", "number", "string", "array", "object".
const char *json_type_name(JsonType t);

// Number of leading bytes of s[0..n) that form valid UTF-8 (n when all of
// it is valid): overlong forms, surrogates and values above U+10FFFF are
// invalid.  Shared with the other readers of UTF-8 text.
size_t json_utf8_prefix(const char *s, size_t n);

// Append s to out as a JSON string literal (quotes and escapes included),
// writing at most cap bytes including the NUL; returns the length the full
// literal needs (like snprintf).  Used by writers of JSON headers.
size_t json_quote(char *out, size_t cap, const char *s);

#endif
