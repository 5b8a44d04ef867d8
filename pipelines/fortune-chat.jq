# A fortune that ends in an attribution ("\t\t-- Mark Twain, ...") as a
# chat line: the question names the author (up to a comma or parenthesis),
# the reply is the quotation with its white space folded. Quotations of 300
# characters or more, and other fortunes, are left out.
select(.text | test("\n[ \t]+-- ?[^\n]{3,40}\n?$"))
| .text | capture("^(?<q>[\\s\\S]*?)\n[ \t]+-- ?(?<who>[^\n]{3,40})\n?$")
| select((.q | length) < 300)
| {prompt: "What did \(.who | sub("[,(].*$"; "") | sub("\\s+$"; "")) say?",
   completion: (.q | gsub("\\s+"; " ") | sub("^ "; ""))}
