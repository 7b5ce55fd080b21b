//! The data directory: created readable by its owner only, and kept so at every start.
//!
//! It holds personal data (the SQLite databases and their write-ahead logs, biometric index
//! files) and the token signing key: no other local account may read it, whatever the umask.

use std::path::{Path, PathBuf};

/// Creates `dir` if it is missing and restricts it and everything in it to its owner:
/// directories `0700`, files `0600`. What was open to others before is logged (a warning)
/// and answered. Symbolic links are left alone (what they point to is not the hub's).
pub fn seal(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let opened = restrict(dir)?;
    if !opened.is_empty() {
        tracing::warn!(
            paths = ?opened,
            "parts of the data directory were open to other local users: now its owner's only"
        );
    }
    Ok(opened)
}

/// Creates `dir` (and missing parents) owner-only, if it is missing.
pub fn create(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(unix)]
fn restrict(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    create(dir)?;
    // The directory itself may be a link (to another disk): followed; links inside are not.
    let root = std::fs::metadata(dir)?;
    let owner = root.uid();
    let mut opened = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), root)];
    while let Some((path, metadata)) = pending.pop() {
        let kind = metadata.file_type();
        // Another account's entry (a mount's lost+found) is neither the hub's to change nor
        // to enter.
        if kind.is_symlink() || metadata.uid() != owner {
            continue;
        }
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0
            && present(std::fs::set_permissions(
                &path,
                std::fs::Permissions::from_mode(mode & !0o077),
            ))?
            .is_some()
        {
            opened.push(path.clone());
        }
        if kind.is_dir() {
            for entry in present(std::fs::read_dir(&path))?.into_iter().flatten() {
                let entry = entry?;
                if let Some(metadata) = present(entry.metadata())? {
                    pending.push((entry.path(), metadata));
                }
            }
        }
    }
    Ok(opened)
}

/// `None` for what vanished since it was listed (a snapshot renamed into place).
#[cfg(unix)]
fn present<T>(result: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn restrict(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    create(dir)?;
    Ok(Vec::new())
}

/// Creates the empty file `path` readable by its owner only, unless it exists: a SQLite
/// database created so, before SQLite opens it, never exists with wider permissions, and
/// SQLite gives its write-ahead log and shared-memory files the database's permissions.
#[cfg(unix)]
pub fn create_owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
pub fn create_owner_only(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Writes `bytes` whole under a draft name, readable by the hub's user only, then links it
/// into place: no process reads a half-written file (a key), and an existing one is never
/// replaced.
pub fn write_new_owner_only(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let draft = path.with_extension(format!("draft-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&draft).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&draft, path));
    let _ = std::fs::remove_file(&draft);
    linked.map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn a_data_directory_and_everything_in_it_are_closed_to_others() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let dir = root.path().join("data");
        assert!(
            seal(&dir).expect("created").is_empty(),
            "new: nothing was open"
        );
        assert_eq!(mode(&dir), 0o700);

        let index = dir.join("index");
        std::fs::create_dir(&index).expect("a subdirectory");
        std::fs::set_permissions(&index, std::fs::Permissions::from_mode(0o755)).expect("open");
        let file = index.join("civil-face.usearch");
        std::fs::write(&file, b"derived").expect("a file");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("open");
        let outside = root.path().join("outside");
        std::fs::write(&outside, b"not the hub's").expect("a file outside");
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).expect("open");
        std::os::unix::fs::symlink(&outside, dir.join("link")).expect("a link");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("open");

        let mut opened = seal(&dir).expect("sealed");
        opened.sort();
        assert_eq!(opened, vec![dir.clone(), index.clone(), file.clone()]);
        assert_eq!(
            (mode(&dir), mode(&index), mode(&file)),
            (0o700, 0o700, 0o600)
        );
        assert_eq!(mode(&outside), 0o644, "a link's target is not the hub's");
        assert!(seal(&dir).expect("sealed again").is_empty());
    }

    #[test]
    fn a_linked_data_directory_is_followed_and_bits_are_narrowed_not_replaced() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let real = root.path().join("disk");
        std::fs::create_dir(&real).expect("the real directory");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).expect("open");
        let read_only = real.join("read-only");
        std::fs::write(&read_only, b"kept").expect("a file");
        std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o444))
            .expect("read-only for all");
        let link = root.path().join("data");
        std::os::unix::fs::symlink(&real, &link).expect("a linked data directory");
        let opened = seal(&link).expect("sealed");
        assert_eq!(opened.len(), 2, "{opened:?}");
        assert_eq!(
            mode(&real),
            0o700,
            "the link's directory is the data directory"
        );
        assert_eq!(mode(&read_only), 0o400, "still read-only");
    }

    #[test]
    fn a_database_file_is_made_owner_only_and_an_existing_one_left_as_it_is() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let new = dir.path().join("civil.sqlite");
        create_owner_only(&new).expect("created");
        assert_eq!(mode(&new), 0o600);
        std::fs::write(&new, b"rows").expect("written");
        create_owner_only(&new).expect("already there");
        assert_eq!(std::fs::read(&new).expect("read"), b"rows", "not truncated");
    }
}
