# Prints each line of C source as FILE:LINE:TEXT with comments and the
# contents of string and character literals blanked, every newline kept,
# so that a grep for a name finds code only. A comment ends with its file.
# Used by tools/check-banned.sh and tools/check-layers.sh.
# It jumps from one / " or ' to the next (match, index) rather than walking
# every character: the same output, a fraction of the time on 3 MB.
FNR == 1 { incomment = 0 }
{
    out = ""; rest = $0
    while (rest != "") {
        if (incomment) {
            k = index(rest, "*/")
            if (!k) { rest = ""; break }
            incomment = 0; rest = substr(rest, k + 2)
            continue
        }
        if (!match(rest, /[\/"\047]/)) { out = out rest; break }
        out = out substr(rest, 1, RSTART - 1)
        c = substr(rest, RSTART, 1); rest = substr(rest, RSTART)
        if (c == "/") {
            d = substr(rest, 1, 2)
            if (d == "/*") { incomment = 1; rest = substr(rest, 3); out = out " "; continue }
            if (d == "//") { rest = ""; break }
            out = out c; rest = substr(rest, 2); continue
        }
        # A literal: skip to its closing quote (a backslash escapes the next
        # character); an unclosed one ends with the line.
        q = c; i = 2; n = length(rest)
        while (i <= n && substr(rest, i, 1) != q) { if (substr(rest, i, 1) == "\\") i++; i++ }
        out = out q q; rest = substr(rest, i + 1)
    }
    printf "%s:%d:%s\n", FILENAME, FNR, out

}
