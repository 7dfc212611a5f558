#!/usr/bin/env bash
# Builds the benchmark corpus from Debian packages (real English prose, ~31 MB):
#   wordnet-base   WordNet 3.0's glosses and example sentences (one synset per line)
#   python3.11-doc the Python 3.11 documentation's reST sources
#   perl-doc       Perl's manual pages (POD)
# Usage: benchmarks/corpus/make_corpus.sh OUT_DIR   (installs the packages when missing)
set -euo pipefail
out=${1:?usage: make_corpus.sh OUT_DIR}
need=()
[ -f /usr/share/wordnet/data.noun ] || need+=(wordnet-base)
[ -d /usr/share/doc/python3.11/html/_sources ] || need+=(python3.11-doc)
# perl-modules alone leaves pod/ holding perldiag.pod: look for a file perl-doc installs
[ -f /usr/share/perl/5.36/pod/perlfunc.pod ] || need+=(perl-doc)
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
mkdir -p "$out"
# WordNet data lines: offset lex_filenum ss_type w_cnt words... pointers... | gloss; "examples"
for pos in noun verb adj adv; do
    sed -n 's/^[0-9]\{8\} .* | \(.*\)$/\1/p' /usr/share/wordnet/data.$pos
done | sed G > "$out/wordnet-glosses.txt"  # a blank line after each: one paragraph per synset
rm -rf "$out/python-docs" "$out/perl-pod"
cp -r /usr/share/doc/python3.11/html/_sources "$out/python-docs"
cp -r /usr/share/perl/5.36/pod "$out/perl-pod"
du -sb "$out" | awk '{printf "corpus: %.1f MB in %s\n", $1/1e6, $2}'
