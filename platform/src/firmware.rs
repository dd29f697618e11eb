//! Where firmware images land: a file in the state directory, written as
//! it arrives (never the whole image in memory), made durable and put in
//! place only when complete.
//!
//! `image.part` holds a transfer in progress; `finish` syncs it and
//! renames it to `image.bin`, which is what an update applies. A crash
//! mid-transfer leaves only `image.part`, which the next transfer
//! truncates: never a torn `image.bin`.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::PlatformError;

const PART: &str = "image.part";
const IMAGE: &str = "image.bin";

/// The image directory and its size limit. Clones share one transfer
/// slot: one image arrives at a time, whichever protocol brings it.
#[derive(Clone, Debug)]
pub struct ImageStore {
    dir: PathBuf,
    max_size: u64,
    busy: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Frees the transfer slot when the writer goes.
struct Slot(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// The complete image, held against transfers while it is applied.
pub struct Claim {
    dir: PathBuf,
    _slot: Slot,
}

impl Claim {
    /// The image's path, if there is one.
    pub fn image(&self) -> Option<PathBuf> {
        let path = self.dir.join(IMAGE);
        path.is_file().then_some(path)
    }

    /// Removes the image (applied, or given up).
    pub fn discard(self) {
        let _ = fs::remove_file(self.dir.join(IMAGE));
    }
}

/// A transfer in progress.
pub struct ImageWriter {
    /// Buffered: network chunks are small, and a syscall each costs.
    file: std::io::BufWriter<File>,
    dir: PathBuf,
    written: u64,
    max_size: u64,
    /// SHA-256 of what was written, as it is written: judging an image
    /// never reads it back whole in one go.
    digest: ring::digest::Context,
    _slot: Slot,
}

/// Why an image could not be stored, as the firmware objects report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Larger than the limit, or the disk is full (LwM2M result 2).
    NoSpace(String),
    Io(String),
}

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageError::NoSpace(m) => write!(f, "no room for the image: {m}"),
            ImageError::Io(m) => write!(f, "image store: {m}"),
        }
    }
}

impl From<ImageError> for PlatformError {
    fn from(e: ImageError) -> PlatformError {
        PlatformError::Failed(e.to_string())
    }
}

fn io(path: &Path, e: std::io::Error) -> ImageError {
    // ENOSPC and EFBIG: the disk or the file system is full.
    if matches!(e.raw_os_error(), Some(28 | 27)) {
        ImageError::NoSpace(format!("{}: {e}", path.display()))
    } else {
        ImageError::Io(format!("{}: {e}", path.display()))
    }
}

impl ImageStore {
    /// Images under `dir` (created when needed), at most `max_size` bytes.
    pub fn new(dir: impl Into<PathBuf>, max_size: u64) -> ImageStore {
        ImageStore {
            dir: dir.into(),
            max_size,
            busy: Default::default(),
        }
    }

    /// Starts a transfer, discarding any unfinished one; refused while
    /// another transfer is writing.
    pub fn begin(&self) -> Result<ImageWriter, ImageError> {
        let slot = self.take_slot()?;
        fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let path = self.dir.join(PART);
        let file = File::create(&path).map_err(|e| io(&path, e))?;
        Ok(ImageWriter {
            file: std::io::BufWriter::with_capacity(256 * 1024, file),
            dir: self.dir.clone(),
            written: 0,
            max_size: self.max_size,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            _slot: slot,
        })
    }

    /// The complete image, if there is one.
    pub fn image(&self) -> Option<PathBuf> {
        let path = self.dir.join(IMAGE);
        path.is_file().then_some(path)
    }

    /// Takes the slot to use the complete image (apply it, then discard
    /// it) with no transfer writing meanwhile; refused while one is.
    pub fn claim(&self) -> Result<Claim, ImageError> {
        Ok(Claim {
            dir: self.dir.clone(),
            _slot: self.take_slot()?,
        })
    }

    fn take_slot(&self) -> Result<Slot, ImageError> {
        use std::sync::atomic::Ordering;
        self.busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map_err(|_| ImageError::Io("another image transfer is in progress".into()))?;
        Ok(Slot(std::sync::Arc::clone(&self.busy)))
    }

    /// Removes the image and any partial transfer, unless a transfer is
    /// writing (then it is that transfer's to finish or abort).
    pub fn discard(&self) {
        if let Ok(claim) = self.claim() {
            let _ = fs::remove_file(self.dir.join(PART));
            claim.discard();
        }
    }

    /// Records `contents` under `name` durably (temp file, fsync, rename,
    /// fsync of the directory): a note that must survive a reboot, such as
    /// the version an update must replace.
    pub fn mark(&self, name: &str, contents: &str) -> Result<(), ImageError> {
        fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let path = self.dir.join(name);
        let temp = self.dir.join(format!("{name}.tmp"));
        let mut file = File::create(&temp).map_err(|e| io(&temp, e))?;
        file.write_all(contents.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| io(&temp, e))?;
        fs::rename(&temp, &path).map_err(|e| io(&path, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&self.dir, e))
    }

    /// What [`ImageStore::mark`] recorded under `name`, if anything.
    pub fn read_mark(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.dir.join(name)).ok()
    }

    pub fn clear_mark(&self, name: &str) {
        let _ = fs::remove_file(self.dir.join(name));
    }
}

impl ImageWriter {
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        let total = self.written + bytes.len() as u64;
        if total > self.max_size {
            return Err(ImageError::NoSpace(format!(
                "the image is larger than {} bytes",
                self.max_size
            )));
        }
        let path = self.dir.join(PART);
        self.file.write_all(bytes).map_err(|e| io(&path, e))?;
        self.digest.update(bytes);
        self.written = total;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Empties the transfer to start it over (a server that cannot resume).
    pub fn restart(&mut self) -> Result<(), ImageError> {
        use std::io::Seek as _;
        let path = self.dir.join(PART);
        self.file.flush().map_err(|e| io(&path, e))?;
        let file = self.file.get_mut();
        file.set_len(0).map_err(|e| io(&path, e))?;
        file.seek(std::io::SeekFrom::Start(0))
            .map_err(|e| io(&path, e))?;
        self.written = 0;
        self.digest = ring::digest::Context::new(&ring::digest::SHA256);
        Ok(())
    }

    /// Whether what was written so far has this SHA-256 (hashed as it
    /// was written; a restarted transfer hashes from its new start).
    pub fn has_sha256(&self, expected: &[u8; 32]) -> bool {
        self.digest.clone().finish().as_ref() == expected
    }

    /// Gives the transfer up: its partial file goes (an aborted transfer
    /// must not keep the disk full: the agent's own state must still
    /// save). Only this writer's file: the slot is still held.
    pub fn abort(self) {
        let _ = fs::remove_file(self.dir.join(PART));
    }

    /// Makes the image durable and puts it in place; returns its path. A
    /// failure removes the partial file.
    pub fn finish(self) -> Result<PathBuf, ImageError> {
        Ok(self.finish_claimed()?.0)
    }

    /// [`ImageWriter::finish`], keeping the slot for applying the image.
    pub fn finish_claimed(self) -> Result<(PathBuf, Claim), ImageError> {
        let part = self.dir.join(PART);
        let image = self.dir.join(IMAGE);
        let dir = self.dir.clone();
        let slot = self._slot;
        let done = (|| {
            let file = self
                .file
                .into_inner()
                .map_err(|e| io(&part, e.into_error()))?;
            file.sync_all().map_err(|e| io(&part, e))?;
            fs::rename(&part, &image).map_err(|e| io(&image, e))?;
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io(&dir, e))
        })();
        match done {
            Ok(()) => Ok((image, Claim { dir, _slot: slot })),
            Err(e) => {
                let _ = fs::remove_file(&part);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_in_place_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path().join("fw"), 1024);
        let mut writer = store.begin().unwrap();
        writer.write(b"abc").unwrap();
        writer.write(b"def").unwrap();
        assert_eq!(store.image(), None, "not until finished");
        let path = writer.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abcdef");
        assert_eq!(store.image(), Some(path));
        store.discard();
        assert_eq!(store.image(), None);
    }

    #[test]
    fn one_transfer_at_a_time_and_none_while_an_image_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path(), 1024);
        let mut writer = store.begin().unwrap();
        assert!(store.clone().begin().is_err(), "the slot is shared");
        // Someone else's discard leaves a transfer's file alone.
        writer.write(b"abc").unwrap();
        store.discard();
        let (path, claim) = writer.finish_claimed().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
        assert!(store.begin().is_err(), "held while the image is applied");
        claim.discard();
        assert_eq!(store.image(), None);
        let writer = store.begin().expect("free again");
        writer.abort();
        store.begin().expect("and again");
    }

    #[test]
    fn a_restarted_transfer_holds_only_what_came_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path(), 1024);
        let mut writer = store.begin().unwrap();
        writer.write(b"half of a").unwrap();
        writer.restart().unwrap();
        assert_eq!(writer.written(), 0);
        writer.write(b"whole").unwrap();
        let path = writer.finish().unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"whole");
    }

    #[test]
    fn a_mark_survives_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path().join("fw"), 4);
        assert_eq!(store.read_mark("before"), None);
        store.mark("before", "1.0").unwrap();
        store.mark("before", "1.1").unwrap();
        let again = ImageStore::new(dir.path().join("fw"), 4);
        assert_eq!(again.read_mark("before").as_deref(), Some("1.1"));
        again.clear_mark("before");
        assert_eq!(store.read_mark("before"), None);
    }

    #[test]
    fn the_sha256_is_that_of_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path(), 1024);
        let mut writer = store.begin().unwrap();
        writer.write(b"abc").unwrap();
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let abc: [u8; 32] = [
            0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
            0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
            0xf2, 0x00, 0x15, 0xad,
        ];
        assert!(writer.has_sha256(&abc));
        writer.write(b"d").unwrap();
        assert!(!writer.has_sha256(&abc));
        // A transfer started over is judged by what follows.
        writer.restart().unwrap();
        writer.write(b"ab").unwrap();
        writer.write(b"c").unwrap();
        assert!(writer.has_sha256(&abc));
    }

    #[test]
    fn too_large_is_no_space() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path(), 4);
        let mut writer = store.begin().unwrap();
        writer.write(b"abcd").unwrap();
        assert!(matches!(writer.write(b"e"), Err(ImageError::NoSpace(_))));
    }
}
