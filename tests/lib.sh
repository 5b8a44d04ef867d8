# Shell helpers for the tool tests (*.t): TAP output and temporary files.
#   . "$(dirname "$0")/lib.sh"
#   ok "name" command args...       the command succeeds
#   fails "name" command args...    the command exits non-zero (status kept in $rc)
#   is "name" "got" "expected"
#   skip "name" "why"
#   done_testing
set -u
: "${SIGMA_BIN:?run the tests through tests/run or make test}"
SIGMA_ROOT=${SIGMA_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
SIGMA_DATA=${SIGMA_DATA:-$SIGMA_ROOT/../shared/data}
PATH="$SIGMA_BIN:${SIGMA_TESTBIN:-}:$PATH"
export PATH
T=$(mktemp -d "${TMPDIR:-/tmp}/sigma-test.XXXXXX")
trap 'rm -rf "$T"' EXIT
_n=0
_pass() { _n=$((_n + 1)); echo "ok $_n - $1"; }
_fail() { _n=$((_n + 1)); echo "not ok $_n - $1"; }
ok() { name=$1; shift; if "$@" >"$T/.out" 2>"$T/.err"; then _pass "$name"; else rc=$?; _fail "$name (exit $rc)"; sed 's/^/# /' "$T/.err" | head -n 20; fi; }
fails() { name=$1; shift; if "$@" >"$T/.out" 2>"$T/.err"; then rc=0; _fail "$name (succeeded, expected failure)"; else rc=$?; _pass "$name"; fi; }
# fails_with "name" STATUS "message regex" command...: non-zero STATUS and a message on stderr
fails_with() {
    name=$1 want=$2 re=$3; shift 3
    if "$@" >"$T/.out" 2>"$T/.err"; then rc=0; else rc=$?; fi
    if [ "$rc" -eq "$want" ] && grep -qE -- "$re" "$T/.err"; then _pass "$name"
    else _fail "$name (exit $rc, want $want and /$re/)"; sed 's/^/# /' "$T/.err" | head -n 5; fi
}
is() { if [ "$2" = "$3" ]; then _pass "$1"; else _fail "$1"; echo "#   got:      $2"; echo "#   expected: $3"; fi; }
skip() { _n=$((_n + 1)); echo "ok $_n - $1 # SKIP $2"; }
done_testing() { echo "1..$_n"; }
# A model confident enough that bf16 changes no greedy choice, for the
# generation tests: the test preset trained 60 steps on one repeated
# sentence; $T/tok.txt, $T/shards, run directory $T/run.
confident_model() {
    i=0; : >"$T/text"
    while [ $i -lt 400 ]; do echo "the quick brown fox jumps over the lazy dog." >>"$T/text"; i=$((i + 1)); done
    sigma-tokenize train -q --vocab-size 300 --pattern gpt2 -o "$T/tok.txt" "$T/text" 2>/dev/null
    sigma-tokenize encode -q -t "$T/tok.txt" --lines "$T/text" | sigma-shard -q -o "$T/shards" --val-fraction 0
    sigma-pretrain -q --preset test --data "$T/shards" --out "$T/run" --seq-len 32 --micro-batch 8 --batch-tokens 256 \
        --steps 60 --lr 1e-2 --warmup 5 --eval-every 0 --balance none
}
