//! A Lambda deployment package (a zip) unpacked once into a read-only, content-addressed
//! folder. Refused with a reason: entries that would land outside the folder (`../`,
//! absolute paths, links pointing out), more than Lambda's 250 MB unpacked, a `provided`
//! package without an executable `bootstrap`.

use anyhow::Context as _;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

/// Lambda's limit on a function's unpacked size.
pub const MAX_UNPACKED_BYTES: u64 = 250 * 1024 * 1024;

#[derive(Debug)]
pub enum PackageError {
    /// The package itself is unusable (the deployer's to fix).
    Invalid(String),
    Internal(anyhow::Error),
}

impl std::fmt::Display for PackageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(why) => f.write_str(why),
            Self::Internal(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<std::io::Error> for PackageError {
    fn from(e: std::io::Error) -> Self {
        Self::Internal(e.into())
    }
}

fn invalid(message: impl Into<String>) -> PackageError {
    PackageError::Invalid(message.into())
}

/// Where an entry named `name` goes, relative to the package's root; refuses names that
/// leave it.
pub fn entry_path(name: &str) -> Result<PathBuf, String> {
    if name.contains('\0') || name.contains('\\') {
        return Err(format!(
            "entry {name:?} has a NUL or a backslash in its name"
        ));
    }
    let mut path = PathBuf::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(format!("entry {name:?} points outside the package"));
            }
        }
    }
    if path.as_os_str().is_empty() {
        return Err(format!("entry {name:?} has no name"));
    }
    Ok(path)
}

/// Whether a link at `link` (relative to the root) pointing to `target` stays inside.
pub fn link_stays_inside(link: &Path, target: &str) -> bool {
    if target.starts_with('/') || target.contains('\0') {
        return false;
    }
    let mut depth: usize = link.components().count().saturating_sub(1);
    for component in Path::new(target).components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Unpacks `zip` into `dir` (content-addressed by the caller: an existing `dir` is the same
/// package, kept). Returns the unpacked size.
pub fn unpack(zip: &[u8], dir: &Path) -> Result<u64, PackageError> {
    if dir.is_dir() {
        return Ok(0);
    }
    let parent = dir
        .parent()
        .context("package folder has no parent")
        .map_err(PackageError::Internal)?;
    std::fs::create_dir_all(parent)?;
    let staging = tempdir_in(parent)?;
    let size = unpack_into(zip, &staging, MAX_UNPACKED_BYTES)?;
    // Another deploy of the same bytes may have won the race; its folder is as good.
    if std::fs::rename(&staging, dir).is_err() && dir.is_dir() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(size)
}

fn tempdir_in(parent: &Path) -> std::io::Result<PathBuf> {
    let dir = parent.join(format!(".unpacking-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// Unpacks into `root`, refusing more than `limit` bytes; `root` is removed on failure.
fn unpack_into(zip: &[u8], root: &Path, limit: u64) -> Result<u64, PackageError> {
    let result = (|| {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))
            .map_err(|e| invalid(format!("the package is not a readable zip: {e}")))?;
        let mut total: u64 = 0;
        let mut links = Vec::new();
        for index in 0..archive.len() {
            let mut entry = archive
                .by_index(index)
                .map_err(|e| invalid(format!("zip entry {index}: {e}")))?;
            let name = entry
                .name()
                .map_err(|e| invalid(format!("zip entry {index}: {e}")))?
                .into_owned();
            let relative = entry_path(&name).map_err(invalid)?;
            let path = root.join(&relative);
            if entry.is_dir() {
                std::fs::create_dir_all(&path)?;
                continue;
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if entry.is_symlink() {
                let mut target = String::new();
                (&mut entry)
                    .take(4096)
                    .read_to_string(&mut target)
                    .map_err(|e| invalid(format!("link {name:?}: {e}")))?;
                if !link_stays_inside(&relative, &target) {
                    return Err(invalid(format!(
                        "link {name:?} points outside the package ({target:?})"
                    )));
                }
                links.push((path, target));
                continue;
            }
            // Counted as written, not as the zip declares: a declared size can lie.
            let mut file = std::fs::File::create(&path)?;
            let left = limit - total;
            let written = std::io::copy(&mut (&mut entry).take(left + 1), &mut file)
                .map_err(|e| invalid(format!("entry {name:?}: {e}")))?;
            total += written;
            if total > limit {
                return Err(invalid(format!(
                    "the package is more than {} MB unpacked (Lambda's limit)",
                    limit / 1024 / 1024
                )));
            }
            let executable = entry.unix_mode().is_some_and(|m| m & 0o111 != 0);
            let mode = if executable { 0o755 } else { 0o644 };
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        // Links last, so no entry is ever written through one.
        for (path, target) in links {
            std::os::unix::fs::symlink(&target, &path)?;
        }
        make_folders_readable(root)?;
        Ok(total)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(root);
    }
    result
}

fn make_folders_readable(dir: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_folders_readable(&entry.path())?;
        }
    }
    Ok(())
}

/// Checks that an unpacked `provided` package has an executable `bootstrap` at its root
/// (a link to one inside the package counts).
pub fn check_bootstrap(dir: &Path) -> Result<(), PackageError> {
    let bootstrap = dir.join("bootstrap");
    let resolved = bootstrap.canonicalize().map_err(|_| {
        invalid("a `provided` package needs an executable `bootstrap` at its root; there is none")
    })?;
    let inside = dir.canonicalize()?;
    let metadata = std::fs::metadata(&resolved)?;
    if !resolved.starts_with(&inside)
        || !metadata.is_file()
        || metadata.permissions().mode() & 0o111 == 0
    {
        return Err(invalid(
            "`bootstrap` at the package's root must be an executable file",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_stay_inside_the_package() {
        assert_eq!(entry_path("a/b.py").unwrap(), PathBuf::from("a/b.py"));
        assert_eq!(
            entry_path("./bootstrap").unwrap(),
            PathBuf::from("bootstrap")
        );
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "",
            ".",
            "a\\..\\b",
            "a\0b",
        ] {
            assert!(entry_path(bad).is_err(), "{bad:?}");
        }
        // `a/../b` stays inside but is refused too: no entry needs it.
        assert!(entry_path("a/../b").is_err());
    }

    /// A zip of one file of `size` zero bytes (which compresses to almost nothing).
    fn zeros(size: usize) -> Vec<u8> {
        use std::io::Write as _;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file("zeros", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(&vec![0; size]).unwrap();
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn more_than_the_limit_unpacked_is_refused_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("package");
        std::fs::create_dir(&root).unwrap();
        let limit = 2 * 1024 * 1024;
        let packed = zeros(limit as usize + 1);
        assert!(packed.len() < 64 * 1024, "a zip bomb, in small");
        match unpack_into(&packed, &root, limit) {
            Err(PackageError::Invalid(why)) => assert!(why.contains("more than 2 MB"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(!root.exists());
        std::fs::create_dir(&root).unwrap();
        assert_eq!(
            unpack_into(&zeros(limit as usize), &root, limit).unwrap(),
            limit
        );
    }

    #[test]
    fn links_may_point_only_inside() {
        assert!(link_stays_inside(Path::new("bootstrap"), "bin/run"));
        assert!(link_stays_inside(Path::new("lib/a.so"), "../lib2/a.so"));
        assert!(!link_stays_inside(
            Path::new("lib/a.so"),
            "../../etc/passwd"
        ));
        assert!(!link_stays_inside(Path::new("x"), "/etc/passwd"));
        assert!(!link_stays_inside(Path::new("x"), ".."));
    }
}
