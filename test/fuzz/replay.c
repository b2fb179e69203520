/* Runs a fuzz target (fuzz_targets.c) over corpus files and folders, without libFuzzer: what CI and
 * machines without clang's libFuzzer use to replay the corpora (make fuzz-replay).
 *   replay FILE_OR_FOLDER...   prints the number of inputs run; a crash or sanitizer report fails it */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static long runs;

static void run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    unsigned char *data;
    long size;
    if (!f || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        exit(2);
    }
    rewind(f);
    data = (unsigned char *)malloc((size_t)size + 1);
    if (!data || fread(data, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    LLVMFuzzerTestOneInput(data, (size_t)size);
    free(data);
    runs++;
}

static void run_path(const char *path) {
    struct stat st;
    DIR *dir;
    struct dirent *e;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: no such file or folder: %s\n", path);
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        run_file(path);
        return;
    }
    dir = opendir(path);
    while (dir && (e = readdir(dir)) != NULL) {
        char child[4096];
        if (e->d_name[0] == '.') continue;
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        run_path(child);
    }
    if (dir) closedir(dir);
}

int main(int argc, char **argv) {
    int i;
    LLVMFuzzerInitialize(&argc, &argv);
    for (i = 1; i < argc; i++) run_path(argv[i]);
    printf("replay: %ld inputs, no crash\n", runs);
    return 0;
}
