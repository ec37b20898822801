//! What `faultline check` reads: a regular file only, read under a byte bound.
//!
//! A FIFO with no writer would block the read forever and a device such as `/dev/zero` never
//! ends, both past any `--time-limit`: anything that is not a regular file is refused before a
//! byte is read (the file is opened non-blocking and checked on the open handle, so it cannot be
//! swapped in between). The bytes read are bounded by the memory budget (`--memory-limit-mib`)
//! and a hard cap, whatever the file's size claims.

use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

/// The most bytes `faultline check` reads, whatever the memory budget.
pub const INPUT_BYTES_MAX: u64 = 4 << 30;

/// Why an input was not read; Display is the whole message after `FILE:`.
#[derive(Debug)]
pub enum InputError {
    NotRegular(&'static str),
    TooBig { limit: u64 },
    NotUtf8 { line: usize },
    Io(std::io::Error),
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::NotRegular(kind) => {
                write!(f, " not a regular file ({kind}): faultline check reads history files, not pipes or devices")
            }
            InputError::TooBig { limit } => write!(
                f,
                " more than {limit} bytes, the bound --memory-limit-mib sets (the parsed history would not fit)"
            ),
            InputError::NotUtf8 { line } => write!(f, "{line}: expected UTF-8 text, found invalid bytes"),
            InputError::Io(e) => write!(f, " cannot read: {e}"),
        }
    }
}

impl From<std::io::Error> for InputError {
    fn from(e: std::io::Error) -> Self {
        InputError::Io(e)
    }
}

/// The fewest bytes read whatever the memory budget (a budget of 0 starves the search, which
/// then says `unknown`; it does not refuse to read a small history).
pub const INPUT_BYTES_MIN: u64 = 16 << 20;

/// The byte bound for a memory budget of `memory_limit_bytes`: the budget itself, within
/// [`INPUT_BYTES_MIN`, `INPUT_BYTES_MAX`].
pub fn byte_limit(memory_limit_bytes: u64) -> u64 {
    memory_limit_bytes.clamp(INPUT_BYTES_MIN, INPUT_BYTES_MAX)
}

fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_dir() {
        "a folder"
    } else {
        "not a file"
    }
}

/// The text of the regular file `path`, at most `limit` bytes of UTF-8.
pub fn read_text(path: &Path, limit: u64) -> Result<String, InputError> {
    // O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting for one.
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(InputError::NotRegular(kind_of(meta.file_type())));
    }
    if meta.len() > limit {
        return Err(InputError::TooBig { limit });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // One byte more than allowed tells a file that grew past the bound.
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(InputError::TooBig { limit });
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        InputError::NotUtf8 { line: valid.iter().filter(|&&b| b == b'\n').count() + 1 }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_fifos_are_refused_without_reading() {
        assert!(matches!(
            read_text(Path::new("/dev/zero"), 1 << 20),
            Err(InputError::NotRegular("a character device"))
        ));
        assert!(matches!(read_text(Path::new("/dev/null"), 1 << 20), Err(InputError::NotRegular(_))));
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("f");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let t = std::time::Instant::now();
        assert!(matches!(read_text(&fifo, 1 << 20), Err(InputError::NotRegular("a FIFO"))));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn reads_stop_at_the_byte_bound() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("h");
        std::fs::write(&f, "x".repeat(1000)).unwrap();
        assert_eq!(read_text(&f, 1000).unwrap().len(), 1000);
        assert!(matches!(read_text(&f, 999), Err(InputError::TooBig { limit: 999 })));
        std::fs::write(&f, b"ok\n\xff").unwrap();
        assert!(matches!(read_text(&f, 1000), Err(InputError::NotUtf8 { line: 2 })));
    }
}
