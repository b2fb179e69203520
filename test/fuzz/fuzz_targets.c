/* Fuzz targets for the code that reads untrusted bytes, one per build (make fuzz, make fuzz-replay):
 *   -DFUZZ_MODEL      a model file: header, config, tensor table, tokenizer and every part's validation
 *   -DFUZZ_NPY        a .npy file (npy_read_f32)
 *   -DFUZZ_CONFIG     the config text and every typed reader of it, the scheduler's included
 *   -DFUZZ_TOKENIZER  a prompt of arbitrary bytes, both clean-ups (the tokenizer of T2V_FUZZ_MODEL)
 *   -DFUZZ_CLI        a command line (NUL-separated arguments) through parse_args
 * Each defines LLVMFuzzerTestOneInput for libFuzzer (clang -fsanitize=fuzzer) or for replay.c, the plain-C
 * driver that runs a corpus where libFuzzer is missing. Compiled with -include test/fuzz/alloc_track.h. An
 * input that t2v refuses is fine (t2v_die jumps back here); a crash, a sanitizer report or a hang is a bug. */
#define TESTING
#include "../../t2v.c"

/* ---- the allocation tracker (alloc_track.h): the live blocks of the current input ---- */

void *(malloc)(size_t);
void *(calloc)(size_t, size_t);
void *(realloc)(void *, size_t);
void (free)(void *);

static void **live;
static size_t n_live, cap_live;
static int tracking;

static void remember(void *p) {
    if (!tracking || !p) return;
    if (n_live == cap_live) {
        void **grown = (void **)(realloc)(live, (cap_live ? cap_live * 2 : 1024) * sizeof *live);
        if (!grown) abort();
        live = grown;
        cap_live = cap_live ? cap_live * 2 : 1024;
    }
    live[n_live++] = p;
}

static void forget(uintptr_t p) { /* by address: the block may be freed already */
    size_t i;
    for (i = n_live; i-- > 0;)
        if ((uintptr_t)live[i] == p) {
            live[i] = live[--n_live];
            return;
        }
}

void *fuzz_malloc(size_t n) { void *p = (malloc)(n); remember(p); return p; }
void *fuzz_calloc(size_t n, size_t size) { void *p = (calloc)(n, size); remember(p); return p; }
void fuzz_free(void *p) { if (p) forget((uintptr_t)p); (free)(p); }
void *fuzz_realloc(void *p, size_t n) {
    void *q;
    if (p) forget((uintptr_t)p);
    q = (realloc)(p, n);
    remember(q ? q : p); /* a failed realloc leaves p allocated */
    return q;
}

static void begin_input(void) { tracking = 1; }

static void end_input(void) {
    while (n_live) (free)(live[--n_live]);
    tracking = 0;
}

/* Runs body(data, size) with t2v_die() caught; everything it allocated is freed after. */
static void run_caught(void (*body)(const uint8_t *, size_t), const uint8_t *data, size_t size) {
    jmp_buf on_error;
    begin_input();
    t2v_die_catch = &on_error;
    if (!setjmp(on_error)) body(data, size);
    t2v_die_catch = NULL;
    end_input();
}

/* A NUL-terminated copy of the input. */
static char *text_of(const uint8_t *data, size_t size) {
    char *s = (char *)xmalloc(size + 1, "fuzz input");
    memcpy(s, data, size);
    s[size] = 0;
    return s;
}

#if defined(FUZZ_MODEL)
/* The input is the start of a model file, followed by zeros up to FILE_BYTES, so that a seed holding only the
 * header of the test model (test/fuzz/make_seeds.py) still has all its tensors inside the file. The buffer is
 * allocated once (untracked) and only the input's bytes are cleared after each run. */
#define FILE_BYTES ((size_t)32 << 20)
static unsigned char *file_buffer;

static void body(const uint8_t *data, size_t size) {
    T2VModel *m = (T2VModel *)xcalloc(1, sizeof(T2VModel), "model");
    if (size > FILE_BYTES) return;
    m->path = "fuzz.t2v";
    m->file = file_buffer;
    m->file_size = FILE_BYTES;
    memcpy(m->file, data, size);
    parse_model(m);
    t2v_free(m);
}
#elif defined(FUZZ_NPY)
static void body(const uint8_t *data, size_t size) {
    Shape s;
    FILE *f = fmemopen((void *)data, size, "rb");
    if (!f) return;
    {   /* fclose even when npy_read_f32 dies: the jump lands after this block with f still open */
        static FILE *open_file;
        jmp_buf here, *outer = t2v_die_catch;
        open_file = f;
        t2v_die_catch = &here;
        if (!setjmp(here)) free(npy_read_f32(f, "fuzz.npy", &s));
        t2v_die_catch = outer;
        fclose(open_file);
    }
}

#elif defined(FUZZ_CONFIG)
static void catch_each(T2VModel *m, int i, int what) {
    jmp_buf here, *outer = t2v_die_catch;
    t2v_die_catch = &here;
    if (!setjmp(here)) {
        char items[MAX_BLOCKS][64];
        int ints[MAX_BLOCKS];
        const char *key = m->config[i].key;
        switch (what) {
        case 0: t2v_config_int(m, key, -1000000, 1000000); break;
        case 1: config_number(m, key, 1e-12, 1e6); break;
        case 2: config_bool(m, key); break;
        case 3: config_list(m, key, items, MAX_BLOCKS); break;
        default: config_ints(m, key, ints, MAX_BLOCKS, 1, MAX_CHANNELS); break;
        }
    }
    t2v_die_catch = outer;
}

static void body(const uint8_t *data, size_t size) {
    T2VModel *m = (T2VModel *)xcalloc(1, sizeof(T2VModel), "model");
    SchedulerConfig c;
    int i, what;
    m->path = "fuzz.t2v";
    parse_config(m, data, size);
    for (i = 0; i < m->n_config; i++)
        for (what = 0; what < 5; what++) catch_each(m, i, what);
    scheduler_config_read(m, T2V_SCHEDULER_DDIM, &c);
    scheduler_config_validate(T2V_SCHEDULER_DDIM, &c);
    scheduler_config_read(m, T2V_SCHEDULER_DPM, &c);
    scheduler_config_validate(T2V_SCHEDULER_DPM, &c);
}

#elif defined(FUZZ_TOKENIZER)
static T2VModel *model;

static void body(const uint8_t *data, size_t size) {
    int32_t ids[4096];
    char *prompt = text_of(data, size);
    int n = t2v_context_length(model);
    t2v_tokenize(t2v_model_tokenizer(model), prompt, T2V_TOKENIZER_DIFFUSERS, ids, n);
    t2v_tokenize(t2v_model_tokenizer(model), prompt, T2V_TOKENIZER_OPENCLIP, ids, n);
}

#elif defined(FUZZ_CLI)
static void body(const uint8_t *data, size_t size) {
    char *text = text_of(data, size), *argv[64];
    int argc = 0;
    size_t i = 0;
    Args a;
    while (i <= size && argc < 64) {  /* arguments are the NUL-separated pieces */
        argv[argc++] = text + i;
        i += strlen(text + i) + 1;
    }
    parse_args(argc, argv, &a);
}
#else
#error "define one of FUZZ_MODEL, FUZZ_NPY, FUZZ_CONFIG, FUZZ_TOKENIZER, FUZZ_CLI"
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
#if defined(FUZZ_MODEL)
    file_buffer = (unsigned char *)xcalloc(FILE_BYTES, 1, "model file"); /* malloc alignment: floats stay aligned */
#endif
#if defined(FUZZ_TOKENIZER)
    {
        const char *path = getenv("T2V_FUZZ_MODEL");
        model = t2v_load(path ? path : "test/out/tiny.t2v");
    }
#endif
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    run_caught(body, data, size);
#if defined(FUZZ_MODEL)
    memset(file_buffer, 0, size < FILE_BYTES ? size : FILE_BYTES);
#endif
    return 0;
}
