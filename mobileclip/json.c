// json.c - strict JSON parser (see json.h).  Grammar from RFC 8259.
//
// Recursive descent with an explicit depth limit.  Values are built on a
// scratch stack; when an array or object closes, its children are copied
// into one arena block, so every container's elements are contiguous and the
// document is freed at once.
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct JsonDoc {
    Arena      arena;
    JsonValue *root;
};

typedef struct {
    const char *s;             // text
    size_t      len, pos;      // text length, cursor
    int         depth, max_depth;
    size_t      n_values, max_values;
    int         reject_dups;
    JsonValue  *stack;         // scratch: children of the open containers
    size_t      top, cap;
    Arena      *arena;
    McErr      *err;
} Parser;

// ---- errors ----

// Describe the byte at pos for an error message ("'x'", "end of text").
static const char *found_str(const Parser *p, size_t pos, char *buf, size_t n) {
    if (pos >= p->len) return "end of text";
    unsigned char c = (unsigned char)p->s[pos];
    if (c >= 0x20 && c < 0x7f) snprintf(buf, n, "'%c'", c);
    else snprintf(buf, n, "byte 0x%02x", c);
    return buf;
}

static int fail_expect(Parser *p, const char *what) {
    char b[16];
    return mc_err(p->err, "byte %zu: expected %s, found %s", p->pos, what,
                  found_str(p, p->pos, b, sizeof b));
}

// ---- scratch stack ----

static int push(Parser *p, const JsonValue *v) {
    if (p->top == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        JsonValue *s = realloc(p->stack, cap * sizeof *s);
        if (!s) return mc_err(p->err, "byte %zu: out of memory", p->pos);
        p->stack = s, p->cap = cap;
    }
    p->stack[p->top++] = *v;
    return 0;
}

static void skip_ws(Parser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

// ---- strings ----

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6)), o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12)), o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18)), o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

// Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 if invalid
// (overlong forms, surrogates and code points above U+10FFFF refused).
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t k;
    unsigned cp, min;
    if (c >= 0xc2 && c <= 0xdf) k = 2, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) k = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) k = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (n < k) return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return k;
}

// One \uXXXX escape (pair for surrogates) at s + i (the 'u'); the code point
// goes to *cp and the escape's length after the backslash to *used.
static int unicode_escape(Parser *p, size_t i, size_t end, unsigned *cp, size_t *used) {
    unsigned hi, lo;
    if (i + 5 > end || hex4(p->s + i + 1, &hi))
        return mc_err(p->err, "byte %zu: expected 4 hex digits after \\u", i + 1);
    *used = 5, *cp = hi;
    if (hi >= 0xdc00 && hi <= 0xdfff)
        return mc_err(p->err, "byte %zu: lone low surrogate \\u%04x", i - 1, hi);
    if (hi < 0xd800 || hi > 0xdbff) return 0;
    // A high surrogate must be followed by \u and a low surrogate.
    if (i + 11 > end || p->s[i + 5] != '\\' || p->s[i + 6] != 'u' ||
        hex4(p->s + i + 7, &lo) || lo < 0xdc00 || lo > 0xdfff)
        return mc_err(p->err, "byte %zu: high surrogate \\u%04x not followed by a low "
                      "surrogate escape", i - 1, hi);
    *cp = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
    *used = 11;
    return 0;
}

// Parse the string starting at the quote at p->pos into v.
static int parse_string(Parser *p, JsonValue *v) {
    size_t start = p->pos + 1, end = start;

    // Find the closing quote (skipping escaped characters) to size the output.
    while (end < p->len && p->s[end] != '"') end += (p->s[end] == '\\') ? 2 : 1;
    if (end >= p->len)
        return mc_err(p->err, "byte %zu: string not terminated", p->pos);

    // Decode: escaped output is never longer than its source.
    char *out = arena_alloc(p->arena, end - start + 1);
    size_t o = 0;
    for (size_t i = start; i < end;) {
        unsigned char c = (unsigned char)p->s[i];
        if (c < 0x20)
            return mc_err(p->err, "byte %zu: control character 0x%02x inside a string "
                          "(must be escaped)", i, c);
        if (c != '\\') {
            size_t k = utf8_seq((const unsigned char *)p->s + i, end - i);
            if (!k) return mc_err(p->err, "byte %zu: invalid UTF-8 in string", i);
            memcpy(out + o, p->s + i, k);
            o += k, i += k;
            continue;
        }
        char e = p->s[i + 1];
        const char *map = "\"\"\\\\//b\bf\fn\nr\rt\t";
        const char *m = NULL;
        for (const char *q = map; *q; q += 2)
            if (*q == e) { m = q; break; }
        if (m) {
            out[o++] = m[1];
            i += 2;
        } else if (e == 'u') {
            unsigned cp = 0;
            size_t used = 0;
            if (unicode_escape(p, i + 1, end, &cp, &used)) return -1;
            o += put_utf8(out + o, cp);
            i += 1 + used;
        } else {
            char b[16];
            return mc_err(p->err, "byte %zu: unknown escape \\%s in string", i,
                          found_str(p, i + 1, b, sizeof b));
        }
    }
    out[o] = 0;
    v->type = JSON_STRING, v->str = out, v->len = o;
    p->pos = end + 1;
    return 0;
}

// ---- numbers ----

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int parse_number(Parser *p, JsonValue *v) {
    size_t i = p->pos, start = i;
    int integral = 1;

    // -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
    if (i < p->len && p->s[i] == '-') i++;
    if (i >= p->len || !is_digit(p->s[i])) { p->pos = i; return fail_expect(p, "a digit"); }
    if (p->s[i] == '0') i++;
    else while (i < p->len && is_digit(p->s[i])) i++;
    if (i < p->len && p->s[i] == '.') {
        integral = 0, i++;
        if (i >= p->len || !is_digit(p->s[i]))
            { p->pos = i; return fail_expect(p, "a digit after '.'"); }
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
        integral = 0, i++;
        if (i < p->len && (p->s[i] == '+' || p->s[i] == '-')) i++;
        if (i >= p->len || !is_digit(p->s[i]))
            { p->pos = i; return fail_expect(p, "a digit in the exponent"); }
        while (i < p->len && is_digit(p->s[i])) i++;
    }

    // Convert a NUL-terminated copy (the text itself may not end in NUL).
    size_t n = i - start;
    char small[64], *buf = n < sizeof small ? small : malloc(n + 1);
    if (!buf) return mc_err(p->err, "byte %zu: out of memory", start);
    memcpy(buf, p->s + start, n);
    buf[n] = 0;
    v->type = JSON_NUMBER;
    v->number = strtod(buf, NULL);
    if (buf != small) free(buf);

    // Exact integer when the literal is one and fits int64.
    if (integral) {
        int neg = p->s[start] == '-';
        uint64_t mag = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        int fits = 1;
        for (size_t k = start + (size_t)neg; k < i && fits; k++) {
            uint64_t d = (uint64_t)(p->s[k] - '0');
            if (mag > (limit - d) / 10) fits = 0;
            else mag = mag * 10 + d;
        }
        if (fits) {
            v->is_int = 1;
            v->integer = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag)
                             : (int64_t)mag;
        }
    }
    p->pos = i;
    return 0;
}

// ---- containers ----

static int parse_value(Parser *p, JsonValue *v);

// Copy the top n scratch values into one arena block and pop them.
static const JsonValue *pop_block(Parser *p, size_t first, size_t n, size_t step) {
    if (n == 0) return NULL;
    JsonValue *b = arena_alloc(p->arena, n * sizeof *b);
    for (size_t i = 0; i < n; i++) b[i] = p->stack[first + i * step];
    return b;
}

static int key_cmp(const void *a, const void *b) {
    const JsonValue *x = *(const JsonValue *const *)a, *y = *(const JsonValue *const *)b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    int c = memcmp(x->str, y->str, x->len);
    if (c) return c;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

// Sort the keys (n log n, so huge hostile objects stay cheap) and report the
// second occurrence of the first repeated key.
static int check_duplicates(Parser *p, const JsonValue *keys, size_t n) {
    const JsonValue **ix = malloc(n * sizeof *ix);
    if (!ix) return mc_err(p->err, "out of memory checking keys");
    for (size_t i = 0; i < n; i++) ix[i] = &keys[i];
    qsort(ix, n, sizeof *ix, key_cmp);
    const JsonValue *dup = NULL;
    for (size_t i = 1; i < n; i++) {
        if (ix[i]->len == ix[i - 1]->len && !memcmp(ix[i]->str, ix[i - 1]->str, ix[i]->len))
            if (!dup || ix[i]->offset < dup->offset) dup = ix[i];
    }
    free(ix);
    if (dup)
        return mc_err(p->err, "byte %zu: duplicate key \"%.200s\" in object", dup->offset,
                      dup->str);
    return 0;
}

static int parse_array(Parser *p, JsonValue *v) {
    size_t first = p->top;
    p->pos++;  // '['
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') {
        p->pos++;
    } else {
        for (;;) {
            JsonValue item;
            if (parse_value(p, &item) || push(p, &item)) return -1;
            skip_ws(p);
            if (p->pos < p->len && p->s[p->pos] == ',') { p->pos++; continue; }
            if (p->pos < p->len && p->s[p->pos] == ']') { p->pos++; break; }
            return fail_expect(p, "',' or ']' in array");
        }
    }
    v->type = JSON_ARRAY;
    v->len = p->top - first;
    v->items = pop_block(p, first, v->len, 1);
    p->top = first;
    return 0;
}

static int parse_object(Parser *p, JsonValue *v) {
    size_t first = p->top;
    p->pos++;  // '{'
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') {
        p->pos++;
    } else {
        for (;;) {
            // "key" : value, pushed as a pair
            JsonValue key, val;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != '"') return fail_expect(p, "'\"' (object key)");
            memset(&key, 0, sizeof key);
            key.offset = p->pos;
            if (parse_string(p, &key) || push(p, &key)) return -1;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':')
                return fail_expect(p, "':' after object key");
            p->pos++;
            if (parse_value(p, &val) || push(p, &val)) return -1;
            skip_ws(p);
            if (p->pos < p->len && p->s[p->pos] == ',') { p->pos++; continue; }
            if (p->pos < p->len && p->s[p->pos] == '}') { p->pos++; break; }
            return fail_expect(p, "',' or '}' in object");
        }
    }
    v->type = JSON_OBJECT;
    v->len = (p->top - first) / 2;
    v->keys = pop_block(p, first, v->len, 2);
    v->items = pop_block(p, first + 1, v->len, 2);
    p->top = first;
    if (p->reject_dups && v->len > 1) return check_duplicates(p, v->keys, v->len);
    return 0;
}

static int match_word(Parser *p, const char *w) {
    size_t n = strlen(w);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, w, n)) return 0;
    p->pos += n;
    return 1;
}

static int parse_value(Parser *p, JsonValue *v) {
    skip_ws(p);
    memset(v, 0, sizeof *v);
    v->offset = p->pos;
    if (++p->n_values > p->max_values)
        return mc_err(p->err, "byte %zu: more than %zu values (limit)", p->pos, p->max_values);
    if (p->pos >= p->len) return fail_expect(p, "a value");
    char c = p->s[p->pos];
    if (c == '{' || c == '[') {
        if (++p->depth > p->max_depth)
            return mc_err(p->err, "byte %zu: nesting deeper than %d", p->pos, p->max_depth);
        int rc = c == '{' ? parse_object(p, v) : parse_array(p, v);
        p->depth--;
        return rc;
    }
    if (c == '"') return parse_string(p, v);
    if (c == '-' || is_digit(c)) return parse_number(p, v);
    if (match_word(p, "true")) { v->type = JSON_BOOL, v->boolean = 1; return 0; }
    if (match_word(p, "false")) { v->type = JSON_BOOL; return 0; }
    if (match_word(p, "null")) { v->type = JSON_NULL; return 0; }
    return fail_expect(p, "a value (object, array, string, number, true, false, null)");
}

// ---- public API ----

JsonDoc *json_parse(const char *text, size_t len, const JsonOptions *opt, McErr *err) {
    JsonDoc *doc = mc_calloc(1, sizeof *doc);
    size_t first_block = len < ((size_t)1 << 20) ? len * 2 : (size_t)1 << 21;
    arena_init(&doc->arena, first_block);
    Parser p = {.s = text, .len = len, .arena = &doc->arena, .err = err,
                .max_depth = opt && opt->max_depth ? opt->max_depth : JSON_DEFAULT_DEPTH,
                .max_values = opt && opt->max_values ? opt->max_values : JSON_DEFAULT_VALUES,
                .reject_dups = opt ? opt->reject_duplicates : 0};
    doc->root = arena_alloc(&doc->arena, sizeof *doc->root);

    // One value, then only whitespace.
    int rc = parse_value(&p, doc->root);
    if (!rc) {
        skip_ws(&p);
        if (p.pos != len) rc = fail_expect(&p, "end of text after the value");
    }
    free(p.stack);
    if (rc) {
        json_free(doc);
        return NULL;
    }
    return doc;
}

void json_free(JsonDoc *doc) {
    if (!doc) return;
    arena_free(&doc->arena);
    mc_free(doc);
}

const JsonValue *json_root(const JsonDoc *doc) { return doc->root; }

const JsonValue *json_get(const JsonValue *v, const char *key) {
    if (!v || v->type != JSON_OBJECT) return NULL;
    size_t n = strlen(key);
    for (size_t i = v->len; i-- > 0;)
        if (v->keys[i].len == n && !memcmp(v->keys[i].str, key, n)) return &v->items[i];
    return NULL;
}

int json_int(const JsonValue *v, int64_t *out) {
    if (!v || v->type != JSON_NUMBER || !v->is_int) return -1;
    *out = v->integer;
    return 0;
}

size_t json_utf8_prefix(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (!k) break;
        i += k;
    }
    return i;
}

const char *json_type_name(JsonType t) {
    static const char *names[] = {"null", "bool", "number", "string", "array", "object"};
    return (unsigned)t < 6 ? names[t] : "?";
}

size_t json_quote(char *out, size_t cap, const char *s) {
    size_t n = 0;
#define EMIT(ch) do { if (n + 1 < cap) out[n] = (ch); n++; } while (0)
    EMIT('"');
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        const char *esc = NULL;
        switch (*c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default: break;
        }
        if (esc) {
            EMIT(esc[0]);
            EMIT(esc[1]);
        } else if (*c < 0x20) {
            char u[8];
            snprintf(u, sizeof u, "\\u%04x", *c);
            for (int k = 0; k < 6; k++) EMIT(u[k]);
        } else {
            EMIT((char)*c);
        }
    }
    EMIT('"');
#undef EMIT
    if (cap) out[n < cap ? n : cap - 1] = 0;
    return n;
}
