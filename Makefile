# t2v.c builds with any C99 compiler and libm:   cc -std=c99 -O2 -o t2v t2v.c tokenizer.c -lm
#
#   make            ./t2v, optimised for this machine, single-threaded
#   make omp        ./t2v with OpenMP (same results, faster); equivalent to make OMP=1
#   make CC=tcc     ./t2v with the Tiny C Compiler (slow, but it builds and runs)
#   make test       unit tests, golden cross-checks against Diffusers, CLI checks
#   make sanitize   make test with every C build under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz-replay  the fuzz targets (test/fuzz/) over their corpora, ASan+UBSan, no libFuzzer needed
#   make fuzz       each fuzz target under libFuzzer for FUZZ_SECONDS (30) seconds (clang)
#   make cross-test the golden checks built for aarch64 and s390x, run under qemu-user
#   make bench      times the UNet and its kernels on the full-size random model
#   make export SRC=path/to/snapshot OUT=weights/ms-1.7b.t2v

CC ?= cc
WARN = -std=c99 -Wall -Wextra -pedantic
ifeq ($(notdir $(CC)),tcc)
CFLAGS ?= -O2
else
CFLAGS ?= -O3 -march=native
endif
# clang -march=native on an AVX-512 x86-64 prefers 256-bit vectors, which spills t2v.c's 8 x 48 AVX-512 matmul
# tile out of registers (MM_NR in t2v.c): ask it for 512-bit ones (nothing changes on a CPU without AVX-512; gcc is
# asked by a pragma in t2v.c, as its -march=native can prefer 256-bit vectors too)
ifeq ($(findstring clang,$(shell $(CC) --version 2>/dev/null))$(shell uname -m),clangx86_64)
CFLAGS += -mprefer-vector-width=512
endif
ifeq ($(OMP),1)
OMPFLAGS = -fopenmp
endif
LDLIBS = -lm

# numpy is needed by export.py and the tests: prefer Debian's interpreter, which python3-numpy installs for
PYTHON ?= $(shell for p in /usr/bin/python3 python3; do $$p -c 'import numpy' >/dev/null 2>&1 && { echo $$p; break; }; done)

SOURCES = t2v.c tokenizer.c
BUILD = $(CC) $(WARN) $(CFLAGS) $(OMPFLAGS)

t2v: $(SOURCES) t2v.h .build-flags
	$(BUILD) -o $@ $(SOURCES) $(LDLIBS)

# rebuild when the compiler or flags change
.build-flags: FORCE
	@echo '$(BUILD)' | cmp -s - $@ || echo '$(BUILD)' > $@

omp:
	$(MAKE) OMP=1

test: check-python
	$(PYTHON) test/run_tests.py

# Sanitizer reports exit with 86, which no check accepts; leaks are not checked (an error exits without freeing).
SANITIZE = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
sanitize: check-python
	CFLAGS="$(SANITIZE)" T2V_TEST_OUT=test/out-sanitize \
	ASAN_OPTIONS=halt_on_error=1:detect_leaks=0:exitcode=86 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=86 \
	$(PYTHON) test/run_tests.py

FUZZ_SECONDS ?= 30
fuzz-replay: check-python
	PYTHON=$(PYTHON) test/fuzz/run.sh replay

fuzz: check-python
	PYTHON=$(PYTHON) test/fuzz/run.sh fuzz $(FUZZ_SECONDS)

cross-test: check-python
	$(PYTHON) test/cross_test.py

bench: check-python
	$(PYTHON) test/bench.py

export: check-python
	$(PYTHON) export.py $(SRC) $(OUT)

check-python:
	@test -n "$(PYTHON)" || { echo "make: no Python 3 with numpy found (apt-get install python3-numpy)"; exit 1; }

clean:
	rm -rf t2v .build-flags test/out test/out-sanitize test/out-cross

.PHONY: omp test sanitize fuzz-replay fuzz cross-test bench export check-python clean FORCE
