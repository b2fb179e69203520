/* Unit tests of t2v.c's building blocks against naive loops and closed forms.
 * Includes t2v.c itself (TESTING leaves out main) so internal functions can be tested. */
#define TESTING
#include "../t2v.c"

static int failures = 0;

static void report(const char *name, double err, double bound) {
    int ok = err <= bound;
    printf("  %-52s max err %.3e  bound %.1e  %s\n", name, err, bound, ok ? "OK" : "FAIL");
    if (!ok) failures++;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) / 8388608.0 - 1.0);
}

static float *random_floats(size_t n) {
    float *p = alloc_floats(n, "test");
    size_t i;
    for (i = 0; i < n; i++) p[i] = frand();
    return p;
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
    double err = 0.0, scale = 1e-30;
    size_t i;
    for (i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > err) err = d;
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
    }
    return err / scale;
}

static void test_matmul(void) {
    /* (M, K, N): tiny, odd and edge-tile shapes, and ones that cross the blocking (several K blocks, several N
     * blocks, both); 33, 77 and 128 rows read w in place (mm_swapped_run); 1024 rows and more (plain products
     * keep the same blocking there: convolutions' whole-tap blocks are tested below); N = NR + MM_NARROW ends on a
     * panel that the narrow kernel writes in place (as 128 channels do) */
    static const int shapes[][3] = {{1, 1, 1}, {1, 7, 3}, {5, 4, 4}, {77, 32, 64}, {33, 65, 17}, {128, 288, 32},
                                    {64, 1024, 96}, {7, 5, 130}, {300, 40, 257},
                                    {9, 33, MM_NC + 1}, {33, MM_KC + 1, 40}, {20, 2 * MM_KC + 3, 2 * MM_NC + 5},
                                    {1, 1000, 1536}, {7, 1280, MM_NC + MM_NR + 1}, {1027, 300, 100}, {1024, 4096, 50},
                                    {1027, 300, MM_NR + MM_NARROW}};
    size_t s;
    double worst = 0.0;
    for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *a = random_floats((size_t)M * K), *w = random_floats((size_t)N * K), *b = random_floats((size_t)N);
        float *fast = alloc_floats((size_t)M * N, "t"), *ref = alloc_floats((size_t)M * N, "t");
        const StoredWeight sw = float32_weight(w);
        double e;
        matmul(fast, a, &sw, b, M, K, N);
        matmul_naive(ref, N, a, K, &sw, K, b, M, K, N, 0, 1);
        e = max_rel_diff(fast, ref, (size_t)M * N);
        if (e > worst) worst = e;
        matmul(fast, a, &sw, NULL, M, K, N);
        matmul_naive(ref, N, a, K, &sw, K, NULL, M, K, N, 0, 1);
        e = max_rel_diff(fast, ref, (size_t)M * N);
        if (e > worst) worst = e;
        free(a); free(w); free(b); free(fast); free(ref);
    }
    report("matmul vs naive loop (17 shapes, with/without bias)", worst, 1e-5);
    {   /* row strides and accumulation: one head's queries inside [tokens][heads * head_dim]; 77 rows take the
         * path that reads w in place (mm_swapped_run), 70 the tiled one */
        static const int rows[2] = {70, 77};
        int r;
        for (r = 0; r < 2; r++) {
            const int M = rows[r], K = 24, N = 45, lda = 3 * K, ldw = 2 * K, ldo = N + 7;
            float *a = random_floats((size_t)M * lda), *w = random_floats((size_t)N * ldw), *b = random_floats(N);
            float *fast = random_floats((size_t)M * ldo), *ref = alloc_floats((size_t)M * ldo, "t");
            const StoredWeight sw = float32_weight(w + 5);
            char name[64];
            memcpy(ref, fast, sizeof(float) * M * ldo);
            matmul_ex(fast, ldo, a + K, lda, w + 5, ldw, b, M, K, N, 1);
            matmul_naive(ref, ldo, a + K, lda, &sw, ldw, b, M, K, N, 1, 1);
            snprintf(name, sizeof name, "matmul with row strides, accumulating, vs naive, M %d", M);
            report(name, max_rel_diff(fast, ref, (size_t)M * ldo), 1e-5);
            free(a); free(w); free(b); free(fast); free(ref);
        }
    }
    {   /* the text encoder's shape: 77 rows read w in place; the same rows among 200 are tiled: the same bits */
        const int M = 200, K = 1024, N = 300, few = 77;
        float *a = random_floats((size_t)M * K), *w = random_floats((size_t)N * K), *b = random_floats(N);
        float *many = alloc_floats((size_t)M * N, "t"), *fewer = alloc_floats((size_t)few * N, "t");
        const StoredWeight sw = float32_weight(w);
        matmul(many, a, &sw, b, M, K, N);
        matmul(fewer, a + (size_t)50 * K, &sw, b, few, K, N);
        report("matmul, 77 rows (w in place) and tiled bit-identical",
               memcmp(fewer, many + (size_t)50 * N, (size_t)few * N * sizeof(float)) != 0, 0);
        free(a); free(w); free(b); free(many); free(fewer);
    }
}

/* every one of the 65536 halves against the value computed in double from the IEEE 754 definition
 * (-1)^s * 2^(e-15) * (1 + m/1024), subnormals 2^-14 * m/1024, e = 31: inf or NaN (same sign, payload at the
 * top of float's mantissa): bit for bit */
static void test_half_to_float(void) {
    long bad = 0;
    unsigned v;
    for (v = 0; v < 65536; v++) {
        const int sign = v >> 15, e = (v >> 10) & 31, mant = v & 1023;
        float got = half_to_float((uint16_t)v), want;
        uint32_t gb, wb;
        if (e == 31) {
            wb = (uint32_t)sign << 31 | 0x7f800000u | (uint32_t)mant << 13;
            memcpy(&want, &wb, 4);
        } else {
            double x = e ? ldexp(1.0 + mant / 1024.0, e - 15) : ldexp(mant / 1024.0, -14);
            want = (float)(sign ? -x : x);
        }
        memcpy(&gb, &got, 4);
        memcpy(&wb, &want, 4);
        bad += gb != wb;
    }
    report("half_to_float: all 65536 values bit-exact (NaN, inf, subnormal)", (double)bad, 0.0);
}

/* weights stored as float16 give exactly the same bits as the same values widened to float32, through every
 * path that reads them (blocked packing, tap-major packing, the unblocked loop for tiny products, the naive
 * reference) */
/* K = 1 and 2 through the blocked path: the kernel's first step alone (it starts each chain, from 0 or from the
 * output), and followed only by a last one; with and without bias, and accumulating. Run last, so that its random
 * operands leave the other tests' ones as they were. */
static void test_matmul_short_k(void) {
    static const int shapes[][3] = {{64, 1, 96}, {9, 2, 50}, {40, 1, MM_NR + MM_NARROW}};
    size_t s;
    double worst = 0.0;
    for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *a = random_floats((size_t)M * K), *w = random_floats((size_t)N * K), *b = random_floats((size_t)N);
        float *fast = random_floats((size_t)M * N), *ref = alloc_floats((size_t)M * N, "t");
        const StoredWeight sw = float32_weight(w);
        int accumulate;
        for (accumulate = 0; accumulate < 2; accumulate++) {
            double e;
            memcpy(ref, fast, sizeof(float) * M * N);
            matmul_ex(fast, N, a, K, w, K, accumulate ? NULL : b, M, K, N, accumulate);
            matmul_naive(ref, N, a, K, &sw, K, accumulate ? NULL : b, M, K, N, accumulate, 1);
            e = max_rel_diff(fast, ref, (size_t)M * N);
            if (e > worst) worst = e;
        }
        free(a); free(w); free(b); free(fast); free(ref);
    }
    report("matmul vs naive loop, K = 1 and 2 (3 shapes, bias or accumulating)", worst, 1e-5);
}

static void test_matmul_f16(void) {
    static const int shapes[][4] = {{1, 3, 1, 2}, {33, 65, 1, 17}, {20, 2 * MM_KC + 3, 1, MM_NC + 5},
                                    {9, 40, 9, 37}, {40, 96, 3, 33}, {7, 300, 9, 70}};
    size_t s, i;
    int bad = 0;
    for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], taps = shapes[s][2], K = shapes[s][1] * taps, N = shapes[s][3];
        const size_t nw = (size_t)N * K;
        float *a = random_floats((size_t)M * K), *b = random_floats((size_t)N), *w = alloc_floats(nw, "t");
        float *o32 = alloc_floats((size_t)M * N, "t"), *o16 = alloc_floats((size_t)M * N, "t");
        uint16_t *h = (uint16_t *)xmalloc(nw * 2, "t");
        StoredWeight s32 = float32_weight(w), s16 = float32_weight(NULL);
        for (i = 0; i < nw; i++) { /* random bit patterns: subnormals included; inf/NaN made subnormal */
            rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
            h[i] = (uint16_t)(rng_state >> 48);
            if ((h[i] & 0x7c00) == 0x7c00) h[i] &= 0x83ff;
            w[i] = half_to_float(h[i]);
        }
        s16.data = h;
        s16.dtype = T2V_F16;
        matmul_conv(o32, a, &s32, b, M, K, N, taps);
        matmul_conv(o16, a, &s16, b, M, K, N, taps);
        bad += memcmp(o32, o16, sizeof(float) * M * N) != 0;
        matmul_naive(o32, N, a, K, &s32, K, b, M, K, N, 0, taps);
        matmul_naive(o16, N, a, K, &s16, K, b, M, K, N, 0, taps);
        bad += memcmp(o32, o16, sizeof(float) * M * N) != 0;
        free(a); free(b); free(w); free(o32); free(o16); free(h);
    }
    report("matmul with float16 weights == widened float32 (bits)", bad, 0.0);
}

/* ---- int8 weights ---- */

/* w [N][K] quantised as export.py does: per group of G values of a row, s = max|x| / 127, q = round(x / s) */
static StoredWeight quantise_weight(const float *w, int N, int K, int G) {
    int8_t *q = (int8_t *)xmalloc((size_t)N * K, "t");
    float *scales = alloc_floats((size_t)N * K / G + 1, "t");
    StoredWeight s;
    size_t g;
    for (g = 0; g < (size_t)N * K / G; g++) {
        float amax = 0.0f;
        int k;
        for (k = 0; k < G; k++) amax = fabsf(w[g * G + k]) > amax ? fabsf(w[g * G + k]) : amax;
        scales[g] = amax / 127.0f;
        for (k = 0; k < G; k++) q[g * G + k] = (int8_t)(amax > 0.0f ? lrint(w[g * G + k] / scales[g]) : 0);
    }
    s.data = q;
    s.scales = scales;
    s.dtype = T2V_I8;
    s.group_size = G;
    return s;
}

static void free_weight(StoredWeight *s) {
    free((void *)s->data);
    free((void *)s->scales);
}

/* (M, K, N, G): M = 1, 7, 33 and more than one row tile; N not a multiple of 32, crossing MM_NC; K a multiple
 * of 32 but not 64, one group, several K blocks */
static const int int8_shapes[][4] = {{1, 32, 1, 32}, {7, 96, 17, 32}, {33, 64, 45, 64}, {1, 1280, 70, 64},
                                     {33, 2 * MM_KC + 64, 33, 64}, {100, 160, MM_NC + 37, 32}, {8, 192, 32, 64},
                                     {77, 1024, 96, 64}};

/* --int8-math float: the dequantised panel gives exactly the bits of a float32 weight holding q * s, through the
 * blocked, the unblocked and the naive paths; a convolution's int8 weight, stored (out, taps, in), gives the
 * bits of the float32 one stored (out, in, taps) */
static void test_matmul_int8_float(void) {
    size_t s;
    int bad = 0, taps;
    T2VInt8Math saved = t2v_int8_math();
    t2v_set_int8_math(T2V_INT8_MATH_FLOAT);
    for (s = 0; s < sizeof int8_shapes / sizeof int8_shapes[0]; s++) {
        const int M = int8_shapes[s][0], K = int8_shapes[s][1], N = int8_shapes[s][2], G = int8_shapes[s][3];
        float *a = random_floats((size_t)M * K), *b = random_floats((size_t)N), *w = random_floats((size_t)N * K);
        float *deq = alloc_floats((size_t)N * K, "t"), *o8 = alloc_floats((size_t)M * N, "t");
        float *o32 = alloc_floats((size_t)M * N, "t");
        StoredWeight q = quantise_weight(w, N, K, G), f = float32_weight(deq);
        size_t i;
        for (i = 0; i < (size_t)N * K; i++) deq[i] = weight_at(&q, i);
        matmul(o8, a, &q, b, M, K, N);
        matmul(o32, a, &f, b, M, K, N);
        bad += memcmp(o8, o32, sizeof(float) * M * N) != 0;
        matmul_naive(o8, N, a, K, &q, K, NULL, M, K, N, 0, 1);
        matmul_naive(o32, N, a, K, &f, K, NULL, M, K, N, 0, 1);
        bad += memcmp(o8, o32, sizeof(float) * M * N) != 0;
        free(a); free(b); free(w); free(deq); free(o8); free(o32);
        free_weight(&q);
    }
    for (taps = 3; taps <= 9; taps += 6) {   /* temporal (3 taps) and 3x3 convolutions, 64 channels */
        const int M = 37, C = 64, K = C * taps, N = 40;
        float *a = random_floats((size_t)M * K), *b = random_floats((size_t)N), *w = random_floats((size_t)N * K);
        float *torch_order = alloc_floats((size_t)N * K, "t"), *o8 = alloc_floats((size_t)M * N, "t");
        float *o32 = alloc_floats((size_t)M * N, "t");
        StoredWeight q = quantise_weight(w, N, K, 32), f = float32_weight(torch_order);
        int n, t, c;
        for (n = 0; n < N; n++)  /* w is (out, taps, in): the float32 weight is PyTorch's (out, in, taps) */
            for (t = 0; t < taps; t++)
                for (c = 0; c < C; c++)
                    torch_order[((size_t)n * C + c) * taps + t] = weight_at(&q, ((size_t)n * taps + t) * C + c);
        matmul_conv(o8, a, &q, b, M, K, N, taps);
        matmul_conv(o32, a, &f, b, M, K, N, taps);
        bad += memcmp(o8, o32, sizeof(float) * M * N) != 0;
        free(a); free(b); free(w); free(torch_order); free(o8); free(o32);
        free_weight(&q);
    }
    t2v_set_int8_math(saved);
    report("int8 weights, float math == float32 q*s weights (bits)", bad, 0.0);
}

/* --int8-math int: the portable kernel against its definition (in double, from the same quantised
 * activations); the SIMD kernel, where built, against the portable one bit for bit (with and without bias,
 * accumulating, at 1 and 2 threads); and the integer path against the float path (activation rounding only) */
static void test_matmul_int8_int(void) {
    size_t s;
    double def_err = 0.0, path_err = 0.0;
    int simd_bad = 0, thread_bad = 0;
    T2VInt8Math saved = t2v_int8_math();
    for (s = 0; s < sizeof int8_shapes / sizeof int8_shapes[0]; s++) {
        const int M = int8_shapes[s][0], K = int8_shapes[s][1], N = int8_shapes[s][2], G = int8_shapes[s][3];
        const int Mp = (M + 7) / 8 * 8, groups = K / G;
        float *a = random_floats((size_t)M * K), *b = random_floats((size_t)N), *w = random_floats((size_t)N * K);
        float *port = alloc_floats((size_t)M * N, "t"), *simd = alloc_floats((size_t)M * N, "t");
        float *ref = alloc_floats((size_t)M * N, "t"), *sa = alloc_floats((size_t)Mp * groups, "t");
        unsigned char *ua = (unsigned char *)xmalloc((size_t)Mp * K, "t");
        StoredWeight q = quantise_weight(w, N, K, G);
        int m, n, g, k, acc;
        (void)simd;
        quantise_activations(a, K, M, Mp, K, G, ua, sa);
        for (m = 0; m < M; m++)
            for (n = 0; n < N; n++) {
                double sum = b[n];
                for (g = 0; g < groups; g++) {
                    long dot = 0;
                    for (k = g * G; k < g * G + G; k++) dot += ((long)ua[(size_t)m * K + k] - 128) * ((const int8_t *)q.data)[(size_t)n * K + k];
                    sum += (double)dot * sa[(size_t)m * groups + g] * q.scales[(size_t)n * groups + g];
                }
                ref[(size_t)m * N + n] = (float)sum;
            }
        matmul_int8(port, N, a, K, &q, K, b, M, K, N, 0, 0);
        if (max_rel_diff(port, ref, (size_t)M * N) > def_err) def_err = max_rel_diff(port, ref, (size_t)M * N);
        for (acc = 0; acc < 2; acc++) {
            const float *bias = acc ? NULL : b;
            for (k = 0; k < M * N; k++) port[k] = simd[k] = (float)k * 0.25f;
            matmul_int8(port, N, a, K, &q, K, bias, M, K, N, acc, 0);
#if T2V_INT8_SIMD
            matmul_int8(simd, N, a, K, &q, K, bias, M, K, N, acc, 1);
            simd_bad += memcmp(port, simd, sizeof(float) * M * N) != 0;
#endif
        }
#ifdef _OPENMP
        {
            int threads = omp_get_max_threads();
            omp_set_num_threads(1);
            matmul_int8(simd, N, a, K, &q, K, b, M, K, N, 0, T2V_INT8_SIMD);
            omp_set_num_threads(threads > 1 ? threads : 2);
            matmul_int8(port, N, a, K, &q, K, b, M, K, N, 0, T2V_INT8_SIMD);
            omp_set_num_threads(threads);
            thread_bad += memcmp(port, simd, sizeof(float) * M * N) != 0;
        }
#endif
        t2v_set_int8_math(T2V_INT8_MATH_INT);
        matmul(port, a, &q, b, M, K, N);
        t2v_set_int8_math(T2V_INT8_MATH_FLOAT);
        matmul(ref, a, &q, b, M, K, N);
        if (max_rel_diff(port, ref, (size_t)M * N) > path_err) path_err = max_rel_diff(port, ref, (size_t)M * N);
        free(a); free(b); free(w); free(port); free(simd); free(ref); free(sa); free(ua);
        free_weight(&q);
    }
    t2v_set_int8_math(saved);
    report("int8 math, portable kernel vs its definition (double)", def_err, 1e-5);
#if T2V_INT8_SIMD
    report("int8 math, AVX-512 VNNI kernel == portable kernel (bits)", simd_bad, 0.0);
#else
    (void)simd_bad;
    printf("  (this build has no SIMD int8 kernel: only the portable one is checked)\n");
#endif
    report("int8 math, 1 and 2 threads bit-identical", thread_bad, 0.0);
    report("int8 math vs int8 weights in float math (activation rounding)", path_err, 2e-2);
}

static void test_matmul_conv(void) {
    /* (M, in channels, taps, N): the tap-major reduction against (N, in, taps) weights, across the blocking */
    static const int shapes[][4] = {{1, 1, 9, 1}, {7, 3, 9, 5}, {33, 320, 9, 40}, {9, 100, 9, MM_NC + 1}, {40, 96, 3, 33}};
    size_t s;
    double worst = 0.0;
    for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], C = shapes[s][1], taps = shapes[s][2], N = shapes[s][3], K = C * taps;
        float *a = random_floats((size_t)M * K), *w = random_floats((size_t)N * K), *b = random_floats((size_t)N);
        float *fast = alloc_floats((size_t)M * N, "t"), *ref = alloc_floats((size_t)M * N, "t");
        const StoredWeight sw = float32_weight(w);
        int m, n, t, c;
        double e;
        matmul_conv(fast, a, &sw, b, M, K, N, taps);
        for (m = 0; m < M; m++)   /* in double, straight from the definition: a[m][t][c] * w[n][c][t] */
            for (n = 0; n < N; n++) {
                double sum = b[n];
                for (t = 0; t < taps; t++)
                    for (c = 0; c < C; c++) sum += (double)a[((size_t)m * taps + t) * C + c] * w[((size_t)n * C + c) * taps + t];
                ref[(size_t)m * N + n] = (float)sum;
            }
        e = max_rel_diff(fast, ref, (size_t)M * N);
        if (e > worst) worst = e;
        free(a); free(w); free(b); free(fast); free(ref);
    }
    report("matmul_conv (tap-major reduction) vs its definition", worst, 1e-5);
}

/* direct convolution on channels-last frames, weight (out, in, kh, kw) */
static void conv2d_reference(const Conv *c, const float *in, float *out, int frames, int H, int W, int stride,
                             int pad_t, int pad_l, int Ho, int Wo) {
    int f, y, x, o, i, ky, kx;
    for (f = 0; f < frames; f++)
        for (y = 0; y < Ho; y++)
            for (x = 0; x < Wo; x++)
                for (o = 0; o < c->out; o++) {
                    double sum = c->b[o];
                    for (i = 0; i < c->in; i++)
                        for (ky = 0; ky < c->kh; ky++)
                            for (kx = 0; kx < c->kw; kx++) {
                                int iy = y * stride - pad_t + ky, ix = x * stride - pad_l + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                sum += (double)((const float *)c->w.data)[((o * c->in + i) * c->kh + ky) * c->kw + kx] *
                                       in[(((size_t)f * H + iy) * W + ix) * c->in + i];
                            }
                    out[(((size_t)f * Ho + y) * Wo + x) * c->out + o] = (float)sum;
                }
}

static void test_conv2d(void) {
    /* (k, stride, pad, H, W, in, out) as the UNet and VAE use them */
    static const int cases[][7] = {{3, 1, 1, 5, 7, 3, 4}, {3, 2, 1, 5, 7, 4, 6}, {3, 2, 0, 8, 6, 5, 3},
                                   {1, 1, 0, 4, 4, 6, 5}, {3, 1, 1, 1, 1, 8, 8}, {3, 2, 1, 1, 3, 2, 2},
                                   /* wide enough for the implicit GEMM (rows of W = 8k pixels) */
                                   {3, 1, 1, 5, 16, 16, 9}, {3, 1, 1, 3, 8, 33, 40}, {3, 1, 1, 1, 24, 64, 17}};
    size_t s;
    double worst = 0.0;
    Arena a;
    memset(&a, 0, sizeof a);
    for (s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        const int k = cases[s][0], stride = cases[s][1], pad = cases[s][2], H = cases[s][3], W = cases[s][4];
        const int frames = 3, Ho = pad ? (H + 2 * pad - k) / stride + 1 : (H + (stride == 2) - k) / stride + 1;
        const int Wo = pad ? (W + 2 * pad - k) / stride + 1 : (W + (stride == 2) - k) / stride + 1;
        Conv c;
        float *in, *w, *b, *out, *ref;
        double e;
        c.in = cases[s][5]; c.out = cases[s][6]; c.kh = c.kw = k;
        in = random_floats((size_t)frames * H * W * c.in);
        w = random_floats((size_t)c.out * c.in * k * k);
        b = random_floats((size_t)c.out);
        c.w = float32_weight(w); c.b = b;
        out = alloc_floats((size_t)frames * Ho * Wo * c.out, "t");
        ref = alloc_floats((size_t)frames * Ho * Wo * c.out, "t");
        conv2d(&a, &c, in, out, frames, H, W, stride, pad, pad, Ho, Wo);
        conv2d_reference(&c, in, ref, frames, H, W, stride, pad, pad, Ho, Wo);
        e = max_rel_diff(out, ref, (size_t)frames * Ho * Wo * c.out);
        if (e > worst) worst = e;
        free(in); free(w); free(b); free(out); free(ref);
    }
    report("conv2d (3x3/1x1, stride 1/2, padding 0/1, gathered and implicit) vs direct", worst, 1e-5);
    arena_free(&a);
}

/* 3x3 convolutions with even H and W go through Winograd's F(2x2, 3x3) (conv2d_3x3_winograd): against the direct
 * sum in double, from a plain input (conv2d) and from a padded one (conv2d_3x3_from, W a multiple of MM_MR), at
 * awkward channel counts; and bit for bit the same whatever the chunks of tiles and output channels (a budget so
 * small that both are chunked, in either loop order) and with the weight packed whole or read as stored. */
static void test_conv2d_winograd(void) {
    /* frames, H, W, in, out */
    static const int cases[][5] = {{1, 2, 2, 16, 16}, {3, 4, 6, 17, 23}, {2, 8, 8, 33, 49}, {1, 6, 16, 64, 100},
                                   {2, 2, 2 * MM_MR, 100, MM_NR + 1}, {1, 10, 4, 300, 17}, {4, 4, 8, 769, 20},
                                   {6, 8, 8, 48, 4 * MM_NR}};
    /* the last: 4 chunks of output channels and 2 of tiles, tiles in the outer loop (the others: filters) */
    static const size_t budgets[] = {16 * MM_NR * 40, 16 * MM_NR * 800, 16 * 7 * 40, 16 * MM_NR * 48};
    size_t s, b;
    double worst = 0.0;
    int mismatches = 0, runs = 0;
    Arena a;
    memset(&a, 0, sizeof a);
    for (s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        const int frames = cases[s][0], H = cases[s][1], W = cases[s][2];
        const size_t tokens = (size_t)frames * H * W;
        Conv c;
        PackedPanels p;
        ConvInput x;
        ArenaMark mark;
        float *in, *w, *out, *ref, *other;
        c.in = cases[s][3]; c.out = cases[s][4]; c.kh = c.kw = 3;
        in = random_floats(tokens * c.in);
        w = random_floats((size_t)c.out * c.in * 9);
        c.b = random_floats((size_t)c.out);
        c.w = float32_weight(w);
        out = alloc_floats(tokens * c.out, "t");
        ref = alloc_floats(tokens * c.out, "t");
        other = alloc_floats(tokens * c.out, "t");
        if (!winograd_applies(&c, H % 2 == 0 && W % 2 == 0)) t2v_die("test: the Winograd path does not apply");
        conv2d(&a, &c, in, out, frames, H, W, 1, 1, 1, H, W);
        conv2d_reference(&c, in, ref, frames, H, W, 1, 1, 1, H, W);
        worst = fmax(worst, max_rel_diff(out, ref, tokens * c.out));
        mark = arena_mark(&a);                      /* from a padded input, where the implicit GEMM would read it */
        x = conv_input_3x3(&a, &c, frames, H, W);
        conv_input_fill(&x, in, tokens);
        conv2d_3x3_from(&a, &c, &x, other, frames, H, W);
        mismatches += (W % MM_MR == 0) != x.padded || memcmp(out, other, tokens * c.out * sizeof(float)) != 0;
        arena_reset(&a, mark);
        runs++;
        for (b = 0; b < sizeof budgets / sizeof budgets[0]; b++, runs++) {
            winograd_chunk_floats = budgets[b];
            conv2d(&a, &c, in, other, frames, H, W, 1, 1, 1, H, W);
            mismatches += memcmp(out, other, tokens * c.out * sizeof(float)) != 0;
        }
        winograd_chunk_floats = WINOGRAD_FLOATS;
        memset(&p, 0, sizeof p);                    /* packed whole, as the UNet's weights are */
        p.source = w; p.rows = c.out; p.k = c.in * 9; p.taps = 9;
        mm_pack_whole(&p);
        c.w.packed = &p;
        conv2d(&a, &c, in, other, frames, H, W, 1, 1, 1, H, W);
        mismatches += !p.panels || memcmp(out, other, tokens * c.out * sizeof(float)) != 0;
        runs++;
        free(p.raw); free(in); free(w); free((void *)c.b); free(out); free(ref); free(other);
    }
    report("conv2d 3x3 by Winograd F(2x2, 3x3) vs direct (double)", worst, 1e-5);
    printf("  (%d runs: padded input, chunk budgets, packed weight)\n", runs);
    report("Winograd: runs not identical to the first", mismatches, 0);
    arena_free(&a);
}

/* TemporalConvLayer's convolution from plain [B][F][P][in], as temporal_conv_layer runs it (or always directly) */
static void conv_temporal_as(Arena *a, const Conv *c, const float *in, float *out, int B, int F, size_t P, int direct) {
    const ArenaMark mark = arena_mark(a);
    const ConvInput x = conv_input_temporal(a, c, B, F, P);
    conv_input_fill(&x, in, (size_t)B * F * P);
    if (direct) conv_temporal_direct(a, c, &x, out, B, F, P);
    else conv_temporal_from(a, c, &x, out, B, F, P);
    arena_reset(a, mark);
}

static void conv_temporal(Arena *a, const Conv *c, const float *in, float *out, int B, int F, size_t P) {
    conv_temporal_as(a, c, in, out, B, F, P, 0);
}

/* direct temporal convolution in double on [B][F][P][in], weight (out, in, 3, 1, 1) */
static void conv_temporal_reference(const Conv *c, const float *in, float *out, int B, int F, size_t P) {
    const float *w = (const float *)c->w.data;
    const int C = c->in, O = c->out;
    int bb, f, o, i, dt;
    size_t p;
    for (bb = 0; bb < B; bb++)
        for (f = 0; f < F; f++)
            for (p = 0; p < P; p++)
                for (o = 0; o < O; o++) {
                    double sum = c->b[o];
                    for (i = 0; i < C; i++)
                        for (dt = 0; dt < 3; dt++) {
                            const int sf = f + dt - 1;
                            if (sf >= 0 && sf < F)
                                sum += (double)w[((size_t)o * C + i) * 3 + dt] * in[(((size_t)bb * F + sf) * P + p) * C + i];
                        }
                    out[(((size_t)bb * F + f) * P + p) * O + o] = (float)sum;
                }
}

static void test_conv_temporal_case(int C, size_t P) {
    const int B = 2, F = 5, O = 7;
    float *in = random_floats((size_t)B * F * P * C), *w = random_floats((size_t)O * C * 3), *b = random_floats(O);
    float *out = alloc_floats((size_t)B * F * P * O, "t"), *ref = alloc_floats((size_t)B * F * P * O, "t");
    Conv c;
    Arena a;
    memset(&a, 0, sizeof a);
    c.in = C; c.out = O; c.kh = 3; c.kw = 1; c.w = float32_weight(w); c.b = b;
    conv_temporal(&a, &c, in, out, B, F, P);
    conv_temporal_reference(&c, in, ref, B, F, P);
    report(P % MM_MR ? "temporal conv (3,1,1), gathered, vs direct" : "temporal conv (3,1,1), implicit, vs direct",
           max_rel_diff(out, ref, (size_t)B * F * P * O), 1e-5);
    free(in); free(w); free(b); free(out); free(ref);
    arena_free(&a);
}

static void test_conv_temporal(void) {
    test_conv_temporal_case(6, 3);
    test_conv_temporal_case(24, 2 * MM_MR);
}

/* TemporalConvLayer's convolution with an even number of frames goes through F(2, 3) (conv_temporal_winograd):
 * against the direct sum in double, from a plain input (P not a multiple of MM_MR) and a padded one, at awkward
 * channel counts; bit for bit the same across chunk budgets (both loop orders) and with the weight packed whole. */
static void test_conv_temporal_winograd(void) {
    /* B, F, P, in, out */
    static const int cases[][5] = {{1, 2, 1, 16, 16}, {2, 4, 3, 17, 23}, {2, 6, MM_MR, 33, MM_NR + 1},
                                   {1, 16, 2 * MM_MR, 64, 100}, {3, 2, 5, 300, 17}, {2, 8, MM_MR, 48, 4 * MM_NR}};
    static const size_t budgets[] = {4 * MM_NR * 40, 4 * 7 * 40, 4 * MM_NR * 48};
    size_t s, bu;
    double worst = 0.0;
    int mismatches = 0, runs = 0;
    Arena a;
    memset(&a, 0, sizeof a);
    for (s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        const int B = cases[s][0], F = cases[s][1], C = cases[s][3], O = cases[s][4];
        const size_t P = (size_t)cases[s][2], tokens = (size_t)B * F * P;
        float *in = random_floats(tokens * C), *w = random_floats((size_t)O * C * 3), *bias = random_floats((size_t)O);
        float *out = alloc_floats(tokens * O, "t"), *ref = alloc_floats(tokens * O, "t");
        float *other = alloc_floats(tokens * O, "t");
        PackedPanels p;
        Conv c;
        c.in = C; c.out = O; c.kh = 3; c.kw = 1; c.w = float32_weight(w); c.b = bias;
        if (!winograd_applies(&c, F % 2 == 0)) t2v_die("test: the Winograd path does not apply");
        conv_temporal(&a, &c, in, out, B, F, P);
        conv_temporal_reference(&c, in, ref, B, F, P);
        worst = fmax(worst, max_rel_diff(out, ref, tokens * O));
        for (bu = 0; bu < sizeof budgets / sizeof budgets[0]; bu++, runs++) {
            winograd_chunk_floats = budgets[bu];
            conv_temporal(&a, &c, in, other, B, F, P);
            mismatches += memcmp(out, other, tokens * O * sizeof(float)) != 0;
        }
        winograd_chunk_floats = WINOGRAD_FLOATS;
        memset(&p, 0, sizeof p);
        p.source = w; p.rows = O; p.k = C * 3; p.taps = 3;
        mm_pack_whole(&p);
        c.w.packed = &p;
        conv_temporal(&a, &c, in, other, B, F, P);
        mismatches += !p.panels || memcmp(out, other, tokens * O * sizeof(float)) != 0;
        runs++;
        free(p.raw); free(in); free(w); free(bias); free(out); free(ref); free(other);
    }
    report("temporal conv (3,1,1) by Winograd F(2, 3) vs direct (double)", worst, 1e-5);
    printf("  (%d runs: chunk budgets, packed weight)\n", runs);
    report("temporal Winograd: runs not identical to the first", mismatches, 0);
    arena_free(&a);
}

/* The implicit GEMM reads the padded input in place; the gathered path copies each patch first. Both reduce
 * k = tap * C + channel in the same order, so they agree bit for bit, whatever the blocking (C past MM_KC). (The
 * frames have 3 rows, so that the 3x3 convolutions stay direct: Winograd's needs an even number.) */
static void test_conv_implicit_vs_gathered(void) {
    static const int cases[][5] = {{3, 2 * MM_MR, 16, 9, 0}, {2, MM_MR, 40, 33, 0}, {1, 3 * MM_MR, 1000, 70, 0},
                                   {5, MM_MR, 24, 7, 1}, {7, 2 * MM_MR, 800, 40, 1},
                                   /* MM_WHOLE_TAPS_ROWS rows or more: blocks of whole taps (with the AVX-512 tile: all 9; 5 + 4; 3; 2 + 1),
                                    * against the gathered patches' blocks of K */
                                   {12, 2 * MM_MR, 40, 33, 0}, {11, 2 * MM_MR, 700, 40, 0},
                                   {12, 2 * MM_MR, 40, MM_NR + MM_NARROW, 0}, /* the narrow kernel in place */
                                   {20, 2 * MM_MR, 48, 40, 1}, {20, 2 * MM_MR, 1500, 40, 1},
                                   /* patches past GATHER_FLOATS: the gathered path works in 2 chunks of rows
                                    * (1536 pixels of K = 9 x 1280; 5120 of 3 x 1280), rows of 64 pixels */
                                   {4, 64, 1280, 4, 0}, {20, 64, 1280, 4, 1}};
    size_t s;
    int mismatches = 0;
    Arena a;
    memset(&a, 0, sizeof a);
    for (s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        const int n = cases[s][0], W = cases[s][1], temporal = cases[s][4], H = temporal ? 2 : 3;
        const size_t tokens = (size_t)2 * n * H * W;
        Conv c;
        float *in, *w, *b, *fast, *gathered;
        c.in = cases[s][2]; c.out = cases[s][3]; c.kh = 3; c.kw = temporal ? 1 : 3;
        in = random_floats(tokens * c.in);
        w = random_floats((size_t)c.out * c.in * c.kh * c.kw);
        b = random_floats((size_t)c.out);
        c.w = float32_weight(w); c.b = b;
        fast = alloc_floats(tokens * c.out, "t");
        gathered = alloc_floats(tokens * c.out, "t");
        if (temporal) {     /* 2 videos of n frames of H x W pixels */
            conv_temporal_as(&a, &c, in, fast, 2, n, (size_t)H * W, 1);
            conv_temporal_gathered(&a, &c, in, gathered, 2, n, (size_t)H * W);
        } else {            /* 2n frames of H x W */
            conv2d(&a, &c, in, fast, 2 * n, H, W, 1, 1, 1, H, W);
            conv2d_gathered(&a, &c, in, gathered, 2 * n, H, W, 1, 1, 1, H, W);
        }
        if (memcmp(fast, gathered, tokens * c.out * sizeof(float))) mismatches++;
        free(in); free(w); free(b); free(fast); free(gathered);
    }
    report("conv implicit GEMM vs gathered: cases not identical", mismatches, 0);
    arena_free(&a);
}

/* A weight packed whole beforehand (the UNet's: unet_pack_weights) gives the products the same bits as packing it
 * per block: plain products across the blocking (with few rows, which otherwise read w in place, mm_swapped_run;
 * fewer than MR; many), the tap-major reduction on gathered patches, and convolutions read in place (implicit GEMM),
 * 3x3 and temporal, in blocks of part of a tap and of whole taps. */
static void test_whole_panels(void) {
    static const int products[][4] = {{1, 7, 3, 1}, {5, 40, 70, 1}, {77, 1024, 300, 1}, {128, 288, 32, 1},
                                      {20, 2 * MM_KC + 3, 2 * MM_NC + 5, 1}, {1027, 300, MM_NR + MM_NARROW, 1},
                                      {7, 27, 5, 9}, {33, 2880, 40, 9}, {40, 288, 33, 3}, {9, 900, MM_NC + 1, 9}};
    static const int convs[][5] = {{2, MM_MR, 40, 33, 0}, {1, 3 * MM_MR, 1000, 70, 0}, {12, 2 * MM_MR, 40, 33, 0},
                                   {11, 2 * MM_MR, 700, 40, 0}, {7, 2 * MM_MR, 800, 40, 1}, {20, 2 * MM_MR, 48, 40, 1}};
    size_t s;
    int mismatches = 0, cases = 0;
    Arena a;
    memset(&a, 0, sizeof a);
    for (s = 0; s < sizeof products / sizeof products[0]; s++, cases++) {
        const int M = products[s][0], K = products[s][1], N = products[s][2], taps = products[s][3];
        float *x = random_floats((size_t)M * K), *w = random_floats((size_t)N * K), *b = random_floats((size_t)N);
        float *per_block = alloc_floats((size_t)M * N, "t"), *whole = alloc_floats((size_t)M * N, "t");
        PackedPanels p;
        StoredWeight sw = float32_weight(w);
        memset(&p, 0, sizeof p);
        p.source = w; p.rows = N; p.k = K; p.taps = taps;
        mm_pack_whole(&p);
        matmul_conv(per_block, x, &sw, s % 2 ? NULL : b, M, K, N, taps);
        sw.packed = &p;
        matmul_conv(whole, x, &sw, s % 2 ? NULL : b, M, K, N, taps);
        if (!p.panels || memcmp(per_block, whole, (size_t)M * N * sizeof(float))) mismatches++;
        free(p.raw); free(x); free(w); free(b); free(per_block); free(whole);
    }
    for (s = 0; s < sizeof convs / sizeof convs[0]; s++, cases++) {
        const int n = convs[s][0], W = convs[s][1], temporal = convs[s][4], H = temporal ? 2 : 3;
        const size_t tokens = (size_t)2 * n * H * W;
        Conv c;
        PackedPanels p;
        float *in, *w, *per_block, *whole;
        c.in = convs[s][2]; c.out = convs[s][3]; c.kh = 3; c.kw = temporal ? 1 : 3;
        in = random_floats(tokens * c.in);
        w = random_floats((size_t)c.out * c.in * c.kh * c.kw);
        c.b = random_floats((size_t)c.out);
        per_block = alloc_floats(tokens * c.out, "t");
        whole = alloc_floats(tokens * c.out, "t");
        memset(&p, 0, sizeof p);
        p.source = w; p.rows = c.out; p.k = c.in * c.kh * c.kw; p.taps = c.kh * c.kw;
        mm_pack_whole(&p);
        c.w = float32_weight(w);
        if (temporal) conv_temporal_as(&a, &c, in, per_block, 2, n, (size_t)H * W, 1);
        else conv2d(&a, &c, in, per_block, 2 * n, H, W, 1, 1, 1, H, W);
        c.w.packed = &p;
        if (temporal) conv_temporal_as(&a, &c, in, whole, 2, n, (size_t)H * W, 1);
        else conv2d(&a, &c, in, whole, 2 * n, H, W, 1, 1, 1, H, W);
        if (!p.panels || memcmp(per_block, whole, tokens * c.out * sizeof(float))) mismatches++;
        free(p.raw); free(in); free(w); free((void *)c.b); free(per_block); free(whole);
    }
    printf("  (%d products and convolutions)\n", cases);
    report("weights packed whole vs per block: cases not identical", mismatches, 0);
    arena_free(&a);
}

/* The gathered path's chunks of pixels: as few as GATHER_FLOATS allows, balanced (the last one short by less than
 * their count), at least 64 pixels (fewer only when there are fewer). */
static void test_gathered_chunks(void) {
    static const size_t totals[] = {1, 63, 64, 65, 512, 1536, 5120, 32768, 131072};
    static const int Ks[] = {27, 2880, 3840, 11520, 23040, 1 << 20};
    size_t t, k;
    int wrong = 0;
    for (t = 0; t < sizeof totals / sizeof totals[0]; t++)
        for (k = 0; k < sizeof Ks / sizeof Ks[0]; k++) {
            const size_t total = totals[t], K = (size_t)Ks[k], rows = gathered_chunk_rows(total, (int)K);
            const size_t chunks = rows ? (total + rows - 1) / rows : 0, per_chunk = GATHER_FLOATS / K;
            const size_t fewest = per_chunk ? (total + per_chunk - 1) / per_chunk : total;
            const size_t floor64 = total < 64 ? total : 64;
            if (rows < 1 || rows > total) wrong++;
            else if (rows > floor64 && rows * K > GATHER_FLOATS) wrong++;      /* over the budget without need */
            else if (rows > floor64 && chunks > fewest) wrong++;               /* more chunks than needed */
            else if (rows < floor64) wrong++;
            else if (total - (chunks - 1) * rows + chunks <= rows && rows > floor64) wrong++; /* unbalanced */
        }
    report("gathered convolution: chunks of pixels fewest, balanced, >= 64 (wrong cases)", wrong, 0);
}

/* against the closed form in double, at token counts below, at and past the partial sums' chunks (GN_CHUNK) */
static double group_norm_error(int sets, int C, int G, size_t tokens) {
    float *x = random_floats(sets * tokens * C), *w = random_floats(C), *b = random_floats(C);
    float *y = alloc_floats(sets * tokens * C, "t"), *ref = alloc_floats(sets * tokens * C, "t");
    GroupNorm g;
    Arena a;
    int s, gi, c, act;
    size_t t;
    double worst = 0.0;
    memset(&a, 0, sizeof a);
    for (t = 0; t < sets * tokens * C; t++) x[t] += 3.0f;   /* a mean well away from 0, as activations have */
    g.channels = C; g.groups = G; g.eps = 1e-5f; g.w = w; g.b = b;
    for (act = 0; act < 2; act++) {
        group_norm(&a, &g, x, y, sets, tokens, act);
        for (s = 0; s < sets; s++)
            for (gi = 0; gi < G; gi++) {
                double mean = 0, var = 0;
                const double n = (double)tokens * (C / G);
                for (t = 0; t < tokens; t++)
                    for (c = gi * C / G; c < (gi + 1) * C / G; c++) mean += x[(s * tokens + t) * C + c];
                mean /= n;
                for (t = 0; t < tokens; t++)
                    for (c = gi * C / G; c < (gi + 1) * C / G; c++) var += pow(x[(s * tokens + t) * C + c] - mean, 2);
                var /= n;
                for (t = 0; t < tokens; t++)
                    for (c = gi * C / G; c < (gi + 1) * C / G; c++) {
                        double v = (x[(s * tokens + t) * C + c] - mean) / sqrt(var + 1e-5) * w[c] + b[c];
                        ref[(s * tokens + t) * C + c] = (float)(act ? v / (1 + exp(-v)) : v);
                    }
            }
        if (max_rel_diff(y, ref, sets * tokens * C) > worst) worst = max_rel_diff(y, ref, sets * tokens * C);
    }
    free(x); free(w); free(b); free(y); free(ref);
    arena_free(&a);
    return worst;
}

static void test_group_norm(void) {
    static const size_t tokens[] = {1, 7, 10, 33, 769, 1001};
    double worst = 0.0;
    size_t i;
    for (i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
        worst = fmax(worst, group_norm_error(3, 12, 4, tokens[i]));
        worst = fmax(worst, group_norm_error(2, 40, 8, tokens[i]));
    }
    report("group_norm (+SiLU) vs closed form, 1..1001 tokens", worst, 1e-5);
}

static void test_layer_norm(void) {
    const int D = 37;
    const size_t T = 9;
    float *x = random_floats(T * D), *w = random_floats(D), *b = random_floats(D);
    float *y = alloc_floats(T * D, "t"), *ref = alloc_floats(T * D, "t");
    LayerNorm l;
    size_t t;
    int i;
    l.dim = D; l.eps = 1e-5f; l.w = w; l.b = b;
    layer_norm(&l, x, y, T);
    for (t = 0; t < T; t++) {
        double mean = 0, var = 0;
        for (i = 0; i < D; i++) mean += x[t * D + i];
        mean /= D;
        for (i = 0; i < D; i++) var += pow(x[t * D + i] - mean, 2);
        var /= D;
        for (i = 0; i < D; i++) ref[t * D + i] = (float)((x[t * D + i] - mean) / sqrt(var + 1e-5) * w[i] + b[i]);
    }
    report("layer_norm vs closed form", max_rel_diff(y, ref, T * D), 1e-5);
    free(x); free(w); free(b); free(y); free(ref);
}

/* n_seq query sequences of n_q tokens attend to kv_seqs key/value sequences of n_kv tokens, heads of hd; causal
 * (CLIP's text encoder: self-attention, query i sees keys 0..i) through attention_blocked, with q scaled by 4 so
 * that the running max moves between blocks */
static double attention_error(int n_seq, int n_q, int n_kv, int kv_seqs, int heads, int hd, int causal) {
    const int inner = heads * hd;
    float *q = random_floats((size_t)n_seq * n_q * inner), *k = random_floats((size_t)kv_seqs * n_kv * inner);
    float *v = random_floats((size_t)kv_seqs * n_kv * inner);
    float *out = alloc_floats((size_t)n_seq * n_q * inner, "t"), *ref = alloc_floats((size_t)n_seq * n_q * inner, "t");
    double *sc = (double *)malloc(sizeof(double) * n_kv), e;
    Arena a;
    int s, h, i, j, d;
    memset(&a, 0, sizeof a);
    if (causal) {
        for (i = 0; i < n_seq * n_q * inner; i++) q[i] *= 4.0f;
        attention_blocked(&a, out, q, k, v, n_seq, n_q, n_kv, n_seq / kv_seqs, heads, hd, 1);
    } else {
        attention(&a, out, q, k, v, n_seq, n_q, n_kv, n_seq / kv_seqs, heads, hd);
    }
    for (s = 0; s < n_seq; s++)
        for (h = 0; h < heads; h++)
            for (i = 0; i < n_q; i++) {
                double mx = -1e30, sum = 0;
                const int kvs = s / (n_seq / kv_seqs), seen = causal ? i + 1 : n_kv;
                for (j = 0; j < seen; j++) {
                    double dot = 0;
                    for (d = 0; d < hd; d++)
                        dot += (double)q[((size_t)s * n_q + i) * inner + h * hd + d] * k[((size_t)kvs * n_kv + j) * inner + h * hd + d];
                    sc[j] = dot / sqrt((double)hd);
                    if (sc[j] > mx) mx = sc[j];
                }
                for (j = 0; j < seen; j++) sum += sc[j] = exp(sc[j] - mx);
                for (d = 0; d < hd; d++) {
                    double o = 0;
                    for (j = 0; j < seen; j++) o += sc[j] / sum * v[((size_t)kvs * n_kv + j) * inner + h * hd + d];
                    ref[((size_t)s * n_q + i) * inner + h * hd + d] = (float)o;
                }
            }
    e = max_rel_diff(out, ref, (size_t)n_seq * n_q * inner);
    free(q); free(k); free(v); free(out); free(ref); free(sc);
    arena_free(&a);
    return e;
}

/* The blocked attention against its naive twin (attention_reference: whole score rows, softmax, matmul), as
 * max |fast - naive| / max |naive|. q is scaled by `sharpness` to make the softmax peaky, so the running max
 * moves from block to block and the rescaling of what was accumulated matters. */
static double attention_vs_reference(int n_seq, int n_q, int n_kv, int kv_seqs, int heads, int hd, float sharpness) {
    const int inner = heads * hd;
    const size_t nq_all = (size_t)n_seq * n_q * inner;
    float *q = random_floats(nq_all), *k = random_floats((size_t)kv_seqs * n_kv * inner);
    float *v = random_floats((size_t)kv_seqs * n_kv * inner);
    float *out = alloc_floats(nq_all, "t"), *ref = alloc_floats(nq_all, "t");
    Arena a;
    size_t i;
    double e;
    memset(&a, 0, sizeof a);
    for (i = 0; i < nq_all; i++) q[i] *= sharpness;
    attention(&a, out, q, k, v, n_seq, n_q, n_kv, n_seq / kv_seqs, heads, hd);
    attention_reference(&a, ref, q, k, v, n_seq, n_q, n_kv, n_seq / kv_seqs, heads, hd);
    e = max_rel_diff(out, ref, nq_all);
    free(q); free(k); free(v); free(out); free(ref);
    arena_free(&a);
    return e;
}

/* The short-sequence attention with transposed keys against its direct loops: the same sums in the same order, so
 * the same bits, at awkward sizes (queries past a block of ATTENTION_SHORT_QUERIES, 1 to ATTENTION_SHORT keys,
 * head sizes that are no multiple of a vector) */
static void test_attention_short(void) {
    static const int cases[][4] = {{1, 1, 1, 1}, {5, 7, 7, 2}, {16, 16, 64, 5}, {33, ATTENTION_SHORT, 80, 3},
                                   {3, 17, 37, 1}, {16, 16, 64, 8}, {2, 31, 160, 2}};
    size_t c;
    int mismatches = 0;
    Arena a;
    memset(&a, 0, sizeof a);
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int n_q = cases[c][0], n_kv = cases[c][1], hd = cases[c][2], heads = cases[c][3], n_seq = 6, kv_div = 2;
        const size_t nq_all = (size_t)n_seq * n_q * heads * hd, nkv_all = (size_t)(n_seq / kv_div) * n_kv * heads * hd;
        float *q = random_floats(nq_all), *k = random_floats(nkv_all), *v = random_floats(nkv_all);
        float *fast = alloc_floats(nq_all, "t"), *direct = alloc_floats(nq_all, "t");
        attention_short(&a, fast, q, k, v, n_seq, n_q, n_kv, kv_div, heads, hd);
        attention_short_direct(direct, q, k, v, n_seq, n_q, n_kv, kv_div, heads, hd);
        if (memcmp(fast, direct, nq_all * sizeof(float))) mismatches++;
        free(q); free(k); free(v); free(fast); free(direct);
    }
    report("attention, short sequences: transposed keys == direct loops (cases not identical)", mismatches, 0);
    arena_free(&a);
}

static void test_attention(void) {
    static const struct { int n_q, n_kv, hd; float sharpness; } cases[] = {
        {1, 33, 40, 1.0f},    {7, 769, 64, 1.0f},   {33, 1031, 37, 1.0f}, {769, 33, 40, 1.0f},
        {1031, 769, 40, 4.0f}, {769, 1031, 64, 4.0f}, {1000, 77, 37, 1.0f}, {1, 1031, 64, 8.0f},
        {257, 1031, 160, 8.0f}, {33, 7, 40, 1.0f},  {1, 1, 64, 1.0f},
    };
    size_t i;
    static const int causal_lengths[] = {1, 7, 33, 49, 77, 300};
    report("attention, short sequences, cross", attention_error(4, 5, 3, 2, 3, 4, 0), 1e-5);
    report("attention, long sequences (blocked), cross", attention_error(6, 300, 77, 2, 2, 8, 0), 1e-5);
    report("attention, long sequences (blocked), self", attention_error(3, 150, 150, 3, 3, 16, 0), 1e-5);
    report("attention, blocked, 1500 keys, head 40", attention_error(2, 40, 1500, 1, 2, 40, 0), 1e-5);
    for (i = 0; i < sizeof causal_lengths / sizeof causal_lengths[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "attention, causal, %d tokens, heads of 64 and 37", causal_lengths[i]);
        report(name, fmax(attention_error(1, causal_lengths[i], causal_lengths[i], 1, 3, 64, 1),
                          attention_error(2, causal_lengths[i], causal_lengths[i], 2, 2, 37, 1)), 1e-5);
    }
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "attention vs naive: %d q x %d kv, head %d, x%g", cases[i].n_q, cases[i].n_kv,
                 cases[i].hd, cases[i].sharpness);
        /* 4 query sequences over 2 key/value sequences: the kv mapping of cross-attention and cross-frame */
        report(name, attention_vs_reference(4, cases[i].n_q, cases[i].n_kv, 2, 2, cases[i].hd, cases[i].sharpness), 1e-5);
    }
}

static void test_upsample(void) {
    /* 3 -> 7 columns and 2 -> 4 rows: torch's nearest takes floor(dst * in / out) */
    float in[2 * 3], out[4 * 7];
    ConvInput x;                 /* one channel: plain channels-last, not padded */
    int i, ok = 1;
    static const int want_x[7] = {0, 0, 0, 1, 1, 2, 2}, want_y[4] = {0, 0, 1, 1};
    for (i = 0; i < 6; i++) in[i] = (float)i;
    memset(&x, 0, sizeof x);
    x.data = out;
    x.channels = 1;
    upsample_nearest(in, &x, 1, 2, 3, 4, 7);
    for (i = 0; i < 28; i++) ok &= out[i] == in[want_y[i / 7] * 3 + want_x[i % 7]];
    report("nearest upsample to an odd size (torch's indices)", ok ? 0.0 : 1.0, 0.0);
}

static void test_activations(void) {
    double e = 0.0;
    e = fmax(e, fabs(gelu_erf(1.0f) - 0.8413447460685429));
    e = fmax(e, fabs(gelu_erf(-2.0f) - -0.04550026389635842));
    e = fmax(e, fabs(silu(1.0f) - 0.7310585786300049));
    e = fmax(e, fabs(quick_gelu(1.0f) - 0.8457957659328212));
    report("gelu (erf), quick_gelu, silu closed forms", e, 1e-6);
}

/* exp_approx against libm's expf, in ulps of expf's result, over the normal range (and sane beyond it) */
static void test_exp_approx(void) {
    double worst = 0.0;
    int i, sane;
    for (i = 0; i <= 2000000; i++) {
        const float x = -87.0f + 175.3f * (float)i / 2000000.0f, want = expf(x), got = exp_approx(x);
        const double ulps = fabs((double)got - want) / (nextafterf(want, INFINITY) - want);
        if (ulps > worst) worst = ulps;
    }
    report("exp_approx vs expf on [-87, 88.3], in ulp", worst, 2.0);
    sane = exp_approx(-1000.0f) > 0.0f && exp_approx(-1000.0f) < 1e-37f && isfinite(exp_approx(1000.0f)) &&
           exp_approx(0.0f) == 1.0f;
    report("exp_approx beyond the float range: tiny or huge, never 0 or inf", sane ? 0.0 : 1.0, 0.0);
}

/* erf_approx against libm's erff, in ulps of erff's result: a dense grid over [-6, 6] (beyond 3.92 both are +-1)
 * and tiny arguments down to 2^-100 */
static void test_erf_approx(void) {
    double worst = 0.0;
    long i;
    for (i = 0; i <= 4000000; i++) {
        const float x = i <= 3000000 ? -6.0f + 12.0f * (float)i / 3000000.0f : ldexpf(1.0f + (float)(i % 1000) / 1000.0f, -(int)(i % 100));
        const float want = erff(x), got = erf_approx(x);
        const double ulp = nextafterf(fabsf(want), INFINITY) - fabsf(want), e = fabs((double)got - want) / ulp;
        if (e > worst) worst = e;
    }
    report("erf_approx vs erff on [-6, 6] and tiny x, in ulp", worst, 3.0);
}

static void test_timestep_embedding(void) {
    float emb[320];
    double e = 0.0;
    int i;
    get_timestep_embedding(981.0f, emb, 320, 1, 0);
    for (i = 0; i < 160; i++) {
        double f = exp(-log(10000.0) * i / 160.0);
        e = fmax(e, fabs(emb[i] - cos(981.0 * f)));
        e = fmax(e, fabs(emb[160 + i] - sin(981.0 * f)));
    }
    /* float32 arguments up to ~981 carry ~6e-5 rounding, as in torch */
    report("timestep embedding [cos | sin] vs double formula", e, 2e-4);
}

static void test_npy_roundtrip(void) {
    const char *path = "test/out/roundtrip.npy";
    int64_t dims[3] = {2, 3, 5};
    float data[30], *back;
    Shape s;
    int i, ok;
    for (i = 0; i < 30; i++) data[i] = frand();
    npy_save_f32(path, data, 3, dims);
    back = npy_load_f32(path, &s);
    ok = s.ndim == 3 && s.shape[0] == 2 && s.shape[1] == 3 && s.shape[2] == 5 && !memcmp(back, data, sizeof data);
    report(".npy write/read round trip", ok ? 0.0 : 1.0, 0.0);
    free(back);
}

static void test_arena_reuse(void) {
    Arena a;
    ArenaMark m;
    float *p1, *p2, *q1, *q2;
    int blocks;
    memset(&a, 0, sizeof a);
    m = arena_mark(&a);
    p1 = arena_alloc(&a, 1000);
    q1 = arena_alloc(&a, ARENA_BLOCK_FLOATS);
    blocks = a.n_blocks;
    arena_reset(&a, m);
    p2 = arena_alloc(&a, 1000);
    q2 = arena_alloc(&a, ARENA_BLOCK_FLOATS);
    report("scratch arena: a second pass reuses the same memory",
           (p1 == p2 && q1 == q2 && a.n_blocks == blocks && (uintptr_t)p1 % 64 == 0) ? 0.0 : 1.0, 0.0);
    arena_free(&a);
}

static void test_mt19937(void) {
    /* the reference values of std::mt19937 seeded with 5489: first draw and the 10000th draw */
    TorchGenerator g;
    uint32_t first, x = 0;
    int i;
    torch_generator_seed(&g, 5489);
    first = mt19937_next(&g);
    for (i = 1; i < 10000; i++) x = mt19937_next(&g);
    report("mt19937(5489): 1st draw 3499211612, 10000th 4123659995",
           (first == 3499211612u && x == 4123659995u) ? 0.0 : 1.0, 0.0);
}

static void test_randn_moments(void) {
    /* both torch.randn paths give N(0,1): mean and variance of 2^20 samples, and of 15-sample calls */
    const size_t n = (size_t)1 << 20;
    float *x = alloc_floats(n, "t");
    TorchGenerator g;
    double mean = 0, var = 0;
    size_t i, j;
    torch_generator_seed(&g, 7);
    torch_randn(&g, x, n);
    for (i = 0; i < n; i++) mean += x[i];
    mean /= n;
    for (i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= n;
    report("torch_randn (>= 16 path): |mean| and |var - 1| of 2^20 draws", fmax(fabs(mean), fabs(var - 1)), 5e-3);
    mean = var = 0;
    for (i = 0; i < n / 16; i++) {
        torch_randn(&g, x + i * 15, 15);
        for (j = 0; j < 15; j++) mean += x[i * 15 + j], var += (double)x[i * 15 + j] * x[i * 15 + j];
    }
    mean /= 15.0 * (n / 16);
    var = var / (15.0 * (n / 16)) - mean * mean;
    report("torch_randn (< 16 path): |mean| and |var - 1|", fmax(fabs(mean), fabs(var - 1)), 5e-3);
    free(x);
}

/* ---- golden checks of the noise and the schedulers (../shared/golden/tiny/rng, sched) ---- */

static const char *golden_dir = NULL;

static float *golden(const char *name, Shape *s) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", golden_dir, name);
    return npy_load_f32(path, s);
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double e = 0;
    size_t i;
    for (i = 0; i < n; i++) e = fmax(e, fabs((double)a[i] - b[i]));
    return e;
}

static void test_golden_randn(void) {
    static const struct { const char *file; uint64_t seed; } cases[] = {
        {"randn_7_seed0.npy", 0}, {"randn_16_seed1.npy", 1}, {"randn_33_seed3.npy", 3},
        {"randn_1x4x5x8x12_seed0.npy", 0}, {"randn_1x4x16x32x32_seed0.npy", 0}, {"randn_1x4x16x32x32_seed42.npy", 42}};
    size_t c;
    int kernel;
    for (kernel = 0; kernel < 2; kernel++)
        for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            char name[256], label[300];
            Shape s;
            float *ref, *x;
            TorchGenerator g;
            snprintf(name, sizeof name, "rng/%s%s", kernel ? "scalar/" : "", cases[c].file);
            ref = golden(name, &s);
            x = alloc_floats(shape_numel(&s), "t");
            torch_generator_seed(&g, cases[c].seed);
            g.kernel = kernel ? TORCH_RANDN_SCALAR : TORCH_RANDN_AVX2;
            torch_randn(&g, x, shape_numel(&s));
            snprintf(label, sizeof label, "torch.randn %s", name);
            report(label, max_abs_diff(x, ref, shape_numel(&s)), 0.0);   /* bit for bit */
            free(ref);
            free(x);
        }
}

/* model/scheduler/scheduler_config.json over the defaults of the scheduler class built from it */
static SchedulerConfig golden_scheduler_config(T2VSchedulerKind kind) {
    SchedulerConfig c;
    scheduler_config_defaults(kind, &c);
    c.num_train_timesteps = 1000;
    c.beta_start = 0.00085;
    c.beta_end = 0.012;
    c.beta_schedule = "scaled_linear";
    c.prediction_type = "epsilon";
    c.set_alpha_to_one = 0;
    c.steps_offset = 1;
    c.clip_sample = 0;
    return c;
}

/* scheduler_init, with a refusal (t2v_die) caught: returns NULL when it succeeded, else the message. */
static const char *scheduler_init_refusal(Scheduler *s, T2VSchedulerKind kind, const SchedulerConfig *c, int steps,
                                          size_t numel) {
    static jmp_buf on_error;
    t2v_die_catch = &on_error;
    if (setjmp(on_error)) return t2v_die_message;
    scheduler_init(s, kind, c, steps, numel);
    t2v_die_catch = NULL;
    return NULL;
}

static void test_golden_schedulers(void) {
    static const int steps[] = {1, 2, 10, 25, 50};
    SchedulerConfig c;
    const char *err;
    char name[256];
    Scheduler s;
    Shape sh;
    float *ref, *x0, *mo, *seq;
    size_t i, k, n;
    int kind, bad;
    c = golden_scheduler_config(T2V_SCHEDULER_DDIM);
    if ((err = scheduler_init_refusal(&s, T2V_SCHEDULER_DDIM, &c, 10, 1))) { report(err, 1, 0); return; }
    ref = golden("sched/alphas_cumprod.npy", &sh);
    report("sched/alphas_cumprod.npy", max_rel_diff(s.alphas_cumprod, ref, 1000), 1e-7);
    free(ref);
    scheduler_free(&s);
    for (kind = 0; kind < 2; kind++)
        for (k = 0; k < sizeof steps / sizeof steps[0]; k++) {
            c = golden_scheduler_config((T2VSchedulerKind)kind);
            snprintf(name, sizeof name, "sched/%s_timesteps_N%d.npy", kind ? "dpm" : "ddim", steps[k]);
            if ((err = scheduler_init_refusal(&s, (T2VSchedulerKind)kind, &c, steps[k], 1))) { report(err, 1, 0); continue; }
            ref = golden(name, &sh);
            bad = (int)shape_numel(&sh) != s.num_timesteps;
            for (i = 0; !bad && i < shape_numel(&sh); i++) bad = ref[i] != (float)s.timesteps[i];
            report(name, bad, 0.0);
            free(ref);
            if (kind) {
                snprintf(name, sizeof name, "sched/dpm_sigmas_N%d.npy", steps[k]);
                ref = golden(name, &sh);
                report(name, max_rel_diff(s.sigmas, ref, shape_numel(&sh)), 1e-6);
                free(ref);
            }
            scheduler_free(&s);
        }
    /* 10 steps driven by given model outputs, from seq_sample0 */
    x0 = golden("sched/seq_sample0.npy", &sh);
    n = shape_numel(&sh);
    mo = golden("sched/seq_model_outputs.npy", &sh);
    for (kind = 0; kind < 2; kind++) {
        float *x = alloc_floats(n, "t");
        double e = 0;
        memcpy(x, x0, n * sizeof(float));
        seq = golden(kind ? "sched/dpm_seq_prev_samples.npy" : "sched/ddim_seq_prev_samples.npy", &sh);
        c = golden_scheduler_config((T2VSchedulerKind)kind);
        if ((err = scheduler_init_refusal(&s, (T2VSchedulerKind)kind, &c, 10, n))) { report(err, 1, 0); free(seq); free(x); continue; }
        for (k = 0; k < 10; k++) {
            scheduler_step(&s, mo + k * n, x);
            e = fmax(e, max_rel_diff(x, seq + k * n, n));
        }
        report(kind ? "sched/dpm_seq_prev_samples.npy (10 steps)" : "sched/ddim_seq_prev_samples.npy (10 steps)", e, 1e-6);
        scheduler_free(&s);
        free(seq);
        free(x);
    }
    free(x0);
    free(mo);
}

static void test_scheduler_refusals(void) {
    SchedulerConfig c;
    Scheduler s;
    const char *err;
    int bad = 0;
    c = golden_scheduler_config(T2V_SCHEDULER_DPM);
    c.use_karras_sigmas = 1;
    bad |= !(err = scheduler_init_refusal(&s, T2V_SCHEDULER_DPM, &c, 10, 1)) || !strstr(err, "use_karras_sigmas");
    c = golden_scheduler_config(T2V_SCHEDULER_DDIM);
    c.thresholding = 1;
    bad |= !(err = scheduler_init_refusal(&s, T2V_SCHEDULER_DDIM, &c, 10, 1)) || !strstr(err, "thresholding");
    c = golden_scheduler_config(T2V_SCHEDULER_DDIM);
    c.beta_schedule = "sigmoid";
    bad |= !(err = scheduler_init_refusal(&s, T2V_SCHEDULER_DDIM, &c, 10, 1)) || !strstr(err, "beta_schedule");
    c = golden_scheduler_config(T2V_SCHEDULER_DDIM);
    c.beta_end = HUGE_VAL;
    bad |= !(err = scheduler_init_refusal(&s, T2V_SCHEDULER_DDIM, &c, 10, 1)) || !strstr(err, "beta_end");
    c = golden_scheduler_config(T2V_SCHEDULER_DDIM);
    bad |= !(err = scheduler_init_refusal(&s, T2V_SCHEDULER_DDIM, &c, 1001, 1)) || !strstr(err, "num_inference_steps");
    report("unsupported scheduler settings are refused by name", bad, 0.0);
}

/* Numbers as the command line and the config take them: decimal only (no hex, inf, nan, spaces). */
static void test_decimal_numbers(void) {
    static const char *const good[] = {"0", "-1", "+7", "9.5", "-2.5e-3", "1E6", ".5", "5."};
    static const char *const bad[] = {"", "-", "0x10", "inf", "-inf", "nan", " 9", "9 ", "1e", "1e+", "--1", "1.2.3", "e5"};
    double x;
    size_t i;
    int wrong = 0;
    for (i = 0; i < sizeof good / sizeof good[0]; i++) wrong += !is_decimal(good[i], 0) || !parse_decimal(good[i], &x);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) wrong += is_decimal(bad[i], 0);
    wrong += parse_decimal("1e999", &x) || !parse_decimal("-2.5", &x) || x != -2.5;
    wrong += is_decimal("9.5", 1) || !is_decimal("-12", 1) || is_decimal("1e3", 1);
    wrong += looks_like_option("-1") || looks_like_option("-2.5") || !looks_like_option("-p") || !looks_like_option("--seed");
    report("decimal numbers only: no hex, inf, nan or spaces", wrong, 0.0);
}

/* A NaN never reaches the float -> int cast of a pixel, and the finite checks find the first bad value. */
static void test_non_finite(void) {
    float x[6] = {0.0f, 1.0f, -2.0f, 0.5f, 0.25f, 0.0f};
    int wrong = clamp_byte(NAN) != 0 || clamp_byte(-INFINITY) != 0 || clamp_byte(INFINITY) != 255 || to_byte(NAN) != 0;
    wrong += clamp_byte(127.4f) != 127 || clamp_byte(127.5f) != 128 || clamp_byte(300.0f) != 255;
    wrong += first_non_finite(x, 6) != 6;
    x[4] = INFINITY;
    x[5] = NAN;
    wrong += first_non_finite(x, 6) != 4 || first_non_finite(x, 4) != 4;
    report("NaN/Inf: clamp_byte defined, first_non_finite finds index 4", wrong, 0.0);
}

int main(int argc, char **argv) {
    printf("C unit tests (t2v.c building blocks, %d thread%s)\n", num_threads(), num_threads() > 1 ? "s" : "");
    test_matmul();
    test_matmul_conv();
    test_half_to_float();
    test_matmul_f16();
    test_matmul_int8_float();
    test_matmul_int8_int();
    test_conv2d();
    test_conv2d_winograd();
    test_conv_temporal();
    test_conv_temporal_winograd();
    test_conv_implicit_vs_gathered();
    test_whole_panels();
    test_gathered_chunks();
    test_group_norm();
    test_layer_norm();
    test_attention();
    test_attention_short();
    test_upsample();
    test_activations();
    test_exp_approx();
    test_erf_approx();
    test_timestep_embedding();
    test_npy_roundtrip();
    test_arena_reuse();
    test_mt19937();
    test_randn_moments();
    test_scheduler_refusals();
    test_decimal_numbers();
    test_non_finite();
    test_matmul_short_k();
    if (argc > 1) { /* argv[1]: the golden folder (../shared/golden); its tiny/ fixture is used */
        static char dir[4096];
        char probe[4200];
        FILE *f;
        snprintf(dir, sizeof dir, "%s/tiny", argv[1]);
        snprintf(probe, sizeof probe, "%s/manifest.json", dir);
        f = fopen(probe, "rb");
        if (f) {
            fclose(f);
            golden_dir = dir;
            printf("golden checks of the noise and the schedulers (%s)\n", golden_dir);
            test_golden_randn();
            test_golden_schedulers();
        } else {
            printf("!! no golden data at %s: noise and scheduler cross-checks NOT run\n", argv[1]);
        }
    }
    printf(failures ? "%d unit test(s) FAILED\n" : "all unit tests passed\n", failures);
    return failures != 0;
}
