//! The store's files as they were when opened, checked before each commit.
//!
//! SQLite writes through the file descriptors it opened. Delete the
//! database (or its WAL) while driftwatch runs and every commit still
//! succeeds, into a file nobody can open again: acknowledged rows vanish at
//! the next restart. So before a commit the paths are looked at: the same
//! file (device and inode) must still be there, and writable. A look costs
//! two `stat` and two `access` calls. The files are never opened here:
//! closing any descriptor of the database would drop SQLite's POSIX locks
//! on it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file's identity on its filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The file at `path` now; `None` when there is none.
    pub fn at(path: &Path) -> Result<Option<FileId>, FileFault> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(FileId {
                dev: m.dev(),
                ino: m.ino(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FileFault::Unreadable {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }
}

/// Why the store's files cannot take a commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileFault {
    #[error("{path} was deleted while driftwatch ran")]
    Gone { path: String, wal: bool },
    #[error("{path} was replaced by another file while driftwatch ran")]
    Replaced { path: String, wal: bool },
    #[error("{path} cannot be written: {reason}")]
    NotWritable { path: String, reason: String },
    #[error("cannot look at {path}: {message}")]
    Unreadable { path: String, message: String },
}

impl FileFault {
    /// The open file is no longer the one at the path.
    pub fn is_moved(&self) -> bool {
        matches!(self, FileFault::Gone { .. } | FileFault::Replaced { .. })
    }

    /// Only the WAL moved: the database file is still the one open.
    pub fn wal_only(&self) -> bool {
        matches!(
            self,
            FileFault::Gone { wal: true, .. } | FileFault::Replaced { wal: true, .. }
        )
    }
}

/// The database and its WAL, as opened.
#[derive(Debug)]
pub(super) struct Files {
    db: PathBuf,
    wal: PathBuf,
    db_id: FileId,
    /// SQLite creates the WAL when it first reads in WAL mode; until it is
    /// seen it is not checked, and it is captured at the next look.
    wal_id: Option<FileId>,
}

impl Files {
    /// What is at the paths now: called right after SQLite opened them.
    pub fn capture(db: &Path) -> Result<Files, FileFault> {
        let wal = wal_path(db);
        let db_id = FileId::at(db)?.ok_or_else(|| FileFault::Gone {
            path: db.display().to_string(),
            wal: false,
        })?;
        Ok(Files {
            wal_id: FileId::at(&wal)?,
            db: db.to_owned(),
            wal,
            db_id,
        })
    }

    /// The same files are at the paths and both can be written.
    pub fn check(&mut self) -> Result<(), FileFault> {
        same(&self.db, Some(self.db_id), false)?;
        match self.wal_id {
            Some(id) => same(&self.wal, Some(id), true)?,
            None => self.wal_id = FileId::at(&self.wal)?,
        }
        writable(&self.db)?;
        if self.wal_id.is_some() {
            writable(&self.wal)?;
        }
        Ok(())
    }
}

pub(super) fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

fn same(path: &Path, opened: Option<FileId>, wal: bool) -> Result<(), FileFault> {
    let now = FileId::at(path)?;
    let path = || path.display().to_string();
    match now {
        None => Err(FileFault::Gone { path: path(), wal }),
        Some(id) if Some(id) != opened => Err(FileFault::Replaced { path: path(), wal }),
        Some(_) => Ok(()),
    }
}

/// `access(W_OK)`: refused for an immutable file (even to root), a
/// read-only filesystem or missing permissions, without opening the file.
fn writable(path: &Path) -> Result<(), FileFault> {
    use rustix::io::Errno;
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).map_err(|errno| {
        let reason = match errno {
            Errno::PERM => {
                "not permitted: the file is immutable or append-only (`lsattr` shows it, `chattr -i` undoes it)".to_owned()
            }
            Errno::ROFS => "the filesystem is mounted read-only".to_owned(),
            Errno::ACCESS => "permission denied".to_owned(),
            other => std::io::Error::from(other).to_string(),
        };
        FileFault::NotWritable {
            path: path.display().to_string(),
            reason,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_or_replaced_file_is_told_apart_from_the_one_opened() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        std::fs::write(&db, b"a").unwrap();
        std::fs::write(wal_path(&db), b"w").unwrap();
        // Held open as SQLite holds them: a deleted inode that is still
        // open cannot be reused by the next file created.
        let _held = [
            std::fs::File::open(&db).unwrap(),
            std::fs::File::open(wal_path(&db)).unwrap(),
        ];
        let mut files = Files::capture(&db).unwrap();
        assert_eq!(files.check(), Ok(()));

        std::fs::remove_file(wal_path(&db)).unwrap();
        let fault = files.check().unwrap_err();
        assert!(fault.is_moved() && fault.wal_only(), "{fault}");

        std::fs::write(wal_path(&db), b"w").unwrap();
        let fault = files.check().unwrap_err();
        assert!(
            matches!(fault, FileFault::Replaced { wal: true, .. }),
            "{fault}"
        );

        std::fs::remove_file(&db).unwrap();
        let fault = files.check().unwrap_err();
        assert!(
            matches!(fault, FileFault::Gone { wal: false, .. }),
            "{fault}"
        );

        // Another file at the path: the one opened is still gone.
        std::fs::write(&db, b"b").unwrap();
        let fault = files.check().unwrap_err();
        assert!(
            matches!(fault, FileFault::Replaced { wal: false, .. }),
            "{fault}"
        );
        assert!(fault.to_string().contains("replaced"), "{fault}");
    }
}
