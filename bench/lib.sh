# Shared by the benchmarks of many processes (parallel.sh, ep.sh): mpirun as
# root and oversubscribed on this machine, and a shard set of the project's
# own text with a 4096-token vocabulary in DIR/shards.
export PATH="$PWD/bin:$PATH" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
micro_shards() {
    cat README.md man/*.1 man/*.5 >"$1/text"
    sigma-tokenize train -q --vocab-size 4096 --pattern o200k -o "$1/tok" "$1/text"
    sigma-tokenize encode -q -t "$1/tok" --lines "$1/text" | sigma-shard -q -o "$1/shards" --val-fraction 0
}
