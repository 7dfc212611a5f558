//! Models named by their Hugging Face Hub id (`org/name`, `org/name@revision`), found in the
//! local Hub cache that `huggingface_hub` fills for transformers, sentence-transformers and
//! `hf download`. A user who has run a model in Python has its files there already; with this
//! they pass `--model sentence-transformers/all-MiniLM-L6-v2` instead of digging out
//! `~/.cache/huggingface/hub/models--…/snapshots/<commit>/`.
//!
//! Nothing is downloaded: relbert reaches no network. What is found is the snapshot
//! directory, whose files (symbolic links into the cache's `blobs/`) the loader reads as any
//! model directory's, so an index records the snapshot's path, which names the commit.
//!
//! The cache is found as `huggingface_hub` finds it: `$HF_HUB_CACHE`, else the older
//! `$HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`,
//! else `~/.cache/huggingface/hub`, with `~` and `$NAME` / `${NAME}` in a value expanded as
//! Python expands them (an unknown variable left as written). One difference: an empty
//! `$HF_HUB_CACHE`, `$HF_HOME` or `$XDG_CACHE_HOME` is taken as unset, where Python would
//! read the empty path as the working directory. A revision is a ref the cache records (`refs/<revision>` holds its commit, as
//! `refs/refs/pr/1` does for `refs/pr/1`) or a commit.
//!
//! Written here rather than taken from the `hf-hub` crate: its 1.x always brings an HTTP
//! client and async runtime (reqwest, hf-xet, tokio) into the library, and its 0.4 offline
//! `Cache` reads `$HF_HOME` only (not `$HF_HUB_CACHE` or `$XDG_CACHE_HOME`, so it looked in
//! another place than Python for many users) and panics where no home directory is known.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// The longest repository name the Hub accepts, namespace not counted (`huggingface_hub`'s
/// `REPO_ID_REGEX`).
const MAX_NAME_LEN: usize = 96;

/// A model named by its Hub id: `name` or `namespace/name`, and a revision (`main` when none
/// is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubModel {
    /// `name` or `namespace/name`.
    pub repo: String,
    /// A ref (`main`, a tag, a branch) or a commit; `None`: `main`.
    pub revision: Option<String>,
}

impl HubModel {
    /// Reads `s` as a Hub model id with an optional `@revision`, or `None` when it cannot be
    /// one: the Hub's own rules (one or two parts of ASCII letters, digits, `-`, `_` and `.`,
    /// a name of at most 96 characters, no `--` or `..`, no part that starts or ends with `-`
    /// or `.`, no `.git` at the end), so that a path such as `./model`, `/opt/m` or `a/b/c`
    /// is never read as an id. The revision may be any ref name whose parts stay inside the
    /// repository's folder (none empty, `.` or `..`; no `\`).
    pub fn parse(s: &str) -> Option<HubModel> {
        let (repo, revision) = match s.split_once('@') {
            Some((repo, rev)) => (repo, Some(rev)),
            None => (s, None),
        };
        if !valid_repo_id(repo) || revision.is_some_and(|r| !valid_revision(r)) {
            return None;
        }
        Some(HubModel {
            repo: repo.to_string(),
            revision: revision.map(str::to_string),
        })
    }

    /// The revision asked for, `main` by default.
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }

    /// The repository's folder in the cache: `models--namespace--name`.
    pub fn folder(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }
}

impl fmt::Display for HubModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.revision {
            Some(r) => write!(f, "{}@{r}", self.repo),
            None => f.write_str(&self.repo),
        }
    }
}

fn valid_part(p: &str) -> bool {
    !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !p.starts_with(['-', '.'])
        && !p.ends_with(['-', '.'])
}

fn valid_repo_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    (1..=2).contains(&parts.len())
        && parts.iter().all(|p| valid_part(p))
        && parts.last().is_some_and(|name| name.len() <= MAX_NAME_LEN)
        && !id.contains("--")
        && !id.contains("..")
        && !id.ends_with(".git")
}

/// A ref name (`v1`, `refs/pr/1`, `feat+x`) or a commit: git allows far more in a ref name
/// than in an id, so only what would leave the repository's folder is refused (an empty,
/// `.` or `..` part, a backslash, NUL).
fn valid_revision(r: &str) -> bool {
    !r.is_empty()
        && !r.contains(['\\', '\0'])
        && r.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
}

/// The Hub cache directory, as `huggingface_hub` finds it from the environment (see the
/// module's docs), or `None` when no variable names it and no home directory is known.
pub fn cache_dir() -> Option<PathBuf> {
    cache_dir_with(|name| {
        let v = std::env::var_os(name);
        // Python's `expanduser` falls back on the password database when `$HOME` is unset
        // (a systemd unit, `env -i`); so does `home_dir`.
        if name == "HOME" && v.as_ref().is_none_or(|h| h.is_empty()) {
            return std::env::home_dir().map(OsString::from);
        }
        v
    })
}

/// [`cache_dir`] with the environment read through `var`, for tests and for callers that
/// keep their own settings.
pub fn cache_dir_with(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    let home = || set("HOME").map(PathBuf::from);
    // `~` first, then the variables, as Python's `expandvars(expanduser(v))`; a variable set
    // to the empty string is expanded to it.
    let expand = |v: OsString| -> Option<PathBuf> {
        let p = PathBuf::from(v);
        let p = match p.strip_prefix("~") {
            Ok(rest) => home()?.join(rest),
            Err(_) => p,
        };
        Some(match p.to_str() {
            Some(s) => PathBuf::from(expand_vars(s, &var)),
            None => p,
        })
    };
    if let Some(v) = set("HF_HUB_CACHE").or_else(|| set("HUGGINGFACE_HUB_CACHE")) {
        return expand(v);
    }
    if let Some(v) = set("HF_HOME") {
        return expand(v).map(|h| h.join("hub"));
    }
    let xdg = match set("XDG_CACHE_HOME") {
        Some(v) => expand(v)?,
        None => home()?.join(".cache"),
    };
    Some(xdg.join("huggingface").join("hub"))
}

/// `$NAME` and `${NAME}` in `s` replaced by the variables' values, as Python's
/// `os.path.expandvars` does: a variable that is unset (or not UTF-8) is left as written,
/// `${…}` whole, and the text after it is read on.
fn expand_vars(s: &str, var: &impl Fn(&str) -> Option<OsString>) -> String {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        // The name, and the length of what follows `$` that it spans (`{NAME}` or `NAME`).
        let (name, len) = match after.strip_prefix('{') {
            Some(b) => match b.find('}') {
                Some(end) => (&b[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after.find(|c| !name_char(c)).unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        if len == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        match var(name).and_then(|v| v.into_string().ok()) {
            Some(v) => out.push_str(&v),
            None => {
                out.push('$');
                out.push_str(&after[..len]);
            }
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// What looking `model` up in the cache `cache` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The snapshot directory of the revision asked for.
    Snapshot(PathBuf),
    /// The cache has no folder for the repository.
    NoRepository(PathBuf),
    /// The repository is there, but not the revision: no ref of that name and no snapshot
    /// of that commit (the path is where it was looked for).
    NoRevision(PathBuf),
    /// The ref's file does not hold a commit (the path is the ref's file).
    BadRef(PathBuf),
}

/// Looks `model` up in the Hub cache `cache`: its ref, if the cache holds one of that name,
/// gives the commit, else the revision is taken as the commit; the commit's snapshot
/// directory is the model.
pub fn lookup(cache: &Path, model: &HubModel) -> Lookup {
    let repo = cache.join(model.folder());
    if !repo.is_dir() {
        return Lookup::NoRepository(repo);
    }
    let rev = model.revision();
    let ref_file = repo.join("refs").join(rev);
    let commit = if ref_file.is_file() {
        match std::fs::read_to_string(&ref_file) {
            Ok(s) if valid_commit(s.trim()) => s.trim().to_string(),
            _ => return Lookup::BadRef(ref_file),
        }
    } else {
        rev.to_string()
    };
    // A ref name with slashes (`refs/pr/1`) is no snapshot's name.
    if !valid_commit(&commit) {
        return Lookup::NoRevision(ref_file);
    }
    let snapshot = repo.join("snapshots").join(&commit);
    if snapshot.is_dir() {
        Lookup::Snapshot(snapshot)
    } else {
        Lookup::NoRevision(snapshot)
    }
}

/// A commit as a ref file holds it and a snapshot folder is named: one plain name.
fn valid_commit(c: &str) -> bool {
    !c.is_empty() && !c.contains('/') && valid_revision(c)
}

/// The model directory `arg` names: `arg` itself when it exists (a local directory always
/// wins, as in transformers' `from_pretrained`), else the snapshot of the Hub model it names
/// when the cache holds it, else `arg` unchanged (the load that follows names what is
/// missing; [`explain_missing`] says what the cache lacked).
pub fn resolve_model_dir(arg: &Path) -> PathBuf {
    resolve_with(arg, cache_dir().as_deref())
}

fn resolve_with(arg: &Path, cache: Option<&Path>) -> PathBuf {
    if arg.exists() {
        return arg.to_path_buf();
    }
    match (arg.to_str().and_then(HubModel::parse), cache) {
        (Some(model), Some(cache)) => match lookup(cache, &model) {
            Lookup::Snapshot(dir) => dir,
            _ => arg.to_path_buf(),
        },
        _ => arg.to_path_buf(),
    }
}

/// Why `arg`, which names no directory, was not found as a Hub model either, for the error
/// that follows a failed load; `None` when `arg` exists, cannot be a Hub id, or reads as a
/// path within a local directory (`out/epoch-3` where `out/` exists: a mistyped path, not a
/// model to fetch).
pub fn explain_missing(arg: &Path) -> Option<String> {
    explain_with(arg, cache_dir().as_deref())
}

fn explain_with(arg: &Path, cache: Option<&Path>) -> Option<String> {
    if arg.exists() {
        return None;
    }
    let model = HubModel::parse(arg.to_str()?)?;
    if let Some((namespace, _)) = model.repo.split_once('/') {
        if Path::new(namespace).is_dir() {
            return None;
        }
    }
    let fetch = format!(
        "if it is a Hub id, fetch it with `hf download {}{}` (relbert downloads nothing)",
        model.repo,
        model
            .revision
            .as_ref()
            .map(|r| format!(" --revision {r}"))
            .unwrap_or_default()
    );
    let Some(cache) = cache else {
        return Some(format!(
            "no directory {}, and the Hugging Face cache's place is not known (set \
             $HF_HUB_CACHE or $HF_HOME); {fetch}",
            arg.display()
        ));
    };
    let found = match lookup(cache, &model) {
        Lookup::Snapshot(_) => return None,
        Lookup::NoRepository(p) => format!("the Hub cache has no {}", p.display()),
        Lookup::NoRevision(p) => format!(
            "the Hub cache holds {} but not its revision {} ({} is not there)",
            model.repo,
            model.revision(),
            p.display()
        ),
        Lookup::BadRef(p) => format!("{} holds no commit", p.display()),
    };
    Some(format!(
        "no directory {}, nor a Hub model {model} in the Hugging Face cache: {found}; {fetch}",
        arg.display()
    ))
}

/// The Hub model and commit whose snapshot `dir` is (`…/models--org--name/snapshots/COMMIT`),
/// for an error about files the snapshot lacks: `hf download` fetches only the files asked
/// for, so a snapshot may hold a model's config without its weights.
pub fn snapshot_of(dir: &Path) -> Option<(String, String)> {
    let commit = dir.file_name()?.to_str()?;
    let snapshots = dir.parent()?;
    if snapshots.file_name()? != "snapshots" {
        return None;
    }
    let folder = snapshots.parent()?.file_name()?.to_str()?;
    let repo = folder.strip_prefix("models--")?.replacen("--", "/", 1);
    valid_repo_id(&repo).then(|| (repo, commit.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_by_the_hubs_rules_and_paths_are_not_ids() {
        let m = HubModel::parse("sentence-transformers/all-MiniLM-L6-v2").unwrap();
        assert_eq!(m.repo, "sentence-transformers/all-MiniLM-L6-v2");
        assert_eq!(m.revision(), "main");
        assert_eq!(
            m.folder(),
            "models--sentence-transformers--all-MiniLM-L6-v2"
        );
        let m = HubModel::parse("bert-base-uncased@v1.0").unwrap();
        assert_eq!(
            (m.repo.as_str(), m.revision()),
            ("bert-base-uncased", "v1.0")
        );
        assert_eq!(m.to_string(), "bert-base-uncased@v1.0");
        let m = HubModel::parse("relbert/relbert-roberta-large@refs/pr/1").unwrap();
        assert_eq!(m.revision(), "refs/pr/1");
        for not_an_id in [
            "",
            "./model",
            "/opt/model",
            "a/b/c",
            "a//b",
            "a/",
            "/a",
            "a--b/c",
            "a/..b",
            "..",
            ".hidden/m",
            "org/m-",
            "org/m with space",
            "org/m@",
            "org/m@..",
            "org/m@a/../b",
            "org/m@a//b",
            "org/m@a\\b",
            "org/m.git",
            "models\\x",
        ] {
            assert_eq!(HubModel::parse(not_an_id), None, "{not_an_id:?}");
        }
        // The name is limited, not the namespace; a ref name may hold what git allows.
        let long = format!("{}/{}", "o".repeat(100), "m".repeat(MAX_NAME_LEN));
        assert!(HubModel::parse(&long).is_some());
        assert_eq!(HubModel::parse(&format!("{long}m")), None);
        let m = HubModel::parse("org/m@feat+x@2").unwrap();
        assert_eq!(m.revision(), "feat+x@2");
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_cache_is_found_where_huggingface_hub_finds_it() {
        let all = [
            ("HF_HUB_CACHE", "/c/hub"),
            ("HUGGINGFACE_HUB_CACHE", "/old/hub"),
            ("HF_HOME", "/hf"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ];
        let at = |skip: usize| cache_dir_with(env(&all[skip..]));
        assert_eq!(at(0), Some(PathBuf::from("/c/hub")));
        assert_eq!(at(1), Some(PathBuf::from("/old/hub")));
        assert_eq!(at(2), Some(PathBuf::from("/hf/hub")));
        assert_eq!(at(3), Some(PathBuf::from("/xdg/huggingface/hub")));
        assert_eq!(at(4), Some(PathBuf::from("/home/u/.cache/huggingface/hub")));
        assert_eq!(at(5), None);
        // Empty values are unset; `~` is the home directory.
        let v = [
            ("HF_HUB_CACHE", ""),
            ("HF_HOME", "~/hf"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(
            cache_dir_with(env(&v)),
            Some(PathBuf::from("/home/u/hf/hub"))
        );
        assert_eq!(cache_dir_with(env(&[("HF_HOME", "~/hf")])), None);
        // `$NAME` and `${NAME}` are expanded (an empty one to nothing); an unknown one is
        // left as written; `~` is expanded before them, not in their values.
        let v = [
            ("HF_HOME", "$SCRATCH/${USER}x/$NONE/$E/$"),
            ("SCRATCH", "/s"),
            ("USER", "u"),
            ("E", ""),
        ];
        assert_eq!(
            cache_dir_with(env(&v)),
            Some(PathBuf::from("/s/ux/$NONE//$/hub"))
        );
        let v = [("HF_HOME", "$X/hf"), ("X", "~/x"), ("HOME", "/home/u")];
        assert_eq!(cache_dir_with(env(&v)), Some(PathBuf::from("~/x/hf/hub")));
        let a = [("A", "x"), ("B", "y")];
        assert_eq!(expand_vars("${A", &env(&a)), "${A");
        assert_eq!(expand_vars("${A$B}/$B$$/${}é", &env(&a)), "${A$B}/y$$/${}é");
        assert_eq!(expand_vars("${A}${B}_$A_", &env(&a)), "xy_$A_");
    }

    #[test]
    fn a_snapshot_names_its_model_and_commit() {
        let dir = Path::new("/c/hub/models--org--m/snapshots/abc");
        assert_eq!(snapshot_of(dir), Some(("org/m".into(), "abc".into())));
        let dir = Path::new("/c/hub/models--bert-base/snapshots/abc");
        assert_eq!(snapshot_of(dir), Some(("bert-base".into(), "abc".into())));
        assert_eq!(snapshot_of(Path::new("/c/models--org--m/abc")), None);
        assert_eq!(snapshot_of(Path::new("/c/org/snapshots/abc")), None);
        assert_eq!(snapshot_of(Path::new("abc")), None);
    }

    /// A cache as `huggingface_hub` lays it out: blobs, a snapshot per commit of links to
    /// them, and refs naming commits.
    fn cache_with(root: &Path, repo: &str, refs: &[(&str, &str)], commits: &[&str]) {
        let folder = root.join(format!("models--{}", repo.replace('/', "--")));
        std::fs::create_dir_all(folder.join("blobs")).unwrap();
        std::fs::write(folder.join("blobs/abc"), b"{}").unwrap();
        for c in commits {
            let snap = folder.join("snapshots").join(c);
            std::fs::create_dir_all(&snap).unwrap();
            std::os::unix::fs::symlink("../../blobs/abc", snap.join("config.json")).unwrap();
        }
        for (name, commit) in refs {
            let f = folder.join("refs").join(name);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, commit).unwrap();
        }
    }

    #[test]
    fn refs_and_commits_lead_to_their_snapshots() {
        let tmp = tempfile::tempdir().unwrap();
        let c = tmp.path();
        let (c1, c2) = ("1111aaaa", "2222bbbb");
        cache_with(
            c,
            "org/m",
            &[
                ("main", "1111aaaa\n"),
                ("v2", c2),
                ("refs/pr/3", c2),
                ("bad", "../x"),
            ],
            &[c1, c2],
        );
        let snap = |commit: &str| c.join("models--org--m/snapshots").join(commit);
        let at = |id: &str| lookup(c, &HubModel::parse(id).unwrap());
        assert_eq!(at("org/m"), Lookup::Snapshot(snap(c1)));
        assert_eq!(at("org/m@v2"), Lookup::Snapshot(snap(c2)));
        assert_eq!(at("org/m@refs/pr/3"), Lookup::Snapshot(snap(c2)));
        assert_eq!(at("org/m@1111aaaa"), Lookup::Snapshot(snap(c1)));
        assert_eq!(at("org/m@3333"), Lookup::NoRevision(snap("3333")));
        assert_eq!(
            at("org/m@bad"),
            Lookup::BadRef(c.join("models--org--m/refs/bad"))
        );
        assert_eq!(
            at("org/other"),
            Lookup::NoRepository(c.join("models--org--other"))
        );
        // The snapshot's file is read through its link.
        let dir = resolve_with(Path::new("org/m@v2"), Some(c));
        assert_eq!(std::fs::read(dir.join("config.json")).unwrap(), b"{}");
    }

    #[test]
    fn a_local_directory_wins_and_what_is_missing_is_said() {
        let tmp = tempfile::tempdir().unwrap();
        let c = tmp.path().join("cache");
        cache_with(&c, "org/m", &[("main", "1111")], &["1111"]);
        // An existing directory is taken as it is (that one of an id's name comes before the
        // cache is tested from a working directory, in tests/cli_models.rs).
        let local = tmp.path().join("org/m");
        std::fs::create_dir_all(&local).unwrap();
        assert_eq!(resolve_with(&local, Some(&c)), local);
        assert_eq!(explain_with(&local, Some(&c)), None);
        // An id the cache lacks stays as given, and the explanation names the id and place.
        let arg = Path::new("org/none");
        assert_eq!(resolve_with(arg, Some(&c)), arg);
        let why = explain_with(arg, Some(&c)).unwrap();
        assert!(
            why.contains("org/none") && why.contains("models--org--none"),
            "{why}"
        );
        assert!(why.contains("hf download org/none"), "{why}");
        let why = explain_with(Path::new("org/m@v9"), Some(&c)).unwrap();
        assert!(why.contains("not its revision v9"), "{why}");
        assert!(why.contains("--revision v9"), "{why}");
        let why = explain_with(arg, None).unwrap();
        assert!(why.contains("cache's place is not known"), "{why}");
        // A path under a local directory (here `src/`) is a mistyped path, not an id.
        assert_eq!(explain_with(Path::new("src/none"), Some(&c)), None);
        // Not an id: nothing to say beyond the load's own error.
        assert_eq!(explain_with(Path::new("./none"), Some(&c)), None);
        assert_eq!(
            resolve_with(Path::new("./none"), Some(&c)),
            Path::new("./none")
        );
    }
}
