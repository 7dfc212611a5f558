"""Pre-tokenises a corpus for the GloVe comparison: one sentence per line, lower-cased words
(letters, digits, inner hyphens and apostrophes) separated by single spaces. Both GloVe's
`cooccur` and `relbert pairs mine --paragraphs line` read this same file, so the two count
the same tokens in the same sentences.

Usage: python3 pretokenize.py CORPUS_DIR_OR_FILE... > tokens.txt
"""
import os
import re
import sys

WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
END = re.compile(r"(?<=[.!?;])\s+(?=[^a-z\s])|\n\s*\n")


def files(paths):
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for n in sorted(names):
                    if not n.startswith("."):
                        yield os.path.join(root, n)
        else:
            yield p


out = sys.stdout
for path in files(sys.argv[1:]):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    for sentence in END.split(text):
        words = WORD.findall(sentence.lower())
        if words:
            out.write(" ".join(words))
            out.write("\n")
