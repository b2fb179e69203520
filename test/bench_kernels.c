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

int main(void) {
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
    return 0;
}
