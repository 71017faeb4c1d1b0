//! Writes the output atomically: encode into a temporary file beside the target, let the caller
//! validate that file, then rename it over the target. Until the rename nothing at the target
//! changes, and a failure (or a dropped [`TempOutput`]) removes the temporary file.
//!
//! Encoding streams straight into the file in 1 MiB chunks, and large tensor payloads are written
//! from the input's memory map directly, so the output never exists as a second copy in memory.
//!
//! A model with a data file beside it is written as a pair through a [`Staging`] folder: both
//! files under their final names (so the model's relative `location` resolves while it is
//! validated), then moved out, the data file first.

use crate::external::{Chunk, DataFile};
use anyhow::{Context, Result};
use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut};
use prost::Message;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const CHUNK: usize = 1 << 20;

/// A `BufMut` that flushes to a file whenever its chunk fills.
struct FileSink {
    file: File,
    buf: Vec<u8>,
    error: Option<io::Error>,
}

impl FileSink {
    fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.file.write_all(&self.buf) {
                self.error = Some(e);
            }
        }
        self.buf.clear();
    }

    fn write_direct(&mut self, data: &[u8]) {
        self.flush();
        if self.error.is_none() {
            if let Err(e) = self.file.write_all(data) {
                self.error = Some(e);
            }
        }
    }
}

// SAFETY: `chunk_mut` hands out the vector's spare capacity, and `advance_mut` only grows the length
// over bytes the caller has just written there (the `BufMut` contract).
unsafe impl BufMut for FileSink {
    fn remaining_mut(&self) -> usize {
        isize::MAX as usize
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        let len = self.buf.len() + cnt;
        assert!(len <= self.buf.capacity(), "advanced past the chunk");
        // SAFETY: see the impl's comment.
        unsafe { self.buf.set_len(len) };
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        if self.buf.len() == self.buf.capacity() {
            self.flush();
        }
        UninitSlice::uninit(self.buf.spare_capacity_mut())
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= CHUNK / 4 {
            self.write_direct(src);
        } else {
            if self.buf.capacity() - self.buf.len() < src.len() {
                self.flush();
            }
            self.buf.extend_from_slice(src);
        }
    }

    fn put<T: Buf>(&mut self, mut src: T)
    where
        Self: Sized,
    {
        while src.has_remaining() {
            let n = src.chunk().len();
            self.put_slice(src.chunk());
            src.advance(n);
        }
    }
}

/// Temporary files and staging folders not yet persisted or dropped, for [`remove_unfinished`].
static UNFINISHED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn unfinished() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    UNFINISHED.lock().unwrap_or_else(|e| e.into_inner())
}

fn finished(path: &Path) {
    let mut live = unfinished();
    if let Some(i) = live.iter().position(|p| p == path) {
        live.swap_remove(i);
    }
}

/// Whether [`remove_unfinished`] has run.
static REMOVED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Creates `path` with `create` holding the record of unfinished paths, and records it there
/// (`record`): a [`remove_unfinished`] then either sees the file or runs before it exists, never
/// in between, when the file would be left behind. Once the removal has run, this blocks until the
/// process exits.
fn create_recorded<T>(path: &Path, record: bool, create: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    let mut live = unfinished();
    let made = create(path)?;
    if record {
        live.push(path.to_path_buf());
    }
    Ok(made)
}

/// Removes every temporary file and staging folder of this process not yet persisted or dropped,
/// then keeps the record locked, so that no new one is created, nor a file moved into place; the
/// process must exit next. For a signal handler: a process ended by a signal runs no drops, so
/// Ctrl-C during validation would otherwise leave the hidden temporary files beside the output.
pub fn remove_unfinished() {
    REMOVED.store(true, std::sync::atomic::Ordering::SeqCst);
    let live = unfinished();
    for path in live.iter() {
        let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    }
    std::mem::forget(live);
}

/// Whether [`remove_unfinished`] has run: an error the run meets after it (a temporary file that
/// vanished) is its doing, and the process is about to exit for the signal.
pub fn removed_unfinished() -> bool {
    REMOVED.load(std::sync::atomic::Ordering::SeqCst)
}

/// A file being written next to its final path; removed on drop unless persisted.
pub struct TempOutput {
    path: PathBuf,
    target: PathBuf,
    persisted: bool,
}

/// The temporary path for a target: hidden, beside it, unique to this process and to this call
/// (two threads of a library user, or two tests, may write copies of same-named files into one
/// folder: the float32 copies for tract's analysis all go to the system's temporary folder),
/// recorded for [`remove_unfinished`] from when it is created until its [`TempOutput`] is dropped.
fn temp_path(target: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
    target.with_file_name(format!(".{name}.tsm-rewrite-{}-{call}.tmp", std::process::id()))
}

/// Encodes `message` into a new file at `path`, synced to disk; records the file for
/// [`remove_unfinished`] (`record`).
fn encode_to(path: &Path, record: bool, message: &impl Message) -> Result<()> {
    let file = create_recorded(path, record, |p| File::create(p))
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut sink = FileSink { file, buf: Vec::with_capacity(CHUNK), error: None };
    message.encode(&mut sink).expect("a FileSink never runs out of room");
    sink.flush();
    if let Some(e) = sink.error.take() {
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    sink.file.sync_all().with_context(|| format!("writing {}", path.display()))
}

impl TempOutput {
    /// Encodes `message` into a temporary file beside `target`, synced to disk.
    pub fn encode(target: &Path, message: &impl Message) -> Result<TempOutput> {
        let out = TempOutput { path: temp_path(target), target: target.to_path_buf(), persisted: false };
        encode_to(&out.path, true, message)?;
        Ok(out)
    }

    /// Writes text the same way.
    pub fn text(target: &Path, text: &str) -> Result<TempOutput> {
        let path = temp_path(target);
        let out = TempOutput { path, target: target.to_path_buf(), persisted: false };
        create_recorded(&out.path, true, |p| std::fs::write(p, text))
            .with_context(|| format!("writing {}", out.path.display()))?;
        Ok(out)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file over the target (not while [`remove_unfinished`] runs: it would find the
    /// temporary file gone, or remove it before it is moved).
    pub fn persist(mut self) -> Result<()> {
        let _live = unfinished();
        std::fs::rename(&self.path, &self.target)
            .with_context(|| format!("cannot move {} to {}", self.path.display(), self.target.display()))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
        finished(&self.path);
    }
}

/// A hidden folder in the output's folder holding files under their final names until they are
/// moved out together; removed with whatever is left in it when dropped.
pub struct Staging {
    dir: PathBuf,
    folder: PathBuf,
    files: Vec<String>,
}

impl Staging {
    /// `what` tells apart stagings of one process in one folder.
    pub fn new(folder: &Path, what: &str) -> Result<Staging> {
        let dir = folder.join(format!(".tsm-rewrite-{}-{what}.staging", std::process::id()));
        create_recorded(&dir, true, |p| std::fs::create_dir(p))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Staging { dir, folder: folder.to_path_buf(), files: Vec::new() })
    }

    /// Encodes `message` as the staged file `name`; returns its path.
    pub fn encode(&mut self, name: &str, message: &impl Message) -> Result<PathBuf> {
        let path = self.dir.join(name);
        encode_to(&path, false, message)?;
        self.files.push(name.into());
        Ok(path)
    }

    /// Writes the data file `data` describes, copying each piece to its offset (zeros between).
    /// Ranges of input files are copied by the kernel (`copy_file_range` through `io::copy`), so a
    /// data file of any size passes through without being held in this process's memory.
    pub fn write_data(&mut self, data: &DataFile) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.dir.join(&data.name);
        let what = || format!("writing {}", path.display());
        let mut out = create_recorded(&path, false, |p| File::create(p)).with_context(what)?;
        let mut at = 0u64;
        for (offset, chunk) in &data.chunks {
            out.write_all(&vec![0u8; (offset - at) as usize]).with_context(what)?;
            let copied = match chunk {
                Chunk::File(e) => {
                    let mut src = File::open(&e.file).with_context(|| format!("cannot open {}", e.file.display()))?;
                    src.seek(SeekFrom::Start(e.offset)).with_context(|| format!("reading {}", e.file.display()))?;
                    io::copy(&mut src.take(e.length), &mut out).with_context(what)?
                }
                Chunk::Inline(b) => {
                    out.write_all(b).with_context(what)?;
                    b.len() as u64
                }
            };
            if copied != chunk.byte_len() {
                anyhow::bail!("{}: the input's data file ended early (it changed while being read?)", what());
            }
            at = offset + copied;
        }
        out.sync_all().with_context(what)?;
        self.files.push(data.name.clone());
        Ok(())
    }

    /// Moves the staged files into the output's folder, in the order they were staged, all of
    /// them or (where a move fails) until one fails: not while [`remove_unfinished`] runs, so that
    /// Ctrl-C cannot leave a new data file without its model.
    pub fn persist(self) -> Result<()> {
        let _live = unfinished();
        for name in &self.files {
            let (from, to) = (self.dir.join(name), self.folder.join(name));
            std::fs::rename(&from, &to)
                .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        finished(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{ModelProto, TensorProto};

    #[test]
    fn streamed_encoding_equals_encode_to_vec() {
        let big = TensorProto {
            name: Some("w".into()),
            raw_data: Some(vec![7u8; 3 * CHUNK + 5].into()),
            ..Default::default()
        };
        let small = TensorProto { name: Some("b".into()), raw_data: Some(vec![1u8; 100].into()), ..Default::default() };
        let model = ModelProto {
            producer_name: Some("test".into()),
            graph: Some(crate::onnx::GraphProto { initializer: vec![small.clone(), big, small], ..Default::default() }),
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.onnx");
        let out = TempOutput::encode(&target, &model).unwrap();
        assert!(!target.exists());
        out.persist().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), model.encode_to_vec());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn dropped_output_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.onnx");
        drop(TempOutput::text(&target, "x").unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
