//! Counting pair co-occurrences under a memory budget, as GloVe's `cooccur` does: counts
//! accumulate in memory up to the budget, beyond it sorted runs are written to disk, and the
//! runs are merged at the end into one sorted stream of `(pair, count)`.
//!
//! Each worker appends every occurrence's key to a buffer — a sequential write, where a
//! hash map would take a cache miss per occurrence once it outgrows the cache — and when
//! the buffer is full sorts it (an LSD radix sort that skips the byte positions all keys
//! share), folds equal keys into counts, and merges the result into its sorted in-memory
//! counts. When those outgrow their share of the budget they are written out as a run.
//!
//! The first pass's word counts are bounded the same way ([`WordCounter`]): a hash table of
//! words per worker, written out as a run sorted by word when it outgrows its share, and the
//! runs merged by the same k-way merge ([`Merged`]), keyed by the word instead of a pair.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use crate::error::{Error, Result};

/// A key of a run's records: a record is the key, then its count (`u64`, little-endian).
/// Runs are sorted by key, and [`Merged`] merges them in key order.
pub trait RunKey: Ord + Sized {
    /// Writes the key.
    fn write_to(&self, w: &mut impl Write) -> std::io::Result<()>;
    /// Reads a key; `None` at the end of the run.
    fn read_from(r: &mut impl Read) -> std::io::Result<Option<Self>>;
}

/// A pair key ([`key`]): eight bytes.
impl RunKey for u64 {
    fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(&self.to_le_bytes())
    }

    fn read_from(r: &mut impl Read) -> std::io::Result<Option<Self>> {
        let mut buf = [0u8; 8];
        match r.read_exact(&mut buf) {
            Ok(()) => Ok(Some(u64::from_le_bytes(buf))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A word: its length in bytes (`u32`, little-endian), then its UTF-8. Words sort by their
/// bytes, as `str` does.
impl RunKey for Box<str> {
    fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let len = u32::try_from(self.len()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a word of 4 GiB or more cannot be counted",
            )
        })?;
        w.write_all(&len.to_le_bytes())?;
        w.write_all(self.as_bytes())
    }

    fn read_from(r: &mut impl Read) -> std::io::Result<Option<Self>> {
        let mut len = [0u8; 4];
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
        r.read_exact(&mut bytes)?;
        String::from_utf8(bytes)
            .map(|s| Some(s.into_boxed_str()))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// Writes one record of a run.
fn write_record<K: RunKey>(w: &mut impl Write, k: &K, c: u64) -> std::io::Result<()> {
    k.write_to(w)?;
    w.write_all(&c.to_le_bytes())
}

/// A pair of term ids packed into one key: head in the high half, so keys sort by head.
#[inline]
pub fn key(head: u32, tail: u32) -> u64 {
    ((head as u64) << 32) | tail as u64
}

/// The head and tail of a key.
#[inline]
pub fn unkey(k: u64) -> (u32, u32) {
    ((k >> 32) as u32, k as u32)
}

/// What a finished counter leaves: its runs on disk and its sorted counts in memory.
pub type Counted<K = u64> = (Vec<PathBuf>, Vec<(K, u64)>);

/// One worker's counter.
pub struct PairCounter {
    buf: Vec<u64>,
    scratch: Vec<u64>,
    cap: usize,
    counts: Vec<(u64, u64)>,
    counts_limit: usize,
    dir: PathBuf,
    tag: String,
    runs: Vec<PathBuf>,
}

impl PairCounter {
    /// A counter that uses about `budget` bytes at most, spilling runs named
    /// `run-<tag>-<n>` into `dir`.
    pub fn new(budget: usize, dir: &Path, tag: String) -> PairCounter {
        // A quarter each for the key buffer and its sort scratch, a quarter for the counts
        // and a quarter for merging new counts into them.
        let cap = (budget / 32).max(1 << 12);
        PairCounter {
            buf: Vec::new(),
            scratch: Vec::new(),
            cap,
            counts: Vec::new(),
            counts_limit: (budget / 64).max(1 << 10),
            dir: dir.to_path_buf(),
            tag,
            runs: Vec::new(),
        }
    }

    /// Counts one occurrence of `k`.
    #[inline]
    pub fn add(&mut self, k: u64) -> Result<()> {
        self.buf.push(k);
        if self.buf.len() >= self.cap {
            self.flush()?;
        }
        Ok(())
    }

    /// Folds the buffer into the sorted counts; spills them when they outgrow their share.
    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        radix_sort(&mut self.buf, &mut self.scratch);
        let mut run: Vec<(u64, u64)> = Vec::new();
        for &k in &self.buf {
            match run.last_mut() {
                Some(last) if last.0 == k => last.1 += 1,
                _ => run.push((k, 1)),
            }
        }
        self.buf.clear();
        self.counts = merge_sorted(std::mem::take(&mut self.counts), run);
        if self.counts.len() > self.counts_limit {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        let entries = std::mem::take(&mut self.counts);
        let path = self
            .dir
            .join(format!("run-{}-{}.bin", self.tag, self.runs.len()));
        write_run(&path, &entries)?;
        self.runs.push(path);
        Ok(())
    }

    /// Ends counting: the runs on disk and the sorted counts still in memory.
    pub fn finish(mut self) -> Result<Counted> {
        self.flush()?;
        Ok((self.runs, self.counts))
    }
}

/// Writes `entries`, sorted by key, as the run `path`.
fn write_run<K: RunKey>(path: &Path, entries: &[(K, u64)]) -> Result<()> {
    let f = File::create(path).map_err(|e| run_file_error(path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    for (k, c) in entries {
        write_record(&mut w, k, *c).map_err(|e| Error::io(path, e))?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}

/// The least a [`WordCounter`] holds before it spills, whatever its budget: a run per few
/// words would be all overhead.
pub const MIN_WORD_TABLE_BYTES: usize = 64 << 10;

/// What one word's entry costs a [`WordCounter`] besides its text, per slot of the table's
/// capacity: the slot (the boxed text's pointer and length, the count, a control byte, at
/// most 7/8 of the slots used) and the entry's place in the vector a spill sorts.
const WORD_SLOT_BYTES: usize = 2 * std::mem::size_of::<(Box<str>, u64)>() + 8;

/// What the allocator adds to each word's text.
const WORD_TEXT_OVERHEAD: usize = 16;

/// One worker's word counts under a memory budget: a hash table of words, written out as a
/// run sorted by word (`run-<tag>-<n>.bin`) before it would outgrow the budget. Counts
/// stay exact: the runs are merged by [`Merged`], which sums a word's counts across them.
pub struct WordCounter {
    counts: FxHashMap<Box<str>, u64>,
    /// Bytes of the words' texts in the table, with the allocator's overhead.
    text_bytes: usize,
    limit: usize,
    dir: PathBuf,
    tag: String,
    runs: Vec<PathBuf>,
    /// Records written to the runs.
    spilled: u64,
}

impl WordCounter {
    /// A counter that uses about `budget` bytes at most (at least [`MIN_WORD_TABLE_BYTES`]),
    /// spilling runs named `run-<tag>-<n>.bin` into `dir`.
    pub fn new(budget: usize, dir: &Path, tag: String) -> WordCounter {
        WordCounter {
            counts: FxHashMap::default(),
            text_bytes: 0,
            limit: budget.max(MIN_WORD_TABLE_BYTES),
            dir: dir.to_path_buf(),
            tag,
            runs: Vec::new(),
            spilled: 0,
        }
    }

    /// Counts one occurrence of `w`.
    #[inline]
    pub fn add(&mut self, w: &str) -> Result<()> {
        if let Some(c) = self.counts.get_mut(w) {
            *c += 1;
            return Ok(());
        }
        // Judged before the table grows: growing doubles its slots at once.
        let capacity = self.counts.capacity();
        let slots = if self.counts.len() == capacity {
            (capacity * 2).max(4)
        } else {
            capacity
        };
        let text = w.len() + WORD_TEXT_OVERHEAD;
        if !self.counts.is_empty() && slots * WORD_SLOT_BYTES + self.text_bytes + text > self.limit
        {
            self.spill()?;
        }
        self.counts.insert(w.into(), 1);
        self.text_bytes += text;
        Ok(())
    }

    /// Whether any run was written: if not, [`WordCounter::into_table`] holds every count.
    pub fn spilled(&self) -> bool {
        !self.runs.is_empty()
    }

    /// The counts of a counter that never spilled ([`WordCounter::spilled`]); the table
    /// still in memory otherwise.
    pub fn into_table(self) -> FxHashMap<Box<str>, u64> {
        self.counts
    }

    /// Writes the table out as a run sorted by word and empties it (keeping its slots,
    /// which the budget counts).
    fn spill(&mut self) -> Result<()> {
        let mut entries: Vec<(Box<str>, u64)> = self.counts.drain().collect();
        self.text_bytes = 0;
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let path = self
            .dir
            .join(format!("run-{}-{}.bin", self.tag, self.runs.len()));
        write_run(&path, &entries)?;
        self.spilled += entries.len() as u64;
        self.runs.push(path);
        Ok(())
    }

    /// Ends counting: the runs on disk and the table's counts, sorted by word, in memory;
    /// with the number of records in all (what a merge of them reads).
    pub fn finish(self) -> (Counted<Box<str>>, u64) {
        let mut entries: Vec<(Box<str>, u64)> = self.counts.into_iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let records = self.spilled + entries.len() as u64;
        ((self.runs, entries), records)
    }
}

/// Merges two sorted count lists, adding the counts of equal keys.
fn merge_sorted(a: Vec<(u64, u64)>, b: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    if a.is_empty() {
        return b;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push((a[i].0, a[i].1 + b[j].1));
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// LSD radix sort by bytes; byte positions where every key has the same value are skipped
/// (term ids use few of a key's 64 bits).
fn radix_sort(keys: &mut Vec<u64>, scratch: &mut Vec<u64>) {
    let mut hist = [[0usize; 256]; 8];
    for &k in keys.iter() {
        for (d, h) in hist.iter_mut().enumerate() {
            h[((k >> (d * 8)) & 0xff) as usize] += 1;
        }
    }
    let n = keys.len();
    scratch.clear();
    scratch.resize(n, 0);
    for (d, h) in hist.iter().enumerate() {
        if h.contains(&n) {
            continue;
        }
        let mut pos = [0usize; 256];
        let mut sum = 0;
        for (p, &c) in pos.iter_mut().zip(h.iter()) {
            *p = sum;
            sum += c;
        }
        for &k in keys.iter() {
            let b = ((k >> (d * 8)) & 0xff) as usize;
            scratch[pos[b]] = k;
            pos[b] += 1;
        }
        std::mem::swap(keys, scratch);
    }
}

enum Run<K> {
    File(BufReader<File>, PathBuf),
    Mem(std::vec::IntoIter<(K, u64)>),
}

impl<K: RunKey> Run<K> {
    fn next(&mut self) -> Result<Option<(K, u64)>> {
        match self {
            Run::Mem(it) => Ok(it.next()),
            Run::File(r, path) => {
                let Some(k) = K::read_from(r).map_err(|e| Error::io(&*path, e))? else {
                    return Ok(None);
                };
                let mut c = [0u8; 8];
                r.read_exact(&mut c).map_err(|e| Error::io(&*path, e))?;
                Ok(Some((k, u64::from_le_bytes(c))))
            }
        }
    }
}

/// The k-way merge of every worker's runs: keys in order, each once, counts summed.
pub struct Merged<K = u64> {
    runs: Vec<Run<K>>,
    heap: BinaryHeap<Reverse<(K, usize, u64)>>,
    /// Records read from the runs so far, those merged in rounds included.
    read: u64,
    /// Records the rounds wrote ([`Merged::rewritten`]).
    rewritten: u64,
}

impl<K: RunKey> Merged<K> {
    /// Merges the outputs of [`PairCounter::finish`] (or [`WordCounter::finish`]). More
    /// runs on disk than the process may hold open at once (a big corpus under a small
    /// `--memory`) are first merged in rounds, a group at a time, into fewer runs: opening
    /// them all failed late with "Too many open files".
    pub fn new(parts: Vec<Counted<K>>) -> Result<Merged<K>> {
        Merged::with_open_limit(parts, open_runs_limit())
    }

    fn with_open_limit(parts: Vec<Counted<K>>, limit: usize) -> Result<Merged<K>> {
        let limit = limit.max(2);
        let mut files = Vec::new();
        let mut mems = Vec::new();
        for (f, mem) in parts {
            files.extend(f);
            mems.push(mem);
        }
        let (files, read, written) = merge_in_rounds::<K>(files, limit)?;
        let mut m = Merged::open(files, mems)?;
        m.read += read;
        m.rewritten = written;
        Ok(m)
    }

    fn open(files: Vec<PathBuf>, mems: Vec<Vec<(K, u64)>>) -> Result<Merged<K>> {
        let mut runs = Vec::new();
        for p in files {
            let f = File::open(&p).map_err(|e| run_file_error(&p, e))?;
            runs.push(Run::File(BufReader::with_capacity(1 << 16, f), p));
        }
        runs.extend(mems.into_iter().map(|m| Run::Mem(m.into_iter())));
        let mut m = Merged {
            heap: BinaryHeap::with_capacity(runs.len()),
            runs,
            read: 0,
            rewritten: 0,
        };
        for i in 0..m.runs.len() {
            m.advance(i)?;
        }
        Ok(m)
    }

    /// The next key and its total count.
    pub fn next_pair(&mut self) -> Result<Option<(K, u64)>> {
        let Some(Reverse((k, i, mut total))) = self.heap.pop() else {
            return Ok(None);
        };
        self.advance(i)?;
        while let Some(Reverse((k2, j, c))) = self.heap.peek() {
            if *k2 != k {
                break;
            }
            let (j, c) = (*j, *c);
            self.heap.pop();
            total += c;
            self.advance(j)?;
        }
        Ok(Some((k, total)))
    }

    /// Records read from the runs so far (each key once per run that holds it), those
    /// merged in rounds before included: progress against the records the runs held and
    /// [`Merged::rewritten`].
    pub fn records_read(&self) -> u64 {
        self.read
    }

    /// Records written by the rounds that merged more runs than may be open at once into
    /// fewer: each is read again, so a whole merge reads these and the records of the runs
    /// it was given.
    pub fn rewritten(&self) -> u64 {
        self.rewritten
    }

    /// Closes the runs and removes those on disk: merged, they are not needed again, and
    /// their disk space is.
    pub fn remove_runs(self) {
        for r in self.runs {
            if let Run::File(f, path) = r {
                drop(f);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    fn advance(&mut self, i: usize) -> Result<()> {
        if let Some((k, c)) = self.runs[i].next()? {
            self.read += 1;
            self.heap.push(Reverse((k, i, c)));
        }
        Ok(())
    }
}

/// Descriptors a merge keeps free beside its runs: the merged run it writes, and what the
/// rest of the process (its output, a log) may open meanwhile.
const SPARE_FILES: usize = 4;

/// How many runs a merge opens at once: the process's file limit less the descriptors open
/// already (counted in `/proc/self/fd`; where that cannot be read, half the limit is left
/// for them) and [`SPARE_FILES`], at least 2 and at most 512. Half the limit, as before,
/// took 10 of 20 while 12 were open (`ulimit -n 20`), and opening the runs failed.
fn open_runs_limit() -> usize {
    let soft = open_files_limit();
    let in_use = open_descriptors().unwrap_or(soft / 2);
    soft.saturating_sub(in_use + SPARE_FILES).clamp(2, 512)
}

/// The soft limit on open files (`ulimit -n`); 1024 when it cannot be read.
fn open_files_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given; RLIMIT_NOFILE is always valid.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        1024
    };
    soft.min(1 << 20) as usize
}

/// The descriptors this process has open, or `None` without `/proc`.
fn open_descriptors() -> Option<usize> {
    // The listing's own descriptor is among those it lists.
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(n.saturating_sub(1))
}

/// The error of opening or creating run `path`: out of descriptors (EMFILE, ENFILE) is said
/// with what to do, since nothing in the input is wrong.
fn run_file_error(path: &Path, e: std::io::Error) -> Error {
    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
        let advice = format!(
            "{e}: the merge of the counts spilled to disk needs more open files than the \
             limit allows (ulimit -n is {}): raise it (`ulimit -n 1024`), or give more \
             --memory, which spills fewer runs",
            open_files_limit()
        );
        return Error::io(path, std::io::Error::new(e.kind(), advice));
    }
    Error::io(path, e)
}

/// Merges runs on disk, `limit` at a time, until at most `limit` are left; the merged ones
/// are removed as they are replaced (their disk space is needed again).
/// Returns the runs left, the records read and the records written.
fn merge_in_rounds<K: RunKey>(
    mut files: Vec<PathBuf>,
    limit: usize,
) -> Result<(Vec<PathBuf>, u64, u64)> {
    // Names unique in the work directory across merges of one process.
    static MERGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let (mut read, mut written) = (0, 0);
    while files.len() > limit {
        let mut next = Vec::with_capacity(files.len() / limit + 1);
        for group in files.chunks(limit) {
            if let [one] = group {
                next.push(one.clone());
                continue;
            }
            let n = MERGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = group[0].parent().unwrap_or(Path::new("."));
            let path = dir.join(format!("merged-{n}.bin"));
            let mut m = Merged::<K>::open(group.to_vec(), Vec::new())?;
            let f = File::create(&path).map_err(|e| run_file_error(&path, e))?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            while let Some((k, c)) = m.next_pair()? {
                write_record(&mut w, &k, c).map_err(|e| Error::io(&path, e))?;
                written += 1;
            }
            w.flush().map_err(|e| Error::io(&path, e))?;
            read += m.read;
            drop(m);
            for p in group {
                let _ = std::fs::remove_file(p);
            }
            next.push(path);
        }
        files = next;
    }
    Ok((files, read, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_all(keys: &[u64], limit: usize, workers: usize) -> (Vec<(u64, u64)>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let mut counters: Vec<PairCounter> = (0..workers)
            .map(|w| PairCounter::new(limit, dir.path(), w.to_string()))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            counters[i % workers].add(*k).unwrap();
        }

        let parts = counters.into_iter().map(|c| c.finish().unwrap()).collect();
        let mut m = Merged::new(parts).unwrap();
        let mut out = Vec::new();
        while let Some(e) = m.next_pair().unwrap() {
            out.push(e);
        }
        let spilled = dir.path().read_dir().unwrap().count() as u64;
        (out, spilled)
    }

    #[test]
    fn spilling_gives_the_same_counts_as_counting_in_memory() {
        // 200,000 occurrences of 20,000 distinct keys in a skewed pattern.
        let keys: Vec<u64> = (0..200_000u64)
            .map(|i| key((i * i % 97) as u32, ((i * 31) % 20_000 / 97) as u32))
            .collect();
        let (in_memory, spilled0) = count_all(&keys, 1 << 30, 1);
        let (spilled, runs) = count_all(&keys, 1 << 16, 3);
        assert_eq!(spilled0, 0);
        assert!(runs > 3, "the small budget must spill runs: {runs}");
        assert_eq!(in_memory, spilled);
        let total: u64 = in_memory.iter().map(|e| e.1).sum();
        assert_eq!(total, 200_000);
        assert!(in_memory.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn more_runs_than_may_be_open_are_merged_in_rounds() {
        let keys: Vec<u64> = (0..200_000u64)
            .map(|i| key((i * i % 97) as u32, ((i * 31) % 20_000 / 97) as u32))
            .collect();
        let (want, _) = count_all(&keys, 1 << 30, 1);
        let dir = tempfile::tempdir().unwrap();
        let mut counter = PairCounter::new(1 << 16, dir.path(), "t".into());
        for k in &keys {
            counter.add(*k).unwrap();
        }
        let part = counter.finish().unwrap();
        let runs = part.0.len();
        assert!(runs > 9, "{runs}");
        let mut m = Merged::with_open_limit(vec![part], 3).unwrap();
        let mut got = Vec::new();
        while let Some(e) = m.next_pair().unwrap() {
            got.push(e);
        }
        assert_eq!(got, want);
        // At most 3 open at the end, and the merged runs were removed.
        assert!(m.runs.len() <= 4, "{}", m.runs.len());
        assert!(dir.path().read_dir().unwrap().count() <= 3);
    }

    /// Merges word counters' outputs, as the first pass does: the words in order, each
    /// once, and the files left in `dir` after the merge removed its runs.
    fn merge_words(parts: Vec<(Counted<Box<str>>, u64)>, limit: usize) -> Vec<(Box<str>, u64)> {
        let records: u64 = parts.iter().map(|p| p.1).sum();
        let mut m =
            Merged::with_open_limit(parts.into_iter().map(|p| p.0).collect(), limit).unwrap();
        let mut out = Vec::new();
        while let Some(e) = m.next_pair().unwrap() {
            out.push(e);
        }
        assert_eq!(m.records_read(), records + m.rewritten());
        m.remove_runs();
        out
    }

    /// The first pass's word tables grew with the corpus' distinct words, whatever
    /// `--memory` said: a counter over its budget spills sorted runs, and their merge gives
    /// the counts counting in memory gives.
    #[test]
    fn word_counts_spilled_and_merged_are_the_counts_in_memory() {
        // 60,000 occurrences of thousands of distinct words, some not ASCII, skewed.
        let words: Vec<String> = (0..6000u64)
            .map(|i| match i % 3 {
                0 => format!("w{i}"),
                1 => format!("caf\u{e9}{i}"),
                _ => format!("new york {i}"),
            })
            .collect();
        let seq: Vec<&str> = (0..60_000u64)
            .map(|i| {
                let x = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Skewed: low ranks are more frequent.
                words[((x >> 33) % 6000 * ((x >> 20) % 6000) / 6000) as usize].as_str()
            })
            .collect();
        let mut want: FxHashMap<Box<str>, u64> = FxHashMap::default();
        for w in &seq {
            *want.entry((*w).into()).or_insert(0) += 1;
        }
        let mut want: Vec<(Box<str>, u64)> = want.into_iter().collect();
        want.sort();

        let dir = tempfile::tempdir().unwrap();
        let mut counters: Vec<WordCounter> = (0..3)
            .map(|w| WordCounter::new(0, dir.path(), format!("words-{w}")))
            .collect();
        for (i, w) in seq.iter().enumerate() {
            counters[i % 3].add(w).unwrap();
        }
        assert!(counters.iter().all(WordCounter::spilled));
        let parts: Vec<_> = counters.into_iter().map(WordCounter::finish).collect();
        let runs: usize = parts.iter().map(|p| p.0 .0.len()).sum();
        eprintln!(
            "DBG runs {runs} {:?}",
            parts
                .iter()
                .map(|p| (p.0 .0.len(), p.0 .1.len(), p.1))
                .collect::<Vec<_>>()
        );
        assert!(runs > 6, "the least budget must spill runs: {runs}");
        assert_eq!(merge_words(parts, 512), want);
        assert_eq!(dir.path().read_dir().unwrap().count(), 0);

        // More runs than may be open: merged in rounds, to the same counts.
        let mut counter = WordCounter::new(0, dir.path(), "words-r".into());
        for w in &seq {
            counter.add(w).unwrap();
        }
        let part = counter.finish();
        assert!(part.0 .0.len() > 3, "{}", part.0 .0.len());
        assert_eq!(merge_words(vec![part], 3), want);
        assert_eq!(dir.path().read_dir().unwrap().count(), 0);

        // A budget that holds them all writes nothing.
        let mut counter = WordCounter::new(1 << 30, dir.path(), "words-m".into());
        for w in &seq {
            counter.add(w).unwrap();
        }
        assert!(!counter.spilled());
        let mut table: Vec<(Box<str>, u64)> = counter.into_table().into_iter().collect();
        table.sort();
        assert_eq!(table, want);
    }

    #[test]
    fn radix_sort_sorts() {
        let mut v: Vec<u64> = (0..5000u64)
            .map(|i| (((i * 2654435761) % 100_003) << 20) | (i % 7))
            .collect();
        let mut want = v.clone();
        want.sort_unstable();
        radix_sort(&mut v, &mut Vec::new());
        assert_eq!(v, want);
    }

    #[test]
    fn keys_round_trip() {
        assert_eq!(unkey(key(7, u32::MAX)), (7, u32::MAX));
        assert!(key(1, 0) > key(0, u32::MAX));
    }
}
