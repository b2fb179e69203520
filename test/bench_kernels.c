/* make bench: GFLOP/s of t2v's kernels at the shapes of the full-size UNet (16 frames of 256x256, batch 2),
 * against the machine's measured peak (an FMA-bound loop), then attention (blocked, and its reference) at the
 * shapes of ModelScope at 256x256 and SD at 512x512. Includes t2v.c (TESTING leaves out main). */
#define TESTING
#include "../t2v.c"
#include <dlfcn.h>

static float *filled(size_t n) {
    float *p = alloc_floats(n, "bench");
    size_t i;
    for (i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return p;
}

/* The machine's FMA peak: 12 independent multiply-add chains, each one vector of the widest width the build
 * targets (t2v.c's MM_VL: 16 floats with AVX-512, 8 otherwise), enough to cover the FMA latency on every pipe, on
 * every thread at once. Nothing is loaded, so only the FMA units limit it. The chains are spelled out one by one, as
 * the matmul's micro-kernel is, so that gcc keeps each in a register (a loop over chains makes it load and store
 * them). */
#define PEAK_LANES MM_VL
#define PEAK_CHAINS_(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define PEAK_DECL_(c) float chain##c[PEAK_LANES];
#define PEAK_INIT_(c) for (l = 0; l < PEAK_LANES; l++) chain##c[l] = (float)c;
#define PEAK_STEP_(c) for (l = 0; l < PEAK_LANES; l++) chain##c[l] = MM_FMA(chain##c[l], mul, add[l]);
#define PEAK_SUM_(c) for (l = 0; l < PEAK_LANES; l++) total += chain##c[l];

static float fma_chains(long reps, int seed) {
    PEAK_CHAINS_(PEAK_DECL_)
    float mul = 0.999999f, add[PEAK_LANES], total = 0.0f;
    long r;
    int l;
    for (l = 0; l < PEAK_LANES; l++) add[l] = 1e-6f * (float)(l + seed);
    PEAK_CHAINS_(PEAK_INIT_)
    for (r = 0; r < reps; r++) {
        PEAK_CHAINS_(PEAK_STEP_)
    }
    PEAK_CHAINS_(PEAK_SUM_)
    return total;
}

/* The FMA loop's rate over one window of reps steps per thread */
static double fma_window(int threads, long reps) {
    const double t0 = now_seconds();
    float total = 0.0f;
    int t;
    PARALLEL_FOR(num_threads(threads) schedule(static) reduction(+ : total))
    for (t = 0; t < threads; t++) total += fma_chains(reps, t);
    if (total == 12345.0f) printf(" ");
    return 2.0 * 12 * PEAK_LANES * reps * threads / (now_seconds() - t0);
}

/* One window of about 40 ms per thread; the best of `windows` of them. On a virtual machine a vCPU is now and then
 * descheduled or slowed by other guests, which makes a single short window read low. */
static double measure_fma_peak(int threads, int windows) {
    double best = 0.0;
    int w;
    for (w = 0; w < windows; w++) {
        const double rate = fma_window(threads, 40000000L / PEAK_LANES);
        if (rate > best) best = rate;
    }
    return best;
}

static int compare_doubles(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* What the loop holds for as long as a forward runs: the median of windows of about 1 s (25 of the peak's). On the
 * shared VM this was measured on, it read 242-298 GFLOP/s on 2 threads in one hour and 330 in another, where the
 * best 40 ms window read 350 and 342. */
static double measure_fma_held(int threads, int windows) {
    double rates[16];
    int w;
    if (windows > 16) windows = 16;
    for (w = 0; w < windows; w++) rates[w] = fma_window(threads, 25 * (40000000L / PEAK_LANES));
    qsort(rates, (size_t)windows, sizeof rates[0], compare_doubles);
    return (rates[(windows - 1) / 2] + rates[windows / 2]) / 2;
}

/* A tuned BLAS at the same shapes, as a yardstick of what this machine gives a matrix product (the FMA loop's peak
 * has no memory traffic at all): cblas_sgemm from the library BENCH_BLAS_LIB names (bench.py sets it to an OpenBLAS
 * when BENCH_BLAS has one; OPENBLAS_CORETYPE picks its kernels), loaded at run time so that nothing is linked. */
typedef void (*CblasSgemm)(int order, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a,
                           int lda, const float *b, int ldb, float beta, float *c, int ldc);
static CblasSgemm blas_sgemm;
static char blas_name[160];

static void *blas_symbol(void *lib, const char *name, void *fn_pointer, size_t size) {
    void *sym = dlsym(lib, name);
    if (sym) memcpy(fn_pointer, &sym, size); /* ISO C has no cast from an object pointer to a function pointer */
    return sym;
}

static void load_blas(void) {
    const char *path = getenv("BENCH_BLAS_LIB");
    void (*set_threads)(int) = NULL;
    char *(*corename)(void) = NULL;
    void *lib;
    if (!path || !*path) return;
    lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib || !blas_symbol(lib, "cblas_sgemm", &blas_sgemm, sizeof blas_sgemm)) {
        printf("(no BLAS yardstick: %s)\n", lib ? "no cblas_sgemm" : dlerror());
        blas_sgemm = NULL;
        return;
    }
    if (blas_symbol(lib, "openblas_set_num_threads", &set_threads, sizeof set_threads)) set_threads(num_threads());
    snprintf(blas_name, sizeof blas_name, "%s", path);
    if (blas_symbol(lib, "openblas_get_corename", &corename, sizeof corename))
        snprintf(blas_name, sizeof blas_name, "OpenBLAS, %s kernels", corename());
}

/* best of 3 runs of t2v's matmul and, interleaved with them, of the BLAS's sgemm on the same operands (out = a w^T,
 * w stored [N][K] as nn.Linear keeps it; the BLAS without the bias, which is N adds per row) */
static double time_matmul(int M, int K, int N, double *gflops, double *blas_gflops) {
    float *a = filled((size_t)M * K), *w = filled((size_t)N * K), *b = filled((size_t)N), *o = alloc_floats((size_t)M * N, "bench");
    double best = 1e30, blas_best = 1e30;
    int r;
    for (r = 0; r < 3; r++) {
        double t0 = now_seconds();
        const StoredWeight sw = float32_weight(w);
        matmul(o, a, &sw, b, M, K, N);
        if (now_seconds() - t0 < best) best = now_seconds() - t0;
        if (blas_sgemm) {
            t0 = now_seconds();
            blas_sgemm(101 /* row major */, 111 /* a as is */, 112 /* w transposed */, M, N, K, 1.0f, a, K, w, K, 0.0f,
                       o, N);
            if (now_seconds() - t0 < blas_best) blas_best = now_seconds() - t0;
        }
    }
    *gflops = 2.0 * M * K * N / best / 1e9;
    *blas_gflops = blas_sgemm ? 2.0 * M * K * N / blas_best / 1e9 : 0.0;
    free(a); free(w); free(b); free(o);
    return best;
}

/* a 3x3 (or temporal) convolution as the UNet runs it: from its padded input, read in place */
/* best of 3 runs of one convolution, directly (implicit GEMM) or by Winograd's transforms; GFLOP/s counts the
 * direct convolution's multiply-adds either way (Winograd's products do 4/9 or 2/3 of them) */
static double time_conv(int frames, int H, int W, int C, int O, int temporal, int winograd, double *gflops) {
    const size_t tokens = (size_t)frames * H * W;
    float *in = filled(tokens * C), *w = filled((size_t)O * C * (temporal ? 3 : 9)), *b = filled((size_t)O);
    float *out = alloc_floats(tokens * O, "bench");
    double best = 1e30;
    Arena a;
    ConvInput x;
    Conv c;
    int r;
    memset(&a, 0, sizeof a);
    c.in = C; c.out = O; c.kh = 3; c.kw = temporal ? 1 : 3; c.w = float32_weight(w); c.b = b;
    x = temporal ? conv_input_temporal(&a, &c, 2, frames / 2, (size_t)H * W) : conv_input_3x3(&a, &c, frames, H, W);
    conv_input_fill(&x, in, tokens);
    for (r = 0; r < 3; r++) {
        double t0 = now_seconds();
        if (temporal) {
            if (winograd) conv_temporal_winograd(&a, &c, &x, out, 2, frames / 2, (size_t)H * W);
            else conv_temporal_direct(&a, &c, &x, out, 2, frames / 2, (size_t)H * W);
        } else {
            if (winograd) conv2d_3x3_winograd(&a, &c, &x, out, frames, H, W);
            else conv2d_3x3_direct(&a, &c, &x, out, frames, H, W);
        }
        if (now_seconds() - t0 < best) best = now_seconds() - t0;
    }
    *gflops = 2.0 * tokens * C * (temporal ? 3 : 9) * O / best / 1e9;
    free(in); free(w); free(b); free(out);
    arena_free(&a);
    return best;
}

typedef void (*AttentionFn)(Arena *, float *, const float *, const float *, const float *, int, int, int, int, int,
                            int);

/* best of `reps` runs; GFLOP/s counts the two products, 4 n_q n_kv head_dim per (sequence, head) */
static double time_attention(AttentionFn fn, int n_seq, int n_q, int n_kv, int kv_seqs, int heads, int hd, int reps,
                             double *gflops) {
    const size_t inner = (size_t)heads * hd;
    float *q = filled((size_t)n_seq * n_q * inner), *k = filled((size_t)kv_seqs * n_kv * inner);
    float *v = filled((size_t)kv_seqs * n_kv * inner), *o = alloc_floats((size_t)n_seq * n_q * inner, "bench");
    double best = 1e30;
    Arena a;
    int r;
    memset(&a, 0, sizeof a);
    for (r = 0; r < reps; r++) {
        double t0 = now_seconds();
        fn(&a, o, q, k, v, n_seq, n_q, n_kv, n_seq / kv_seqs, heads, hd);
        if (now_seconds() - t0 < best) best = now_seconds() - t0;
    }
    *gflops = 4.0 * n_seq * heads * (double)n_q * n_kv * hd / best / 1e9;
    free(q); free(k); free(v); free(o);
    arena_free(&a);
    return best;
}

static void bench_attention(void) {
    /* n_seq query sequences over kv_seqs key/value sequences (cross-attention: one text per batch item) */
    static const struct { const char *what; int n_seq, n_q, n_kv, kv_seqs, heads, hd; } shapes[] = {
        {"SD 512x512 level 1 self", 2, 4096, 4096, 2, 8, 40},
        {"SD 512x512 level 1 cross", 2, 4096, 77, 2, 8, 40},
        {"SD 512x512 level 2 self", 2, 1024, 1024, 2, 8, 80},
        {"SD 512x512 level 3 self", 2, 256, 256, 2, 8, 160},
        {"SD 512x512 level 3 cross", 2, 256, 77, 2, 8, 160},
        {"MS 256x256 level 1 self (4 of 32 fr)", 4, 1024, 1024, 4, 5, 64},
        {"MS 256x256 level 1 cross (4 of 32)", 4, 1024, 77, 2, 5, 64},
        {"MS 256x256 level 2 self (32 fr)", 32, 256, 256, 32, 10, 64},
        {"VAE mid 256x256 (1 head of 512)", 1, 1024, 1024, 1, 1, 512},
    };
    size_t i;
    printf("\n%-38s %26s %9s %8s %9s %8s %7s\n", "attention (blocked vs reference)", "seqs x n_q x n_kv x h x d",
           "ms", "GFLOP/s", "ref ms", "GFLOP/s", "speedup");
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        double g_fast, g_ref, t_fast, t_ref;
        char dims[64];
        t_ref = time_attention(attention_reference, shapes[i].n_seq, shapes[i].n_q, shapes[i].n_kv, shapes[i].kv_seqs,
                               shapes[i].heads, shapes[i].hd, 2, &g_ref);
        t_fast = time_attention(attention, shapes[i].n_seq, shapes[i].n_q, shapes[i].n_kv, shapes[i].kv_seqs,
                                shapes[i].heads, shapes[i].hd, 2, &g_fast);
        snprintf(dims, sizeof dims, "%d x %d x %d x %d x %d", shapes[i].n_seq, shapes[i].n_q, shapes[i].n_kv,
                 shapes[i].heads, shapes[i].hd);
        printf("%-38s %26s %9.2f %8.1f %9.2f %8.1f %6.2fx\n", shapes[i].what, dims, t_fast * 1e3, g_fast, t_ref * 1e3,
               g_ref, t_ref / t_fast);
    }
}

/* int8 weights at the UNet's shapes: float32 weights, int8 weights in float math (--int8-math float), int8
 * arithmetic (--int8-math int: the SIMD kernel where built, else the portable one). */
static double time_int8(int M, int K, int N, int math, double *gflops) {
    float *a = filled((size_t)M * K), *w = filled((size_t)N * K), *b = filled((size_t)N), *o = alloc_floats((size_t)M * N, "bench");
    const int G = K % 64 ? 32 : 64;
    int8_t *q = (int8_t *)xmalloc((size_t)N * K, "bench");
    float *scales = alloc_floats((size_t)N * K / G, "bench");
    StoredWeight sw = float32_weight(w);
    double best = 1e30;
    size_t i;
    int r;
    for (i = 0; i < (size_t)N * K / G; i++) scales[i] = 0.5f / 127.0f;
    for (i = 0; i < (size_t)N * K; i++) q[i] = (int8_t)lrintf(w[i] * 254.0f);
    if (math >= 0) {
        sw.data = q;
        sw.scales = scales;
        sw.dtype = T2V_I8;
        sw.group_size = G;
        t2v_set_int8_math(math ? T2V_INT8_MATH_INT : T2V_INT8_MATH_FLOAT);
    }
    for (r = 0; r < 3; r++) {
        double t0 = now_seconds();
        matmul(o, a, &sw, b, M, K, N);
        if (now_seconds() - t0 < best) best = now_seconds() - t0;
    }
    *gflops = 2.0 * M * K * N / best / 1e9;
    free(a); free(w); free(b); free(o); free(q); free(scales);
    return best;
}

static void bench_int8(void) {
    static const struct { const char *what; int M, K, N; } shapes[] = {
        {"conv 3x3, 320 -> 1280 rows 2048", 2048, 2880, 1280},
        {"conv 3x3, 640 -> 1280 rows 2048", 2048, 5760, 1280},
        {"conv 3x3, 1280 ch, 8x8", 2048, 11520, 1280},
        {"linear 1280 -> 1280", 2048, 1280, 1280},
        {"text encoder fc1 77x1024x4096", 77, 1024, 4096},
        {"linear 1280 -> 1280, 128 rows", 128, 1280, 1280},
    };
    size_t i;
    printf("int8 weights (%d threads; int8 math kernel: %s)\n", num_threads(),
           T2V_INT8_SIMD ? "AVX-512 VNNI" : "portable C");
    printf("%-36s %22s %12s %16s %14s\n", "matmul", "M x K x N", "f32 GFLOP/s", "int8-float GF/s", "int8-int GF/s");
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        double g32, gf, gi;
        char dims[64];
        time_int8(shapes[i].M, shapes[i].K, shapes[i].N, -1, &g32);
        time_int8(shapes[i].M, shapes[i].K, shapes[i].N, 0, &gf);
        time_int8(shapes[i].M, shapes[i].K, shapes[i].N, 1, &gi);
        snprintf(dims, sizeof dims, "%d x %d x %d", shapes[i].M, shapes[i].K, shapes[i].N);
        printf("%-36s %22s %12.1f %9.1f (%.2fx) %7.1f (%.2fx)\n", shapes[i].what, dims, g32, gf, gf / g32, gi, gi / g32);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "int8")) { /* bench_kernels int8: only the int8 table */
        bench_int8();
        return 0;
    }
    static const struct { const char *what; int M, K, N; } shapes[] = {
        {"conv 3x3 patches, 320 ch, 32x32", 32768, 2880, 320},
        {"conv 3x3 patches, 640 ch, 16x16", 8192, 5760, 640},
        {"conv 3x3 patches, 1280 ch, 8x8", 2048, 11520, 1280},
        {"temporal conv, 320 ch", 32768, 960, 320},
        {"linear 320 -> 320 (proj, q/k/v)", 32768, 320, 320},
        {"GEGLU 640 -> 5120", 8192, 640, 5120},
        {"FF out 2560 -> 640", 8192, 2560, 640},
        {"attention scores 1024x64x1024", 1024, 64, 1024},
        {"attention P.V 1024x1024x64", 1024, 1024, 64},
        {"text encoder fc1 77x1024x4096", 77, 1024, 4096},
    };
    static const struct { const char *what; int H, W, C, temporal; } convs[] = {
        {"conv 3x3, 320 ch, 32x32", 32, 32, 320, 0},
        {"conv 3x3, 640 ch, 16x16", 16, 16, 640, 0},
        {"conv 3x3, 1280 ch, 8x8", 8, 8, 1280, 0},
        {"temporal conv (3,1,1), 320 ch, 32x32", 32, 32, 320, 1},
    };
    double peak1, peak;
    size_t i;
    if (argc > 1 && !strcmp(argv[1], "attention")) { /* bench_kernels attention: that table alone */
        bench_attention();
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "peak")) { /* bench_kernels peak: the FMA peak alone, as bench.py takes it
                                                 * beside each stage */
        printf("FMA peak: %.1f GFLOP/s on %d thread%s\n", measure_fma_peak(num_threads(), 10) / 1e9, num_threads(),
               num_threads() == 1 ? "" : "s");
        return 0;
    }
    peak1 = measure_fma_peak(1, 10) / 1e9;
    peak = measure_fma_peak(num_threads(), 10) / 1e9;
    printf("FMA peak (12 independent chains of %d floats, best of 10 windows of 40 ms): %.1f GFLOP/s on 1 thread, %.1f GFLOP/s on %d threads\n",
           PEAK_LANES, peak1, peak, num_threads());
    printf("the same loop held for 1 s (median of 10 windows): %.1f GFLOP/s on %d threads; %% peak below is of the 40 ms peak\n",
           measure_fma_held(num_threads(), 10) / 1e9, num_threads());
    load_blas();
    if (blas_sgemm) printf("BLAS yardstick: cblas_sgemm of %s, %d threads, interleaved with t2v's runs\n", blas_name, num_threads());
    printf("%-36s %22s %9s %8s %7s%s\n", "matmul", "M x K x N", "ms", "GFLOP/s", "% peak",
           blas_sgemm ? "  BLAS GF/s  % peak" : "");
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        double g, gb, t = time_matmul(shapes[i].M, shapes[i].K, shapes[i].N, &g, &gb);
        char dims[64];
        snprintf(dims, sizeof dims, "%d x %d x %d", shapes[i].M, shapes[i].K, shapes[i].N);
        printf("%-36s %22s %9.2f %8.1f %6.0f%%", shapes[i].what, dims, t * 1e3, g, 100.0 * g / peak);
        if (blas_sgemm) printf(" %11.1f %6.0f%%", gb, 100.0 * gb / peak);
        printf("\n");
    }
    printf("%-36s %22s %9s %8s %7s %9s %8s %7s\n", "convolution: implicit GEMM | Winograd", "frames x H x W, C -> O",
           "ms", "GFLOP/s", "% peak", "ms", "GFLOP/s", "% peak");
    for (i = 0; i < sizeof convs / sizeof convs[0]; i++) {
        double g, gw, t = time_conv(32, convs[i].H, convs[i].W, convs[i].C, convs[i].C, convs[i].temporal, 0, &g);
        double tw = time_conv(32, convs[i].H, convs[i].W, convs[i].C, convs[i].C, convs[i].temporal, 1, &gw);
        char dims[64];
        snprintf(dims, sizeof dims, "32 x %d x %d, %d -> %d", convs[i].H, convs[i].W, convs[i].C, convs[i].C);
        printf("%-36s %22s %9.2f %8.1f %6.0f%% %9.2f %8.1f %6.0f%%\n", convs[i].what, dims, t * 1e3, g,
               100.0 * g / peak, tw * 1e3, gw, 100.0 * gw / peak);
    }
    printf("(GFLOP/s counts a direct convolution's operations; Winograd's products do 4/9 of them for a 3x3\n"
           " convolution and 2/3 for a temporal one, so its rates are effective ones)\n");
    bench_attention();
    printf("\n");
    bench_int8();
    return 0;
}
