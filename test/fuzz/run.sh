#!/bin/sh
# make fuzz-replay / make fuzz: the fuzz targets of test/fuzz/fuzz_targets.c over their corpora.
#   run.sh replay           every target, built with $CC and ASan+UBSan, driven by replay.c (no libFuzzer
#                           needed), over the generated seeds and the committed corpus test/fuzz/corpus/TARGET
#   run.sh fuzz SECONDS     every target under libFuzzer (clang -fsanitize=fuzzer) for SECONDS each, starting
#                           from the same inputs; what it finds is left in test/out/fuzz/TARGET-crash-*
# Both exit non-zero on the first crash, sanitizer report or timeout. PYTHON: a python3 with numpy.
set -eu
cd "$(dirname "$0")/../.."
mode=${1:-replay}
seconds=${2:-30}
out=test/out/fuzz
targets="model npy config tokenizer cli"
python=${PYTHON:-/usr/bin/python3}
flags="-std=c99 -Wall -Wextra -pedantic -Wno-unused-function -g -O1 -fno-omit-frame-pointer -include test/fuzz/alloc_track.h"
sanitizers="-fsanitize=address,undefined -fno-sanitize-recover=all"
mkdir -p $out
[ -f $out/model.t2v ] || "$python" export.py --random tiny $out/model.t2v >/dev/null
rm -rf $out/seeds
"$python" test/fuzz/make_seeds.py $out/model.t2v $out/seeds >/dev/null
export T2V_FUZZ_MODEL=$out/model.t2v
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for t in $targets; do
    T=$(echo $t | tr a-z A-Z)
    corpus="$out/seeds/$t"
    [ -d test/fuzz/corpus/$t ] && corpus="$corpus test/fuzz/corpus/$t"
    if [ "$mode" = replay ]; then
        ${CC:-cc} $flags $sanitizers -DFUZZ_$T -o $out/replay-$t test/fuzz/fuzz_targets.c test/fuzz/replay.c tokenizer.c -lm
        printf '%-10s ' $t
        $out/replay-$t $corpus
    else
        ${FUZZ_CC:-clang} $flags -fsanitize=address,undefined,fuzzer -fno-sanitize-recover=all -DFUZZ_$T -o $out/fuzz-$t test/fuzz/fuzz_targets.c tokenizer.c -lm || {
            echo "run.sh: ${FUZZ_CC:-clang} cannot build with -fsanitize=fuzzer (Debian: apt-get install clang libclang-rt-14-dev);"
            echo "        'make fuzz-replay' replays the corpora without libFuzzer"
            exit 1
        }
        mkdir -p $out/corpus-$t
        start=$(date +%s)
        $out/fuzz-$t -max_total_time="$seconds" -timeout=10 -max_len=262144 -rss_limit_mb=4096 -print_final_stats=1 \
            -artifact_prefix=$out/$t- $out/corpus-$t $corpus > $out/fuzz-$t.log 2>&1 || {
            tail -40 $out/fuzz-$t.log
            echo "run.sh: fuzz target $t failed; the input is in $out/$t-*"
            exit 1
        }
        echo "$t: $(grep -o 'stat::number_of_executed_units: *[0-9]*' $out/fuzz-$t.log | grep -o '[0-9]*$') inputs in $(( $(date +%s) - start )) s, $(ls $out/corpus-$t | wc -l) in its corpus, nothing found"
    fi
done
