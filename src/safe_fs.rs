//! Files and directories that another local user cannot redirect.
//!
//! A predictable name in a shared directory (`/tmp`) can be made in advance
//! by someone else: a symlink there would make us write where they point
//! (as root: anywhere). So fresh directories come from `mkdtemp` (a random
//! name, mode 0700, and it fails rather than reuse anything), a directory
//! the user names must be a real directory of ours, and files are opened
//! without following a symlink and refused if they are not a plain file of
//! ours with one name.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A new private directory `BASE/PREFIX-XXXXXX` (mode 0700). `prefix` is
/// reduced to letters, digits, `-` and `_`.
pub fn private_dir(base: &Path, prefix: &str) -> io::Result<PathBuf> {
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    nix::unistd::mkdtemp(&base.join(format!("{clean}-XXXXXX"))).map_err(io::Error::from)
}

/// `dir` as a directory to write into: made (0700, with missing parents)
/// if missing; if it exists it must be a directory (not a symlink to one)
/// owned by us.
pub fn own_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.file_type().is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory (a symlink is refused)",
            dir.display()
        )));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(io::Error::other(format!(
            "{} belongs to another user",
            dir.display()
        )));
    }
    Ok(())
}

/// Opens `path` to write it from the start: created (0644) if missing,
/// emptied if it is a plain file of ours with one name; a symlink, a
/// hard link, another user's file, a FIFO or a device is refused.
pub fn create_file(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o644)
        // O_NOFOLLOW: a symlink as the last component fails (ELOOP).
        // O_NONBLOCK: opening a FIFO does not wait for a reader.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::other(format!("{} is a symlink: refused", path.display()))
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        return Err(io::Error::other(format!(
            "{} is not a plain file with one name: refused",
            path.display()
        )));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(io::Error::other(format!(
            "{} belongs to another user: refused",
            path.display()
        )));
    }
    file.set_len(0)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_and_foreign_places_are_refused() {
        let base = private_dir(&std::env::temp_dir(), "forkscope-safe-fs-test").unwrap();
        let target = base.join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let link = base.join("x.schedule");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create_file(&link).is_err());
        let hard = base.join("hard.schedule");
        std::fs::hard_link(&target, &hard).unwrap();
        assert!(create_file(&hard).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        let dir_link = base.join("out");
        std::os::unix::fs::symlink(&base, &dir_link).unwrap();
        assert!(own_dir(&dir_link).is_err());
        let plain = base.join("plain.schedule");
        std::fs::write(&plain, "old text").unwrap();
        create_file(&plain).unwrap();
        assert_eq!(std::fs::read_to_string(&plain).unwrap(), "");
        let fresh = base.join("a/b");
        own_dir(&fresh).unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }
}
