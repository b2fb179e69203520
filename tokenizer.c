/* tokenizer.c: CLIP's byte-level BPE tokenizer, as Diffusers runs it and as the model was trained with.
 *
 *   prompt bytes --UTF-8--> code points --clean-up--> text --CLIP regex--> words --UTF-8 bytes, BPE--> ids
 *   ids = bos, word ids..., eos; cut to max_len keeping eos last; padded with the config's pad id.
 *
 * Two clean-ups, because Diffusers does not feed the text encoder what it was trained with.
 *
 * T2V_TOKENIZER_OPENCLIP is openai/CLIP's (and OpenCLIP's) simple_tokenizer, which made the training ids:
 *   ftfy.fix_text (taken as identity here), html.unescape twice, strip(), every run of \s made one space,
 *   strip(), lower(); then the regex and BPE.
 *
 * T2V_TOKENIZER_DIFFUSERS (the default) is what TextToVideoSDPipeline actually computes: transformers'
 * slow CLIPTokenizer. When the optional ftfy package is missing, which is the default install (neither
 * diffusers nor transformers requires it), CLIPTokenizer swaps the clean-up above for BERT's
 * BasicTokenizer, and PreTrainedTokenizer.tokenize first cuts the text at its "added tokens":
 *   - '!' becomes id 0. The model's tokenizer_config.json makes '!' the pad token, transformers registers
 *     every special token as an added token, and added tokens are cut out of the raw text before any
 *     clean-up. "wow!!!" is wow, 0, 0, 0 rather than wow, '!!!' (diffusers issue #4153).
 *   - No HTML unescaping: "&amp;" stays five characters (three regex words) instead of becoming "&".
 *   - Control and format characters (category C*) are deleted: the zero-width joiners of emoji sequences,
 *     soft hyphens; so is U+FFFD, hence invalid UTF-8. Whitespace characters become spaces.
 *   - CJK ideographs get spaces around them, so each is a word of its own (different BPE: the last byte
 *     gets the '</w>' form).
 *   - NFC normalisation: a decomposed "e" + U+0301 becomes "é"; simple_tokenizer keeps the accent as a
 *     separate regex word.
 *   - lower() per whitespace-separated word, rejoined with single spaces.
 * The golden fixture's 'hf_slow_noftfy_ids_emulated' lists are this mode; its 'ids' are OpenCLIP's.
 *
 * Everything before the BPE is Python string processing, and the point is to agree with Python character
 * for character: unicodedata.category, str.isspace, str.lower (full mappings such as 'İ' -> "i̇" and the
 * final-sigma rule), unicodedata.normalize('NFC'), html.unescape (HTML5 entities, longest-prefix rule,
 * numeric fix-ups) and the classes of the CLIP regex (\p{L}, \p{N}, \s under re.IGNORECASE). None of that
 * is written here: export.py's unicode_tables() asks the exporting Python and stores the answers as the
 * unicode/... and html/... tensors (sorted range and pair lists, about 180 KB), which this file bsearches.
 *
 * Known differences from Python:
 *   - ftfy.fix_text is not run in OPENCLIP mode (the golden ids take it as identity too), and Diffusers
 *     with ftfy installed (ftfy + whitespace clean-up, no html.unescape, still the '!' cut) is not a mode.
 *   - A prompt is a NUL-terminated byte string, so it cannot contain U+0000.
 *   - html.unescape("&#" + more than 4300 digits) raises ValueError in CPython >= 3.11 (int's digit limit);
 *     here it is any other too-large reference: U+FFFD.
 *   - The tables are those of the exporting Python (unicodedata.unidata_version is in unicode/source); a
 *     different Python or `regex` release may classify characters assigned in newer Unicode versions
 *     differently.
 */
#include "t2v.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CODEPOINT 0x10FFFF
#define REPLACEMENT_CHARACTER 0xFFFD

/* ---------------------------------------------------------------------------------------------------- */
/* Tables from the model file */

typedef struct {        /* an int32 [n, width] tensor (width 1: a 1-D list), rows sorted by first column(s) */
    const int32_t *v;
    size_t n;
    int width;
} Table;

typedef struct {        /* one of transformers' added tokens: cut out of the raw text (DIFFUSERS mode) */
    uint32_t cp[64];
    size_t n;
    int32_t id;
} AddedToken;

struct T2VTokenizer {
    int32_t n_vocab;
    int32_t byte_ids[2][256];     /* [0][b]: symbol of byte b; [1][b]: the same symbol + '</w>' (word end) */
    const int32_t *merges;        /* (n_merges, 3): left id, right id, merged id, in rank order */
    int32_t n_merges;
    uint64_t *pair_keys;          /* hash table (left id, right id) -> rank, open addressing, pair_mask + 1 */
    int32_t *pair_ranks;
    size_t pair_mask;
    int32_t bos_id, eos_id, pad_id, unk_id;
    int32_t startoftext_id, endoftext_id; /* CLIP's bpe cache: these regex matches map straight to ids */
    AddedToken added[4];          /* bos, eos, unk, pad tokens, duplicates removed */
    int n_added;

    Table category;               /* (first, last, index into category_names): unicodedata.category */
    const char *category_names;   /* two letters per category, e.g. "Zs" */
    int n_categories;
    Table isspace_;               /* (first, last): str.isspace */
    Table regex_space, regex_letter, regex_number, regex_other; /* (first, last): CLIP pattern classes */
    Table regex_ignorecase;       /* (code point, ASCII letter it matches under re.IGNORECASE) */
    Table lower;                  /* (code point, lowered code points..., -1 padding): str.lower */
    Table cased, case_ignorable;  /* (first, last): Final_Sigma context of str.lower */
    Table ccc;                    /* (first, last, canonical combining class), nonzero classes only */
    Table decomposition;          /* (code point, offset, length) into decomposition_data: full NFD */
    Table decomposition_data;
    Table composition;            /* (first, second, composite): primary composites, sorted by pair */
    const char *entity_names;     /* NUL-terminated HTML5 entity names, sorted */
    size_t entity_names_size;
    Table entities;               /* (name offset, code point, second code point or -1) in name order */
    Table invalid_charrefs;       /* (number, replacement code point): html._invalid_charrefs */
    Table invalid_codepoints;     /* sorted numbers: html._invalid_codepoints (the reference is dropped) */
};

static void out_of_memory(void)
{
    t2v_die("out of memory in the tokenizer");
}

/* Grows an array to hold at least `need` elements (doubling); exits on failure, as t2v does. */
static void *grow_array(void *p, size_t *cap, size_t need, size_t elem)
{
    size_t c = *cap ? *cap : 16;
    if (need <= *cap) return p;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) out_of_memory();
        c *= 2;
    }
    p = realloc(p, c * elem);
    if (!p) out_of_memory();
    *cap = c;
    return p;
}

static int compare_range(const void *key, const void *row)
{
    int32_t c = *(const int32_t *)key;
    const int32_t *r = (const int32_t *)row;
    return c < r[0] ? -1 : c > r[1] ? 1 : 0;
}

static int compare_first(const void *key, const void *row)
{
    int32_t c = *(const int32_t *)key;
    const int32_t *r = (const int32_t *)row;
    return c < r[0] ? -1 : c > r[0] ? 1 : 0;
}

static int compare_pair(const void *key, const void *row)
{
    const int32_t *k = (const int32_t *)key, *r = (const int32_t *)row;
    if (k[0] != r[0]) return k[0] < r[0] ? -1 : 1;
    return k[1] < r[1] ? -1 : k[1] > r[1] ? 1 : 0;
}

static const int32_t *table_find(const Table *t, const int32_t *key, int (*cmp)(const void *, const void *))
{
    if (!t->n) return NULL;
    return (const int32_t *)bsearch(key, t->v, t->n, (size_t)t->width * sizeof(int32_t), cmp);
}

static int in_ranges(const Table *t, uint32_t cp)
{
    int32_t key = (int32_t)cp;
    return table_find(t, &key, compare_range) != NULL;
}

static const int32_t *find_row(const Table *t, uint32_t cp)
{
    int32_t key = (int32_t)cp;
    return table_find(t, &key, compare_first);
}

enum { RANGES, KEYED, PAIR_KEYED, UNSORTED };

/* Finds an int32 table, checks dtype and shape (width 0: 1-D; width -1: 2-D, any width >= 2) and that it
 * is sorted as bsearch needs: RANGES disjoint (first, last) runs of code points, KEYED strictly increasing
 * first column, PAIR_KEYED strictly increasing (first, second). */
static void load_table(const T2VModel *m, const char *name, int width, int order, Table *out)
{
    const T2VTensor *x = t2v_find_tensor(m, name);
    size_t i;
    if (!x) t2v_die("%s: the model file has no %s table: re-export it with export.py", t2v_model_path(m), name);
    if (x->dtype != T2V_I32 || x->ndim != (width ? 2 : 1) || x->shape[0] < 0 || x->shape[0] > INT32_MAX ||
        (width > 0 && x->shape[1] != width) || (width < 0 && (x->shape[1] < 2 || x->shape[1] > 8)))
        t2v_die("%s: the model file's %s table has the wrong type or shape: re-export it with export.py",
                t2v_model_path(m), name);
    out->v = (const int32_t *)x->data;
    out->n = (size_t)x->shape[0];
    out->width = width ? (int)x->shape[1] : 1;
    for (i = 0; i < out->n; i++) {
        const int32_t *r = out->v + i * (size_t)out->width, *p = i ? r - out->width : r;
        int ok = 1;
        if (order == RANGES)
            ok = r[0] >= 0 && r[0] <= r[1] && r[1] <= MAX_CODEPOINT && (i == 0 || p[1] < r[0]);
        else if (order == KEYED)
            ok = r[0] >= 0 && (i == 0 || p[0] < r[0]);
        else if (order == PAIR_KEYED)
            ok = i == 0 || p[0] < r[0] || (p[0] == r[0] && p[1] < r[1]);
        if (!ok)
            t2v_die("%s: the model file's %s table is not sorted: re-export it with export.py", t2v_model_path(m), name);
    }
}

static int valid_codepoint(int32_t c) { return c >= 0 && c <= MAX_CODEPOINT && (c < 0xD800 || c > 0xDFFF); }

/* ---------------------------------------------------------------------------------------------------- */
/* Code point strings */

typedef struct { uint32_t *v; size_t n, cap; } CpBuf;
typedef struct { int32_t *v; size_t n, cap; } IdBuf;

static void cp_push(CpBuf *b, uint32_t c)
{
    if (b->n == b->cap) b->v = (uint32_t *)grow_array(b->v, &b->cap, b->n + 1, sizeof *b->v);
    b->v[b->n++] = c;
}

static void id_push(IdBuf *b, int32_t id)
{
    if (b->n == b->cap) b->v = (int32_t *)grow_array(b->v, &b->cap, b->n + 1, sizeof *b->v);
    b->v[b->n++] = id;
}

/* Python's tokenizers receive a str; arbitrary prompt bytes become one as bytes.decode("utf-8",
 * errors="replace") makes it: each maximal ill-formed subpart becomes one U+FFFD (a start byte and the
 * continuation bytes that were still valid for it, or one stray byte), exactly as CPython counts them:
 * "\xe2\x82" is one U+FFFD, "\xed\xa0\x80" (an encoded surrogate) three, "\xc0\xaf" two. Nothing is
 * rejected, so no prompt can make the tokenizer fail. */
static void utf8_decode_replace(const unsigned char *s, size_t n, CpBuf *out)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i++], lo = 0x80, hi = 0xBF;
        int need, k;
        uint32_t cp;
        if (c < 0x80) { cp_push(out, c); continue; }
        if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2; cp = c & 0x0F;
            if (c == 0xE0) lo = 0xA0;  /* overlong */
            if (c == 0xED) hi = 0x9F;  /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3; cp = c & 0x07;
            if (c == 0xF0) lo = 0x90;  /* overlong */
            if (c == 0xF4) hi = 0x8F;  /* above U+10FFFF */
        } else { cp_push(out, REPLACEMENT_CHARACTER); continue; }
        for (k = 0; k < need && i < n && s[i] >= lo && s[i] <= hi; k++) {
            cp = cp << 6 | (s[i++] & 0x3F);
            lo = 0x80;
            hi = 0xBF;
        }
        cp_push(out, k == need ? cp : REPLACEMENT_CHARACTER);
    }
}

static size_t utf8_encode(uint32_t c, unsigned char *b)
{
    if (c < 0x80) { b[0] = (unsigned char)c; return 1; }
    if (c < 0x800) { b[0] = (unsigned char)(0xC0 | c >> 6); b[1] = (unsigned char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        b[0] = (unsigned char)(0xE0 | c >> 12);
        b[1] = (unsigned char)(0x80 | (c >> 6 & 0x3F));
        b[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    b[0] = (unsigned char)(0xF0 | c >> 18);
    b[1] = (unsigned char)(0x80 | (c >> 12 & 0x3F));
    b[2] = (unsigned char)(0x80 | (c >> 6 & 0x3F));
    b[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Python's str and unicodedata */

static const char *unicodedata_category(const T2VTokenizer *t, uint32_t cp)
{
    int32_t key = (int32_t)cp;
    const int32_t *r = table_find(&t->category, &key, compare_range);
    return r ? t->category_names + 2 * r[2] : "Cn";
}

static int str_isspace(const T2VTokenizer *t, uint32_t cp) { return in_ranges(&t->isspace_, cp); }

/* str.strip(): the [begin, end) left after dropping isspace characters at both ends. */
static void str_strip(const T2VTokenizer *t, const uint32_t *s, size_t *begin, size_t *end)
{
    while (*begin < *end && str_isspace(t, s[*begin])) (*begin)++;
    while (*end > *begin && str_isspace(t, s[*end - 1])) (*end)--;
}

/* CPython's handle_capital_sigma: 'Σ' lowers to final 'ς' when a cased letter precedes it and none follows,
 * case-ignorable characters (apostrophes, accents, ...) skipped on both sides. */
static int final_sigma(const T2VTokenizer *t, const uint32_t *s, size_t n, size_t i)
{
    size_t j = i;
    while (j > 0 && in_ranges(&t->case_ignorable, s[j - 1])) j--;
    if (j == 0 || !in_ranges(&t->cased, s[j - 1])) return 0;
    for (j = i + 1; j < n && in_ranges(&t->case_ignorable, s[j]); j++) {}
    return j == n || !in_ranges(&t->cased, s[j]);
}

/* str.lower() of s[0..n), appended to out. */
static void str_lower(const T2VTokenizer *t, const uint32_t *s, size_t n, CpBuf *out)
{
    size_t i;
    int k;
    for (i = 0; i < n; i++) {
        const int32_t *r;
        if (s[i] == 0x3A3) { cp_push(out, final_sigma(t, s, n, i) ? 0x3C2 : 0x3C3); continue; }
        r = find_row(&t->lower, s[i]);
        if (!r) { cp_push(out, s[i]); continue; }
        for (k = 1; k < t->lower.width && r[k] >= 0; k++) cp_push(out, (uint32_t)r[k]);
    }
}

/* ---- unicodedata.normalize("NFC"), as CPython's nfd_nfkd + nfc_nfkc compute it ---- */

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7,
       LCOUNT = 19, VCOUNT = 21, TCOUNT = 28, NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

typedef struct {               /* scratch space reused across calls of one t2v_tokenize */
    CpBuf nfd;
    unsigned char *ccc, *skipped;
    size_t ccc_cap, skipped_cap;
    uint32_t *sort_v;
    unsigned char *sort_c;
    size_t sort_v_cap, sort_c_cap;
    unsigned char *bytes;      /* bpe_word: the word's UTF-8 bytes and its symbol list */
    int32_t *sym, *prev, *next;
    uint64_t *heap;            /* (rank << 32 | position) min-heap of candidate merges */
    uint32_t *batch;
    size_t bytes_cap, sym_cap, prev_cap, next_cap, heap_cap, batch_cap;
} Scratch;

static int canonical_combining_class(const T2VTokenizer *t, uint32_t cp)
{
    int32_t key = (int32_t)cp;
    const int32_t *r = table_find(&t->ccc, &key, compare_range);
    return r ? r[2] : 0;
}

/* Canonical ordering: within each run of non-starters, a stable sort by combining class. CPython does it by
 * insertion; long runs are counting-sorted here (same order) so that a 100 KB run of accents stays linear. */
static void canonical_ordering(Scratch *w, uint32_t *v, unsigned char *c, size_t n)
{
    size_t start = 0, end, i, j;
    while (start < n) {
        if (c[start] == 0) { start++; continue; }
        for (end = start; end < n && c[end] != 0; end++) {}
        if (end - start <= 32) {
            for (i = start + 1; i < end; i++) {
                uint32_t x = v[i];
                unsigned char cx = c[i];
                for (j = i; j > start && c[j - 1] > cx; j--) { v[j] = v[j - 1]; c[j] = c[j - 1]; }
                v[j] = x;
                c[j] = cx;
            }
        } else {
            size_t count[257] = {0};
            w->sort_v = (uint32_t *)grow_array(w->sort_v, &w->sort_v_cap, end - start, sizeof *w->sort_v);
            w->sort_c = (unsigned char *)grow_array(w->sort_c, &w->sort_c_cap, end - start, 1);
            for (i = start; i < end; i++) count[c[i] + 1]++;
            for (i = 1; i < 257; i++) count[i] += count[i - 1];
            for (i = start; i < end; i++) {
                size_t k = count[c[i]]++;
                w->sort_v[k] = v[i];
                w->sort_c[k] = c[i];
            }
            memcpy(v + start, w->sort_v, (end - start) * sizeof *v);
            memcpy(c + start, w->sort_c, end - start);
        }
        start = end;
    }
}

static uint32_t nfc_compose_pair(const T2VTokenizer *t, uint32_t first, uint32_t second)
{
    int32_t key[2];
    const int32_t *r;
    key[0] = (int32_t)first;
    key[1] = (int32_t)second;
    r = table_find(&t->composition, key, compare_pair);
    return r ? (uint32_t)r[2] : 0;
}

static int nfc_is_first(const T2VTokenizer *t, uint32_t cp)
{
    int32_t key[2];
    size_t lo = 0, hi = t->composition.n;
    key[0] = (int32_t)cp;
    key[1] = INT32_MIN;
    while (lo < hi) {          /* the first row not below (cp, -inf) */
        size_t mid = lo + (hi - lo) / 2;
        if (compare_pair(key, t->composition.v + 3 * mid) > 0) lo = mid + 1;
        else hi = mid;
    }
    return lo < t->composition.n && t->composition.v[3 * lo] == (int32_t)cp;
}

static void nfc_normalize(const T2VTokenizer *t, Scratch *w, const uint32_t *s, size_t n, CpBuf *out)
{
    CpBuf *d = &w->nfd;
    size_t i, i1;
    d->n = 0;
    /* full canonical decomposition; Hangul syllables arithmetically (Unicode 3.12) */
    for (i = 0; i < n; i++) {
        const int32_t *r;
        uint32_t c = s[i];
        if (c >= SBASE && c < SBASE + SCOUNT) {
            uint32_t si = c - SBASE;
            cp_push(d, LBASE + si / NCOUNT);
            cp_push(d, VBASE + si % NCOUNT / TCOUNT);
            if (si % TCOUNT) cp_push(d, TBASE + si % TCOUNT);
        } else if ((r = find_row(&t->decomposition, c)) != NULL) {
            int32_t k;
            for (k = 0; k < r[2]; k++) cp_push(d, (uint32_t)t->decomposition_data.v[r[1] + k]);
        } else {
            cp_push(d, c);
        }
    }
    w->ccc = (unsigned char *)grow_array(w->ccc, &w->ccc_cap, d->n + 1, 1);
    w->skipped = (unsigned char *)grow_array(w->skipped, &w->skipped_cap, d->n + 1, 1);
    for (i = 0; i < d->n; i++) w->ccc[i] = (unsigned char)canonical_combining_class(t, d->v[i]);
    memset(w->skipped, 0, d->n);
    canonical_ordering(w, d->v, w->ccc, d->n);

    /* composition, following CPython's nfc_nfkc loop: each starter that can begin a pair absorbs the
     * following unblocked characters it composes with; absorbed positions are skipped later */
    for (i = 0; i < d->n;) {
        uint32_t c = d->v[i];
        size_t base;
        int comb = 0;
        if (w->skipped[i]) { i++; continue; }
        if (c >= LBASE && c < LBASE + LCOUNT && i + 1 < d->n && d->v[i + 1] >= VBASE &&
            d->v[i + 1] < VBASE + VCOUNT) {
            uint32_t code = SBASE + ((c - LBASE) * VCOUNT + (d->v[i + 1] - VBASE)) * TCOUNT;
            i += 2;
            if (i < d->n && d->v[i] > TBASE && d->v[i] < TBASE + TCOUNT) code += d->v[i++] - TBASE;
            cp_push(out, code);
            continue;
        }
        if (!nfc_is_first(t, c)) { cp_push(out, c); i++; continue; }
        base = out->n;
        cp_push(out, c);
        for (i1 = i + 1; i1 < d->n; i1++) {
            int comb1 = w->ccc[i1];
            uint32_t code;
            if (comb) {
                if (comb1 == 0) break;
                if (comb >= comb1) continue;   /* blocked */
            }
            code = nfc_compose_pair(t, out->v[base], d->v[i1]);
            if (!code) {
                if (comb1 == 0) break;
                comb = comb1;
                continue;
            }
            out->v[base] = code;
            w->skipped[i1] = 1;
            if (!nfc_is_first(t, code)) break;
        }
        i++;
    }
}

/* ---- html.unescape ---- */

static int is_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static int is_hex_digit(uint32_t c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

static int hex_value(uint32_t c) { return is_digit(c) ? (int)(c - '0') : (int)((c | 0x20) - 'a' + 10); }

/* html._replace_charref for "&#NUM;": the _invalid_charrefs fix-ups (&#128; is '€', &#0; U+FFFD),
 * surrogates and numbers past U+10FFFF as U+FFFD, _invalid_codepoints dropped. Python's int has no limit;
 * here the number stops growing once past U+10FFFF, which gives the same U+FFFD. */
static void html_charref_number(const T2VTokenizer *t, uint32_t num, CpBuf *out)
{
    const int32_t *r = num <= MAX_CODEPOINT ? find_row(&t->invalid_charrefs, num) : NULL;
    if (r) cp_push(out, (uint32_t)r[1]);
    else if ((num >= 0xD800 && num <= 0xDFFF) || num > MAX_CODEPOINT) cp_push(out, REPLACEMENT_CHARACTER);
    else if (!find_row(&t->invalid_codepoints, num)) cp_push(out, num);
}

typedef struct { const char *name, *names; } EntityKey;

static int compare_entity_name(const void *key, const void *row)
{
    const EntityKey *k = (const EntityKey *)key;
    return strcmp(k->name, k->names + ((const int32_t *)row)[0]);
}

static const int32_t *html_entity(const T2VTokenizer *t, const char *name)
{
    EntityKey key;
    key.name = name;
    key.names = t->entity_names;
    if (!t->entities.n) return NULL;
    return (const int32_t *)bsearch(&key, t->entities.v, t->entities.n, 3 * sizeof(int32_t), compare_entity_name);
}

static int html_name_char(uint32_t c)  /* [^\t\n\f <&#;] */
{
    return c != '\t' && c != '\n' && c != '\f' && c != ' ' && c != '<' && c != '&' && c != '#' && c != ';';
}

/* html.unescape(s): re.sub of &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?) by _replace_charref.
 * A name is looked up with its ';' first; failing that, its longest prefix (of 2 characters or more) that is
 * an entity is replaced and the rest kept ("&ampfoo" is "&foo"); otherwise the text stays as it was. */
static void html_unescape(const T2VTokenizer *t, const uint32_t *s, size_t n, CpBuf *out)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i + 1, k, len, ascii, x;
        const int32_t *e = NULL;
        char name[40];
        if (s[i] != '&') { cp_push(out, s[i++]); continue; }
        if (j < n && s[j] == '#') {
            uint32_t num = 0;
            int base = 10;
            k = j + 1;
            if (k < n && is_digit(s[k])) base = 10;
            else if (k + 1 < n && (s[k] == 'x' || s[k] == 'X') && is_hex_digit(s[k + 1])) { base = 16; k++; }
            else { cp_push(out, '&'); i++; continue; }
            for (; k < n && (base == 16 ? is_hex_digit(s[k]) : is_digit(s[k])); k++)
                if (num <= MAX_CODEPOINT) num = num * (uint32_t)base + (uint32_t)hex_value(s[k]);
            if (k < n && s[k] == ';') k++;
            html_charref_number(t, num, out);
            i = k;
            continue;
        }
        for (k = j; k < n && k - j < 32 && html_name_char(s[k]); k++) {}
        if (k == j) { cp_push(out, '&'); i++; continue; }
        len = k - j + (k < n && s[k] == ';');   /* the group: name and its optional ';' */
        for (ascii = 0; ascii < len && s[j + ascii] < 0x80; ascii++) name[ascii] = (char)s[j + ascii];
        x = len;
        if (ascii == len) {
            name[len] = '\0';
            e = html_entity(t, name);
        }
        while (!e && x > 2) {                  /* for x in range(len(s)-1, 1, -1): s[:x] in html5 */
            x--;
            if (x > ascii) continue;
            name[x] = '\0';
            e = html_entity(t, name);
        }
        if (e) {
            cp_push(out, (uint32_t)e[1]);
            if (e[2] >= 0) cp_push(out, (uint32_t)e[2]);
        } else {
            cp_push(out, '&');
            x = 0;
        }
        for (; x < len; x++) cp_push(out, s[j + x]);
        i = j + len;
    }
}

/* ---------------------------------------------------------------------------------------------------- */
/* The CLIP regex and byte-level BPE */

/* One character of a literal of the pattern under re.IGNORECASE: 'S' and 'ſ' match 's'. */
static int regex_literal_char(const T2VTokenizer *t, uint32_t c, char lit)
{
    const int32_t *r;
    if (c == (unsigned char)lit) return 1;
    if (!((lit >= 'a' && lit <= 'z') || (lit >= 'A' && lit <= 'Z'))) return 0;
    r = find_row(&t->regex_ignorecase, c);
    return r && r[1] == (unsigned char)lit;
}

/* The length of the match of CLIP's pattern at s[pos], 0 if none:
 *   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * with re.IGNORECASE; alternatives are tried in this order, as a backtracking regex engine does. */
static size_t clip_regex_match(const T2VTokenizer *t, const uint32_t *s, size_t n, size_t pos)
{
    static const char *const literals[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve",
                                           "'m", "'ll", "'d"};
    size_t k, len;
    for (k = 0; k < sizeof literals / sizeof *literals; k++) {
        const char *lit = literals[k];
        for (len = 0; lit[len] && pos + len < n && regex_literal_char(t, s[pos + len], lit[len]); len++) {}
        if (!lit[len]) return len;
    }
    if (in_ranges(&t->regex_letter, s[pos])) {
        for (len = 1; pos + len < n && in_ranges(&t->regex_letter, s[pos + len]); len++) {}
        return len;
    }
    if (in_ranges(&t->regex_number, s[pos])) return 1;
    if (in_ranges(&t->regex_other, s[pos])) {
        for (len = 1; pos + len < n && in_ranges(&t->regex_other, s[pos + len]); len++) {}
        return len;
    }
    return 0;
}

static size_t pair_slot(const T2VTokenizer *t, uint64_t key)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & t->pair_mask;
}

static uint64_t pair_key(int32_t left, int32_t right) { return (uint64_t)(uint32_t)left << 32 | (uint32_t)right; }

/* The rank of merging symbols (left, right), -1 when the pair is not a merge. */
static int32_t merge_rank(const T2VTokenizer *t, int32_t left, int32_t right)
{
    uint64_t key = pair_key(left, right);
    size_t i;
    for (i = pair_slot(t, key);; i = (i + 1) & t->pair_mask) {
        if (t->pair_keys[i] == key) return t->pair_ranks[i];
        if (t->pair_keys[i] == UINT64_MAX) return -1;
    }
}

static void heap_push(Scratch *w, size_t *n, uint64_t x)
{
    size_t i = (*n)++;
    w->heap = (uint64_t *)grow_array(w->heap, &w->heap_cap, *n, sizeof *w->heap);
    while (i > 0 && w->heap[(i - 1) / 2] > x) { w->heap[i] = w->heap[(i - 1) / 2]; i = (i - 1) / 2; }
    w->heap[i] = x;
}

static uint64_t heap_pop(Scratch *w, size_t *n)
{
    uint64_t top = w->heap[0], x = w->heap[--*n];
    size_t i = 0, c;
    while ((c = 2 * i + 1) < *n) {
        if (c + 1 < *n && w->heap[c + 1] < w->heap[c]) c++;
        if (w->heap[c] >= x) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    w->heap[i] = x;
    return top;
}

static void push_merge(const T2VTokenizer *t, Scratch *w, size_t *heap_n, int32_t pos)
{
    int32_t r;
    if (pos < 0 || w->next[pos] < 0) return;
    r = merge_rank(t, w->sym[pos], w->sym[w->next[pos]]);
    if (r >= 0) heap_push(w, heap_n, (uint64_t)r << 32 | (uint32_t)pos);
}

/* CLIPTokenizer.bpe / simple_tokenizer.bpe of one regex match, ids appended. The word is its UTF-8 bytes,
 * each a symbol, the last one in its '</w>' form. Python repeatedly takes the lowest-ranked adjacent pair
 * and merges all its occurrences left to right; here a heap of (rank, position) does the same in
 * O(n log n): all entries of the lowest rank are taken together and merged in position order, entries that
 * a previous merge invalidated are skipped, and the pairs a merge creates are pushed. */
static void bpe_word(const T2VTokenizer *t, Scratch *w, const uint32_t *s, size_t n, IdBuf *ids)
{
    static const char sot[] = "<|startoftext|>", eot[] = "<|endoftext|>";
    size_t nb = 0, i, heap_n = 0, batch_n;
    int32_t p;
    if (n == sizeof sot - 1 || n == sizeof eot - 1) {   /* the bpe cache holds exactly these two strings */
        const char *lit = n == sizeof sot - 1 ? sot : eot;
        for (i = 0; i < n && s[i] == (unsigned char)lit[i]; i++) {}
        if (i == n) { id_push(ids, n == sizeof sot - 1 ? t->startoftext_id : t->endoftext_id); return; }
    }
    if (n > (size_t)INT32_MAX / 4) t2v_die("a word of the prompt is too long");
    w->bytes = (unsigned char *)grow_array(w->bytes, &w->bytes_cap, 4 * n, 1);
    for (i = 0; i < n; i++) nb += utf8_encode(s[i], w->bytes + nb);
    w->sym = (int32_t *)grow_array(w->sym, &w->sym_cap, nb, sizeof *w->sym);
    w->prev = (int32_t *)grow_array(w->prev, &w->prev_cap, nb, sizeof *w->prev);
    w->next = (int32_t *)grow_array(w->next, &w->next_cap, nb, sizeof *w->next);
    for (i = 0; i < nb; i++) {
        w->sym[i] = t->byte_ids[i == nb - 1][w->bytes[i]];
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < nb ? (int32_t)i + 1 : -1;
    }
    for (i = 0; i + 1 < nb; i++) push_merge(t, w, &heap_n, (int32_t)i);
    while (heap_n) {
        uint32_t rank = (uint32_t)(w->heap[0] >> 32);
        batch_n = 0;
        while (heap_n && (uint32_t)(w->heap[0] >> 32) == rank) {
            w->batch = (uint32_t *)grow_array(w->batch, &w->batch_cap, batch_n + 1, sizeof *w->batch);
            w->batch[batch_n++] = (uint32_t)heap_pop(w, &heap_n);
        }
        for (i = 0; i < batch_n; i++) {
            int32_t a = (int32_t)w->batch[i], b = w->next[a];
            if (w->sym[a] < 0 || b < 0 || merge_rank(t, w->sym[a], w->sym[b]) != (int32_t)rank) continue;
            w->sym[a] = t->merges[3 * (size_t)rank + 2];
            w->sym[b] = -1;
            w->next[a] = w->next[b];
            if (w->next[b] >= 0) w->prev[w->next[b]] = a;
            push_merge(t, w, &heap_n, w->prev[a]);
            push_merge(t, w, &heap_n, a);
        }
    }
    for (p = 0; p >= 0; p = w->next[p]) id_push(ids, w->sym[p]);
}

/* re.findall(pattern, text) and the BPE of each match. Where no alternative matches (a space, or U+0345,
 * which IGNORECASE leaves out of every class) findall moves on one character. */
static void clip_regex_bpe(const T2VTokenizer *t, Scratch *w, const uint32_t *s, size_t n, IdBuf *ids)
{
    size_t pos = 0, len;
    while (pos < n) {
        len = clip_regex_match(t, s, n, pos);
        if (!len) { pos++; continue; }
        bpe_word(t, w, s + pos, len, ids);
        pos += len;
    }
}

/* ---------------------------------------------------------------------------------------------------- */
/* T2V_TOKENIZER_OPENCLIP: simple_tokenizer.encode */

/* whitespace_clean: re.sub(r"\s+", " ", text).strip() (\s of the regex module: White_Space) */
static void whitespace_clean(const T2VTokenizer *t, const uint32_t *s, size_t n, CpBuf *out)
{
    size_t i = 0, begin, end, start = out->n;
    while (i < n) {
        if (!in_ranges(&t->regex_space, s[i])) { cp_push(out, s[i++]); continue; }
        while (i < n && in_ranges(&t->regex_space, s[i])) i++;
        cp_push(out, ' ');
    }
    begin = start;
    end = out->n;
    str_strip(t, out->v, &begin, &end);
    if (end > begin) memmove(out->v + start, out->v + begin, (end - begin) * sizeof *out->v);
    out->n = start + (end - begin);
}

static void openclip_encode(const T2VTokenizer *t, Scratch *w, const uint32_t *s, size_t n, IdBuf *ids)
{
    CpBuf a = {0}, b = {0};
    size_t begin = 0, end;
    /* basic_clean: ftfy.fix_text (identity here), html.unescape(html.unescape(text)), strip() */
    html_unescape(t, s, n, &a);
    html_unescape(t, a.v, a.n, &b);
    end = b.n;
    str_strip(t, b.v, &begin, &end);
    a.n = 0;
    whitespace_clean(t, end > begin ? b.v + begin : b.v, end - begin, &a); /* b.v is NULL for an empty prompt */
    b.n = 0;
    str_lower(t, a.v, a.n, &b);
    clip_regex_bpe(t, w, b.v, b.n, ids);
    free(a.v);
    free(b.v);
}

/* ---------------------------------------------------------------------------------------------------- */
/* T2V_TOKENIZER_DIFFUSERS: transformers' CLIPTokenizer without ftfy */

/* BasicTokenizer._clean_text: drop NUL, U+FFFD and categories C* but \t \n \r; whitespace to ' ' */
static void basic_tokenizer_clean_text(const T2VTokenizer *t, const uint32_t *s, size_t n, CpBuf *out)
{
    size_t i;
    for (i = 0; i < n; i++) {
        uint32_t c = s[i];
        const char *cat;
        if (c == 0 || c == REPLACEMENT_CHARACTER) continue;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') { cp_push(out, ' '); continue; }
        cat = unicodedata_category(t, c);
        if (cat[0] == 'C') continue;                       /* _is_control */
        cp_push(out, cat[0] == 'Z' && cat[1] == 's' ? ' ' : c); /* _is_whitespace */
    }
}

/* BasicTokenizer._is_chinese_char: BERT's fixed CJK ideograph ranges (part of transformers' code, not of
 * the Unicode data: they are not the same as \p{Han}) */
static int basic_tokenizer_is_chinese_char(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static void basic_tokenizer_tokenize_chinese_chars(const uint32_t *s, size_t n, CpBuf *out)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (!basic_tokenizer_is_chinese_char(s[i])) { cp_push(out, s[i]); continue; }
        cp_push(out, ' ');
        cp_push(out, s[i]);
        cp_push(out, ' ');
    }
}

/* BasicTokenizer(do_lower_case=True, strip_accents=False, do_split_on_punc=False).tokenize, joined with
 * " " as CLIPTokenizer._tokenize does: clean, space out CJK, NFC, split on whitespace, lower() each token. */
static void basic_tokenizer_tokenize(const T2VTokenizer *t, Scratch *w, const uint32_t *s, size_t n, CpBuf *out)
{
    CpBuf a = {0}, b = {0}, c = {0};
    size_t i = 0, j;
    basic_tokenizer_clean_text(t, s, n, &a);
    basic_tokenizer_tokenize_chinese_chars(a.v, a.n, &b);
    nfc_normalize(t, w, b.v, b.n, &c);
    while (i < c.n) {                                    /* whitespace_tokenize: strip().split() */
        if (str_isspace(t, c.v[i])) { i++; continue; }
        for (j = i; j < c.n && !str_isspace(t, c.v[j]); j++) {}
        if (out->n) cp_push(out, ' ');
        str_lower(t, c.v + i, j - i, out);
        i = j;
    }
    free(a.v);
    free(b.v);
    free(c.v);
}

/* PreTrainedTokenizer.tokenize: the raw text is first cut at the added tokens (transformers' Trie: the
 * leftmost match, the longest there), which become their ids directly; the pieces between go through
 * CLIPTokenizer._tokenize. With '!' as pad token this is where every '!' turns into id 0. */
static void diffusers_encode(const T2VTokenizer *t, Scratch *w, const uint32_t *s, size_t n, IdBuf *ids)
{
    CpBuf text = {0};
    size_t pos = 0, piece = 0;
    while (pos <= n) {
        int k, best = -1;
        if (pos < n) {
            for (k = 0; k < t->n_added; k++) {
                const AddedToken *a = &t->added[k];
                if (a->n <= n - pos && !memcmp(a->cp, s + pos, a->n * sizeof *s) &&
                    (best < 0 || a->n > t->added[best].n))
                    best = k;
            }
            if (best < 0) { pos++; continue; }
        }
        if (pos > piece) {
            text.n = 0;
            basic_tokenizer_tokenize(t, w, s + piece, pos - piece, &text);
            clip_regex_bpe(t, w, text.v, text.n, ids);
        }
        if (best < 0) break;
        id_push(ids, t->added[best].id);
        pos += t->added[best].n;
        piece = pos;
    }
    free(text.v);
}

/* ---------------------------------------------------------------------------------------------------- */
/* The API */

int t2v_tokenize(const T2VTokenizer *t, const char *text, T2VTokenizerMode mode, int32_t *ids, int max_len)
{
    CpBuf s = {0};
    IdBuf body = {0};
    Scratch w;
    size_t total, i, keep;
    memset(&w, 0, sizeof w);
    if (!text) text = "";
    utf8_decode_replace((const unsigned char *)text, strlen(text), &s);
    if (mode == T2V_TOKENIZER_OPENCLIP) openclip_encode(t, &w, s.v, s.n, &body);
    else diffusers_encode(t, &w, s.v, s.n, &body);

    /* bos + body + eos, cut to max_len with eos kept last (Diffusers: truncation=True, max_length=
     * model_max_length; simple_tokenizer: tokens[:context_length], tokens[-1] = eot), then padding */
    total = body.n + 2;
    if (max_len > 0) {
        size_t len = (size_t)max_len;
        keep = total < len ? total : len;
        for (i = 0; i < len; i++) ids[i] = t->pad_id;
        ids[0] = t->bos_id;
        for (i = 1; i + 1 < keep; i++) ids[i] = body.v[i - 1];
        ids[keep - 1] = t->eos_id;
    }
    free(s.v);
    free(body.v);
    free(w.nfd.v);
    free(w.ccc);
    free(w.skipped);
    free(w.sort_v);
    free(w.sort_c);
    free(w.bytes);
    free(w.sym);
    free(w.prev);
    free(w.next);
    free(w.heap);
    free(w.batch);
    return total > INT_MAX ? INT_MAX : (int)total;
}

/* The id of a vocabulary string, -1 when absent. */
static int32_t vocab_id(const char *vocab, size_t size, const char *token)
{
    size_t i = 0;
    int32_t id = 0;
    while (i < size) {
        if (!strcmp(vocab + i, token)) return id;
        i += strlen(vocab + i) + 1;
        id++;
    }
    return -1;
}

static void add_token(T2VTokenizer *t, const T2VModel *m, const char *key, int32_t id)
{
    const char *v = t2v_config(m, key);
    CpBuf cps = {0};
    int k;
    if (!v || !*v) t2v_die("%s: the model config has no %s: re-export it with export.py", t2v_model_path(m), key);
    utf8_decode_replace((const unsigned char *)v, strlen(v), &cps);
    if (cps.n > sizeof t->added[0].cp / sizeof t->added[0].cp[0]) {
        free(cps.v);
        t2v_die("%s: model config %s is longer than t2v supports", t2v_model_path(m), key);
    }
    for (k = 0; k < t->n_added; k++)
        if (t->added[k].n == cps.n && !memcmp(t->added[k].cp, cps.v, cps.n * sizeof *cps.v)) break;
    if (k == t->n_added) {
        memcpy(t->added[k].cp, cps.v, cps.n * sizeof *cps.v);
        t->added[k].n = cps.n;
        t->added[k].id = id;
        t->n_added++;
    }
    free(cps.v);
}

static void load_unicode_tables(T2VTokenizer *t, const T2VModel *m)
{
    const T2VTensor *x;
    size_t i;
    int k;
    struct { const char *name; int width, order; Table *table; } specs[] = {
        {"unicode/category", 3, RANGES, &t->category},
        {"unicode/isspace", 2, RANGES, &t->isspace_},
        {"unicode/regex_space", 2, RANGES, &t->regex_space},
        {"unicode/regex_letter", 2, RANGES, &t->regex_letter},
        {"unicode/regex_number", 2, RANGES, &t->regex_number},
        {"unicode/regex_other", 2, RANGES, &t->regex_other},
        {"unicode/regex_ignorecase", 2, KEYED, &t->regex_ignorecase},
        {"unicode/lower", -1, KEYED, &t->lower},
        {"unicode/cased", 2, RANGES, &t->cased},
        {"unicode/case_ignorable", 2, RANGES, &t->case_ignorable},
        {"unicode/ccc", 3, RANGES, &t->ccc},
        {"unicode/decomposition", 3, KEYED, &t->decomposition},
        {"unicode/decomposition_data", 0, UNSORTED, &t->decomposition_data},
        {"unicode/composition", 3, PAIR_KEYED, &t->composition},
        {"html/entities", 3, UNSORTED, &t->entities},
        {"html/invalid_charrefs", 2, KEYED, &t->invalid_charrefs},
        {"html/invalid_codepoints", 0, KEYED, &t->invalid_codepoints},
    };
    for (k = 0; k < (int)(sizeof specs / sizeof *specs); k++)
        load_table(m, specs[k].name, specs[k].width, specs[k].order, specs[k].table);

    x = t2v_find_tensor(m, "unicode/category_names");
    if (!x || x->dtype != T2V_U8 || x->ndim != 2 || x->shape[1] != 2 || x->shape[0] < 1 || x->shape[0] > 64)
        t2v_die("%s: the model file has no valid unicode/category_names table: re-export it with export.py",
                t2v_model_path(m));
    t->category_names = (const char *)x->data;
    t->n_categories = (int)x->shape[0];
    x = t2v_find_tensor(m, "html/entity_names");
    if (!x || x->dtype != T2V_U8 || x->ndim != 1 || x->shape[0] < 1 ||
        ((const char *)x->data)[x->shape[0] - 1] != '\0')
        t2v_die("%s: the model file has no valid html/entity_names table: re-export it with export.py",
                t2v_model_path(m));
    t->entity_names = (const char *)x->data;
    t->entity_names_size = (size_t)x->shape[0];

    /* the values must be usable as they are: indices in range, code points valid */
    for (i = 0; i < t->category.n; i++)
        if (t->category.v[3 * i + 2] < 0 || t->category.v[3 * i + 2] >= t->n_categories) goto bad;
    for (i = 0; i < t->ccc.n; i++)
        if (t->ccc.v[3 * i + 2] < 1 || t->ccc.v[3 * i + 2] > 255) goto bad;
    for (i = 0; i < t->lower.n; i++) {
        const int32_t *r = t->lower.v + i * (size_t)t->lower.width;
        if (!valid_codepoint(r[1])) goto bad;
        for (k = 2; k < t->lower.width; k++) if (r[k] != -1 && !valid_codepoint(r[k])) goto bad;
    }
    for (i = 0; i < t->decomposition.n; i++) {
        const int32_t *r = t->decomposition.v + 3 * i;
        if (r[1] < 0 || r[2] < 1 || (size_t)r[1] + (size_t)r[2] > t->decomposition_data.n) goto bad;
    }
    for (i = 0; i < t->decomposition_data.n; i++) if (!valid_codepoint(t->decomposition_data.v[i])) goto bad;
    for (i = 0; i < t->composition.n; i++)
        if (!valid_codepoint(t->composition.v[3 * i + 2]) || t->composition.v[3 * i + 2] == 0) goto bad;
    for (i = 0; i < t->invalid_charrefs.n; i++) if (!valid_codepoint(t->invalid_charrefs.v[2 * i + 1])) goto bad;
    for (i = 0; i < t->regex_ignorecase.n; i++)
        if (t->regex_ignorecase.v[2 * i + 1] < 'A' || t->regex_ignorecase.v[2 * i + 1] > 'z') goto bad;
    for (i = 0; i < t->entities.n; i++) {
        const int32_t *r = t->entities.v + 3 * i;
        if (r[0] < 0 || (size_t)r[0] >= t->entity_names_size || !valid_codepoint(r[1]) ||
            (r[2] != -1 && !valid_codepoint(r[2])) || strlen(t->entity_names + r[0]) > 32 ||
            (i && strcmp(t->entity_names + r[-3], t->entity_names + r[0]) >= 0))
            goto bad;
    }
    return;
bad:
    t2v_die("%s: the model file's unicode/html tables are inconsistent: re-export it with export.py", t2v_model_path(m));
}

T2VTokenizer *t2v_tokenizer_new(const T2VModel *m)
{
    const T2VTensor *vocab = t2v_find_tensor(m, "tokenizer/vocab");
    const T2VTensor *merges = t2v_find_tensor(m, "tokenizer/merges");
    const T2VTensor *byte_ids = t2v_find_tensor(m, "tokenizer/byte_ids");
    T2VTokenizer *t = (T2VTokenizer *)calloc(1, sizeof *t);
    const char *path = t2v_model_path(m);
    size_t i, cap;
    int b, row;
    if (!t) out_of_memory();

    /* vocabulary: NUL-terminated strings in id order */
    if (!vocab || vocab->dtype != T2V_U8 || vocab->ndim != 1 || vocab->shape[0] < 1 ||
        ((const char *)vocab->data)[vocab->shape[0] - 1] != '\0')
        t2v_die("%s: the model file has no valid tokenizer/vocab: re-export it with export.py", path);
    for (i = 0; i < (size_t)vocab->shape[0]; i++)
        if (!((const char *)vocab->data)[i]) {
            if (t->n_vocab == INT32_MAX) t2v_die("%s: tokenizer/vocab is too large", path);
            t->n_vocab++;
        }
    if (!byte_ids || byte_ids->dtype != T2V_I32 || byte_ids->ndim != 2 || byte_ids->shape[0] != 2 ||
        byte_ids->shape[1] != 256)
        t2v_die("%s: the model file has no valid tokenizer/byte_ids: re-export it with export.py", path);
    for (row = 0; row < 2; row++)
        for (b = 0; b < 256; b++) {
            int32_t id = ((const int32_t *)byte_ids->data)[row * 256 + b];
            if (id < 0 || id >= t->n_vocab)
                t2v_die("%s: tokenizer/byte_ids has an id outside the vocabulary", path);
            t->byte_ids[row][b] = id;
        }

    /* merges: the hash table (left, right) -> rank; a repeated pair keeps its last rank, as Python's
     * dict(zip(merges, range(len(merges)))) does */
    if (!merges || merges->dtype != T2V_I32 || merges->ndim != 2 || merges->shape[1] != 3 ||
        merges->shape[0] < 0 || merges->shape[0] > INT32_MAX / 4)
        t2v_die("%s: the model file has no valid tokenizer/merges: re-export it with export.py", path);
    t->merges = (const int32_t *)merges->data;
    t->n_merges = (int32_t)merges->shape[0];
    for (cap = 16; cap < 2 * (size_t)t->n_merges + 1; cap *= 2) {}
    t->pair_keys = (uint64_t *)malloc(cap * sizeof *t->pair_keys);
    t->pair_ranks = (int32_t *)malloc(cap * sizeof *t->pair_ranks);
    if (!t->pair_keys || !t->pair_ranks) out_of_memory();
    t->pair_mask = cap - 1;
    for (i = 0; i < cap; i++) t->pair_keys[i] = UINT64_MAX;
    for (i = 0; i < (size_t)t->n_merges; i++) {
        const int32_t *r = t->merges + 3 * i;
        uint64_t key;
        size_t slot;
        if (r[0] < 0 || r[0] >= t->n_vocab || r[1] < 0 || r[1] >= t->n_vocab || r[2] < 0 || r[2] >= t->n_vocab)
            t2v_die("%s: tokenizer/merges has an id outside the vocabulary", path);
        key = pair_key(r[0], r[1]);
        for (slot = pair_slot(t, key); t->pair_keys[slot] != UINT64_MAX && t->pair_keys[slot] != key;
             slot = (slot + 1) & t->pair_mask) {}
        t->pair_keys[slot] = key;
        t->pair_ranks[slot] = (int32_t)i;
    }

    /* special ids and added tokens, all from the tokenizer config */
    t->bos_id = t2v_config_int(m, "tokenizer.bos_id", 0, t->n_vocab - 1);
    t->eos_id = t2v_config_int(m, "tokenizer.eos_id", 0, t->n_vocab - 1);
    t->pad_id = t2v_config_int(m, "tokenizer.pad_id", 0, t->n_vocab - 1);
    t->unk_id = t2v_config_int(m, "tokenizer.unk_id", 0, t->n_vocab - 1);
    add_token(t, m, "tokenizer.bos_token", t->bos_id);
    add_token(t, m, "tokenizer.eos_token", t->eos_id);
    add_token(t, m, "tokenizer.unk_token", t->unk_id);
    add_token(t, m, "tokenizer.pad_token", t->pad_id);
    /* CLIP's bpe cache; a vocabulary without them falls back to the unknown token, as transformers does */
    t->startoftext_id = vocab_id((const char *)vocab->data, (size_t)vocab->shape[0], "<|startoftext|>");
    t->endoftext_id = vocab_id((const char *)vocab->data, (size_t)vocab->shape[0], "<|endoftext|>");
    if (t->startoftext_id < 0) t->startoftext_id = t->unk_id;
    if (t->endoftext_id < 0) t->endoftext_id = t->unk_id;

    load_unicode_tables(t, m);
    return t;
}

void t2v_tokenizer_free(T2VTokenizer *t)
{
    if (!t) return;
    free(t->pair_keys);
    free(t->pair_ranks);
    free(t);
}
