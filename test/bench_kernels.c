/* make bench: GFLOP/s of t2v's kernels at the shapes of the full-size UNet (16 frames of 256x256, batch 2),
 * against the machine's measured peak (an FMA-bound loop), then attention (blocked, and its reference) at the
 * shapes of ModelScope at 256x256 and SD at 512x512. Includes t2v.c (TESTING leaves out main). */
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
        matmul(o, a, w, T2V_F32, b, M, K, N);
        if (now_seconds() - t0 < best) best = now_seconds() - t0;
    }
    *gflops = 2.0 * M * K * N / best / 1e9;
    free(a); free(w); free(b); free(o);
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

int main(int argc, char **argv) {
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
    double peak;
    size_t i;
    if (argc > 1 && !strcmp(argv[1], "attention")) { /* bench_kernels attention: that table alone */
        bench_attention();
        return 0;
    }
    peak = measure_peak() / 1e9;
    printf("peak (the micro-kernel on data in L1, %d threads): %.0f GFLOP/s\n", num_threads(), peak);
    printf("%-36s %22s %9s %8s %7s\n", "matmul", "M x K x N", "ms", "GFLOP/s", "% peak");
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        double g, t = time_matmul(shapes[i].M, shapes[i].K, shapes[i].N, &g);
        char dims[64];
        snprintf(dims, sizeof dims, "%d x %d x %d", shapes[i].M, shapes[i].K, shapes[i].N);
        printf("%-36s %22s %9.2f %8.1f %6.0f%%\n", shapes[i].what, dims, t * 1e3, g, 100.0 * g / peak);
    }
    bench_attention();
    return 0;
}
