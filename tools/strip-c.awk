# Prints each line of C source as FILE:LINE:TEXT with comments and the
# contents of string and character literals blanked, every newline kept,
# so that a grep for a name finds code only. A comment ends with its file.
# Used by tools/check-banned.sh and tools/check-layers.sh.
FNR == 1 { incomment = 0 }
{
    out = ""; i = 1; n = length($0)
    while (i <= n) {
        c = substr($0, i, 1); d = substr($0, i, 2)
        if (incomment) {
            if (d == "*/") { incomment = 0; i += 2 } else i++
            continue
        }
        if (d == "/*") { incomment = 1; i += 2; out = out " "; continue }
        if (d == "//") break
        if (c == "\"" || c == "\047") {
            q = c; i++
            while (i <= n && substr($0, i, 1) != q) { if (substr($0, i, 1) == "\\") i++; i++ }
            i++; out = out q q; continue
        }
        out = out c; i++
    }
    printf "%s:%d:%s\n", FILENAME, FNR, out

}
