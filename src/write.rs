//! Writes the output atomically: encode into a temporary file beside the target, let the caller
//! validate that file, then rename it over the target. Until the rename nothing at the target
//! changes, and a failure (or a dropped [`TempOutput`]) removes the temporary file.
//!
//! Encoding streams straight into the file in 1 MiB chunks, and large tensor payloads are written
//! from the input's memory map directly, so the output never exists as a second copy in memory.

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

/// A file being written next to its final path; removed on drop unless persisted.
pub struct TempOutput {
    path: PathBuf,
    target: PathBuf,
    persisted: bool,
}

/// The temporary path for a target: hidden, beside it, unique to this process.
fn temp_path(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
    target.with_file_name(format!(".{name}.tsm-rewrite-{}.tmp", std::process::id()))
}

impl TempOutput {
    /// Encodes `message` into a temporary file beside `target`, synced to disk.
    pub fn encode(target: &Path, message: &impl Message) -> Result<TempOutput> {
        let path = temp_path(target);
        let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let out = TempOutput { path, target: target.to_path_buf(), persisted: false };
        let mut sink = FileSink { file, buf: Vec::with_capacity(CHUNK), error: None };
        message.encode(&mut sink).expect("a FileSink never runs out of room");
        sink.flush();
        if let Some(e) = sink.error.take() {
            return Err(e).with_context(|| format!("writing {}", out.path.display()));
        }
        sink.file.sync_all().with_context(|| format!("writing {}", out.path.display()))?;
        Ok(out)
    }

    /// Writes text the same way.
    pub fn text(target: &Path, text: &str) -> Result<TempOutput> {
        let path = temp_path(target);
        let out = TempOutput { path, target: target.to_path_buf(), persisted: false };
        std::fs::write(&out.path, text).with_context(|| format!("writing {}", out.path.display()))?;
        Ok(out)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file over the target.
    pub fn persist(mut self) -> Result<()> {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{ModelProto, TensorProto};

    #[test]
    fn streamed_encoding_equals_encode_to_vec() {
        let big = TensorProto { name: "w".into(), raw_data: vec![7u8; 3 * CHUNK + 5].into(), ..Default::default() };
        let small = TensorProto { name: "b".into(), raw_data: vec![1u8; 100].into(), ..Default::default() };
        let model = ModelProto {
            producer_name: "test".into(),
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
