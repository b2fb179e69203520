/* t2v.c: the ModelScope text-to-video model (damo-vilab/text-to-video-ms-1.7b) as Hugging Face Diffusers'
 * TextToVideoSDPipeline runs it, in dependency-free C99: this file and tokenizer.c (the CLIP tokenizer).
 *
 * Read it top to bottom. Sections 1-4 are the ground the model stands on; 5-10 follow the data, from the
 * prompt to the video:
 *   1. errors, memory, timing             5. CLIP text encoder        9. the pipeline
 *   2. the model file and its config      6. UNet3DConditionModel    10. video output (Y4M, PPM)
 *   3. .npy files                         7. noise and schedulers    11. the command line
 *   4. kernels and layers                 8. AutoencoderKL (VAE)
 * Each Diffusers / transformers module is one function named after it in snake_case (CrossAttnDownBlock3D
 * and DownBlock3D are down_block_3d(), ...): README.md's "Reading t2v.c" maps them.
 *
 * Activations are channels-last: a video is [frames][pixels][channels] with batch folded into frames
 * (row b*F + f, as Diffusers' (B*F, C, H, W)), so linear layers, 1x1 convolutions and attention
 * projections are one matmul over tokens, and a 3x3 convolution is a matmul over gathered 3x3 patches.
 * Diffusers' layouts appear only at the .npy boundary.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* and, where the system has them, madvise(MADV_DONTNEED) and madvise(MADV_HUGEPAGE), which POSIX leaves out */
#include "t2v.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
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

/* OpenMP is optional: with -fopenmp, OMP(directive) is "#pragma omp directive" and PARALLEL_FOR(clauses) is
 * "#pragma omp parallel for clauses"; without it they are nothing (so -Wall does not warn about unknown
 * pragmas) and the program runs the same loops serially, with the same results. */
#ifdef _OPENMP
#include <omp.h>
#define T2V_PRAGMA(...) _Pragma(#__VA_ARGS__)
#define OMP(...) T2V_PRAGMA(omp __VA_ARGS__)
#else
#define OMP(...)
#endif
#define PARALLEL_FOR(...) OMP(parallel for __VA_ARGS__)

/* 512-bit vectors wherever the target has them. gcc -march=native tunes for the CPU it finds, and for some AVX-512
 * CPUs it prefers 256-bit vectors; then the matmul's 8 x 48 tile (MM_NR) does not fit the 16 registers that
 * 256-bit code uses and is spilled to the stack. On an AVX-512 Xeon VM whose masked CPU model gcc 12 took for
 * Rocket Lake, every product ran at half speed and the UNet3D forward at a third of the FMA peak (65.6 s against
 * 38.5 s this way, with the same bits: the vector width never changes the order of a sum here). The pragma covers
 * what includes this file too (the tests, the benchmark's FMA loop). clang does not take this option in a pragma;
 * the Makefile gives it -mprefer-vector-width=512. */
#if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("prefer-vector-width=512")
#endif

/* ============================================================================================
 * 1. Errors, memory (checked allocation, the scratch arena), timing
 * ============================================================================================ */

/* A file being written under a temporary name; removed if the program dies or is interrupted. */
static char g_partial_output[4096];

static void remove_partial_output(void) {
    if (g_partial_output[0]) {
        remove(g_partial_output);
        g_partial_output[0] = 0;
    }
}

#ifdef TESTING
/* The unit tests (test/test_kernels.c) check refusals: when they set t2v_die_catch, t2v_die() keeps the
 * message in t2v_die_message and jumps back to them instead of exiting. */
jmp_buf *t2v_die_catch;
char t2v_die_message[1024];
#endif

/* The one way errors are reported, in t2v.c and tokenizer.c alike: a bad model file, argument, input or
 * allocation prints "t2v: error: ..." and exits with code 1, removing a half-written output first. No stage
 * can do anything useful after such an error, so none returns one. */
void t2v_die(const char *fmt, ...) {
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
#ifdef TESTING
    if (t2v_die_catch) {
        jmp_buf *target = t2v_die_catch;
        t2v_die_catch = NULL;
        snprintf(t2v_die_message, sizeof t2v_die_message, "%s", message);
        longjmp(*target, 1);
    }
#endif
    fflush(stdout);
    fprintf(stderr, "t2v: error: %s\n", message);
    remove_partial_output();
    exit(1);
}

static void on_signal(int sig) {
    remove_partial_output();
    signal(sig, SIG_DFL);
    raise(sig);
}

static size_t mul_size(size_t a, size_t b) {
    if (a && b > SIZE_MAX / a) t2v_die("size overflow (%zu x %zu)", a, b);
    return a * b;
}

static void *xmalloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) t2v_die("out of memory: %.1f MiB for %s", bytes / 1048576.0, what);
    return p;
}

static void *xcalloc(size_t n, size_t size, const char *what) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) t2v_die("out of memory: %.1f MiB for %s", (double)n * size / 1048576.0, what);
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

/* ---- scratch memory: a stack of float blocks, reused by every forward pass ----
 * Stages push temporaries and pop back to a mark when done. Blocks are allocated the first time a forward
 * needs them and kept: the allocation pattern of a forward is fixed by the config and the video size, so
 * the denoising loop's later steps allocate nothing. A new block is at least as large as all the blocks before it
 * together: an allocation that does not fit in what is left of a block moves on to the next one, and with fixed
 * 64 MiB blocks the default UNet3D forward's activations of 40-140 MiB each got blocks of their own: its 704 MiB of
 * scratch took 21 blocks (1570 MiB), and the `unet` command peaked at 7063 MiB resident. With growing blocks (5, of
 * which the last is only partly touched) it peaked at 6416 MiB. */

#define ARENA_BLOCK_FLOATS ((size_t)1 << 24) /* 64 MiB: the first block, and the least a new one holds */
#define ARENA_MAX_BLOCKS 256

typedef struct { float *data; void *raw; size_t cap; } ArenaBlock;
typedef struct {
    ArenaBlock blocks[ARENA_MAX_BLOCKS];
    int n_blocks, cur;  /* cur: block being filled */
    size_t used;        /* floats used in blocks[cur] */
    size_t in_use, peak;
} Arena;
typedef struct { int cur; size_t used, in_use; } ArenaMark;

/* p moved up to the next multiple of 64 bytes (a cache line and an AVX-512 vector): allocate 64 bytes more */
static void *align_64(void *p) {
    return (char *)p + (64 - (uintptr_t)p % 64) % 64;
}

#if T2V_POSIX && (defined(MADV_HUGEPAGE) || defined(MADV_DONTNEED))
/* madvise(advice) over the whole pages that lie inside [start, start + bytes). The address comes as a number: as a
 * const pointer to freshly allocated memory, gcc 12 warns that it may be read uninitialised. */
static void advise_pages_inside(uintptr_t start, size_t bytes, int advice) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = (start + page - 1) / page * page, hi = (start + bytes) / page * page;
    if (page > 0 && hi > lo) madvise((void *)lo, hi - lo, advice);
}
#endif

/* The forward's products stream activations of tens of MiB (32768 x 320 floats is 40 MiB) through the caches, a
 * few KiB of each 4 KiB page at a time, and every new page costs a TLB miss, which under a VM's nested paging is
 * a long walk. So the arena asks for transparent huge pages (2 MiB on x86-64) where Linux offers them: 32768 x 320
 * x 320 went from 200 to 215 GFLOP/s, 8192 x 2560 x 640 from 250 to 266 (2 threads of an AVX-512 Xeon VM). A hint
 * only: no result changes, and elsewhere nothing happens. */
static void advise_huge_pages(void *data, size_t bytes) {
#if T2V_POSIX && defined(MADV_HUGEPAGE)
    advise_pages_inside((uintptr_t)data, bytes, MADV_HUGEPAGE);
#else
    (void)data;
    (void)bytes;
#endif
}

static float *arena_alloc(Arena *a, size_t n) {
    float *p;
    n = (n + 15) & ~(size_t)15; /* keep 64-byte alignment */
    while (a->cur < a->n_blocks && a->blocks[a->cur].cap - a->used < n) {
        a->cur++;
        a->used = 0;
    }
    if (a->cur == a->n_blocks) {
        ArenaBlock *b;
        size_t cap = ARENA_BLOCK_FLOATS, before = 0;
        int i;
        for (i = 0; i < a->n_blocks; i++) before += a->blocks[i].cap;
        if (cap < before) cap = before;
        if (cap < n) cap = n;
        if (a->n_blocks == ARENA_MAX_BLOCKS) t2v_die("scratch memory: too many blocks");
        b = &a->blocks[a->n_blocks++];
        b->raw = xmalloc(mul_size(cap, sizeof(float)) + 64, "scratch activations");
        advise_huge_pages(b->raw, cap * sizeof(float) + 64);
        b->data = (float *)align_64(b->raw);
        b->cap = cap;
        a->used = 0;
    }
    p = a->blocks[a->cur].data + a->used;
    a->used += n;
    a->in_use += n;
    if (a->in_use > a->peak) a->peak = a->in_use;
    return p;
}

static ArenaMark arena_mark(const Arena *a) {
    ArenaMark m;
    m.cur = a->cur;
    m.used = a->used;
    m.in_use = a->in_use;
    return m;
}

static void arena_reset(Arena *a, ArenaMark m) {
    a->cur = m.cur;
    a->used = m.used;
    a->in_use = m.in_use;
}

static void arena_free(Arena *a) {
    int i;
    for (i = 0; i < a->n_blocks; i++) free(a->blocks[i].raw);
    memset(a, 0, sizeof *a);
}

/* ============================================================================================
 * 2. The model file (layout in weights/README.md): magic, version, config lines, tensor table, data;
 *    the configuration readers.
 *    The data is mmap-ed and weights are used in place (the UNet's float32 ones are packed once: unet_pack_weights);
 *    a plain read is the fallback.
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
    int context_length;   /* tokenizer.model_max_length: 77 token ids per prompt */
    float **copies;       /* float32 copies of small float16 tensors (norms, biases), freed with the model */
    int n_copies, cap_copies;
    struct PackedPanels **packed; /* the UNet's float32 weights, to be packed once into matmul panels (unet_pack_weights) */
    int n_packed, cap_packed, packed_done;
};

static size_t dtype_size(int dtype) {
    switch (dtype) {
    case T2V_F32: case T2V_I32: return 4;
    case T2V_F16: return 2;
    case T2V_I8: case T2V_U8: return 1;
    default: return 0;
    }
}

/* Bounds-checked little-endian reader over the file header. */
typedef struct { const unsigned char *p; size_t pos, size; const char *path; } Reader;

static void reader_need(Reader *r, size_t n, const char *what) {
    if (n > r->size - r->pos)
        t2v_die("%s: truncated or corrupt model file (header ends inside %s); re-export it with export.py",
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
    if (strlen(m->config_text) != size) t2v_die("%s: corrupt model file (NUL byte in the config)", m->path);
    for (i = 0; i < size; i++) lines += text[i] == '\n';
    m->config = (ConfigEntry *)xcalloc(lines + 1, sizeof(ConfigEntry), "model config");
    for (s = m->config_text; *s;) {
        char *end = strchr(s, '\n'), *eq;
        if (!end) t2v_die("%s: corrupt model file (config does not end with a newline)", m->path);
        *end = 0;
        eq = strchr(s, '=');
        if (!eq) t2v_die("%s: corrupt model file (config line '%.60s' has no '=')", m->path, s);
        *eq = 0;
        m->config[m->n_config].key = s;
        m->config[m->n_config].value = eq + 1;
        m->n_config++;
        s = end + 1;
    }
}

typedef struct { const unsigned char *begin, *end; const char *name; } ByteRange;

static int compare_ranges(const void *a, const void *b) {
    const ByteRange *x = (const ByteRange *)a, *y = (const ByteRange *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* Each byte of the data belongs to at most one tensor (or its scales): export.py never shares bytes, and a
 * file that does is corrupt or crafted. */
static void refuse_overlapping_data(const T2VModel *m) {
    ByteRange *ranges = (ByteRange *)xcalloc((size_t)m->n_tensors * 2 + 1, sizeof(ByteRange), "tensor table");
    size_t n = 0, i;
    int k;
    for (k = 0; k < m->n_tensors; k++) {
        const T2VTensor *t = &m->tensors[k];
        if (t->nbytes) {
            ranges[n].begin = (const unsigned char *)t->data;
            ranges[n].end = ranges[n].begin + t->nbytes;
            ranges[n++].name = t->name;
        }
        if (t->scales) {
            ranges[n].begin = (const unsigned char *)t->scales;
            ranges[n].end = ranges[n].begin + t->nbytes / (size_t)t->group_size * 4;
            ranges[n++].name = t->name;
        }
    }
    qsort(ranges, n, sizeof *ranges, compare_ranges);
    for (i = 1; i < n; i++)
        if (ranges[i].begin < ranges[i - 1].end)
            t2v_die("%s: corrupt model file (the data of tensors %s and %s overlap)", m->path, ranges[i - 1].name, ranges[i].name);
    free(ranges);
}

static void parse_tensor_table(T2VModel *m, Reader *r) {
    uint32_t n = (uint32_t)read_le(r, 4, "the tensor count");
    size_t names_size = 0, names_pos = 0, header_end, start = r->pos;
    uint32_t i;
    int k;
    if (n > r->size / 16) t2v_die("%s: corrupt model file (%u tensors announced)", m->path, n);
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
        if (len == 0) t2v_die("%s: corrupt model file (empty tensor name)", m->path);
        memcpy(m->names + names_pos, r->p + r->pos, len);
        m->names[names_pos + len] = 0;
        t->name = m->names + names_pos;
        if (strlen(t->name) != len) t2v_die("%s: corrupt model file (NUL in a tensor name)", m->path);
        names_pos += len + 1;
        r->pos += len;
        t->dtype = (int)read_le(r, 1, "a tensor dtype");
        t->ndim = (int)read_le(r, 1, "a tensor rank");
        t->group_size = (int)read_le(r, 4, "a tensor group size");
        esize = dtype_size(t->dtype);
        if (!esize) t2v_die("%s: tensor %s has unknown dtype code %d", m->path, t->name, t->dtype);
        if (t->ndim > T2V_MAX_DIMS) t2v_die("%s: tensor %s has rank %d (at most %d)", m->path, t->name, t->ndim, T2V_MAX_DIMS);
        for (k = 0; k < t->ndim; k++) {
            int64_t d = (int64_t)read_le(r, 8, "a tensor shape");
            if (d < 0 || (d > 0 && numel > ((uint64_t)1 << 48) / (uint64_t)d))
                t2v_die("%s: tensor %s has an invalid shape", m->path, t->name);
            t->shape[k] = d;
            numel *= (uint64_t)d;
        }
        offset = read_le(r, 8, "a tensor offset");
        nbytes = read_le(r, 8, "a tensor size");
        scale_offset = read_le(r, 8, "a tensor scale offset");
        scale_bytes = read_le(r, 8, "a tensor scale size");
        if (nbytes != numel * esize)
            t2v_die("%s: tensor %s: %llu bytes stored for %llu elements", m->path, t->name,
                (unsigned long long)nbytes, (unsigned long long)numel);
        if (offset % T2V_ALIGN || offset < header_end || offset > m->file_size || nbytes > m->file_size - offset)
            t2v_die("%s: tensor %s lies outside the file (offset %llu, %llu bytes, file %zu bytes): "
                "the file is truncated or corrupt; re-export it with export.py",
                m->path, t->name, (unsigned long long)offset, (unsigned long long)nbytes, m->file_size);
        t->data = m->file + offset;
        t->nbytes = (size_t)nbytes;
        if (t->dtype == T2V_I8) {
            uint64_t groups;
            if (t->group_size != 32 && t->group_size != 64)
                t2v_die("%s: int8 tensor %s has group size %d; t2v reads groups of 32 or 64 values (weights/README.md)",
                    m->path, t->name, t->group_size);
            if (numel % (uint64_t)t->group_size)
                t2v_die("%s: int8 tensor %s: %llu values do not split into groups of %d", m->path, t->name,
                    (unsigned long long)numel, t->group_size);
            groups = numel / (uint64_t)t->group_size;
            if (scale_bytes != groups * 4 || scale_offset % 4 || scale_offset < header_end ||
                scale_offset > m->file_size || scale_bytes > m->file_size - scale_offset)
                t2v_die("%s: int8 tensor %s has corrupt scales", m->path, t->name);
            t->scales = (const float *)(m->file + scale_offset);
        } else if (t->group_size != 0 || scale_bytes != 0) {
            t2v_die("%s: tensor %s: scales given for a non-int8 tensor", m->path, t->name);
        }
    }
    refuse_overlapping_data(m);
    qsort(m->tensors, n, sizeof(T2VTensor), compare_tensor_names);
    for (i = 1; i < n; i++)
        if (!strcmp(m->tensors[i - 1].name, m->tensors[i].name))
            t2v_die("%s: tensor %s appears twice", m->path, m->tensors[i].name);
}

static void swap_bytes2(unsigned char *p, size_t count) {
    size_t i;
    for (i = 0; i < count; i++, p += 2) {
        unsigned char a = p[0];
        p[0] = p[1];
        p[1] = a;
    }
}

static void swap_bytes4(unsigned char *p, size_t count) {
    size_t i;
    for (i = 0; i < count; i++, p += 4) {
        unsigned char a = p[0], b = p[1];
        p[0] = p[3];
        p[1] = p[2];
        p[2] = b;
        p[3] = a;
    }
}

/* The model file is little-endian; a big-endian host reads it into memory and swaps (no mmap). */
static void swap_to_host_order(T2VModel *m) {
    int i;
    for (i = 0; i < m->n_tensors; i++) {
        T2VTensor *t = &m->tensors[i];
        if (dtype_size(t->dtype) == 4) swap_bytes4((unsigned char *)t->data, t->nbytes / 4);
        if (dtype_size(t->dtype) == 2) swap_bytes2((unsigned char *)t->data, t->nbytes / 2);
        if (t->scales) swap_bytes4((unsigned char *)t->scales, t->nbytes / (size_t)t->group_size);
    }
}

/* An int8 tensor's scales multiply every weight it has: a NaN or infinite scale would poison every output, so
 * it is refused at load (after any byte swap), like every other field of the file. */
static void refuse_bad_scales(const T2VModel *m) {
    int i;
    for (i = 0; i < m->n_tensors; i++) {
        const T2VTensor *t = &m->tensors[i];
        size_t g, groups = t->scales ? t->nbytes / (size_t)t->group_size : 0;
        for (g = 0; g < groups; g++)
            if (!isfinite(t->scales[g]))
                t2v_die("%s: int8 tensor %s has a non-finite scale (group %zu); the file is corrupt, re-export it",
                    m->path, t->name, g);
    }
}

static FILE *open_input(const char *path, const char *what, int regular_only); /* section 3 */

static void read_model_file(T2VModel *m, int allow_mmap) {
    FILE *f = open_input(m->path, "model file ", 1);
#if T2V_POSIX
    {
        struct stat st;
        if (fstat(fileno(f), &st) != 0) t2v_die("cannot read %s: %s", m->path, strerror(errno));
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
        if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0) t2v_die("cannot read %s: %s", m->path, strerror(errno));
        m->file_size = (size_t)size;
    }
#endif
    {   /* plain read into a 64-byte aligned buffer, so tensor data keeps the file's alignment */
        unsigned char *raw = (unsigned char *)xmalloc(m->file_size + T2V_ALIGN, "the model file");
        size_t pad = (T2V_ALIGN - (size_t)((uintptr_t)raw % T2V_ALIGN)) % T2V_ALIGN, got;
        rewind(f);
        got = fread(raw + pad, 1, m->file_size, f);
        if (got != m->file_size) t2v_die("cannot read %s: %s", m->path, ferror(f) ? strerror(errno) : "short read");
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
    memset(&probe, 0, sizeof probe);
    probe.name = name;
    return (const T2VTensor *)bsearch(&probe, m->tensors, (size_t)m->n_tensors, sizeof(T2VTensor),
                                      compare_tensor_names);
}

/* Limits on what a config may ask for: far above the real models, low enough that no size overflows. */
#define MAX_CHANNELS 65536
#define MAX_BLOCKS 8          /* entries of block_out_channels */
#define MAX_LAYERS 62         /* layers_per_block: the up path keeps (layers + 1) * blocks skips */

/* ---- configuration readers: every value t2v reads has a type and a range, and a value outside it is an
 * error naming the key ---- */

static const char *config_required(const T2VModel *m, const char *key) {
    const char *v = t2v_config(m, key);
    if (!v) t2v_die("%s: the model config has no %s; re-export the model with export.py", m->path, key);
    return v;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* A number as written in decimal: [-+]digits, and unless integer [.digits][e[-+]digits]. strtod alone would
 * also take hexadecimal (0x10), inf, nan and leading spaces. */
static int is_decimal(const char *s, int integer) {
    int digits = 0;
    if (*s == '-' || *s == '+') s++;
    for (; is_digit(*s); s++) digits++;
    if (!integer && *s == '.')
        for (s++; is_digit(*s); s++) digits++;
    if (!digits) return 0;
    if (!integer && (*s == 'e' || *s == 'E')) {
        s += s[1] == '-' || s[1] == '+' ? 2 : 1;
        if (!is_digit(*s)) return 0;
        while (is_digit(*s)) s++;
    }
    return !*s;
}

/* A finite decimal number; 0 if v is not one. */
static int parse_decimal(const char *v, double *out) {
    if (!is_decimal(v, 0)) return 0;
    *out = strtod(v, NULL);
    return isfinite(*out);
}

static int parse_int_in(const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    *out = strtol(v, &end, 10);
    return is_decimal(v, 1) && end != v && !*end && !errno && *out >= lo && *out <= hi;
}

int t2v_config_int(const T2VModel *m, const char *key, long lo, long hi) {
    const char *v = config_required(m, key);
    long x;
    if (!parse_int_in(v, lo, hi, &x)) t2v_die("%s: config %s = '%s' is not an integer in [%ld, %ld]", m->path, key, v, lo, hi);
    return (int)x;
}

/* a finite number in [lo, hi] */
static double config_number(const T2VModel *m, const char *key, double lo, double hi) {
    const char *v = config_required(m, key);
    double x;
    if (!parse_decimal(v, &x) || x < lo || x > hi)
        t2v_die("%s: config %s = '%s' is not a finite number in [%g, %g]", m->path, key, v, lo, hi);
    return x;
}

static int config_bool(const T2VModel *m, const char *key) {
    const char *v = config_required(m, key);
    if (!strcmp(v, "true")) return 1;
    if (strcmp(v, "false")) t2v_die("%s: config %s = '%s' is not true/false", m->path, key, v);
    return 0;
}

/* A comma-separated list of 1 to max_items items; returns the count. */
static int config_list(const T2VModel *m, const char *key, char items[][64], int max_items) {
    const char *v = config_required(m, key);
    int n = 0;
    if (!*v) t2v_die("%s: config %s is an empty list", m->path, key);
    for (;;) {
        const char *comma = strchr(v, ',');
        size_t len = comma ? (size_t)(comma - v) : strlen(v);
        if (n == max_items || len >= 64) t2v_die("%s: config %s has too many or too long items", m->path, key);
        memcpy(items[n], v, len);
        items[n][len] = 0;
        n++;
        if (!comma) return n;
        v = comma + 1;
    }
}

/* A list of 1 to max_items integers in [lo, hi]; returns the count. */
static int config_ints(const T2VModel *m, const char *key, int *out, int max_items, long lo, long hi) {
    char items[16][64];
    int i, n = config_list(m, key, items, max_items < 16 ? max_items : 16);
    for (i = 0; i < n; i++) {
        long x;
        if (!parse_int_in(items[i], lo, hi, &x))
            t2v_die("%s: config %s item '%s' is not an integer in [%ld, %ld]", m->path, key, items[i], lo, hi);
        out[i] = (int)x;
    }
    return n;
}

/* Each model part is loaded and freed in its own section (5, 6 and 8). */
static void load_text_encoder(T2VModel *m);
static void load_unet(T2VModel *m);
static void load_vae(T2VModel *m);
static void free_text_encoder(struct TextEncoder *te);
static void free_unet(struct UNet3D *u);
static void free_vae(struct VAE *v);
static void free_packed_panels(T2VModel *m);

/* Everything after the bytes are in memory: the header, the config, the tensor table, then each part.
 * (The fuzz targets, test/fuzz/, call it on bytes of their own.) */
static void parse_model(T2VModel *m) {
    Reader r;
    uint32_t version;
    uint64_t config_size;
    r.p = m->file;
    r.pos = 0;
    r.size = m->file_size;
    r.path = m->path;
    if (m->file_size < 8 || memcmp(m->file, T2V_MAGIC, 8) != 0)
        t2v_die("%s is not a t2v model file (no T2VMODEL magic); make one with export.py", m->path);
    r.pos = 8;
    version = (uint32_t)read_le(&r, 4, "the version");
    if (version != T2V_VERSION)
        t2v_die("%s: model file version %u, this t2v reads version %d; re-export it with this export.py", m->path,
            version, T2V_VERSION);
    if (read_le(&r, 4, "the flags") != 0) t2v_die("%s: model file flags are not 0 (the format defines none)", m->path);
    config_size = read_le(&r, 8, "the config size");
    reader_need(&r, (size_t)config_size, "the config");
    parse_config(m, m->file + r.pos, (size_t)config_size);
    r.pos += (size_t)config_size;
    parse_tensor_table(m, &r);
    if (!host_is_little_endian()) swap_to_host_order(m);
    refuse_bad_scales(m);
    m->context_length = t2v_config_int(m, "tokenizer.model_max_length", 2, 4096);
    m->tokenizer = t2v_tokenizer_new(m);
    load_text_encoder(m);
    load_unet(m);
    load_vae(m);
}

T2VModel *t2v_load(const char *path) {
    T2VModel *m = (T2VModel *)xcalloc(1, sizeof(T2VModel), "model");
    const char *no_mmap = getenv("T2V_NO_MMAP");
    m->path = path;
    read_model_file(m, !(no_mmap && *no_mmap && strcmp(no_mmap, "0")) && host_is_little_endian());
    parse_model(m);
    return m;
}

/* Which pipeline the file holds (export.py keeps model_index.json's _class_name): ModelScope's
 * TextToVideoSDPipeline (a UNet3DConditionModel) or a Stable Diffusion 1.x StableDiffusionPipeline (a
 * UNet2DConditionModel, run as Text2Video-Zero). */
int t2v_is_stable_diffusion(const T2VModel *m) {
    const char *pipeline = config_required(m, "model_index._class_name");
    if (!strcmp(pipeline, "StableDiffusionPipeline")) return 1;
    if (strcmp(pipeline, "TextToVideoSDPipeline") && strcmp(pipeline, "VideoToVideoSDPipeline"))
        t2v_die("%s holds a %s; t2v runs TextToVideoSDPipeline and StableDiffusionPipeline files", m->path, pipeline);
    return 0;
}

void t2v_free(T2VModel *m) {
    if (!m) return;
    t2v_tokenizer_free(m->tokenizer);
    free_text_encoder(m->text_encoder);
    free_unet(m->unet);
    free_vae(m->vae);
    while (m->n_copies > 0) free(m->copies[--m->n_copies]);
    free(m->copies);
    free_packed_panels(m);
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

int t2v_context_length(const T2VModel *m) { return m->context_length; }
const T2VTokenizer *t2v_model_tokenizer(const T2VModel *m) { return m->tokenizer; }
const char *t2v_model_path(const T2VModel *m) { return m->path; }

/* ============================================================================================
 * 3. Files: inputs and outputs (what t2v promises about them), non-finite numbers; .npy files, the boundary
 *    where Diffusers' layouts come in and go out (float32, C order)
 * ============================================================================================ */

/* ---- files: inputs are opened without blocking; an output never replaces an input, and a regular file
 * appears complete or not at all (README.md "Files: what t2v promises") ---- */

/* The inputs of this run by device and inode: an output that is one of them is refused. */
#define MAX_INPUTS 16
static struct { const char *path; unsigned long long dev, ino; } g_inputs[MAX_INPUTS];
static int g_n_inputs;

/* Remembers which files are this run's inputs ("-" and paths that do not exist are skipped). */
static void protect_inputs(const char *const *paths, int n) {
#if T2V_POSIX
    int i;
    for (i = 0; i < n; i++) {
        struct stat st;
        if (!paths[i] || !strcmp(paths[i], "-") || stat(paths[i], &st) != 0) continue;
        if (g_n_inputs == MAX_INPUTS) t2v_die("too many input files");
        g_inputs[g_n_inputs].path = paths[i];
        g_inputs[g_n_inputs].dev = (unsigned long long)st.st_dev;
        g_inputs[g_n_inputs].ino = (unsigned long long)st.st_ino;
        g_n_inputs++;
    }
#else
    (void)paths; (void)n;
#endif
}

/* Links included: st_dev and st_ino name the file itself, whatever path leads to it. */
static void refuse_output_equal_to_inputs(const char *output) {
#if T2V_POSIX
    struct stat st;
    int i;
    if (stat(output, &st) != 0) return;
    for (i = 0; i < g_n_inputs; i++)
        if ((unsigned long long)st.st_dev == g_inputs[i].dev && (unsigned long long)st.st_ino == g_inputs[i].ino)
            t2v_die("output %s is the input %s: t2v never writes over its inputs", output, g_inputs[i].path);
#else
    (void)output;
#endif
}

/* Opens an input for reading. Opening never blocks (a FIFO with no writer would block open() forever):
 * O_NONBLOCK is set for the open and cleared after. The model must be a regular file, as it is mapped. */
static FILE *open_input(const char *path, const char *what, int regular_only) {
#if T2V_POSIX
    struct stat st;
    FILE *f;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) t2v_die("cannot open %s%s: %s", what, path, strerror(errno));
    if (fstat(fd, &st) != 0) t2v_die("cannot read %s%s: %s", what, path, strerror(errno));
    if (S_ISDIR(st.st_mode)) t2v_die("cannot read %s%s: it is a directory", what, path);
    if (regular_only && !S_ISREG(st.st_mode)) t2v_die("%s%s is not a regular file", what, path);
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) t2v_die("cannot read %s%s: %s", what, path, strerror(errno));
    f = fdopen(fd, "rb");
    if (!f) t2v_die("cannot read %s%s: %s", what, path, strerror(errno));
    return f;
#else
    FILE *f = fopen(path, "rb");
    (void)regular_only;
    if (!f) t2v_die("cannot open %s%s: %s", what, path, strerror(errno));
    return f;
#endif
}

/* A whole text file (standard input for "-"), NUL-terminated: for prompts, which argv limits to 128 KiB. */
static char *read_text_file(const char *path, const char *what, size_t max_bytes) {
    FILE *f = strcmp(path, "-") ? open_input(path, what, 0) : stdin;
    size_t size = 0, cap = 65536;
    char *text = (char *)xmalloc(cap + 1, what);
    for (;;) {
        size_t got = fread(text + size, 1, cap - size, f);
        size += got;
        if (size < cap) break;
        if (cap >= max_bytes) t2v_die("%s%s is larger than %zu bytes", what, path, max_bytes);
        cap *= 2;
        text = (char *)realloc(text, cap + 1);
        if (!text) t2v_die("out of memory reading %s%s", what, path);
    }
    if (ferror(f)) t2v_die("cannot read %s%s: %s", what, path, strerror(errno));
    if (f != stdin) fclose(f);
    text[size] = 0;
    if (strlen(text) != size) t2v_die("%s%s contains a NUL byte", what, path);
    return text;
}

/* An output being written: to standard output ("-"), in place (a pipe, FIFO or device), or to a temporary
 * file beside the target that is renamed over it when complete. */
typedef struct { FILE *f; const char *path; char tmp[4096]; } Output;

/* Creates PATH.t2v-tmp-XXXXXXXX exclusively: O_EXCL fails on any existing name, a symbolic link included,
 * so nothing planted there is followed or truncated, and two runs never share a temporary. */
static FILE *create_temporary(const char *path, char *tmp, size_t tmp_size) {
#if T2V_POSIX
    static unsigned counter;
    int attempt;
    for (attempt = 0; attempt < 100; attempt++) {
        /* nanoseconds below 1e9 fit an unsigned long everywhere (a larger double would not: undefined) */
        unsigned long r = (unsigned long)getpid() * 2654435761u ^ (unsigned long)(fmod(now_seconds(), 1.0) * 1e9) ^ ++counter * 40503u;
        int fd;
        FILE *f;
        if ((size_t)snprintf(tmp, tmp_size, "%s.t2v-tmp-%08lx", path, r & 0xffffffffUL) >= tmp_size)
            t2v_die("output path too long: %s", path);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOCTTY, 0666);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) t2v_die("cannot write %s: %s", path, strerror(errno));
        strcpy(g_partial_output, tmp);
        if (!(f = fdopen(fd, "wb"))) t2v_die("cannot write %s: %s", path, strerror(errno));
        return f;
    }
    t2v_die("cannot write %s: no free temporary name beside it", path);
    return NULL;
#else   /* C99 has no exclusive create: a fixed name */
    FILE *f;
    if ((size_t)snprintf(tmp, tmp_size, "%s.tmp", path) >= tmp_size) t2v_die("output path too long: %s", path);
    if (!(f = fopen(tmp, "wb"))) t2v_die("cannot write %s: %s", path, strerror(errno));
    strcpy(g_partial_output, tmp);
    return f;
#endif
}

/* A path that exists and is neither a regular file nor a directory (a pipe, FIFO or device) is written in
 * place, never replaced. Returns its stream, or NULL for any other path. */
static FILE *open_in_place(const char *path) {
#if T2V_POSIX
    struct stat st;
    int fd;
    FILE *f;
    if (stat(path, &st) != 0 || S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) return NULL;
    fd = open(path, O_WRONLY | O_NOCTTY); /* a FIFO waits for its reader here, as a shell redirection does */
    if (fd < 0) t2v_die("cannot write %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || S_ISREG(st.st_mode)) t2v_die("cannot write %s: it changed while being opened", path);
    if (!(f = fdopen(fd, "wb"))) t2v_die("cannot write %s: %s", path, strerror(errno));
    return f;
#else
    (void)path;
    return NULL;
#endif
}

static void refuse_directory(const char *path) {
#if T2V_POSIX
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) t2v_die("cannot write %s: it is a directory", path);
#else
    (void)path;
#endif
}

static void open_output(Output *o, const char *path) {
    o->path = path;
    o->tmp[0] = 0;
    if (!strcmp(path, "-")) {
        o->f = stdout;
        return;
    }
    refuse_output_equal_to_inputs(path);
    refuse_directory(path);
    o->f = open_in_place(path);
    if (!o->f) o->f = create_temporary(path, o->tmp, sizeof o->tmp);
}

/* Every write error surfaces here (a full disk, a closed pipe: SIGPIPE is ignored, so it is EPIPE). */
static void close_output(Output *o) {
    int failed = ferror(o->f);
    if (o->f == stdout) {
        if (fflush(stdout) != 0 || failed) t2v_die("cannot write to standard output: %s", strerror(errno));
        return;
    }
    if (fclose(o->f) != 0 || failed) t2v_die("cannot write %s: %s", o->path, strerror(errno));
    if (o->tmp[0] && rename(o->tmp, o->path) != 0) t2v_die("cannot rename %s to %s: %s", o->tmp, o->path, strerror(errno));
    g_partial_output[0] = 0;
}

/* Checks early that the output can be written, so that a long run does not fail at its end. */
static void check_writable(const char *path) {
    Output o;
    if (!strcmp(path, "-")) {
#if T2V_POSIX
        if (isatty(STDOUT_FILENO)) t2v_die("-o -: standard output is a terminal; pipe it into a player or a file");
#endif
        return;
    }
    refuse_output_equal_to_inputs(path);
    refuse_directory(path);
#if T2V_POSIX
    {
        struct stat st;
        if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) { /* opening a FIFO now would wait for its reader */
            if (access(path, W_OK) != 0) t2v_die("cannot write %s: %s", path, strerror(errno));
            return;
        }
    }
#endif
    open_output(&o, path);
    fclose(o.f);
    remove(o.tmp);
    g_partial_output[0] = 0;
}

/* A folder for --dump and --frames-dir: created when missing, but its parent must exist (a mistyped path
 * is an error, not a new tree of folders). */
static void make_output_dir(const char *dir, const char *option) {
#if T2V_POSIX
    struct stat st;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        t2v_die("%s %s: cannot create the folder: %s (its parent folder must exist)", option, dir, strerror(errno));
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) t2v_die("%s %s: not a folder", option, dir);
#else
    (void)dir; (void)option; /* C99 has no mkdir: the folder must exist */
#endif
}

/* ---- non-finite numbers: refused in inputs, and a stage that makes one stops the run ---- */

/* The index of the first NaN or infinity in x[0..n), or n. */
static size_t first_non_finite(const float *x, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

/* Stops with the stage whose output is not finite (what names it, with its step). */
static void check_finite(const float *x, size_t n, const char *what) {
    size_t i = first_non_finite(x, n);
    if (i < n)
        t2v_die("%s has a non-finite value (%s at index %zu): stopping; the model file or the inputs are broken", what,
                isnan(x[i]) ? "NaN" : "infinity", i);
}

typedef struct { int ndim; int64_t shape[T2V_MAX_DIMS]; } Shape;

static size_t shape_numel(const Shape *s) {
    size_t n = 1;
    int i;
    for (i = 0; i < s->ndim; i++) n = mul_size(n, (size_t)s->shape[i]);
    return n;
}

static void shape_text(const Shape *s, char *buf, size_t size) {
    int i;
    size_t used = 0;
    used += (size_t)snprintf(buf, size, "(");
    for (i = 0; i < s->ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)s->shape[i]);
    if (used < size) snprintf(buf + used, size - used, ")");
}

static void write_le32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}

/* Writes float32 ('<f4') or int64 ('<i8') data with a version 1.0 header padded to 64 bytes. */
static void npy_save(const char *path, const void *data, int is_int64, const Shape *s) {
    char header[512], dims[256];
    size_t len, i, n = shape_numel(s);
    int k, used = 0;
    Output out;
    FILE *f;
    for (k = 0; k < s->ndim; k++) used += snprintf(dims + used, sizeof dims - used, "%lld, ", (long long)s->shape[k]);
    if (s->ndim > 1) dims[used - 2] = 0;      /* (2, 3) */
    else if (s->ndim == 1) dims[used - 1] = 0; /* (5,) */
    else dims[0] = 0;                          /* () */
    len = (size_t)snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                           is_int64 ? "<i8" : "<f4", dims);
    while ((10 + len + 1) % 64) header[len++] = ' ';
    header[len++] = '\n';
    open_output(&out, path);
    f = out.f;
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc((int)(len & 0xff), f);
    fputc((int)(len >> 8), f);
    fwrite(header, 1, len, f);
    if (host_is_little_endian()) {
        fwrite(data, is_int64 ? 8 : 4, n, f);
    } else {
        for (i = 0; i < n; i++) {
            unsigned char b[8];
            if (is_int64) {
                uint64_t v = (uint64_t)((const int64_t *)data)[i];
                write_le32(b, (uint32_t)v); write_le32(b + 4, (uint32_t)(v >> 32));
                fwrite(b, 1, 8, f);
            } else {
                uint32_t v;
                memcpy(&v, (const float *)data + i, 4);
                write_le32(b, v);
                fwrite(b, 1, 4, f);
            }
        }
    }
    close_output(&out);
}

static void npy_save_f32(const char *path, const float *data, int ndim, const int64_t *dims) {
    Shape s;
    int i;
    s.ndim = ndim;
    for (i = 0; i < ndim; i++) s.shape[i] = dims[i];
    npy_save(path, data, 0, &s);
}

/* --dump: DIR/name as a float32 .npy (nothing when dir is NULL) */
static void dump_tensor(const char *dir, const char *name, const float *data, int ndim, const int64_t *dims) {
    char path[4096];
    if (!dir) return;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    npy_save_f32(path, data, ndim, dims);
}

/* --dump: DIR/name as a 1-D int64 .npy (nothing when dir is NULL) */
static void dump_int64(const char *dir, const char *name, const int64_t *data, int n) {
    char path[4096];
    Shape s;
    if (!dir) return;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    s.ndim = 1;
    s.shape[0] = n;
    npy_save(path, data, 1, &s);
}

/* Reads a little-endian .npy (C order) of float32, float64, int64 or int32 from f as float32; path names it
 * in errors. NaN and infinity (and float64 values beyond float32's range) are refused. */
static float *npy_read_f32(FILE *f, const char *path, Shape *s) {
    static const struct { const char *descr; int size, is_float; } types[] = {
        {"'<f4'", 4, 1}, {"'<f8'", 8, 1}, {"'<i8'", 8, 0}, {"'<i4'", 4, 0}};
    unsigned char pre[12];
    char header[65536], *p;
    size_t header_len, n, i, esize = 0, cap;
    int type = -1, k;
    float *data;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) t2v_die("%s is not a .npy file", path);
    if (pre[6] == 1) {
        header_len = pre[8] | (size_t)pre[9] << 8;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (fread(pre + 10, 1, 2, f) != 2) t2v_die("%s: truncated .npy header", path);
        header_len = pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    } else {
        t2v_die("%s: unsupported .npy version %d", path, pre[6]);
        return NULL;
    }
    if (header_len >= sizeof header || fread(header, 1, header_len, f) != header_len)
        t2v_die("%s: truncated or oversized .npy header", path);
    header[header_len] = 0;
    p = strstr(header, "'descr':");
    for (k = 0; p && k < 4; k++)
        if (!strncmp(p + 8 + strspn(p + 8, " "), types[k].descr, strlen(types[k].descr))) type = k;
    if (type < 0) t2v_die("%s: t2v reads float32, float64, int64 or int32 little-endian arrays; this one is %.60s", path, header);
    esize = (size_t)types[type].size;
    if (!strstr(header, "'fortran_order': False")) t2v_die("%s: Fortran-order arrays are not supported", path);
    p = strstr(header, "'shape': (");
    if (!p) t2v_die("%s: .npy header has no shape", path);
    p += strlen("'shape': (");
    s->ndim = 0;
    while (*p && *p != ')') {
        char *end;
        long long d;
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        d = strtoll(p, &end, 10);
        if (end == p || d < 0 || d > (1LL << 40)) t2v_die("%s: bad .npy shape", path);
        if (s->ndim == T2V_MAX_DIMS) t2v_die("%s: more than %d dimensions", path, T2V_MAX_DIMS);
        s->shape[s->ndim++] = d;
        p = end;
    }
    n = shape_numel(s);
    mul_size(n, esize);
    cap = n < ((size_t)1 << 20) ? n : (size_t)1 << 20;
    data = alloc_floats(cap, path);
    for (i = 0; i < n;) {   /* read in blocks, converting to host float32 */
        unsigned char buf[65536];
        size_t want = (n - i) * esize < sizeof buf ? (n - i) * esize : sizeof buf, got, j;
        if (i + want / esize > cap) { /* grown as the data arrives: a header alone cannot claim gigabytes */
            cap = cap > n / 2 ? n : cap * 2;
            data = (float *)realloc(data, cap * sizeof(float));
            if (!data) t2v_die("out of memory: %.1f MiB for %s", cap * 4.0 / 1048576.0, path);
        }
        got = fread(buf, 1, want, f);
        if (got != want) t2v_die("%s: truncated .npy data (%zu of %zu values)", path, i + got / esize, n);
        for (j = 0; j < got; j += esize, i++) {
            uint64_t bits = 0;
            size_t b;
            for (b = 0; b < esize; b++) bits |= (uint64_t)buf[j + b] << (8 * b);
            if (type == 0) {
                uint32_t u = (uint32_t)bits;
                memcpy(&data[i], &u, 4);
            } else if (type == 1) {
                double d;
                memcpy(&d, &bits, 8);
                data[i] = (float)d;
            } else if (type == 2) {
                data[i] = (float)(int64_t)bits;
            } else {
                data[i] = (float)(int32_t)(uint32_t)bits;
            }
        }
    }
    if ((i = first_non_finite(data, n)) < n)
        t2v_die("%s: value %zu of %zu is %s: t2v refuses NaN and infinite inputs", path, i, n,
                isnan(data[i]) ? "NaN" : "infinite (or beyond float32)");
    return data;
}

static float *npy_load_f32(const char *path, Shape *s) {
    FILE *f = open_input(path, "", 0);
    float *data = npy_read_f32(f, path, s);
    fclose(f);
    return data;
}

/* Loads a .npy and checks its rank (and the dimensions given as >= 0 in want). */
static float *npy_load_expect(const char *path, Shape *s, int ndim, const int64_t *want, const char *layout) {
    float *data = npy_load_f32(path, s);
    int i, ok = s->ndim == ndim;
    for (i = 0; ok && i < ndim; i++) ok = want[i] < 0 || want[i] == s->shape[i];
    for (i = 0; ok && i < ndim; i++) ok = s->shape[i] > 0;
    if (!ok) {
        char got[256];
        shape_text(s, got, sizeof got);
        t2v_die("%s has shape %s; expected %s", path, got, layout);
    }
    return data;
}

/* ============================================================================================
 * 4. Kernels and layers. Every heavy operation is matmul(): out[m][n] = sum_k a[m][k] * w[n][k] + bias[n],
 *    with w in PyTorch's (out, in) layout, so weights are used straight from the model file. The layers
 *    (Linear, Conv, GroupNorm, LayerNorm, attention) look their weights up by Diffusers' names and run on
 *    these kernels. Results never depend on the thread count: each output element is summed in a fixed order.
 * ============================================================================================ */

static int num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static int team_size(void) { /* threads in the team running this code: 1 outside a parallel region */
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

static int thread_index(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* ---- where the time goes: T2V_PROFILE=1 ----
 * Every layer function adds its wall time, and the floating-point operations it counts from its shapes (a
 * multiply-add is 2), to one row of this table, which the command prints on exit. Rows never nest: a
 * convolution's patch gathering or Winograd transforms and its matmul are separate rows, attention() excludes its
 * projections (they are linear rows), so the rows add up to the forward. A convolution is counted as the direct
 * one computes it, also where Winograd's products do fewer multiply-adds (conv_winograd). Called from the serial
 * level only. */
typedef enum {
    WORK_CONV_GATHER, WORK_CONV_WINOGRAD, WORK_CONV_MATMUL, WORK_TEMPORAL_CONV_GATHER, WORK_TEMPORAL_CONV_WINOGRAD,
    WORK_TEMPORAL_CONV_MATMUL, WORK_LINEAR, WORK_ATTENTION, WORK_GROUP_NORM, WORK_LAYER_NORM, WORK_GEGLU,
    WORK_ELEMENTWISE, WORK_COPIES, WORK_KINDS
} WorkKind;
static const char *const work_names[WORK_KINDS] = {
    "3x3 conv: patch gathering", "3x3 conv: Winograd transforms", "3x3 conv: matmul",
    "temporal conv: patch gathering", "temporal conv: Winograd transforms", "temporal conv: matmul",
    "linear, 1x1 conv", "attention (scores, softmax, values)", "GroupNorm (+SiLU)", "LayerNorm",
    "GEGLU activation", "residual adds, SiLU, scaling", "layout copies, skip concat, upsample"
};
static struct { double seconds, flops; long calls; } g_work[WORK_KINDS];
static int g_profiling = -1;

static double work_begin(void) {
    if (g_profiling < 0) {
        const char *v = getenv("T2V_PROFILE");
        g_profiling = v && *v && strcmp(v, "0") != 0;
    }
    return g_profiling ? now_seconds() : 0.0;
}

static void work_add(WorkKind kind, double seconds, double flops) {
    if (!g_profiling) return;
    g_work[kind].seconds += seconds;
    g_work[kind].flops += flops;
    g_work[kind].calls++;
}

static void work_end(WorkKind kind, double start, double flops) {
    if (g_profiling) work_add(kind, now_seconds() - start, flops);
}

/* --repeat: the table starts again with each run, so that it reports the last one */
static void profile_restart(void) {
    memset(g_work, 0, sizeof g_work);
}

void t2v_profile_report(void) {
    FILE *f = stderr;
    double total = 0.0;
    int i;
    if (g_profiling <= 0) return;
    for (i = 0; i < WORK_KINDS; i++) total += g_work[i].seconds;
    fprintf(f, "profile: %-38s %9s %7s %9s %9s %7s\n", "work", "seconds", "share", "GFLOP", "GFLOP/s", "calls");
    for (i = 0; i < WORK_KINDS; i++)
        if (g_work[i].calls)
            fprintf(f, "profile: %-38s %9.3f %6.1f%% %9.2f %9.1f %7ld\n", work_names[i], g_work[i].seconds,
                    total > 0 ? 100.0 * g_work[i].seconds / total : 0.0, g_work[i].flops * 1e-9,
                    g_work[i].seconds > 0 ? g_work[i].flops * 1e-9 / g_work[i].seconds : 0.0, g_work[i].calls);
    fprintf(f, "profile: %-38s %9.3f\n", "all layers", total);
}

/* IEEE half (binary16) -> float, exactly, in integer bit operations so that it needs no compiler support for
 * _Float16 and no particular FPU mode: normal halves move their exponent from bias 15 to bias 127, subnormals
 * (mant * 2^-24) are converted through an exact int -> float and a power-of-two product, infinities and NaNs
 * (payload and sign kept) get float's all-ones exponent. test_kernels.c checks all 65536 inputs. */
static float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    uint32_t bits;
    float f;
    if (exp == 0) {
        f = (float)mant * 5.9604644775390625e-8f; /* 2^-24: the result is a normal float, exact */
        return sign ? -f : f;
    }
    bits = sign | (exp == 0x1f ? 0x7f800000u : (exp + 112) << 23) | mant << 13;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* A Linear or Conv weight, or the token embedding, as the file stores it (used in place, never widened to a
 * float32 copy; a UNet float32 weight is also packed once, see PackedPanels): float32, float16, or int8 with one float32 scale per group of group_size consecutive values
 * of a row (weights/README.md). Activations and attention's operands are plain float32 ones. */
typedef struct {
    const void *data;     /* [rows][row length], in the dtype */
    const float *scales;  /* int8: [rows][row length / group_size]; NULL otherwise */
    int dtype, group_size;
    const struct PackedPanels *packed; /* a UNet float32 weight: the same weight packed once (mm_pack_whole); else NULL */
} StoredWeight;

/* A float32 weight packed once, whole, the way the matmul packs a block of it for each product (mm_run): panels
 * [ceil(rows / NR)][k][NR], k in the reduction's order (weight_column), the columns past `rows` zero. A product of
 * exactly this weight then reads its blocks where they lie (see mm_execute). */
typedef struct PackedPanels {
    const float *source;  /* the stored weight, rows x k, in the mapped file */
    int rows, k, taps;
    void *raw;            /* the allocation; panels is raw moved up to 64 bytes */
    const float *panels;  /* NULL until packed (or if there was no memory for it) */
} PackedPanels;

static StoredWeight float32_weight(const float *w) {
    StoredWeight s;
    s.data = w;
    s.scales = NULL;
    s.dtype = T2V_F32;
    s.group_size = 0;
    s.packed = NULL;
    return s;
}

/* The one accessor through which weights of any stored dtype are read: element i of the stored tensor. The
 * matmul converts float16 and int8 weights this way (or with the same arithmetic) while it packs its panels,
 * so a float16 or int8 file is never widened to a float32 copy in memory. */
static float weight_at(const StoredWeight *w, size_t i) {
    switch (w->dtype) {
    case T2V_F16: return half_to_float(((const uint16_t *)w->data)[i]);
    case T2V_I8: return (float)((const int8_t *)w->data)[i] * w->scales[i / (size_t)w->group_size];
    default: return ((const float *)w->data)[i];
    }
}

/* Convolution weights are PyTorch's (out, in, kh, kw): each row is [in][taps] with taps = kh * kw. A
 * convolution reduces tap by tap instead, over k = tap * in + channel, so that its patches are gathered as
 * whole channel vectors (contiguous in the channels-last input). The matmul reads the weights in that order
 * while it packs them: column k of the reduction is column weight_column(k) of the stored row. taps = 1 is
 * the identity (linear layers, 1x1 convolutions, attention). */
static ptrdiff_t weight_column(int k, int K, int taps) {
    const int channels = K / taps;
    return taps == 1 ? k : (ptrdiff_t)(k % channels) * taps + k / channels;
}

/* An int8 convolution weight is already stored in the reduction order, (out, taps, in): export.py permutes it
 * so that each group of scales covers channels of one tap (weights/README.md). It is read with taps = 1. */
static int stored_taps(const StoredWeight *w, int taps) {
    return w->dtype == T2V_I8 ? 1 : taps;
}

/* The reference: one dot product per output element. out[m*ldo + n] = (accumulate ? out : 0) +
 * sum_k a[m*lda + k] * w[n*ldw + weight_column(k)] + bias[n]. */
static void matmul_naive(float *out, int ldo, const float *a, int lda, const StoredWeight *w, int ldw,
                         const float *bias, int M, int K, int N, int accumulate, int taps) {
    int m, n, k;
    taps = stored_taps(w, taps);
    for (m = 0; m < M; m++)
        for (n = 0; n < N; n++) {
            float sum = 0.0f;
            for (k = 0; k < K; k++)
                sum += a[(size_t)m * lda + k] * weight_at(w, (size_t)n * ldw + weight_column(k, K, taps));
            if (accumulate) sum += out[(size_t)m * ldo + n];
            out[(size_t)m * ldo + n] = sum + (bias ? bias[n] : 0.0f);
        }
}

/* T2V_MATMUL=naive switches every matmul to the reference loop: slow, but a way to rule the fast one out. */
static int use_naive_matmul(void) {
    static int choice = -1;
    if (choice < 0) {
        const char *v = getenv("T2V_MATMUL");
        choice = v && !strcmp(v, "naive");
    }
    return choice;
}

/* The fast one, BLIS-style in portable C: per call a KC x NC block of w is packed (transiently) into NR-wide
 * panels, a is read in place, and an MR x NR tile of out is accumulated by a fixed-size loop nest that
 * gcc/clang -O3 turn into vector FMAs held in registers (8 x 48 floats in 24 zmm registers with AVX-512,
 * 4 x 24 in 12 ymm otherwise). Every output element is one multiply-add chain over k = 0..K-1 in order
 * (fused multiply-adds where the target has FMA, see MM_FMA) with the bias added last, in every path, so
 * results do not depend on the thread count, OpenMP, the blocking or the rows batched together.
 * Threads: a call opens its own parallel region unless it is under MM_PAR_MIN_FLOPS. A call made from
 * inside a parallel loop (attention's per-head matmuls) runs on its own thread whatever its size, because
 * that region is nested and OpenMP runs nested regions with one thread unless OMP_MAX_ACTIVE_LEVELS says
 * otherwise. */
/* ---- tile sizes (overridable with -D for tuning) ----
 * MR x NR accumulators must fit the vector register file with room for the
 * NR/VL loads of b and one broadcast:
 *   AVX-512 (32 regs of 16 floats): 8 x 48 -> 24 zmm accumulators,
 *                                   row-wise kernel spelling (8 x 32 ran
 *                                   4-25% slower on an AVX-512 Xeon: 2 loads
 *                                   of w per 16 FMAs instead of 3 per 24)
 *   AVX2 / other (16 regs of 8):   4 x 24 -> 12 ymm accumulators,
 *                                   loop-nest spelling
 * These pairs were checked (objdump + timing) to vectorise with gcc 12 at -O3
 * (4 x 24 and 8 x 32 also with clang 14; 8 x 48 with clang 14 given
 * -mprefer-vector-width=512, which the Makefile adds for clang on x86-64:
 * otherwise clang -march=native on a Xeon picks 256-bit vectors and spills
 * an AVX-512 tile). */
#if defined(__AVX512F__)
#  ifndef MM_MR
#    define MM_MR 8
#  endif
#  ifndef MM_NR
#    define MM_NR 48
#  endif
#  ifndef MM_ROWWISE
#    define MM_ROWWISE 1
#  endif
#else
#  ifndef MM_MR
#    define MM_MR 4
#  endif
#  ifndef MM_NR
#    define MM_NR 24
#  endif
#endif
#ifndef MM_ROWWISE
#  define MM_ROWWISE 0
#endif
#if MM_ROWWISE && MM_MR > 8
#  error "MM_ROWWISE kernel supports MM_MR <= 8"
#endif
/* A packed block of w is about KC x NC floats, and every row tile sweeps all of it: at 768 x 256 (768 KiB) it
 * stays in a core's L2 (1-2 MiB on recent x86). 768 x 768 (2.3 MiB) did not, and ran the 8x8-level 3x3
 * convolution (2048 x 11520 x 1280) at less than half the speed on an AVX-512 Xeon. What is fixed is the area:
 * a block over a shorter part of K is wider (mm_execute). */
#ifndef MM_KC
#  define MM_KC 768
#endif
#ifndef MM_NC
#  define MM_NC 256
#endif

/* The kernel streams its packed panel of w (kc x NR floats, more than L1 holds) from L2, NR floats per k step.
 * Asking for the panel's row MM_PREFETCH_K steps ahead, as tuned BLAS kernels do, instead of leaving it to the
 * hardware prefetcher, made the VAE decode 11-19% faster on an AVX-512 Xeon VM (5 of 5 interleaved runs), with
 * the same bits. A hint only (gcc's and clang's builtin; nothing elsewhere), never for an address past the panel. */
#ifndef MM_PREFETCH_K
#  define MM_PREFETCH_K 16
#endif
#if defined(__GNUC__) && !defined(__TINYC__)
#  define MM_PREFETCH_LINE(p) __builtin_prefetch((p), 0, 3)
#  define MM_PREFETCH_LINE_L2(p) __builtin_prefetch((p), 0, 2)
#else
#  define MM_PREFETCH_LINE(p) ((void)(p))
#  define MM_PREFETCH_LINE_L2(p) ((void)(p))
#endif
#define MM_PREFETCH_PANEL_ROW(p, width) { int l_; for (l_ = 0; l_ < (width); l_ += 16) MM_PREFETCH_LINE((p) + l_); }

/* use a fused multiply-add only when the hardware has it */
#if defined(FP_FAST_FMAF) || defined(__FMA__)
#  define MM_FMA(x, y, z) fmaf((x), (y), (z))
#else
#  define MM_FMA(x, y, z) ((x) * (y) + (z))
#endif

/* floats in one vector register of the ISA the tile sizes above were chosen for */
#ifndef MM_VL
#  if defined(__AVX512F__)
#    define MM_VL 16
#  else
#    define MM_VL 8
#  endif
#endif

/* The kernel's body is compiled once per width (below) with `width` a constant, so that the compiler can hold a
 * tile's accumulators in registers; gcc and clang are told to inline it for that. */
#if defined(__GNUC__) && !defined(__TINYC__)
#  define MM_INLINE inline __attribute__((always_inline))
#else
#  define MM_INLINE inline
#endif

/* micro-kernel: c[MR][width] (row stride ldc) = (load ? c : 0) + a[MR][kc] * b[kc][0 .. width)
 * (+ bias[width] if bias).  a rows have stride lda; b is a packed panel [kc][NR], of which the first `width`
 * columns are used: NR, or fewer for the last panel of an N that NR does not divide (mm_kernel_covering).
 * Per k the compiler emits width/VL vector loads of b, MR broadcasts of a and
 * MR*width/VL vector FMAs, with the accumulators held in vector registers.
 * Two equivalent spellings (same arithmetic, same bits); which one a given
 * compiler keeps in registers varies, so each ISA uses the one that was
 * checked to vectorise with gcc 12 and clang 14 (see MM_ROWWISE above). */
#if MM_ROWWISE
/* rows unrolled by hand (MR <= 8): one fixed-length j loop per row. The first step, k = 0, starts each chain from
 * 0 or from c itself (MM_FMA(x, b, 0) is what 0, then MM_FMA(x, b, acc), computed: the same bits). Zeroing the
 * accumulators (or copying c into them) as a loop of its own, gcc 12 wrote them to the stack 32 bytes at a time,
 * as it expands memset and memcpy, and then loaded them into registers 64 at a time: a load that spans two
 * stores cannot take its data from them, and waits until they reach the cache, 24 times per call. That stall was
 * 15% of the kernel's samples in perf at K = 320; without it 32768 x 320 x 320 ran at 247 GFLOP/s instead of 209,
 * 8192 x 640 x 640 at 247 instead of 226 (2 threads of an AVX-512 Xeon VM). */
#define MM_ROWS_(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define MM_DECL_(r) float c##r[MM_NR];
#define MM_FIRST_ZERO_(r)                                                         \
    if (r < MM_MR) {                                                              \
        const float x = a[r * lda];                                               \
        for (j = 0; j < width; j++) c##r[j] = MM_FMA(x, b[j], 0.0f);              \
    }
#define MM_FIRST_LOAD_(r)                                                         \
    if (r < MM_MR) {                                                              \
        const float x = a[r * lda];                                               \
        for (j = 0; j < width; j++) c##r[j] = MM_FMA(x, b[j], c[r * ldc + j]);    \
    }
#define MM_STEP_(r)                                                               \
    if (r < MM_MR) {                                                              \
        const float x = a[r * lda + k];                                           \
        for (j = 0; j < width; j++) c##r[j] = MM_FMA(x, bk[j], c##r[j]);          \
    }
#define MM_STORE_(r) if (r < MM_MR) for (j = 0; j < width; j++) c[r * ldc + j] = c##r[j];
#define MM_STOREB_(r) if (r < MM_MR) for (j = 0; j < width; j++) c[r * ldc + j] = c##r[j] + bias[j];
static MM_INLINE void mm_kernel_body(const int width, int kc, const float *restrict a, ptrdiff_t lda,
                                     const float *restrict b, float *restrict c, ptrdiff_t ldc,
                                     int load, const float *restrict bias) {
    MM_ROWS_(MM_DECL_)
    int j, k;
    if (load) {                  /* k = 0 (kc >= 1) */
        MM_ROWS_(MM_FIRST_LOAD_)
    } else {
        MM_ROWS_(MM_FIRST_ZERO_)
    }
    for (k = 1; k < kc - MM_PREFETCH_K; k++) { /* while the panel's row MM_PREFETCH_K steps ahead is in b */
        const float *restrict bk = b + (ptrdiff_t)k * MM_NR;
        MM_PREFETCH_PANEL_ROW(bk + MM_PREFETCH_K * MM_NR, width)
        MM_ROWS_(MM_STEP_)
    }
    for (; k < kc; k++) {
        const float *restrict bk = b + (ptrdiff_t)k * MM_NR;
        MM_ROWS_(MM_STEP_)
    }
    if (bias) {
        MM_ROWS_(MM_STOREB_)
    } else {
        MM_ROWS_(MM_STORE_)
    }
}
#else
/* plain loop nest */
static MM_INLINE void mm_kernel_body(const int width, int kc, const float *restrict a, ptrdiff_t lda,
                                     const float *restrict b, float *restrict c, ptrdiff_t ldc,
                                     int load, const float *restrict bias) {
    float acc[MM_MR][MM_NR];
    int i, j, k;
    if (load) {
        for (i = 0; i < MM_MR; i++)
            for (j = 0; j < width; j++) acc[i][j] = c[i * ldc + j];
    } else {
        for (i = 0; i < MM_MR; i++)
            for (j = 0; j < width; j++) acc[i][j] = 0.0f;
    }
    for (k = 0; k < kc; k++) {
        const float *restrict bk = b + (ptrdiff_t)k * MM_NR;
        if (k < kc - MM_PREFETCH_K) MM_PREFETCH_PANEL_ROW(bk + MM_PREFETCH_K * MM_NR, width)
        for (i = 0; i < MM_MR; i++) {
            const float ai = a[i * lda + k];
            for (j = 0; j < width; j++) acc[i][j] = MM_FMA(ai, bk[j], acc[i][j]);
        }
    }
    if (bias) {
        for (i = 0; i < MM_MR; i++)
            for (j = 0; j < width; j++) c[i * ldc + j] = acc[i][j] + bias[j];
    } else {
        for (i = 0; i < MM_MR; i++)
            for (j = 0; j < width; j++) c[i * ldc + j] = acc[i][j];
    }
}
#endif

/* The kernel at two widths: NR, and MM_NARROW (one vector fewer) for the last panel of an N that NR does not
 * divide. The model's channel counts (128, 320, 640, 1280, ...) are multiples of 16 but not of 48, so most
 * products end on a panel 16 or 32 columns wide, which the full kernel computed 48 wide (through a copy). With gcc 12
 * the 8 x 32 AVX-512 tile stays in registers and ran, per column, as fast as the full one (165-170 GFLOP/s on one
 * thread of an AVX-512 Xeon), so a 32-wide edge takes 2/3 of the time. Elsewhere a narrower tile does not pay, so
 * MM_NARROW is NR there (one kernel): clang 14 spills the 8 x 32 tile (30-80 GFLOP/s); the AVX2 tile one vector
 * narrower, 4 x 16, has 8 accumulators, too few to hide the FMA latency, and ran at half the 4 x 24 tile's rate
 * per column; so did a 16-wide AVX-512 one. */
#ifndef MM_NARROW
#  if defined(__AVX512F__) && !defined(__clang__) && MM_NR > MM_VL
#    define MM_NARROW (MM_NR - MM_VL)
#  else
#    define MM_NARROW MM_NR
#  endif
#endif
typedef void MmKernel(int kc, const float *restrict a, ptrdiff_t lda, const float *restrict b, float *restrict c,
                      ptrdiff_t ldc, int load, const float *restrict bias);
static void mm_kernel(int kc, const float *restrict a, ptrdiff_t lda, const float *restrict b, float *restrict c,
                      ptrdiff_t ldc, int load, const float *restrict bias) {
    mm_kernel_body(MM_NR, kc, a, lda, b, c, ldc, load, bias);
}
#if MM_NARROW < MM_NR
static void mm_kernel_narrow(int kc, const float *restrict a, ptrdiff_t lda, const float *restrict b,
                             float *restrict c, ptrdiff_t ldc, int load, const float *restrict bias) {
    mm_kernel_body(MM_NARROW, kc, a, lda, b, c, ldc, load, bias);
}
#endif

/* the narrowest kernel that covers nr (<= NR) columns, and its width */
static MmKernel *mm_kernel_covering(int nr, int *width) {
#if MM_NARROW < MM_NR
    if (nr <= MM_NARROW) {
        *width = MM_NARROW;
        return mm_kernel_narrow;
    }
#endif
    (void)nr;
    *width = MM_NR;
    return mm_kernel;
}

/* pack w[n0 .. n0+nr)[k0 .. k0+kc) (row stride ldw), starting at element w0 of the stored weight, into
 * dst[kc][NR], zero padded. Done in chunks of 16 k so that each source cache line is consumed at once
 * (row strides are often multiples of 4 KiB, which thrash L1 sets). A float16 weight is converted here, row by
 * row, and an int8 one dequantised (q * its group's scale, as weight_at): each panel is packed once per block
 * and reused by every row tile of a. */
static void mm_pack(float *restrict dst, const StoredWeight *wv, size_t w0, ptrdiff_t ldw, int nr, int kc) {
    const float *restrict w = wv->dtype == T2V_F32 ? (const float *)wv->data + w0 : NULL;
    int j, k, k0 = 0;
    if (wv->dtype == T2V_I8) {        /* in chunks of 16 k too; G is 32 or 64, so a shift finds the group */
        const int8_t *q = (const int8_t *)wv->data;
        const int shift = wv->group_size == 64 ? 6 : 5;
        for (; k0 < kc; k0 += 16) {
            const int k1 = kc - k0 < 16 ? kc : k0 + 16;
            for (j = 0; j < nr; j++) {
                const size_t row = w0 + (size_t)j * ldw;
                for (k = k0; k < k1; k++)
                    dst[k * MM_NR + j] = (float)q[row + (size_t)k] * wv->scales[(row + (size_t)k) >> shift];
            }
        }
        for (k = 0; k < kc; k++)
            for (j = nr; j < MM_NR; j++) dst[k * MM_NR + j] = 0.0f;
        return;
    }
    if (wv->dtype != T2V_F32) {
        for (j = 0; j < nr; j++)
            for (k = 0; k < kc; k++) dst[k * MM_NR + j] = weight_at(wv, w0 + (size_t)j * ldw + k);
        for (k = 0; k < kc; k++)
            for (j = nr; j < MM_NR; j++) dst[k * MM_NR + j] = 0.0f;
        return;
    }
    if (nr == MM_NR) {
        for (; k0 + 16 <= kc; k0 += 16)
            for (j = 0; j < MM_NR; j++)
                for (k = k0; k < k0 + 16; k++) dst[k * MM_NR + j] = w[j * ldw + k];
        for (k = k0; k < kc; k++)
            for (j = 0; j < MM_NR; j++) dst[k * MM_NR + j] = w[j * ldw + k];
    } else {
        for (k = 0; k < kc; k++)
            for (j = nr; j < MM_NR; j++) dst[k * MM_NR + j] = 0.0f;
        for (; k0 + 16 <= kc; k0 += 16)
            for (j = 0; j < nr; j++)
                for (k = k0; k < k0 + 16; k++) dst[k * MM_NR + j] = w[j * ldw + k];
        for (k = k0; k < kc; k++)
            for (j = 0; j < nr; j++) dst[k * MM_NR + j] = w[j * ldw + k];
    }
}

/* the same for a convolution's tap-major reduction: k = pc .. pc+kc of K, read at weight_column(k) */
static void mm_pack_taps(float *restrict dst, const StoredWeight *w, size_t w0, ptrdiff_t ldw, int nr, int kc,
                         int pc, int K, int taps) {
    int j, k;
    for (k = 0; k < kc; k++) {
        const size_t col = w0 + (size_t)weight_column(pc + k, K, taps);
        if (w->dtype == T2V_F32)
            for (j = 0; j < nr; j++) dst[k * MM_NR + j] = ((const float *)w->data)[col + (size_t)j * ldw];
        else
            for (j = 0; j < nr; j++) dst[k * MM_NR + j] = weight_at(w, col + (size_t)j * ldw);
        for (; j < MM_NR; j++) dst[k * MM_NR + j] = 0.0f;
    }
}

/* ---- driver ---- */

#ifndef MM_STACK_FLOATS
#  define MM_STACK_FLOATS 4096 /* scratch this small lives on the stack */
#endif
#ifndef MM_TINY
#  define MM_TINY 256 /* M*N*K at or below this: plain loop */
#endif
#ifndef MM_SWAP_ROWS
#  define MM_SWAP_ROWS 128 /* at most this many rows (and a float32 w): w read in place, a packed (mm_swapped_run) */
#endif
#ifndef MM_PACK_K
#  define MM_PACK_K 256 /* a packing work item: this many k of one panel */
#endif
#ifndef MM_WHOLE_TAPS_ROWS
#  define MM_WHOLE_TAPS_ROWS 1024 /* from this many rows on, a convolution is blocked by whole taps (mm_execute) */
#endif
#ifndef MM_PAR_MIN_FLOPS
#  define MM_PAR_MIN_FLOPS 2e6 /* below this, no threads */
#endif

/* Packs p's weight whole into its panels with the two functions above, in the same parts as mm_run would, so the
 * panels hold the same values in the same places. Without memory for them, p stays unpacked. */
static void mm_pack_whole(PackedPanels *p) {
    const int npan = (p->rows + MM_NR - 1) / MM_NR, kparts = (p->k + MM_PACK_K - 1) / MM_PACK_K;
    const StoredWeight w = float32_weight(p->source);
    float *panels;
    int q;
    p->raw = malloc(mul_size(mul_size((size_t)npan * MM_NR, (size_t)p->k), sizeof(float)) + 64);
    if (!p->raw) return;
    panels = (float *)align_64(p->raw);
    PARALLEL_FOR(schedule(dynamic))
    for (q = 0; q < npan * kparts; q++) {
        const int panel = q / kparts, k0 = q % kparts * MM_PACK_K, n0 = panel * MM_NR;
        const int nr = p->rows - n0 < MM_NR ? p->rows - n0 : MM_NR, klen = p->k - k0 < MM_PACK_K ? p->k - k0 : MM_PACK_K;
        float *dst = panels + ((size_t)panel * p->k + k0) * MM_NR;
        if (p->taps == 1)
            mm_pack(dst, &w, (size_t)n0 * p->k + k0, p->k, nr, klen);
        else
            mm_pack_taps(dst, &w, (size_t)n0 * p->k, p->k, nr, klen, k0, p->k, p->taps);
    }
    p->panels = panels;
}

/* per-thread cached scratch (packed W block): no allocation per call once warm, and each calling thread owns its
 * own buffer. 64-byte aligned, as is the small one on the stack (mm_execute): a panel row of NR = 48 floats is then
 * three whole cache lines, and none of the kernel's vector loads of it straddles two. From malloc's 16-byte
 * alignment to 64, the kernel ran 2-5% faster on one thread of an AVX-512 Xeon (its panel in L2). */
static void *mm_scratch = NULL;
static size_t mm_scratch_n = 0;
OMP(threadprivate(mm_scratch, mm_scratch_n))

static float *mm_get_scratch(size_t n) {
    if (n > mm_scratch_n) {
        free(mm_scratch);
        mm_scratch = malloc(n * sizeof(float) + 64);
        mm_scratch_n = mm_scratch ? n : 0;
    }
    return mm_scratch ? (float *)align_64(mm_scratch) : NULL;
}

/* A stride-1 convolution with zero padding 1 is a sum over its taps of shifted products: output pixel m gets
 * in[m + shift(tap)] . w[tap] for each tap, 3x3 (ky, kx) or temporal (frame offset). When the input is stored
 * zero-padded (a border of zeros around each frame for a 3x3 convolution; an empty frame before and after each
 * video for a temporal one), the rows one tap reads for MR consecutive output pixels of one image row (or
 * frame) are MR consecutive padded pixels, so the matmul reads them in place at row stride C: no patch is
 * gathered ("implicit GEMM"). PaddedRows says where output row m's input pixel lives in the padded buffer:
 * rows come in segments of `length` (an image row of W pixels, or a frame of H*W), `per_group` segments make a
 * group (a frame of H rows, or a video of F frames) stored with one zero segment before and after it, padded
 * segments are `stride` rows apart and begin with `lead` zero rows (the left border column). */
typedef struct {
    int length, per_group, stride, lead;
    int taps;
    ptrdiff_t tap_shift[9];      /* rows between an output pixel's padded position and tap t's input pixel */
} PaddedRows;

static size_t padded_row(const PaddedRows *pr, size_t m) {
    const size_t segment = m / pr->length;
    return ((segment / pr->per_group) * (pr->per_group + 2) + segment % pr->per_group + 1) * pr->stride + pr->lead +
           m % pr->length;
}

struct mm_args {
    float *out;
    const float *a, *bias;
    const StoredWeight *w;  /* read through weight_at / mm_pack */
    ptrdiff_t ldo, lda, ldw;
    int M, K, N, kcb, ncb, accum;
    int taps;       /* w's rows are [K / taps][taps], reduced tap-major (weight_column); 1: plain */
    const PaddedRows *shifted; /* a convolution's padded input read in place (k = tap * C + channel); NULL: a */
    float *bp, *bb; /* packed W block [ncb/NR][kc][NR]; zero-padded bias [ncb] */
    const float *panels; /* w packed whole beforehand ([N/NR][K][NR], see PackedPanels): bp unused; or NULL */
};

/* where row m of the reduction's operand begins, for k from pc to the end of pc's tap: a[m][pc..], or with
 * `shifted` the input pixel of output pixel m under tap pc / C, channel pc % C */
static const float *mm_row(const struct mm_args *g, size_t m, int pc) {
    const PaddedRows *pr = g->shifted;
    int channels;
    if (!pr) return g->a + m * g->lda + pc;
    channels = g->K / pr->taps;
    return g->a + ((ptrdiff_t)padded_row(pr, m) + pr->tap_shift[pc / channels]) * g->lda + pc % channels;
}

/* a tile that sticks out of out (mr < MR, or nr not a kernel's width): run the narrowest kernel that covers nr
 * on a temporary tile. If mr < MR the tile is shifted up so that it reads only
 * rows of a (M >= MR is guaranteed by the caller padding a); the extra rows
 * are computed and discarded. */
static void mm_edge(const struct mm_args *g, int mr, int nr, int kc, const float *ap,
                    const float *bpp, float *cp, int load, const float *bi) {
    float ct[MM_MR * MM_NR];
    int i, j, width, r0 = MM_MR - mr; /* ct row r0 + i holds out row i of the tile */
    MmKernel *const kernel = mm_kernel_covering(nr, &width);
    const float *aa = ap - r0 * g->lda;
    if (load) {
        for (i = 0; i < MM_MR * MM_NR; i++) ct[i] = 0.0f;
        for (i = 0; i < mr; i++)
            for (j = 0; j < nr; j++) ct[(r0 + i) * MM_NR + j] = cp[i * g->ldo + j];
    }
    kernel(kc, aa, g->lda, bpp, ct, MM_NR, load, bi);
    for (i = 0; i < mr; i++)
        for (j = 0; j < nr; j++) cp[i * g->ldo + j] = ct[(r0 + i) * MM_NR + j];
}

/* same arithmetic as the blocked path, without blocking (fallback) */
static void mm_simple(const struct mm_args *g) {
    int m, n, k;
    for (m = 0; m < g->M; m++) {
        for (n = 0; n < g->N; n++) {
            const size_t wr = (size_t)n * g->ldw;
            float *o = g->out + (size_t)m * g->ldo + n;
            float s = g->accum ? *o : 0.0f;
            for (k = 0; k < g->K; k++) {     /* w from its panels where it was packed whole (it may exist only so) */
                const float wk = g->panels ? g->panels[((size_t)(n / MM_NR) * g->K + k) * MM_NR + n % MM_NR]
                                           : weight_at(g->w, wr + weight_column(k, g->K, g->taps));
                s = MM_FMA(*mm_row(g, (size_t)m, k), wk, s);
            }
            *o = g->bias ? s + g->bias[n] : s;
        }
    }
}

/* One MR x NR tile of out over the K block [pc, pc + kc): the kernel runs once per stretch of k over which a row
 * of the operand is contiguous, which is the whole block for a plain matmul and each tap's channels for a
 * convolution read in place (mm_row moves to the tap's shifted pixel). */
static void mm_tile(const struct mm_args *g, int m0, int mr, int nr, int pc, int kc, const float *bpp, float *cp,
                    const float *bias_tile) {
    const int stretch = g->shifted ? g->K / g->shifted->taps : kc;
    int k, width;
    MmKernel *const kernel = mm_kernel_covering(nr, &width);
    for (k = pc; k < pc + kc; k += stretch) {
        const int len = pc + kc - k < stretch ? pc + kc - k : stretch, load = k > 0 || g->accum;
        const float *ap = mm_row(g, (size_t)m0, k), *bk = bpp + (size_t)(k - pc) * MM_NR;
        const float *bi = k + len == g->K ? bias_tile : NULL;
        if (mr == MM_MR && nr == width)
            kernel(len, ap, g->lda, bk, cp, g->ldo, load, bi);
        else
            mm_edge(g, mr, nr, len, ap, bk, cp, load, bi);
    }
}

/* How many of a product's nitems tiles (row-tile major, npan per row tile) a thread takes at a time from the
 * dynamic schedule: a row tile's worth, so that its rows of a stay in L1 across the panels, or less where that
 * would give a thread fewer than 8 chunks. With the tiles split into fixed halves (a static schedule) the threads
 * waited for each other 3-12% of the time in the small UNet3D forward on a shared 2-vCPU machine, where the two do
 * not run at the same speed; 1.0-1.4% this way. Which thread computes a tile does not change its bits. */
#ifdef _OPENMP
static long tile_chunk(long nitems, int npan) {
    const long eighth = nitems / (8L * num_threads());
    return eighth < 1 ? 1 : eighth < npan ? eighth : npan;
}
#endif

/* With a short K (all of it in one block) and few columns, a row tile's products take so little time that its rows
 * of a arrive from memory too late: the kernel waits for them at the start of every row tile, and the hardware
 * prefetcher does not look far enough ahead. So while a thread computes the panels of row tile ti, it asks for the
 * rows of a of row tile ti + ahead (the one it will probably take next: the dynamic schedule hands the row tiles out
 * in turn, so ahead is the number of threads) into L2, a share of their cache lines with each panel. A hint: no
 * result changes. Inlined by force: a function whose only effect is a prefetch is, to gcc 12, one without effects,
 * and it dropped every call of it (for a while this one was never run). Measured with it running (2 threads of an
 * AVX-512 Xeon VM): 32768 x 320 x 320 went from 229-238 to 256-257 GFLOP/s, 65536 x 256 x 128 from 197-202 to
 * 221-224; from K x N = 320 x 512 on it gained nothing or cost (8192 x 640 x 640, 32768 x 512 x 512 and
 * 16384 x 512 x 256 ran 0-9% slower), as the kernel then has time enough: hence MM_AHEAD_MAX_WORK. */
#ifndef MM_AHEAD_MAX_WORK
#  define MM_AHEAD_MAX_WORK (320 * 320) /* K x N at most this: mm_prefetch_rows_ahead */
#endif
static MM_INLINE void mm_prefetch_rows_ahead(const struct mm_args *g, int m0, int ahead, int kc, int p2, int npan) {
    const int lines_per_row = (kc + 15) / 16, lines = lines_per_row * MM_MR, per_panel = (lines + npan - 1) / npan;
    const int first_row = m0 + ahead * MM_MR;
    int l;
    if (first_row + MM_MR > g->M) return;
    for (l = p2 * per_panel; l < (p2 + 1) * per_panel && l < lines; l++)
        MM_PREFETCH_LINE_L2(g->a + (size_t)(first_row + l / lines_per_row) * g->lda + (l % lines_per_row) * 16);
}

/* executed by every thread of the team (or by one thread, serially) */
static void mm_run(const struct mm_args *g) {
    const int M = g->M, K = g->K, N = g->N;
    const int mtiles = (M + MM_MR - 1) / MM_MR;
    const int ahead = !g->shifted && g->kcb >= K && (double)K * N <= MM_AHEAD_MAX_WORK ? team_size() : 0; /* or none */
    float *const bp = g->bp, *const bb = g->bb;
    int jc, pc;
    for (jc = 0; jc < N; jc += g->ncb) {
        const int nc = N - jc < g->ncb ? N - jc : g->ncb;
        const int npan = (nc + MM_NR - 1) / MM_NR;
        for (pc = 0; pc < K; pc += g->kcb) {
            const int kc = K - pc < g->kcb ? K - pc : g->kcb;
            const int last = pc + kc == K;
            const long nitems = (long)mtiles * npan;
            const int kparts = g->panels ? 1 : (kc + MM_PACK_K - 1) / MM_PACK_K;
            /* the block's first panel, and how far apart its panels are: packed here [npan][kc][NR], or in place
             * within the whole packed weight [N/NR][K][NR] */
            const float *block = g->panels ? g->panels + ((size_t)(jc / MM_NR) * K + pc) * MM_NR : bp;
            const size_t panel_floats = (size_t)(g->panels ? K : kc) * MM_NR;
            long it;
            int q;
            /* pack W[jc .. jc+nc)[pc .. pc+kc), each panel in parts of MM_PACK_K k's: the threads share the
             * packing even of a block one panel wide (nothing to pack when w was packed whole: the bias only) */
            if (!g->panels || (last && g->bias)) {
                OMP(for schedule(static))
                for (q = 0; q < npan * kparts; q++) {
                    const int p = q / kparts, k0 = q % kparts * MM_PACK_K, n0 = p * MM_NR;
                    const int nr = nc - n0 < MM_NR ? nc - n0 : MM_NR, klen = kc - k0 < MM_PACK_K ? kc - k0 : MM_PACK_K;
                    float *dst = bp + ((size_t)p * kc + k0) * MM_NR;
                    if (g->panels)
                        ; /* packed already */
                    else if (g->taps == 1)
                        mm_pack(dst, g->w, (size_t)(jc + n0) * g->ldw + pc + k0, g->ldw, nr, klen);
                    else
                        mm_pack_taps(dst, g->w, (size_t)(jc + n0) * g->ldw, g->ldw, nr, klen, pc + k0, K, g->taps);
                    if (k0 == 0 && last && g->bias) {
                        int j;
                        for (j = 0; j < MM_NR; j++) bb[n0 + j] = j < nr ? g->bias[jc + n0 + j] : 0.0f;
                    }
                }
            }
            /* MR x NR tiles, row-tile major: a thread keeps its MR rows of a in L1 while it sweeps the packed
             * panels (handed out as threads come free: tile_chunk) */
            OMP(for schedule(dynamic, tile_chunk(nitems, npan)))
            for (it = 0; it < nitems; it++) {
                const int ti = (int)(it / npan), p2 = (int)(it % npan);
                const int m0 = ti * MM_MR, n0 = p2 * MM_NR;
                const int mr = M - m0 < MM_MR ? M - m0 : MM_MR;
                const int nr = nc - n0 < MM_NR ? nc - n0 : MM_NR;
                if (ahead) mm_prefetch_rows_ahead(g, m0, ahead, kc, p2, npan);
                mm_tile(g, m0, mr, nr, pc, kc, block + (size_t)p2 * panel_floats, g->out + (size_t)m0 * g->ldo + jc + n0,
                        (last && g->bias) ? bb + n0 : NULL);
            }
        }
    }
}

/* How many of mm_swapped_run's tiles a thread takes at a time: 32 columns of out. A tile writes MR columns of each
 * row of out, and with MR = 8 two tiles share every cache line: handed out one at a time, the two threads kept
 * writing into the same lines (and each read its rows of w 8 at a time, not 32). The text encoder took
 * 0.18-0.20 s instead of 0.21-0.22 (2 threads of an AVX-512 Xeon VM; 4 and 8 tiles at a time alike). */
#define MM_SWAP_CHUNK (32 / MM_MR > 0 ? 32 / MM_MR : 1)

/* Few rows and a float32 w (the text encoder's 77 tokens): w has to come from memory once per call in any order,
 * and packing it first, with nothing to compute meanwhile, takes about as long as the product itself. So the
 * roles swap: w's rows are read in place, MR at a time, as the kernel's a, and a's rows are packed into panels NR
 * wide as its b; a kernel tile is then out transposed (MR columns n by NR rows m). Every element is still one
 * chain of fmaf over k = 0..K-1 in order (fmaf(w, a, c) is fmaf(a, w, c)), from 0 or from out when accumulating,
 * with the bias added last: the same bits as the other paths. A thread takes MR rows of w through every panel
 * before the next, so w is read from memory once. Needs N >= MR (the last tile moves up to stay inside w). */
static void mm_swapped_run(const struct mm_args *g, float *packed) {
    const int M = g->M, K = g->K, N = g->N, panels = (M + MM_NR - 1) / MM_NR, ntiles = (N + MM_MR - 1) / MM_MR;
    const int kparts = (K + MM_PACK_K - 1) / MM_PACK_K;
    const StoredWeight rows_of_a = float32_weight(g->a);
    const float *w = (const float *)g->w->data;
    int q, t;
    OMP(for schedule(static))
    for (q = 0; q < panels * kparts; q++) { /* packed[p][k][j] = a[p * NR + j][k], zero past M */
        const int p = q / kparts, k0 = q % kparts * MM_PACK_K, klen = K - k0 < MM_PACK_K ? K - k0 : MM_PACK_K;
        const int m0 = p * MM_NR, mc = M - m0 < MM_NR ? M - m0 : MM_NR;
        mm_pack(packed + ((size_t)p * K + k0) * MM_NR, &rows_of_a, (size_t)m0 * g->lda + k0, g->lda, mc, klen);
    }
    OMP(for schedule(dynamic, MM_SWAP_CHUNK)) /* as threads come free (see tile_chunk) */
    for (t = 0; t < ntiles; t++) {
        const int shift = (t + 1) * MM_MR > N ? (t + 1) * MM_MR - N : 0, n0 = t * MM_MR - shift;
        int p, i, j, width;
        for (p = 0; p < panels; p++) {
            const int m0 = p * MM_NR, mc = M - m0 < MM_NR ? M - m0 : MM_NR;
            MmKernel *const kernel = mm_kernel_covering(mc, &width);
            float tile[MM_MR * MM_NR];
            /* out's rows are the tile's columns: each row's MR values are moved together (one cache line), as a
             * column at a time touched every line MR times, at a stride that is often 4 KiB (one L1 set) */
            if (g->accum) {
                memset(tile, 0, sizeof tile);
                for (j = 0; j < mc; j++)
                    for (i = 0; i < MM_MR; i++) tile[i * MM_NR + j] = g->out[(size_t)(m0 + j) * g->ldo + n0 + i];
            }
            kernel(K, w + (size_t)n0 * g->ldw, g->ldw, packed + (size_t)p * K * MM_NR, tile, MM_NR, g->accum, NULL);
            for (j = 0; j < mc; j++)
                for (i = shift; i < MM_MR; i++) {
                    const float v = tile[i * MM_NR + j];
                    g->out[(size_t)(m0 + j) * g->ldo + n0 + i] = g->bias ? v + g->bias[n0 + i] : v;
                }
        }
    }
}

/* mm_swapped_run's conditions; and at most a quarter more rows computed than by MR-row tiles */
static int mm_swapped_applies(const struct mm_args *g) {
    const int rows_swapped = (g->M + MM_NR - 1) / MM_NR * MM_NR, rows_tiled = (g->M + MM_MR - 1) / MM_MR * MM_MR;
    return !g->shifted && g->taps == 1 && g->w->dtype == T2V_F32 && g->N >= MM_MR && g->M <= MM_SWAP_ROWS &&
           (double)g->K * MM_NR <= (double)MM_KC * MM_NC && 4 * rows_swapped <= 5 * rows_tiled;
}

/* ---- int8 arithmetic (--int8-math int) ----
 * With an int8 weight, out[m][n] = sum over the groups g of K:  sa[m][g] * sw[n][g] * dot_g(qa[m], qw[n])  (+ bias)
 * - qw, sw: the weight's int8 values and group scales as stored (groups of G = 32 or 64 consecutive k).
 * - qa, sa: the activations quantised on the fly, the same way: per row and group, symmetric, round to nearest,
 *   sa = max|a| / 127 and qa = round(a / sa) in [-127, 127] (quantise_activations).
 * - dot_g is summed exactly in int32 (|dot| <= 64 * 127 * 127 < 2^24, so even its float is exact); then
 *   acc = fma(float(dot_g), sa * sw, acc) for g = 0, 1, ... in order, from 0 (or out when accumulating), and the
 *   bias is added last. Every kernel does exactly these float operations in this order, so the portable
 *   kernel and the SIMD one give the same bits, whatever the blocking and the thread count.
 * The activations are stored as unsigned bytes ua = qa + 128, which is what the SIMD kernel needs: AVX-512
 * VNNI's vpdpbusd adds four unsigned x signed byte products to each int32 lane. It starts each group's int32
 * accumulators at -128 * sum_k qw[n][k] (the weight-sum correction), so they end at dot_g exactly. Its weights
 * are packed per call, 32 columns at a time, into blocks of [group][G/4][32 columns][4 consecutive k] bytes (a
 * 4 x 32 block is two zmm vectors), each group followed by its 32 corrections (int32) and 32 scales (float);
 * an 8 x 32 tile of out holds 16 zmm int32 accumulators for the group being summed and 16 float ones. It is
 * blocked over K and N like the float matmul (KC values, NC columns a block). */
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
#  include <immintrin.h>
#  define T2V_INT8_SIMD 1
#else
#  define T2V_INT8_SIMD 0
#endif

/* per-thread cached scratch, as mm_scratch: [0] the quantised activations, [1] the packed weight block */
static unsigned char *int8_scratch[2] = {NULL, NULL};
static size_t int8_scratch_bytes[2] = {0, 0};
OMP(threadprivate(int8_scratch, int8_scratch_bytes))

static unsigned char *int8_get_scratch(int which, size_t bytes, const char *what) {
    if (bytes > int8_scratch_bytes[which]) {
        free(int8_scratch[which]);
        int8_scratch[which] = (unsigned char *)xmalloc(bytes, what);
        int8_scratch_bytes[which] = bytes;
    }
    return int8_scratch[which];
}

/* --int8-math: the default is integer arithmetic where this build has a SIMD kernel for it. */
static T2VInt8Math g_int8_math = T2V_INT8_SIMD ? T2V_INT8_MATH_INT : T2V_INT8_MATH_FLOAT;

void t2v_set_int8_math(T2VInt8Math math) { g_int8_math = math; }
T2VInt8Math t2v_int8_math(void) { return g_int8_math; }

/* Rows [0, M) of a (row stride lda) quantised into ua [Mp][K] (qa + 128) and sa [Mp][K / G]; the padding rows
 * [M, Mp) are zeros (ua 128, scale 0), so that a kernel may run whole row tiles. */
static void quantise_activations(const float *a, ptrdiff_t lda, int M, int Mp, int K, int G, unsigned char *ua,
                                 float *sa) {
    const int groups = K / G;
    int m;
    PARALLEL_FOR(schedule(static))
    for (m = 0; m < Mp; m++) {
        int g, k;
        for (g = 0; g < groups; g++) {
            unsigned char *q = ua + (size_t)m * K + (size_t)g * G;
            const float *x = a + (size_t)m * lda + (size_t)g * G;
            float amax = 0.0f, inv;
            if (m >= M) {
                memset(q, 128, (size_t)G);
                sa[(size_t)m * groups + g] = 0.0f;
                continue;
            }
            for (k = 0; k < G; k++) amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
            sa[(size_t)m * groups + g] = amax / 127.0f;
            inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            for (k = 0; k < G; k++) {
                const float v = x[k] * inv;
                int r = (int)(v < 0.0f ? v - 0.5f : v + 0.5f);   /* half away from zero */
                r = r > 127 ? 127 : r < -127 ? -127 : r;
                q[k] = (unsigned char)(r + 128);
            }
        }
    }
}

/* The reference: out[m][n] as the comment above defines it, one element at a time, for the rows [0, M). */
static void int8_matmul_portable(float *out, ptrdiff_t ldo, const unsigned char *ua, const float *sa, int M, int K,
                                 const StoredWeight *w, ptrdiff_t ldw, const float *bias, int N, int accumulate) {
    const int G = w->group_size, groups = K / G;
    int m;
    PARALLEL_FOR(schedule(static))
    for (m = 0; m < M; m++) {
        const unsigned char *qa = ua + (size_t)m * K;
        int n, g, k;
        for (n = 0; n < N; n++) {
            const int8_t *qw = (const int8_t *)w->data + (size_t)n * ldw;
            const float *sw = w->scales + (size_t)n * ldw / G;
            float acc = accumulate ? out[(size_t)m * ldo + n] : 0.0f;
            for (g = 0; g < groups; g++) {
                /* sum (ua - 128) qw, spelled as sum ua qw - 128 sum qw: gcc 12 -O3 -march=native vectorised
                 * the direct spelling as if the - 128 were not there (it became vpdpbusd on ua) */
                int32_t products = 0, weight_sum = 0;
                for (k = g * G; k < g * G + G; k++) {
                    products += (int32_t)qa[k] * qw[k];
                    weight_sum += qw[k];
                }
                acc = MM_FMA((float)(products - 128 * weight_sum), sa[(size_t)m * groups + g] * sw[g], acc);
            }
            out[(size_t)m * ldo + n] = bias ? acc + bias[n] : acc;
        }
    }
}

#if T2V_INT8_SIMD
#define I8_MR 8
#define I8_NR 32

/* bytes of one packed group of 32 columns: the values, 32 int32 corrections, 32 float scales */
static size_t int8_packed_group_bytes(int G) { return (size_t)G * I8_NR + 2 * I8_NR * 4; }

/* Columns [n0, n0 + nr) and groups [g0, g0 + ng) of w into dst, in the layout above; columns past nr are
 * zero (values, corrections and scales), so their results are 0 and discarded. */
static void int8_pack_panel(unsigned char *dst, const StoredWeight *w, ptrdiff_t ldw, int n0, int nr, int g0, int ng) {
    const int G = w->group_size;
    int g, j, k;
    for (g = 0; g < ng; g++) {
        unsigned char *values = dst + (size_t)g * int8_packed_group_bytes(G);
        int32_t corrections[I8_NR];
        float scales[I8_NR];
        for (j = 0; j < I8_NR; j++) {
            int32_t sum = 0;
            if (j < nr) {   /* 4 consecutive k of a column are 4 consecutive bytes of its row */
                const int8_t *q = (const int8_t *)w->data + (size_t)(n0 + j) * ldw + (size_t)(g0 + g) * G;
                for (k = 0; k < G; k += 4) memcpy(values + (size_t)k * I8_NR + (size_t)j * 4, q + k, 4);
                for (k = 0; k < G; k++) sum += q[k];
                scales[j] = w->scales[((size_t)(n0 + j) * ldw) / G + (size_t)(g0 + g)];
            } else {
                for (k = 0; k < G; k += 4) memset(values + (size_t)k * I8_NR + (size_t)j * 4, 0, 4);
                scales[j] = 0.0f;
            }
            corrections[j] = -128 * sum;
        }
        memcpy(values + (size_t)G * I8_NR, corrections, sizeof corrections);
        memcpy(values + (size_t)G * I8_NR + sizeof corrections, scales, sizeof scales);
    }
}

/* the packed panel 1 KiB (32 k) ahead is asked for early, as in mm_kernel: the small int8 UNet3D took 0.92-0.99 of
 * the time in 4 of 4 interleaved runs (2 KiB ahead was slower) */
#ifndef I8_PREFETCH_BYTES
#  define I8_PREFETCH_BYTES 1024
#endif

/* c[8][32] (row stride ldc) = (load ? c : 0) + the ng groups of ua's 8 rows (stride lda; their scales sa, stride
 * lds) times the packed panel (+ bias). */
static void int8_kernel_vnni(int ng, int G, const unsigned char *ua, ptrdiff_t lda, const float *sa, ptrdiff_t lds,
                             const unsigned char *panel, float *c, ptrdiff_t ldc, int load, const float *bias) {
    __m512 f[I8_MR][2];
    const unsigned char *panel_end = panel + (size_t)ng * int8_packed_group_bytes(G);
    int r, g, k4;
    for (r = 0; r < I8_MR; r++) {
        f[r][0] = load ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();
        f[r][1] = load ? _mm512_loadu_ps(c + r * ldc + 16) : _mm512_setzero_ps();
    }
    for (g = 0; g < ng; g++) {
        const unsigned char *b = panel + (size_t)g * int8_packed_group_bytes(G);
        const __m512i corr0 = _mm512_loadu_si512((const void *)(b + (size_t)G * I8_NR));
        const __m512i corr1 = _mm512_loadu_si512((const void *)(b + (size_t)G * I8_NR + 64));
        const __m512 sw0 = _mm512_loadu_ps((const float *)(const void *)(b + (size_t)G * I8_NR + 128));
        const __m512 sw1 = _mm512_loadu_ps((const float *)(const void *)(b + (size_t)G * I8_NR + 192));
        __m512i acc[I8_MR][2];
        for (r = 0; r < I8_MR; r++) {
            acc[r][0] = corr0;
            acc[r][1] = corr1;
        }
        for (k4 = 0; k4 < G / 4; k4++) {
            const __m512i w0 = _mm512_loadu_si512((const void *)(b + (size_t)k4 * 128));
            const __m512i w1 = _mm512_loadu_si512((const void *)(b + (size_t)k4 * 128 + 64));
            if (b + (size_t)k4 * 128 + I8_PREFETCH_BYTES + 128 <= panel_end) { /* as the float kernel does */
                MM_PREFETCH_LINE(b + (size_t)k4 * 128 + I8_PREFETCH_BYTES);
                MM_PREFETCH_LINE(b + (size_t)k4 * 128 + I8_PREFETCH_BYTES + 64);
            }
            for (r = 0; r < I8_MR; r++) {
                int32_t four;   /* 4 consecutive activation bytes, broadcast to every lane */
                __m512i x;
                memcpy(&four, ua + r * lda + (ptrdiff_t)g * G + 4 * k4, 4);
                x = _mm512_set1_epi32(four);
                acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], x, w0);
                acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], x, w1);
            }
        }
        for (r = 0; r < I8_MR; r++) {
            const __m512 s = _mm512_set1_ps(sa[r * lds + g]);
            f[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][0]), _mm512_mul_ps(s, sw0), f[r][0]);
            f[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][1]), _mm512_mul_ps(s, sw1), f[r][1]);
        }
    }
    for (r = 0; r < I8_MR; r++) {
        if (bias) {
            f[r][0] = _mm512_add_ps(f[r][0], _mm512_loadu_ps(bias));
            f[r][1] = _mm512_add_ps(f[r][1], _mm512_loadu_ps(bias + 16));
        }
        _mm512_storeu_ps(c + r * ldc, f[r][0]);
        _mm512_storeu_ps(c + r * ldc + 16, f[r][1]);
    }
}

struct int8_args {
    float *out;
    ptrdiff_t ldo, ldw;
    const unsigned char *ua;  /* [Mp][K], Mp a multiple of 8 */
    const float *sa, *bias;   /* [Mp][K / G] */
    const StoredWeight *w;
    int M, K, N, accum, gcb, ncb;   /* gcb groups (of K) and ncb columns a block */
    unsigned char *packed;    /* [ncb / 32][gcb] packed groups */
    float *bias_block;        /* [ncb], zero padded */
};

/* executed by every thread of the team (or by one thread), as mm_run */
static void int8_run(const struct int8_args *g) {
    const int G = g->w->group_size, groups = g->K / G, mtiles = (g->M + I8_MR - 1) / I8_MR;
    const size_t group_bytes = int8_packed_group_bytes(G);
    int jc, gc;
    for (jc = 0; jc < g->N; jc += g->ncb) {
        const int nc = g->N - jc < g->ncb ? g->N - jc : g->ncb, npan = (nc + I8_NR - 1) / I8_NR;
        for (gc = 0; gc < groups; gc += g->gcb) {
            const int ng = groups - gc < g->gcb ? groups - gc : g->gcb;
            const int last = gc + ng == groups, load = gc > 0 || g->accum;
            const long nitems = (long)mtiles * npan;
            long it;
            int p;
            OMP(for schedule(static))
            for (p = 0; p < npan; p++) {
                const int n0 = p * I8_NR, nr = nc - n0 < I8_NR ? nc - n0 : I8_NR;
                int j;
                int8_pack_panel(g->packed + (size_t)p * g->gcb * group_bytes, g->w, g->ldw, jc + n0, nr, gc, ng);
                if (last && g->bias)
                    for (j = 0; j < I8_NR; j++) g->bias_block[n0 + j] = j < nr ? g->bias[jc + n0 + j] : 0.0f;
            }
            OMP(for schedule(dynamic, tile_chunk(nitems, npan))) /* as in mm_run */
            for (it = 0; it < nitems; it++) {
                const int ti = (int)(it / npan), p2 = (int)(it % npan);
                const int m0 = ti * I8_MR, n0 = p2 * I8_NR;
                const int mr = g->M - m0 < I8_MR ? g->M - m0 : I8_MR, nr = nc - n0 < I8_NR ? nc - n0 : I8_NR;
                const unsigned char *ua = g->ua + (size_t)m0 * g->K + (size_t)gc * G;
                const float *sa = g->sa + (size_t)m0 * groups + gc;
                const unsigned char *panel = g->packed + (size_t)p2 * g->gcb * group_bytes;
                const float *bias = last && g->bias ? g->bias_block + n0 : NULL;
                float *c = g->out + (size_t)m0 * g->ldo + jc + n0;
                if (mr == I8_MR && nr == I8_NR) {
                    int8_kernel_vnni(ng, G, ua, g->K, sa, groups, panel, c, g->ldo, load, bias);
                } else {   /* an edge tile: through a whole temporary tile */
                    float tile[I8_MR * I8_NR];
                    int i, j;
                    for (i = 0; i < I8_MR * I8_NR; i++) tile[i] = 0.0f;
                    if (load)
                        for (i = 0; i < mr; i++)
                            for (j = 0; j < nr; j++) tile[i * I8_NR + j] = c[i * g->ldo + j];
                    int8_kernel_vnni(ng, G, ua, g->K, sa, groups, panel, tile, I8_NR, load, bias);
                    for (i = 0; i < mr; i++)
                        for (j = 0; j < nr; j++) c[i * g->ldo + j] = tile[i * I8_NR + j];
                }
            }
        }
    }
}

/* rows [0, M) of out from the quantised activations (Mp >= M rows, a multiple of 8) */
static void int8_matmul_simd(float *out, ptrdiff_t ldo, const unsigned char *ua, const float *sa, int M, int K,
                             const StoredWeight *w, ptrdiff_t ldw, const float *bias, int N, int accumulate) {
    struct int8_args g;
    const int G = w->group_size, groups = K / G;
    int nb;
    size_t need;
    nb = (groups * G + MM_KC - 1) / MM_KC;  /* balanced blocks of about KC values and NC columns */
    g.gcb = (groups + nb - 1) / nb;
    nb = (N + MM_NC - 1) / MM_NC;
    g.ncb = ((N + nb - 1) / nb + I8_NR - 1) / I8_NR * I8_NR;
    need = (size_t)g.ncb / I8_NR * g.gcb * int8_packed_group_bytes(G) + (size_t)g.ncb * sizeof(float);
    g.out = out; g.ldo = ldo; g.ldw = ldw; g.ua = ua; g.sa = sa; g.bias = bias; g.w = w;
    g.M = M; g.K = K; g.N = N; g.accum = accumulate != 0;
    g.packed = int8_get_scratch(1, need, "packed int8 weights");
    g.bias_block = (float *)(void *)(g.packed + (size_t)g.ncb / I8_NR * g.gcb * int8_packed_group_bytes(G));
    OMP(parallel if (2.0 * M * N * K >= MM_PAR_MIN_FLOPS))
    int8_run(&g);
}
#endif

/* out = a w^T (+ bias) with an int8 weight in integer arithmetic: the activations are quantised in chunks of
 * rows (a few MB of bytes, so memory does not grow with M), each chunk multiplied by the SIMD kernel where the
 * build has one, else (or with T2V_MATMUL=naive) by the portable one. Rows are independent, so the chunking
 * changes no result. */
static void matmul_int8(float *out, ptrdiff_t ldo, const float *a, ptrdiff_t lda, const StoredWeight *w,
                        ptrdiff_t ldw, const float *bias, int M, int K, int N, int accumulate, int simd) {
    unsigned char *scratch;
    const int G = w->group_size;
    int rows = (1 << 24) / (K > 0 ? K : 1), r0;
    size_t need;
    if (K % G) t2v_die("internal: int8 weight with groups of %d in a reduction of %d", G, K);
    rows = (rows < 64 ? 64 : rows) / 8 * 8;
    if (rows > (M + 7) / 8 * 8) rows = (M + 7) / 8 * 8;
    need = (size_t)rows * K + (size_t)rows * (K / G) * sizeof(float);
    scratch = int8_get_scratch(0, need, "quantised activations");  /* kept: no allocation in the denoising loop */
    for (r0 = 0; r0 < M; r0 += rows) {
        const int m = M - r0 < rows ? M - r0 : rows, mp = (m + 7) / 8 * 8;
        float *sa = (float *)(void *)(scratch + (size_t)rows * K);
        quantise_activations(a + (size_t)r0 * lda, lda, m, mp, K, G, scratch, sa);
#if T2V_INT8_SIMD
        if (simd) {
            int8_matmul_simd(out + (size_t)r0 * ldo, ldo, scratch, sa, m, K, w, ldw, bias, N, accumulate);
            continue;
        }
#endif
        (void)simd;
        int8_matmul_portable(out + (size_t)r0 * ldo, ldo, scratch, sa, m, K, w, ldw, bias, N, accumulate);
    }
}

/* w's panels when w was packed whole (PackedPanels) for exactly this product: all of it, in this reduction order */
static const float *whole_panels(const struct mm_args *g) {
    const PackedPanels *p = g->w->packed;
    return p && p->panels && p->rows == g->N && p->k == g->K && p->taps == g->taps && g->ldw == g->K ? p->panels : NULL;
}

/* A convolution blocked along whole taps (mm_execute) reads its input once per block of columns, and its blocks are
 * one or two panels wide. Where the C library says that a core's L2 holds 2 MiB or more (glibc's sysconf extension;
 * elsewhere nothing is known and nothing changes), such a block may take twice the usual area, 1.5 MiB, which is
 * 3/4 of that L2 as the usual 768 KiB is of a 1 MiB one: twice as wide, the input read half as often. The 320-channel
 * 3x3 and temporal convolutions of the default UNet3D forward then ran 4-7% faster, and the forward took 0.95-0.99
 * of the time in four interleaved pairs (2 threads of an AVX-512 Xeon VM, 2 MiB of L2). The same bits. */
static int whole_taps_block_area(void) {
#if T2V_POSIX && defined(_SC_LEVEL2_CACHE_SIZE)
    if (sysconf(_SC_LEVEL2_CACHE_SIZE) >= 2L << 20) return 2 * MM_KC * MM_NC;
#endif
    return MM_KC * MM_NC;
}

/* Runs one product described by g (operands, sizes, accumulate, taps, shifted set; blocking and scratch are
 * chosen here). Each element is one multiply-add chain over k = 0 .. K-1 (bias added last), so the result does
 * not depend on blocking or thread count. */
static void mm_execute(struct mm_args *g) {
    const int M = g->M, K = g->K, N = g->N;
    float stack_floats[MM_STACK_FLOATS + 16], *const stackbuf = (float *)align_64(stack_floats);
    float *buf;
    size_t need, apad = 0;
    int nb, widest, area;
    if (K <= 0) { /* degenerate: out = bias (or unchanged + bias) */
        int m, n;
        for (m = 0; m < M; m++)
            for (n = 0; n < N; n++) {
                float v = g->accum ? g->out[(size_t)m * g->ldo + n] : 0.0f;
                g->out[(size_t)m * g->ldo + n] = g->bias ? v + g->bias[n] : v;
            }
        return;
    }
    g->panels = whole_panels(g);
    if ((double)M * N * K <= MM_TINY) { /* packing would cost more than it saves */
        mm_simple(g);
        return;
    }
    if (!g->panels && mm_swapped_applies(g)) { /* (with w packed whole, there is no packing to save) */
        const size_t packed = (size_t)(M + MM_NR - 1) / MM_NR * K * MM_NR;
        buf = packed <= MM_STACK_FLOATS ? stackbuf : mm_get_scratch(packed);
        if (buf) {
            OMP(parallel if (2.0 * M * N * K >= MM_PAR_MIN_FLOPS))
            mm_swapped_run(g, buf);
            return;
        }
    }
    /* Block sizes: a packed block of w is at most MM_KC x MM_NC floats (see there). K is split into balanced parts,
     * ceil(K / ceil(K / KC)). A convolution read in place (shifted) is blocked along whole taps instead, as many as
     * fit a block NR wide when there are many rows (out larger than the caches): a tile of out then stays in L1
     * from one tap to the next instead of going to memory and back once per tap, and neighbouring taps read mostly
     * the same input rows. Otherwise (or with more channels than a block holds) a block is part of one tap.
     * The block is then as wide as fits beside its part of K (balanced, a multiple of NR). Every block of columns
     * reads all of a once more, so for a short K this matters: the 320-channel linear layers (K = 320) get all of
     * N in one block, and 32768 x 320 x 320 ran at 238 GFLOP/s instead of 204 with NC-wide blocks (2 threads of an
     * AVX-512 Xeon); a's rows come from memory, and as long as K is short there is little work to hide that.
     * Blocks of whole taps may be wider where the L2 is larger (whole_taps_block_area). */
    nb = (K + MM_KC - 1) / MM_KC;
    g->kcb = (K + nb - 1) / nb;
    area = MM_KC * MM_NC;
    if (g->shifted) {
        const int taps = g->shifted->taps, channels = K / taps, fit = MM_KC * MM_NC / MM_NR / channels;
        if (M >= MM_WHOLE_TAPS_ROWS && fit >= 1) {
            nb = (taps + fit - 1) / fit;
            g->kcb = (taps + nb - 1) / nb * channels;
            area = whole_taps_block_area();
        } else {
            nb = (channels + MM_KC - 1) / MM_KC;
            while (channels % nb) nb++;
            g->kcb = channels / nb;
        }
    }
    widest = area / g->kcb / MM_NR * MM_NR;
    if (widest < MM_NR) widest = MM_NR;
    nb = (N + widest - 1) / widest;
    g->ncb = ((N + nb - 1) / nb + MM_NR - 1) / MM_NR * MM_NR;
    need = (g->panels ? 0 : (size_t)g->kcb * g->ncb) + g->ncb;
    if (M < MM_MR) apad = (size_t)MM_MR * K; /* tiny M: a is copied, zero-padded to MR rows (never shifted) */
    buf = need + apad <= MM_STACK_FLOATS ? stackbuf : mm_get_scratch(need + apad);
    if (!buf) { /* out of memory: same arithmetic, unblocked */
        mm_simple(g);
        return;
    }
    g->bp = buf;
    g->bb = buf + (need - g->ncb);
    if (apad) {
        float *at = buf + need;
        int i, k;
        const int r0 = MM_MR - M; /* a's rows go to the bottom of at (see mm_edge) */
        for (i = 0; i < MM_MR; i++)
            for (k = 0; k < K; k++)
                at[(size_t)i * K + k] = i >= r0 ? g->a[(size_t)(i - r0) * g->lda + k] : 0.0f;
        g->a = at + (size_t)r0 * K;
        g->lda = K;
    }
    /* always inside a parallel region, possibly of one thread: mm_run's worksharing loops must never bind
     * to the team of a caller that is itself a parallel loop */
    OMP(parallel if (2.0 * M * N * K >= MM_PAR_MIN_FLOPS))
    mm_run(g);
}

/* General entry.  out[m*ldo + n] = (accumulate ? out[m*ldo + n] : 0)
 *                                  + sum_k a[m*lda + k] * w[n*ldw + weight_column(k)] (+ bias[n]) */
static void matmul_general(float *out, int ldo, const float *a, int lda, const StoredWeight *w, int ldw,
                           const float *bias, int M, int K, int N, int accumulate, int taps) {
    struct mm_args g;
    if (M <= 0 || N <= 0) return;
    taps = stored_taps(w, taps);
    if (w->dtype == T2V_I8 && g_int8_math == T2V_INT8_MATH_INT && K > 0) {
        matmul_int8(out, ldo, a, lda, w, ldw, bias, M, K, N, accumulate, !use_naive_matmul());
        return;
    }
    if (use_naive_matmul()) {
        matmul_naive(out, ldo, a, lda, w, ldw, bias, M, K, N, accumulate, taps);
        return;
    }
    g.out = out; g.a = a; g.w = w; g.bias = bias;
    g.ldo = ldo; g.lda = lda; g.ldw = ldw;
    g.M = M; g.K = K; g.N = N; g.accum = accumulate != 0; g.taps = taps; g.shifted = NULL;
    mm_execute(&g);
}

/* strided rows, optional accumulation (attention's per-head products) */
static void matmul_ex(float *out, int ldo, const float *a, int lda, const float *w, int ldw,
                      const float *bias, int M, int K, int N, int accumulate) {
    const StoredWeight sw = float32_weight(w);
    matmul_general(out, ldo, a, lda, &sw, ldw, bias, M, K, N, accumulate, 1);
}

/* out[M][N] = a[M][K] w[N][K]^T + bias (nn.Linear's weight, as stored) */
static void matmul(float *out, const float *a, const StoredWeight *w, const float *bias, int M, int K, int N) {
    matmul_general(out, N, a, K, w, K, bias, M, K, N, 0, 1);
}

/* a convolution over gathered patches [M][taps][K / taps] with PyTorch's [N][K / taps][taps] weights, stored as
 * wtype */
static void matmul_conv(float *out, const float *patches, const StoredWeight *w, const float *bias, int M, int K,
                        int N, int taps) {
    matmul_general(out, N, patches, K, w, K, bias, M, K, N, 0, taps);
}

/* the same convolution reading its input in place: padded [..][C = K / taps] laid out as pr says (implicit GEMM);
 * pr->length must be a multiple of MM_MR so that no row tile straddles two segments */
static void matmul_conv_shifted(float *out, const float *padded, const PaddedRows *pr, const StoredWeight *w,
                                const float *bias, int M, int K, int N) {
    struct mm_args g;
    if (M <= 0 || N <= 0) return;
    if (pr->length % MM_MR || M % pr->length || K % pr->taps || (w->dtype == T2V_I8 && g_int8_math == T2V_INT8_MATH_INT))
        t2v_die("internal: implicit convolution shape");
    g.out = out; g.a = padded; g.w = w; g.bias = bias;
    g.ldo = N; g.lda = K / pr->taps; g.ldw = K;
    g.M = M; g.K = K; g.N = N; g.accum = 0; g.taps = stored_taps(w, pr->taps); g.shifted = pr;
    mm_execute(&g);
}
/* ---- layer weights, looked up by their Diffusers / transformers names ---- */

/* Linear and Conv weights stay in the mapped file as stored (float32, float16 or int8); the matmul converts them
 * as it packs (the UNet's float32 ones are packed once beforehand: unet_pack_weights). Biases and norms are float32 (copied at load from a float16 file). */
typedef struct { StoredWeight w; const float *b; int in, out; } Linear;         /* nn.Linear: w (out, in) */
typedef struct { StoredWeight w; const float *b; int in, out, kh, kw; } Conv;   /* Conv2d (out,in,kh,kw); temporal Conv3d (out,in,3,1,1); int8: stored (out,kh,kw,in) */
typedef struct { const float *w, *b; int channels, groups; float eps; } GroupNorm;
typedef struct { const float *w, *b; int dim; float eps; } LayerNorm;

typedef struct {
    T2VModel *m;
    const char *component; /* "unet", "vae", "text_encoder" */
    int pack_panels;       /* float32 Linear and Conv weights are to be packed once (unet_pack_weights) */
} Weights;

#define FORMAT_NAME(buf, fmt)                  \
    do {                                       \
        va_list ap_;                           \
        va_start(ap_, fmt);                    \
        vsnprintf(buf, sizeof buf, fmt, ap_);  \
        va_end(ap_);                           \
    } while (0)

/* The float32 or float16 (or, for a big weight, int8) tensor "component/name" of exactly this shape; a clear
 * error otherwise. */
static const T2VTensor *weight_tensor(Weights *W, int ndim, const int64_t *shape, const char *local, int int8_ok) {
    char name[512];
    const T2VTensor *t;
    int i, ok;
    snprintf(name, sizeof name, "%s/%s", W->component, local);
    t = t2v_find_tensor(W->m, name);
    ok = t && (t->dtype == T2V_F32 || t->dtype == T2V_F16 || (int8_ok && t->dtype == T2V_I8)) && t->ndim == ndim;
    for (i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        char want[200], got[200];
        Shape s;
        s.ndim = ndim;
        for (i = 0; i < ndim; i++) s.shape[i] = shape[i];
        shape_text(&s, want, sizeof want);
        if (!t) t2v_die("%s: tensor %s %s is missing (the config implies it); re-export the model with export.py",
                    W->m->path, name, want);
        s.ndim = t->ndim;
        for (i = 0; i < t->ndim; i++) s.shape[i] = t->shape[i];
        shape_text(&s, got, sizeof got);
        t2v_die("%s: tensor %s has shape %s and dtype %d; the config implies %s %s", W->m->path,
            name, got, t->dtype, want, int8_ok ? "float32, float16 or int8" : "float32 or float16");
    }
    return t;
}

/* Records a float32 weight (out, in, taps...) for unet_pack_weights: it will be packed as a product reduces it, over
 * k = tap * in + channel (weight_column); taps is 1 for a Linear or a 1x1 convolution. */
static const PackedPanels *panels_to_pack(T2VModel *m, const T2VTensor *t, const int64_t *shape, int ndim) {
    PackedPanels *p = (PackedPanels *)xcalloc(1, sizeof(PackedPanels), "packed weights");
    int i;
    p->source = (const float *)t->data;
    p->rows = (int)shape[0];
    p->k = (int)shape[1];
    p->taps = 1;
    for (i = 2; i < ndim; i++) p->taps *= (int)shape[i];
    p->k *= p->taps;
    if (m->n_packed == m->cap_packed) {
        PackedPanels **grown;
        m->cap_packed = m->cap_packed ? 2 * m->cap_packed : 256;
        grown = (PackedPanels **)realloc(m->packed, mul_size((size_t)m->cap_packed, sizeof(PackedPanels *)));
        if (!grown) t2v_die("out of memory (packed weights)");
        m->packed = grown;
    }
    m->packed[m->n_packed++] = p;
    return p;
}

/* A big weight (Linear, Conv, the token embedding), used in place in its stored dtype. An int8 one's groups
 * must lie within its rows (the reduction), which the file's table alone does not promise. (Returned through
 * *s: tcc 0.9.27 garbles the variable arguments of a function that returns a struct.) */
static void tensor_weight(StoredWeight *s, Weights *W, int ndim, const int64_t *shape, const char *fmt, ...) {
    char local[400];
    const T2VTensor *t;
    FORMAT_NAME(local, fmt);
    t = weight_tensor(W, ndim, shape, local, 1);
    if (t->dtype == T2V_I8 && shape[0] > 0 && (t->nbytes / (size_t)shape[0]) % (size_t)t->group_size)
        t2v_die("%s: int8 tensor %s/%s: its rows of %zu values do not split into groups of %d", W->m->path,
            W->component, local, t->nbytes / (size_t)shape[0], t->group_size);
    s->data = t->data;
    s->scales = t->scales;
    s->dtype = t->dtype;
    s->group_size = t->group_size;
    s->packed = W->pack_panels && t->dtype == T2V_F32 && ndim >= 2 ? panels_to_pack(W->m, t, shape, ndim) : NULL;
}

/* A small tensor (norm, bias, positional embedding) as float32: in place for a float32 file; a float16 one is
 * converted once at load into a copy the model owns (a few MB for the full model, and no conversion in the
 * elementwise kernels that read them). */
static const float *tensor_f32(Weights *W, int ndim, const int64_t *shape, const char *fmt, ...) {
    char local[400];
    const T2VTensor *t;
    T2VModel *m = W->m;
    float *copy;
    size_t i, n;
    FORMAT_NAME(local, fmt);
    t = weight_tensor(W, ndim, shape, local, 0);
    if (t->dtype == T2V_F32) return (const float *)t->data;
    n = t->nbytes / 2;
    copy = (float *)xmalloc(mul_size(n ? n : 1, sizeof(float)), "float32 copies of small float16 tensors");
    for (i = 0; i < n; i++) copy[i] = half_to_float(((const uint16_t *)t->data)[i]);
    if (m->n_copies == m->cap_copies) {
        m->cap_copies = m->cap_copies ? 2 * m->cap_copies : 256;
        float **grown = (float **)realloc(m->copies, mul_size((size_t)m->cap_copies, sizeof(float *)));
        if (!grown) t2v_die("out of memory (tensor copies)");
        m->copies = grown;
    }
    m->copies[m->n_copies++] = copy;
    return copy;
}

/* nn.Linear "name.weight" (out, in) and, if has_bias, "name.bias" (out) */
static void load_linear(Linear *l, Weights *W, int in, int out, int has_bias, const char *fmt, ...) {
    char name[400];
    int64_t shape[2];
    FORMAT_NAME(name, fmt);
    shape[0] = out;
    shape[1] = in;
    l->in = in;
    l->out = out;
    tensor_weight(&l->w, W, 2, shape, "%s.weight", name);
    l->b = has_bias ? tensor_f32(W, 1, shape, "%s.bias", name) : NULL;
}

/* nn.Conv2d (out, in, k, k), or with temporal = 1 TemporalConvLayer's nn.Conv3d (out, in, 3, 1, 1) */
static void load_conv(Conv *c, Weights *W, int in, int out, int k, int temporal, const char *fmt, ...) {
    char name[400];
    int64_t shape[5];
    FORMAT_NAME(name, fmt);
    shape[0] = out;
    shape[1] = in;
    shape[2] = temporal ? 3 : k;
    shape[3] = temporal ? 1 : k;
    shape[4] = 1;
    c->in = in;
    c->out = out;
    c->kh = (int)shape[2];
    c->kw = (int)shape[3];
    tensor_weight(&c->w, W, temporal ? 5 : 4, shape, "%s.weight", name);
    c->b = tensor_f32(W, 1, shape, "%s.bias", name);
}

static void load_group_norm(GroupNorm *g, Weights *W, int channels, int groups, float eps, const char *fmt, ...) {
    char name[400];
    int64_t shape[1];
    FORMAT_NAME(name, fmt);
    if (groups <= 0 || channels % groups)
        t2v_die("%s: %s: %d channels do not split into %d groups", W->m->path, name, channels, groups);
    shape[0] = channels;
    g->channels = channels;
    g->groups = groups;
    g->eps = eps;
    g->w = tensor_f32(W, 1, shape, "%s.weight", name);
    g->b = tensor_f32(W, 1, shape, "%s.bias", name);
}

static void load_layer_norm(LayerNorm *l, Weights *W, int dim, float eps, const char *fmt, ...) {
    char name[400];
    int64_t shape[1];
    FORMAT_NAME(name, fmt);
    shape[0] = dim;
    l->dim = dim;
    l->eps = eps;
    l->w = tensor_f32(W, 1, shape, "%s.weight", name);
    l->b = tensor_f32(W, 1, shape, "%s.bias", name);
}

/* ---- elementwise ---- */

/* e^x in plain arithmetic the compiler can vectorise (libm's expf is a call per element): x = n ln2 + r with
 * n = round(x / ln2) and |r| <= ln2 / 2 (ln2 in two parts, Cody and Waite), e^r by a degree-7 polynomial
 * (Cephes' expf coefficients), 2^n made in the exponent bits. Rounding by adding 1.5 * 2^23 leaves n in the low
 * bits of the sum, so no float -> int conversion or floorf stands in the way of vectorisation. The steps are
 * fused multiply-adds where the target has them (MM_FMA): gcc compiles -std=c99 without contracting a * b + c.
 * exp_in_range needs x in [-87.3, 88.3], so that n stays in [-126, 127]; a loop that clamps its inputs
 * itself calls it directly, because gcc turns exp_approx's clamp into branches with constant results, which
 * the vectoriser cannot if-convert around the fmaf calls. */
static inline float exp_in_range(float x) {
    const float shifter = 12582912.0f;
    float rounded, n, r, p, two_n;
    uint32_t bits;
    rounded = MM_FMA(x, 1.44269504088896341f, shifter);
    n = rounded - shifter;
    r = MM_FMA(n, -0.693359375f, x);
    r = MM_FMA(n, 2.12194440e-4f, r);
    p = 1.9875691500e-4f;
    p = MM_FMA(p, r, 1.3981999507e-3f);
    p = MM_FMA(p, r, 8.3334519073e-3f);
    p = MM_FMA(p, r, 4.1665795894e-2f);
    p = MM_FMA(p, r, 1.6666665459e-1f);
    p = MM_FMA(p, r, 5.0000001201e-1f);
    p = MM_FMA(p * r, r, r) + 1.0f;
    memcpy(&bits, &rounded, sizeof bits);
    bits = (bits - 0x4B400000u + 127u) << 23;      /* n + 127 in the exponent field */
    memcpy(&two_n, &bits, sizeof two_n);
    return p * two_n;
}

/* e^x for any x: within 1 ulp of expf on [-87.3, 88.3] (test_kernels.c checks it); inputs are clamped to that
 * range, so e^x is never 0, inf or subnormal: far below 1e-37 it returns about 1.2e-38, which no caller can
 * tell from 0, and above 88.3 it returns e^88.3 = 2.2e38 (the callers only take e^x of x <= 0, or e^-x where
 * x / (1 + e^-x) is then 0). */
static float exp_approx(float x) {
    return exp_in_range(x < -87.3f ? -87.3f : x > 88.3f ? 88.3f : x);
}

/* erf(x) in plain arithmetic the compiler can vectorise (libm's erff is a call per element; GEGLU takes tens of
 * millions per UNet step). |x| <= 1: x P(x^2), P of degree 6; beyond: 1 - e^(-z^2) R(1/z) with z = |x| clamped to
 * 3.92 (where erff is already 1), R of degree 8 approximating erfc(z) e^(z^2), the sign of x put back. The
 * coefficients are weighted least-squares fits to erf(x)/x on [0, 1] and erfc(z) e^(z^2) on [1, 3.93] (relative
 * errors about 1e-9 and 6e-8); both branches are computed and one is selected, so the loop has no branches.
 * Within 2 ulp of erff (test_kernels.c checks it). */
static inline float erf_approx(float x) {
    const float ax = fabsf(x), s = x * x;
    const float z = ax < 1.0f ? 1.0f : ax < 3.92f ? ax : 3.92f, u = 1.0f / z;
    float p, r, tail;
    p = 7.853988262e-05f;
    p = MM_FMA(p, s, -8.010235707e-04f);
    p = MM_FMA(p, s, 5.188333079e-03f);
    p = MM_FMA(p, s, -2.685381528e-02f);
    p = MM_FMA(p, s, 1.128358525e-01f);
    p = MM_FMA(p, s, -3.761262584e-01f);
    p = MM_FMA(p, s, 1.128379166e+00f);
    r = -1.049678666e-02f;
    r = MM_FMA(r, u, 3.356038171e-02f);
    r = MM_FMA(r, u, 1.361379148e-02f);
    r = MM_FMA(r, u, -2.305972974e-01f);
    r = MM_FMA(r, u, 4.893671002e-01f);
    r = MM_FMA(r, u, -4.684963517e-01f);
    r = MM_FMA(r, u, 4.121415087e-02f);
    r = MM_FMA(r, u, 5.591550958e-01f);
    r = MM_FMA(r, u, 2.634663181e-04f);
    tail = 1.0f - exp_in_range(-z * z) * r;
    return ax <= 1.0f ? x * p : x < 0.0f ? -tail : tail;
}

static float silu(float x) { return x / (1.0f + exp_approx(-x)); }
static float gelu_erf(float x) { return 0.5f * x * (1.0f + erf_approx(x * 0.70710678118654752f)); }
static float quick_gelu(float x) { return x / (1.0f + exp_approx(-1.702f * x)); }

static void silu_inplace(float *x, size_t n) {
    const double start = work_begin();
    size_t i;
    PARALLEL_FOR(schedule(static))
    for (i = 0; i < n; i++) x[i] = silu(x[i]);
    work_end(WORK_ELEMENTWISE, start, 0.0);
}

static void add_inplace(float *y, const float *x, size_t n) {
    const double start = work_begin();
    size_t i;
    PARALLEL_FOR(schedule(static))
    for (i = 0; i < n; i++) y[i] += x[i];
    work_end(WORK_ELEMENTWISE, start, 0.0);
}

/* nn.Linear over `tokens` rows */
static void linear(const Linear *l, const float *in, float *out, size_t tokens) {
    const double start = work_begin();
    size_t t, step = (size_t)1 << 20;
    for (t = 0; t < tokens; t += step) {
        size_t n = tokens - t < step ? tokens - t : step;
        matmul(out + t * l->out, in + t * l->in, &l->w, l->b, (int)n, l->in, l->out);
    }
    work_end(WORK_LINEAR, start, 2.0 * tokens * l->in * l->out);
}

/* The input of a stride-1, padding-1 convolution (3x3 or temporal), in the layout the convolution reads fastest:
 * zero-padded for the implicit GEMM (see PaddedRows) where that applies, plain channels-last otherwise (the
 * patches are then gathered). The layer before the convolution (GroupNorm, upsampling) writes straight into it,
 * so the padding costs no extra pass. */
typedef struct { float *data; int channels, padded; PaddedRows rows; } ConvInput;

/* The implicit GEMM needs row tiles inside one image row (or frame) and channel blocks worth a tap each; the
 * reference matmul (T2V_MATMUL=naive) and int8 arithmetic (which quantises whole rows of its operand) read
 * gathered patches. */
static int implicit_conv_applies(int length, const Conv *c) {
    return !use_naive_matmul() && length % MM_MR == 0 && c->in >= 16 &&
           !(c->w.dtype == T2V_I8 && g_int8_math == T2V_INT8_MATH_INT);
}

/* where compact channels-last token t goes in x */
static float *conv_input_token(const ConvInput *x, size_t t) {
    return x->data + (x->padded ? padded_row(&x->rows, t) : t) * x->channels;
}

static ConvInput conv_input_alloc(Arena *a, int groups, int channels, PaddedRows rows, int padded, size_t tokens) {
    ConvInput x;
    const size_t C = (size_t)channels, padded_segments = (size_t)groups * (rows.per_group + 2);
    x.channels = channels;
    x.padded = padded;
    x.rows = rows;
    x.data = arena_alloc(a, padded ? padded_segments * rows.stride * C : tokens * C);
    if (padded) {                /* zero the padding: the first and last segment of a group, each border */
        long seg;
        PARALLEL_FOR(schedule(static))
        for (seg = 0; seg < (long)padded_segments; seg++) {
            float *row = x.data + (size_t)seg * rows.stride * C;
            const long in_group = seg % (rows.per_group + 2);
            if (in_group == 0 || in_group == rows.per_group + 1) {
                memset(row, 0, (size_t)rows.stride * C * sizeof(float));
            } else {
                memset(row, 0, (size_t)rows.lead * C * sizeof(float));
                memset(row + (size_t)(rows.lead + rows.length) * C, 0,
                       (size_t)(rows.stride - rows.lead - rows.length) * C * sizeof(float));
            }
        }
    }
    return x;
}

/* for a 3x3 convolution over `frames` frames of H x W: each frame gets a border of zeros */
static ConvInput conv_input_3x3(Arena *a, const Conv *c, int frames, int H, int W) {
    PaddedRows rows;
    int ky, kx;
    rows.length = W;
    rows.per_group = H;
    rows.stride = W + 2;
    rows.lead = 1;
    rows.taps = 9;
    for (ky = 0; ky < 3; ky++)
        for (kx = 0; kx < 3; kx++) rows.tap_shift[ky * 3 + kx] = (ptrdiff_t)(ky - 1) * (W + 2) + (kx - 1);
    return conv_input_alloc(a, frames, c->in, rows, implicit_conv_applies(W, c), (size_t)frames * H * W);
}

/* for TemporalConvLayer's (3, 1, 1) convolution over B videos of F frames of P pixels: each video gets an empty
 * frame before and after it */
static ConvInput conv_input_temporal(Arena *a, const Conv *c, int B, int F, size_t P) {
    PaddedRows rows;
    int dt;
    rows.length = (int)P;
    rows.per_group = F;
    rows.stride = (int)P;
    rows.lead = 0;
    rows.taps = 3;
    for (dt = 0; dt < 3; dt++) rows.tap_shift[dt] = (ptrdiff_t)(dt - 1) * (ptrdiff_t)P;
    return conv_input_alloc(a, B, c->in, rows, implicit_conv_applies((int)P, c), (size_t)B * F * P);
}

/* copies channels-last tokens into x */
static void conv_input_fill(const ConvInput *x, const float *in, size_t tokens) {
    const double start = work_begin();
    long t;
    PARALLEL_FOR(schedule(static))
    for (t = 0; t < (long)tokens; t++)
        memcpy(conv_input_token(x, (size_t)t), in + (size_t)t * x->channels, (size_t)x->channels * sizeof(float));
    work_end(WORK_CONV_GATHER, start, 0.0);
}

/* nn.GroupNorm over `sets` independent sets of `tokens` consecutive channels-last tokens (optionally
 * followed by SiLU). A set is one frame for Diffusers' 4-D GroupNorm on (B*F, C, H, W), and all F frames
 * of a batch item for the 5-D GroupNorm of TemporalConvLayer and TransformerTemporalModel. Statistics in
 * double, two passes (population variance, as torch). Each pass sums whole channels-last rows into per-channel
 * partial sums over chunks of GN_CHUNK tokens (contiguous, so it vectorises; a group's channels are a few
 * floats of each row), then adds the partial sums of a group in a fixed order, whatever the thread count. */
#define GN_CHUNK 64

/* partial[set][chunk][c] = sum over the chunk's tokens of (x[c] - center[set][c])^power, power 1 or 2 */
static void group_norm_partial_sums(const float *in, double *partial, const double *center, int power, int sets,
                                    size_t tokens, size_t chunks, int C) {
    long item;
    PARALLEL_FOR(schedule(static))
    for (item = 0; item < (long)(sets * chunks); item++) {
        const size_t s = (size_t)item / chunks, t0 = (size_t)item % chunks * GN_CHUNK;
        const size_t t1 = t0 + GN_CHUNK < tokens ? t0 + GN_CHUNK : tokens;
        double *p = partial + (size_t)item * C;
        const double *m = center ? center + s * C : NULL;
        size_t t;
        int c;
        for (c = 0; c < C; c++) p[c] = 0.0;
        for (t = t0; t < t1; t++) {
            const float *x = in + (s * tokens + t) * C;
            if (power == 1)
                for (c = 0; c < C; c++) p[c] += x[c];
            else
                for (c = 0; c < C; c++) p[c] += ((double)x[c] - m[c]) * ((double)x[c] - m[c]);
        }
    }
}

/* the sum over one group's channels of its partial sums, chunk by chunk */
static double group_total(const double *partial, size_t s, int c0, int cpg, size_t chunks, int C) {
    double sum = 0.0;
    size_t k;
    int c;
    for (k = 0; k < chunks; k++)
        for (c = c0; c < c0 + cpg; c++) sum += partial[(s * chunks + k) * C + c];
    return sum;
}

static void group_norm_rows(Arena *a, const GroupNorm *g, const float *in, float *out, const PaddedRows *out_rows,
                            int sets, size_t tokens, int with_silu) {
    const double start = work_begin();
    ArenaMark mark = arena_mark(a);
    const int C = g->channels, G = g->groups, cpg = C / G;
    const size_t chunks = (tokens + GN_CHUNK - 1) / GN_CHUNK, n = (size_t)tokens * cpg;
    float *scale = arena_alloc(a, (size_t)sets * C), *shift = arena_alloc(a, (size_t)sets * C);
    double *partial = (double *)(void *)arena_alloc(a, 2 * (size_t)sets * chunks * C);
    double *mean = (double *)(void *)arena_alloc(a, 2 * (size_t)sets * C); /* the group's mean, per channel */
    int sg;
    size_t t;
    group_norm_partial_sums(in, partial, NULL, 1, sets, tokens, chunks, C);
    PARALLEL_FOR(schedule(static))
    for (sg = 0; sg < sets * G; sg++) {
        const int s = sg / G, c0 = (sg % G) * cpg;
        const double m = group_total(partial, (size_t)s, c0, cpg, chunks, C) / (double)n;
        int c;
        for (c = c0; c < c0 + cpg; c++) mean[(size_t)s * C + c] = m;
    }
    group_norm_partial_sums(in, partial, mean, 2, sets, tokens, chunks, C);
    PARALLEL_FOR(schedule(static))
    for (sg = 0; sg < sets * G; sg++) {
        const int s = sg / G, c0 = (sg % G) * cpg;
        const double var = group_total(partial, (size_t)s, c0, cpg, chunks, C) / (double)n;
        const float rstd = (float)(1.0 / sqrt(var + g->eps)), m = (float)mean[(size_t)s * C + c0];
        int c;
        for (c = c0; c < c0 + cpg; c++) {
            scale[(size_t)s * C + c] = rstd * g->w[c];
            shift[(size_t)s * C + c] = g->b[c] - m * rstd * g->w[c];
        }
    }
    PARALLEL_FOR(schedule(static))
    for (t = 0; t < (size_t)sets * tokens; t++) {
        const float *x = in + t * C, *sc = scale + (t / tokens) * C, *sh = shift + (t / tokens) * C;
        float *y = out + (out_rows ? padded_row(out_rows, t) : t) * C;
        int c;
        if (with_silu)
            for (c = 0; c < C; c++) y[c] = silu(x[c] * sc[c] + sh[c]);
        else
            for (c = 0; c < C; c++) y[c] = x[c] * sc[c] + sh[c];
    }
    arena_reset(a, mark);
    work_end(WORK_GROUP_NORM, start, 0.0);
}

static void group_norm(Arena *a, const GroupNorm *g, const float *in, float *out, int sets, size_t tokens, int with_silu) {
    group_norm_rows(a, g, in, out, NULL, sets, tokens, with_silu);
}

/* the same, written into a convolution's input (out may not overlap in there) */
static void group_norm_into(Arena *a, const GroupNorm *g, const float *in, const ConvInput *x, int sets, size_t tokens,
                            int with_silu) {
    group_norm_rows(a, g, in, x->data, x->padded ? &x->rows : NULL, sets, tokens, with_silu);
}

/* LayerNorm's sums over a token, in double, run in NORM_LANES interleaved partial sums (lane j takes elements j,
 * j + NORM_LANES, ...) added pairwise at the end. As one chain, every add waited for the one before it (4 cycles
 * each), and the 99 LayerNorms of the default UNet3D forward took 0.57 s of its 36 s; as lanes the compiler runs
 * them as vector adds. A fixed order per token: the result does not depend on the thread count. */
#define NORM_LANES 16

static double lanes_total(double lane[NORM_LANES]) {
    int width, j;
    for (width = NORM_LANES / 2; width >= 1; width /= 2)
        for (j = 0; j < width; j++) lane[j] += lane[j + width];
    return lane[0];
}

/* the sum of x[0 .. n) */
static double sum_in_lanes(const float *x, int n) {
    double lane[NORM_LANES] = {0.0};
    int i = 0, j;
    for (; i + NORM_LANES <= n; i += NORM_LANES)
        for (j = 0; j < NORM_LANES; j++) lane[j] += x[i + j];
    for (j = 0; i < n; i++, j++) lane[j] += x[i];
    return lanes_total(lane);
}

/* the sum of (x[i] - mean)^2, the difference taken in float and squared in double */
static double squared_deviations_in_lanes(const float *x, int n, float mean) {
    double lane[NORM_LANES] = {0.0};
    int i = 0, j;
    for (; i + NORM_LANES <= n; i += NORM_LANES)
        for (j = 0; j < NORM_LANES; j++) {
            const double d = x[i + j] - mean;
            lane[j] += d * d;
        }
    for (j = 0; i < n; i++, j++) {
        const double d = x[i] - mean;
        lane[j] += d * d;
    }
    return lanes_total(lane);
}

/* nn.LayerNorm over the last dimension of each token */
static void layer_norm(const LayerNorm *l, const float *in, float *out, size_t tokens) {
    const double start = work_begin();
    size_t t;
    PARALLEL_FOR(schedule(static))
    for (t = 0; t < tokens; t++) {
        const float *x = in + t * l->dim;
        float *y = out + t * l->dim;
        const float mean = (float)(sum_in_lanes(x, l->dim) / l->dim);
        const float rstd = (float)(1.0 / sqrt(squared_deviations_in_lanes(x, l->dim, mean) / l->dim + l->eps));
        int i;
        for (i = 0; i < l->dim; i++) y[i] = (x[i] - mean) * rstd * l->w[i] + l->b[i];
    }
    work_end(WORK_LAYER_NORM, start, 0.0);
}

static void softmax_row(float *x, int n) {
    float mx = x[0], sum = 0.0f;
    int i;
    for (i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (i = 0; i < n; i++) {
        x[i] = exp_approx(x[i] - mx);
        sum += x[i];
    }
    for (i = 0; i < n; i++) x[i] /= sum;
}

/* How many output pixels' patches a gathered convolution holds at once: all of them when they fit
 * GATHER_FLOATS (64 MiB), else balanced chunks of at least 64. Every chunk packs the whole weight again, so small
 * or ragged chunks cost: at the 4x4 level of the default video (512 pixels, K = 9 x 1280 or 9 x 2560, a 59-118 MB
 * weight) chunks of 16 MiB (364 + 148 pixels) ran at 62-96 GFLOP/s against 160-190 for the convolutions above. */
#define GATHER_FLOATS ((size_t)1 << 24)
static size_t gathered_chunk_rows(size_t total, int K) {
    const size_t fit = GATHER_FLOATS / (size_t)K > 0 ? GATHER_FLOATS / (size_t)K : 1; /* pixels whose patches fit */
    const size_t chunks = total > fit ? (total + fit - 1) / fit : 1, rows = (total + chunks - 1) / chunks;
    return rows >= 64 ? rows : total < 64 ? total : 64;
}

/* nn.Conv2d on channels-last frames [frames][H][W][in] -> [frames][Ho][Wo][out], with zero padding pad_t
 * rows above and pad_l columns left (rows/columns needed beyond the input are zero too). Each output
 * pixel's patch is gathered tap by tap, (kh, kw, in), as whole input pixels, and one matmul reduces it in
 * that order against the weight's (in, kh, kw) rows (matmul_conv); done in chunks of pixels so the
 * gathered patches stay small. */
static void conv2d_gathered(Arena *a, const Conv *c, const float *in, float *out, int frames, int H, int W,
                            int stride, int pad_t, int pad_l, int Ho, int Wo) {
    const int K = c->in * c->kh * c->kw, kk = c->kh * c->kw;
    const size_t total = (size_t)frames * Ho * Wo;
    ArenaMark mark = arena_mark(a);
    size_t rows, r0;
    float *patches;
    rows = gathered_chunk_rows(total, K);
    patches = arena_alloc(a, rows * K);
    for (r0 = 0; r0 < total; r0 += rows) {
        const size_t n = total - r0 < rows ? total - r0 : rows;
        double start = work_begin();
        size_t i;
        PARALLEL_FOR(schedule(static))
        for (i = 0; i < n; i++) {
            const size_t idx = r0 + i, f = idx / ((size_t)Ho * Wo);
            const int y = (int)(idx / Wo % Ho), x = (int)(idx % Wo);
            float *row = patches + i * K;
            int ky, kx;
            for (ky = 0; ky < c->kh; ky++)
                for (kx = 0; kx < c->kw; kx++) {   /* the patch is [tap][channel]: whole pixels */
                    const int iy = y * stride - pad_t + ky, ix = x * stride - pad_l + kx;
                    float *dst = row + (size_t)(ky * c->kw + kx) * c->in;
                    if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                        memset(dst, 0, (size_t)c->in * sizeof(float));
                    else
                        memcpy(dst, in + ((f * H + iy) * W + ix) * c->in, (size_t)c->in * sizeof(float));
                }
        }
        work_end(WORK_CONV_GATHER, start, 0.0);
        start = work_begin();
        matmul_conv(out + r0 * c->out, patches, &c->w, c->b, (int)n, K, c->out, kk);
        work_end(WORK_CONV_MATMUL, start, 2.0 * n * K * c->out);
    }
    arena_reset(a, mark);
}

/* ---- convolutions by Winograd's minimal filtering: F(2x2, 3x3) and F(2, 3) ----
 * A 3x3 convolution with stride 1 and padding 1 computes each 2x2 block of output pixels from the 4x4 input pixels
 * around it. Lavin and Gray ("Fast Algorithms for Convolutional Neural Networks", 2015) do that with 16
 * multiplications per pair of channels instead of 36:
 *
 *     B^T = [1  0 -1  0]      G = [ 1    0    0 ]      A^T = [1  1  1  0]
 *           [0  1  1  0]          [1/2  1/2  1/2]            [0  1 -1 -1]
 *           [0 -1  1  0]          [1/2 -1/2  1/2]
 *           [0  1  0 -1]          [ 0    0    1 ]
 *
 * an input tile d (4x4) becomes V = B^T d B, a filter g (3x3) becomes U = G g G^T, and the 2x2 outputs are
 * A^T M A where M, for each of the 16 positions of the tile, is the sum over input channels of U . V. That sum is a
 * matmul, [tiles][in] x [in][out], one for each position. So the convolution is three passes: the input tiles'
 * transform (winograd_input_3x3), 16 products against the transformed filters (winograd_filters), and the
 * transform back (winograd_output_3x3). The products do 16/36 = 4/9 of the direct convolution's multiply-adds; the
 * transforms only add and subtract, a pass over memory each.
 * TemporalConvLayer's (3, 1, 1) convolution over frames is the same in one dimension, F(2, 3): two output frames
 * from four input frames at each pixel, V = B^T d, U = G g, outputs A^T M, 4 products instead of 6.
 * The transforms' coefficients are 0, +-1 and +-1/2, so they round only in their additions, and the result stays
 * as close to Diffusers' as the direct sum's: against the golden tensors the UNet3D's output is within 3.2e-6 (3.3e-6
 * direct) and the VAE decoder's within 4.5e-6 (the same); test_kernels.c bounds it against the exact sum at awkward
 * sizes. Each output block comes from its own tile, and each channel sum is one product's chain over k, so the
 * result does not depend on the chunking below or on the number of threads.
 * On the default UNet3D forward (2 threads of an AVX-512 Xeon VM, interleaved pairs) the 3x3 convolutions took
 * 5.6 s instead of 10.2 s (the transforms 0.7 s of it), the forward 28.1 s instead of 32.9; then the temporal ones
 * 3.5 s instead of 4.5 (the transforms 0.5 s); a 256x256 VAE decode took 1.46 s instead of 2.32. */

/* The three buffers below are chunks: tiles (all positions of nt tiles), filters (nc output channels) and the
 * products (nt x nc for each position) take at most this many floats each, so that their scratch stays within a
 * few of the arena's blocks whatever the layer. */
#define WINOGRAD_FLOATS ((size_t)1 << 23)   /* 32 MiB */
static size_t winograd_chunk_floats = WINOGRAD_FLOATS; /* (the unit tests lower it to test the chunking) */
#define WINOGRAD_CB 64                      /* channels a tile's transform holds in L1 at a time */

/* The tiles of one Winograd convolution */
typedef struct {
    int temporal;          /* 0: 3x3 over frames of H x W, tiles of 2x2 output pixels (16 positions);
                            * 1: (3, 1, 1) over videos of F frames of P pixels, tiles of 2 output frames of one
                            *    pixel (4 positions) */
    int H, W;
    int F;
    size_t P, count;       /* count: the tiles, over all frames or videos */
} WinogradTiles;

/* The Winograd path needs whole tiles (even H and W, or an even number of frames), float32 or float16 weights (a
 * float16 file gives the same bits as a float32 one of the same values), and the fast matmul. The reference matmul
 * keeps the direct convolution, and so do int8 weights: their filters would be converted element by element for
 * every call (the int8 file's forward with float arithmetic went from 4.8 to 5.0 s at (2,4,8,16,16) that way),
 * where the direct products convert them in whole rows as they pack them (integer arithmetic has its own kernel).
 * So do layers with few input or output channels (conv_in's 4, conv_out's 4 or 3), where the transforms cost
 * more than the products save (the UNet3D's conv_out took 34 ms this way, 25 ms direct). */
static int winograd_applies(const Conv *c, int whole_tiles) {
    return whole_tiles && c->in >= 16 && c->out >= 16 && c->w.dtype != T2V_I8 && !use_naive_matmul();
}

/* U = G g G^T (3x3) or G g (temporal) for output channels o0 .. o0 + nc - 1 (o0 a multiple of MM_NR), written as
 * the matmul's panels of a weight [nc][in] for each position: U[pos][nc / NR][in][NR], columns past nc zero. */
static void winograd_filters(const Conv *c, int temporal, int o0, int nc, float *U) {
    const int C = c->in, npan = (nc + MM_NR - 1) / MM_NR, taps = temporal ? 3 : 9, positions = temporal ? 4 : 16;
    const size_t pos_stride = (size_t)npan * C * MM_NR;
    long q;
    PARALLEL_FOR(schedule(static))
    for (q = 0; q < (long)npan * C; q++) {
        const int pan = (int)(q / C), i = (int)(q % C), first = o0 + pan * MM_NR;
        const int lanes = nc - pan * MM_NR < MM_NR ? nc - pan * MM_NR : MM_NR;
        const PackedPanels *p = c->w.packed;
        float g[9][MM_NR], u[16][MM_NR]; /* (copied out to U's positions after: see winograd_input_3x3) */
        int tap, l;
        for (tap = 0; tap < taps; tap++) {
            if (p && p->panels) {   /* the lanes past the weight's rows are zero in its panels */
                memcpy(g[tap], p->panels + ((size_t)(first / MM_NR) * p->k + (size_t)tap * C + i) * MM_NR,
                       sizeof g[tap]);
                for (l = lanes; l < MM_NR; l++) g[tap][l] = 0.0f;
            } else {   /* as stored, (out, in, taps): lanes C * taps values apart; float32 without weight_at's
                        * dispatch (the kernel table's 1280-channel 8x8 convolution 164 -> 142 ms) */
                const size_t at = ((size_t)first * C + i) * taps + tap, lane_stride = (size_t)C * taps;
                for (l = 0; l < MM_NR; l++) {
                    const size_t e = at + (size_t)l * lane_stride;
                    g[tap][l] = l >= lanes ? 0.0f : c->w.dtype == T2V_F32 ? ((const float *)c->w.data)[e]
                                                                          : weight_at(&c->w, e);
                }
            }
        }
        if (temporal) {
            for (l = 0; l < MM_NR; l++) {   /* G g */
                u[0][l] = g[0][l];
                u[1][l] = 0.5f * (g[0][l] + g[1][l] + g[2][l]);
                u[2][l] = 0.5f * (g[0][l] - g[1][l] + g[2][l]);
                u[3][l] = g[2][l];
            }
        } else {
            for (l = 0; l < MM_NR; l++) {
                /* G g: rows of the 4x3 t */
                const float t00 = g[0][l], t01 = g[1][l], t02 = g[2][l];
                const float t10 = 0.5f * (g[0][l] + g[3][l] + g[6][l]), t11 = 0.5f * (g[1][l] + g[4][l] + g[7][l]),
                            t12 = 0.5f * (g[2][l] + g[5][l] + g[8][l]);
                const float t20 = 0.5f * (g[0][l] - g[3][l] + g[6][l]), t21 = 0.5f * (g[1][l] - g[4][l] + g[7][l]),
                            t22 = 0.5f * (g[2][l] - g[5][l] + g[8][l]);
                const float t30 = g[6][l], t31 = g[7][l], t32 = g[8][l];
                /* (G g) G^T: each row r of t gives positions 4r .. 4r + 3 */
                u[0][l] = t00;
                u[1][l] = 0.5f * (t00 + t01 + t02);
                u[2][l] = 0.5f * (t00 - t01 + t02);
                u[3][l] = t02;
                u[4][l] = t10;
                u[5][l] = 0.5f * (t10 + t11 + t12);
                u[6][l] = 0.5f * (t10 - t11 + t12);
                u[7][l] = t12;
                u[8][l] = t20;
                u[9][l] = 0.5f * (t20 + t21 + t22);
                u[10][l] = 0.5f * (t20 - t21 + t22);
                u[11][l] = t22;
                u[12][l] = t30;
                u[13][l] = 0.5f * (t30 + t31 + t32);
                u[14][l] = 0.5f * (t30 - t31 + t32);
                u[15][l] = t32;
            }
        }
        for (l = 0; l < positions; l++) memcpy(U + l * pos_stride + ((size_t)pan * C + i) * MM_NR, u[l], sizeof u[l]);
    }
}

/* where the input pixel (row y, column x) of frame f lies in x (rows and columns -1 and H, W are the zero border);
 * `zeros` (C zeros) for a pixel outside a plain (unpadded) input */
static const float *winograd_pixel(const ConvInput *x, int f, int y, int xx, int H, int W, const float *zeros) {
    if (x->padded) return x->data + (((size_t)f * (H + 2) + (y + 1)) * (W + 2) + (xx + 1)) * x->channels;
    if (y < 0 || y >= H || xx < 0 || xx >= W) return zeros;
    return x->data + (((size_t)f * H + y) * W + xx) * x->channels;
}

/* V = B^T d B for tiles t0 .. t0 + nt - 1 (row-major over frames, then 2-pixel rows and columns of each frame):
 * V[pos][nt][in], each position a matmul operand of nt rows. Written as two loops over channels so that gcc 12
 * vectorises both: B^T d from the 16 pixels into a small bd, then bd B, four positions at a time (with all 16
 * positions' rows of V written in one loop it did not). */
static void winograd_input_3x3(const ConvInput *x, const WinogradTiles *wt, size_t t0, int nt, const float *zeros,
                               float *V) {
    const int C = x->channels, H = wt->H, W = wt->W, tiles_w = W / 2;
    const size_t per_frame = (size_t)(H / 2) * tiles_w, pos_stride = (size_t)nt * C;
    long j;
    PARALLEL_FOR(schedule(static))
    for (j = 0; j < nt; j++) {
        const size_t t = t0 + (size_t)j;
        const int f = (int)(t / per_frame), y0 = (int)(t % per_frame / tiles_w) * 2 - 1,
                  x0 = (int)(t % tiles_w) * 2 - 1;
        const float *d[16];     /* the 4x4 input pixels, row by row */
        float bd[16][WINOGRAD_CB];
        int k, c0, c, r;
        for (k = 0; k < 16; k++) d[k] = winograd_pixel(x, f, y0 + k / 4, x0 + k % 4, H, W, zeros);
        for (c0 = 0; c0 < C; c0 += WINOGRAD_CB) {
            const int n = C - c0 < WINOGRAD_CB ? C - c0 : WINOGRAD_CB;
            const float *const d0 = d[0] + c0, *const d1 = d[1] + c0, *const d2 = d[2] + c0, *const d3 = d[3] + c0;
            const float *const d4 = d[4] + c0, *const d5 = d[5] + c0, *const d6 = d[6] + c0, *const d7 = d[7] + c0;
            const float *const d8 = d[8] + c0, *const d9 = d[9] + c0, *const d10 = d[10] + c0, *const d11 = d[11] + c0;
            const float *const d12 = d[12] + c0, *const d13 = d[13] + c0, *const d14 = d[14] + c0,
                        *const d15 = d[15] + c0;
            for (c = 0; c < n; c++) {   /* B^T d: row i of it is bd[4i .. 4i + 3] */
                bd[0][c] = d0[c] - d8[c];    bd[1][c] = d1[c] - d9[c];
                bd[2][c] = d2[c] - d10[c];   bd[3][c] = d3[c] - d11[c];
                bd[4][c] = d4[c] + d8[c];    bd[5][c] = d5[c] + d9[c];
                bd[6][c] = d6[c] + d10[c];   bd[7][c] = d7[c] + d11[c];
                bd[8][c] = d8[c] - d4[c];    bd[9][c] = d9[c] - d5[c];
                bd[10][c] = d10[c] - d6[c];  bd[11][c] = d11[c] - d7[c];
                bd[12][c] = d4[c] - d12[c];  bd[13][c] = d5[c] - d13[c];
                bd[14][c] = d6[c] - d14[c];  bd[15][c] = d7[c] - d15[c];
            }
            for (r = 0; r < 4; r++) {   /* (B^T d) B: row r of it is positions 4r .. 4r + 3 */
                const float *restrict e0 = bd[4 * r], *restrict e1 = bd[4 * r + 1], *restrict e2 = bd[4 * r + 2],
                                      *restrict e3 = bd[4 * r + 3];
                float *restrict v0 = V + (size_t)(4 * r) * pos_stride + (size_t)j * C + c0;
                float *restrict v1 = v0 + pos_stride, *restrict v2 = v1 + pos_stride, *restrict v3 = v2 + pos_stride;
                for (c = 0; c < n; c++) {
                    v0[c] = e0[c] - e2[c];
                    v1[c] = e1[c] + e2[c];
                    v2[c] = e2[c] - e1[c];
                    v3[c] = e1[c] - e3[c];
                }
            }
        }
    }
}

/* one temporal tile's 4 positions from its 4 input frames d0..d3: v = B^T d (restrict parameters: see
 * winograd_output_tile) */
static void winograd_input_frames(const float *d0, const float *d1, const float *d2, const float *d3, int n,
                                  float *restrict v0, float *restrict v1, float *restrict v2, float *restrict v3) {
    int c;
    for (c = 0; c < n; c++) {
        v0[c] = d0[c] - d2[c];
        v1[c] = d1[c] + d2[c];
        v2[c] = d2[c] - d1[c];
        v3[c] = d1[c] - d3[c];
    }
}

/* V = B^T d for temporal tiles t0 .. t0 + nt - 1 (row-major over videos, pairs of frames, pixels): V[pos][nt][in] */
static void winograd_input_temporal(const ConvInput *x, const WinogradTiles *wt, size_t t0, int nt,
                                    const float *zeros, float *V) {
    const int C = x->channels, F = wt->F;
    const size_t P = wt->P, pos_stride = (size_t)nt * C;
    long j;
    PARALLEL_FOR(schedule(static))
    for (j = 0; j < nt; j++) {
        const size_t t = t0 + (size_t)j, p = t % P, pair = t / P, b = pair / (size_t)(F / 2);
        const int f0 = (int)(pair % (size_t)(F / 2)) * 2 - 1;   /* the tile's first input frame */
        const float *d[4];
        float *const v = V + (size_t)j * C;
        int k;
        for (k = 0; k < 4; k++) {
            const int f = f0 + k;
            d[k] = x->padded ? x->data + ((b * (F + 2) + (size_t)(f + 1)) * P + p) * C
                 : f < 0 || f >= F ? zeros : x->data + ((b * F + (size_t)f) * P + p) * C;
        }
        winograd_input_frames(d[0], d[1], d[2], d[3], C, v, v + pos_stride, v + 2 * pos_stride, v + 3 * pos_stride);
    }
}

/* one tile's 2x2 output pixels y00, y01 (its first row), y10, y11 from m, its 16 positions' n products (s floats
 * apart): A^T M A + bias. (The outputs as restrict parameters: as locals, gcc 12 did not vectorise the loop.) */
static void winograd_output_tile(const float *m, size_t s, const float *bias, int n, float *restrict y00,
                                 float *restrict y01, float *restrict y10, float *restrict y11) {
    const float *const m0 = m, *const m1 = m0 + s, *const m2 = m1 + s, *const m3 = m2 + s;
    const float *const m4 = m3 + s, *const m5 = m4 + s, *const m6 = m5 + s, *const m7 = m6 + s;
    const float *const m8 = m7 + s, *const m9 = m8 + s, *const m10 = m9 + s, *const m11 = m10 + s;
    const float *const m12 = m11 + s, *const m13 = m12 + s, *const m14 = m13 + s, *const m15 = m14 + s;
    int c;
    for (c = 0; c < n; c++) {
        /* A^T M: two rows of four; then (A^T M) A: two columns of each */
        const float a0 = m0[c] + m4[c] + m8[c], a1 = m1[c] + m5[c] + m9[c], a2 = m2[c] + m6[c] + m10[c],
                    a3 = m3[c] + m7[c] + m11[c];
        const float b0 = m4[c] - m8[c] - m12[c], b1 = m5[c] - m9[c] - m13[c], b2 = m6[c] - m10[c] - m14[c],
                    b3 = m7[c] - m11[c] - m15[c];
        y00[c] = a0 + a1 + a2 + bias[c];
        y01[c] = a1 - a2 - a3 + bias[c];
        y10[c] = b0 + b1 + b2 + bias[c];
        y11[c] = b1 - b2 - b3 + bias[c];
    }
}

/* out's 2x2 blocks of tiles t0 .. t0 + nt - 1, channels o0 .. o0 + nc - 1, from the products M[pos][nt][nc]; out
 * is [frames][H][W][out], bias [nc] */
static void winograd_output_3x3(const float *M, const float *bias, const WinogradTiles *wt, int out_channels,
                                size_t t0, int nt, int o0, int nc, float *out) {
    const int H = wt->H, W = wt->W, tiles_w = W / 2;
    const size_t per_frame = (size_t)(H / 2) * tiles_w;
    long j;
    PARALLEL_FOR(schedule(static))
    for (j = 0; j < nt; j++) {
        const size_t t = t0 + (size_t)j, f = t / per_frame;
        const int y = (int)(t % per_frame / tiles_w) * 2, x = (int)(t % tiles_w) * 2;
        float *const y00 = out + ((f * H + y) * W + x) * out_channels + o0, *const y10 = y00 + (size_t)W * out_channels;
        winograd_output_tile(M + (size_t)j * nc, (size_t)nt * nc, bias, nc, y00, y00 + out_channels, y10,
                             y10 + out_channels);
    }
}

/* one temporal tile's two output frames y0, y1 from m, its 4 positions' n products (s floats apart): A^T M + bias */
static void winograd_output_frames(const float *m, size_t s, const float *bias, int n, float *restrict y0,
                                   float *restrict y1) {
    const float *const m0 = m, *const m1 = m0 + s, *const m2 = m1 + s, *const m3 = m2 + s;
    int c;
    for (c = 0; c < n; c++) {
        y0[c] = m0[c] + m1[c] + m2[c] + bias[c];
        y1[c] = m1[c] - m2[c] - m3[c] + bias[c];
    }
}

/* out's frame pairs of temporal tiles t0 .. t0 + nt - 1, channels o0 .. o0 + nc - 1; out is [B][F][P][out] */
static void winograd_output_temporal(const float *M, const float *bias, const WinogradTiles *wt, int out_channels,
                                     size_t t0, int nt, int o0, int nc, float *out) {
    const int F = wt->F;
    const size_t P = wt->P;
    long j;
    PARALLEL_FOR(schedule(static))
    for (j = 0; j < nt; j++) {
        const size_t t = t0 + (size_t)j, p = t % P, pair = t / P, b = pair / (size_t)(F / 2);
        const size_t f = pair % (size_t)(F / 2) * 2;
        float *const y0 = out + ((b * F + f) * P + p) * out_channels + o0;
        winograd_output_frames(M + (size_t)j * nc, (size_t)nt * nc, bias, nc, y0, y0 + P * out_channels);
    }
}

/* One product per position: M[pos] = V[pos] U[pos]^T over the input channels, U read as the panels it was
 * written as (a weight packed whole, with no stored form behind it) */
static void winograd_products(const float *V, const float *U, float *M, int positions, int nt, int C, int nc) {
    const size_t u_stride = (size_t)(nc + MM_NR - 1) / MM_NR * C * MM_NR;
    int pos;
    for (pos = 0; pos < positions; pos++) {
        PackedPanels panels;
        StoredWeight w = float32_weight(NULL);
        memset(&panels, 0, sizeof panels);
        panels.rows = nc;
        panels.k = C;
        panels.taps = 1;
        panels.panels = U + pos * u_stride;
        w.packed = &panels;
        matmul_general(M + (size_t)pos * nt * nc, nc, V + (size_t)pos * nt * C, C, &w, C, NULL, nt, C, nc, 0, 1);
    }
}

/* A convolution of x by Winograd's transforms (see above), over the tiles wt: in chunks of output channels (whole
 * panels) and of tiles, each buffer at most winograd_chunk_floats. The loop nest visits every pair of chunks and
 * recomputes the transformed filters or tiles only when its chunk changes; the outer loop runs over whichever kind
 * of chunk is cheaper to recompute. */
static void conv_winograd(Arena *a, const Conv *c, const ConvInput *x, float *out, const WinogradTiles *wt) {
    const int C = c->in, O = c->out, panels = (O + MM_NR - 1) / MM_NR, positions = wt->temporal ? 4 : 16;
    const size_t tiles = wt->count;
    const ArenaMark mark = arena_mark(a);
    size_t fit, filter_chunks, tile_chunks, nt, i, n_outer, n_inner, filters_at = (size_t)-1, tiles_at = (size_t)-1;
    int panels_per_chunk, filters_outer;
    float *zeros, *U, *V, *M;
    double transforms = 0.0, products = 0.0;
    if (tiles == 0) return;
    /* output channels: as many whole panels as fit, balanced */
    fit = winograd_chunk_floats / ((size_t)positions * MM_NR * C);
    if (fit < 1) fit = 1;
    filter_chunks = ((size_t)panels + fit - 1) / fit;
    panels_per_chunk = (int)(((size_t)panels + filter_chunks - 1) / filter_chunks);
    /* tiles: as many as fit beside the widest chunk of output channels, balanced */
    fit = winograd_chunk_floats / ((size_t)positions * (C > panels_per_chunk * MM_NR ? C : panels_per_chunk * MM_NR));
    if (fit < 1) fit = 1;
    tile_chunks = (tiles + fit - 1) / fit;
    nt = (tiles + tile_chunks - 1) / tile_chunks;
    /* recomputing the filters once per tile chunk costs (tile_chunks - 1) passes over all of them; the other way,
     * (filter_chunks - 1) passes over all the tiles */
    filters_outer = (filter_chunks - 1) * tiles < (tile_chunks - 1) * (size_t)O;
    n_outer = filters_outer ? filter_chunks : tile_chunks;
    n_inner = filters_outer ? tile_chunks : filter_chunks;
    zeros = arena_alloc(a, (size_t)(C > O ? C : O)); /* zero pixels outside an unpadded input; no bias */
    memset(zeros, 0, (size_t)(C > O ? C : O) * sizeof(float));
    U = arena_alloc(a, (size_t)positions * panels_per_chunk * MM_NR * C);
    V = arena_alloc(a, (size_t)positions * nt * C);
    M = arena_alloc(a, (size_t)positions * nt * panels_per_chunk * MM_NR);
    for (i = 0; i < n_outer * n_inner; i++) {
        const size_t fi = filters_outer ? i / n_inner : i % n_inner, ti = filters_outer ? i % n_inner : i / n_inner;
        const int o0 = (int)fi * panels_per_chunk * MM_NR;
        const int nc = O - o0 < panels_per_chunk * MM_NR ? O - o0 : panels_per_chunk * MM_NR;
        const size_t t0 = ti * nt;
        const int n = (int)(tiles - t0 < nt ? tiles - t0 : nt);
        const float *const bias = c->b ? c->b + o0 : zeros;
        double t = work_begin();
        if (fi != filters_at) winograd_filters(c, wt->temporal, o0, nc, U);
        if (ti != tiles_at) {
            if (wt->temporal) winograd_input_temporal(x, wt, t0, n, zeros, V);
            else winograd_input_3x3(x, wt, t0, n, zeros, V);
        }
        filters_at = fi;
        tiles_at = ti;
        transforms += work_begin() - t;
        t = work_begin();
        winograd_products(V, U, M, positions, n, C, nc);
        products += work_begin() - t;
        t = work_begin();
        if (wt->temporal) winograd_output_temporal(M, bias, wt, O, t0, n, o0, nc, out);
        else winograd_output_3x3(M, bias, wt, O, t0, n, o0, nc, out);
        transforms += work_begin() - t;
    }
    arena_reset(a, mark);
    /* the profile counts a convolution's operations from its shapes, as the direct one does them (2 per tap, input
     * and output channel, output pixel): the products do 4/9 (3x3) or 2/3 (temporal) of that */
    work_add(wt->temporal ? WORK_TEMPORAL_CONV_WINOGRAD : WORK_CONV_WINOGRAD, transforms, 0.0);
    work_add(wt->temporal ? WORK_TEMPORAL_CONV_MATMUL : WORK_CONV_MATMUL, products,
             wt->temporal ? 2.0 * tiles * 2 * 3 * C * O : 2.0 * tiles * 4 * 9 * C * O);
}

/* a 3x3 convolution (stride 1, padding 1) of x by F(2x2, 3x3) */
static void conv2d_3x3_winograd(Arena *a, const Conv *c, const ConvInput *x, float *out, int frames, int H, int W) {
    WinogradTiles wt;
    memset(&wt, 0, sizeof wt);
    wt.H = H;
    wt.W = W;
    wt.count = (size_t)frames * (H / 2) * (W / 2);
    conv_winograd(a, c, x, out, &wt);
}

/* TemporalConvLayer's (3, 1, 1) convolution of x by F(2, 3) */
static void conv_temporal_winograd(Arena *a, const Conv *c, const ConvInput *x, float *out, int B, int F, size_t P) {
    WinogradTiles wt;
    memset(&wt, 0, sizeof wt);
    wt.temporal = 1;
    wt.F = F;
    wt.P = P;
    wt.count = (size_t)B * (F / 2) * P;
    conv_winograd(a, c, x, out, &wt);
}

/* a 3x3 convolution, stride 1, padding 1, from its prepared input x (conv_input_3x3), directly: read in place
 * when padded, else from gathered patches */
static void conv2d_3x3_direct(Arena *a, const Conv *c, const ConvInput *x, float *out, int frames, int H, int W) {
    const size_t total = (size_t)frames * H * W;
    double start;
    if (!x->padded) {
        conv2d_gathered(a, c, x->data, out, frames, H, W, 1, 1, 1, H, W);
        return;
    }
    start = work_begin();
    matmul_conv_shifted(out, x->data, &x->rows, &c->w, c->b, (int)total, 9 * c->in, c->out);
    work_end(WORK_CONV_MATMUL, start, 2.0 * total * 9 * c->in * c->out);
}

/* the same by Winograd's transforms where they apply, else directly */
static void conv2d_3x3_from(Arena *a, const Conv *c, const ConvInput *x, float *out, int frames, int H, int W) {
    if (winograd_applies(c, H % 2 == 0 && W % 2 == 0)) conv2d_3x3_winograd(a, c, x, out, frames, H, W);
    else conv2d_3x3_direct(a, c, x, out, frames, H, W);
}

/* nn.Conv2d on channels-last frames [frames][H][W][in] -> [frames][Ho][Wo][out]: a 1x1 convolution is a Linear
 * layer; a 3x3 one with stride 1 and padding 1 goes through Winograd's transforms where they apply
 * (winograd_applies), or else reads a padded copy of its input in place where it can; the rest (Downsample2D's
 * stride 2, inputs too narrow for the implicit GEMM) gather their patches. */
static void conv2d(Arena *a, const Conv *c, const float *in, float *out, int frames, int H, int W, int stride,
                   int pad_t, int pad_l, int Ho, int Wo) {
    const size_t total = (size_t)frames * Ho * Wo;
    const int same_size_3x3 = c->kh == 3 && c->kw == 3 && stride == 1 && pad_t == 1 && pad_l == 1 && Ho == H && Wo == W;
    if (c->kh == 1 && c->kw == 1 && stride == 1 && Ho == H && Wo == W && pad_t == 0 && pad_l == 0) {
        Linear l;
        l.w = c->w; l.b = c->b; l.in = c->in; l.out = c->out;
        linear(&l, in, out, total);
    } else if (same_size_3x3 && winograd_applies(c, H % 2 == 0 && W % 2 == 0)) {
        ConvInput x;                 /* read as it is */
        memset(&x, 0, sizeof x);
        x.data = (float *)in;
        x.channels = c->in;
        conv2d_3x3_winograd(a, c, &x, out, frames, H, W);
    } else if (same_size_3x3 && implicit_conv_applies(W, c)) {
        const ArenaMark mark = arena_mark(a);
        const ConvInput x = conv_input_3x3(a, c, frames, H, W);
        conv_input_fill(&x, in, total);
        conv2d_3x3_from(a, c, &x, out, frames, H, W);
        arena_reset(a, mark);
    } else {
        conv2d_gathered(a, c, in, out, frames, H, W, stride, pad_t, pad_l, Ho, Wo);
    }
}

/* TemporalConvLayer's nn.Conv3d with kernel (3, 1, 1) and padding (1, 0, 0): a convolution over frames at
 * every pixel. in/out [B][F][P][channels]; the patch of a token is (3 frames, in), reduced against the weight's
 * (in, 3) rows by matmul_conv. */
static void conv_temporal_gathered(Arena *a, const Conv *c, const float *in, float *out, int B, int F, size_t P) {
    const int K = c->in * 3;
    const size_t total = (size_t)B * F * P;
    const size_t rows = gathered_chunk_rows(total, K);
    ArenaMark mark = arena_mark(a);
    size_t r0;
    float *patches;
    patches = arena_alloc(a, rows * K);
    for (r0 = 0; r0 < total; r0 += rows) {
        const size_t n = total - r0 < rows ? total - r0 : rows;
        double start = work_begin();
        size_t i;
        PARALLEL_FOR(schedule(static))
        for (i = 0; i < n; i++) {
            const size_t idx = r0 + i, p = idx % P, bf = idx / P;
            const int f = (int)(bf % F);
            float *row = patches + i * K;
            int dt;
            for (dt = 0; dt < 3; dt++) {             /* the patch is [frame][channel] */
                const int src_f = f + dt - 1;
                if (src_f < 0 || src_f >= F)
                    memset(row + (size_t)dt * c->in, 0, (size_t)c->in * sizeof(float));
                else
                    memcpy(row + (size_t)dt * c->in, in + ((bf - f + src_f) * P + p) * c->in, (size_t)c->in * sizeof(float));
            }
        }
        work_end(WORK_TEMPORAL_CONV_GATHER, start, 0.0);
        start = work_begin();
        matmul_conv(out + r0 * c->out, patches, &c->w, c->b, (int)n, K, c->out, 3);
        work_end(WORK_TEMPORAL_CONV_MATMUL, start, 2.0 * n * K * c->out);
    }
    arena_reset(a, mark);
}

/* the same from its prepared input x (conv_input_temporal), directly: read in place when padded */
static void conv_temporal_direct(Arena *a, const Conv *c, const ConvInput *x, float *out, int B, int F, size_t P) {
    const size_t total = (size_t)B * F * P;
    double start;
    if (!x->padded) {
        conv_temporal_gathered(a, c, x->data, out, B, F, P);
        return;
    }
    start = work_begin();
    matmul_conv_shifted(out, x->data, &x->rows, &c->w, c->b, (int)total, 3 * c->in, c->out);
    work_end(WORK_TEMPORAL_CONV_MATMUL, start, 2.0 * total * 3 * c->in * c->out);
}

/* the same by Winograd's transforms where they apply, else directly */
static void conv_temporal_from(Arena *a, const Conv *c, const ConvInput *x, float *out, int B, int F, size_t P) {
    if (winograd_applies(c, F % 2 == 0)) conv_temporal_winograd(a, c, x, out, B, F, P);
    else conv_temporal_direct(a, c, x, out, B, F, P);
}


/* Multi-head scaled dot-product attention, softmax(q k^T * head_dim^-0.5) v, as Diffusers' Attention
 * processors compute it. q, k, v and out are token-major with the heads side by side ([tokens][heads *
 * head_dim], as the to_q/to_k/to_v projections produce them). Query sequence s (n_q tokens) attends to
 * key/value sequence s / kv_div (n_kv tokens): kv_div = 1 for self-attention, frames-per-batch-item for
 * cross-attention to one text per batch item, the frames of a group for Text2Video-Zero's cross-frame
 * attention to the group's first frame.
 *
 * Short key sequences (the temporal layers attend over the frames, n_kv <= ATTENTION_SHORT) take one
 * (sequence, head) per item, since any blocking would cost more than its work: attention_short_direct in plain
 * loops (the reference), attention_short with the keys transposed so that the scores vectorise. */
#define ATTENTION_SHORT 32

static void attention_short_direct(float *out, const float *q, const float *k, const float *v, int n_seq, int n_q,
                                   int n_kv, int kv_div, int heads, int head_dim) {
    const int inner = heads * head_dim;
    const float scale = 1.0f / sqrtf((float)head_dim);
    long item;
    PARALLEL_FOR(schedule(static))
    for (item = 0; item < (long)n_seq * heads; item++) {
        const int s = (int)(item / heads), h = (int)(item % heads);
        const size_t kv0 = (size_t)(s / kv_div) * n_kv;
        float scores[ATTENTION_SHORT];
        int i, j, d;
        for (i = 0; i < n_q; i++) {
            const float *qi = q + ((size_t)s * n_q + i) * inner + h * head_dim;
            float *oi = out + ((size_t)s * n_q + i) * inner + h * head_dim;
            for (j = 0; j < n_kv; j++) {
                const float *kj = k + (kv0 + j) * inner + h * head_dim;
                float dot = 0.0f;
                for (d = 0; d < head_dim; d++) dot = MM_FMA(qi[d], kj[d], dot);
                scores[j] = dot * scale;
            }
            softmax_row(scores, n_kv);
            for (d = 0; d < head_dim; d++) oi[d] = 0.0f;
            for (j = 0; j < n_kv; j++) {
                const float *vj = v + (kv0 + j) * inner + h * head_dim;
                for (d = 0; d < head_dim; d++) oi[d] = MM_FMA(scores[j], vj[d], oi[d]);
            }
        }
    }
}

/* The same arithmetic, in the same order, with the scores computed for ATTENTION_SHORT_QUERIES queries and all keys
 * at once. The direct loops reduce each score over d in one chain per key (q . k_j), which no compiler may
 * vectorise; here the (sequence, head)'s keys are first copied transposed into keys_t[d][j] (zero past n_kv), so
 * that score j of query i is still the chain over d = 0, 1, ... of q[i][d] * keys_t[d][j], but the chains of all
 * keys and queries run side by side, one vector lane each. The weighted sum of the values then runs over the
 * head's d in chunks of ATTENTION_SHORT_LANES, each chunk's sums for all the queries held in registers while the
 * keys go by (each value row read once for the queries together), still one chain per output element over
 * j = 0, 1, ... from 0. Both functions spell their sums with MM_FMA, so that no compiler's contraction of
 * a * b + c can make them differ: the same bits (unit test). A temporal layer's 16 x 16 attention ran at
 * 6-11 GFLOP/s in the direct loops, half of the default UNet3D forward's attention time; transposed keys took
 * 0.37-0.5 of their time. Scores spelt a row at a time (gcc had kept them in memory), 16 keys wide where n_kv <= 16,
 * and the chunked value sums then took 0.88, 0.85 and 0.6 of that at the default video's three sizes (2048, 512
 * and 128 sequences of 16 frames; 2 threads of an AVX-512 Xeon VM), where q, k and v streaming from memory is
 * now most of the time. */
#define ATTENTION_SHORT_QUERIES 4
#define ATTENTION_SHORT_LANES 16

/* scores[r][j] = q_r . key j for ATTENTION_SHORT_QUERIES queries from q0 (row stride inner; the rows past nq repeat
 * the first, and their scores are not used) and `width` transposed keys (keys_t[d][width]); compiled for width 16
 * and 32, constants, and spelt one row of scores at a time, so that gcc keeps the chains in vector registers */
static MM_INLINE void attention_short_scores(const int width, float scores[][ATTENTION_SHORT], const float *q0, int nq,
                                             int inner, const float *keys_t, int head_dim) {
    float s0[ATTENTION_SHORT], s1[ATTENTION_SHORT], s2[ATTENTION_SHORT], s3[ATTENTION_SHORT];
    const float *r0 = q0, *r1 = nq > 1 ? q0 + inner : q0, *r2 = nq > 2 ? q0 + 2 * (size_t)inner : q0;
    const float *r3 = nq > 3 ? q0 + 3 * (size_t)inner : q0;
    int j, d;
    for (j = 0; j < width; j++) s0[j] = s1[j] = s2[j] = s3[j] = 0.0f;
    for (d = 0; d < head_dim; d++) {
        const float *kd = keys_t + d * width;
        const float x0 = r0[d], x1 = r1[d], x2 = r2[d], x3 = r3[d];
        for (j = 0; j < width; j++) s0[j] = MM_FMA(x0, kd[j], s0[j]);
        for (j = 0; j < width; j++) s1[j] = MM_FMA(x1, kd[j], s1[j]);
        for (j = 0; j < width; j++) s2[j] = MM_FMA(x2, kd[j], s2[j]);
        for (j = 0; j < width; j++) s3[j] = MM_FMA(x3, kd[j], s3[j]);
    }
    for (j = 0; j < width; j++) {
        scores[0][j] = s0[j];
        scores[1][j] = s1[j];
        scores[2][j] = s2[j];
        scores[3][j] = s3[j];
    }
}

/* out_r[d0 .. d0+len) = sum over j of p[r][j] * v_j[d0 ..] for nq queries, len <= ATTENTION_SHORT_LANES (a constant
 * ATTENTION_SHORT_LANES for whole chunks); v0: key 0's values at d0 (row stride inner), out0 likewise */
static MM_INLINE void attention_short_values(const int len, float p[][ATTENTION_SHORT], int nq, int n_kv,
                                             const float *v0, float *out0, int inner) {
    float acc0[ATTENTION_SHORT_LANES], acc1[ATTENTION_SHORT_LANES], acc2[ATTENTION_SHORT_LANES], acc3[ATTENTION_SHORT_LANES];
    int j, d;
    for (d = 0; d < len; d++) acc0[d] = acc1[d] = acc2[d] = acc3[d] = 0.0f;
    for (j = 0; j < n_kv; j++) {
        const float *vj = v0 + (size_t)j * inner;
        const float p0 = p[0][j], p1 = p[1][j], p2 = p[2][j], p3 = p[3][j];
        for (d = 0; d < len; d++) acc0[d] = MM_FMA(p0, vj[d], acc0[d]);
        for (d = 0; d < len; d++) acc1[d] = MM_FMA(p1, vj[d], acc1[d]);
        for (d = 0; d < len; d++) acc2[d] = MM_FMA(p2, vj[d], acc2[d]);
        for (d = 0; d < len; d++) acc3[d] = MM_FMA(p3, vj[d], acc3[d]);
    }
    for (d = 0; d < len; d++) out0[d] = acc0[d];
    if (nq > 1) for (d = 0; d < len; d++) out0[(size_t)inner + d] = acc1[d];
    if (nq > 2) for (d = 0; d < len; d++) out0[(size_t)2 * inner + d] = acc2[d];
    if (nq > 3) for (d = 0; d < len; d++) out0[(size_t)3 * inner + d] = acc3[d];
}

/* Asks for sequence s's rows of q, k and v (the next one a thread takes, unless it is the last of its share) into L2,
 * a 1/heads share of their cache lines with each head h of the sequence before. A (sequence, head) is over in about
 * 2 us and reads its rows a head's slice at a time, 16 strided pieces of 256 bytes per operand, which the hardware
 * prefetcher did not fetch early enough: the temporal layers' 16 x 16 attention at the default video's sizes took
 * 0.77-0.8 of its time with this (2 threads of an AVX-512 Xeon VM; one sequence ahead did as well as two or three).
 * Inlined by force, as mm_prefetch_rows_ahead. */
static MM_INLINE void attention_short_prefetch(const float *q, const float *k, const float *v, int s, int h, int n_q,
                                               int n_kv, int kv_div, int heads, int inner) {
    const int rows = n_q > n_kv ? n_q : n_kv, lines_per_row = (inner + 15) / 16, lines = lines_per_row * rows;
    const int share = (lines + heads - 1) / heads;
    const size_t kv0 = (size_t)(s / kv_div) * n_kv, kv_before = (size_t)((s - 1) / kv_div) * n_kv;
    int l;
    for (l = h * share; l < (h + 1) * share && l < lines; l++) {
        const size_t row = (size_t)(l / lines_per_row), offset = row * inner + (size_t)(l % lines_per_row) * 16;
        if (row < (size_t)n_q) MM_PREFETCH_LINE_L2(q + (size_t)s * n_q * inner + offset);
        if (kv0 != kv_before && row < (size_t)n_kv) { /* (cross-attention's keys are shared by kv_div sequences) */
            MM_PREFETCH_LINE_L2(k + kv0 * inner + offset);
            MM_PREFETCH_LINE_L2(v + kv0 * inner + offset);
        }
    }
}

static void attention_short(Arena *a, float *out, const float *q, const float *k, const float *v, int n_seq, int n_q,
                            int n_kv, int kv_div, int heads, int head_dim) {
    const int inner = heads * head_dim, width = n_kv <= 16 ? 16 : ATTENTION_SHORT;
    const float scale = 1.0f / sqrtf((float)head_dim);
    const ArenaMark mark = arena_mark(a);
    const size_t keys_t_floats = (size_t)num_threads() * head_dim * width;
    float *const keys_t_all = arena_alloc(a, keys_t_floats);
    long item;
    memset(keys_t_all, 0, keys_t_floats * sizeof(float)); /* the columns past n_kv stay zero */
    PARALLEL_FOR(schedule(static))
    for (item = 0; item < (long)n_seq * heads; item++) {
        const int s = (int)(item / heads), h = (int)(item % heads);
        const size_t kv0 = (size_t)(s / kv_div) * n_kv;
        const float *values = v + kv0 * inner + h * head_dim;
        float *keys_t = keys_t_all + (size_t)thread_index() * head_dim * width;
        float scores[ATTENTION_SHORT_QUERIES][ATTENTION_SHORT];
        int i0, r, j, d;
        if (s + 1 < n_seq) attention_short_prefetch(q, k, v, s + 1, h, n_q, n_kv, kv_div, heads, inner);
        for (j = 0; j < n_kv; j++) {
            const float *kj = k + (kv0 + j) * inner + h * head_dim;
            for (d = 0; d < head_dim; d++) keys_t[d * width + j] = kj[d];
        }
        for (i0 = 0; i0 < n_q; i0 += ATTENTION_SHORT_QUERIES) {
            const int nq = n_q - i0 < ATTENTION_SHORT_QUERIES ? n_q - i0 : ATTENTION_SHORT_QUERIES;
            const size_t row0 = ((size_t)s * n_q + i0) * inner + h * head_dim;
            if (width == 16)
                attention_short_scores(16, scores, q + row0, nq, inner, keys_t, head_dim);
            else
                attention_short_scores(ATTENTION_SHORT, scores, q + row0, nq, inner, keys_t, head_dim);
            for (r = 0; r < ATTENTION_SHORT_QUERIES; r++) {
                if (r < nq) {
                    for (j = 0; j < n_kv; j++) scores[r][j] *= scale;
                    softmax_row(scores[r], n_kv);
                } else {
                    for (j = 0; j < n_kv; j++) scores[r][j] = 0.0f;
                }
            }
            for (d = 0; d + ATTENTION_SHORT_LANES <= head_dim; d += ATTENTION_SHORT_LANES)
                attention_short_values(ATTENTION_SHORT_LANES, scores, nq, n_kv, values + d, out + row0 + d, inner);
            if (d < head_dim)
                attention_short_values(head_dim - d, scores, nq, n_kv, values + d, out + row0 + d, inner);
        }
    }
    arena_reset(a, mark);
}

/* The reference for long sequences, and what attention() did before it was blocked: per (sequence, head,
 * chunk of 512 queries) the whole [chunk][n_kv] score matrix by one matmul, a softmax per row, and a second
 * matmul with the values (gathered, transposed, once per (sequence, head) by the thread that needs them).
 * test_kernels.c checks attention() against it; make bench times both. */
static void attention_reference(Arena *a, float *out, const float *q, const float *k, const float *v, int n_seq,
                                int n_q, int n_kv, int kv_div, int heads, int head_dim) {
    const int inner = heads * head_dim, chunk = n_q < 512 ? n_q : 512, n_chunks = (n_q + chunk - 1) / chunk;
    const float scale = 1.0f / sqrtf((float)head_dim);
    const int threads = num_threads();
    const size_t per_thread = (size_t)n_kv * head_dim + (size_t)chunk * n_kv;
    ArenaMark mark = arena_mark(a);
    float *scratch;
    long *cached, item;
    int t;
    if (n_kv <= ATTENTION_SHORT) {
        attention_short_direct(out, q, k, v, n_seq, n_q, n_kv, kv_div, heads, head_dim);
        return;
    }
    scratch = arena_alloc(a, per_thread * threads);
    cached = (long *)(void *)arena_alloc(a, (size_t)threads * sizeof(long) / sizeof(float) + 1);
    for (t = 0; t < threads; t++) cached[t] = -1;
    PARALLEL_FOR(schedule(static))
    for (item = 0; item < (long)n_seq * heads * n_chunks; item++) {
        const int s = (int)(item / ((long)heads * n_chunks)), h = (int)(item / n_chunks % heads);
        const int i0 = (int)(item % n_chunks) * chunk, nq = n_q - i0 < chunk ? n_q - i0 : chunk;
        const int me = thread_index();
        float *vt = scratch + per_thread * me, *scores = vt + (size_t)n_kv * head_dim;
        const size_t q0 = ((size_t)s * n_q + i0) * inner + h * head_dim;
        const size_t kv0 = (size_t)(s / kv_div) * n_kv * inner + h * head_dim;
        const long kv_key = (long)(s / kv_div) * heads + h;
        int i, j, d;
        if (cached[me] != kv_key) {
            for (j = 0; j < n_kv; j++)
                for (d = 0; d < head_dim; d++) vt[(size_t)d * n_kv + j] = v[kv0 + (size_t)j * inner + d];
            cached[me] = kv_key;
        }
        matmul_ex(scores, n_kv, q + q0, inner, k + kv0, inner, NULL, nq, head_dim, n_kv, 0);
        for (i = 0; i < nq; i++) {
            float *row = scores + (size_t)i * n_kv;
            for (j = 0; j < n_kv; j++) row[j] *= scale;
            softmax_row(row, n_kv);
        }
        matmul_ex(out + q0, inner, scores, n_kv, vt, n_kv, NULL, nq, n_kv, head_dim, 0);
    }
    arena_reset(a, mark);
}

/* Long sequences: blocked attention with an online softmax, so that no score matrix larger than one block
 * is ever written (a 4096 x 4096 one per head at SD's 512 x 512 would live in memory, not in cache).
 *
 * It works transposed, one panel of ATTENTION_PANEL queries at a time, so that every softmax step is a
 * vector operation across the panel's queries and both products are the matmul micro-kernel's shape
 * (mm_kernel: MR rows of a broadcast against a packed [k][NR] panel, NR = ATTENTION_PANEL):
 *   scores^T [keys][queries] = K_block [keys][d] . Q^T [d][queries]      (Q^T: the panel, scaled, packed)
 *   O^T      [d][queries]   += V^T_block [d][keys] . P^T [keys][queries]  (P^T: the block's scores, in place)
 * Per panel: m[c] = -FLT_MAX, l[c] = 0, O^T = 0; for each block of ATTENTION_BLOCK keys, its scores^T; per query
 * c, m' = max(m, the block's largest score), alpha = e^(m - m'); P = e^(scores - m'); l = alpha l + sum P;
 * O^T[.][c] = alpha O^T[.][c] + V^T P^T. At the end out = O / l. The running max keeps every exponent <= 0, and
 * alpha rescales what was accumulated under a smaller max, so the result is the softmax's, up to rounding.
 * The keys are copied once per (sequence, head) into a contiguous [n_kv][d] array, the values transposed into
 * [block][d][ATTENTION_BLOCK] (rows of one block at a short stride), both zero-padded to whole micro-kernel
 * tiles; padded keys are masked out of the max and get P = 0. A thread keeps these while consecutive items
 * of its static share are panels of the same (sequence, head). Each output element is computed by one
 * thread, in the same order whatever the thread count. Cross-attention (77 text tokens: one block) takes this
 * path too: at heads of 40 and 64 it measured about twice as fast as attention_reference (make bench).
 * Causal (CLIP's text encoder): query i sees keys 0..i only. A later key's score is set to -FLT_MAX before the max,
 * so that it never raises the max and its e^(x - max) is 0, as the padded keys' (each query sees key 0, so its max
 * is finite from the first block on); blocks past a panel's last query are skipped. */
#define ATTENTION_PANEL MM_NR

/* T2V_ATTENTION=reference switches long sequences to attention_reference: a way to rule the blocked one out. */
static int use_reference_attention(void) {
    static int choice = -1;
    if (choice < 0) {
        const char *v = getenv("T2V_ATTENTION");
        choice = v && !strcmp(v, "reference");
    }
    return choice;
}

#ifndef ATTENTION_BLOCK
#  define ATTENTION_BLOCK 128 /* keys per block, a multiple of MM_MR: the block's scores (16 KiB with AVX-512)
                               * and, at heads of 40, its keys and values (20 KiB each) stay in L1 / L2 */
#endif

typedef struct {
    float *keys;    /* [n_kv_pad][head_dim] */
    float *values;  /* [blocks][dim_pad][ATTENTION_BLOCK]: V^T, block by block */
    float *q_t;     /* [head_dim][PANEL]: the panel's queries, transposed and scaled */
    float *p_t;     /* [ATTENTION_BLOCK][PANEL]: a block's scores, then its probabilities */
    float *o_t;     /* [dim_pad][PANEL] */
    long cached;    /* which (key sequence, head) keys and values hold; -1: none */
} AttentionScratch;

static void attention_pack_kv(AttentionScratch *w, const float *k, const float *v, int n_kv, int inner,
                              int head_dim) {
    const int n_kv_pad = (n_kv + MM_MR - 1) / MM_MR * MM_MR, dim_pad = (head_dim + MM_MR - 1) / MM_MR * MM_MR;
    const int blocks = (n_kv_pad + ATTENTION_BLOCK - 1) / ATTENTION_BLOCK;
    int j, d;
    for (j = 0; j < n_kv_pad; j++)
        for (d = 0; d < head_dim; d++) w->keys[(size_t)j * head_dim + d] = j < n_kv ? k[(size_t)j * inner + d] : 0.0f;
    /* a value row at a time: read down the rows instead, a head's slice of 4 KiB rows (16 heads of 64) sits in one
     * set of L1, and the copy took a fifth of the text encoder's attention time */
    memset(w->values, 0, sizeof(float) * blocks * dim_pad * ATTENTION_BLOCK);
    for (j = 0; j < n_kv; j++) {
        float *vb = w->values + (size_t)(j / ATTENTION_BLOCK) * dim_pad * ATTENTION_BLOCK + j % ATTENTION_BLOCK;
        for (d = 0; d < head_dim; d++) vb[(size_t)d * ATTENTION_BLOCK] = v[(size_t)j * inner + d];
    }
}

/* one panel: queries q[0 .. nq) (row stride inner) -> out[0 .. nq) (row stride inner). first_query >= 0: causal,
 * the panel's queries are tokens first_query, first_query + 1, ... of the sequence; -1: every query sees every key */
static void attention_panel(AttentionScratch *w, float *out, const float *q, int nq, int n_kv, int inner,
                            int head_dim, float scale, int first_query) {
    const int dim_pad = (head_dim + MM_MR - 1) / MM_MR * MM_MR;
    const int seen = first_query < 0 ? n_kv : first_query + nq; /* keys that some query of the panel sees */
    float *restrict q_t = w->q_t, *restrict p_t = w->p_t, *restrict o_t = w->o_t;
    float run_max[ATTENTION_PANEL], run_sum[ATTENTION_PANEL], rescale[ATTENTION_PANEL];
    int i, j, c, d, j0, moved;
    for (c = 0; c < ATTENTION_PANEL; c++) /* a query row at a time (see attention_pack_kv) */
        for (d = 0; d < head_dim; d++) q_t[d * ATTENTION_PANEL + c] = c < nq ? q[(size_t)c * inner + d] * scale : 0.0f;
    for (c = 0; c < ATTENTION_PANEL; c++) {
        run_max[c] = -FLT_MAX;
        run_sum[c] = 0.0f;
    }
    for (i = 0; i < dim_pad * ATTENTION_PANEL; i++) o_t[i] = 0.0f;
    for (j0 = 0; j0 < seen; j0 += ATTENTION_BLOCK) {
        const int valid = seen - j0 < ATTENTION_BLOCK ? seen - j0 : ATTENTION_BLOCK;
        const int kb = (valid + MM_MR - 1) / MM_MR * MM_MR; /* whole kernel tiles: keys past `valid` are dropped */
        const float *vb = w->values + (size_t)(j0 / ATTENTION_BLOCK) * dim_pad * ATTENTION_BLOCK;
        for (j = 0; j < kb; j += MM_MR)
            mm_kernel(head_dim, w->keys + (size_t)(j0 + j) * head_dim, head_dim, q_t, p_t + j * ATTENTION_PANEL,
                      ATTENTION_PANEL, 0, NULL);
        if (first_query >= 0) /* key j0 + j is later than queries first_query + c for c < j0 + j - first_query */
            for (j = 0; j < valid; j++)
                for (c = 0; c < j0 + j - first_query && c < ATTENTION_PANEL; c++) p_t[j * ATTENTION_PANEL + c] = -FLT_MAX;
        for (c = 0; c < ATTENTION_PANEL; c++) rescale[c] = run_max[c];
        for (j = 0; j < valid; j++)
            for (c = 0; c < ATTENTION_PANEL; c++) {
                const float x = p_t[j * ATTENTION_PANEL + c];
                rescale[c] = x > rescale[c] ? x : rescale[c];    /* rescale holds the new max here */
            }
        moved = 0;
        for (c = 0; c < ATTENTION_PANEL; c++) {
            const float m_new = rescale[c];
            moved |= m_new != run_max[c];
            rescale[c] = exp_approx(run_max[c] - m_new);
            run_max[c] = m_new;
            run_sum[c] *= rescale[c];
        }
        for (j = 0; j < valid; j++)
            for (c = 0; c < ATTENTION_PANEL; c++) {
                const float x = p_t[j * ATTENTION_PANEL + c] - run_max[c];  /* <= 0 */
                const float e = exp_in_range(x < -87.3f ? -87.3f : x);
                const float p = x < -87.3f ? 0.0f : e;                          /* (0 for a masked key) */
                p_t[j * ATTENTION_PANEL + c] = p;
                run_sum[c] += p;
            }
        for (i = valid * ATTENTION_PANEL; i < kb * ATTENTION_PANEL; i++) p_t[i] = 0.0f;
        if (j0 > 0 && moved) /* a max that moved rescales what was accumulated (else every factor is 1) */
            for (d = 0; d < dim_pad; d++)
                for (c = 0; c < ATTENTION_PANEL; c++) o_t[d * ATTENTION_PANEL + c] *= rescale[c];
        for (d = 0; d < dim_pad; d += MM_MR)
            mm_kernel(kb, vb + (size_t)d * ATTENTION_BLOCK, ATTENTION_BLOCK, p_t, o_t + d * ATTENTION_PANEL,
                      ATTENTION_PANEL, 1, NULL);
    }
    for (c = 0; c < ATTENTION_PANEL; c++) run_sum[c] = 1.0f / run_sum[c];
    for (c = 0; c < nq; c++)
        for (d = 0; d < head_dim; d++) out[(size_t)c * inner + d] = o_t[d * ATTENTION_PANEL + c] * run_sum[c];
}

/* causal: self-attention (n_q = n_kv, kv_div = 1) where query i sees keys 0..i */
static void attention_blocked(Arena *a, float *out, const float *q, const float *k, const float *v, int n_seq,
                              int n_q, int n_kv, int kv_div, int heads, int head_dim, int causal) {
    const int inner = heads * head_dim, panels = (n_q + ATTENTION_PANEL - 1) / ATTENTION_PANEL;
    const int n_kv_pad = (n_kv + MM_MR - 1) / MM_MR * MM_MR, dim_pad = (head_dim + MM_MR - 1) / MM_MR * MM_MR;
    const int blocks = (n_kv_pad + ATTENTION_BLOCK - 1) / ATTENTION_BLOCK;
    const float scale = 1.0f / sqrtf((float)head_dim);
    const int threads = num_threads();
    ArenaMark mark = arena_mark(a);
    AttentionScratch *scratch;
    long item;
    int t;
    scratch = (AttentionScratch *)(void *)arena_alloc(a, ((size_t)threads * sizeof *scratch + sizeof(float) - 1) / sizeof(float));
    for (t = 0; t < threads; t++) {
        AttentionScratch *w = &scratch[t];
        w->keys = arena_alloc(a, (size_t)n_kv_pad * head_dim);
        w->values = arena_alloc(a, (size_t)blocks * dim_pad * ATTENTION_BLOCK);
        w->q_t = arena_alloc(a, (size_t)head_dim * ATTENTION_PANEL);
        w->p_t = arena_alloc(a, (size_t)ATTENTION_BLOCK * ATTENTION_PANEL);
        w->o_t = arena_alloc(a, (size_t)dim_pad * ATTENTION_PANEL);
        w->cached = -1;
    }
    PARALLEL_FOR(schedule(static))
    for (item = 0; item < (long)n_seq * heads * panels; item++) {
        const int s = (int)(item / ((long)heads * panels)), h = (int)(item / panels % heads);
        const int i0 = (int)(item % panels) * ATTENTION_PANEL;
        const int nq = n_q - i0 < ATTENTION_PANEL ? n_q - i0 : ATTENTION_PANEL;
        AttentionScratch *w = &scratch[thread_index()];
        const size_t q0 = ((size_t)s * n_q + i0) * inner + h * head_dim;
        const size_t kv0 = (size_t)(s / kv_div) * n_kv * inner + h * head_dim;
        const long kv_key = (long)(s / kv_div) * heads + h;
        /* attention_panel reads its queries from memory as a strided transpose, and in perf its loads waited for
         * them (a fifth of its time at 256 x 256); so the next panel's query lines are asked for one panel ahead
         * (a hint: 256 x 256 and 64 x 64 self-attention 2-5% faster, cross-attention to 77 keys 4-10%) */
        if (item + 1 < (long)n_seq * heads * panels) {
            const long next = item + 1;
            const int s1 = (int)(next / ((long)heads * panels)), h1 = (int)(next / panels % heads);
            const int i1 = (int)(next % panels) * ATTENTION_PANEL, nq1 = n_q - i1 < ATTENTION_PANEL ? n_q - i1 : ATTENTION_PANEL;
            const float *q1 = q + ((size_t)s1 * n_q + i1) * inner + h1 * head_dim;
            int c, d;
            for (c = 0; c < nq1; c++)
                for (d = 0; d < head_dim; d += 16) MM_PREFETCH_LINE(q1 + (size_t)c * inner + d);
        }
        if (w->cached != kv_key) {
            attention_pack_kv(w, k + kv0, v + kv0, n_kv, inner, head_dim);
            w->cached = kv_key;
        }
        attention_panel(w, out + q0, q + q0, nq, n_kv, inner, head_dim, scale, causal ? i0 : -1);
    }
    arena_reset(a, mark);
}

/* the path for these lengths (T2V_ATTENTION=reference: always attention_reference) */
static void attention(Arena *a, float *out, const float *q, const float *k, const float *v, int n_seq, int n_q,
                      int n_kv, int kv_div, int heads, int head_dim) {
    if (use_reference_attention())
        attention_reference(a, out, q, k, v, n_seq, n_q, n_kv, kv_div, heads, head_dim);
    else if (n_kv <= ATTENTION_SHORT)
        attention_short(a, out, q, k, v, n_seq, n_q, n_kv, kv_div, heads, head_dim);
    else
        attention_blocked(a, out, q, k, v, n_seq, n_q, n_kv, kv_div, heads, head_dim, 0);
}

/* Nearest-neighbour resize of channels-last frames, as torch's F.interpolate(mode="nearest"):
 * source index floor(dst * (in / out)) computed in float. Written into the input of the convolution after it. */
static void upsample_nearest(const float *in, const ConvInput *out, int frames, int H, int W, int Ho, int Wo) {
    const double start = work_begin();
    const int C = out->channels;
    const float sy = (float)H / (float)Ho, sx = (float)W / (float)Wo;
    long fy;
    PARALLEL_FOR(schedule(static))
    for (fy = 0; fy < (long)frames * Ho; fy++) {
        const int f = (int)(fy / Ho), y = (int)(fy % Ho);
        int iy = (int)floorf(y * sy), x;
        if (iy > H - 1) iy = H - 1;
        for (x = 0; x < Wo; x++) {
            int ix = (int)floorf(x * sx);
            if (ix > W - 1) ix = W - 1;
            memcpy(conv_input_token(out, ((size_t)f * Ho + y) * Wo + x), in + (((size_t)f * H + iy) * W + ix) * C,
                   (size_t)C * sizeof(float));
        }
    }
    work_end(WORK_COPIES, start, 0.0);
}

/* hidden_states in the UNet and the VAE: `frames` images of H x W pixels with C channels, channels-last, so
 * data is [frames][H*W][C]. Both buffers hold the largest shape of the forward; a step that cannot work in
 * place writes to spare and swaps. */
typedef struct { float *data, *spare; int frames, C, H, W; } Hidden;

static Hidden hidden_new(Arena *a, size_t capacity, int frames, int C, int H, int W) {
    Hidden h;
    h.data = arena_alloc(a, capacity);
    h.spare = arena_alloc(a, capacity);
    h.frames = frames;
    h.C = C;
    h.H = H;
    h.W = W;
    return h;
}

static size_t hidden_numel(const Hidden *h) { return (size_t)h->frames * h->H * h->W * h->C; }

static void hidden_swap(Hidden *h) {
    float *t = h->data;
    h->data = h->spare;
    h->spare = t;
}

/* [frames][C][H*W] (Diffusers) <-> [frames][H*W][C] (t2v) */
static void channels_first_to_last(const float *in, float *out, size_t frames, size_t P, int C) {
    long fc;
    PARALLEL_FOR(schedule(static))
    for (fc = 0; fc < (long)(frames * C); fc++) {     /* one channel plane of one frame per item */
        const size_t f = (size_t)fc / C, c = (size_t)fc % C;
        size_t p;
        for (p = 0; p < P; p++) out[(f * P + p) * C + c] = in[(f * C + c) * P + p];
    }
}

static void channels_last_to_first(const float *in, float *out, size_t frames, size_t P, int C) {
    long fc;
    PARALLEL_FOR(schedule(static))
    for (fc = 0; fc < (long)(frames * C); fc++) {
        const size_t f = (size_t)fc / C, c = (size_t)fc % C;
        size_t p;
        for (p = 0; p < P; p++) out[(f * C + c) * P + p] = in[(f * P + p) * C + c];
    }
}

/* ============================================================================================
 * 5. CLIP text encoder: transformers' CLIPTextModel -> last_hidden_state, the states the UNet attends to
 * ============================================================================================ */

typedef struct {
    LayerNorm layer_norm1, layer_norm2;
    Linear q_proj, k_proj, v_proj, out_proj; /* self_attn.* (dim, dim) */
    Linear fc1, fc2;                         /* mlp: (ff, dim), (dim, ff) */
} CLIPEncoderLayer;

typedef struct TextEncoder {
    int vocab, dim, ff, heads, n_layers, n_positions, quick_gelu;
    StoredWeight token_embedding;    /* (vocab, dim), as stored: rows are read through weight_at as used */
    const float *position_embedding; /* (n_positions, dim) */
    CLIPEncoderLayer *layers;
    LayerNorm final_layer_norm;
    Arena arena;
} TextEncoder;

static void load_text_encoder(T2VModel *m) {
    TextEncoder *te = (TextEncoder *)xcalloc(1, sizeof(TextEncoder), "text encoder");
    Weights W;
    const char *act = config_required(m, "text_encoder.hidden_act");
    float eps = (float)config_number(m, "text_encoder.layer_norm_eps", 1e-12, 0.1);
    int i;
    int64_t shape[2];
    W.m = m;
    W.component = "text_encoder";
    W.pack_panels = 0;
    te->vocab = t2v_config_int(m, "text_encoder.vocab_size", 1, 1 << 24);
    te->dim = t2v_config_int(m, "text_encoder.hidden_size", 1, MAX_CHANNELS);
    te->ff = t2v_config_int(m, "text_encoder.intermediate_size", 1, 4 * MAX_CHANNELS);
    te->heads = t2v_config_int(m, "text_encoder.num_attention_heads", 1, MAX_CHANNELS);
    te->n_layers = t2v_config_int(m, "text_encoder.num_hidden_layers", 0, 1024);
    te->n_positions = t2v_config_int(m, "text_encoder.max_position_embeddings", 1, 1 << 16);
    if (!strcmp(act, "quick_gelu")) te->quick_gelu = 1;
    else if (strcmp(act, "gelu")) t2v_die("%s: text_encoder hidden_act '%s' is not implemented (gelu, quick_gelu)", m->path, act);
    if (te->dim % te->heads)
        t2v_die("%s: text_encoder hidden_size %d does not split into %d heads", m->path, te->dim, te->heads);
    if (te->n_positions < t2v_context_length(m))
        t2v_die("%s: max_position_embeddings %d < tokenizer context length %d", m->path, te->n_positions, t2v_context_length(m));
    shape[0] = te->vocab;
    shape[1] = te->dim;
    tensor_weight(&te->token_embedding, &W, 2, shape,
                  "text_model.embeddings.token_embedding.weight");
    shape[0] = te->n_positions;
    te->position_embedding = tensor_f32(&W, 2, shape, "text_model.embeddings.position_embedding.weight");
    te->layers = (CLIPEncoderLayer *)xcalloc((size_t)te->n_layers, sizeof(CLIPEncoderLayer), "text encoder");
    for (i = 0; i < te->n_layers; i++) {
        CLIPEncoderLayer *L = &te->layers[i];
        load_layer_norm(&L->layer_norm1, &W, te->dim, eps, "text_model.encoder.layers.%d.layer_norm1", i);
        load_linear(&L->q_proj, &W, te->dim, te->dim, 1, "text_model.encoder.layers.%d.self_attn.q_proj", i);
        load_linear(&L->k_proj, &W, te->dim, te->dim, 1, "text_model.encoder.layers.%d.self_attn.k_proj", i);
        load_linear(&L->v_proj, &W, te->dim, te->dim, 1, "text_model.encoder.layers.%d.self_attn.v_proj", i);
        load_linear(&L->out_proj, &W, te->dim, te->dim, 1, "text_model.encoder.layers.%d.self_attn.out_proj", i);
        load_layer_norm(&L->layer_norm2, &W, te->dim, eps, "text_model.encoder.layers.%d.layer_norm2", i);
        load_linear(&L->fc1, &W, te->dim, te->ff, 1, "text_model.encoder.layers.%d.mlp.fc1", i);
        load_linear(&L->fc2, &W, te->ff, te->dim, 1, "text_model.encoder.layers.%d.mlp.fc2", i);
    }
    load_layer_norm(&te->final_layer_norm, &W, te->dim, eps, "text_model.final_layer_norm");
    m->text_encoder = te;
}

static void free_text_encoder(TextEncoder *te) {
    if (!te) return;
    free(te->layers);
    arena_free(&te->arena);
    free(te);
}

int t2v_text_hidden_size(const T2VModel *m) { return m->text_encoder->dim; }

/* CLIPAttention with the causal mask CLIPTextTransformer always applies: token i sees tokens 0..i. The blocked
 * attention with its causal option: the 23 layers' attention of ModelScope's encoder took 5-6 ms, where loops of
 * its own for the 77 tokens had taken 9-10 ms, a twentieth of the encoder (2 threads of an AVX-512 Xeon VM). */
static void clip_causal_self_attention(Arena *a, const TextEncoder *te, const float *q, const float *k,
                                       const float *v, float *out, int T) {
    attention_blocked(a, out, q, k, v, 1, T, T, 1, te->heads, te->dim / te->heads, 1);
}

/* CLIPEncoderLayer (pre-LayerNorm): h += self_attn(layer_norm1(h)); h += mlp(layer_norm2(h)), where CLIPMLP is
 * fc2(activation(fc1(x))). h: [T][dim], in place. */
static void clip_encoder_layer(TextEncoder *te, const CLIPEncoderLayer *L, float *h, int T) {
    Arena *a = &te->arena;
    ArenaMark mark = arena_mark(a);
    const size_t D = (size_t)te->dim, n_ff = (size_t)T * te->ff;
    float *x = arena_alloc(a, T * D), *q = arena_alloc(a, T * D), *k = arena_alloc(a, T * D);
    float *v = arena_alloc(a, T * D), *ff = arena_alloc(a, n_ff);
    double start;
    size_t i;
    layer_norm(&L->layer_norm1, h, x, T);
    linear(&L->q_proj, x, q, T);
    linear(&L->k_proj, x, k, T);
    linear(&L->v_proj, x, v, T);
    start = work_begin();
    clip_causal_self_attention(a, te, q, k, v, x, T);   /* x: the heads' outputs side by side, [T][dim] */
    work_end(WORK_ATTENTION, start, 2.0 * T * (T + 1) * D);  /* causal: T(T+1)/2 scores and value rows */
    linear(&L->out_proj, x, q, T);
    add_inplace(h, q, T * D);
    layer_norm(&L->layer_norm2, h, x, T);
    linear(&L->fc1, x, ff, T);                      /* ff: [T][intermediate_size] */
    start = work_begin();
    if (te->quick_gelu) {                           /* two loops: each vectorises on its own */
        PARALLEL_FOR(schedule(static))
        for (i = 0; i < n_ff; i++) ff[i] = quick_gelu(ff[i]);
    } else {
        PARALLEL_FOR(schedule(static))
        for (i = 0; i < n_ff; i++) ff[i] = gelu_erf(ff[i]);
    }
    work_end(WORK_ELEMENTWISE, start, 0.0);
    linear(&L->fc2, ff, q, T);
    add_inplace(h, q, T * D);
    arena_reset(a, mark);
}

/* CLIPTextModel.forward(input_ids).last_hidden_state: token + position embeddings, the encoder layers, the
 * final LayerNorm. ids: [T] -> out: [T][dim]. */
void t2v_encode_text(T2VModel *m, const int32_t *ids, float *out) {
    TextEncoder *te = m->text_encoder;
    const int T = t2v_context_length(m), D = te->dim;
    Arena *a = &te->arena;
    ArenaMark mark = arena_mark(a);
    float *h = arena_alloc(a, (size_t)T * D);
    int t, i, l;
    for (t = 0; t < T; t++) {
        if (ids[t] < 0 || ids[t] >= te->vocab) t2v_die("token id %d is outside the vocabulary (%d)", ids[t], te->vocab);
        for (i = 0; i < D; i++)
            h[(size_t)t * D + i] = weight_at(&te->token_embedding, (size_t)ids[t] * D + i) +
                                   te->position_embedding[(size_t)t * D + i];
    }
    for (l = 0; l < te->n_layers; l++) clip_encoder_layer(te, &te->layers[l], h, T);
    layer_norm(&te->final_layer_norm, h, out, T);
    arena_reset(a, mark);
}

/* ============================================================================================
 * 6. UNet3DConditionModel (Diffusers unet_3d_condition.py, unet_3d_blocks.py, resnet.py,
 *    transformer_2d.py, transformer_temporal.py, attention.py, embeddings.py)
 * ============================================================================================ */

typedef struct {                 /* ResnetBlock2D */
    int in, out, has_temb, has_shortcut;
    float output_scale_factor;
    GroupNorm norm1, norm2;
    Conv conv1, conv2;           /* 3x3 */
    Linear time_emb_proj;        /* (out, temb) */
    Conv conv_shortcut;          /* 1x1, when in != out */
} ResnetBlock2D;

typedef struct {                 /* TemporalConvLayer: 4 x (GroupNorm, SiLU, Conv3d (3,1,1)) + residual */
    GroupNorm norm[4];           /* convN.0 */
    Conv conv[4];                /* conv1.2, conv2.3, conv3.3, conv4.3 */
} TemporalConvLayer;

typedef struct {                 /* Attention: to_q, to_k, to_v (biased in the VAE, not in the UNet), to_out.0 */
    int heads, head_dim, cross;  /* cross: keys/values come from the text states */
    Linear to_q, to_k, to_v, to_out;
} Attention;

typedef struct {                 /* BasicTransformerBlock (norm_type layer_norm, GEGLU feed-forward) */
    int dim;
    LayerNorm norm1, norm2, norm3;
    Attention attn1, attn2;      /* attn2: cross-attention (spatial) or a second self-attention (temporal) */
    Linear ff_proj;              /* ff.net.0.proj (8 dim, dim): GEGLU value and gate halves */
    Linear ff_out;               /* ff.net.2 (dim, 4 dim) */
} BasicTransformerBlock;

typedef struct {                 /* Transformer2DModel or TransformerTemporalModel (one block, linear projections) */
    int channels, inner;
    GroupNorm norm;              /* eps 1e-6 */
    Linear proj_in, proj_out;
    BasicTransformerBlock block;
} Transformer;

typedef struct {                 /* CrossAttnDownBlock3D / DownBlock3D / UNetMidBlock3DCrossAttn / *UpBlock3D */
    char name[24];               /* "down_block1", "mid_block", ...: the --dump file names */
    int cross_attention, n_layers, out_channels, has_sampler;
    ResnetBlock2D *resnets;
    TemporalConvLayer *temp_convs;
    Transformer *attentions, *temp_attentions; /* NULL without cross-attention */
    Conv sampler;                /* downsamplers.0.conv or upsamplers.0.conv */
} UNetBlock;

/* UNet3DConditionModel, or UNet2DConditionModel (is_2d: SD 1.x, Text2Video-Zero), which is the same tree
 * without the temporal layers and transformer_in. */
typedef struct UNet3D {
    int is_2d;
    int in_channels, out_channels, n_blocks, layers, head_dim, cross_dim, groups, temb_dim, downsample_padding;
    int flip_sin_to_cos, freq_shift; /* Timesteps(): (cos, sin) or (sin, cos); exponent / (half - freq_shift) */
    int channels[MAX_BLOCKS];    /* block_out_channels */
    float norm_eps;
    Conv conv_in;
    Linear time_linear_1, time_linear_2; /* time_embedding.linear_1/2 */
    Transformer transformer_in;
    UNetBlock down[MAX_BLOCKS], mid, up[MAX_BLOCKS];
    GroupNorm conv_norm_out;
    Conv conv_out;
    Arena arena;
} UNet3D;

/* ---- loading: the same module tree as Diffusers builds from the config ---- */

static ResnetBlock2D load_resnet(Weights *W, int in, int out, int temb, int groups, float eps, float scale,
                                 const char *prefix) {
    ResnetBlock2D r;
    memset(&r, 0, sizeof r);
    r.in = in;
    r.out = out;
    r.output_scale_factor = scale;
    load_group_norm(&r.norm1, W, in, groups, eps, "%s.norm1", prefix);
    load_conv(&r.conv1, W, in, out, 3, 0, "%s.conv1", prefix);
    r.has_temb = temb > 0;
    if (r.has_temb) load_linear(&r.time_emb_proj, W, temb, out, 1, "%s.time_emb_proj", prefix);
    load_group_norm(&r.norm2, W, out, groups, eps, "%s.norm2", prefix);
    load_conv(&r.conv2, W, out, out, 3, 0, "%s.conv2", prefix);
    r.has_shortcut = in != out;
    if (r.has_shortcut) load_conv(&r.conv_shortcut, W, in, out, 1, 0, "%s.conv_shortcut", prefix);
    return r;
}

static TemporalConvLayer load_temporal_conv(Weights *W, int channels, int groups, const char *prefix) {
    TemporalConvLayer t;
    int i;
    for (i = 0; i < 4; i++) {
        /* nn.Sequential indices: conv1 = (GroupNorm, SiLU, Conv3d); conv2..4 = (GroupNorm, SiLU, Dropout, Conv3d) */
        load_group_norm(&t.norm[i], W, channels, groups, 1e-5f, "%s.conv%d.0", prefix, i + 1);
        load_conv(&t.conv[i], W, channels, channels, 3, 1, "%s.conv%d.%d", prefix, i + 1, i == 0 ? 2 : 3);
    }
    return t;
}

static void load_attention(Attention *at, Weights *W, int dim, int kv_dim, int heads, int qkv_bias, const char *fmt, ...) {
    char name[400];
    FORMAT_NAME(name, fmt);
    at->heads = heads;
    at->head_dim = dim / heads;
    at->cross = 0; /* the caller marks cross-attention: kv_dim may equal dim */
    load_linear(&at->to_q, W, dim, dim, qkv_bias, "%s.to_q", name);
    load_linear(&at->to_k, W, kv_dim, dim, qkv_bias, "%s.to_k", name);
    load_linear(&at->to_v, W, kv_dim, dim, qkv_bias, "%s.to_v", name);
    load_linear(&at->to_out, W, dim, dim, 1, "%s.to_out.0", name);
}

/* Transformer2DModel (cross_dim = the text width) or TransformerTemporalModel (cross_dim = 0: its attn2 is a
 * second self-attention, double_self_attention). */
static void load_projection(Linear *l, Weights *W, int in, int out, int conv_1x1, const char *fmt, ...) {
    char name[400];
    FORMAT_NAME(name, fmt);
    if (conv_1x1) {              /* a 1x1 Conv2d (out, in, 1, 1) holds the same numbers as a Linear (out, in) */
        Conv c;
        load_conv(&c, W, in, out, 1, 0, "%s", name);
        l->w = c.w;
        l->b = c.b;
        l->in = in;
        l->out = out;
    } else {
        load_linear(l, W, in, out, 1, "%s", name);
    }
}

/* conv_proj: proj_in / proj_out are 1x1 convolutions (UNet2DConditionModel with use_linear_projection false). */
static Transformer load_transformer(Weights *W, int channels, int heads, int head_dim, int groups, int cross_dim,
                                    int conv_proj, const char *prefix) {
    Transformer tr;
    BasicTransformerBlock *b = &tr.block;
    const int inner = heads * head_dim;
    memset(&tr, 0, sizeof tr);
    tr.channels = channels;
    tr.inner = inner;
    load_group_norm(&tr.norm, W, channels, groups, 1e-6f, "%s.norm", prefix);
    load_projection(&tr.proj_in, W, channels, inner, conv_proj, "%s.proj_in", prefix);
    b->dim = inner;
    load_layer_norm(&b->norm1, W, inner, 1e-5f, "%s.transformer_blocks.0.norm1", prefix);
    load_attention(&b->attn1, W, inner, inner, heads, 0, "%s.transformer_blocks.0.attn1", prefix);
    load_layer_norm(&b->norm2, W, inner, 1e-5f, "%s.transformer_blocks.0.norm2", prefix);
    load_attention(&b->attn2, W, inner, cross_dim ? cross_dim : inner, heads, 0, "%s.transformer_blocks.0.attn2", prefix);
    b->attn2.cross = cross_dim != 0;
    load_layer_norm(&b->norm3, W, inner, 1e-5f, "%s.transformer_blocks.0.norm3", prefix);
    load_linear(&b->ff_proj, W, inner, 8 * inner, 1, "%s.transformer_blocks.0.ff.net.0.proj", prefix);
    load_linear(&b->ff_out, W, 4 * inner, inner, 1, "%s.transformer_blocks.0.ff.net.2", prefix);
    load_projection(&tr.proj_out, W, inner, channels, conv_proj, "%s.proj_out", prefix);
    return tr;
}

/* One down/mid/up block. In the 3D UNet the spatial transformers have channels / head_dim heads of head_dim:
 * Diffusers passes the config's attention_head_dim where the blocks expect a head count and vice versa, so in
 * this family "attention_head_dim" ends up as the per-head width (diffusers issue #2011). UNet2DConditionModel
 * passes it where a head count is expected, so there it is what it does not say: the number of heads, each
 * channels / attention_head_dim wide (SD 1.x: 8 heads of 40, 80, 160). */
static void load_block(UNet3D *u, Weights *W, UNetBlock *blk, const char *prefix, int cross, int n_layers,
                       int n_transformers, const int *resnet_in, int out, float scale, int sampler) {
    const int heads = u->is_2d ? u->head_dim : out / u->head_dim, head_width = u->is_2d ? out / u->head_dim : u->head_dim;
    int j;
    char name[400];
    blk->cross_attention = cross;
    blk->n_layers = n_layers;
    blk->out_channels = out;
    blk->resnets = (ResnetBlock2D *)xcalloc((size_t)n_layers, sizeof(ResnetBlock2D), "unet");
    if (!u->is_2d) blk->temp_convs = (TemporalConvLayer *)xcalloc((size_t)n_layers, sizeof(TemporalConvLayer), "unet");
    if (cross) {
        if (heads < 1 || head_width < 1 || (u->is_2d && out % u->head_dim))
            t2v_die("%s: %s has %d channels, which attention_head_dim %d does not divide", W->m->path, prefix, out, u->head_dim);
        blk->attentions = (Transformer *)xcalloc((size_t)n_layers, sizeof(Transformer), "unet");
        if (!u->is_2d) blk->temp_attentions = (Transformer *)xcalloc((size_t)n_layers, sizeof(Transformer), "unet");
    }
    for (j = 0; j < n_layers; j++) {
        snprintf(name, sizeof name, "%s.resnets.%d", prefix, j);
        blk->resnets[j] = load_resnet(W, resnet_in[j], out, u->temb_dim, u->groups, u->norm_eps, scale, name);
        if (u->is_2d) continue;
        snprintf(name, sizeof name, "%s.temp_convs.%d", prefix, j);
        blk->temp_convs[j] = load_temporal_conv(W, out, u->groups, name);
    }
    for (j = 0; cross && j < n_transformers; j++) {
        snprintf(name, sizeof name, "%s.attentions.%d", prefix, j);
        blk->attentions[j] = load_transformer(W, out, heads, head_width, u->groups, u->cross_dim, u->is_2d, name);
        if (u->is_2d) continue;
        snprintf(name, sizeof name, "%s.temp_attentions.%d", prefix, j);
        blk->temp_attentions[j] = load_transformer(W, out, heads, head_width, u->groups, 0, 0, name);
    }
    blk->has_sampler = sampler;
    if (sampler) load_conv(&blk->sampler, W, out, out, 3, 0, "%s.%s.0.conv", prefix, sampler < 0 ? "downsamplers" : "upsamplers");
}

/* The UNet runs once per step (50 times for the default video) on the same weights, and every one of its products
 * packed its blocks of w anew from the mapped file, a strided transpose (mm_pack, mm_pack_taps) that cost most where
 * few rows share a weight: the 8x8 and 4x4 levels, the feed-forwards run in chunks of rows, the time embedding.
 * So its float32 weights are packed once, before its first forward, into the panels the products read
 * (PackedPanels), and the file's pages under them are handed back to the system (MADV_DONTNEED on the pages that
 * lie wholly inside the weight; read again, they would come back from the file unchanged): memory holds the UNet's
 * weights once, not twice. The same bits; only where the file is mapped and the system has MADV_DONTNEED (else
 * the products pack per block, as before). Float16 and int8 weights stay as stored (packed float32 they would take
 * 2 and 4 times the memory), and so do the text encoder's (its 77-row products read the weights in place) and
 * the VAE's (its products have 4096 rows or more, over which per-block packing is cheap). */
static int unet_packs_weights(const T2VModel *m) {
#if T2V_POSIX && defined(MADV_DONTNEED)
    return m->mapped && !use_naive_matmul();
#else
    (void)m;
    return 0;
#endif
}

static void hand_back_pages(const void *data, size_t bytes) {
#if T2V_POSIX && defined(MADV_DONTNEED)
    advise_pages_inside((uintptr_t)data, bytes, MADV_DONTNEED);
#else
    (void)data;
    (void)bytes;
#endif
}

/* Packs every weight panels_to_pack recorded (once: later calls return at once); returns the seconds it took */
static double unet_pack_weights(T2VModel *m) {
    const double start = now_seconds();
    int i;
    if (m->packed_done) return 0.0;
    for (i = 0; i < m->n_packed; i++) {
        PackedPanels *p = m->packed[i];
        mm_pack_whole(p);
        if (p->panels) hand_back_pages(p->source, (size_t)p->rows * p->k * sizeof(float));
    }
    m->packed_done = 1;
    return now_seconds() - start;
}

static void free_packed_panels(T2VModel *m) {
    while (m->n_packed > 0) {
        PackedPanels *p = m->packed[--m->n_packed];
        free(p->raw);
        free(p);
    }
    free(m->packed);
}

static void load_unet(T2VModel *m) {
    UNet3D *u = (UNet3D *)xcalloc(1, sizeof(UNet3D), "unet");
    Weights W;
    char down_types[MAX_BLOCKS][64], up_types[MAX_BLOCKS][64], name[64];
    int i, j, n, resnet_in[MAX_LAYERS + 1], out_ch, in_ch, prev_ch;
    const int *ch = u->channels;
    W.m = m;
    W.component = "unet";
    W.pack_panels = unet_packs_weights(m);
    u->is_2d = t2v_is_stable_diffusion(m);
    n = config_ints(m, "unet.block_out_channels", u->channels, MAX_BLOCKS, 1, MAX_CHANNELS);
    u->n_blocks = n;
    if (config_list(m, "unet.down_block_types", down_types, MAX_BLOCKS) != n ||
        config_list(m, "unet.up_block_types", up_types, MAX_BLOCKS) != n)
        t2v_die("%s: unet block_out_channels, down_block_types and up_block_types differ in length", m->path);
    u->in_channels = t2v_config_int(m, "unet.in_channels", 1, MAX_CHANNELS);
    u->out_channels = t2v_config_int(m, "unet.out_channels", 1, MAX_CHANNELS);
    u->layers = t2v_config_int(m, "unet.layers_per_block", 1, MAX_LAYERS);
    u->head_dim = t2v_config_int(m, "unet.attention_head_dim", 1, MAX_CHANNELS);
    u->cross_dim = t2v_config_int(m, "unet.cross_attention_dim", 1, MAX_CHANNELS);
    u->groups = t2v_config_int(m, "unet.norm_num_groups", 1, MAX_CHANNELS);
    u->norm_eps = (float)config_number(m, "unet.norm_eps", 1e-12, 0.1);
    u->downsample_padding = t2v_config_int(m, "unet.downsample_padding", 0, 1);
    u->temb_dim = 4 * ch[0];
    if (strcmp(config_required(m, "unet.act_fn"), "silu")) t2v_die("%s: unet act_fn must be silu", m->path);
    if (strcmp(config_required(m, "unet.num_attention_heads"), "null") || strcmp(config_required(m, "unet.time_cond_proj_dim"), "null"))
        t2v_die("%s: unet num_attention_heads / time_cond_proj_dim are not implemented (must be null)", m->path);
    u->flip_sin_to_cos = 1;      /* UNet3DConditionModel fixes Timesteps(flip_sin_to_cos=True, freq_shift=0) */
    if (u->is_2d) {
        u->flip_sin_to_cos = config_bool(m, "unet.flip_sin_to_cos");
        u->freq_shift = t2v_config_int(m, "unet.freq_shift", 0, 1);
        if (config_bool(m, "unet.use_linear_projection"))
            t2v_die("%s: unet use_linear_projection true is not implemented (SD 1.x: false)", m->path);
        if (strcmp(config_required(m, "unet.mid_block_type"), "UNetMidBlock2DCrossAttn"))
            t2v_die("%s: unet mid_block_type %s is not implemented", m->path, config_required(m, "unet.mid_block_type"));
    }
    load_conv(&u->conv_in, &W, u->in_channels, ch[0], 3, 0, "conv_in");
    load_linear(&u->time_linear_1, &W, ch[0], u->temb_dim, 1, "time_embedding.linear_1");
    load_linear(&u->time_linear_2, &W, u->temb_dim, u->temb_dim, 1, "time_embedding.linear_2");
    /* transformer_in: 8 heads of attention_head_dim, whatever the channel count */
    if (!u->is_2d) u->transformer_in = load_transformer(&W, ch[0], 8, u->head_dim, u->groups, 0, 0, "transformer_in");
    out_ch = ch[0];
    for (i = 0; i < n; i++) {
        int cross = !strcmp(down_types[i], u->is_2d ? "CrossAttnDownBlock2D" : "CrossAttnDownBlock3D");
        if (!cross && strcmp(down_types[i], u->is_2d ? "DownBlock2D" : "DownBlock3D"))
            t2v_die("%s: unet down block type %s is not implemented", m->path, down_types[i]);
        in_ch = out_ch;
        out_ch = ch[i];
        for (j = 0; j < u->layers; j++) resnet_in[j] = j == 0 ? in_ch : out_ch;
        snprintf(name, sizeof name, "down_blocks.%d", i);
        load_block(u, &W, &u->down[i], name, cross, u->layers, u->layers, resnet_in, out_ch, 1.0f, i < n - 1 ? -1 : 0);
        snprintf(u->down[i].name, sizeof u->down[i].name, "down_block%d", i);
    }
    resnet_in[0] = resnet_in[1] = ch[n - 1];
    /* the mid block has one transformer pair between its two resnets */
    load_block(u, &W, &u->mid, "mid_block", 1, 2, 1, resnet_in, ch[n - 1], (float)config_number(m, "unet.mid_block_scale_factor", 1e-6, 1e6), 0);
    snprintf(u->mid.name, sizeof u->mid.name, "mid_block");
    out_ch = ch[n - 1];
    for (i = 0; i < n; i++) {
        int cross = !strcmp(up_types[i], u->is_2d ? "CrossAttnUpBlock2D" : "CrossAttnUpBlock3D");
        if (!cross && strcmp(up_types[i], u->is_2d ? "UpBlock2D" : "UpBlock3D"))
            t2v_die("%s: unet up block type %s is not implemented", m->path, up_types[i]);
        prev_ch = out_ch;
        out_ch = ch[n - 1 - i];
        in_ch = ch[i + 1 < n ? n - 2 - i : 0];
        for (j = 0; j <= u->layers; j++) /* input = previous output concatenated with the skip connection */
            resnet_in[j] = (j == 0 ? prev_ch : out_ch) + (j == u->layers ? in_ch : out_ch);
        snprintf(name, sizeof name, "up_blocks.%d", i);
        load_block(u, &W, &u->up[i], name, cross, u->layers + 1, u->layers + 1, resnet_in, out_ch, 1.0f, i < n - 1 ? 1 : 0);
        snprintf(u->up[i].name, sizeof u->up[i].name, "up_block%d", i);
    }
    load_group_norm(&u->conv_norm_out, &W, ch[0], u->groups, u->norm_eps, "conv_norm_out");
    load_conv(&u->conv_out, &W, ch[0], u->out_channels, 3, 0, "conv_out");
    m->unet = u;
}

static void free_block(UNetBlock *b) {
    free(b->resnets);
    free(b->temp_convs);
    free(b->attentions);
    free(b->temp_attentions);
}

static void free_unet(UNet3D *u) {
    int i;
    if (!u) return;
    for (i = 0; i < u->n_blocks; i++) {
        free_block(&u->down[i]);
        free_block(&u->up[i]);
    }
    free_block(&u->mid);
    arena_free(&u->arena);
    free(u);
}

/* ---- forward: the layers the 3D UNet shares with the VAE (ResnetBlock2D, Attention, Downsample2D,
 * Upsample2D) take a Hidden and the scratch arena; the rest also needs the UNetRun ---- */

typedef struct {                 /* what every UNet stage of one forward needs to know */
    UNet3D *u;
    Arena *a;
    int B, F;                    /* batch, frames per batch item: a video tensor has B*F frames */
    const float *silu_temb;      /* SiLU(time embedding), [B][temb_dim] */
    const float *context;        /* text states, [B][ctx_len][cross_dim] */
    int ctx_len;
    int forward_upsample_size;   /* H or W is not a multiple of 2^(blocks-1): upsample to each skip's size */
    int cross_frame;             /* CrossFrameAttnProcessor: frames per batch group, whose self-attention (attn1)
                                    takes keys and values from the group's first frame; 0: ordinary attention */
    const char *dump_dir;
} UNetRun;

/* --dump: writes h as Diffusers' (frames, C, H, W) DIR/act_<name>.npy */
static void dump_hidden(const char *dump_dir, const Hidden *h, const char *fmt, ...) {
    char name[200], file[220];
    float *tmp;
    if (!dump_dir) return;
    FORMAT_NAME(name, fmt);
    snprintf(file, sizeof file, "act_%s.npy", name);
    tmp = alloc_floats(hidden_numel(h), "dump");
    channels_last_to_first(h->data, tmp, (size_t)h->frames, (size_t)h->H * h->W, h->C);
    dump_tensor(dump_dir, file, tmp, 4, (int64_t[]){h->frames, h->C, h->H, h->W});
    free(tmp);
}

/* ResnetBlock2D: (x + conv2(SiLU(GN(conv1(SiLU(GN(x))) + temb)))) / output_scale_factor, with a 1x1
 * conv_shortcut on x when the channel count changes. in: [frames][H*W][r->in] -> out: [frames][H*W][r->out].
 * silu_temb: [frames / frames_per_temb][temb] or NULL (VAE). out may equal in (then its buffer must hold
 * the larger of the two shapes). */
static void resnet_block_2d(Arena *a, const ResnetBlock2D *r, const float *in, float *out, int frames, int H, int W,
                            const float *silu_temb, int frames_per_temb) {
    const size_t P = (size_t)H * W, tokens = (size_t)frames * P;
    ArenaMark mark = arena_mark(a);
    const ConvInput x1 = conv_input_3x3(a, &r->conv1, frames, H, W);
    float *y = arena_alloc(a, tokens * r->out), *x;
    ConvInput x2;
    double start;
    size_t t;
    group_norm_into(a, &r->norm1, in, &x1, frames, P, 1);
    conv2d_3x3_from(a, &r->conv1, &x1, y, frames, H, W);
    if (r->has_temb) {
        const int n_temb = frames / frames_per_temb;
        float *proj = arena_alloc(a, (size_t)n_temb * r->out);
        double start;
        linear(&r->time_emb_proj, silu_temb, proj, (size_t)n_temb);
        start = work_begin();
        PARALLEL_FOR(schedule(static))
        for (t = 0; t < tokens; t++) {
            const float *p = proj + (t / P / frames_per_temb) * r->out;
            float *v = y + t * r->out;
            int c;
            for (c = 0; c < r->out; c++) v[c] += p[c];
        }
        work_end(WORK_ELEMENTWISE, start, 0.0);
    }
    x2 = conv_input_3x3(a, &r->conv2, frames, H, W);
    group_norm_into(a, &r->norm2, y, &x2, frames, P, 1);
    x = arena_alloc(a, tokens * r->out);
    conv2d_3x3_from(a, &r->conv2, &x2, x, frames, H, W);
    if (r->has_shortcut) {
        conv2d(a, &r->conv_shortcut, in, y, frames, H, W, 1, 0, 0, H, W);
        in = y;
    }
    start = work_begin();
    PARALLEL_FOR(schedule(static))
    for (t = 0; t < tokens * r->out; t++) out[t] = (in[t] + x[t]) / r->output_scale_factor;
    work_end(WORK_ELEMENTWISE, start, 0.0);
    arena_reset(a, mark);
}

/* ResnetBlock2D on every frame of h, in place. h: [frames][H*W][r->in] -> [frames][H*W][r->out]. */
static void resnet(Arena *a, const ResnetBlock2D *r, Hidden *h, const float *silu_temb, int frames_per_temb) {
    resnet_block_2d(a, r, h->data, h->data, h->frames, h->H, h->W, silu_temb, frames_per_temb);
    h->C = r->out;
}

/* Attention (AttnProcessor): to_out(softmax(q k^T / sqrt(d)) v) over n_seq sequences of seq_len tokens of x;
 * keys and values from `context` (kv_seqs sequences of kv_len tokens; query sequence s uses s * kv_seqs / n_seq)
 * or, when context is NULL, from x itself. The result is added to h. */
static void attention_block(Arena *a, const Attention *at, const float *x, float *h, int n_seq, int seq_len,
                            const float *context, int kv_seqs, int kv_len) {
    const size_t tokens = (size_t)n_seq * seq_len, dim = (size_t)at->to_q.out;
    const size_t kv_tokens = context ? (size_t)kv_seqs * kv_len : tokens;
    const int n_kv = context ? kv_len : seq_len;
    ArenaMark mark = arena_mark(a);
    float *q = arena_alloc(a, tokens * dim), *k = arena_alloc(a, kv_tokens * dim), *v = arena_alloc(a, kv_tokens * dim);
    float *o = arena_alloc(a, tokens * dim);
    double start;
    linear(&at->to_q, x, q, tokens);
    linear(&at->to_k, context ? context : x, k, kv_tokens);
    linear(&at->to_v, context ? context : x, v, kv_tokens);
    start = work_begin();
    attention(a, o, q, k, v, n_seq, seq_len, n_kv, context ? n_seq / kv_seqs : 1, at->heads, at->head_dim);
    work_end(WORK_ATTENTION, start, 4.0 * tokens * n_kv * dim);
    linear(&at->to_out, o, q, tokens);
    add_inplace(h, q, tokens * dim);
    arena_reset(a, mark);
}

/* Downsample2D: a 3x3 convolution with stride 2. Its output size: padding 1 on every side, or with padding 0
 * (the VAE) one row and column of zeros on the right and bottom. */
static int downsampled_size(int n, int padding) {
    return padding ? (n + 2 * padding - 3) / 2 + 1 : (n - 2) / 2 + 1;
}

static void downsample_2d(Arena *a, const Conv *conv, int padding, Hidden *h) {
    const int Ho = downsampled_size(h->H, padding), Wo = downsampled_size(h->W, padding);
    conv2d(a, conv, h->data, h->spare, h->frames, h->H, h->W, 2, padding, padding, Ho, Wo);
    hidden_swap(h);
    h->H = Ho;                   /* h: [frames][Ho*Wo][C] */
    h->W = Wo;
}

/* Upsample2D: nearest-neighbour resize to Ho x Wo (twice the size, or the next skip's size), then a 3x3 conv. */
static void upsample_2d(Arena *a, const Conv *conv, Hidden *h, int Ho, int Wo) {
    const ArenaMark mark = arena_mark(a);
    const ConvInput x = conv_input_3x3(a, conv, h->frames, Ho, Wo);
    upsample_nearest(h->data, &x, h->frames, h->H, h->W, Ho, Wo);
    h->H = Ho;                   /* x: [frames][Ho*Wo][C], padded */
    h->W = Wo;
    conv2d_3x3_from(a, conv, &x, h->data, h->frames, Ho, Wo);
    arena_reset(a, mark);
}

/* A 3x3 convolution, stride 1, padding 1 (conv_in, conv_out). h: [frames][H*W][conv->in] -> [..][conv->out]. */
static void conv_3x3(Arena *a, const Conv *conv, Hidden *h) {
    conv2d(a, conv, h->data, h->spare, h->frames, h->H, h->W, 1, 1, 1, h->H, h->W);
    hidden_swap(h);
    h->C = conv->out;
}

/* TemporalConvLayer: h + conv4(conv3(conv2(conv1(h)))), each convN = Conv3d(3,1,1) after SiLU(GroupNorm)
 * where the GroupNorm statistics run over all frames of a batch item (a 5-D GroupNorm). In place. */
static void temporal_conv_layer(const UNetRun *r, const TemporalConvLayer *tc, Hidden *h) {
    const size_t P = (size_t)h->H * h->W, tokens = hidden_numel(h) / h->C;
    ArenaMark mark = arena_mark(r->a);
    const ConvInput x = conv_input_temporal(r->a, &tc->conv[0], r->B, r->F, P);   /* the four are alike */
    float *y = arena_alloc(r->a, tokens * h->C);
    int i;
    for (i = 0; i < 4; i++) {
        group_norm_into(r->a, &tc->norm[i], i == 0 ? h->data : y, &x, r->B, (size_t)r->F * P, 1);
        conv_temporal_from(r->a, &tc->conv[i], &x, y, r->B, r->F, P);
    }
    add_inplace(h->data, y, tokens * h->C);
    arena_reset(r->a, mark);
}

/* FeedForward with GEGLU: ff.net.2(value * gelu(gate)) where (value, gate) = ff.net.0.proj(x) split in
 * halves; added to h. Done in chunks of tokens to keep the 8*dim-wide intermediate small. */
static void feed_forward_geglu(Arena *a, const BasicTransformerBlock *b, const float *x, float *h, size_t tokens) {
    const size_t chunk = 2048, d4 = (size_t)b->ff_out.in;
    ArenaMark mark = arena_mark(a);
    float *proj = arena_alloc(a, chunk * 2 * d4), *act = arena_alloc(a, chunk * d4), *y = arena_alloc(a, chunk * b->dim);
    size_t t0;
    for (t0 = 0; t0 < tokens; t0 += chunk) {
        const size_t n = tokens - t0 < chunk ? tokens - t0 : chunk;
        size_t t;
        double start;
        linear(&b->ff_proj, x + t0 * b->dim, proj, n);
        start = work_begin();
        PARALLEL_FOR(schedule(static))
        for (t = 0; t < n; t++) {
            const float *value = proj + t * 2 * d4, *gate = value + d4;
            float *out = act + t * d4;
            size_t i;
            for (i = 0; i < d4; i++) out[i] = value[i] * gelu_erf(gate[i]);
        }
        work_end(WORK_GEGLU, start, 0.0);
        linear(&b->ff_out, act, y, n);
        add_inplace(h + t0 * b->dim, y, n * b->dim);
    }
    arena_reset(a, mark);
}

/* BasicTransformerBlock: h += attn1(norm1(h)); h += attn2(norm2(h), context); h += ff(norm3(h)).
 * h: n_seq sequences of seq_len tokens of width dim, [n_seq][seq_len][dim]. */
static void basic_transformer_block(const UNetRun *r, const BasicTransformerBlock *b, float *h, int n_seq, int seq_len) {
    const size_t tokens = (size_t)n_seq * seq_len;
    ArenaMark mark = arena_mark(r->a);
    float *x = arena_alloc(r->a, tokens * b->dim);
    layer_norm(&b->norm1, h, x, tokens);
    if (r->cross_frame) {        /* Text2Video-Zero: each frame attends to the first frame of its group */
        const int groups = n_seq / r->cross_frame;
        const size_t seq = (size_t)seq_len * b->dim;
        float *first = arena_alloc(r->a, (size_t)groups * seq);   /* first: [groups][seq_len][dim] */
        int g;
        for (g = 0; g < groups; g++) memcpy(first + g * seq, x + (size_t)g * r->cross_frame * seq, seq * sizeof(float));
        attention_block(r->a, &b->attn1, x, h, n_seq, seq_len, first, groups, seq_len);
    } else {
        attention_block(r->a, &b->attn1, x, h, n_seq, seq_len, NULL, 0, 0);
    }
    layer_norm(&b->norm2, h, x, tokens);
    if (b->attn2.cross)
        attention_block(r->a, &b->attn2, x, h, n_seq, seq_len, r->context, r->B, r->ctx_len);
    else
        attention_block(r->a, &b->attn2, x, h, n_seq, seq_len, NULL, 0, 0);
    layer_norm(&b->norm3, h, x, tokens);
    feed_forward_geglu(r->a, b, x, h, tokens);
    arena_reset(r->a, mark);
}

/* Transformer2DModel: h + proj_out(block(proj_in(GroupNorm(h)))), each frame's pixels one sequence. In place. */
static void transformer_2d_model(const UNetRun *r, const Transformer *tr, Hidden *h) {
    const size_t P = (size_t)h->H * h->W, tokens = (size_t)h->frames * P;
    ArenaMark mark = arena_mark(r->a);
    float *x = arena_alloc(r->a, tokens * tr->channels), *y = arena_alloc(r->a, tokens * tr->inner);
    group_norm(r->a, &tr->norm, h->data, x, h->frames, P, 0);
    linear(&tr->proj_in, x, y, tokens);                 /* y: [frames][H*W][inner] */
    basic_transformer_block(r, &tr->block, y, h->frames, (int)P);
    linear(&tr->proj_out, y, x, tokens);
    add_inplace(h->data, x, tokens * tr->channels);
    arena_reset(r->a, mark);
}

/* [B][F][P][C] <-> [B][P][F][C] */
static void swap_frames_and_pixels(const float *in, float *out, int B, int F, size_t P, int C, int to_pixel_major) {
    const double start = work_begin();
    long bf;
    PARALLEL_FOR(schedule(static))
    for (bf = 0; bf < (long)B * F; bf++) {
        const size_t b = (size_t)bf / F, f = (size_t)bf % F;
        size_t p;
        for (p = 0; p < P; p++) {
            const size_t frame_major = ((b * F + f) * P + p) * C, pixel_major = ((b * P + p) * F + f) * C;
            if (to_pixel_major) memcpy(out + pixel_major, in + frame_major, (size_t)C * sizeof(float));
            else memcpy(out + frame_major, in + pixel_major, (size_t)C * sizeof(float));
        }
    }
    work_end(WORK_COPIES, start, 0.0);
}

/* TransformerTemporalModel: GroupNorm over all frames of a batch item, then each pixel's F frames are one
 * sequence (Diffusers permutes to (B*H*W, F, C)); no positional embedding. In place. */
static void transformer_temporal_model(const UNetRun *r, const Transformer *tr, Hidden *h) {
    const size_t P = (size_t)h->H * h->W, tokens = (size_t)h->frames * P;
    ArenaMark mark = arena_mark(r->a);
    float *x = arena_alloc(r->a, tokens * tr->channels), *xt = arena_alloc(r->a, tokens * tr->channels);
    float *y = arena_alloc(r->a, tokens * tr->inner);
    group_norm(r->a, &tr->norm, h->data, x, r->B, (size_t)r->F * P, 0);
    swap_frames_and_pixels(x, xt, r->B, r->F, P, tr->channels, 1);   /* xt: [B][H*W][F][C] */
    linear(&tr->proj_in, xt, y, tokens);
    basic_transformer_block(r, &tr->block, y, (int)((size_t)r->B * P), r->F);
    linear(&tr->proj_out, y, xt, tokens);
    swap_frames_and_pixels(xt, x, r->B, r->F, P, tr->channels, 0);   /* x: [B][F][H*W][C] again */
    add_inplace(h->data, x, tokens * tr->channels);
    arena_reset(r->a, mark);
}

/* get_timestep_embedding, as Timesteps(flip_sin_to_cos, downscale_freq_shift) calls it: [cos(t f_i) | sin(t f_i)]
 * (flipped; [sin | cos] otherwise), f_i = exp(-ln(10000) i / (half - shift)), in float32 as torch computes it
 * (t * f_i rounded to float before cos/sin). */
static void get_timestep_embedding(float t, float *out, int dim, int flip_sin_to_cos, int freq_shift) {
    const int half = dim / 2;
    const float log_max_period = (float)-9.210340371976184; /* -ln(10000) */
    int i;
    for (i = 0; i < half; i++) {
        const float freq = expf(log_max_period * (float)i / (float)(half - freq_shift));
        const float arg = t * freq;
        out[flip_sin_to_cos ? i : half + i] = cosf(arg);
        out[flip_sin_to_cos ? half + i : i] = sinf(arg);
    }
    if (dim % 2) out[dim - 1] = 0.0f;
}

/* time_proj (Timesteps), then time_embedding (TimestepEmbedding: linear_1, SiLU, linear_2): one row per batch
 * item, shared by its frames. Returns SiLU(emb), which is what every resnet's time_emb_proj takes:
 * [B][temb_dim], on the arena. */
static float *timestep_embedding(const UNetRun *r, double timestep) {
    const UNet3D *u = r->u;
    const int C = u->channels[0];
    float *t_proj = arena_alloc(r->a, (size_t)r->B * C), *hidden = arena_alloc(r->a, (size_t)r->B * u->temb_dim);
    float *emb = arena_alloc(r->a, (size_t)r->B * u->temb_dim), *silu_emb = arena_alloc(r->a, (size_t)r->B * u->temb_dim);
    size_t i;
    int b;
    for (b = 0; b < r->B; b++) get_timestep_embedding((float)timestep, t_proj + (size_t)b * C, C, u->flip_sin_to_cos, u->freq_shift);
    linear(&u->time_linear_1, t_proj, hidden, (size_t)r->B);
    for (i = 0; i < (size_t)r->B * u->temb_dim; i++) hidden[i] = silu(hidden[i]);
    linear(&u->time_linear_2, hidden, emb, (size_t)r->B);
    for (i = 0; i < (size_t)r->B * u->temb_dim; i++) silu_emb[i] = silu(emb[i]);
    dump_tensor(r->dump_dir, "act_time_proj.npy", t_proj, 2, (int64_t[]){r->B, C});
    dump_tensor(r->dump_dir, "act_time_embedding.npy", emb, 2, (int64_t[]){r->B, u->temb_dim});
    return silu_emb;
}

/* Diffusers' down_block_res_samples: the outputs of the down path, kept (on the arena) for the up path, which
 * takes them back last in, first out. */
typedef struct { float *data; int C, H, W; ArenaMark mark; } Skip;
typedef struct { Skip items[1 + MAX_BLOCKS * (MAX_LAYERS + 1)]; int n; } SkipStack;

static void skip_push(const UNetRun *r, SkipStack *s, const Hidden *h) {
    const double start = work_begin();
    Skip *k = &s->items[s->n++];
    k->mark = arena_mark(r->a);
    k->data = arena_alloc(r->a, hidden_numel(h));
    memcpy(k->data, h->data, hidden_numel(h) * sizeof(float));
    k->C = h->C;
    k->H = h->H;
    k->W = h->W;
    work_end(WORK_COPIES, start, 0.0);
}

/* torch.cat([hidden_states, res_hidden_states], dim=1) with the newest skip, which is then released.
 * h: [frames][H*W][C] -> [frames][H*W][C + skip C]. */
static void concat_skip(const UNetRun *r, SkipStack *s, Hidden *h) {
    const Skip *k = &s->items[--s->n];
    const size_t pixels = (size_t)h->frames * h->H * h->W;
    const int C = h->C, total = h->C + k->C;
    const double start = work_begin();
    long px;
    if (k->H != h->H || k->W != h->W) t2v_die("internal: skip connection size mismatch");
    PARALLEL_FOR(schedule(static))
    for (px = 0; px < (long)pixels; px++) {
        memcpy(h->spare + (size_t)px * total, h->data + (size_t)px * C, (size_t)C * sizeof(float));
        memcpy(h->spare + (size_t)px * total + C, k->data + (size_t)px * k->C, (size_t)k->C * sizeof(float));
    }
    hidden_swap(h);
    h->C = total;
    arena_reset(r->a, k->mark);
    work_end(WORK_COPIES, start, 0.0);
}

/* One layer of a 3D UNet block, in Diffusers' order: resnets[j], temp_convs[j] and, in the blocks with
 * cross-attention, attentions[j] (Transformer2DModel) and temp_attentions[j] (TransformerTemporalModel).
 * h: [B*F][H*W][C_in] -> [B*F][H*W][out_channels]. */
static void unet_block_layer(const UNetRun *r, const UNetBlock *blk, int j, Hidden *h) {
    resnet(r->a, &blk->resnets[j], h, r->silu_temb, r->F);
    dump_hidden(r->dump_dir, h, "%s_resnets%d", blk->name, j);
    temporal_conv_layer(r, &blk->temp_convs[j], h);
    dump_hidden(r->dump_dir, h, "%s_temp_convs%d", blk->name, j);
    if (!blk->cross_attention) return;
    transformer_2d_model(r, &blk->attentions[j], h);
    dump_hidden(r->dump_dir, h, "%s_attentions%d", blk->name, j);
    transformer_temporal_model(r, &blk->temp_attentions[j], h);
    dump_hidden(r->dump_dir, h, "%s_temp_attentions%d", blk->name, j);
}

/* Downsample2D at the end of a down block (all but the last), its output one more skip connection. */
static void down_block_sampler(const UNetRun *r, const UNetBlock *blk, Hidden *h, SkipStack *skips) {
    if (blk->has_sampler) {
        downsample_2d(r->a, &blk->sampler, r->u->downsample_padding, h);
        skip_push(r, skips, h);
    }
    dump_hidden(r->dump_dir, h, "%s", blk->name);
}

/* Upsample2D at the end of an up block (all but the last), to the next skip's size when the latent size does
 * not halve evenly. */
static void up_block_sampler(const UNetRun *r, const UNetBlock *blk, Hidden *h, const SkipStack *skips) {
    if (blk->has_sampler) {
        const Skip *next = &skips->items[skips->n - 1];
        upsample_2d(r->a, &blk->sampler, h, r->forward_upsample_size ? next->H : 2 * h->H,
                    r->forward_upsample_size ? next->W : 2 * h->W);
    }
    dump_hidden(r->dump_dir, h, "%s", blk->name);
}

/* CrossAttnDownBlock3D, or DownBlock3D (the same without the transformers): its layers, then Downsample2D
 * (all but the last block). Each layer's output and the downsampled output go on the skip stack.
 * h: [B*F][H*W][C_in] -> [B*F][H/2*W/2][out_channels]. */
static void down_block_3d(const UNetRun *r, const UNetBlock *blk, Hidden *h, SkipStack *skips) {
    int j;
    for (j = 0; j < blk->n_layers; j++) {
        unet_block_layer(r, blk, j, h);
        skip_push(r, skips, h);
    }
    down_block_sampler(r, blk, h, skips);
}

/* UNetMidBlock3DCrossAttn: resnets[0], temp_convs[0], then attentions[0], temp_attentions[0], resnets[1],
 * temp_convs[1]. h keeps its shape. */
static void unet_mid_block_3d_cross_attn(const UNetRun *r, const UNetBlock *blk, Hidden *h) {
    resnet(r->a, &blk->resnets[0], h, r->silu_temb, r->F);
    temporal_conv_layer(r, &blk->temp_convs[0], h);
    transformer_2d_model(r, &blk->attentions[0], h);
    transformer_temporal_model(r, &blk->temp_attentions[0], h);
    resnet(r->a, &blk->resnets[1], h, r->silu_temb, r->F);
    temporal_conv_layer(r, &blk->temp_convs[1], h);
    dump_hidden(r->dump_dir, h, "%s", blk->name);
}

/* CrossAttnUpBlock3D, or UpBlock3D (the same without the transformers): each layer's input is h joined with
 * the newest skip; then Upsample2D (all but the last block), to the next skip's size when the latent size
 * does not halve evenly. h: [B*F][H*W][C_in] -> [B*F][2H*2W][out_channels]. */
static void up_block_3d(const UNetRun *r, const UNetBlock *blk, Hidden *h, SkipStack *skips) {
    int j;
    for (j = 0; j < blk->n_layers; j++) {
        concat_skip(r, skips, h);
        unet_block_layer(r, blk, j, h);
    }
    up_block_sampler(r, blk, h, skips);
}

/* ---- UNet2DConditionModel's blocks (unet_2d_blocks.py): the 3D blocks without temporal layers. Text2Video-Zero
 * runs the video's frames through them as a batch of images, so h is [B*F][H*W][C] here too. ---- */

/* CrossAttnDownBlock2D: (resnets[j], attentions[j]) per layer, each output a skip connection, then Downsample2D.
 * h: [B*F][H*W][C_in] -> [B*F][H/2*W/2][out_channels]. */
static void cross_attn_down_block_2d(const UNetRun *r, const UNetBlock *blk, Hidden *h, SkipStack *skips) {
    int j;
    for (j = 0; j < blk->n_layers; j++) {
        resnet(r->a, &blk->resnets[j], h, r->silu_temb, r->F);
        dump_hidden(r->dump_dir, h, "%s_resnets%d", blk->name, j);
        transformer_2d_model(r, &blk->attentions[j], h);
        dump_hidden(r->dump_dir, h, "%s_attentions%d", blk->name, j);
        skip_push(r, skips, h);
    }
    down_block_sampler(r, blk, h, skips);
}

/* DownBlock2D: resnets only. h: [B*F][H*W][C_in] -> [B*F][H/2*W/2][out_channels] (the last block keeps H, W). */
static void down_block_2d(const UNetRun *r, const UNetBlock *blk, Hidden *h, SkipStack *skips) {
    int j;
    for (j = 0; j < blk->n_layers; j++) {
        resnet(r->a, &blk->resnets[j], h, r->silu_temb, r->F);
        dump_hidden(r->dump_dir, h, "%s_resnets%d", blk->name, j);
        skip_push(r, skips, h);
    }
    down_block_sampler(r, blk, h, skips);
}

/* UNetMidBlock2DCrossAttn: resnets[0], attentions[0], resnets[1]. h keeps its shape. */
static void unet_mid_block_2d_cross_attn(const UNetRun *r, const UNetBlock *blk, Hidden *h) {
    resnet(r->a, &blk->resnets[0], h, r->silu_temb, r->F);
    transformer_2d_model(r, &blk->attentions[0], h);
    resnet(r->a, &blk->resnets[1], h, r->silu_temb, r->F);
    dump_hidden(r->dump_dir, h, "%s", blk->name);
}

/* UpBlock2D: each resnet's input is h joined with the newest skip; then Upsample2D.
 * h: [B*F][H*W][C_in] -> [B*F][2H*2W][out_channels]. */
static void up_block_2d(const UNetRun *r, const UNetBlock *blk, Hidden *h, SkipStack *skips) {
    int j;
    for (j = 0; j < blk->n_layers; j++) {
        concat_skip(r, skips, h);
        resnet(r->a, &blk->resnets[j], h, r->silu_temb, r->F);
        dump_hidden(r->dump_dir, h, "%s_resnets%d", blk->name, j);
    }
    up_block_sampler(r, blk, h, skips);
}

/* CrossAttnUpBlock2D: (h joined with the newest skip, resnets[j], attentions[j]) per layer, then Upsample2D.
 * h: [B*F][H*W][C_in] -> [B*F][2H*2W][out_channels]. */
static void cross_attn_up_block_2d(const UNetRun *r, const UNetBlock *blk, Hidden *h, SkipStack *skips) {
    int j;
    for (j = 0; j < blk->n_layers; j++) {
        concat_skip(r, skips, h);
        resnet(r->a, &blk->resnets[j], h, r->silu_temb, r->F);
        dump_hidden(r->dump_dir, h, "%s_resnets%d", blk->name, j);
        transformer_2d_model(r, &blk->attentions[j], h);
        dump_hidden(r->dump_dir, h, "%s_attentions%d", blk->name, j);
    }
    up_block_sampler(r, blk, h, skips);
}

/* Walks the down path: the largest activation of a forward (the up blocks' concatenated inputs dominate)
 * and the floats the skip connections hold. */
static size_t unet_max_activation(const UNet3D *u, int frames, int H, int W, size_t *skip_floats) {
    const int widest_end = u->in_channels > u->out_channels ? u->in_channels : u->out_channels;
    size_t best = (size_t)frames * H * W * (widest_end > u->channels[0] ? widest_end : u->channels[0]);
    size_t skips = (size_t)frames * H * W * u->channels[0];
    int i, j, h = H, w = W, hs[MAX_BLOCKS + 1], ws[MAX_BLOCKS + 1];
    for (i = 0; i < u->n_blocks; i++) {
        const UNetBlock *blk = &u->down[i];
        hs[i] = h;
        ws[i] = w;
        for (j = 0; j < blk->n_layers; j++) {
            size_t s = (size_t)frames * h * w * (blk->resnets[j].in > blk->out_channels ? blk->resnets[j].in : blk->out_channels);
            if (s > best) best = s;
            skips += (size_t)frames * h * w * blk->out_channels;
        }
        if (blk->has_sampler) {
            h = downsampled_size(h, u->downsample_padding);
            w = downsampled_size(w, u->downsample_padding);
            skips += (size_t)frames * h * w * blk->out_channels;
        }
    }
    for (i = 0; i < u->n_blocks; i++) {
        const int level = u->n_blocks - 1 - i;
        for (j = 0; j < u->up[i].n_layers; j++) {
            size_t s = (size_t)frames * hs[level] * ws[level] * u->up[i].resnets[j].in;
            if (s > best) best = s;
        }
    }
    if (skip_floats) *skip_floats = skips;
    return best;
}

/* Refuses up front a forward that cannot fit in this machine's memory, rather than being killed halfway.
 * Upper bound: two activation buffers, the skip connections, and the widest transformer's temporaries
 * (its input, norm, projections q, k, v and output over all tokens of the first level). */
static void check_unet_memory(const UNet3D *u, int frames, int H, int W) {
#if T2V_POSIX && defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    size_t skips, widest = (size_t)u->transformer_in.inner > (size_t)u->channels[0] ? (size_t)u->transformer_in.inner : (size_t)u->channels[0];
    const double need = 4.0 * (2.0 * unet_max_activation(u, frames, H, W, &skips) + skips +
                               (double)frames * H * W * (2.0 * u->channels[0] + 6.0 * widest));
    const double have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if (have > 0 && need > 0.9 * have)
        t2v_die("a UNet forward of %d frames at %dx%d latents needs about %.1f GiB of activations; this machine has "
                "%.1f GiB of memory: use fewer frames or a smaller video", frames, H, W, need / 1073741824.0,
                have / 1073741824.0);
#else
    (void)u; (void)frames; (void)H; (void)W;
#endif
}

/* (B, C, F, H, W), Diffusers' video layout, to t2v's channels-last frames [B*F][H*W][C], or back */
static void convert_video_layout(const float *in, float *out, int B, int C, int F, size_t P, int to_frames) {
    const double start = work_begin();
    long bcf;
    PARALLEL_FOR(schedule(static))
    for (bcf = 0; bcf < (long)B * C * F; bcf++) {     /* one (batch item, channel, frame) plane per item */
        const int b = (int)(bcf / ((long)C * F)), c = (int)(bcf / F % C), f = (int)(bcf % F);
        size_t p;
        for (p = 0; p < P; p++) {
            const size_t video = (((size_t)b * C + c) * F + f) * P + p, frames = (((size_t)b * F + f) * P + p) * C + c;
            if (to_frames) out[frames] = in[video];
            else out[video] = in[frames];
        }
    }
    work_end(WORK_COPIES, start, 0.0);
}

/* UNet3DConditionModel.forward(sample, timestep, encoder_hidden_states).sample, or UNet2DConditionModel's
 * (u->is_2d: then F = 1 and B counts images); the noise prediction. sample and out: (B, in/out_channels, F, H, W);
 * context: (B, 77, cross_attention_dim). cross_frame: see UNetRun. */
static void unet_forward(T2VModel *m, const float *sample, int B, int F, int H, int W, double timestep,
                         const float *context, int cross_frame, float *out, const char *dump_dir) {
    UNet3D *u = m->unet;
    const ArenaMark mark = arena_mark(&u->arena);
    const int up_factor = 1 << (u->n_blocks - 1);
    UNetRun r;
    SkipStack skips;
    Hidden h;
    int i;
    if (B < 1 || F < 1 || H < 1 || W < 1) t2v_die("unet: invalid sample size");
    check_unet_memory(u, B * F, H, W);
    unet_pack_weights(m);
    r.u = u;
    r.a = &u->arena;
    r.B = B;
    r.F = F;
    r.context = context;
    r.ctx_len = t2v_context_length(m);
    r.forward_upsample_size = H % up_factor != 0 || W % up_factor != 0;
    r.cross_frame = cross_frame;
    r.dump_dir = dump_dir;
    skips.n = 0;

    r.silu_temb = timestep_embedding(&r, timestep);           /* [B][temb_dim] */
    h = hidden_new(r.a, unet_max_activation(u, B * F, H, W, NULL), B * F, u->in_channels, H, W);
    convert_video_layout(sample, h.data, B, u->in_channels, F, (size_t)H * W, 1); /* h: [B*F][H*W][in_channels] */
    conv_3x3(r.a, &u->conv_in, &h);                           /* h: [B*F][H*W][block_out_channels[0]] */
    dump_hidden(dump_dir, &h, "conv_in");
    if (!u->is_2d) {
        transformer_temporal_model(&r, &u->transformer_in, &h);
        dump_hidden(dump_dir, &h, "transformer_in");
    }
    skip_push(&r, &skips, &h);
    for (i = 0; i < u->n_blocks; i++) {
        const UNetBlock *blk = &u->down[i];
        if (!u->is_2d) down_block_3d(&r, blk, &h, &skips);
        else if (blk->cross_attention) cross_attn_down_block_2d(&r, blk, &h, &skips);
        else down_block_2d(&r, blk, &h, &skips);
    }
    if (u->is_2d) unet_mid_block_2d_cross_attn(&r, &u->mid, &h);
    else unet_mid_block_3d_cross_attn(&r, &u->mid, &h);        /* h: [B*F][(H*W)/4^(blocks-1)][channels[-1]] */
    for (i = 0; i < u->n_blocks; i++) {
        const UNetBlock *blk = &u->up[i];
        if (!u->is_2d) up_block_3d(&r, blk, &h, &skips);
        else if (blk->cross_attention) cross_attn_up_block_2d(&r, blk, &h, &skips);
        else up_block_2d(&r, blk, &h, &skips);
    }
    group_norm(r.a, &u->conv_norm_out, h.data, h.spare, h.frames, (size_t)H * W, 0); /* h: [B*F][H*W][channels[0]] */
    hidden_swap(&h);
    dump_hidden(dump_dir, &h, "conv_norm_out");
    silu_inplace(h.data, hidden_numel(&h));
    conv_3x3(r.a, &u->conv_out, &h);                          /* h: [B*F][H*W][out_channels] */
    dump_hidden(dump_dir, &h, "conv_out");
    convert_video_layout(h.data, out, B, u->out_channels, F, (size_t)H * W, 0);
    arena_reset(&u->arena, mark);
}

void t2v_unet(T2VModel *m, const float *sample, int B, int F, int H, int W, double timestep, const float *context,
              float *out, const char *dump_dir) {
    if (m->unet->is_2d) t2v_die("%s holds a UNet2DConditionModel (Stable Diffusion), not a video UNet", m->path);
    unet_forward(m, sample, B, F, H, W, timestep, context, 0, out, dump_dir);
}

/* UNet2DConditionModel: N images. cross_frame_batch > 0: CrossFrameAttnProcessor(batch_size=cross_frame_batch),
 * the N images being that many groups of frames. */
void t2v_unet_2d(T2VModel *m, const float *sample, int N, int H, int W, double timestep, const float *context,
                 int cross_frame_batch, float *out, const char *dump_dir) {
    if (!m->unet->is_2d) t2v_die("%s holds a UNet3DConditionModel, not an image UNet", m->path);
    if (cross_frame_batch < 0 || (cross_frame_batch > 0 && N % cross_frame_batch))
        t2v_die("unet: a batch of %d images does not split into %d groups of frames", N, cross_frame_batch);
    unet_forward(m, sample, N, 1, H, W, timestep, context, cross_frame_batch ? N / cross_frame_batch : 0, out, dump_dir);
}

/* ============================================================================================
 * 7. Noise and schedulers: torch's CPU random stream (mt19937 + its normal sampling) so that --seed gives
 *    the latents torch.randn(generator=torch.Generator("cpu").manual_seed(seed)) gives, and Diffusers'
 *    DDIMScheduler / DPMSolverMultistepScheduler (scheduling_ddim.py, scheduling_dpmsolver_multistep.py)
 *    in float32, one rounding per tensor operation as torch does.
 * ============================================================================================ */

/* ---- torch.Generator("cpu") and torch.randn ---- */

#define MT_N 624
#define MT_M 397

/* Which float32 Box-Muller kernel torch.randn uses for >= 16 elements: torch 1.13 picks the AVX2
 * one on AVX2 machines (the golden rng/ files, the pipeline latents); SCALAR is the
 * ATEN_CPU_CAPABILITY=default kernel (rng/scalar/). Both are reproduced bit for bit. */
typedef enum { TORCH_RANDN_AVX2, TORCH_RANDN_SCALAR } TorchRandnKernel;

typedef struct {
    uint32_t state[MT_N];
    int next;                 /* index of the next word of state to temper */
    int has_cached_normal;    /* torch keeps the second Box-Muller value of the double path */
    double cached_normal;
    TorchRandnKernel kernel;
} TorchGenerator;

/* torch.Generator('cpu').manual_seed(seed): at::mt19937 keeps only the low 32 bits of the seed. */
static void torch_generator_seed(TorchGenerator *g, uint64_t seed) {
    int i;
    g->state[0] = (uint32_t)(seed & 0xffffffffu);
    for (i = 1; i < MT_N; i++) {
        uint32_t prev = g->state[i - 1];
        g->state[i] = (uint32_t)(1812433253u * (prev ^ (prev >> 30)) + (uint32_t)i);
    }
    g->next = MT_N;           /* regenerate the whole block on the first draw */
    g->has_cached_normal = 0;
    g->cached_normal = 0.0;
    g->kernel = TORCH_RANDN_AVX2;
}

/* One 32-bit draw of the standard MT19937 (at::mt19937::operator()). */
static uint32_t mt19937_next(TorchGenerator *g) {
    uint32_t y;
    if (g->next >= MT_N) {
        int i;
        for (i = 0; i < MT_N; i++) {
            uint32_t x = (g->state[i] & 0x80000000u) | (g->state[(i + 1) % MT_N] & 0x7fffffffu);
            g->state[i] = g->state[(i + MT_M) % MT_N] ^ (x >> 1) ^ ((x & 1u) ? 0x9908b0dfu : 0u);
        }
        g->next = 0;
    }
    y = g->state[g->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* uniform_real_distribution<double>: random64() = first << 32 | second, keep 53 bits. */
static double torch_uniform_double(TorchGenerator *g) {
    uint64_t hi = mt19937_next(g), lo = mt19937_next(g);
    uint64_t r = (hi << 32) | lo;
    return (double)(r & ((UINT64_C(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

/* uniform_real_distribution<float>: 24 bits of one 32-bit draw. */
static float torch_uniform_float(TorchGenerator *g) {
    return (float)((double)(mt19937_next(g) & 0xffffffu) * (1.0 / 16777216.0));
}

/* at::normal_distribution<double>: Box-Muller in double, second value cached in the generator. */
static double torch_normal_double(TorchGenerator *g) {
    double u1, u2, r, theta;
    if (g->has_cached_normal) {
        g->has_cached_normal = 0;
        return g->cached_normal;
    }
    u1 = torch_uniform_double(g);
    u2 = torch_uniform_double(g);
    r = sqrt(-2.0 * log(1.0 - u2));
    theta = 6.283185307179586 * u1;   /* 2.0 * c10::pi<double> */
    g->cached_normal = r * sin(theta);
    g->has_cached_normal = 1;
    return r * cos(theta);
}

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* log256_ps of torch's avx_mathfun.h (Cephes logf), one lane, with the multiply-adds that GCC
 * contracts into FMAs in torch's AVX2 build. Only called on (0, 1]. */
static float avx_mathfun_logf(float x) {
    float e, z, y, tmp;
    int below;
    if (x < f32_from_bits(0x00800000u))             /* cut off denormals */
        x = f32_from_bits(0x00800000u);
    e = (float)((int32_t)(f32_bits(x) >> 23) - 0x7f) + 1.0f;
    x = f32_from_bits((f32_bits(x) & ~0x7f800000u) | f32_bits(0.5f));   /* mantissa in [0.5, 1) */
    below = x < 0.707106781186547524f;
    tmp = below ? x : 0.0f;
    x = x - 1.0f;
    e = e - (below ? 1.0f : 0.0f);
    x = x + tmp;
    z = x * x;
    y = fmaf(7.0376836292E-2f, x, -1.1514610310E-1f);
    y = fmaf(y, x, 1.1676998740E-1f);
    y = fmaf(y, x, -1.2420140846E-1f);
    y = fmaf(y, x, 1.4249322787E-1f);
    y = fmaf(y, x, -1.6668057665E-1f);
    y = fmaf(y, x, 2.0000714765E-1f);
    y = fmaf(y, x, -2.4999993993E-1f);
    y = fmaf(y, x, 3.3333331174E-1f);
    y = y * x;
    y = fmaf(y, z, e * -2.12194440e-4f);
    y = fmaf(-z, 0.5f, y);
    x = x + y;
    return fmaf(e, 0.693359375f, x);
}

/* sincos256_ps of avx_mathfun.h (Cephes sinf/cosf), one lane, FMAs as in torch's build.
 * Only called on [0, 2 pi), where the float -> int truncation cannot overflow. */
static void avx_mathfun_sincosf(float x, float *s, float *c) {
    uint32_t sign_sin = f32_bits(x) & 0x80000000u, sign_cos;
    float y, z, yc, ys;
    int32_t j;
    x = f32_from_bits(f32_bits(x) & 0x7fffffffu);
    j = (int32_t)(x * 1.27323954473516f);           /* x * 4/pi, truncated */
    j = (j + 1) & ~1;
    y = (float)j;
    sign_sin ^= (uint32_t)(j & 4) << 29;
    sign_cos = (uint32_t)(~(j - 2) & 4) << 29;
    x = fmaf(y, -0.78515625f, x);                   /* extended precision x - j * pi/4 */
    x = fmaf(y, -2.4187564849853515625e-4f, x);
    x = fmaf(y, -3.77489497744594108e-8f, x);
    z = x * x;
    yc = fmaf(2.443315711809948E-005f, z, -1.388731625493765E-003f);
    yc = fmaf(yc, z, 4.166664568298827E-002f);
    yc = yc * z;
    yc = fmaf(yc, z, -(z * 0.5f));
    yc = yc + 1.0f;
    ys = fmaf(-1.9515295891E-4f, z, 8.3321608736E-3f);
    ys = fmaf(ys, z, -1.6666654611E-1f);
    ys = ys * z;
    ys = fmaf(ys, x, x);
    if ((j & 2) == 0) {                             /* the vector code blends by adding +0 */
        *s = 0.0f + ys;
        *c = yc + 0.0f;
    } else {
        *s = yc + 0.0f;
        *c = 0.0f + ys;
    }
    *s = f32_from_bits(f32_bits(*s) ^ sign_sin);
    *c = f32_from_bits(f32_bits(*c) ^ sign_cos);
}

/* normal_fill_16_AVX2 / normal_fill_16: Box-Muller over the pairs (j, j+8) of 16 uniforms. */
static void torch_normal_fill_16(float *d, TorchRandnKernel kernel) {
    int j;
    for (j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j];                      /* [0,1) -> (0,1] for the log */
        float radius, theta, s, c;
        if (kernel == TORCH_RANDN_AVX2) {
            radius = sqrtf(-2.0f * avx_mathfun_logf(u1));
            theta = (float)6.283185307179586 * d[j + 8];   /* _mm256_set1_ps(2.0f * pi<double>) */
            avx_mathfun_sincosf(theta, &s, &c);
        } else {
            radius = sqrtf(-2.0f * logf(u1));
            theta = (float)(6.283185307179586 * d[j + 8]); /* 2.0f * pi<double> * u2 in double */
            s = sinf(theta);
            c = cosf(theta);
        }
        d[j] = radius * c;
        d[j + 8] = radius * s;
    }
}

/* torch.randn(n, generator=g) for float32 (aten normal_kernel on a contiguous CPU tensor).
 * Fewer than 16 elements: per element double path. Otherwise: n float uniforms first, Box-Muller
 * per block of 16, and if n % 16 != 0 the last 16 outputs are redone from 16 fresh uniforms. */
static void torch_randn(TorchGenerator *g, float *out, size_t n) {
    size_t i;
    if (n < 16) {
        for (i = 0; i < n; i++)
            out[i] = (float)torch_normal_double(g);
        return;
    }
    for (i = 0; i < n; i++)
        out[i] = torch_uniform_float(g);
    for (i = 0; i + 16 <= n; i += 16)
        torch_normal_fill_16(out + i, g->kernel);
    if (n % 16 != 0) {
        float *tail = out + n - 16;
        for (i = 0; i < 16; i++)
            tail[i] = torch_uniform_float(g);
        torch_normal_fill_16(tail, g->kernel);
    }
}

/* ---- scheduler config: the keys of scheduler_config.json ---- */

/* scheduler_config.json as the scheduler class sees it: the file's values over the class's __init__ defaults.
 * Each field is named after its key. Strings point into the model config; NULL stands for JSON null. */
typedef struct {
    int num_train_timesteps;
    double beta_start, beta_end;
    const char *beta_schedule;
    const char *trained_betas;    /* only null is supported */
    const char *prediction_type;
    int set_alpha_to_one;
    int steps_offset;
    const char *timestep_spacing;
    int clip_sample;
    double clip_sample_range;
    int thresholding;
    int rescale_betas_zero_snr;
    int solver_order;
    const char *algorithm_type;
    const char *solver_type;
    int lower_order_final;
    int euler_at_final;
    int use_karras_sigmas;
    int use_lu_lambdas;
    const char *final_sigmas_type;
    double lambda_min_clipped;
    const char *variance_type;
    int skip_prk_steps;           /* PNDM */
} SchedulerConfig;

typedef enum { KEY_INT, KEY_NUMBER, KEY_BOOL, KEY_STRING } ConfigKeyType; /* KEY_STRING: "null" reads as NULL */

/* Every scheduler_config.json key t2v understands: its name, type, and where it goes in SchedulerConfig. */
#define SCHEDULER_KEY(name, type) { #name, type, offsetof(SchedulerConfig, name) }
static const struct { const char *name; ConfigKeyType type; size_t offset; } scheduler_keys[] = {
    SCHEDULER_KEY(num_train_timesteps, KEY_INT),   SCHEDULER_KEY(beta_start, KEY_NUMBER),
    SCHEDULER_KEY(beta_end, KEY_NUMBER),           SCHEDULER_KEY(beta_schedule, KEY_STRING),
    SCHEDULER_KEY(trained_betas, KEY_STRING),      SCHEDULER_KEY(prediction_type, KEY_STRING),
    SCHEDULER_KEY(set_alpha_to_one, KEY_BOOL),     SCHEDULER_KEY(steps_offset, KEY_INT),
    SCHEDULER_KEY(timestep_spacing, KEY_STRING),   SCHEDULER_KEY(clip_sample, KEY_BOOL),
    SCHEDULER_KEY(clip_sample_range, KEY_NUMBER),  SCHEDULER_KEY(thresholding, KEY_BOOL),
    SCHEDULER_KEY(rescale_betas_zero_snr, KEY_BOOL), SCHEDULER_KEY(solver_order, KEY_INT),
    SCHEDULER_KEY(algorithm_type, KEY_STRING),     SCHEDULER_KEY(solver_type, KEY_STRING),
    SCHEDULER_KEY(lower_order_final, KEY_BOOL),    SCHEDULER_KEY(euler_at_final, KEY_BOOL),
    SCHEDULER_KEY(use_karras_sigmas, KEY_BOOL),    SCHEDULER_KEY(use_lu_lambdas, KEY_BOOL),
    SCHEDULER_KEY(final_sigmas_type, KEY_STRING),  SCHEDULER_KEY(lambda_min_clipped, KEY_NUMBER),
    SCHEDULER_KEY(variance_type, KEY_STRING),      SCHEDULER_KEY(skip_prk_steps, KEY_BOOL),
};
#undef SCHEDULER_KEY

/* The __init__ defaults of DDIMScheduler / DPMSolverMultistepScheduler / PNDMScheduler (they differ!). */
static void scheduler_config_defaults(T2VSchedulerKind kind, SchedulerConfig *c) {
    memset(c, 0, sizeof *c);
    c->num_train_timesteps = 1000;
    c->beta_start = 0.0001;
    c->beta_end = 0.02;
    c->beta_schedule = "linear";
    c->prediction_type = "epsilon";
    c->set_alpha_to_one = kind != T2V_SCHEDULER_PNDM;
    c->timestep_spacing = kind == T2V_SCHEDULER_DPM ? "linspace" : "leading";
    c->clip_sample = 1;
    c->clip_sample_range = 1.0;
    c->solver_order = 2;
    c->algorithm_type = "dpmsolver++";
    c->solver_type = "midpoint";
    c->lower_order_final = 1;
    c->final_sigmas_type = "zero";
    c->lambda_min_clipped = -HUGE_VAL;
}

/* from_config / from_pretrained: the model's scheduler.* lines over this kind's defaults. Keys absent from
 * the file (export.py also drops those listed in _use_default_values) take the target class's own default,
 * so DPM built from the DDIM config gets 'linspace'. */
static void scheduler_config_read(const T2VModel *m, T2VSchedulerKind kind, SchedulerConfig *c) {
    size_t k;
    scheduler_config_defaults(kind, c);
    for (k = 0; k < sizeof scheduler_keys / sizeof scheduler_keys[0]; k++) {
        char key[96];
        void *field = (char *)c + scheduler_keys[k].offset;
        const char *v;
        snprintf(key, sizeof key, "scheduler.%s", scheduler_keys[k].name);
        if (!(v = t2v_config(m, key))) continue;
        switch (scheduler_keys[k].type) {
        case KEY_INT: *(int *)field = t2v_config_int(m, key, -1000000, 1000000); break;
        case KEY_BOOL: *(int *)field = config_bool(m, key); break;
        case KEY_STRING: *(const char **)field = strcmp(v, "null") ? v : NULL; break;
        case KEY_NUMBER:   /* a decimal number or export.py's -inf / inf: ranges are checked with the other refusals */
            if (!strcmp(v, "-inf") || !strcmp(v, "inf")) *(double *)field = v[0] == '-' ? -HUGE_VAL : HUGE_VAL;
            else if (!parse_decimal(v, (double *)field)) t2v_die("%s: config %s = '%s' is not a decimal number", m->path, key, v);
        }
    }
}

enum { BETA_LINEAR, BETA_SCALED_LINEAR, BETA_SQUAREDCOS };
enum { PRED_EPSILON, PRED_V, PRED_SAMPLE };
enum { SPACING_LEADING, SPACING_LINSPACE, SPACING_TRAILING };
enum { SOLVER_MIDPOINT, SOLVER_HEUN };
enum { FINAL_SIGMA_ZERO, FINAL_SIGMA_MIN };

static const char *const beta_names[] = { "linear", "scaled_linear", "squaredcos_cap_v2", NULL };
static const char *const pred_names[] = { "epsilon", "v_prediction", "sample", NULL };
static const char *const spacing_names[] = { "leading", "linspace", "trailing", NULL };
/* Diffusers maps the UniPC/DEIS solver_type names onto midpoint and 'deis' onto dpmsolver++. */
static const char *const solver_names[] = { "midpoint", "heun", "logrho", "bh1", "bh2", NULL };
static const char *const algo_names[] = { "dpmsolver++", "deis", NULL };
static const char *const final_sigma_names[] = { "zero", "sigma_min", NULL };

static int choice_index(const char *v, const char *const *names) {
    int i;
    for (i = 0; v && names[i]; i++)
        if (strcmp(v, names[i]) == 0)
            return i;
    return -1;
}

static void refuse_scheduler_value(const char *key, const char *value, const char *supported) {
    t2v_die("scheduler_config: %s = %s is not supported (supported: %s)", key, value, supported);
}

/* value must be one of names; otherwise an error naming the key, the value and what is supported */
static void refuse_unless_one_of(const char *key, const char *value, const char *const *names, const char *supported) {
    if (choice_index(value, names) < 0) refuse_scheduler_value(key, value ? value : "null", supported);
}

static void refuse_if_set(const char *key, int flag) {
    if (flag) refuse_scheduler_value(key, "true", "false");
}

static void refuse_unless_in(const char *key, double value, double lo, double hi, const char *supported) {
    char num[64];
    snprintf(num, sizeof num, "%g", value);
    if (!(value >= lo && value <= hi)) refuse_scheduler_value(key, num, supported);
}

/* Refuses, by key name, every value this port does not implement. */
static void scheduler_config_validate(T2VSchedulerKind kind, const SchedulerConfig *c) {
    refuse_unless_in("num_train_timesteps", c->num_train_timesteps, 2, 100000, "an integer in [2, 100000]");
    refuse_unless_in("beta_start", c->beta_start, 0, 1, "a number in [0, 1]");
    refuse_unless_in("beta_end", c->beta_end, 0, 1, "a number in [0, 1]");
    if (c->trained_betas) refuse_scheduler_value("trained_betas", "a list", "null");
    refuse_unless_one_of("beta_schedule", c->beta_schedule, beta_names, "linear, scaled_linear, squaredcos_cap_v2");
    refuse_unless_one_of("prediction_type", c->prediction_type, pred_names, "epsilon, v_prediction, sample");
    refuse_unless_one_of("timestep_spacing", c->timestep_spacing, spacing_names, "leading, linspace, trailing");
    refuse_if_set("thresholding", c->thresholding);
    refuse_if_set("rescale_betas_zero_snr", c->rescale_betas_zero_snr);
    if (kind == T2V_SCHEDULER_DDIM) {
        refuse_unless_in("clip_sample_range", c->clip_sample_range, 0, FLT_MAX, "a finite number >= 0");
        return;
    }
    if (kind == T2V_SCHEDULER_PNDM) {   /* Diffusers' PNDM knows epsilon and v_prediction only */
        if (!c->skip_prk_steps) refuse_scheduler_value("skip_prk_steps", "false", "true (PLMS, as Stable Diffusion's config)");
        if (choice_index(c->prediction_type, pred_names) == PRED_SAMPLE) refuse_scheduler_value("prediction_type", "sample", "epsilon, v_prediction");
        return;
    }
    refuse_unless_in("solver_order", c->solver_order, 1, 2, "1, 2");
    refuse_unless_one_of("algorithm_type", c->algorithm_type, algo_names, "dpmsolver++ (deis is mapped to it)");
    refuse_unless_one_of("solver_type", c->solver_type, solver_names, "midpoint, heun (logrho, bh1, bh2 are mapped to midpoint)");
    refuse_if_set("use_karras_sigmas", c->use_karras_sigmas);
    refuse_if_set("use_lu_lambdas", c->use_lu_lambdas);
    refuse_unless_one_of("final_sigmas_type", c->final_sigmas_type, final_sigma_names, "zero, sigma_min");
    refuse_unless_in("lambda_min_clipped", c->lambda_min_clipped, -HUGE_VAL, -HUGE_VAL, "-Infinity");
    if (c->variance_type) refuse_scheduler_value("variance_type", c->variance_type, "null");
}

/* ---- DDIMScheduler, DPMSolverMultistepScheduler and PNDMScheduler (skip_prk_steps: PLMS) ---- */

typedef struct {
    T2VSchedulerKind kind;
    int num_train_timesteps;
    int num_inference_steps;      /* as requested (DDIM's step size uses it) */
    int num_timesteps;            /* length of timesteps[] (the denoising loop count) */
    int64_t *timesteps;
    float *alphas_cumprod;        /* [num_train_timesteps], float32 like Diffusers */
    float init_noise_sigma;
    int step_index;
    int prediction_type;
    size_t numel;
    /* DDIM */
    float final_alpha_cumprod;
    int clip_sample;
    float clip_sample_range;
    /* DPMSolverMultistep */
    float *sigmas;                /* [num_timesteps + 1] */
    int solver_order, solver_type, lower_order_final, euler_at_final, final_sigmas_type;
    int lower_order_nums;
    float *model_outputs[2];      /* converted outputs (x0 predictions): [0] older, [1] newest */
    /* PNDM (PLMS): its counter is step_index (both start at 0 and count every step) */
    float *alphas;                /* [num_train_timesteps]: 1 - betas (Text2Video-Zero's forward_loop uses them) */
    float *ets[4];                /* the last (up to) 4 model outputs, oldest first: Diffusers' self.ets */
    size_t ets_numel[4];          /* an entry smaller than numel (one frame, kept from before the pipeline made
                                     more frames) is broadcast over the frames, as torch does */
    int n_ets;
    float *cur_sample;            /* the sample of the first step, which the second step restarts from */
    float *plms_output;           /* scratch: the combined model output */
    size_t capacity;              /* floats each buffer holds: numel may shrink and grow up to it */
} Scheduler;

/* torch.linspace(start, end, steps, dtype=float32) as torch 1.13's AVX2 CPU kernel computes it
 * (checked bit-exact): the first steps/16*16 values in 8-lane groups base + k*step (lanes not
 * fused), with base = start + step*i (first half) or end - step*(steps-1-i) (second half) as one
 * fused multiply-add; the remaining values use that fused formula directly. */
static float torch_linspace_f32(double start_d, double end_d, int steps, int i) {
    float start = (float)start_d, end = (float)end_d;
    float step = (end - start) / (float)(steps - 1);
    int half = steps / 2, vec_end = steps / 16 * 16, base_i = i;
    float base, ks;
    if (i < vec_end)
        base_i = i - i % 8;
    base = base_i < half ? fmaf(step, (float)base_i, start) : fmaf(-step, (float)(steps - base_i - 1), end);
    if (base_i == i)
        return base;
    ks = (float)(i - base_i) * step;
    return base + ks;
}

/* betas_for_alpha_bar(cosine): Python double math, then torch.tensor(..., float32). */
static float squaredcos_beta(int i, int n) {
    double t1 = (double)i / n, t2 = (double)(i + 1) / n;
    double a1 = pow(cos((t1 + 0.008) / 1.008 * 3.141592653589793 / 2), 2.0);
    double a2 = pow(cos((t2 + 0.008) / 1.008 * 3.141592653589793 / 2), 2.0);
    double b = 1 - a2 / a1;
    return (float)(b < 0.999 ? b : 0.999);
}

/* Scheduler __init__: betas -> alphas = 1 - betas -> torch.cumprod (CPU accumulates in double). */
static void compute_alphas_cumprod(const SchedulerConfig *c, float *ac, float *alphas) {
    int i, n = c->num_train_timesteps, sched = choice_index(c->beta_schedule, beta_names);
    double acc = 1.0;
    for (i = 0; i < n; i++) {
        float beta, alpha;
        if (sched == BETA_LINEAR) {
            beta = torch_linspace_f32(c->beta_start, c->beta_end, n, i);
        } else if (sched == BETA_SCALED_LINEAR) {   /* linspace(start**0.5, end**0.5) ** 2 */
            float r = torch_linspace_f32(pow(c->beta_start, 0.5), pow(c->beta_end, 0.5), n, i);
            beta = r * r;
        } else {
            beta = squaredcos_beta(i, n);
        }
        alpha = 1.0f - beta;
        alphas[i] = alpha;
        acc *= alpha;
        ac[i] = (float)acc;
    }
}

/* np.linspace(0, stop, num)[i] in float64: i * (stop / (num - 1)), last value exactly stop. */
static double np_linspace0(double stop, int num, int i) {
    if (num == 1)
        return 0.0;
    if (i == num - 1)
        return stop;
    return (double)i * (stop / (num - 1));
}

/* np.arange(start, 0, -step) for floats: length ceil(-start / -step); numpy fills
 * a[i] = start + i * ((start - step) - start). Returns the length (values rounded half-even - 1). */
static int np_arange_trailing(double start, double step, int64_t *out, int max) {
    double len_d = ceil((0.0 - start) / -step), delta = (start - step) - start;
    int i, len = len_d > max ? max + 1 : (len_d > 0 ? (int)len_d : 0);  /* caller checks len */
    for (i = 0; i < len && i < max; i++)
        out[i] = (int64_t)rint(i == 0 ? start : start + i * delta) - 1;
    return len;
}

/* DDIMScheduler.set_timesteps */
static int ddim_set_timesteps(Scheduler *s, const SchedulerConfig *c, int spacing, int n) {
    int i, T = s->num_train_timesteps;
    if (spacing == SPACING_LINSPACE) {      /* np.round is round-half-even (rint) */
        for (i = 0; i < n; i++)
            s->timesteps[i] = (int64_t)rint(np_linspace0(T - 1, n, n - 1 - i));
    } else if (spacing == SPACING_LEADING) {
        for (i = 0; i < n; i++)
            s->timesteps[i] = (int64_t)(n - 1 - i) * (T / n) + c->steps_offset;
    } else {
        return np_arange_trailing(T, (double)T / n, s->timesteps, n);
    }
    return n;
}

/* DPMSolverMultistepScheduler.set_timesteps (lambda_min_clipped = -inf: last_timestep = T). */
static int dpm_solver_set_timesteps(Scheduler *s, const SchedulerConfig *c, int spacing, int n) {
    int i, T = s->num_train_timesteps;
    if (spacing == SPACING_LINSPACE) {      /* linspace(0, T-1, n+1).round()[::-1][:-1] */
        for (i = 0; i < n; i++)
            s->timesteps[i] = (int64_t)rint(np_linspace0(T - 1, n + 1, n - i));
    } else if (spacing == SPACING_LEADING) {
        for (i = 0; i < n; i++)
            s->timesteps[i] = (int64_t)(n - i) * (T / (n + 1)) + c->steps_offset;
    } else {
        n = np_arange_trailing(T, (double)T / n, s->timesteps, n);
    }
    return n;
}

/* sigmas = ((1 - ac) / ac) ** 0.5 in float32, sampled at the (integer) timesteps by np.interp. */
static float dpm_sigma_at(const float *ac, int64_t t) {
    float one_minus = 1.0f - ac[t];
    float ratio = one_minus / ac[t];
    return sqrtf(ratio);
}

/* PNDMScheduler.set_timesteps with skip_prk_steps: the DDIM-spaced list (descending) with its second value
 * repeated, [t_N-1, t_N-2, t_N-2, t_N-3, ..., t_0]: N + 1 timesteps. PLMS's second step goes back to the first
 * step's sample, and its repeated timestep is how the loop gives it one more model call. */
static int pndm_set_timesteps(Scheduler *s, const SchedulerConfig *c, int spacing, int n) {
    int i;
    if (ddim_set_timesteps(s, c, spacing, n) != n) return -1;
    if (n < 2) return n;
    for (i = n; i >= 2; i--) s->timesteps[i] = s->timesteps[i - 1];
    return n + 1;
}

static void scheduler_free(Scheduler *s) {
    int i;
    for (i = 0; i < 4; i++) free(s->ets[i]);
    free(s->cur_sample);
    free(s->plms_output);
    free(s->alphas);
    free(s->timesteps);
    free(s->alphas_cumprod);
    free(s->sigmas);
    free(s->model_outputs[0]);
    free(s->model_outputs[1]);
    memset(s, 0, sizeof *s);
}

/* The scheduler's __init__ (betas, alphas_cumprod) from a resolved config, then
 * set_timesteps(num_inference_steps). sample_numel sizes DPM's model-output history. */
static void scheduler_init(Scheduler *s, T2VSchedulerKind kind, const SchedulerConfig *c, int num_inference_steps,
                           size_t sample_numel) {
    const int n = num_inference_steps, T = c->num_train_timesteps;
    const int spacing = choice_index(c->timestep_spacing, spacing_names);
    int i;
    memset(s, 0, sizeof *s);
    scheduler_config_validate(kind, c);
    if (n < 1 || n > T) t2v_die("num_inference_steps = %d must be between 1 and num_train_timesteps (%d)", n, T);
    s->kind = kind;
    s->num_train_timesteps = T;
    s->num_inference_steps = n;
    s->numel = sample_numel;
    s->init_noise_sigma = 1.0f;
    s->prediction_type = choice_index(c->prediction_type, pred_names);
    s->capacity = sample_numel;
    s->alphas_cumprod = alloc_floats((size_t)T, "the scheduler");
    s->alphas = alloc_floats((size_t)T, "the scheduler");
    s->timesteps = (int64_t *)xmalloc((size_t)(n + 2) * sizeof(int64_t), "the scheduler");
    compute_alphas_cumprod(c, s->alphas_cumprod, s->alphas);
    if (kind == T2V_SCHEDULER_PNDM) {
        s->final_alpha_cumprod = c->set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
        s->num_timesteps = pndm_set_timesteps(s, c, spacing, n);
        for (i = 0; i < 4; i++) s->ets[i] = alloc_floats(sample_numel, "the scheduler");
        s->cur_sample = alloc_floats(sample_numel, "the scheduler");
        s->plms_output = alloc_floats(sample_numel, "the scheduler");
    } else if (kind == T2V_SCHEDULER_DDIM) {
        s->final_alpha_cumprod = c->set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
        s->clip_sample = c->clip_sample;
        s->clip_sample_range = (float)c->clip_sample_range;
        s->num_timesteps = ddim_set_timesteps(s, c, spacing, n);
    } else {
        s->solver_order = c->solver_order;
        s->solver_type = choice_index(c->solver_type, solver_names) == SOLVER_HEUN ? SOLVER_HEUN : SOLVER_MIDPOINT;
        s->lower_order_final = c->lower_order_final;
        s->euler_at_final = c->euler_at_final;
        s->final_sigmas_type = choice_index(c->final_sigmas_type, final_sigma_names);
        s->num_timesteps = dpm_solver_set_timesteps(s, c, spacing, n);
    }
    if (s->num_timesteps != n + (kind == T2V_SCHEDULER_PNDM && n > 1)) /* numpy's float arange can yield one step more */
        t2v_die("timestep_spacing = %s with num_inference_steps = %d gives %d timesteps in Diffusers (unsupported)",
                c->timestep_spacing, n, s->num_timesteps);
    for (i = 0; i < s->num_timesteps; i++) {
        if (s->timesteps[i] < 0 || s->timesteps[i] >= T)
            t2v_die("timestep %lld out of range [0, %d) (steps_offset = %d, timestep_spacing = %s)",
                    (long long)s->timesteps[i], T, c->steps_offset, c->timestep_spacing);
        /* DPM's index_for_timestep would start at the 2nd occurrence of a repeated first timestep */
        if (kind == T2V_SCHEDULER_DPM && i > 0 && s->timesteps[i] == s->timesteps[0])
            t2v_die("num_inference_steps = %d repeats timestep %lld (unsupported)", n, (long long)s->timesteps[0]);
    }
    if (kind == T2V_SCHEDULER_DPM) {
        s->sigmas = alloc_floats((size_t)n + 1, "the scheduler");
        s->model_outputs[0] = alloc_floats(sample_numel, "the scheduler");
        s->model_outputs[1] = alloc_floats(sample_numel, "the scheduler");
        for (i = 0; i < n; i++)
            s->sigmas[i] = dpm_sigma_at(s->alphas_cumprod, s->timesteps[i]);
        s->sigmas[n] = s->final_sigmas_type == FINAL_SIGMA_MIN ? dpm_sigma_at(s->alphas_cumprod, 0) : 0.0f;
    }
}

/* DDIMScheduler.step with eta = 0 (no noise): float32 scalars, one rounding per tensor op. */
static void ddim_step(Scheduler *s, const float *mo, float *x) {
    int64_t t = s->timesteps[s->step_index];
    int64_t prev_t = t - s->num_train_timesteps / s->num_inference_steps;  /* uses N, not the spacing */
    float a_t = s->alphas_cumprod[t];
    float a_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t] : s->final_alpha_cumprod;
    float b_t = 1.0f - a_t;
    float sa = sqrtf(a_t), sb = sqrtf(b_t), sa_prev = sqrtf(a_prev);
    float one_minus_prev = 1.0f - a_prev;          /* - std_dev_t**2, which is 0 for eta = 0 */
    float dir = sqrtf(one_minus_prev);
    float lo = -s->clip_sample_range, hi = s->clip_sample_range;
    size_t i;
    for (i = 0; i < s->numel; i++) {
        float x0, eps, p, q;
        if (s->prediction_type == PRED_EPSILON) {
            p = sb * mo[i];
            q = x[i] - p;
            x0 = q / sa;
            eps = mo[i];
        } else if (s->prediction_type == PRED_SAMPLE) {
            x0 = mo[i];
            p = sa * x0;
            q = x[i] - p;
            eps = q / sb;
        } else {                                   /* v_prediction */
            p = sa * x[i];
            q = sb * mo[i];
            x0 = p - q;
            p = sa * mo[i];
            q = sb * x[i];
            eps = p + q;
        }
        if (s->clip_sample)
            x0 = x0 < lo ? lo : (x0 > hi ? hi : x0);
        p = sa_prev * x0;
        q = dir * eps;
        x[i] = p + q;
    }
}

/* DPMSolverMultistepScheduler._sigma_to_alpha_sigma_t and lambda = log(alpha) - log(sigma). */
static void dpm_alpha_sigma(float sigma, float *alpha_t, float *sigma_t, float *lambda) {
    float sq = sigma * sigma;
    float sq1 = sq + 1.0f;
    float root = sqrtf(sq1);
    *alpha_t = 1.0f / root;
    *sigma_t = sigma * *alpha_t;
    if (lambda)                                     /* sigma = 0: log 0 = -inf, lambda = +inf */
        *lambda = logf(*alpha_t) - logf(*sigma_t);
}

/* convert_model_output for dpmsolver++: the data prediction x0, written to out. */
static void dpm_convert_model_output(const Scheduler *s, const float *mo, const float *x, float *out) {
    float alpha_t, sigma_t;
    size_t i;
    dpm_alpha_sigma(s->sigmas[s->step_index], &alpha_t, &sigma_t, NULL);
    for (i = 0; i < s->numel; i++) {
        float p, q;
        if (s->prediction_type == PRED_EPSILON) {
            p = sigma_t * mo[i];
            q = x[i] - p;
            out[i] = q / alpha_t;
        } else if (s->prediction_type == PRED_SAMPLE) {
            out[i] = mo[i];
        } else {
            p = alpha_t * x[i];
            q = sigma_t * mo[i];
            out[i] = p - q;
        }
    }
}

/* dpm_solver_first_order_update (dpmsolver++): x = (s_t/s_s) x - alpha_t (e^-h - 1) x0. */
static void dpm_solver_first_order_update(const Scheduler *s, const float *m0, float *x) {
    float a_t, s_t, l_t, a_s, s_s, l_s, h, e, a, b;
    size_t i;
    dpm_alpha_sigma(s->sigmas[s->step_index + 1], &a_t, &s_t, &l_t);
    dpm_alpha_sigma(s->sigmas[s->step_index], &a_s, &s_s, &l_s);
    h = l_t - l_s;
    e = expf(-h) - 1.0f;
    a = s_t / s_s;
    b = a_t * e;
    for (i = 0; i < s->numel; i++) {
        float p = a * x[i], q = b * m0[i];
        x[i] = p - q;
    }
}

/* multistep_dpm_solver_second_order_update (dpmsolver++, midpoint or heun). */
static void dpm_solver_second_order_update(const Scheduler *s, const float *m0, const float *m1, float *x) {
    float a_t, s_t, l_t, a_s0, s_s0, l_s0, a_s1, s_s1, l_s1, h, h0, r0, inv_r0, e, a, b, c;
    size_t i;
    dpm_alpha_sigma(s->sigmas[s->step_index + 1], &a_t, &s_t, &l_t);
    dpm_alpha_sigma(s->sigmas[s->step_index], &a_s0, &s_s0, &l_s0);
    dpm_alpha_sigma(s->sigmas[s->step_index - 1], &a_s1, &s_s1, &l_s1);
    h = l_t - l_s0;
    h0 = l_s0 - l_s1;
    r0 = h0 / h;
    inv_r0 = 1.0f / r0;
    e = expf(-h) - 1.0f;
    a = s_t / s_s0;
    b = a_t * e;
    if (s->solver_type == SOLVER_MIDPOINT) {
        c = 0.5f * b;                               /* x = a x - b D0 - (0.5 b) D1 */
    } else {
        float eh = e / h;                           /* x = a x - b D0 + a_t ((e^-h - 1)/h + 1) D1 */
        float eh1 = eh + 1.0f;
        c = a_t * eh1;
    }
    for (i = 0; i < s->numel; i++) {
        float p = a * x[i], q = b * m0[i];
        float u = p - q;
        float diff = m0[i] - m1[i];
        float d1 = inv_r0 * diff;                   /* D1 = (1 / r0) * (m0 - m1) */
        float w = c * d1;
        x[i] = s->solver_type == SOLVER_MIDPOINT ? u - w : u + w;
    }
}

/* PNDMScheduler._get_prev_sample (formula (9) of the PNDM paper): x_prev = sqrt(a_prev / a_t) x -
 * (a_prev - a_t) e / (a_t sqrt(1 - a_prev) + sqrt(a_t (1 - a_t) a_prev)); float32 scalars as torch's 0-dim
 * tensors, one rounding per tensor op. sample may equal x (the output). */
static void pndm_prev_sample(const Scheduler *s, const float *sample, int64_t t, int64_t prev_t, const float *e, float *x) {
    const float a_t = s->alphas_cumprod[t], a_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t] : s->final_alpha_cumprod;
    const float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
    const float sample_coeff = sqrtf(a_prev / a_t);
    const float denom = a_t * sqrtf(b_prev) + sqrtf(a_t * b_t * a_prev);
    const float diff = a_prev - a_t, sa = sqrtf(a_t), sb = sqrtf(b_t);
    size_t i;
    for (i = 0; i < s->numel; i++) {
        float mo = e[i], p, q;
        if (s->prediction_type == PRED_V) {
            p = sa * mo;
            q = sb * sample[i];
            mo = p + q;
        }
        p = sample_coeff * sample[i];
        q = diff * mo;
        q = q / denom;
        x[i] = p - q;
    }
}

/* ets[k] at flat index i of a numel-sized sample, broadcast when the entry holds fewer frames. */
#define ETS(s, k, i) ((s)->ets[k][(i) % (s)->ets_numel[k]])

/* PNDMScheduler.step_plms: a linear multistep over the last four model outputs (fewer at the start). The
 * first step is an Euler step that also keeps its sample; the second (the repeated timestep) restarts from
 * that sample with the mean of the two outputs, between the same two timesteps. */
static void pndm_step(Scheduler *s, const float *mo, float *x) {
    const int64_t ratio = s->num_train_timesteps / s->num_inference_steps;
    int64_t t = s->timesteps[s->step_index], prev_t = t - ratio;
    const int counter = s->step_index;
    const float *e = s->plms_output, *sample = x;
    float *out = s->plms_output;
    size_t i;
    if (counter != 1) {          /* self.ets = self.ets[-3:] + [model_output] */
        if (s->n_ets == 4) {
            float *oldest = s->ets[0];
            memmove(s->ets, s->ets + 1, 3 * sizeof s->ets[0]);
            memmove(s->ets_numel, s->ets_numel + 1, 3 * sizeof s->ets_numel[0]);
            s->ets[3] = oldest;
            s->n_ets = 3;
        }
        memcpy(s->ets[s->n_ets], mo, s->numel * sizeof(float));
        s->ets_numel[s->n_ets++] = s->numel;
    } else {
        prev_t = t;
        t = t + ratio;
    }
    if (s->n_ets == 1 && counter == 0) {
        e = mo;
        memcpy(s->cur_sample, x, s->numel * sizeof(float));
    } else if (s->n_ets == 1 && counter == 1) {
        for (i = 0; i < s->numel; i++) out[i] = (mo[i] + ETS(s, 0, i)) / 2.0f;
        sample = s->cur_sample;
    } else if (s->n_ets == 2) {
        for (i = 0; i < s->numel; i++) {
            float a = 3.0f * ETS(s, 1, i);
            out[i] = (a - ETS(s, 0, i)) / 2.0f;
        }
    } else if (s->n_ets == 3) {
        for (i = 0; i < s->numel; i++) {
            float a = 23.0f * ETS(s, 2, i), b = 16.0f * ETS(s, 1, i), c = 5.0f * ETS(s, 0, i);
            float d = a - b;
            d = d + c;
            out[i] = d / 12.0f;
        }
    } else {
        for (i = 0; i < s->numel; i++) {
            float a = 55.0f * ETS(s, 3, i), b = 59.0f * ETS(s, 2, i), c = 37.0f * ETS(s, 1, i), d = 9.0f * ETS(s, 0, i);
            float sum = a - b;
            sum = sum + c;
            sum = sum - d;
            out[i] = (float)(1.0 / 24.0) * sum;
        }
    }
    pndm_prev_sample(s, sample, t, prev_t, e, x);
}
#undef ETS

/* copy.deepcopy(scheduler): Text2Video-Zero keeps the state after its first loop for its last one. */
static void scheduler_copy(Scheduler *dst, const Scheduler *src) {
    const size_t T = (size_t)src->num_train_timesteps, cap = src->capacity;
    int i;
    *dst = *src;
    dst->timesteps = (int64_t *)xmalloc((size_t)(src->num_timesteps + 1) * sizeof(int64_t), "the scheduler");
    memcpy(dst->timesteps, src->timesteps, (size_t)src->num_timesteps * sizeof(int64_t));
    dst->alphas_cumprod = alloc_floats(T, "the scheduler");
    memcpy(dst->alphas_cumprod, src->alphas_cumprod, T * sizeof(float));
    dst->alphas = alloc_floats(T, "the scheduler");
    memcpy(dst->alphas, src->alphas, T * sizeof(float));
    dst->sigmas = NULL;
    dst->model_outputs[0] = dst->model_outputs[1] = NULL;
    if (src->kind == T2V_SCHEDULER_DPM) t2v_die("internal: DPM scheduler copy is not implemented");
    if (src->kind != T2V_SCHEDULER_PNDM) return;
    for (i = 0; i < 4; i++) {
        dst->ets[i] = alloc_floats(cap, "the scheduler");
        memcpy(dst->ets[i], src->ets[i], cap * sizeof(float));
    }
    dst->cur_sample = alloc_floats(cap, "the scheduler");
    memcpy(dst->cur_sample, src->cur_sample, cap * sizeof(float));
    dst->plms_output = alloc_floats(cap, "the scheduler");
}

/* scheduler.step(model_output, timesteps[step_index], sample): updates sample in place. */
static void scheduler_step(Scheduler *s, const float *model_output, float *sample) {
    if (s->step_index >= s->num_timesteps) t2v_die("internal: scheduler step %d of %d", s->step_index + 1, s->num_timesteps);
    if (s->kind == T2V_SCHEDULER_DDIM) {
        ddim_step(s, model_output, sample);
    } else if (s->kind == T2V_SCHEDULER_PNDM) {
        pndm_step(s, model_output, sample);
    } else {
        int last = s->step_index == s->num_timesteps - 1;
        int short_run = s->lower_order_final && s->num_timesteps < 15;
        int lower_final = last && (s->euler_at_final || short_run || s->final_sigmas_type == FINAL_SIGMA_ZERO);
        float *tmp = s->model_outputs[0];           /* shift the history: newest goes to [1] */
        s->model_outputs[0] = s->model_outputs[1];
        s->model_outputs[1] = tmp;
        dpm_convert_model_output(s, model_output, sample, s->model_outputs[1]);
        /* Diffusers' lower_order_second only changes anything for solver_order 3 (refused) */
        if (s->solver_order == 1 || s->lower_order_nums < 1 || lower_final)
            dpm_solver_first_order_update(s, s->model_outputs[1], sample);
        else
            dpm_solver_second_order_update(s, s->model_outputs[1], s->model_outputs[0], sample);
        if (s->lower_order_nums < s->solver_order)
            s->lower_order_nums++;
    }
    s->step_index++;
}

/* The img2img pipelines' get_timesteps: of the N timesteps, the last min(int(N * strength), N) are run, so the
 * scheduler begins at index N - that (set_begin_index). Returns how many steps remain. */
static int scheduler_begin_at_strength(Scheduler *s, double strength) {
    const int n = s->num_timesteps, init = (int)(n * strength) < n ? (int)(n * strength) : n;
    if (init < 1) t2v_die("strength %g leaves no denoising step of %d (it needs strength >= %g)", strength, n, 1.0 / n);
    s->step_index = n - init;
    return init;
}

/* scheduler.add_noise(original, noise, timesteps[step_index]), in place on x, before the first step. DDIM:
 * sqrt(alphas_cumprod[t]) x + sqrt(1 - alphas_cumprod[t]) noise; DPM: alpha_t x + sigma_t noise at
 * sigmas[begin_index]. One rounding per tensor operation, as torch. */
static void scheduler_add_noise(const Scheduler *s, float *x, const float *noise) {
    float a, b;
    size_t i;
    if (s->kind == T2V_SCHEDULER_DDIM) {
        const float alpha_prod = s->alphas_cumprod[s->timesteps[s->step_index]], one_minus = 1.0f - alpha_prod;
        a = sqrtf(alpha_prod);
        b = sqrtf(one_minus);
    } else {
        dpm_alpha_sigma(s->sigmas[s->step_index], &a, &b, NULL);
    }
    for (i = 0; i < s->numel; i++) {
        const float p = a * x[i], q = b * noise[i];
        x[i] = p + q;
    }
}

/* ============================================================================================
 * 8. AutoencoderKL (Diffusers autoencoder_kl.py, vae.py, unet_2d_blocks.py): the decoder turns latents
 *    into frames, the encoder gives the latent distribution of images. Both run one frame at a time, so
 *    memory stays bounded whatever the frame count.
 * ============================================================================================ */

typedef struct {                 /* UNetMidBlock2D: resnet, Attention (one head, GroupNorm first), resnet */
    ResnetBlock2D resnets[2];
    int has_attention;           /* mid_block_add_attention */
    GroupNorm group_norm;        /* attentions.0.group_norm */
    Attention attn;              /* attentions.0 */
} UNetMidBlock2D;

typedef struct {                 /* DownEncoderBlock2D / UpDecoderBlock2D */
    int n_layers, out_channels, has_sampler;
    ResnetBlock2D *resnets;
    Conv sampler;                /* downsamplers.0.conv (padding 0) or upsamplers.0.conv */
} VAEBlock;

typedef struct {                 /* Encoder: conv_in, down_blocks, mid_block, conv_norm_out, SiLU, conv_out */
    Conv conv_in, conv_out;
    VAEBlock down_blocks[MAX_BLOCKS];
    UNetMidBlock2D mid_block;
    GroupNorm conv_norm_out;
} Encoder;

typedef struct {                 /* Decoder: conv_in, mid_block, up_blocks, conv_norm_out, SiLU, conv_out */
    Conv conv_in, conv_out;
    UNetMidBlock2D mid_block;
    VAEBlock up_blocks[MAX_BLOCKS];
    GroupNorm conv_norm_out;
} Decoder;

typedef struct VAE {
    int in_channels, out_channels, latent_channels, n_blocks, layers, groups;
    int use_quant_conv, use_post_quant_conv;
    int channels[MAX_BLOCKS];    /* block_out_channels */
    float scaling_factor;
    Encoder encoder;
    Conv quant_conv, post_quant_conv;
    Decoder decoder;
    Arena arena;
} VAE;

static void load_unet_mid_block_2d(VAE *v, Weights *W, UNetMidBlock2D *mid, int add_attention, const char *prefix) {
    const int C = v->channels[v->n_blocks - 1];
    char name[200];
    snprintf(name, sizeof name, "%s.resnets.0", prefix);
    mid->resnets[0] = load_resnet(W, C, C, 0, v->groups, 1e-6f, 1.0f, name);
    mid->has_attention = add_attention;
    if (add_attention) {
        load_group_norm(&mid->group_norm, W, C, v->groups, 1e-6f, "%s.attentions.0.group_norm", prefix);
        load_attention(&mid->attn, W, C, C, 1, 1, "%s.attentions.0", prefix);
    }
    snprintf(name, sizeof name, "%s.resnets.1", prefix);
    mid->resnets[1] = load_resnet(W, C, C, 0, v->groups, 1e-6f, 1.0f, name);
}

/* DownEncoderBlock2D (kind "down_blocks", layers_per_block resnets) or UpDecoderBlock2D ("up_blocks", one
 * resnet more); every block but the last has a sampler. */
static void load_vae_block(VAE *v, Weights *W, VAEBlock *blk, const char *part, const char *kind, int index,
                           int n_layers, int in, int out) {
    char name[200];
    int j;
    blk->n_layers = n_layers;
    blk->out_channels = out;
    blk->resnets = (ResnetBlock2D *)xcalloc((size_t)n_layers, sizeof(ResnetBlock2D), "vae");
    for (j = 0; j < n_layers; j++) {
        snprintf(name, sizeof name, "%s.%s.%d.resnets.%d", part, kind, index, j);
        blk->resnets[j] = load_resnet(W, j == 0 ? in : out, out, 0, v->groups, 1e-6f, 1.0f, name);
    }
    blk->has_sampler = index < v->n_blocks - 1;
    if (blk->has_sampler)
        load_conv(&blk->sampler, W, out, out, 3, 0, "%s.%s.%d.%s.0.conv", part, kind, index,
                  strcmp(kind, "down_blocks") ? "upsamplers" : "downsamplers");
}

static void load_vae(T2VModel *m) {
    VAE *v = (VAE *)xcalloc(1, sizeof(VAE), "vae");
    Encoder *e = &v->encoder;
    Decoder *d = &v->decoder;
    Weights W;
    char down_types[MAX_BLOCKS][64], up_types[MAX_BLOCKS][64];
    int i, n, add_attention;
    const int *ch = v->channels;
    W.m = m;
    W.component = "vae";
    W.pack_panels = 0;
    n = v->n_blocks = config_ints(m, "vae.block_out_channels", v->channels, MAX_BLOCKS, 1, MAX_CHANNELS);
    if (config_list(m, "vae.down_block_types", down_types, MAX_BLOCKS) != n ||
        config_list(m, "vae.up_block_types", up_types, MAX_BLOCKS) != n)
        t2v_die("%s: vae block_out_channels, down_block_types and up_block_types differ in length", m->path);
    for (i = 0; i < n; i++)
        if (strcmp(down_types[i], "DownEncoderBlock2D") || strcmp(up_types[i], "UpDecoderBlock2D"))
            t2v_die("%s: vae block types %s / %s are not implemented (DownEncoderBlock2D / UpDecoderBlock2D)", m->path,
                    down_types[i], up_types[i]);
    v->in_channels = t2v_config_int(m, "vae.in_channels", 1, MAX_CHANNELS);
    v->out_channels = t2v_config_int(m, "vae.out_channels", 1, MAX_CHANNELS);
    v->latent_channels = t2v_config_int(m, "vae.latent_channels", 1, MAX_CHANNELS);
    v->layers = t2v_config_int(m, "vae.layers_per_block", 1, MAX_LAYERS);
    v->groups = t2v_config_int(m, "vae.norm_num_groups", 1, MAX_CHANNELS);
    v->scaling_factor = (float)config_number(m, "vae.scaling_factor", 1e-6, 1e6);
    add_attention = config_bool(m, "vae.mid_block_add_attention");
    v->use_quant_conv = config_bool(m, "vae.use_quant_conv");
    v->use_post_quant_conv = config_bool(m, "vae.use_post_quant_conv");
    if (strcmp(config_required(m, "vae.shift_factor"), "null") || strcmp(config_required(m, "vae.latents_mean"), "null"))
        t2v_die("%s: vae shift_factor / latents_mean are not implemented (must be null)", m->path);
    load_conv(&e->conv_in, &W, v->in_channels, ch[0], 3, 0, "encoder.conv_in");
    for (i = 0; i < n; i++)
        load_vae_block(v, &W, &e->down_blocks[i], "encoder", "down_blocks", i, v->layers, ch[i ? i - 1 : 0], ch[i]);
    load_unet_mid_block_2d(v, &W, &e->mid_block, add_attention, "encoder.mid_block");
    load_group_norm(&e->conv_norm_out, &W, ch[n - 1], v->groups, 1e-6f, "encoder.conv_norm_out");
    load_conv(&e->conv_out, &W, ch[n - 1], 2 * v->latent_channels, 3, 0, "encoder.conv_out");
    if (v->use_quant_conv) load_conv(&v->quant_conv, &W, 2 * v->latent_channels, 2 * v->latent_channels, 1, 0, "quant_conv");
    if (v->use_post_quant_conv) load_conv(&v->post_quant_conv, &W, v->latent_channels, v->latent_channels, 1, 0, "post_quant_conv");
    load_conv(&d->conv_in, &W, v->latent_channels, ch[n - 1], 3, 0, "decoder.conv_in");
    load_unet_mid_block_2d(v, &W, &d->mid_block, add_attention, "decoder.mid_block");
    for (i = 0; i < n; i++)
        load_vae_block(v, &W, &d->up_blocks[i], "decoder", "up_blocks", i, v->layers + 1, i ? ch[n - i] : ch[n - 1], ch[n - 1 - i]);
    load_group_norm(&d->conv_norm_out, &W, ch[0], v->groups, 1e-6f, "decoder.conv_norm_out");
    load_conv(&d->conv_out, &W, ch[0], v->out_channels, 3, 0, "decoder.conv_out");
    m->vae = v;
}

static void free_vae(VAE *v) {
    int i;
    if (!v) return;
    for (i = 0; i < v->n_blocks; i++) {
        free(v->encoder.down_blocks[i].resnets);
        free(v->decoder.up_blocks[i].resnets);
    }
    arena_free(&v->arena);
    free(v);
}

/* UNetMidBlock2D: resnets[0], then h + to_out(attention(GroupNorm(h))) with one head over the frame's pixels,
 * then resnets[1]. h keeps its shape, [1][H*W][C]. */
static void unet_mid_block_2d(Arena *a, const UNetMidBlock2D *mid, Hidden *h) {
    const size_t P = (size_t)h->H * h->W;
    resnet(a, &mid->resnets[0], h, NULL, 1);
    if (mid->has_attention) {
        group_norm(a, &mid->group_norm, h->data, h->spare, 1, P, 0);
        attention_block(a, &mid->attn, h->spare, h->data, 1, (int)P, NULL, 0, 0);
    }
    resnet(a, &mid->resnets[1], h, NULL, 1);
}

/* DownEncoderBlock2D: resnets, then Downsample2D(padding=0). h: [1][H*W][C_in] -> [1][H/2*W/2][out_channels] */
static void down_encoder_block_2d(Arena *a, const VAEBlock *blk, Hidden *h) {
    int j;
    for (j = 0; j < blk->n_layers; j++) resnet(a, &blk->resnets[j], h, NULL, 1);
    if (blk->has_sampler) downsample_2d(a, &blk->sampler, 0, h);
}

/* UpDecoderBlock2D: resnets, then Upsample2D (x2). h: [1][H*W][C_in] -> [1][2H*2W][out_channels] */
static void up_decoder_block_2d(Arena *a, const VAEBlock *blk, Hidden *h) {
    int j;
    for (j = 0; j < blk->n_layers; j++) resnet(a, &blk->resnets[j], h, NULL, 1);
    if (blk->has_sampler) upsample_2d(a, &blk->sampler, h, 2 * h->H, 2 * h->W);
}

/* The largest activation of a frame's encode (from H x W) or decode (to H x W). Level i of either runs at
 * H W / 4^i pixels and holds its own block_out_channels or a neighbour level's (a block's input, a sampler's
 * output); the image, and the latents at the last level, also pass through. */
static size_t vae_max_activation(const VAE *v, int H, int W) {
    const size_t P = (size_t)H * W;
    size_t best = P * (v->in_channels > v->out_channels ? v->in_channels : v->out_channels);
    int i;
    for (i = 0; i < v->n_blocks; i++) {
        int widest = v->channels[i];
        if (i > 0 && v->channels[i - 1] > widest) widest = v->channels[i - 1];
        if (i + 1 < v->n_blocks && v->channels[i + 1] > widest) widest = v->channels[i + 1];
        if (i == v->n_blocks - 1 && 2 * v->latent_channels > widest) widest = 2 * v->latent_channels;
        if ((P >> (2 * i)) * widest > best) best = (P >> (2 * i)) * widest;
    }
    return best;
}

/* post_quant_conv, then Decoder.forward on one frame: z: [h][w][latent] -> image: [H][W][out_channels], with
 * H = h * 2^(blocks-1). */
static void vae_decode_frame(VAE *v, const float *z, float *image, int h, int w) {
    const Decoder *d = &v->decoder;
    Arena *a = &v->arena;
    const ArenaMark mark = arena_mark(a);
    const int scale = 1 << (v->n_blocks - 1);
    Hidden x = hidden_new(a, vae_max_activation(v, h * scale, w * scale), 1, v->latent_channels, h, w);
    int i;
    memcpy(x.data, z, hidden_numel(&x) * sizeof(float));      /* x: [1][h*w][latent] */
    if (v->use_post_quant_conv) {
        conv2d(a, &v->post_quant_conv, x.data, x.spare, 1, h, w, 1, 0, 0, h, w);
        hidden_swap(&x);
    }
    conv_3x3(a, &d->conv_in, &x);                             /* x: [1][h*w][channels[-1]] */
    unet_mid_block_2d(a, &d->mid_block, &x);
    for (i = 0; i < v->n_blocks; i++) up_decoder_block_2d(a, &d->up_blocks[i], &x);   /* x: [1][H*W][channels[0]] */
    group_norm(a, &d->conv_norm_out, x.data, x.spare, 1, (size_t)x.H * x.W, 1);
    conv2d(a, &d->conv_out, x.spare, image, 1, x.H, x.W, 1, 1, 1, x.H, x.W);
    arena_reset(a, mark);
}

/* AutoencoderKL.decode: latents (N, latent, h, w), already divided by scaling_factor -> (N, out, H, W) */
void t2v_vae_decode(T2VModel *m, const float *latents, int N, int h, int w, float *out) {
    VAE *v = m->vae;
    const int scale = 1 << (v->n_blocks - 1), H = h * scale, W = w * scale;
    const int L = v->latent_channels, O = v->out_channels;
    float *z = alloc_floats((size_t)h * w * L, "vae input"), *image = alloc_floats((size_t)H * W * O, "vae output");
    int n;
    for (n = 0; n < N; n++) {
        channels_first_to_last(latents + (size_t)n * L * h * w, z, 1, (size_t)h * w, L);
        vae_decode_frame(v, z, image, h, w);
        channels_last_to_first(image, out + (size_t)n * O * H * W, 1, (size_t)H * W, O);
    }
    free(z);
    free(image);
}

/* Encoder.forward, then quant_conv, on one frame: image [H][W][in] -> moments [H/s][W/s][2 * latent]
 * (mean, logvar). */
static void vae_encode_frame(VAE *v, const float *image, float *moments, int H, int W) {
    const Encoder *e = &v->encoder;
    Arena *a = &v->arena;
    const ArenaMark mark = arena_mark(a);
    Hidden x = hidden_new(a, vae_max_activation(v, H, W), 1, v->in_channels, H, W);
    int i;
    memcpy(x.data, image, hidden_numel(&x) * sizeof(float)); /* x: [1][H*W][in_channels] */
    conv_3x3(a, &e->conv_in, &x);                             /* x: [1][H*W][channels[0]] */
    for (i = 0; i < v->n_blocks; i++) down_encoder_block_2d(a, &e->down_blocks[i], &x);
    unet_mid_block_2d(a, &e->mid_block, &x);                  /* x: [1][h*w][channels[-1]] */
    group_norm(a, &e->conv_norm_out, x.data, x.spare, 1, (size_t)x.H * x.W, 1);
    hidden_swap(&x);
    if (v->use_quant_conv) {
        conv_3x3(a, &e->conv_out, &x);                        /* x: [1][h*w][2 * latent] */
        conv2d(a, &v->quant_conv, x.data, moments, 1, x.H, x.W, 1, 0, 0, x.H, x.W);
    } else {
        conv2d(a, &e->conv_out, x.data, moments, 1, x.H, x.W, 1, 1, 1, x.H, x.W);
    }
    arena_reset(a, mark);
}

/* AutoencoderKL.encode(images).latent_dist: images (N, in, H, W) in [-1, 1] -> mean and logvar (N, latent,
 * H/s, W/s); logvar may be NULL. */
void t2v_vae_encode(T2VModel *m, const float *images, int N, int H, int W, float *mean, float *logvar) {
    VAE *v = m->vae;
    const int scale = 1 << (v->n_blocks - 1), h = H / scale, w = W / scale, L = v->latent_channels;
    float *img = alloc_floats((size_t)H * W * v->in_channels, "vae input");
    float *moments = alloc_floats((size_t)h * w * 2 * L, "vae output");
    int n;
    size_t p;
    if (H % scale || W % scale) t2v_die("vae-encode: image size %dx%d is not a multiple of %d", H, W, scale);
    for (n = 0; n < N; n++) {
        channels_first_to_last(images + (size_t)n * v->in_channels * H * W, img, 1, (size_t)H * W, v->in_channels);
        vae_encode_frame(v, img, moments, H, W);
        for (p = 0; p < (size_t)h * w; p++) {
            int c;
            for (c = 0; c < L; c++) {
                float lv = moments[p * 2 * L + L + c];
                mean[((size_t)n * L + c) * h * w + p] = moments[p * 2 * L + c];
                /* DiagonalGaussianDistribution clamps logvar to [-30, 20] */
                if (logvar) logvar[((size_t)n * L + c) * h * w + p] = lv < -30.0f ? -30.0f : lv > 20.0f ? 20.0f : lv;
            }
        }
    }
    free(img);
    free(moments);
}

/* ============================================================================================
 * 9. The pipeline: TextToVideoSDPipeline.__call__
 * ============================================================================================ */

static void format_duration(double s, char *buf, size_t n) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

/* tqdm-like progress on stderr: "step 3/50  12.1 s/step  elapsed 0:36  ETA 9:41". On a terminal the line
 * is rewritten in place; in a log every update is a line of its own. */
static void report_progress(const char *what, const char *unit, int done, int total, double start) {
    char elapsed[32], eta[32];
    const double now = now_seconds(), per = done ? (now - start) / done : 0.0;
#if T2V_POSIX
    const int tty = isatty(fileno(stderr));
#else
    const int tty = 0;
#endif
    format_duration(now - start, elapsed, sizeof elapsed);
    format_duration(per * (total - done), eta, sizeof eta);
    fprintf(stderr, "%s%s %d/%d  %.2f s/%s  elapsed %s  ETA %s%s", tty ? "\r" : "", what, done, total, per, unit,
            elapsed, eta, tty && done < total ? "   " : "\n");
    fflush(stderr);
}

int t2v_vae_scale_factor(const T2VModel *m) { return 1 << (m->vae->n_blocks - 1); }

/* A stage's output at step i (0-based) of n must be finite: a NaN stops the run now, not after an hour. */
static void check_step(const float *x, size_t count, const char *stage, int i, int n) {
    char what[160];
    snprintf(what, sizeof what, "%s at step %d of %d", stage, i + 1, n);
    check_finite(x, count, what);
}

/* --dump of a tensor that every denoising step makes: kept per step, written as one (steps, ...) .npy at the
 * end. Without --dump (dir NULL) it holds and writes nothing. */
typedef struct { const char *dir; float *data; size_t per_step; int steps; } StepDump;

static StepDump step_dump_new(const char *dir, int steps, size_t per_step) {
    StepDump d;
    d.dir = dir;
    d.per_step = per_step;
    d.steps = steps;
    d.data = dir ? alloc_floats(mul_size((size_t)steps, per_step), "dump") : NULL;
    return d;
}

static void step_dump_record(StepDump *d, int step, const float *x) {
    if (d->data) memcpy(d->data + (size_t)step * d->per_step, x, d->per_step * sizeof(float));
}

/* dims: (steps, ...) */
static void step_dump_save(StepDump *d, const char *name, int ndim, const int64_t *dims) {
    dump_tensor(d->dir, name, d->data, ndim, dims);
    free(d->data);
    d->data = NULL;
}

/* TextToVideoSDPipeline.encode_prompt: the prompt's text states and, with guidance, the negative prompt's
 * ("" by default) before them. Returns context: [B][77][D], batch order [negative, prompt]. */
static float *encode_prompt(T2VModel *m, const T2VGenerateOptions *o, int B) {
    const int T = t2v_context_length(m), D = t2v_text_hidden_size(m);
    float *context = alloc_floats((size_t)B * T * D, "text states"), *prompt_embeds = context + (size_t)(B - 1) * T * D;
    int32_t *ids = (int32_t *)xmalloc(sizeof(int32_t) * (size_t)T, "token ids");
    t2v_tokenize(m->tokenizer, o->prompt, o->tokenizer, ids, T);
    t2v_encode_text(m, ids, prompt_embeds);
    check_finite(prompt_embeds, (size_t)T * D, "the text states of the prompt");
    dump_tensor(o->dump_dir, "prompt_embeds.npy", prompt_embeds, 3, (int64_t[]){1, T, D});
    if (B == 2) {
        t2v_tokenize(m->tokenizer, o->negative_prompt ? o->negative_prompt : "", o->tokenizer, ids, T);
        t2v_encode_text(m, ids, context);
        check_finite(context, (size_t)T * D, "the text states of the negative prompt");
        dump_tensor(o->dump_dir, "negative_prompt_embeds.npy", context, 3, (int64_t[]){1, T, D});
    }
    free(ids);
    return context;
}

/* prepare_latents: torch.randn((1, C, F, h, w)) from torch.Generator("cpu").manual_seed(seed), or the given
 * latents, times the scheduler's init_noise_sigma. */
static float *prepare_latents(const T2VGenerateOptions *o, const Scheduler *s, int C, int F, int h, int w) {
    const size_t n = (size_t)C * F * h * w;
    float *latents = alloc_floats(n, "latents");
    size_t i;
    if (o->latents) {
        memcpy(latents, o->latents, n * sizeof(float));
    } else {
        TorchGenerator g;
        torch_generator_seed(&g, o->seed);
        torch_randn(&g, latents, n);
    }
    for (i = 0; i < n; i++) latents[i] *= s->init_noise_sigma;
    dump_tensor(o->dump_dir, "latents_init.npy", latents, 5, (int64_t[]){1, C, F, h, w});
    return latents;
}

/* VideoToVideoSDPipeline.prepare_latents: the input frames go to [-1, 1] and through the VAE encoder one at
 * a time (Diffusers encodes them as one batch; the numbers are the same); each latent_dist is sampled, mean +
 * exp(logvar / 2) eps, with the generator's first draw, eps ~ randn(F, C, h, w); times scaling_factor; then
 * scheduler.add_noise at the first of the strength-truncated timesteps with the generator's second draw.
 * Returns the latents (1, C, F, h, w) the denoising loop starts from. */
static float *prepare_video_latents(T2VModel *m, const T2VGenerateOptions *o, const Scheduler *s, int C, int F, int h, int w) {
    const int H = o->height, W = o->width;
    const size_t n = (size_t)C * F * h * w, per_frame = (size_t)C * h * w, frame_px = (size_t)H * W;
    float *video_latents = alloc_floats(n, "latents"), *eps = alloc_floats(n, "noise"), *noise = alloc_floats(n, "noise");
    float *image = alloc_floats(frame_px * 3, "frame"), *mean = alloc_floats(per_frame, "latents");
    float *logvar = alloc_floats(per_frame, "latents"), *latents = alloc_floats(n, "latents");
    const float scaling = m->vae->scaling_factor;
    const double start = now_seconds();
    TorchGenerator g;
    size_t i, p;
    int f, c;
    dump_tensor(o->dump_dir, "init_frames.npy", o->init_frames, 4, (int64_t[]){F, H, W, 3});
    torch_generator_seed(&g, o->seed);
    torch_randn(&g, eps, n);                         /* latent_dist.sample's noise, (F, C, h, w) */
    for (f = 0; f < F; f++) {
        const float *frame = o->init_frames + (size_t)f * frame_px * 3;
        for (p = 0; p < frame_px; p++)             /* preprocess_video: (H, W, 3) in [0, 1] -> (3, H, W) in [-1, 1] */
            for (c = 0; c < 3; c++) image[(size_t)c * frame_px + p] = 2.0f * frame[p * 3 + c] - 1.0f;
        t2v_vae_encode(m, image, 1, H, W, mean, logvar);
        if (!o->quiet) report_progress("vae encode", "frame", f + 1, F, start);
        for (i = 0; i < per_frame; i++) {
            const float std = expf(0.5f * logvar[i]), spread = std * eps[(size_t)f * per_frame + i];
            const float sample = mean[i] + spread;
            video_latents[(size_t)f * per_frame + i] = scaling * sample;
        }
    }
    torch_randn(&g, noise, n);                       /* add_noise's noise, (F, C, h, w) */
    check_finite(video_latents, n, "the encoded video");
    memcpy(latents, video_latents, n * sizeof(float));
    scheduler_add_noise(s, latents, noise);
    dump_tensor(o->dump_dir, "video_latents.npy", video_latents, 4, (int64_t[]){F, C, h, w});
    dump_tensor(o->dump_dir, "sample_noise.npy", eps, 4, (int64_t[]){F, C, h, w});
    dump_tensor(o->dump_dir, "noise.npy", noise, 4, (int64_t[]){F, C, h, w});
    for (f = 0; f < F; f++)                          /* (F, C, h, w) -> (1, C, F, h, w) */
        for (c = 0; c < C; c++)
            memcpy(video_latents + ((size_t)c * F + f) * h * w, latents + ((size_t)f * C + c) * h * w, (size_t)h * w * sizeof(float));
    dump_tensor(o->dump_dir, "latents_init.npy", video_latents, 5, (int64_t[]){1, C, F, h, w});
    free(eps);
    free(noise);
    free(image);
    free(mean);
    free(logvar);
    free(latents);
    return video_latents;
}

/* before the first step, the UNet's weights are packed (unet_pack_weights): say so, as it takes seconds */
static void report_packing(const T2VGenerateOptions *o, double seconds) {
    if (!o->quiet && seconds > 0.5) fprintf(stderr, "unet weights packed for the matmul in %.1f s\n", seconds);
}

/* The denoising loop of __call__: at each timestep from the scheduler's begin index on, the UNet runs on the
 * latents once per batch item (scale_model_input is the identity for both schedulers); with guidance,
 * noise_pred = uncond + g (text - uncond) in float32 as torch computes it; then scheduler.step.
 * latents: (1, C, F, h, w), updated in place. */
static void denoising_loop(T2VModel *m, const T2VGenerateOptions *o, Scheduler *s, const float *context, int B,
                           float *latents, int C, int F, int h, int w) {
    const size_t n = (size_t)C * F * h * w;
    const int first = s->step_index, steps = s->num_timesteps - first;
    float *unet_in = alloc_floats((size_t)B * n, "unet input"), *unet_out = alloc_floats((size_t)B * n, "unet output");
    float *noise_pred = alloc_floats(n, "noise prediction");
    StepDump dump_in = step_dump_new(o->dump_dir, steps, (size_t)B * n), dump_out = step_dump_new(o->dump_dir, steps, (size_t)B * n);
    StepDump dump_noise = step_dump_new(o->dump_dir, steps, n), dump_latents = step_dump_new(o->dump_dir, steps, n);
    double start;
    size_t j;
    int i, b;
    report_packing(o, unet_pack_weights(m));
    start = now_seconds();
    for (i = 0; i < steps; i++) {
        for (b = 0; b < B; b++) memcpy(unet_in + b * n, latents, n * sizeof(float));
        t2v_unet(m, unet_in, B, F, h, w, (double)s->timesteps[first + i], context, unet_out, NULL);
        if (B == 2)
            for (j = 0; j < n; j++) noise_pred[j] = unet_out[j] + (float)o->guidance * (unet_out[n + j] - unet_out[j]);
        else
            memcpy(noise_pred, unet_out, n * sizeof(float));
        check_step(noise_pred, n, "the noise prediction", i, steps);
        scheduler_step(s, noise_pred, latents);
        check_step(latents, n, "the latents", i, steps);
        step_dump_record(&dump_in, i, unet_in);
        step_dump_record(&dump_out, i, unet_out);
        step_dump_record(&dump_noise, i, noise_pred);
        step_dump_record(&dump_latents, i, latents);
        if (!o->quiet) report_progress("step", "step", i + 1, steps, start);
    }
    dump_int64(o->dump_dir, "timesteps.npy", s->timesteps + first, steps);
    step_dump_save(&dump_in, "unet_in.npy", 6, (int64_t[]){steps, B, C, F, h, w});
    step_dump_save(&dump_out, "unet_out.npy", 6, (int64_t[]){steps, B, C, F, h, w});
    step_dump_save(&dump_noise, "noise_pred.npy", 6, (int64_t[]){steps, 1, C, F, h, w});
    step_dump_save(&dump_latents, "latents.npy", 6, (int64_t[]){steps, 1, C, F, h, w});
    free(unet_in);
    free(unet_out);
    free(noise_pred);
}

/* decode_latents: latents / scaling_factor, each frame through the VAE decoder, then
 * VaeImageProcessor.postprocess: clamp(x / 2 + 0.5, 0, 1). Returns frames: (F, H, W, 3) in [0, 1]. */
static float *decode_latents(T2VModel *m, const T2VGenerateOptions *o, const float *latents, int C, int F, int h, int w) {
    const int scale = t2v_vae_scale_factor(m);
    const size_t frame_px = (size_t)h * scale * w * scale;
    const float inv_scaling = (float)(1.0 / m->vae->scaling_factor);
    float *frames = alloc_floats(mul_size((size_t)F * frame_px, 3), "frames");
    float *z = alloc_floats((size_t)C * h * w, "latent frame"), *decoded = alloc_floats(frame_px * 3, "decoded frame");
    const double start = now_seconds();
    char what[96];
    int f, c;
    size_t p;
    for (f = 0; f < F; f++) {
        for (c = 0; c < C; c++)     /* z: frame f of (1, C, F, h, w) as (1, C, h, w) */
            for (p = 0; p < (size_t)h * w; p++) z[(size_t)c * h * w + p] = latents[((size_t)c * F + f) * h * w + p] * inv_scaling;
        t2v_vae_decode(m, z, 1, h, w, decoded);
        snprintf(what, sizeof what, "the VAE's decoded frame %d of %d", f + 1, F);
        check_finite(decoded, frame_px * 3, what);
        for (p = 0; p < frame_px; p++)
            for (c = 0; c < 3; c++) {
                float v = decoded[(size_t)c * frame_px + p] / 2.0f + 0.5f;
                frames[((size_t)f * frame_px + p) * 3 + c] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            }
        if (!o->quiet) report_progress("vae decode", "frame", f + 1, F, start);
    }
    dump_tensor(o->dump_dir, "frames.npy", frames, 5, (int64_t[]){1, F, h * scale, w * scale, 3});
    free(z);
    free(decoded);
    return frames;
}

/* ---- TextToVideoZeroPipeline (pipeline_text_to_video_zero.py): Stable Diffusion 1.x, no training ---- */

/* One of the pipeline's backward_loop calls: `steps` scheduler steps from s->step_index on latents (N, C, h, w),
 * the UNet seeing [latents, latents] with context [negative x N, prompt x N] and CrossFrameAttnProcessor(
 * batch_size=2), then guidance. With N = 1 (the first frame alone) cross-frame attention changes nothing. */
static void zero_backward_loop(T2VModel *m, const T2VGenerateOptions *o, Scheduler *s, const float *context,
                               float *latents, int N, int C, int h, int w, int steps, const char *what) {
    const size_t n = (size_t)N * C * h * w;
    float *unet_in = alloc_floats(2 * n, "unet input"), *unet_out = alloc_floats(2 * n, "unet output");
    float *noise_pred = alloc_floats(n, "noise prediction");
    double start;
    size_t j;
    int i;
    report_packing(o, unet_pack_weights(m));
    start = now_seconds();
    s->numel = n;
    for (i = 0; i < steps; i++) {
        memcpy(unet_in, latents, n * sizeof(float));          /* unet_in: (2N, C, h, w), uncond half first */
        memcpy(unet_in + n, latents, n * sizeof(float));
        t2v_unet_2d(m, unet_in, 2 * N, h, w, (double)s->timesteps[s->step_index], context, 2, unet_out, NULL);
        for (j = 0; j < n; j++) noise_pred[j] = unet_out[j] + (float)o->guidance * (unet_out[n + j] - unet_out[j]);
        check_step(noise_pred, n, "the noise prediction", i, steps);
        scheduler_step(s, noise_pred, latents);
        check_step(latents, n, "the latents", i, steps);
        if (!o->quiet) report_progress(what, "step", i + 1, steps, start);
    }
    free(unet_in);
    free(unet_out);
    free(noise_pred);
}

/* torch.nn.functional.interpolate(mode="bilinear", align_corners=False) along one axis of a field that is
 * constant along the other: n_in values -> n_out, in float32 as torch's CPU kernel (source index clamped at 0). */
static void resize_linear_1d(const float *in, int n_in, float *out, int n_out) {
    const float scale = (float)n_in / (float)n_out;
    int i;
    for (i = 0; i < n_out; i++) {
        float src = scale * ((float)i + 0.5f) - 0.5f, l1, l0;
        int i0, i1;
        if (src < 0.0f) src = 0.0f;
        i0 = (int)src;
        i1 = i0 + (i0 < n_in - 1);
        l1 = src - (float)i0;
        l0 = 1.0f - l1;
        out[i] = l0 * in[i0] + l1 * in[i1];
    }
}

/* grid_sample's source index for align_corners=False, padding_mode="reflection": unnormalise g in [-1, 1] to
 * pixels, reflect about the borders -0.5 and size - 0.5, clip to [0, size - 1]. */
static float grid_reflect_index(float g, int size) {
    const float span = (float)size, lo = -0.5f;
    float x = (g + 1.0f) * (span / 2.0f) - 0.5f, extra, flips;
    x = fabsf(x - lo);
    extra = fmodf(x, span);
    flips = floorf(x / span);
    x = fmodf(flips, 2.0f) == 0.0f ? extra + lo : span - extra + lo;
    return x < 0.0f ? 0.0f : (x > span - 1.0f ? span - 1.0f : x);
}

/* create_motion_field_and_warp_latents for n frames with indices ids[0..n-1]: copy k is the first frame's latent
 * (C, h, w) moved by ids[k] * (motion_x, motion_y) pixels of a 512x512 image (the frame's place in the whole
 * video, so that chunks of a long video move on from where the previous one stopped). Diffusers builds the flow
 * at 512x512 whatever the video size: coordinates + flow, divided by 512, mapped to [-1, 1], bilinearly resized
 * to h x w, then grid_sample
 * with nearest sampling (round half to even) and reflection padding. So a motion of m moves the latent by
 * about m * w / 512 latent pixels (m / 8 at 512x512), and the edge that comes into view is a mirror image.
 * out: (n, C, h, w). */
static void create_motion_field_and_warp_latents(double motion_x, double motion_y, const float *first, const int *ids,
                                                 float *out, int n, int C, int h, int w) {
    const int S = 512;
    float *field = alloc_floats(S, "motion field"), *gx = alloc_floats((size_t)w, "motion field");
    float *gy = alloc_floats((size_t)h, "motion field");
    int k, c, y, x, i;
    for (k = 0; k < n; k++) {
        const float fx = (float)(motion_x * ids[k]), fy = (float)(motion_y * ids[k]); /* reference_flow: float32 */
        float *dst = out + (size_t)k * C * h * w;
        for (i = 0; i < S; i++) field[i] = ((float)i + fx) / (float)S * 2.0f - 1.0f;  /* channel 0: x */
        resize_linear_1d(field, S, gx, w);
        for (i = 0; i < S; i++) field[i] = ((float)i + fy) / (float)S * 2.0f - 1.0f;  /* channel 1: y */
        resize_linear_1d(field, S, gy, h);
        for (y = 0; y < h; y++) {
            const int sy = (int)nearbyintf(grid_reflect_index(gy[y], h));
            for (x = 0; x < w; x++) {
                const int sx = (int)nearbyintf(grid_reflect_index(gx[x], w));
                for (c = 0; c < C; c++)
                    dst[((size_t)c * h + y) * w + x] = first[((size_t)c * h + sy) * w + sx];
            }
        }
    }
    free(field);
    free(gx);
    free(gy);
}

/* forward_loop: the DDPM forward process from timestep t0 to t1 in one go, x_t1 = sqrt(A) x_t0 + sqrt(1 - A) eps
 * with A = prod(alphas[t0:t1]) and eps the generator's next draw, (n) values. */
static void zero_forward_loop(const Scheduler *s, TorchGenerator *g, float *x, size_t n, int64_t t0, int64_t t1) {
    float *eps = alloc_floats(n, "noise");
    double prod = 1.0;
    float a, b, one_minus;
    int64_t t;
    size_t i;
    torch_randn(g, eps, n);
    for (t = t0; t < t1; t++) prod *= s->alphas[t];
    one_minus = 1.0f - (float)prod;
    a = sqrtf((float)prod);
    b = sqrtf(one_minus);
    for (i = 0; i < n; i++) {
        const float p = a * x[i], q = b * eps[i];
        x[i] = p + q;
    }
    free(eps);
}

static void dump_timesteps(const char *dir, const char *name, const int64_t *t, int n) {
    char path[4096];
    Shape shape;
    if (!dir) return;
    shape.ndim = 1;
    shape.shape[0] = n;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    npy_save(path, t, 1, &shape);
}

/* TextToVideoZeroPipeline.__call__ for one prompt and frame_ids ids[0..F-1] (ids[0] is 0): x_T of frame 0;
 * backward_loop to timesteps[-t1-1] (x1_t1), keeping a copy of the scheduler; on to timesteps[-t0-1] (x1_t0);
 * F-1 copies of it, copy k warped by the motion times ids[k]; forward_loop back to t1; then all F frames
 * [x1_t1, warped] through the copied scheduler's remaining timesteps with cross-frame attention. context is
 * [negative, prompt] (2, T, D). Writes the final latents (F, C, h, w) to video; dumps to o->dump_dir. */
static void zero_pipeline_call(T2VModel *m, const T2VGenerateOptions *o, const float *context, const int *ids, int F,
                               float *video) {
    const int scale = t2v_vae_scale_factor(m), C = m->unet->in_channels;
    const int h = o->height / scale, w = o->width / scale, T = t2v_context_length(m), D = t2v_text_hidden_size(m);
    const size_t per_frame = (size_t)C * h * w, ctx = (size_t)T * D;
    const int64_t frame_dims[4] = {1, C, h, w};
    SchedulerConfig config;
    Scheduler s, copy;
    TorchGenerator g;
    float *context_all, *latents;
    int L, first_end, second_end, f;
    context_all = alloc_floats(mul_size((size_t)2 * F, ctx), "text states");
    for (f = 0; f < 2 * F; f++)                               /* context_all: [2F][T][D], each repeated per frame */
        memcpy(context_all + (size_t)f * ctx, context + (size_t)(f / F) * ctx, ctx * sizeof(float));
    scheduler_config_read(m, o->scheduler, &config);
    scheduler_init(&s, o->scheduler, &config, o->steps, (size_t)F * per_frame);
    L = s.num_timesteps;                                      /* N, or N + 1 for PNDM */
    first_end = L - o->t1 - 1;
    second_end = L - o->t0 - 1;
    dump_timesteps(o->dump_dir, "timesteps_1.npy", s.timesteps, first_end);
    dump_timesteps(o->dump_dir, "timesteps_2.npy", s.timesteps + first_end, second_end - first_end);
    dump_timesteps(o->dump_dir, "timesteps_3.npy", s.timesteps + first_end, L - first_end);

    latents = alloc_floats(per_frame, "latents");             /* latents: (1, C, h, w), frame 0 */
    torch_generator_seed(&g, o->seed);                        /* each call seeds anew: chunks share frame 0 */
    torch_randn(&g, latents, per_frame);
    for (f = 0; f < (int)per_frame; f++) latents[f] *= s.init_noise_sigma;
    dump_tensor(o->dump_dir, "latents_init.npy", latents, 4, frame_dims);

    zero_backward_loop(m, o, &s, context, latents, 1, C, h, w, first_end, "step (frame 0 to t1)");
    memcpy(video, latents, per_frame * sizeof(float));        /* x_1_t1 is the last loop's frame 0 */
    dump_tensor(o->dump_dir, "x1_t1.npy", latents, 4, frame_dims);
    scheduler_copy(&copy, &s);
    zero_backward_loop(m, o, &s, context, latents, 1, C, h, w, second_end - first_end, "step (frame 0 to t0)");
    dump_tensor(o->dump_dir, "x1_t0.npy", latents, 4, frame_dims);

    if (F > 1) {
        const int64_t rest_dims[4] = {F - 1, C, h, w};
        float *rest = video + per_frame;                      /* rest: frames 1..F-1, (F-1, C, h, w) */
        create_motion_field_and_warp_latents(o->motion_x, o->motion_y, latents, ids + 1, rest, F - 1, C, h, w);
        dump_tensor(o->dump_dir, "warped_t0.npy", rest, 4, rest_dims);
        zero_forward_loop(&s, &g, rest, (size_t)(F - 1) * per_frame, s.timesteps[second_end], s.timesteps[first_end]);
        dump_tensor(o->dump_dir, "x2k_t1.npy", rest, 4, rest_dims);
    }
    dump_tensor(o->dump_dir, "x1k_t1.npy", video, 4, (int64_t[]){F, C, h, w});
    zero_backward_loop(m, o, &copy, context_all, video, F, C, h, w, L - first_end, "step (all frames)");
    free(context_all);
    free(latents);
    scheduler_free(&s);
    scheduler_free(&copy);
}

/* TextToVideoZeroPipeline with frame_ids 0..F-1 in one call, or, with o->chunk_size N, the long-video recipe of
 * Diffusers' text_to_video_zero.md: chunk starts every N-1 frames, each chunk one call with frame_ids
 * [0, start, ..., end-1] and the generator seeded anew, keeping all but its first frame (cross-frame attention
 * then looks at the same frame 0 in every chunk). Then decode_latents. Returns frames (F, H, W, 3). */
static float *text_to_video_zero(T2VModel *m, const T2VGenerateOptions *o) {
    const int scale = t2v_vae_scale_factor(m), C = m->unet->in_channels, F = o->frames;
    const int h = o->height / scale, w = o->width / scale;
    const size_t per_frame = (size_t)C * h * w;
    const int chunked = o->chunk_size > 0, per_call = chunked ? (o->chunk_size < F + 1 ? o->chunk_size : F + 1) : F;
    T2VGenerateOptions decode_options = *o, chunk_options = *o;
    float *context, *video, *chunk, *latents, *frames;
    int *ids, start, f;
    if (o->guidance <= 1.0)      /* CrossFrameAttnProcessor(batch_size=2) assumes the guidance batch */
        t2v_die("Text2Video-Zero needs guidance > 1 (Diffusers' cross-frame attention splits the batch in two halves)");
    if (o->latents || o->init_frames) t2v_die("Text2Video-Zero starts from seeded noise: no --latents or --init-video");
    if (o->t0 < 0 || o->t0 >= o->t1) t2v_die("--t0 (%d) must be at least 0 and less than --t1 (%d)", o->t0, o->t1);
    if (o->t1 >= o->steps) t2v_die("--t1 (%d) must be less than --steps (%d)", o->t1, o->steps);
    if (chunked && o->chunk_size < 2) t2v_die("--chunk-size (%d) must be at least 2: frame 0 and one new frame", o->chunk_size);
    check_unet_memory(m->unet, 2 * per_call, h, w);

    context = encode_prompt(m, o, 2);                         /* context: [2][T][D], [negative, prompt] */
    arena_free(&m->text_encoder->arena);                      /* each stage's scratch freed when done (t2v_generate) */
    video = alloc_floats(mul_size((size_t)F, per_frame), "latents");      /* video: (F, C, h, w) */
    ids = malloc((size_t)per_call * sizeof *ids);
    if (!ids) t2v_die("out of memory (frame ids)");
    if (!chunked) {
        for (f = 0; f < F; f++) ids[f] = f;
        zero_pipeline_call(m, o, context, ids, F, video);
    } else {
        chunk = alloc_floats(mul_size((size_t)per_call, per_frame), "latents");
        chunk_options.dump_dir = NULL;   /* every chunk would overwrite the stage files: only the results */
        for (start = 0; start < F; start += o->chunk_size - 1) {
            const int end = start + o->chunk_size - 1 < F ? start + o->chunk_size - 1 : F, n = end - start + 1;
            ids[0] = 0;
            for (f = 1; f < n; f++) ids[f] = start + f - 1;
            if (!o->quiet) fprintf(stderr, "chunk: frames %d to %d (and frame 0)\n", start, end - 1);
            zero_pipeline_call(m, &chunk_options, context, ids, n, chunk);
            memcpy(video + (size_t)start * per_frame, chunk + per_frame, (size_t)(n - 1) * per_frame * sizeof(float));
        }
        free(chunk);
    }
    dump_tensor(o->dump_dir, "latents.npy", video, 4, (int64_t[]){F, C, h, w});
    arena_free(&m->unet->arena);

    latents = alloc_floats((size_t)F * per_frame, "latents"); /* decode_latents takes (1, C, F, h, w): video transposed */
    for (f = 0; f < F; f++) {
        int c;
        for (c = 0; c < C; c++)
            memcpy(latents + ((size_t)c * F + f) * h * w, video + ((size_t)f * C + c) * h * w, (size_t)h * w * sizeof(float));
    }
    decode_options.dump_dir = NULL;
    frames = decode_latents(m, &decode_options, latents, C, F, h, w);
    dump_tensor(o->dump_dir, "frames.npy", frames, 4, (int64_t[]){F, h * scale, w * scale, 3});
    free(context);
    free(latents);
    free(video);
    free(ids);
    return frames;
}

/* TextToVideoSDPipeline.__call__: encode_prompt, set_timesteps, prepare_latents, the denoising loop,
 * decode_latents. With init_frames it is VideoToVideoSDPipeline.__call__, which differs in two places: the
 * timesteps are cut by strength (get_timesteps) and the latents come from the encoded video.
 * Returns frames (F, H, W, 3) in [0, 1]. */
float *t2v_generate(T2VModel *m, const T2VGenerateOptions *o) {
    const int scale = t2v_vae_scale_factor(m), C = m->unet->in_channels, F = o->frames;
    const int h = o->height / scale, w = o->width / scale;
    const int B = o->guidance > 1.0 ? 2 : 1;  /* do_classifier_free_guidance: [negative, prompt] */
    SchedulerConfig scheduler_config;
    Scheduler scheduler;
    float *context, *latents, *frames;
    if (o->frames < 1 || o->steps < 1) t2v_die("frames and steps must be at least 1");
    if (m->unet->is_2d != (o->scheduler == T2V_SCHEDULER_PNDM) && o->scheduler != T2V_SCHEDULER_DDIM)
        t2v_die("the %s scheduler is for %s files", o->scheduler == T2V_SCHEDULER_PNDM ? "pndm" : "dpm",
                o->scheduler == T2V_SCHEDULER_PNDM ? "Stable Diffusion" : "ModelScope");
    if (o->height < scale || o->width < scale || o->height % scale || o->width % scale)
        t2v_die("height and width must be positive multiples of %d (got %dx%d)", scale, o->width, o->height);
    if (!isfinite(o->guidance)) t2v_die("guidance must be a finite number");
    if (o->init_frames && !(o->strength > 0.0 && o->strength <= 1.0)) t2v_die("strength must be in (0, 1], not %g", o->strength);
    if (o->init_frames && o->latents) t2v_die("video-to-video starts from the encoded video: it takes no latents");
    if (t2v_text_hidden_size(m) != m->unet->cross_dim)
        t2v_die("text encoder width %d differs from the UNet's cross_attention_dim %d", t2v_text_hidden_size(m), m->unet->cross_dim);
    if (m->unet->is_2d) return text_to_video_zero(m, o);
    check_unet_memory(m->unet, B * F, h, w);

    scheduler_config_read(m, o->scheduler, &scheduler_config); /* a bad config is refused before any work */
    scheduler_init(&scheduler, o->scheduler, &scheduler_config, o->steps, (size_t)C * F * h * w);
    /* Each stage's scratch is freed once the stage is done (it is allocated again if the stage runs again), so the
     * peak is the weights plus the largest stage's scratch, not their sum: a default generate peaked at the mapped
     * weights plus 1.27 GiB while the UNet's 704 MiB were kept through the VAE decode, plus 0.74 GiB this way. */
    context = encode_prompt(m, o, B);
    arena_free(&m->text_encoder->arena);
    if (o->init_frames) {
        scheduler_begin_at_strength(&scheduler, o->strength);
        latents = prepare_video_latents(m, o, &scheduler, C, F, h, w);
        arena_free(&m->vae->arena);
    } else {
        latents = prepare_latents(o, &scheduler, C, F, h, w);
    }
    denoising_loop(m, o, &scheduler, context, B, latents, C, F, h, w);
    arena_free(&m->unet->arena);
    frames = decode_latents(m, o, latents, C, F, h, w);
    free(context);
    free(latents);
    scheduler_free(&scheduler);
    return frames;
}

/* ============================================================================================
 * 10. Video files: Y4M out (and PPM frames), Y4M in for video-to-video
 * ============================================================================================ */

/* rounded to the nearest of 0..255 */
static unsigned char clamp_byte(float v) {
    v += 0.5f;
    return (unsigned char)(v >= 0.0f ? (v < 255.0f ? (int)v : 255) : 0); /* NaN fails v >= 0: 0, never (int)NaN */
}

static unsigned char to_byte(float v) { return clamp_byte(v * 255.0f); } /* [0,1] -> 0..255 */

/* BT.601 limited range ("TV range", what players assume for untagged standard-definition video):
 * Y in 16..235, Cb/Cr in 16..240, from RGB in [0,1]. */
static void rgb_to_ycbcr(const float *rgb, float *y, float *cb, float *cr) {
    const float r = rgb[0], g = rgb[1], b = rgb[2];
    *y = 16.0f + 219.0f * (0.299f * r + 0.587f * g + 0.114f * b);
    *cb = 128.0f + 224.0f * (-0.168736f * r - 0.331264f * g + 0.5f * b);
    *cr = 128.0f + 224.0f * (0.5f * r - 0.418688f * g - 0.081312f * b);
}

/* YUV4MPEG2: a text header, then per frame "FRAME\n" and the Y, Cb, Cr planes. 4:2:0 averages each 2x2
 * block's chroma (centred, "420jpeg" siting); 4:4:4 keeps it per pixel. Written by open_output. */
static void write_y4m(const char *path, const float *frames, int n_frames, int H, int W, int fps_num, int fps_den,
                      int yuv444) {
    Output out;
    FILE *f;
    const int cw = yuv444 ? W : (W + 1) / 2, ch = yuv444 ? H : (H + 1) / 2;
    unsigned char *plane = (unsigned char *)xmalloc((size_t)H * W, "video frame");
    int n, x, y, c;
    open_output(&out, path);
    f = out.f;
    fprintf(f, "YUV4MPEG2 W%d H%d F%d:%d Ip A1:1 %s XCOLORRANGE=LIMITED\n", W, H, fps_num, fps_den, yuv444 ? "C444" : "C420jpeg");
    for (n = 0; n < n_frames; n++) {
        const float *rgb = frames + (size_t)n * H * W * 3;
        fputs("FRAME\n", f);
        for (y = 0; y < H; y++)
            for (x = 0; x < W; x++) {
                float Y, Cb, Cr;
                rgb_to_ycbcr(rgb + ((size_t)y * W + x) * 3, &Y, &Cb, &Cr);
                plane[(size_t)y * W + x] = clamp_byte(Y);
            }
        fwrite(plane, 1, (size_t)H * W, f);
        for (c = 0; c < 2; c++) {
            for (y = 0; y < ch; y++)
                for (x = 0; x < cw; x++) {
                    const int step = yuv444 ? 1 : 2;
                    float sum = 0.0f;
                    int dy, dx, count = 0;
                    for (dy = 0; dy < step; dy++)
                        for (dx = 0; dx < step; dx++) {
                            const int yy = y * step + dy, xx = x * step + dx;
                            float Y, Cb, Cr;
                            if (yy >= H || xx >= W) continue;
                            rgb_to_ycbcr(rgb + ((size_t)yy * W + xx) * 3, &Y, &Cb, &Cr);
                            sum += c == 0 ? Cb : Cr;
                            count++;
                        }
                    plane[(size_t)y * cw + x] = clamp_byte(sum / count);
                }
            fwrite(plane, 1, (size_t)ch * cw, f);
        }
    }
    free(plane);
    close_output(&out);
}

/* DIR/frame_0000.ppm ... */
static void frame_path(const char *dir, int n, char *path, size_t size) {
    if ((size_t)snprintf(path, size, "%s/frame_%04d.ppm", dir, n) >= size) t2v_die("--frames-dir path too long: %s", dir);
}

/* ---- reading Y4M (video-to-video input) ---- */

/* A decoded video: frames (F, H, W, 3) in [0, 1], Diffusers' numpy video layout, and its frame rate. */
typedef struct { float *frames; int n_frames, H, W, fps_num, fps_den; } Video;

/* BT.601 YCbCr -> RGB in [0, 1], the inverse of rgb_to_ycbcr: limited range (Y 16..235, Cb/Cr 16..240) or
 * full range (0..255, as JPEG). */
static void ycbcr_to_rgb(float Y, float Cb, float Cr, int full_range, float *rgb) {
    const float y = full_range ? Y / 255.0f : (Y - 16.0f) / 219.0f;
    const float pb = (Cb - 128.0f) / (full_range ? 255.0f : 224.0f), pr = (Cr - 128.0f) / (full_range ? 255.0f : 224.0f);
    const float v[3] = {y + 1.402f * pr, y - 0.344136f * pb - 0.714136f * pr, y + 1.772f * pb};
    int c;
    for (c = 0; c < 3; c++) rgb[c] = v[c] < 0.0f ? 0.0f : v[c] > 1.0f ? 1.0f : v[c];
}

/* The chroma subsampling of a Y4M colour space: 4:2:0 (any siting), 4:2:2, 4:4:4, or mono (no chroma). */
typedef struct { const char *name; int sub_x, sub_y, mono; } Y4MChroma;

static const Y4MChroma *y4m_chroma(const char *name) {
    static const Y4MChroma known[] = {
        {"420jpeg", 2, 2, 0}, {"420mpeg2", 2, 2, 0}, {"420paldv", 2, 2, 0}, {"420", 2, 2, 0},
        {"422", 2, 1, 0}, {"444", 1, 1, 0}, {"mono", 1, 1, 1}};
    size_t i;
    for (i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(name, known[i].name)) return &known[i];
    return NULL;
}

/* Reads a YUV4MPEG2 file as ffmpeg and t2v write it: 8-bit 4:2:0 (C420jpeg, C420mpeg2, C420paldv, C420),
 * 4:2:2, 4:4:4 or mono, progressive (Ip, or no I tag), XCOLORRANGE=LIMITED (the default) or FULL, frame headers
 * with or without parameters. Chroma is upsampled by repeating each sample over the pixels it covers.
 * Anything else (interlaced, more than 8 bits, alpha) is refused with a message. */
static Video read_y4m(const char *path) {
    FILE *f = open_input(path, "", 0);
    char header[1024], colour[32] = "420jpeg";
    const Y4MChroma *chroma;
    Video v;
    int full_range = 0, len = 0, ch, cw, c;
    size_t luma, chroma_size, capacity = 0;
    unsigned char *planes;
    char *token;
    memset(&v, 0, sizeof v);
    v.fps_num = 25;
    v.fps_den = 1;
    while (len < (int)sizeof header - 1 && (c = fgetc(f)) != EOF && c != '\n') header[len++] = (char)c;
    header[len] = 0;
    if (strncmp(header, "YUV4MPEG2 ", 10) || c != '\n') t2v_die("%s is not a Y4M video (no YUV4MPEG2 header line)", path);
    for (token = strtok(header + 10, " "); token; token = strtok(NULL, " ")) {
        char *end;
        long x;
        switch (token[0]) {
        case 'W': case 'H':
            x = strtol(token + 1, &end, 10);
            if (*end || x < 1 || x > 16384) t2v_die("%s: bad Y4M size %s", path, token);
            if (token[0] == 'W') v.W = (int)x; else v.H = (int)x;
            break;
        case 'F':
            if (sscanf(token + 1, "%d:%d", &v.fps_num, &v.fps_den) != 2 || v.fps_num < 1 || v.fps_den < 1)
                t2v_die("%s: bad Y4M frame rate %s", path, token);
            break;
        case 'I':
            if (strcmp(token, "Ip"))
                t2v_die("%s: interlaced video (%s) is not supported; make it progressive, e.g. ffmpeg -i IN -vf yadif OUT.y4m",
                        path, token);
            break;
        case 'C':
            if (strlen(token + 1) >= sizeof colour) t2v_die("%s: Y4M colour space %s is not supported", path, token);
            strcpy(colour, token + 1);
            break;
        case 'X':
            if (!strcmp(token, "XCOLORRANGE=FULL")) full_range = 1;
            else if (!strcmp(token, "XCOLORRANGE=LIMITED")) full_range = 0;
            break;
        default:   /* A (pixel aspect) and anything new: nothing t2v needs */
            break;
        }
    }
    if (!v.W || !v.H) t2v_die("%s: the Y4M header has no W or H", path);
    if (!(chroma = y4m_chroma(colour)))
        t2v_die("%s: Y4M colour space C%s is not supported (8-bit 420, 422, 444 or mono); convert it with "
                "ffmpeg -i %s -pix_fmt yuv420p OUT.y4m", path, colour, path);
    cw = (v.W + chroma->sub_x - 1) / chroma->sub_x;
    ch = (v.H + chroma->sub_y - 1) / chroma->sub_y;
    luma = (size_t)v.W * v.H;
    chroma_size = chroma->mono ? 0 : (size_t)cw * ch;
    planes = (unsigned char *)xmalloc(luma + 2 * chroma_size, "video frame");
    for (;;) {
        char frame_header[256];
        size_t p;
        int x, y;
        if (!fgets(frame_header, sizeof frame_header, f)) break;
        if (strncmp(frame_header, "FRAME", 5) || !strchr(frame_header, '\n'))
            t2v_die("%s: frame %d has no FRAME header", path, v.n_frames + 1);
        if (fread(planes, 1, luma + 2 * chroma_size, f) != luma + 2 * chroma_size)
            t2v_die("%s: frame %d is truncated", path, v.n_frames + 1);
        if (v.n_frames == 4096) t2v_die("%s: more than 4096 frames", path);
        if ((size_t)v.n_frames == capacity) {
            float *grown;
            capacity = capacity ? 2 * capacity : 16;
            grown = (float *)realloc(v.frames, mul_size(mul_size(capacity, luma), 3 * sizeof(float)));
            if (!grown) t2v_die("out of memory: %d frames of %dx%d", (int)capacity, v.W, v.H);
            v.frames = grown;
        }
        for (y = 0, p = 0; y < v.H; y++)
            for (x = 0; x < v.W; x++, p++) {
                const size_t k = (size_t)(y / chroma->sub_y) * cw + x / chroma->sub_x;
                const float Y = planes[p], Cb = chroma->mono ? 128.0f : planes[luma + k];
                const float Cr = chroma->mono ? 128.0f : planes[luma + chroma_size + k];
                ycbcr_to_rgb(Y, Cb, Cr, full_range, v.frames + ((size_t)v.n_frames * luma + p) * 3);
            }
        v.n_frames++;
    }
    if (ferror(f)) t2v_die("cannot read %s: %s", path, strerror(errno));
    if (!v.n_frames) t2v_die("%s has no frames", path);
    free(planes);
    fclose(f);
    return v;
}

/* Binary PPM (P6): one RGB image per frame, DIR/frame_0000.ppm ... */
static void write_ppm_frames(const char *dir, const float *frames, int n_frames, int H, int W) {
    unsigned char *row = (unsigned char *)xmalloc((size_t)W * 3, "image row");
    int n, y, x;
    for (n = 0; n < n_frames; n++) {
        char path[4096];
        Output out;
        frame_path(dir, n, path, sizeof path);
        open_output(&out, path);
        fprintf(out.f, "P6\n%d %d\n255\n", W, H);
        for (y = 0; y < H; y++) {
            for (x = 0; x < W * 3; x++) row[x] = to_byte(frames[((size_t)n * H + y) * W * 3 + x]);
            fwrite(row, 1, (size_t)W * 3, out.f);
        }
        close_output(&out);
    }
    free(row);
}

/* ============================================================================================
 * 11. The command line
 * ============================================================================================ */

static void usage(FILE *f) {
    fprintf(f,
        "t2v: text to video with ModelScope's model, as Diffusers' TextToVideoSDPipeline computes it, in C.\n"
        "\n"
        "usage:\n"
        "  t2v generate    MODEL.t2v -p PROMPT [options]           write a video (also: t2v MODEL.t2v -p PROMPT)\n"
        "  t2v generate    MODEL.t2v -p PROMPT --init-video IN.y4m [--strength S] [options]\n"
        "                  video-to-video: re-render IN.y4m (size and frame count from it) as the prompt says\n"
        "  t2v tokenize    MODEL.t2v PROMPT                        print the 77 token ids\n"
        "  t2v encode-text MODEL.t2v PROMPT OUT.npy                text states (1, 77, hidden)\n"
        "  t2v unet        MODEL.t2v SAMPLE.npy TIMESTEP CONTEXT.npy OUT.npy\n"
        "                  sample (B,4,F,H,W), context (B,77,D) -> noise prediction (B,4,F,H,W); a Stable Diffusion\n"
        "                  file: (N,4,H,W), context (N,77,D) -> (N,4,H,W); --cross-frame: Text2Video-Zero's\n"
        "                  cross-frame attention (CrossFrameAttnProcessor(batch_size=2))\n"
        "                  TIMESTEP: an integer in [0, num_train_timesteps), 0..999 for this model\n"
        "  t2v vae-decode  MODEL.t2v LATENTS.npy OUT.npy           (N,4,h,w), already / scaling_factor -> (N,3,8h,8w)\n"
        "  t2v vae-encode  MODEL.t2v IMAGES.npy MEAN.npy [LOGVAR.npy]   (N,3,H,W) in [-1,1] -> (N,4,H/8,W/8)\n"
        "\n"
        "generate options (defaults are Diffusers' for this model):\n"
        "  -p, --prompt TEXT          what to show (required, or --prompt-file)\n"
        "  -n, --negative-prompt TEXT what to avoid (default: empty)\n"
        "  --prompt-file FILE, --negative-prompt-file FILE\n"
        "                             read the prompt from FILE, any length ('-': standard input)\n"
        "  -o, --output FILE.y4m      the video (default: output.y4m); YUV4MPEG2, plays in ffmpeg/mpv/VLC;\n"
        "                             '-': to standard output (t2v ... -o - | ffplay -). A FIFO or device is\n"
        "                             written in place; a file is replaced only when the video is complete\n"
        "  --frames N                 number of frames (default 16)\n"
        "  --height H, --width W      size in pixels, multiples of 8 (default: the UNet's sample_size x 8, 256)\n"
        "  --steps N                  denoising steps (default 50)\n"
        "  --guidance G               classifier-free guidance scale; <= 1 turns it off (default 9.0)\n"
        "  --scheduler ddim|dpm       DDIMScheduler (default) or DPMSolverMultistepScheduler.from_config\n"
        "\n");
    fprintf(f,
        "Text2Video-Zero (a Stable Diffusion 1.x file; Diffusers' TextToVideoZeroPipeline and its defaults: --frames 8,\n"
        "--guidance 7.5, 512x512 for SD 1.5, the snapshot's scheduler):\n"
        "  --scheduler pndm|ddim      PNDMScheduler (PLMS; SD's default) or DDIMScheduler.from_config\n"
        "  --motion-x X, --motion-y Y global motion per frame, in pixels of a 512x512 frame (default 12, 12)\n"
        "  --t0 T0, --t1 T1           frame 0 is denoised to timesteps[-T1-1], then to timesteps[-T0-1], copied to\n"
        "                             the other frames with the motion, re-noised to T1's timestep, and all frames\n"
        "                             are denoised from there; 0 <= T0 < T1 < steps (default 44, 47)\n"
        "  --chunk-size N             long videos as Diffusers' docs make them: N frames a pipeline call, frame 0\n"
        "                             and the next N-1, each call seeded alike (default: all frames in one call)\n"
        "  --seed N                   noise of torch.Generator('cpu').manual_seed(N) (default 42; -1: random)\n"
        "  --latents FILE.npy         start from these (1,4,F,H/8,W/8) latents instead of seeded noise\n"
        "\n"
        "video-to-video (Diffusers' VideoToVideoSDPipeline; its defaults: --strength 0.6, --guidance 15):\n"
        "  --init-video FILE.y4m      the video to re-render: 8-bit Y4M, 4:2:0/4:2:2/4:4:4/mono, progressive,\n"
        "                             width and height multiples of 8 (make one: ffmpeg -i IN.mp4 -pix_fmt yuv420p IN.y4m)\n"
        "  --init-frames FILE.npy     the same from (F,H,W,3) floats in [0,1], Diffusers' numpy video layout\n"
        "  --strength S               how far to re-noise the video, (0, 1]: the last int(steps * S) of the\n"
        "                             steps run; 1 keeps only the video's size (default 0.6)\n"
        "  --fps N                    frame rate written in the video (default 8, or the input video's)\n"
        "  --yuv444                   full-resolution chroma instead of 4:2:0\n"
        "  --frames-dir DIR           also write every frame as DIR/frame_0000.ppm (binary PPM); DIR is\n"
        "                             created if missing, its parent folder must exist\n"
        "  --dump DIR                 write every stage's tensors as .npy (the golden pipeline/ files);\n"
        "                             DIR as for --frames-dir\n"
        "  -q, --quiet                no progress on stderr\n"
        "\n"
        "options of every command:\n"
        "  --tokenizer diffusers|openclip   prompt clean-up: diffusers (default) is what Diffusers feeds the\n"
        "                             model (transformers' CLIPTokenizer without ftfy); openclip is what it was\n"
        "                             trained with (HTML unescaping, '!' kept as text)\n"
        "  --threads N                OpenMP threads (default: all cores; ignored in builds without OpenMP)\n"
        "  --int8-math float|int      how an int8 model file's weights are multiplied: float dequantises them\n"
        "                             and multiplies in float32; int quantises the activations to int8 too and\n"
        "                             sums in int32 (default: %s in this build%s)\n"
        "  --dump DIR                 (unet) write every intermediate as act_*.npy\n"
        "  --repeat N                 (encode-text, unet, vae-decode) run the computation N times on the same\n"
        "                             input and report each run's time, for benchmarks: the first run also pays\n"
        "                             for touching the weights and scratch memory, as a video's first step does\n"
        "                             (T2V_PROFILE=1 then reports the last run)\n",
        T2V_INT8_SIMD ? "int" : "float", T2V_INT8_SIMD ? ", which has an AVX-512 VNNI kernel" :
        ", which has no SIMD integer kernel");
}

typedef struct {
    const char *positional[8];
    int n_positional;
    T2VGenerateOptions gen;
    const char *output, *frames_dir, *latents_path, *init_video_path, *init_frames_path, *prompt_file, *negative_prompt_file;
    char *prompt_text, *negative_prompt_text;  /* read from the prompt files */
    const char *inputs[MAX_INPUTS];            /* the files read: no output may be one of them */
    int n_inputs;
    int threads, fps_num, fps_den, yuv444, random_seed;
    int repeat;                  /* encode-text, unet, vae-decode: --repeat N, runs of the computation (1) */
    int frames_given, guidance_given, strength_given;   /* video-to-video takes its own defaults */
    int cross_frame;             /* unet --cross-frame: CrossFrameAttnProcessor(batch_size=2) */
    int scheduler_given, zero_option_given;             /* Text2Video-Zero takes its own defaults and options */
} Args;

/* Adds a file the command reads to a->inputs (see protect_inputs); returns it. */
static const char *add_input(Args *a, const char *path) {
    if (a->n_inputs == MAX_INPUTS) t2v_die("too many input files");
    a->inputs[a->n_inputs++] = path;
    return path;
}

static long long parse_number(const char *opt, const char *v, long long lo, long long hi) {
    char *end;
    long long x;
    errno = 0;
    x = strtoll(v, &end, 10);
    if (!is_decimal(v, 1) || end == v || *end || errno || x < lo || x > hi)
        t2v_die("%s expects an integer in [%lld, %lld], got '%s'", opt, lo, hi, v);
    return x;
}

/* "-1" is a value (--seed -1) or a positional argument (a TIMESTEP), never an option. */
static int looks_like_option(const char *s) {
    return s[0] == '-' && s[1] && !is_decimal(s, 0);
}

static int is_option(const char *arg, const char *name, const char *other_name) {
    return !strcmp(arg, name) || (other_name && !strcmp(arg, other_name));
}

/* Options may come in any order; what is not an option is positional. */
static void parse_args(int argc, char **argv, Args *a) {
    int i;
    memset(a, 0, sizeof *a);
    a->gen.frames = 16;
    a->gen.steps = 50;
    a->gen.guidance = 9.0;
    a->gen.seed = 42;
    a->gen.motion_x = a->gen.motion_y = 12.0;   /* TextToVideoZeroPipeline's defaults */
    a->gen.t0 = 44;
    a->gen.t1 = 47;
    a->output = "output.y4m";
    a->fps_den = 1;
    a->repeat = 1;
    for (i = 0; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes_value = 1;
        if (is_option(s, "-q", "--quiet")) { a->gen.quiet = 1; takes_value = 0; }
        else if (is_option(s, "--yuv444", NULL)) { a->yuv444 = 1; takes_value = 0; }
        else if (is_option(s, "--cross-frame", NULL)) { a->cross_frame = 1; takes_value = 0; }
        else if (looks_like_option(s) && !v) t2v_die("%s needs a value (see t2v --help)", s);
        if (!takes_value) continue;
        if (is_option(s, "-p", "--prompt")) a->gen.prompt = v;
        else if (is_option(s, "-n", "--negative-prompt")) a->gen.negative_prompt = v;
        else if (is_option(s, "--prompt-file", NULL)) a->prompt_file = add_input(a, v);
        else if (is_option(s, "--negative-prompt-file", NULL)) a->negative_prompt_file = add_input(a, v);
        else if (is_option(s, "-o", "--output")) a->output = v;
        else if (is_option(s, "--frames", NULL)) {
            a->gen.frames = (int)parse_number(s, v, 1, 4096);
            a->frames_given = 1;
        }
        else if (is_option(s, "--height", "-H")) a->gen.height = (int)parse_number(s, v, 1, 16384);
        else if (is_option(s, "--width", "-W")) a->gen.width = (int)parse_number(s, v, 1, 16384);
        else if (is_option(s, "--steps", NULL)) a->gen.steps = (int)parse_number(s, v, 1, 1000000);
        else if (is_option(s, "--fps", NULL)) a->fps_num = (int)parse_number(s, v, 1, 1000);
        else if (is_option(s, "--init-video", NULL)) a->init_video_path = add_input(a, v);
        else if (is_option(s, "--init-frames", NULL)) a->init_frames_path = add_input(a, v);
        else if (is_option(s, "--strength", NULL)) {
            a->strength_given = 1;
            if (!parse_decimal(v, &a->gen.strength) || !(a->gen.strength > 0.0 && a->gen.strength <= 1.0))
                t2v_die("--strength expects a decimal number in (0, 1], got '%s'", v);
        }
        else if (is_option(s, "--threads", NULL)) a->threads = (int)parse_number(s, v, 1, 4096);
        else if (is_option(s, "--repeat", NULL)) a->repeat = (int)parse_number(s, v, 1, 1000);
        else if (is_option(s, "--latents", NULL)) a->latents_path = add_input(a, v);
        else if (is_option(s, "--frames-dir", NULL)) a->frames_dir = v;
        else if (is_option(s, "--dump", NULL)) a->gen.dump_dir = v;
        else if (is_option(s, "--seed", "-s")) {
            if (!strcmp(v, "-1")) a->random_seed = 1;
            else a->gen.seed = (uint64_t)parse_number(s, v, 0, LLONG_MAX);
        } else if (is_option(s, "--guidance", "--cfg-scale")) {
            if (!parse_decimal(v, &a->gen.guidance)) t2v_die("--guidance expects a finite decimal number, got '%s'", v);
            a->guidance_given = 1;
        } else if (is_option(s, "--motion-x", "--motion-y")) {
            double *motion = !strcmp(s, "--motion-x") ? &a->gen.motion_x : &a->gen.motion_y;
            if (!parse_decimal(v, motion) || !(fabs(*motion) <= 1e6)) t2v_die("%s expects a decimal number, got '%s'", s, v);
            a->zero_option_given = 1;
        } else if (is_option(s, "--t0", "--t1")) {
            *(!strcmp(s, "--t0") ? &a->gen.t0 : &a->gen.t1) = (int)parse_number(s, v, 0, 1000000);
            a->zero_option_given = 1;
        } else if (is_option(s, "--chunk-size", NULL)) {
            a->gen.chunk_size = (int)parse_number(s, v, 2, 4096);
            a->zero_option_given = 1;
        } else if (is_option(s, "--scheduler", NULL)) {
            a->scheduler_given = 1;
            if (!strcmp(v, "ddim")) a->gen.scheduler = T2V_SCHEDULER_DDIM;
            else if (!strcmp(v, "dpm")) a->gen.scheduler = T2V_SCHEDULER_DPM;
            else if (!strcmp(v, "pndm")) a->gen.scheduler = T2V_SCHEDULER_PNDM;
            else t2v_die("--scheduler must be ddim, dpm or pndm, not '%s'", v);
        } else if (is_option(s, "--int8-math", NULL)) {
            if (!strcmp(v, "float")) t2v_set_int8_math(T2V_INT8_MATH_FLOAT);
            else if (!strcmp(v, "int")) t2v_set_int8_math(T2V_INT8_MATH_INT);
            else t2v_die("--int8-math must be float or int, not '%s'", v);
        } else if (is_option(s, "--tokenizer", NULL)) {
            if (!strcmp(v, "diffusers")) a->gen.tokenizer = T2V_TOKENIZER_DIFFUSERS;
            else if (!strcmp(v, "openclip")) a->gen.tokenizer = T2V_TOKENIZER_OPENCLIP;
            else t2v_die("--tokenizer must be diffusers or openclip, not '%s'", v);
        } else if (looks_like_option(s)) {
            t2v_die("unknown option %s (see t2v --help)", s);
        } else {
            if (a->n_positional == 8) t2v_die("too many arguments (see t2v --help)");
            a->positional[a->n_positional++] = s;
            continue;
        }
        i++; /* the value */
    }
#ifdef _OPENMP
    if (a->threads) omp_set_num_threads(a->threads);
#endif
}

static void need_positional(const Args *a, int lo, int hi, const char *cmd) {
    if (a->n_positional < lo || a->n_positional > hi) t2v_die("%s: wrong number of arguments (see t2v --help)", cmd);
}

/* The start of every subcommand but generate: the argument count, then that the outputs (positional
 * arguments from first_output on) can be written, before the model is loaded and any work is done. */
static T2VModel *start_command(Args *a, const char *cmd, int lo, int hi, int first_output) {
    int i;
    need_positional(a, lo, hi, cmd);
    for (i = 0; i < first_output; i++) add_input(a, a->positional[i]); /* a prompt, too: harmless, never a file */
    protect_inputs(a->inputs, a->n_inputs);
    for (i = first_output; i < a->n_positional; i++) check_writable(a->positional[i]);
    return t2v_load(a->positional[0]);
}

static int32_t *tokenize_prompt(T2VModel *m, const char *prompt, T2VTokenizerMode mode) {
    int n = t2v_context_length(m);
    int32_t *ids = (int32_t *)xmalloc(sizeof(int32_t) * (size_t)n, "token ids");
    t2v_tokenize(m->tokenizer, prompt, mode, ids, n);
    return ids;
}

static int cmd_tokenize(Args *a) {
    T2VModel *m;
    int32_t *ids;
    int i, n;
    m = start_command(a, "tokenize", 2, 2, 2);
    ids = tokenize_prompt(m, a->positional[1], a->gen.tokenizer);
    n = t2v_context_length(m);
    for (i = 0; i < n; i++) printf(i ? " %d" : "%d", (int)ids[i]);
    printf("\n");
    free(ids);
    t2v_free(m);
    return 0;
}

static int cmd_encode_text(Args *a) {
    T2VModel *m;
    int32_t *ids;
    float *states;
    int64_t dims[3];
    double t0, *seconds;
    int run;
    m = start_command(a, "encode-text", 3, 3, 2);
    ids = tokenize_prompt(m, a->positional[1], a->gen.tokenizer);
    dims[0] = 1;
    dims[1] = t2v_context_length(m);
    dims[2] = t2v_text_hidden_size(m);
    states = alloc_floats((size_t)dims[1] * dims[2], "text states");
    seconds = (double *)xmalloc(sizeof(double) * (size_t)a->repeat, "timings");
    for (run = 0; run < a->repeat; run++) {
        profile_restart();
        t0 = now_seconds();
        t2v_encode_text(m, ids, states);
        seconds[run] = now_seconds() - t0;
    }
    check_finite(states, (size_t)dims[1] * dims[2], "the text states");
    npy_save_f32(a->positional[2], states, 3, dims);
    for (run = 0; run < a->repeat && !a->gen.quiet; run++)
        fprintf(stderr, "encode-text: forward %.3f s, %d thread%s\n", seconds[run], num_threads(),
                num_threads() > 1 ? "s" : "");
    free(seconds);
    free(states);
    free(ids);
    t2v_free(m);
    return 0;
}

static int cmd_unet(Args *a) {
    T2VModel *m;
    Shape ss, cs;
    int64_t want[5] = {-1, -1, -1, -1, -1}, want_ctx[3] = {-1, -1, -1};
    float *sample, *context, *out;
    SchedulerConfig scheduler;
    double timestep, t0, packing;
    int run;
    m = start_command(a, "unet", 5, 5, 4);
    want[1] = m->unet->in_channels;
    if (m->unet->is_2d) {        /* UNet2DConditionModel: (N, C, H, W), read as (N, C, 1, H, W) */
        sample = npy_load_expect(a->positional[1], &ss, 4, want, "(N, in_channels, H, W)");
        memmove(ss.shape + 3, ss.shape + 2, 2 * sizeof ss.shape[0]);
        ss.shape[2] = 1;
        ss.ndim = 5;
    } else {
        if (a->cross_frame) t2v_die("unet: --cross-frame is for Stable Diffusion (UNet2DConditionModel) files");
        sample = npy_load_expect(a->positional[1], &ss, 5, want, "(B, in_channels, F, H, W)");
    }
    scheduler_config_read(m, T2V_SCHEDULER_DDIM, &scheduler);
    timestep = (double)parse_number("TIMESTEP", a->positional[2], 0, scheduler.num_train_timesteps - 1LL);
    want_ctx[0] = ss.shape[0];
    want_ctx[1] = t2v_context_length(m);
    want_ctx[2] = m->unet->cross_dim;
    context = npy_load_expect(a->positional[3], &cs, 3, want_ctx, "(B, 77, cross_attention_dim) with the sample's B");
    if (ss.shape[0] > 64 || ss.shape[2] > 4096 || ss.shape[3] > 4096 || ss.shape[4] > 4096) t2v_die("unet: sample too large");
    out = alloc_floats(shape_numel(&ss), "unet output");
    if (a->gen.dump_dir) make_output_dir(a->gen.dump_dir, "--dump");
    packing = unet_pack_weights(m); /* which the forward would do first: timed apart, as a video does it once */
    for (run = 0; run < a->repeat; run++) {
        profile_restart();
        t0 = now_seconds();
        if (m->unet->is_2d)
            t2v_unet_2d(m, sample, (int)ss.shape[0], (int)ss.shape[3], (int)ss.shape[4], timestep, context,
                        a->cross_frame ? 2 : 0, out, a->gen.dump_dir);
        else
            t2v_unet(m, sample, (int)ss.shape[0], (int)ss.shape[2], (int)ss.shape[3], (int)ss.shape[4], timestep, context,
                     out, a->gen.dump_dir);
        if (!a->gen.quiet)
            fprintf(stderr, "unet: forward %.2f s for sample (%lld, %lld, %lld, %lld, %lld), %d thread%s, scratch %.0f MiB; "
                    "weights packed beforehand in %.2f s\n", now_seconds() - t0, (long long)ss.shape[0],
                    (long long)ss.shape[1], (long long)ss.shape[2], (long long)ss.shape[3], (long long)ss.shape[4],
                    num_threads(), num_threads() > 1 ? "s" : "", m->unet->arena.peak * 4.0 / 1048576.0, packing);
    }
    ss.shape[1] = m->unet->out_channels;
    check_finite(out, shape_numel(&ss), "the unet output");
    if (m->unet->is_2d) {        /* back to (N, C, H, W) */
        memmove(ss.shape + 2, ss.shape + 3, 2 * sizeof ss.shape[0]);
        ss.ndim = 4;
    }
    npy_save(a->positional[4], out, 0, &ss);
    free(sample);
    free(context);
    free(out);
    t2v_free(m);
    return 0;
}

/* An (N, channels, H, W) float array, at most max_size pixels high and wide. */
static float *load_nchw(const char *path, int channels, int max_size, const char *layout, Shape *s) {
    const int64_t want[4] = {-1, channels, -1, -1};
    float *x = npy_load_expect(path, s, 4, want, layout);
    if (s->shape[2] > max_size || s->shape[3] > max_size) t2v_die("%s: %s is larger than %d x %d", path, layout, max_size, max_size);
    return x;
}

static int cmd_vae_decode(Args *a) {
    T2VModel *m = start_command(a, "vae-decode", 3, 3, 2);
    const VAE *v = m->vae;
    const int scale = t2v_vae_scale_factor(m);
    Shape s;
    float *latents = load_nchw(a->positional[1], v->latent_channels, 1024, "(N, latent_channels, h, w)", &s);
    float *images = alloc_floats(mul_size(shape_numel(&s) / v->latent_channels * v->out_channels, (size_t)scale * scale), "vae output");
    double *seconds = (double *)xmalloc(sizeof(double) * (size_t)a->repeat, "timings");
    int run;
    for (run = 0; run < a->repeat; run++) {
        double t0;
        profile_restart();
        t0 = now_seconds();
        t2v_vae_decode(m, latents, (int)s.shape[0], (int)s.shape[2], (int)s.shape[3], images);
        seconds[run] = now_seconds() - t0;
    }
    s.shape[1] = v->out_channels;
    s.shape[2] *= scale;
    s.shape[3] *= scale;
    check_finite(images, shape_numel(&s), "the decoded images");
    npy_save(a->positional[2], images, 0, &s);
    for (run = 0; run < a->repeat && !a->gen.quiet; run++)
        fprintf(stderr, "vae-decode: forward %.2f s for %lld latents, %d thread%s\n", seconds[run], (long long)s.shape[0],
                num_threads(), num_threads() > 1 ? "s" : "");
    free(seconds);
    free(latents);
    free(images);
    t2v_free(m);
    return 0;
}

static int cmd_vae_encode(Args *a) {
    T2VModel *m = start_command(a, "vae-encode", 3, 4, 2);
    const VAE *v = m->vae;
    const int scale = t2v_vae_scale_factor(m);
    Shape s;
    float *images = load_nchw(a->positional[1], v->in_channels, 8192, "(N, 3, H, W)", &s), *mean, *logvar;
    size_t latent_n;
    if (s.shape[2] % scale || s.shape[3] % scale)
        t2v_die("vae-encode: H and W must be multiples of %d (got %lldx%lld)", scale, (long long)s.shape[2], (long long)s.shape[3]);
    latent_n = shape_numel(&s) / (size_t)(scale * scale) / v->in_channels * v->latent_channels;
    mean = alloc_floats(latent_n, "latents");
    logvar = alloc_floats(latent_n, "latents");
    t2v_vae_encode(m, images, (int)s.shape[0], (int)s.shape[2], (int)s.shape[3], mean, logvar);
    s.shape[1] = v->latent_channels;
    s.shape[2] /= scale;
    s.shape[3] /= scale;
    check_finite(mean, latent_n, "the latent mean");
    check_finite(logvar, latent_n, "the latent log-variance");
    npy_save(a->positional[2], mean, 0, &s);
    if (a->n_positional == 4) npy_save(a->positional[3], logvar, 0, &s);
    free(images);
    free(mean);
    free(logvar);
    t2v_free(m);
    return 0;
}

static long long count_parameters(const T2VModel *m, const char *component) {
    long long n = 0;
    int i;
    size_t len = strlen(component);
    for (i = 0; i < m->n_tensors; i++)
        if (!strncmp(m->tensors[i].name, component, len) && m->tensors[i].name[len] == '/') {
            long long k = 1;
            int d;
            for (d = 0; d < m->tensors[i].ndim; d++) k *= m->tensors[i].shape[d];
            n += k;
        }
    return n;
}

static const char *build_features(void) {
    return ""
#ifdef _OPENMP
        "OpenMP"
#else
        "no OpenMP"
#endif
#if defined(__AVX512F__)
        ", AVX-512"
#endif
#if defined(__AVX2__)
        ", AVX2"
#endif
#if defined(__FMA__)
        ", FMA"
#endif
#if T2V_INT8_SIMD
        ", AVX-512 VNNI"
#endif
#if defined(__ARM_NEON) || defined(__ARM_NEON__)
        ", NEON"
#endif
        ;
}

/* Video-to-video: the input frames from --init-video (Y4M) or --init-frames (.npy). They fix the output's size,
 * frame count and (for Y4M, unless --fps) frame rate; VideoToVideoSDPipeline's defaults apply. */
static float *load_init_video(Args *a, int scale) {
    T2VGenerateOptions *g = &a->gen;
    Video v;
    if (a->init_video_path && a->init_frames_path) t2v_die("give --init-video or --init-frames, not both");
    if (a->latents_path) t2v_die("video-to-video starts from the encoded video: --latents does not apply");
    if (a->init_video_path) {
        v = read_y4m(a->init_video_path);
    } else {
        const int64_t want[4] = {-1, -1, -1, 3};
        Shape s;
        v.frames = npy_load_expect(a->init_frames_path, &s, 4, want, "(F, H, W, 3), floats in [0, 1]");
        if (s.shape[0] > 4096 || s.shape[1] > 16384 || s.shape[2] > 16384) t2v_die("%s: video too large", a->init_frames_path);
        v.n_frames = (int)s.shape[0];
        v.H = (int)s.shape[1];
        v.W = (int)s.shape[2];
        v.fps_num = 8;
        v.fps_den = 1;
    }
    if ((a->frames_given && g->frames != v.n_frames) || (g->height && g->height != v.H) || (g->width && g->width != v.W))
        t2v_die("video-to-video keeps the input's size (%d frames of %dx%d): resize the input instead of giving "
                "--frames, --height or --width", v.n_frames, v.W, v.H);
    if (v.H % scale || v.W % scale)
        t2v_die("the input video is %dx%d; video-to-video needs a width and height that are multiples of %d: resize "
                "it, e.g. ffmpeg -i IN -vf scale=%d:%d -pix_fmt yuv420p OUT.y4m", v.W, v.H, scale,
                v.W / scale ? v.W / scale * scale : scale, v.H / scale ? v.H / scale * scale : scale);
    g->frames = v.n_frames;
    g->height = v.H;
    g->width = v.W;
    if (!a->guidance_given) g->guidance = 15.0;
    if (!a->strength_given) g->strength = 0.6;
    if (!a->fps_num) {
        a->fps_num = v.fps_num;
        a->fps_den = v.fps_den;
    }
    g->init_frames = v.frames;
    return v.frames;
}

/* --prompt-file / --negative-prompt-file, "-" for standard input: prompts of any length (argv stops at
 * 128 KiB per argument). */
static void read_prompt_files(Args *a) {
    const size_t max_bytes = (size_t)16 << 20;
    if (a->prompt_file && a->gen.prompt) t2v_die("give -p or --prompt-file, not both");
    if (a->negative_prompt_file && a->gen.negative_prompt) t2v_die("give -n or --negative-prompt-file, not both");
    if (a->prompt_file && a->negative_prompt_file && !strcmp(a->prompt_file, "-") && !strcmp(a->negative_prompt_file, "-"))
        t2v_die("--prompt-file and --negative-prompt-file cannot both read standard input");
    if (a->prompt_file) a->gen.prompt = a->prompt_text = read_text_file(a->prompt_file, "prompt file ", max_bytes);
    if (a->negative_prompt_file)
        a->gen.negative_prompt = a->negative_prompt_text = read_text_file(a->negative_prompt_file, "prompt file ", max_bytes);
}

/* --frames-dir: the folder is made now, and no frame file may be an input. */
static void check_frames_dir(const char *dir, int frames) {
    int n;
    make_output_dir(dir, "--frames-dir");
    for (n = 0; n < frames; n++) {
        char path[4096];
        frame_path(dir, n, path, sizeof path);
        refuse_output_equal_to_inputs(path);
    }
}

static int cmd_generate(Args *a) {
    T2VModel *m;
    T2VGenerateOptions *g = &a->gen;
    float *frames, *latents = NULL, *init_frames = NULL;
    int scale;
    double t0 = now_seconds();
    need_positional(a, 1, 1, "generate");
    add_input(a, a->positional[0]);
    protect_inputs(a->inputs, a->n_inputs);
    read_prompt_files(a);
    if (!g->prompt) t2v_die("generate: a prompt is required (-p \"a panda playing a guitar\")");
    check_writable(a->output);
    if (g->dump_dir) make_output_dir(g->dump_dir, "--dump");
    if (a->frames_dir) check_frames_dir(a->frames_dir, g->frames);
    m = t2v_load(a->positional[0]);
    scale = t2v_vae_scale_factor(m);
    if (a->init_video_path || a->init_frames_path) init_frames = load_init_video(a, scale);
    else if (a->strength_given) t2v_die("--strength is for video-to-video (--init-video)");
    if (t2v_is_stable_diffusion(m)) {   /* Text2Video-Zero: TextToVideoZeroPipeline's defaults */
        if (!a->frames_given) g->frames = 8;
        if (!a->guidance_given) g->guidance = 7.5;
        if (!a->scheduler_given)
            g->scheduler = t2v_config(m, "scheduler._class_name") && !strcmp(t2v_config(m, "scheduler._class_name"), "PNDMScheduler")
                ? T2V_SCHEDULER_PNDM : T2V_SCHEDULER_DDIM;
        if (init_frames) t2v_die("--init-video is for ModelScope files; this one holds Stable Diffusion (Text2Video-Zero)");
    } else if (a->zero_option_given) {
        t2v_die("--motion-x, --motion-y, --t0, --t1 and --chunk-size are Text2Video-Zero options, for Stable Diffusion files");
    }
    if (!a->fps_num) a->fps_num = 8;
    if (!g->height) g->height = t2v_config_int(m, "unet.sample_size", 1, 4096) * scale;
    if (!g->width) g->width = t2v_config_int(m, "unet.sample_size", 1, 4096) * scale;
    if (g->height % scale || g->width % scale) t2v_die("--height and --width must be multiples of %d (got %dx%d)", scale, g->width, g->height);
    if (a->random_seed) g->seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    if (a->latents_path) {
        Shape s;
        int64_t want[5];
        char layout[160];
        want[0] = 1;
        want[1] = m->unet->in_channels;
        want[2] = g->frames;
        want[3] = g->height / scale;
        want[4] = g->width / scale;
        snprintf(layout, sizeof layout, "(1, %d, %d, %d, %d) for --frames %d --height %d --width %d", (int)want[1],
                 g->frames, (int)want[3], (int)want[4], g->frames, g->height, g->width);
        latents = npy_load_expect(a->latents_path, &s, 5, want, layout);
        g->latents = latents;
    }
    if (!g->quiet)
        fprintf(stderr, "t2v: %s (unet %.1fM, text encoder %.1fM, vae %.1fM parameters) | %d frames %dx%d | %s, %d steps, "
                "guidance %g | %s %llu | %d thread%s | build: %s\n", a->positional[0],
                count_parameters(m, "unet") / 1e6, count_parameters(m, "text_encoder") / 1e6, count_parameters(m, "vae") / 1e6,
                g->frames, g->width, g->height, g->scheduler == T2V_SCHEDULER_DPM ? "dpm" : g->scheduler == T2V_SCHEDULER_PNDM ? "pndm" : "ddim", g->steps, g->guidance,
                latents ? "latents from" : "seed", latents ? 0ULL : (unsigned long long)g->seed, num_threads(),
                num_threads() > 1 ? "s" : "", build_features());
    if (latents && !g->quiet) fprintf(stderr, "t2v: starting from %s\n", a->latents_path);
    if (init_frames && !g->quiet)
        fprintf(stderr, "t2v: video-to-video from %s, strength %g\n", a->init_video_path ? a->init_video_path : a->init_frames_path,
                g->strength);
    frames = t2v_generate(m, g);
    write_y4m(a->output, frames, g->frames, g->height, g->width, a->fps_num, a->fps_den, a->yuv444);
    if (a->frames_dir) write_ppm_frames(a->frames_dir, frames, g->frames, g->height, g->width);
    if (!g->quiet) fprintf(stderr, "t2v: wrote %s (%d frames, %dx%d, %g fps) in %.1f s\n",
                           strcmp(a->output, "-") ? a->output : "the video to standard output", g->frames, g->width,
                           g->height, (double)a->fps_num / a->fps_den, now_seconds() - t0);
    free(frames);
    free(latents);
    free(init_frames);
    free(a->prompt_text);
    free(a->negative_prompt_text);
    t2v_free(m);
    return 0;
}

#ifndef TESTING
int main(int argc, char **argv) {
    Args a;
    const char *cmd = argc > 1 ? argv[1] : "";
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    atexit(t2v_profile_report);       /* T2V_PROFILE=1: where the time went, printed on exit */
#if T2V_POSIX
    signal(SIGPIPE, SIG_IGN); /* a reader that goes away is a write error (EPIPE) with a message, not a kill */
#endif
    if (argc < 2 || !strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (strlen(cmd) > 4 && !strcmp(cmd + strlen(cmd) - 4, ".t2v")) {
        parse_args(argc - 1, argv + 1, &a); /* t2v MODEL.t2v -p ...: shorthand for generate */
        cmd = "generate";
    } else {
        parse_args(argc - 2, argv + 2, &a);
    }
    if (a.repeat != 1 && strcmp(cmd, "encode-text") && strcmp(cmd, "unet") && strcmp(cmd, "vae-decode"))
        t2v_die("--repeat is for encode-text, unet and vae-decode");
    if (!strcmp(cmd, "generate")) return cmd_generate(&a);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(&a);
    if (!strcmp(cmd, "encode-text")) return cmd_encode_text(&a);
    if (!strcmp(cmd, "unet")) return cmd_unet(&a);
    if (!strcmp(cmd, "vae-decode")) return cmd_vae_decode(&a);
    if (!strcmp(cmd, "vae-encode")) return cmd_vae_encode(&a);
    t2v_die("unknown command '%s' (see t2v --help)", cmd);
    return 1;
}
#endif
