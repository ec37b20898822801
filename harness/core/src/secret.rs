//! Secrets of a run and the files that hold them.
//!
//! The nodes' admin token comes from the operating system's entropy (never from the seed:
//! reproducing a run does not need it, and the seed is in world-readable files), and reaches
//! the nodes through their environment (the local runtime) or a compose file only its owner can
//! read (the Docker runtime), never through process arguments. State files, which name what a
//! run controls, are written 0600 in folders created 0700.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use rand::TryRngCore as _;

/// Bytes of entropy in an admin token (256 bits).
pub const TOKEN_BYTES: usize = 32;

/// The operating system could not give entropy.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the operating system's entropy for the admin token: {0}")]
pub struct EntropyError(String);

/// A fresh admin token: `fl-` and 64 hex digits from the OS's entropy (getrandom).
pub fn admin_token() -> Result<String, EntropyError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|e| EntropyError(e.to_string()))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("fl-{hex}"))
}

/// Creates `dir` and its missing parents with mode 0700 (what exists is left as it is).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes `bytes` to `path`, readable and writable by the owner only (0600) from the moment the
/// file exists; an existing file is truncated and its mode narrowed too.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_tokens_come_from_entropy_not_from_the_seed_or_pid() {
        // The old token was a hash of (seed, pid): two tokens in one process were equal.
        let (a, b) = (admin_token().unwrap(), admin_token().unwrap());
        assert_ne!(a, b);
        for t in [&a, &b] {
            let hex = t.strip_prefix("fl-").expect("prefix");
            assert_eq!(hex.len(), 2 * TOKEN_BYTES, "{t}");
            assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()), "{t}");
        }
    }

    #[test]
    fn private_files_and_folders_are_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        private_dir(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        let f = dir.join("s.json");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&f, b"new").unwrap();
        assert_eq!((mode(&f), std::fs::read_to_string(&f).unwrap().as_str()), (0o600, "new"));
    }
}
