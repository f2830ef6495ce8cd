//! What meshdeck and its simulated fleet both read and write: YAML documents
//! (`yaml`) and files readable by their owner only (history, logs, kubeconfigs with
//! tokens, keys). A crate of its own so that the product never imports the simulator
//! and neither keeps a copy of the other's helpers.

use std::path::Path;

pub mod yaml;

/// How `private_file` opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// Replace what is there.
    Truncate,
    /// Add to the end.
    Append,
    /// Only a new file: an existing one is an `AlreadyExists` error.
    New,
}

/// Open a file readable by the user only (0600): history, audit, logs, kubeconfigs
/// with tokens, keys. An existing file is narrowed to 0600 too.
pub fn private_file(path: &Path, how: Open) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    match how {
        Open::Truncate => o.write(true).create(true).truncate(true),
        Open::Append => o.append(true).create(true),
        Open::New => o.write(true).create_new(true),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        o.mode(0o600);
        if how != Open::New
            && let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.permissions().mode() & 0o600))?;
        }
    }
    o.open(path)
}

/// Write `text` to a private file (see `private_file`), replacing it.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    private_file(path, Open::Truncate)?.write_all(text.as_bytes())
}
