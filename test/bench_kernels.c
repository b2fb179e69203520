/* make bench: GFLOP/s of t2v's kernels at the shapes of the full-size UNet (16 frames of 256x256, batch 2),
 * against the machine's measured peak (an FMA-bound loop). Includes t2v.c (TESTING leaves out main). */
#define TESTING
#include "../t2v.c"

static float *filled(size_t n) {
    float *p = alloc_floats(n, "bench");
    size_t i;
    for (i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return p;
}

/* The machine's attainable peak: the matmul micro-kernel on operands that stay in L1 (so only the FMA units
 * limit it), on every thread at once. On Zen 4 this is ~32 FLOP/cycle/core (2 x 256-bit FMA pipes). */
static double measure_peak(void) {
    enum { KC = 256, REPS = 400000 };
    double t0 = now_seconds(), flops;
    int threads = num_threads(), t;
    float total = 0.0f;
    PARALLEL_FOR(schedule(static) reduction(+ : total))
    for (t = 0; t < threads; t++) {
        float a[MM_MR * KC], b[KC * MM_NR]; /* per thread, in its L1 */
        float c[MM_MR * MM_NR];
        int i, r;
        for (i = 0; i < MM_MR * KC; i++) a[i] = 1e-3f * (float)(i % 7);
        for (i = 0; i < KC * MM_NR; i++) b[i] = 1e-3f * (float)(i % 5);
        for (i = 0; i < MM_MR * MM_NR; i++) c[i] = 0.0f;
        for (r = 0; r < REPS; r++) mm_kernel(KC, a, KC, b, c, MM_NR, 1, NULL);
        total += c[3];
    }
    flops = 2.0 * KC * MM_MR * MM_NR * REPS * threads / (now_seconds() - t0);
    if (total == 12345.0f) printf(" ");
    return flops;
}

static double time_matmul(int M, int K, int N, double *gflops) {
    float *a = filled((size_t)M * K), *w = filled((size_t)N * K), *b = filled((size_t)N), *o = alloc_floats((size_t)M * N, "bench");
    double best = 1e30;
    int r;
    for (r = 0; r < 3; r++) {
        double t0 = now_seconds();
        const StoredWeight sw = float32_weight(w);
        matmul(o, a, &sw, b, M, K, N);
        if (now_seconds() - t0 < best) best = now_seconds() - t0;
    }
    *gflops = 2.0 * M * K * N / best / 1e9;
    free(a); free(w); free(b); free(o);
    return best;
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
        {"conv 3x3, 320 ch, 32x32 (im2col)", 32768, 2880, 320},
        {"conv 3x3, 640 ch, 16x16", 8192, 5760, 640},
        {"conv 3x3, 1280 ch, 8x8", 2048, 11520, 1280},
        {"temporal conv, 320 ch", 32768, 960, 320},
        {"linear 320 -> 320 (proj, q/k/v)", 32768, 320, 320},
        {"GEGLU 640 -> 5120", 8192, 640, 5120},
        {"FF out 2560 -> 640", 8192, 2560, 640},
        {"attention scores 1024x64x1024", 1024, 64, 1024},
        {"attention P.V 1024x1024x64", 1024, 1024, 64},
        {"text encoder fc1 77x1024x4096", 77, 1024, 4096},
    };
    double peak = measure_peak() / 1e9;
    size_t i;
    printf("peak (the micro-kernel on data in L1, %d threads): %.0f GFLOP/s\n", num_threads(), peak);
    printf("%-36s %22s %9s %8s %7s\n", "matmul", "M x K x N", "ms", "GFLOP/s", "% peak");
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        double g, t = time_matmul(shapes[i].M, shapes[i].K, shapes[i].N, &g);
        char dims[64];
        snprintf(dims, sizeof dims, "%d x %d x %d", shapes[i].M, shapes[i].K, shapes[i].N);
        printf("%-36s %22s %9.2f %8.1f %6.0f%%\n", shapes[i].what, dims, t * 1e3, g, 100.0 * g / peak);
    }
    printf("\n");
    bench_int8();
    return 0;
}
