//! Files only the executor's user can read (0600), in a private temp dir: web identity
//! tokens, build secrets. They exist for as long as the operation needs them.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Writes `contents` to `dir/name` readable by this user only; returns the path.
pub fn write(dir: &Path, name: &str, contents: &[u8]) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::create_dir_all(dir)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(contents)?;
    Ok(path)
}
