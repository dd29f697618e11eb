//! The state store: one JSON file under the state directory, replaced
//! atomically.
//!
//! A save writes `state.json.tmp`, fsyncs it, renames it over `state.json`
//! and fsyncs the directory. POSIX rename is atomic, so a kill -9 or power
//! loss at any moment leaves either the previous file or the new one, never
//! a torn one; a leftover temp file is ignored and overwritten by the next
//! save. A lock file keeps a second agent off the same directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use dm_core::{Snapshot, StateStore};

const STATE: &str = "state.json";
const TEMP: &str = "state.json.tmp";
const LOCK: &str = "state.lock";
/// Bumped when the file layout changes incompatibly.
const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: another dmagent holds this state directory")]
    Locked(PathBuf),
    #[error("{path}: unreadable state ({reason})")]
    Corrupt { path: PathBuf, reason: String },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct File1 {
    format: u32,
    snapshot: Snapshot,
}

/// Why bytes are not a state file this agent reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CorruptState(pub String);

/// The state directory.
pub struct FileStore {
    dir: PathBuf,
    // Held for the store's lifetime: the OS releases the lock when the
    // process dies, however it dies.
    _lock: File,
}

impl FileStore {
    /// Opens (creating it, mode 0700) and locks a state directory.
    pub fn open(dir: &Path) -> Result<FileStore, StoreError> {
        let io = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode_0700()
            .create(dir)
            .map_err(io)?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::Io {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked(dir.to_path_buf())),
            Err(fs::TryLockError::Error(source)) => {
                return Err(StoreError::Io {
                    path: lock_path,
                    source,
                });
            }
        }
        Ok(FileStore {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The saved state, `None` on first start.
    pub fn load(&self) -> Result<Option<Snapshot>, StoreError> {
        FileStore::peek(&self.dir)
    }

    /// Reads the state of a directory without locking it, for tools that
    /// look while an agent runs (`dmagent dump`): the file is only ever
    /// replaced whole, so a reader sees a complete state.
    pub fn peek(dir: &Path) -> Result<Option<Snapshot>, StoreError> {
        let path = dir.join(STATE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        FileStore::decode(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt { path, reason: e.0 })
    }

    /// The state a file holds, or why it is not one this agent reads.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, CorruptState> {
        let file: File1 = serde_json::from_slice(bytes).map_err(|e| CorruptState(e.to_string()))?;
        if file.format != FORMAT {
            return Err(CorruptState(format!(
                "format {} (this agent reads {FORMAT})",
                file.format
            )));
        }
        Ok(file.snapshot)
    }

    /// Removes the saved state (a factory reset of the agent's own data):
    /// the next start is a first start.
    pub fn erase(dir: &Path) -> Result<(), StoreError> {
        for name in [STATE, TEMP] {
            let path = dir.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Io { path, source }),
            }
        }
        // The unlinks must survive the reboot that usually follows.
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                source,
            })
    }

    /// Moves an unreadable state file aside (kept for diagnosis) so the
    /// agent can start afresh; returns where it went.
    pub fn quarantine(&self) -> Result<PathBuf, StoreError> {
        let from = self.dir.join(STATE);
        let stamp = dm_core::unix_seconds(std::time::SystemTime::now());
        let to = self.dir.join(format!("{STATE}.corrupt-{stamp}"));
        fs::rename(&from, &to).map_err(|source| StoreError::Io { path: from, source })?;
        Ok(to)
    }

    /// First half of a save: the new state is durable in the temp file but
    /// not yet the state. Exposed so tests can stop between the halves.
    pub fn stage(&self, snapshot: &Snapshot) -> Result<Staged<'_>, StoreError> {
        let path = self.dir.join(TEMP);
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(&File1 {
            format: FORMAT,
            snapshot: snapshot.clone(),
        })
        .map_err(|e| io(std::io::Error::other(e)))?;
        // 0600: the state holds credentials (PSK keys, ACS passwords).
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .map_err(io)?
        };
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Staged { store: self })
    }
}

/// A state written to the temp file, waiting for [`Staged::commit`].
/// Dropping it is what a crash between the two halves looks like.
pub struct Staged<'s> {
    store: &'s FileStore,
}

impl Staged<'_> {
    /// Second half of a save: rename over the state and make the rename
    /// durable.
    pub fn commit(self) -> Result<(), StoreError> {
        let dir = &self.store.dir;
        let to = dir.join(STATE);
        fs::rename(dir.join(TEMP), &to).map_err(|source| StoreError::Io { path: to, source })?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StoreError::Io {
                path: dir.clone(),
                source,
            })
    }
}

impl StateStore for FileStore {
    fn save(&mut self, snapshot: &Snapshot) -> Result<(), dm_core::SaveError> {
        self.stage(snapshot)
            .and_then(Staged::commit)
            .map_err(Into::into)
    }
}

trait DirBuilderExt {
    fn mode_0700(&mut self) -> &mut Self;
}

impl DirBuilderExt for fs::DirBuilder {
    fn mode_0700(&mut self) -> &mut Self {
        use std::os::unix::fs::DirBuilderExt as _;
        self.mode(0o700)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn snapshot(marker: &str) -> Snapshot {
        let mut pending = BTreeMap::new();
        pending.insert("test".to_owned(), marker.to_owned());
        Snapshot {
            pending,
            ..Snapshot::default()
        }
    }

    #[test]
    fn first_start_has_no_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(&dir.path().join("state")).unwrap();
        assert!(store.load().unwrap().is_none());
    }

    #[test]
    fn save_then_load() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(dir.path()).unwrap();
        store.save(&snapshot("one")).unwrap();
        let mode = fs::metadata(dir.path().join(STATE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the state holds secrets");
        store.save(&snapshot("two")).unwrap();
        assert_eq!(store.load().unwrap(), Some(snapshot("two")));
        assert!(!dir.path().join(TEMP).exists());
    }

    #[test]
    fn crash_between_write_and_rename_keeps_the_old_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(dir.path()).unwrap();
        store.save(&snapshot("old")).unwrap();
        // The process dies after staging, before the rename: the staged
        // write is simply never committed.
        let _staged = store.stage(&snapshot("new")).unwrap();
        drop(store);
        let store = FileStore::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap(), Some(snapshot("old")));
        // The leftover temp file does not disturb the next save.
        assert!(dir.path().join(TEMP).exists());
        let mut store = store;
        store.save(&snapshot("newer")).unwrap();
        assert_eq!(store.load().unwrap(), Some(snapshot("newer")));
    }

    #[test]
    fn crash_mid_write_leaves_a_torn_temp_file_that_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(dir.path()).unwrap();
        store.save(&snapshot("old")).unwrap();
        fs::write(dir.path().join(TEMP), b"{\"format\":1,\"snaps").unwrap();
        assert_eq!(store.load().unwrap(), Some(snapshot("old")));
    }

    #[test]
    fn corrupt_state_is_reported_and_can_be_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        fs::write(dir.path().join(STATE), b"not json").unwrap();
        assert!(matches!(store.load(), Err(StoreError::Corrupt { .. })));
        let aside = store.quarantine().unwrap();
        assert_eq!(fs::read(aside).unwrap(), b"not json");
        assert!(store.load().unwrap().is_none());
    }

    #[test]
    fn unknown_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        fs::write(
            dir.path().join(STATE),
            br#"{"format":99,"snapshot":{"objects":[],"notification":[],"access_list":[],"observe":[],"pending":{}}}"#,
        )
        .unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("format 99"), "{err}");
    }

    #[test]
    fn a_second_agent_is_kept_off() {
        let dir = tempfile::tempdir().unwrap();
        let _first = FileStore::open(dir.path()).unwrap();
        assert!(matches!(
            FileStore::open(dir.path()),
            Err(StoreError::Locked(_))
        ));
    }
}
