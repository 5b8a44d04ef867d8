#!/bin/sh
# The Makefile's dependency detection, as a fresh machine meets it: a
# missing header is seen as missing, and plain `make` names it and how to
# install it instead of running apt-get or failing later in the compiler.
. "$(dirname "$0")/lib.sh"
# the sub-make must not inherit make test's own flags and variables (SAN=1, O=...)
mk() { env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s --no-print-directory -C "$SIGMA_ROOT" "$@" 2>&1; }
is "a header that is not there is found missing" "$(mk have-header H=no_such_header_zz.h | tail -n 1)" no
is "one that is there is found" "$(mk have-header H=stdio.h | tail -n 1)" yes
mk -n all REQUIRED_HEADERS='stdio.h no_such_header_zz.h' >"$T/out"
ok "plain make with a header missing stops before compiling" grep -q "missing no_such_header_zz.h: run 'make deps'" "$T/out"
ok "and does not run scripts/deps at parse time" sh -c "! grep -q '^scripts/deps:' '$T/out'"
ok "scripts/deps --list names the packages" sh -c "'$SIGMA_ROOT/scripts/deps' --list | grep -q libcjson-dev"
done_testing
