/* tokenizer.c: CLIP's byte-level BPE tokenizer (placeholder until the real one lands). */
#include "t2v.h"
#include <stdlib.h>
struct T2VTokenizer { int unused; };
T2VTokenizer *t2v_tokenizer_new(const T2VModel *m, char *err, size_t errsize) {
    (void)m; (void)err; (void)errsize;
    return (T2VTokenizer *)calloc(1, sizeof(T2VTokenizer));
}
void t2v_tokenizer_free(T2VTokenizer *t) { free(t); }
int t2v_tokenize(const T2VTokenizer *t, const char *text, T2VTokenizerMode mode, int32_t *ids, int max_len) {
    int i;
    (void)t; (void)text; (void)mode;
    for (i = 0; i < max_len; i++) ids[i] = 0;
    return 2;
}
