//! Firmware update over LwM2M /5, push delivery: the package goes to a file
//! in the state directory as its blocks arrive (`FileSink`, bounded
//! memory), and an Execute of /5/0/2 runs the configured program with the
//! image's path as its one argument (argv, no shell), as the IG60 client
//! runs its update script. State and Update Result follow LwM2M Core E.6:
//! Downloaded → Updating → Idle with result 1 on success, back to
//! Downloaded with result 8 when the program fails.

use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};

use dm_core::catalog::firmware::{ID, STATE, UPDATE_RESULT};
use dm_core::{InstanceId, Origin, Path, Tree, Value};
use dm_lwm2m::client::{PackageError, PackageSink};
use dm_platform::firmware::{ImageError, ImageStore, ImageWriter};
use tracing::{info, warn};

use crate::runtime::lock;

const UPDATING: i64 = 3;
const IDLE: i64 = 0;
const DOWNLOADED: i64 = 2;
const RESULT_SUCCESS: i64 = 1;
const RESULT_FAILED: i64 = 8;

/// The image store for a state directory.
pub fn store(state_dir: &FsPath, max_size: u64) -> ImageStore {
    ImageStore::new(state_dir.join("firmware"), max_size)
}

/// A package sink writing to the image store.
pub struct FileSink {
    store: ImageStore,
    writer: Option<ImageWriter>,
}

impl FileSink {
    pub fn new(store: ImageStore) -> FileSink {
        FileSink {
            store,
            writer: None,
        }
    }
}

fn package_error(e: ImageError) -> PackageError {
    match e {
        ImageError::NoSpace(m) => PackageError::NoSpace(m),
        ImageError::Io(m) => PackageError::Failed(m),
    }
}

impl PackageSink for FileSink {
    fn begin(&mut self) -> Result<(), PackageError> {
        self.writer = Some(self.store.begin().map_err(package_error)?);
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), PackageError> {
        self.writer
            .as_mut()
            .ok_or_else(|| PackageError::Failed("no transfer in progress".into()))?
            .write(bytes)
            .map_err(package_error)
    }

    fn finish(&mut self) -> Result<(), PackageError> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| PackageError::Failed("no transfer in progress".into()))?;
        let size = writer.written();
        let path = writer.finish().map_err(package_error)?;
        info!(path = %path.display(), size, "firmware package received");
        Ok(())
    }

    fn abort(&mut self) {
        self.writer = None;
    }
}

fn set(tree: &Mutex<Tree>, state: i64, result: i64) {
    let at = |r| Path::resource(ID, InstanceId(0), r);
    let _ = lock(tree)
        .begin(Origin::Agent)
        .set(at(STATE), Value::Integer(state))
        .set(at(UPDATE_RESULT), Value::Integer(result))
        .commit();
}

/// Whether a change is the Execute of /5/0/2 (Update).
pub fn is_update(change: &dm_core::Change) -> bool {
    matches!(change.kind, dm_core::ChangeKind::Executed(_))
        && change.path == Path::resource(ID, InstanceId(0), dm_core::catalog::firmware::UPDATE)
}

/// Applies the downloaded image with `command`, moving the state machine.
pub async fn apply(tree: Arc<Mutex<Tree>>, store: ImageStore, command: Option<Vec<String>>) {
    set(&tree, UPDATING, 0);
    let outcome = match (command, store.image()) {
        (None, _) => Err("no firmware command is configured ([firmware] command)".to_owned()),
        (_, None) => Err("no image to apply".to_owned()),
        (Some(argv), Some(image)) => match argv.split_first() {
            None => Err("an empty firmware command".to_owned()),
            Some((program, arguments)) => tokio::process::Command::new(program)
                .args(arguments)
                .arg(&image)
                .status()
                .await
                .map_err(|e| format!("{program}: {e}"))
                .and_then(|status| {
                    if status.success() {
                        Ok(())
                    } else {
                        Err(format!("{program}: {status}"))
                    }
                }),
        },
    };
    match outcome {
        Ok(()) => {
            info!("firmware update applied");
            store.discard();
            set(&tree, IDLE, RESULT_SUCCESS);
        }
        Err(e) => {
            warn!("firmware update failed: {e}");
            set(&tree, DOWNLOADED, RESULT_FAILED);
        }
    }
}
