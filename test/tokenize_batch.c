/* tokenize_batch.c: batch front end of tokenizer.c for tokenizer_reference.py (one model load, many prompts).
 *
 *   tokenize_batch MODEL.t2v < records
 *
 * A record is: u8 mode (0 diffusers, 1 openclip), u32 max_len, u32 n, n prompt bytes (little-endian). For
 * each record one line goes to stdout: the untruncated length, the microseconds t2v_tokenize took, and the
 * max_len ids. Built with t2v.c compiled with -DTESTING (no main of its own). */
#include "t2v.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int read_u32(FILE *f, unsigned long *x)
{
    unsigned char b[4];
    if (fread(b, 1, 4, f) != 4) return 0;
    *x = (unsigned long)b[0] | (unsigned long)b[1] << 8 | (unsigned long)b[2] << 16 | (unsigned long)b[3] << 24;
    return 1;
}

int main(int argc, char **argv)
{
    T2VModel *m;
    int mode;
    if (argc != 2) {
        fprintf(stderr, "usage: tokenize_batch MODEL.t2v < records\n");
        return 1;
    }
    m = t2v_load(argv[1]);
    while ((mode = getc(stdin)) != EOF) {
        unsigned long max_len, n, i;
        char *text;
        int32_t *ids;
        int total;
        clock_t start;
        if (!read_u32(stdin, &max_len) || !read_u32(stdin, &n) || max_len > (1ul << 24) || n > (1ul << 28)) {
            fprintf(stderr, "tokenize_batch: bad record\n");
            return 1;
        }
        text = (char *)malloc(n + 1);
        ids = (int32_t *)malloc(sizeof *ids * (max_len ? max_len : 1));
        if (!text || !ids) {
            fprintf(stderr, "tokenize_batch: out of memory\n");
            return 1;
        }
        if (fread(text, 1, n, stdin) != n) {
            fprintf(stderr, "tokenize_batch: short record\n");
            return 1;
        }
        text[n] = '\0';
        start = clock();
        total = t2v_tokenize(t2v_model_tokenizer(m), text, (T2VTokenizerMode)mode, ids, (int)max_len);
        printf("%d %.0f", total, (double)(clock() - start) * 1e6 / CLOCKS_PER_SEC);
        for (i = 0; i < max_len; i++) printf(" %d", (int)ids[i]);
        printf("\n");
        fflush(stdout);
        free(text);
        free(ids);
    }
    t2v_free(m);
    return 0;
}
