# The sft pipeline's table (pipelines/sft.mk): the base and the fine-tuned
# model on the held-out questions, overall (sigma-eval chat's summaries) and
# by kind (its per-question lines: the first $held are words, the rest
# commands), the base model asked in plain text (exact match only: F1 is
# sigma-eval's, not redone here), then a few questions with the replies.
#   jq -nr --slurpfile base B.json --slurpfile sft S.json --slurpfile bex B.ex --slurpfile sex S.ex
#          --slurpfile plain plain.jsonl --slurpfile q held-out.jsonl --argjson held N -f sft-table.jq
def r3: . * 1000 | round / 1000;
def cell: tostring | gsub("\\|"; "\\|") | gsub("\n"; " ");
def kind($i): if $i < $held then "words" else "commands" end;
def sums($ex; $k): [$ex[] | select(kind(.index) == $k)] |
    {n: length, loss: ((map(.loss * .tokens) | add) / (map(.tokens) | add)),
     exact: (map(if .exact then 1 else 0 end) | add / length), f1: (map(.f1) | add / length)};
def row($name; $s): "| \($name) | \($s.loss | r3) | \($s.tokens) | \($s.exact | r3) ± \($s.exact_stderr | r3) | \($s.f1 | r3) ± \($s.f1_stderr | r3) | \($s.ended) of \($s.n) |";
def krow($name; $k; $ex): sums($ex; $k) as $s | "| \($k) | \($name) | \($s.n) | \($s.loss | r3) | \($s.exact | r3) | \($s.f1 | r3) |";
def plain_exact($k): [$plain | to_entries[] | select(kind(.key) == $k or $k == "all") | .value |
    if .reply == .reference then 1 else 0 end] | add / length;

"| model | assistant loss (nats) | assistant tokens | exact | F1 | replies ended by <\\|im_end\\|> |",
"| --- | ---: | ---: | ---: | ---: | ---: |",
row("base (pretrained only)"; $base[0]),
row("fine-tuned (sigma-sft)"; $sft[0]),
"| base, asked in plain text as its FAQ phrasing reads | | | \(plain_exact("all") | r3) | | |",
"",
"| kind | model | questions | assistant loss | exact | F1 |",
"| --- | --- | ---: | ---: | ---: | ---: |",
krow("base"; "words"; $bex), krow("fine-tuned"; "words"; $sex),
krow("base"; "commands"; $bex), krow("fine-tuned"; "commands"; $sex),
"",
"Asked in plain text, the base model's exact match: words \(plain_exact("words") | r3), commands \(plain_exact("commands") | r3).",
"",
"| question | reference | base | base, plain text | fine-tuned |",
"| --- | --- | --- | --- | --- |",
([0, 1, 2, 3, $held, $held + 1, $held + 2, $held + 3][] as $i |
    "| \($q[$i].messages[0].content | cell) | \($sex[$i].reference | cell) | \($bex[$i].reply | cell) | \($plain[$i].reply | cell) | \($sex[$i].reply | cell) |")
