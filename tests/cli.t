#!/bin/sh
# The command-line conventions of sigma(1) CONVENTIONS, for every tool: its
# --help and its manual list the same long options (and the same short
# forms), a short option means one thing in every tool and is in the
# convention's list, an unknown option is one line and exit 2, an option of
# another subcommand is refused, --help ends with "See sigma-TOOL(1).", and
# the environment variables read are in the manual's ENVIRONMENT.
. "$(dirname "$0")/lib.sh"

MAN=$SIGMA_ROOT/man
tools="sigma-tokenize sigma-dedup sigma-shard sigma-pretrain sigma-sft sigma-generate sigma-eval sigma-export sigma-plot"

# The lines of the section .SH NAME (up to the next .SH) of a manual.
man_section() { awk -v want="$2" '/^\.SH/ { s = $0; sub(/^\.SH +"?/, "", s); sub(/"$/, "", s); on = (s == want); next } on' "$1"; }
# The tag lines (the line after .TP) of a manual's OPTIONS section.
man_tags() { man_section "$MAN/$1.1" OPTIONS | awk 'tag { print } { tag = /^\.TP/ }'; }
# Long options, one a line, without the dashes, sorted.
help_longs() { sed -nE 's/^  (-[[:alnum:]], |    )--([a-z0-9][a-z0-9-]*).*/\2/p' "$T/$1.help" | sort -u; }
man_longs() { man_tags "$1" | grep -oE '\\-\\-[a-z0-9]([a-z0-9]|\\-)*' | sed 's/\\-/-/g; s/^--//' | sort -u; }
# "x long" for each short option with its long form.
help_pairs() { sed -nE 's/^  -([[:alnum:]]), --([a-z0-9-]+).*/\1 \2/p' "$T/$1.help" | sort -u; }
roff_pairs() {   # .BR \-o ", " \-\-out ...: the short form, then the first long one
    sed -nE 's/.*(^|[ "])\\-([[:alnum:]])([ "]|$).*/\2 &/p' |
        while read -r x line; do
            l=$(printf '%s\n' "$line" | grep -oE '\\-\\-[a-z0-9]([a-z0-9]|\\-)*' | head -n 1 | sed 's/\\-/-/g; s/^--//')
            echo "$x $l"
        done | sort -u
}
# The lines of $1 that are not in $2, on one line.
missing() {
    printf '%s\n' "$1" | sed '/^$/d' | sort -u >"$T/.a"
    printf '%s\n' "$2" | sed '/^$/d' | sort -u >"$T/.b"
    comm -23 "$T/.a" "$T/.b" | tr '\n' ' ' | sed 's/ $//'
}
same_set() {   # name "set a" "set b" "what a is" "what b is"
    a_only=$(missing "$2" "$3"); b_only=$(missing "$3" "$2")
    if [ -z "$a_only$b_only" ]; then _pass "$1"
    else _fail "$1"; [ -n "$a_only" ] && echo "#   only in $4: $a_only"; [ -n "$b_only" ] && echo "#   only in $5: $b_only"; fi
}
# one_line_usage_error "name" "regex" command...: exit 2 and exactly one line on stderr, matching
one_line_usage_error() {
    name=$1 re=$2; shift 2
    "$@" >"$T/.out" 2>"$T/.err" </dev/null; rc=$?
    lines=$(wc -l <"$T/.err" | tr -d ' ')
    if [ "$rc" -eq 2 ] && [ "$lines" -eq 1 ] && grep -qE -- "$re" "$T/.err"; then _pass "$name"
    else _fail "$name (exit $rc, $lines lines on stderr, want 2, 1 and /$re/)"; sed 's/^/# /' "$T/.err" | head -n 5; fi
}

# ---- --help against the manual ------------------------------------------------------
conv_pairs=$(man_section "$MAN/sigma.1" CONVENTIONS | roff_pairs)
: >"$T/all-pairs"
for t in $tools; do
    "$t" --help >"$T/$t.help" 2>"$T/.err"
    is "$t --help exits 0, nothing on stderr" "$?:$(cat "$T/.err")" "0:"
    is "$t -h is --help" "$("$t" -h 2>&1)" "$(cat "$T/$t.help")"
    ok "$t --help begins 'usage: $t'" sh -c "head -n 1 '$T/$t.help' | grep -q '^usage: $t '"
    is "$t --help ends 'See $t(1).'" "$(tail -n 1 "$T/$t.help")" "See $t(1)."
    ok "$t --version prints its name and version" sh -c "$t --version | grep -qxE '$t [0-9]+\.[0-9]+\.[0-9]+'"
    ok "$t(1) has an OPTIONS section" test -n "$(man_longs "$t")"
    same_set "$t: --help and $t(1) OPTIONS list the same long options" "$(help_longs "$t")" "$(man_longs "$t")" \
        "--help" "$t(1)"
    # what the code accepts: its longopts table (and the training tools' shared one), and the common options
    src=$SIGMA_ROOT/bin/$t.c
    grep -q train_longopts "$src" && src="$src $SIGMA_ROOT/lib/train/options.c"
    code=$({ cat $src | grep -oE '\{"[a-z0-9-]+", (no|required|optional)_argument' | sed -E 's/\{"([^"]+)".*/\1/'
             cat $src | grep -q CLI_COMMON_OPTIONS && printf 'quiet\nverbose\nhelp\nversion\n'; } | sort -u)
    same_set "$t: --help lists every option the code accepts" "$(help_longs "$t")" "$code" "--help" "bin/$t.c"
    same_set "$t: --help and $t(1) give the same short forms" "$(help_pairs "$t")" "$(man_tags "$t" | roff_pairs)" \
        "--help" "$t(1)"
    is "$t: every short option is in sigma(1) CONVENTIONS" "$(missing "$(help_pairs "$t")" "$conv_pairs")" ""
    help_pairs "$t" | sed "s/^/$t /" >>"$T/all-pairs"
    for o in quiet verbose help version; do
        ok "$t takes --$o" sh -c "grep -qE -- '^  (-[[:alnum:]], |    )--$o( |\$)' '$T/$t.help'"
    done
done
# the subcommands' --help is the tool's
for s in train encode decode info; do
    is "sigma-tokenize $s --help is sigma-tokenize --help" "$(sigma-tokenize $s --help)" "$(cat "$T/sigma-tokenize.help")"
done
for s in verify info cat; do
    is "sigma-shard $s --help is sigma-shard --help" "$(sigma-shard $s --help)" "$(cat "$T/sigma-shard.help")"
done
for s in signatures exact buckets clusters filter; do
    is "sigma-dedup $s --help is sigma-dedup --help" "$(sigma-dedup $s --help)" "$(cat "$T/sigma-dedup.help")"
done

# ---- a short option means one thing -----------------------------------------------------
clash=$(awk '{ l[$2] = l[$2] ? l[$2] : $3; if (l[$2] != $3) print "-" $2 " is --" l[$2] " and --" $3 " (" $1 ")" }' "$T/all-pairs")
is "a short option means the same in every tool" "$clash" ""
clash=$(awk '{ s[$3] = s[$3] ? s[$3] : $2; if (s[$3] != $2) print "--" $3 " is -" s[$3] " and -" $2 " (" $1 ")" }' "$T/all-pairs")
is "a long option has the same short form in every tool" "$clash" ""

# ---- usage errors: one line, exit 2 -----------------------------------------------------
for t in sigma $tools; do
    one_line_usage_error "$t --bogus-option: one line naming it, exit 2" "^$t: .*'--bogus-option'" "$t" --bogus-option
done
for t in $tools; do
    one_line_usage_error "$t -Z: one line naming it, exit 2" "^$t: .*'-Z'" "$t" -Z
done
one_line_usage_error "a missing argument names the option" "^sigma-shard: .*'--level'" sigma-shard -o "$T/x" --level
one_line_usage_error "an argument to an option that takes none" "^sigma-dedup: .*'--lines'" sigma-dedup --lines=yes
one_line_usage_error "an ambiguous abbreviation" "^sigma-pretrain: ambiguous .*'--s'" sigma-pretrain --s 1
one_line_usage_error "a bad value names the option" "^sigma-shard: .*--level" sigma-shard -o "$T/x" --level 99

# ---- options of another subcommand are refused -----------------------------------------------
one_line_usage_error "sigma-tokenize encode --vocab-size: refused, naming train" \
    "--vocab-size.*train.*encode" sigma-tokenize encode --vocab-size 10
one_line_usage_error "sigma-tokenize train -t: refused, naming the commands that take it" \
    "--tokenizer.*encode.*train" sigma-tokenize train -t "$T/none.tok" -o "$T/x.tok"
one_line_usage_error "sigma-tokenize decode --jsonl: refused" "--jsonl.*decode" sigma-tokenize decode --jsonl -t "$T/none.tok"
one_line_usage_error "sigma-tokenize info --ids: refused" "--ids.*info" sigma-tokenize info --ids -t "$T/none.tok"
one_line_usage_error "sigma-shard verify --split: refused, naming cat" "--split.*cat.*verify" sigma-shard verify --split val "$T"
one_line_usage_error "sigma-shard --split when writing: refused" "--split.*cat" sigma-shard -o "$T/x" --split val "$T/none"
one_line_usage_error "sigma-shard info -o: refused" "--out.*info" sigma-shard info -o "$T/x" "$T"
one_line_usage_error "sigma-dedup exact --band: refused, naming buckets" "--band is an option of buckets, not of exact" \
    sigma-dedup exact --band 1 --partition 0 -o "$T/x" "$T/none.sig"
one_line_usage_error "sigma-dedup -o without a stage: refused, naming the stages" "--out is an option of signatures, .*not of deduplicating in one process" \
    sigma-dedup -o "$T/x" "$T/none.jsonl"

# ---- environment variables are documented ------------------------------------------------------
# The variables each tool's code reads (getenv in its rooms of lib/).
envcheck() {   # tool dirs...
    t=$1; shift
    vars=$(cd "$SIGMA_ROOT" && cat "$@" 2>/dev/null | grep -oE 'getenv\("[A-Z_]+"\)' | sed -E 's/getenv\("(.*)"\)/\1/' | sort -u)
    doc=$(man_section "$MAN/$t.1" ENVIRONMENT)
    undoc=""
    for v in $vars; do printf '%s\n' "$doc" | grep -q "$v" || undoc="$undoc $v"; done
    is "$t(1) ENVIRONMENT names what it reads:$(echo $vars | sed 's/^/ /')" "$undoc" ""
}
envcheck sigma-pretrain lib/model/*.c lib/train/*.c lib/cuda/*.cu
envcheck sigma-sft lib/model/*.c lib/train/*.c lib/cuda/*.cu
envcheck sigma-dedup lib/dedup/*.c

done_testing
