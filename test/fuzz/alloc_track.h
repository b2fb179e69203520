/* Included first (-include) in every file of a fuzz target: malloc, calloc, realloc and free go through the
 * target's tracker (fuzz_targets.c), so that the memory of an input that t2v_die() abandoned half-way
 * (it jumps back to the target instead of exiting) is freed before the next input. */
#ifndef T2V_ALLOC_TRACK_H
#define T2V_ALLOC_TRACK_H
#include <stddef.h>
void *fuzz_malloc(size_t n);
void *fuzz_calloc(size_t n, size_t size);
void *fuzz_realloc(void *p, size_t n);
void fuzz_free(void *p);
#define malloc(n) fuzz_malloc(n)
#define calloc(n, size) fuzz_calloc(n, size)
#define realloc(p, n) fuzz_realloc(p, n)
#define free(p) fuzz_free(p)
#endif
