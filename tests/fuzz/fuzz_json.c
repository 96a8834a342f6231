// fuzz_json.c - libFuzzer harness for the strict JSON parser
// (mobileclip/json.h): arbitrary bytes as JSON text, parsed with duplicate
// keys allowed and refused and with a small depth limit.
//
// Properties checked on an accepted document: containers hold as many
// children as len says, strings are valid UTF-8 of len bytes, json_get
// finds every key (the last of repeated ones, which must be equal
// strings), and quoting a string with json_quote and parsing the literal
// gives the same bytes back (strings without NUL).  Also json_utf8_prefix
// never returns more than its input and agrees with the parser on what
// valid UTF-8 is.
#include "fuzz_common.h"

#include "../../mobileclip/json.h"

static void fuzz_json_string(const JsonValue *v) {
    FUZZ_REQUIRE(v->str != NULL && v->str[v->len] == 0, "string not NUL-terminated");
    FUZZ_REQUIRE(json_utf8_prefix(v->str, v->len) == v->len, "string is not valid UTF-8");
    if (strlen(v->str) != v->len || v->len > 4096) return;   // embedded NUL / long

    // Round trip through json_quote.
    char lit[6 * 4096 + 3];
    size_t need = json_quote(lit, sizeof lit, v->str);
    FUZZ_REQUIRE(need < sizeof lit, "quoted literal of %zu bytes", need);
    McErr err;
    JsonDoc *d = json_parse(lit, need, NULL, &err);
    FUZZ_REQUIRE(d != NULL, "json_quote output does not parse: %s (%s)", err.msg, lit);
    const JsonValue *r = json_root(d);
    FUZZ_REQUIRE(r->type == JSON_STRING && r->len == v->len && !memcmp(r->str, v->str, v->len),
                 "json_quote round trip changed the string");
    json_free(d);
}

static void fuzz_json_walk(const JsonValue *v, int depth) {
    FUZZ_REQUIRE(depth <= JSON_DEFAULT_DEPTH + 1, "depth %d", depth);
    switch (v->type) {
    case JSON_STRING: fuzz_json_string(v); break;
    case JSON_ARRAY:
        for (size_t i = 0; i < v->len; i++) fuzz_json_walk(&v->items[i], depth + 1);
        break;
    case JSON_OBJECT:
        for (size_t i = 0; i < v->len; i++) {
            FUZZ_REQUIRE(v->keys[i].type == JSON_STRING, "key is not a string");
            fuzz_json_string(&v->keys[i]);
            fuzz_json_walk(&v->items[i], depth + 1);
            if (strlen(v->keys[i].str) == v->keys[i].len)
                FUZZ_REQUIRE(json_get(v, v->keys[i].str) != NULL, "json_get misses a key");
        }
        break;
    case JSON_NUMBER: {
        int64_t x;
        if (json_int(v, &x) == 0) FUZZ_REQUIRE((double)x == v->number || !v->is_int,
                                               "integer and double disagree");
        break;
    }
    default: break;
    }
    (void)json_type_name(v->type);
}

static int fuzz_json(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    McErr err = {{0}};

    // Defaults (duplicates allowed), then strict, then shallow.
    JsonDoc *d = json_parse(text, size, NULL, &err);
    if (d) fuzz_json_walk(json_root(d), 0);
    else FUZZ_REQUIRE(err.msg[0], "error without a message");
    JsonOptions strict = {.reject_duplicates = 1};
    JsonDoc *s = json_parse(text, size, &strict, &err);
    FUZZ_REQUIRE(!s || d, "strict parse accepted what the default refused");
    if (s) fuzz_json_walk(json_root(s), 0);
    JsonOptions shallow = {.max_depth = 3, .max_values = 64};
    JsonDoc *h = json_parse(text, size, &shallow, &err);
    FUZZ_REQUIRE(!h || d, "shallow parse accepted what the default refused");
    json_free(h);
    json_free(s);
    json_free(d);

    // UTF-8 prefix: bounded by the input.
    FUZZ_REQUIRE(json_utf8_prefix(text, size) <= size, "utf8 prefix past the end");
    return 0;
}

FUZZ_ENTRY(fuzz_json)
