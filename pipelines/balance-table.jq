# The balance study's table (Markdown) from summary.jsonl, slurped: a row per
# recipe. Deviations are (tokens of the expert - mean) / mean, in percent.
def pct: . * 100 | round | if . > 0 then "+\(.)" else "\(.)" end;
def r3: . * 1000 | round / 1000;
"| recipe | options | val loss | max deviation by layer (held-out) | worst max | worst min | starved experts | end of training: worst max / min |",
"| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
(.[] | "| \(.recipe) | `\(.args)` | \(.val_loss | r3) | \(.load_max | map(pct) | join(" / ")) | \(.worst_max | pct)% (layer \(.worst_layer)) | \(.worst_min | pct)% | \(.starved) | \(.train_max_end | pct)% / \(.train_min_end | pct)% |")
