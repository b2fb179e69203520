/* t2v.c: the ModelScope text-to-video model (damo-vilab/text-to-video-ms-1.7b) as Hugging Face Diffusers'
 * TextToVideoSDPipeline runs it, in one dependency-free C99 file (plus tokenizer.c).
 *
 * Read it top to bottom; the data flows the same way:
 *   1. errors, allocation, timing         6. UNet3DConditionModel
 *   2. the model file                     7. AutoencoderKL (VAE)
 *   3. .npy files                         8. torch-compatible noise and the schedulers
 *   4. kernels                            9. the pipeline
 *   5. CLIP text encoder                 10. video output (Y4M, PPM)   11. the command line
 *
 * Activations are channels-last: a video is [frames][pixels][channels] with batch folded into frames
 * (row b*F + f, as Diffusers' (B*F, C, H, W)), so linear layers, 1x1 convolutions and attention
 * projections are one matmul over tokens, and a 3x3 convolution is a matmul over gathered 3x3 patches.
 * Diffusers' layouts appear only at the .npy boundary.
 */
#define _POSIX_C_SOURCE 200809L
#include "t2v.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__unix__) || defined(__APPLE__)
#define T2V_POSIX 1
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#else
#define T2V_POSIX 0
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

/* ============================================================================================
 * 1. Errors, checked allocation, timing
 * ============================================================================================ */

/* A file being written under a temporary name; removed if the program dies or is interrupted. */
static char g_partial_output[4096];

static void remove_partial_output(void) {
    if (g_partial_output[0]) {
        remove(g_partial_output);
        g_partial_output[0] = 0;
    }
}

static void die(const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "t2v: error: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    remove_partial_output();
    exit(1);
}

static void on_signal(int sig) {
    remove_partial_output();
    signal(sig, SIG_DFL);
    raise(sig);
}

static size_t mul_size(size_t a, size_t b) {
    if (a && b > SIZE_MAX / a) die("size overflow (%zu x %zu)", a, b);
    return a * b;
}

static void *xmalloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) die("out of memory: %.1f MiB for %s", bytes / 1048576.0, what);
    return p;
}

static void *xcalloc(size_t n, size_t size, const char *what) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) die("out of memory: %.1f MiB for %s", (double)n * size / 1048576.0, what);
    return p;
}

static float *alloc_floats(size_t n, const char *what) {
    return (float *)xmalloc(mul_size(n, sizeof(float)), what);
}

static double now_seconds(void) {
#if T2V_POSIX
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
#else
    return (double)clock() / CLOCKS_PER_SEC;
#endif
}

static int host_is_little_endian(void) {
    const uint32_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* ============================================================================================
 * 2. The model file (layout in weights/README.md): magic, version, config lines, tensor table, data.
 *    The data is mmap-ed and weights are used in place; a plain read is the fallback.
 * ============================================================================================ */

#define T2V_MAGIC "T2VMODEL"
#define T2V_VERSION 1
#define T2V_ALIGN 64

typedef struct { char *key, *value; } ConfigEntry;

struct T2VModel {
    const char *path;
    unsigned char *file;  /* the whole file, mapped or read */
    size_t file_size;
    int mapped;           /* 1: mmap-ed; 0: read into read_buffer */
    void *read_buffer;
    char *config_text;    /* NUL-separated copies of the config lines */
    ConfigEntry *config;
    int n_config;
    T2VTensor *tensors;   /* sorted by name */
    int n_tensors;
    char *names;
    struct TextEncoder *text_encoder;
    struct UNet3D *unet;
    struct VAE *vae;
    T2VTokenizer *tokenizer;
};

static size_t dtype_size(int dtype) {
    switch (dtype) {
    case T2V_F32: case T2V_I32: return 4;
    case T2V_I8: case T2V_U8: return 1;
    default: return 0;
    }
}

/* Bounds-checked little-endian reader over the file header. */
typedef struct { const unsigned char *p; size_t pos, size; const char *path; } Reader;

static void reader_need(Reader *r, size_t n, const char *what) {
    if (n > r->size - r->pos)
        die("%s: truncated or corrupt model file (header ends inside %s); re-export it with export.py",
            r->path, what);
}

static uint64_t read_le(Reader *r, int bytes, const char *what) {
    uint64_t v = 0;
    int i;
    reader_need(r, (size_t)bytes, what);
    for (i = 0; i < bytes; i++) v |= (uint64_t)r->p[r->pos + i] << (8 * i);
    r->pos += bytes;
    return v;
}

static int compare_tensor_names(const void *a, const void *b) {
    return strcmp(((const T2VTensor *)a)->name, ((const T2VTensor *)b)->name);
}

static void parse_config(T2VModel *m, const unsigned char *text, size_t size) {
    size_t i, lines = 0;
    char *s;
    m->config_text = (char *)xmalloc(size + 1, "model config");
    memcpy(m->config_text, text, size);
    m->config_text[size] = 0;
    if (strlen(m->config_text) != size) die("%s: corrupt model file (NUL byte in the config)", m->path);
    for (i = 0; i < size; i++) lines += text[i] == '\n';
    m->config = (ConfigEntry *)xcalloc(lines + 1, sizeof(ConfigEntry), "model config");
    for (s = m->config_text; *s;) {
        char *end = strchr(s, '\n'), *eq;
        if (!end) die("%s: corrupt model file (config does not end with a newline)", m->path);
        *end = 0;
        eq = strchr(s, '=');
        if (!eq) die("%s: corrupt model file (config line '%.60s' has no '=')", m->path, s);
        *eq = 0;
        m->config[m->n_config].key = s;
        m->config[m->n_config].value = eq + 1;
        m->n_config++;
        s = end + 1;
    }
}

static void parse_tensor_table(T2VModel *m, Reader *r) {
    uint32_t n = (uint32_t)read_le(r, 4, "the tensor count");
    size_t names_size = 0, names_pos = 0, header_end, start = r->pos;
    uint32_t i;
    int k;
    if (n > r->size / 16) die("%s: corrupt model file (%u tensors announced)", m->path, n);
    /* first pass: total name length */
    for (i = 0; i < n; i++) {
        size_t len = (size_t)read_le(r, 2, "a tensor name");
        int ndim;
        reader_need(r, len, "a tensor name");
        r->pos += len;
        names_size += len + 1;
        read_le(r, 1, "a tensor dtype");
        ndim = (int)read_le(r, 1, "a tensor rank");
        read_le(r, 4, "a tensor group size");
        reader_need(r, (size_t)ndim * 8 + 32, "a tensor shape");
        r->pos += (size_t)ndim * 8 + 32;
    }
    header_end = r->pos;
    r->pos = start;
    m->tensors = (T2VTensor *)xcalloc(n, sizeof(T2VTensor), "tensor table");
    m->names = (char *)xmalloc(names_size, "tensor names");
    m->n_tensors = (int)n;
    for (i = 0; i < n; i++) {
        T2VTensor *t = &m->tensors[i];
        size_t len = (size_t)read_le(r, 2, "a tensor name"), esize;
        uint64_t numel = 1, offset, nbytes, scale_offset, scale_bytes;
        if (len == 0) die("%s: corrupt model file (empty tensor name)", m->path);
        memcpy(m->names + names_pos, r->p + r->pos, len);
        m->names[names_pos + len] = 0;
        t->name = m->names + names_pos;
        if (strlen(t->name) != len) die("%s: corrupt model file (NUL in a tensor name)", m->path);
        names_pos += len + 1;
        r->pos += len;
        t->dtype = (int)read_le(r, 1, "a tensor dtype");
        t->ndim = (int)read_le(r, 1, "a tensor rank");
        t->group_size = (int)read_le(r, 4, "a tensor group size");
        esize = dtype_size(t->dtype);
        if (!esize) die("%s: tensor %s has unknown dtype code %d", m->path, t->name, t->dtype);
        if (t->ndim > T2V_MAX_DIMS) die("%s: tensor %s has rank %d (at most %d)", m->path, t->name, t->ndim, T2V_MAX_DIMS);
        for (k = 0; k < t->ndim; k++) {
            int64_t d = (int64_t)read_le(r, 8, "a tensor shape");
            if (d < 0 || (d > 0 && numel > ((uint64_t)1 << 48) / (uint64_t)d))
                die("%s: tensor %s has an invalid shape", m->path, t->name);
            t->shape[k] = d;
            numel *= (uint64_t)d;
        }
        offset = read_le(r, 8, "a tensor offset");
        nbytes = read_le(r, 8, "a tensor size");
        scale_offset = read_le(r, 8, "a tensor scale offset");
        scale_bytes = read_le(r, 8, "a tensor scale size");
        if (nbytes != numel * esize)
            die("%s: tensor %s: %llu bytes stored for %llu elements", m->path, t->name,
                (unsigned long long)nbytes, (unsigned long long)numel);
        if (offset % T2V_ALIGN || offset < header_end || offset > m->file_size || nbytes > m->file_size - offset)
            die("%s: tensor %s lies outside the file (offset %llu, %llu bytes, file %zu bytes): "
                "the file is truncated or corrupt; re-export it with export.py",
                m->path, t->name, (unsigned long long)offset, (unsigned long long)nbytes, m->file_size);
        t->data = m->file + offset;
        t->nbytes = (size_t)nbytes;
        if (t->dtype == T2V_I8) {
            uint64_t groups;
            if (t->group_size <= 0 || numel % (uint64_t)t->group_size)
                die("%s: int8 tensor %s has group size %d", m->path, t->name, t->group_size);
            groups = numel / (uint64_t)t->group_size;
            if (scale_bytes != groups * 4 || scale_offset % 4 || scale_offset < header_end ||
                scale_offset > m->file_size || scale_bytes > m->file_size - scale_offset)
                die("%s: int8 tensor %s has corrupt scales", m->path, t->name);
            t->scales = (const float *)(m->file + scale_offset);
        } else if (t->group_size != 0 || scale_bytes != 0) {
            die("%s: tensor %s: scales given for a non-int8 tensor", m->path, t->name);
        }
    }
    qsort(m->tensors, n, sizeof(T2VTensor), compare_tensor_names);
    for (i = 1; i < n; i++)
        if (!strcmp(m->tensors[i - 1].name, m->tensors[i].name))
            die("%s: tensor %s appears twice", m->path, m->tensors[i].name);
}

/* The model file is little-endian; a big-endian host reads it into memory and swaps (no mmap). */
static void swap_to_host_order(T2VModel *m) {
    int i;
    size_t j;
    for (i = 0; i < m->n_tensors; i++) {
        T2VTensor *t = &m->tensors[i];
        unsigned char *p = (unsigned char *)t->data;
        size_t n4 = dtype_size(t->dtype) == 4 ? t->nbytes / 4 : 0;
        for (j = 0; j < n4; j++, p += 4) {
            unsigned char a = p[0], b = p[1];
            p[0] = p[3]; p[1] = p[2]; p[2] = b; p[3] = a;
        }
        p = (unsigned char *)t->scales;
        for (j = 0; p && j < t->nbytes / (size_t)(t->group_size ? t->group_size : 1); j++, p += 4) {
            unsigned char a = p[0], b = p[1];
            p[0] = p[3]; p[1] = p[2]; p[2] = b; p[3] = a;
        }
    }
}

static void read_model_file(T2VModel *m, int allow_mmap) {
    FILE *f = fopen(m->path, "rb");
    if (!f) die("cannot open model file %s: %s", m->path, strerror(errno));
#if T2V_POSIX
    {
        struct stat st;
        if (fstat(fileno(f), &st) != 0) die("cannot read %s: %s", m->path, strerror(errno));
        if (!S_ISREG(st.st_mode)) die("%s is not a regular file", m->path);
        m->file_size = (size_t)st.st_size;
    }
    if (allow_mmap && m->file_size > 0) {
        void *p = mmap(NULL, m->file_size, PROT_READ, MAP_PRIVATE, fileno(f), 0);
        if (p != MAP_FAILED) {
            m->file = (unsigned char *)p;
            m->mapped = 1;
            fclose(f);
            return;
        }
    }
#else
    {
        long size;
        (void)allow_mmap;
        if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0) die("cannot read %s: %s", m->path, strerror(errno));
        m->file_size = (size_t)size;
    }
#endif
    {   /* plain read into a 64-byte aligned buffer, so tensor data keeps the file's alignment */
        unsigned char *raw = (unsigned char *)xmalloc(m->file_size + T2V_ALIGN, "the model file");
        size_t pad = (T2V_ALIGN - (size_t)((uintptr_t)raw % T2V_ALIGN)) % T2V_ALIGN, got;
        rewind(f);
        got = fread(raw + pad, 1, m->file_size, f);
        if (got != m->file_size) die("cannot read %s: %s", m->path, ferror(f) ? strerror(errno) : "short read");
        m->file = raw + pad;
        m->read_buffer = raw;
    }
    fclose(f);
}


const char *t2v_config(const T2VModel *m, const char *key) {
    int i;
    for (i = 0; i < m->n_config; i++)
        if (!strcmp(m->config[i].key, key)) return m->config[i].value;
    return NULL;
}

const T2VTensor *t2v_find_tensor(const T2VModel *m, const char *name) {
    T2VTensor probe;
    probe.name = name;
    return (const T2VTensor *)bsearch(&probe, m->tensors, (size_t)m->n_tensors, sizeof(T2VTensor),
                                      compare_tensor_names);
}

static const char *config_required(const T2VModel *m, const char *key) {
    const char *v = t2v_config(m, key);
    if (!v) die("%s: the model config has no %s; re-export the model with export.py", m->path, key);
    return v;
}

static int config_int(const T2VModel *m, const char *key) {
    const char *v = config_required(m, key);
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < INT_MIN || x > INT_MAX)
        die("%s: config %s = '%s' is not an integer", m->path, key, v);
    return (int)x;
}

static double config_double(const T2VModel *m, const char *key) {
    const char *v = config_required(m, key);
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end) die("%s: config %s = '%s' is not a number", m->path, key, v);
    return x;
}

static int config_bool(const T2VModel *m, const char *key) {
    const char *v = config_required(m, key);
    if (!strcmp(v, "true")) return 1;
    if (!strcmp(v, "false")) return 0;
    die("%s: config %s = '%s' is not true/false", m->path, key, v);
    return 0;
}

/* Comma-separated list; returns the count. */
static int config_list(const T2VModel *m, const char *key, char items[][64], int max_items) {
    const char *v = config_required(m, key);
    int n = 0;
    while (*v) {
        const char *comma = strchr(v, ',');
        size_t len = comma ? (size_t)(comma - v) : strlen(v);
        if (n == max_items || len >= 64) die("%s: config %s has too many or too long items", m->path, key);
        memcpy(items[n], v, len);
        items[n][len] = 0;
        n++;
        v += len + (comma ? 1 : 0);
    }
    return n;
}

static int config_ints(const T2VModel *m, const char *key, int *out, int max_items) {
    char items[16][64];
    int i, n = config_list(m, key, items, max_items < 16 ? max_items : 16);
    for (i = 0; i < n; i++) {
        char *end;
        long x = strtol(items[i], &end, 10);
        if (end == items[i] || *end || x <= 0 || x > 1 << 20)
            die("%s: config %s item '%s' is not a positive integer", m->path, key, items[i]);
        out[i] = (int)x;
    }
    return n;
}

static void load_text_encoder(T2VModel *m);
static void load_unet(T2VModel *m);
static void load_vae(T2VModel *m);

T2VModel *t2v_load(const char *path) {
    T2VModel *m = (T2VModel *)xcalloc(1, sizeof(T2VModel), "model");
    Reader r;
    uint32_t version;
    uint64_t config_size;
    char err[256];
    const char *no_mmap = getenv("T2V_NO_MMAP");
    m->path = path;
    read_model_file(m, !(no_mmap && *no_mmap && strcmp(no_mmap, "0")) && host_is_little_endian());
    r.p = m->file;
    r.pos = 0;
    r.size = m->file_size;
    r.path = path;
    if (m->file_size < 8 || memcmp(m->file, T2V_MAGIC, 8) != 0)
        die("%s is not a t2v model file (no T2VMODEL magic); make one with export.py", path);
    r.pos = 8;
    version = (uint32_t)read_le(&r, 4, "the version");
    if (version != T2V_VERSION)
        die("%s: model file version %u, this t2v reads version %d; re-export it with this export.py", path,
            version, T2V_VERSION);
    read_le(&r, 4, "the flags");
    config_size = read_le(&r, 8, "the config size");
    reader_need(&r, (size_t)config_size, "the config");
    parse_config(m, m->file + r.pos, (size_t)config_size);
    r.pos += (size_t)config_size;
    parse_tensor_table(m, &r);
    if (!host_is_little_endian()) swap_to_host_order(m);
    m->tokenizer = t2v_tokenizer_new(m, err, sizeof err);
    if (!m->tokenizer) die("%s: %s", path, err);
    load_text_encoder(m);
    load_unet(m);
    load_vae(m);
    return m;
}

/* (stages follow in later sections) */
static void load_text_encoder(T2VModel *m) { (void)m; }
static void load_unet(T2VModel *m) { (void)m; }
static void load_vae(T2VModel *m) { (void)m; }

void t2v_free(T2VModel *m) {
    if (!m) return;
    t2v_tokenizer_free(m->tokenizer);
#if T2V_POSIX
    if (m->mapped) munmap(m->file, m->file_size);
#endif
    free(m->read_buffer);
    free(m->config_text);
    free(m->config);
    free(m->tensors);
    free(m->names);
    free(m);
}

int t2v_context_length(const T2VModel *m) { return config_int(m, "tokenizer.model_max_length"); }
const T2VTokenizer *t2v_model_tokenizer(const T2VModel *m) { return m->tokenizer; }

#ifndef TESTING
int main(int argc, char **argv) {
    T2VModel *m;
    int32_t ids[4096];
    int i, n, mode = T2V_TOKENIZER_DIFFUSERS;
    if (argc < 4 || strcmp(argv[1], "tokenize")) {
        fprintf(stderr, "usage: t2v tokenize MODEL.t2v PROMPT [--tokenizer diffusers|openclip]\n");
        return 1;
    }
    if (argc >= 6 && !strcmp(argv[4], "--tokenizer")) mode = !strcmp(argv[5], "openclip");
    m = t2v_load(argv[2]);
    n = t2v_context_length(m);
    t2v_tokenize(t2v_model_tokenizer(m), argv[3], (T2VTokenizerMode)mode, ids, n);
    for (i = 0; i < n; i++) printf(i ? " %d" : "%d", (int)ids[i]);
    printf("\n");
    t2v_free(m);
    return 0;
}
#endif
