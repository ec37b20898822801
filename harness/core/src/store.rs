//! The run store: `store/<test-name>/<YYYYMMDDTHHMMSS>/` and the `store/latest` symlink.
//!
//! Owns the layout of one run folder (docs/architecture.md, "The run store"): which file lives
//! where, creating the folder without clobbering an earlier run, and pointing `latest` at it.

use std::path::{Path, PathBuf};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The cause is in the message and not a `source`: `{:#}` would print it twice.
    #[error("{what} {path}: {cause}")]
    Io { what: &'static str, path: String, cause: std::io::Error },
    #[error("bad test name {0:?}: use letters, digits, '-', '_' and '.' only")]
    BadName(String),
    #[error("cannot serialize {0}: {1}")]
    Json(&'static str, serde_json::Error),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.display().to_string();
    move |cause| StoreError::Io { what, path, cause }
}

/// One run folder.
#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
    dir: PathBuf,
}

impl RunDir {
    /// Creates `store/<name>/<timestamp>` (with `-2`, `-3`, ... when two runs start in the same
    /// second), its `nodes/` folder, and points `store/latest` at it.
    pub fn create(store: &Path, name: &str, now: chrono::DateTime<chrono::Utc>) -> Result<Self, StoreError> {
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || name.starts_with('.')
            || name == "latest"
        {
            return Err(StoreError::BadName(name.into()));
        }
        let parent = store.join(name);
        std::fs::create_dir_all(&parent).map_err(io("cannot create store folder", &parent))?;
        let stamp = now.format("%Y%m%dT%H%M%S").to_string();
        // Bounded: at most 1000 runs of one test in the same second.
        let mut dir = None;
        for n in 1..=1000u32 {
            let leaf = if n == 1 { stamp.clone() } else { format!("{stamp}-{n}") };
            let candidate = parent.join(&leaf);
            match std::fs::create_dir(&candidate) {
                Ok(()) => {
                    dir = Some(candidate);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io("cannot create run folder", &candidate)(e)),
            }
        }
        let dir = dir.ok_or_else(|| StoreError::Io {
            what: "too many runs in one second under",
            path: parent.display().to_string(),
            cause: std::io::Error::other("1000 folders exist"),
        })?;
        let nodes = dir.join("nodes");
        std::fs::create_dir(&nodes).map_err(io("cannot create", &nodes))?;
        let run = RunDir { root: store.to_path_buf(), dir };
        run.point_latest()?;
        Ok(run)
    }

    /// [`RunDir::create`] stamped with the current UTC time.
    pub fn create_now(store: &Path, name: &str) -> Result<Self, StoreError> {
        Self::create(store, name, chrono::Utc::now())
    }

    /// Opens an existing run folder (for tests and re-analysis).
    pub fn open(dir: &Path) -> Self {
        let root = dir.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
        RunDir { root, dir: dir.to_path_buf() }
    }

    /// Atomically replaces `store/latest` with a relative symlink to this run.
    fn point_latest(&self) -> Result<(), StoreError> {
        let rel = self.dir.strip_prefix(&self.root).unwrap_or(&self.dir).to_path_buf();
        let tmp = self.root.join(format!(".latest.tmp.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&rel, &tmp).map_err(io("cannot create symlink", &tmp))?;
        let latest = self.root.join("latest");
        std::fs::rename(&tmp, &latest).map_err(io("cannot replace", &latest))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn test_json(&self) -> PathBuf {
        self.dir.join("test.json")
    }
    pub fn history(&self) -> PathBuf {
        self.dir.join("history.jsonl")
    }
    pub fn results(&self) -> PathBuf {
        self.dir.join("results.json")
    }
    pub fn harness_log(&self) -> PathBuf {
        self.dir.join("harness.log")
    }
    pub fn nodes_dir(&self) -> PathBuf {
        self.dir.join("nodes")
    }
    pub fn node_log(&self, id: &str) -> PathBuf {
        self.dir.join("nodes").join(format!("{id}.log"))
    }
    /// Per-node data directories (WALs) live inside the run folder so a run is self-contained.
    pub fn node_data(&self, id: &str) -> PathBuf {
        self.dir.join("data").join(id)
    }

    /// Writes `value` as pretty JSON to `file` inside the run folder (write to a temp file, then
    /// rename, so readers never see half a file).
    pub fn write_json<T: serde::Serialize>(&self, file: &str, value: &T) -> Result<(), StoreError> {
        let text = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Json("json", e))?;
        let path = self.dir.join(file);
        let tmp = self.dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, &text).map_err(io("cannot write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("cannot write", &path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: u32) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc.with_ymd_and_hms(2026, 11, 26, 8, 0, s).unwrap()
    }

    #[test]
    fn layout_and_latest_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store");
        let run = RunDir::create(&store, "raft-register", t(1)).unwrap();
        assert_eq!(run.dir(), store.join("raft-register").join("20261126T080001"));
        assert!(run.nodes_dir().is_dir());
        assert_eq!(run.node_log("n1"), run.dir().join("nodes/n1.log"));
        assert_eq!(run.history().file_name().unwrap(), "history.jsonl");
        let latest = std::fs::read_link(store.join("latest")).unwrap();
        assert_eq!(latest, PathBuf::from("raft-register/20261126T080001"));
        run.write_json("results.json", &serde_json::json!({"verdict": "valid"})).unwrap();
        let back: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.join("latest/results.json")).unwrap()).unwrap();
        assert_eq!(back["verdict"], "valid");
    }

    #[test]
    fn same_second_runs_get_distinct_folders_and_latest_moves() {
        let tmp = tempfile::tempdir().unwrap();
        let a = RunDir::create(tmp.path(), "x", t(2)).unwrap();
        let b = RunDir::create(tmp.path(), "x", t(2)).unwrap();
        assert_ne!(a.dir(), b.dir());
        assert!(b.dir().ends_with("20261126T080002-2"));
        let latest = std::fs::read_link(tmp.path().join("latest")).unwrap();
        assert_eq!(latest, PathBuf::from("x/20261126T080002-2"));
    }

    #[test]
    fn bad_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["", "../up", "a/b", "latest", ".hidden"] {
            let err = RunDir::create(tmp.path(), bad, t(3)).unwrap_err();
            assert!(matches!(err, StoreError::BadName(_)), "{bad}: {err}");
        }
    }
}
