//! The `pairs` file: the pair strings, an offset table and a (head, tail) → row lookup table.
//!
//! Payload layout (little-endian; offsets relative to the payload start):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | `count` |
//! | 8 | 8 | `blob_len` |
//! | 16 | `8·(count+1)` | offset of each record in the blob; the last entry is `blob_len` |
//! | … | `blob_len`, zero padded to 8 | the records |
//! | … | `16·count` | lookup table: `(hash64(head, tail), row)` pairs sorted ascending |
//!
//! A record is `head_len: u32, tail_len: u32, label_len: u32 (u32::MAX = no label)` followed by
//! the UTF-8 bytes of head, tail and label. Pair *i* is read from its offset alone; a lookup
//! binary-searches the hash table in the map and compares the strings of each hash hit.
//!
//! # Spellings
//!
//! A pair typed in another Unicode normal form ("café" precomposed, NFC, as most keyboards and
//! files give it, or decomposed, NFD, as macOS file names and some tools do) is one pair to a
//! reader, though its bytes differ. A build stores it once ([`same_spelling`]: canonically
//! equivalent strings, compared in NFC), and a lookup finds it by either form. The lookup table
//! keeps hashing the stored bytes ([`pair_hash`]), so indexes of every format version answer
//! as before; the other form is a second probe. Case is kept: a cased model tells
//! `Paris : France` from `paris : france`, and the index does not know the model, so a
//! query folds case where the results are read (relbert's `store::query`).

use std::borrow::Cow;
use std::path::Path;

use unicode_normalization::UnicodeNormalization;

use crate::error::{IndexError, Result};
use crate::format::get_u64;

/// One input pair: the two words and an optional label.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PairEntry {
    /// First word (may contain spaces).
    pub head: String,
    /// Second word.
    pub tail: String,
    /// Optional label (e.g. a relation name).
    pub label: Option<String>,
}

impl PairEntry {
    /// A pair without a label.
    pub fn new(head: impl Into<String>, tail: impl Into<String>) -> Self {
        PairEntry {
            head: head.into(),
            tail: tail.into(),
            label: None,
        }
    }

    /// A pair with a label.
    pub fn labelled(
        head: impl Into<String>,
        tail: impl Into<String>,
        label: impl Into<String>,
    ) -> Self {
        PairEntry {
            head: head.into(),
            tail: tail.into(),
            label: Some(label.into()),
        }
    }
}

/// A pair read from an index, borrowing the memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairRef<'a> {
    /// First word.
    pub head: &'a str,
    /// Second word.
    pub tail: &'a str,
    /// Optional label.
    pub label: Option<&'a str>,
}

const NO_LABEL: u32 = u32::MAX;
const RECORD_HEADER: usize = 12;

/// Stable 64-bit hash of a (head, tail) pair (FNV-1a with a 0xFF separator, which cannot occur
/// in UTF-8, followed by a 64-bit finaliser). Part of the file format: never change it without
/// bumping the format version.
pub fn pair_hash(head: &str, tail: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    head.bytes().for_each(&mut eat);
    eat(0xff);
    tail.bytes().for_each(&mut eat);
    // splitmix64 finaliser
    let mut z = h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `s` in canonical composition (NFC): the form two spellings of one word are compared in
/// ([`same_spelling`]). Borrows `s` when it is in NFC already (ASCII always is).
pub fn canonical(s: &str) -> Cow<'_, str> {
    if s.is_ascii() || unicode_normalization::is_nfc(s) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.nfc().collect())
    }
}

/// The spellings of (head, tail) a lookup tries, in order, each once: these exact bytes, then
/// both words in NFC, both in NFD, and each in a different form (a build keeps the first
/// spelling it met, whose two words may be in different forms: a decomposed head beside a
/// precomposed tail). ASCII words have no other spelling.
fn spellings(head: &str, tail: &str) -> Vec<(String, String)> {
    let mut out = vec![(head.to_string(), tail.to_string())];
    if head.is_ascii() && tail.is_ascii() {
        return out;
    }
    let (hc, tc) = (canonical(head).into_owned(), canonical(tail).into_owned());
    let (hd, td): (String, String) = (head.nfd().collect(), tail.nfd().collect());
    for form in [(&hc, &tc), (&hd, &td), (&hc, &td), (&hd, &tc)] {
        let form = (form.0.clone(), form.1.clone());
        if !out.contains(&form) {
            out.push(form);
        }
    }
    out
}

/// Whether (head `a.0`, tail `a.1`) and `b` are one pair spelled in other Unicode normal
/// forms (or byte for byte the same): equal after [`canonical`]. Case counts.
pub fn same_spelling(a: (&str, &str), b: (&str, &str)) -> bool {
    a == b || (canonical(a.0) == canonical(b.0) && canonical(a.1) == canonical(b.1))
}

/// The hash of (head, tail) in canonical form: equal for the spellings [`same_spelling`]
/// calls one pair. Held in memory by a build to find duplicates, never written to a file
/// (the lookup table keeps [`pair_hash`] of the stored bytes).
pub fn spelling_hash(head: &str, tail: &str) -> u64 {
    pair_hash(&canonical(head), &canonical(tail))
}

/// Appends the record for `p` to `out`.
pub(crate) fn encode_record(p: &PairEntry, out: &mut Vec<u8>) -> Result<()> {
    let too_long = || IndexError::InvalidParameter("pair string longer than 4 GiB".into());
    let hl = u32::try_from(p.head.len()).map_err(|_| too_long())?;
    let tl = u32::try_from(p.tail.len()).map_err(|_| too_long())?;
    let ll = match &p.label {
        Some(l) => u32::try_from(l.len())
            .ok()
            .filter(|&x| x != NO_LABEL)
            .ok_or_else(too_long)?,
        None => NO_LABEL,
    };
    out.extend_from_slice(&hl.to_le_bytes());
    out.extend_from_slice(&tl.to_le_bytes());
    out.extend_from_slice(&ll.to_le_bytes());
    out.extend_from_slice(p.head.as_bytes());
    out.extend_from_slice(p.tail.as_bytes());
    if let Some(l) = &p.label {
        out.extend_from_slice(l.as_bytes());
    }
    Ok(())
}

/// Decodes the record at the start of `b`; returns it and its length in bytes, or `None` if
/// the bytes do not hold a well-formed record.
pub(crate) fn decode_record(b: &[u8]) -> Option<(PairRef<'_>, usize)> {
    let hl = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let tl = u32::from_le_bytes(b.get(4..8)?.try_into().ok()?) as usize;
    let ll_raw = u32::from_le_bytes(b.get(8..12)?.try_into().ok()?);
    let ll = if ll_raw == NO_LABEL {
        0
    } else {
        ll_raw as usize
    };
    let mut at = RECORD_HEADER;
    let head = std::str::from_utf8(b.get(at..at.checked_add(hl)?)?).ok()?;
    at += hl;
    let tail = std::str::from_utf8(b.get(at..at.checked_add(tl)?)?).ok()?;
    at += tl;
    let label = if ll_raw == NO_LABEL {
        None
    } else {
        Some(std::str::from_utf8(b.get(at..at.checked_add(ll)?)?).ok()?)
    };
    at += ll;
    Some((PairRef { head, tail, label }, at))
}

/// Positions of the sections of a `pairs` payload.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PairsLayout {
    pub count: usize,
    pub offsets_at: usize,
    pub blob_at: usize,
    pub blob_len: usize,
    pub lookup_at: usize,
}

fn round8(x: usize) -> usize {
    x.div_ceil(8) * 8
}

impl PairsLayout {
    /// Parses and checks the section sizes against the payload length and the row count.
    pub(crate) fn parse(payload: &[u8], count: usize, path: &Path) -> Result<PairsLayout> {
        let bad = |r: String| IndexError::corrupt(path, r);
        let c = get_u64(payload, 0).ok_or_else(|| bad("pairs header cut short".into()))?;
        let blob_len = get_u64(payload, 8).ok_or_else(|| bad("pairs header cut short".into()))?;
        if c != count as u64 {
            return Err(bad(format!("pairs has {c} rows but the index has {count}")));
        }
        let offsets_at = 16usize;
        let blob_at = offsets_at + 8 * (count + 1);
        let blob_len = usize::try_from(blob_len).map_err(|_| bad("blob too long".into()))?;
        // Checked throughout: a damaged blob length near 2^64 must not wrap (fuzz find,
        // tests/fuzz_regressions.rs).
        let end = blob_len
            .checked_next_multiple_of(8)
            .and_then(|padded| blob_at.checked_add(padded))
            .and_then(|lookup_at| lookup_at.checked_add(16 * count))
            .ok_or_else(|| bad("blob length overflows".into()))?;
        let lookup_at = end - 16 * count;
        if end != payload.len() {
            return Err(bad(format!(
                "pairs payload is {} bytes but its layout needs {end}",
                payload.len()
            )));
        }
        Ok(PairsLayout {
            count,
            offsets_at,
            blob_at,
            blob_len,
            lookup_at,
        })
    }

    /// Reads pair `row` (caller checks `row < count`). `check` is asked to verify each byte
    /// range of the payload before it is read ([`crate::integrity::Protected::check`]).
    pub(crate) fn pair<'a>(
        &self,
        payload: &'a [u8],
        row: usize,
        path: &Path,
        check: &dyn Fn(usize, usize) -> Result<()>,
    ) -> Result<PairRef<'a>> {
        let bad = || IndexError::corrupt(path, format!("pair record {row} is damaged"));
        let at = self.offsets_at + 8 * row;
        check(at, at + 16)?;
        let start = get_u64(payload, at).ok_or_else(bad)? as usize;
        let end = get_u64(payload, at + 8).ok_or_else(bad)? as usize;
        if start > end || end > self.blob_len {
            return Err(bad());
        }
        check(self.blob_at + start, self.blob_at + end)?;
        let rec = &payload[self.blob_at + start..self.blob_at + end];
        match decode_record(rec) {
            Some((p, used)) if used == rec.len() => Ok(p),
            _ => Err(bad()),
        }
    }

    /// Finds the row holding (head, tail) (`check` as for [`pair`](Self::pair)): the row of
    /// these exact bytes, else of the same words in NFC, else in NFD (see the
    /// [module docs](self)), so a pair stored precomposed is found when asked decomposed and
    /// the other way round. (A stored spelling in neither form, mixing both, is found only
    /// as it is.)
    pub(crate) fn lookup(
        &self,
        payload: &[u8],
        head: &str,
        tail: &str,
        path: &Path,
        check: &dyn Fn(usize, usize) -> Result<()>,
    ) -> Result<Option<usize>> {
        if let Some(row) = self.lookup_exact(payload, head, tail, path, check)? {
            return Ok(Some(row));
        }
        // Without allocating: a query of words not stored asks this once per query.
        if head.is_ascii() && tail.is_ascii() {
            return Ok(None);
        }
        for (h, t) in spellings(head, tail).iter().skip(1) {
            if let Some(row) = self.lookup_exact(payload, h, t, path, check)? {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }

    /// Every row holding (head, tail) in any of the spellings [`lookup`](Self::lookup)
    /// tries, ascending: an index built before spellings were merged can hold one pair
    /// twice, and what removes a pair must remove both.
    pub(crate) fn lookup_all(
        &self,
        payload: &[u8],
        head: &str,
        tail: &str,
        path: &Path,
        check: &dyn Fn(usize, usize) -> Result<()>,
    ) -> Result<Vec<usize>> {
        let mut rows = Vec::new();
        for (h, t) in spellings(head, tail) {
            if let Some(row) = self.lookup_exact(payload, &h, &t, path, check)? {
                rows.push(row);
            }
        }
        rows.sort_unstable();
        rows.dedup();
        Ok(rows)
    }

    /// Finds the row holding exactly these bytes of (head, tail).
    fn lookup_exact(
        &self,
        payload: &[u8],
        head: &str,
        tail: &str,
        path: &Path,
        check: &dyn Fn(usize, usize) -> Result<()>,
    ) -> Result<Option<usize>> {
        let h = pair_hash(head, tail);
        let key_at = |i: usize| -> Result<u64> {
            let at = self.lookup_at + 16 * i;
            check(at, at + 16)?;
            Ok(get_u64(payload, at).unwrap_or(u64::MAX))
        };
        // lower bound on hash
        let (mut lo, mut hi) = (0usize, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if key_at(mid)? < h {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut i = lo;
        while i < self.count && key_at(i)? == h {
            let row = get_u64(payload, self.lookup_at + 16 * i + 8).unwrap_or(u64::MAX) as usize;
            if row >= self.count {
                return Err(IndexError::corrupt(path, "lookup table row out of range"));
            }
            let p = self.pair(payload, row, path, check)?;
            if p.head == head && p.tail == tail {
                return Ok(Some(row));
            }
            i += 1;
        }
        Ok(None)
    }
}

/// Builds a `pairs` payload from the concatenated records of `count` rows.
pub(crate) fn encode_pairs(blob: &[u8], count: usize, path: &Path) -> Result<Vec<u8>> {
    let mut offsets = Vec::with_capacity(count + 1);
    let mut keys: Vec<(u64, u64)> = Vec::with_capacity(count);
    let mut at = 0usize;
    for row in 0..count {
        let (p, used) = decode_record(&blob[at..])
            .ok_or_else(|| IndexError::corrupt(path, format!("pair record {row} is damaged")))?;
        offsets.push(at as u64);
        keys.push((pair_hash(p.head, p.tail), row as u64));
        at += used;
    }
    if at != blob.len() {
        return Err(IndexError::corrupt(
            path,
            format!("{} bytes after the last pair record", blob.len() - at),
        ));
    }
    offsets.push(at as u64);
    keys.sort_unstable();
    let mut out = Vec::with_capacity(16 + 8 * (count + 1) + round8(blob.len()) + 16 * count);
    out.extend_from_slice(&(count as u64).to_le_bytes());
    out.extend_from_slice(&(blob.len() as u64).to_le_bytes());
    for o in offsets {
        out.extend_from_slice(&o.to_le_bytes());
    }
    out.extend_from_slice(blob);
    out.resize(out.len() + round8(blob.len()) - blob.len(), 0);
    for (h, r) in keys {
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(&r.to_le_bytes());
    }
    Ok(out)
}
