//! Tensors stored outside the model file (`data_location = EXTERNAL`): checking where they point,
//! and laying out the data file written beside the output.
//!
//! A model file names its data files itself, so a hostile or careless one could make the tool read
//! (and, by keeping the reference, make later tools write) anywhere. [`check`] accepts only
//! locations inside the model's folder: relative, without `..`, and still inside once symbolic
//! links are resolved; it runs at load, before anything outside the model file is read. The data
//! itself is never decoded: [`plan_data_file`] lays out each tensor's byte range of the input's
//! data files in the output's, at 4 KiB-aligned offsets, and `write::Staging` has the kernel copy
//! them.

use crate::error::Error;
use crate::onnx::{
    tensor_proto::DataLocation, AttributeProto, GraphProto, ModelProto, NodeProto, StringStringEntryProto, TensorProto,
};
use bytes::Bytes;
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// Offsets of tensors in written data files are multiples of this (page-aligned, for mmap).
pub const ALIGN: u64 = 4096;

/// A protobuf message (the model file) cannot exceed 2 GiB.
pub const PROTOBUF_LIMIT: usize = i32::MAX as usize;

/// Inline tensors smaller than this stay inline when a too-large model is moved to external data.
const MIN_EXTERNAL: usize = 1024;

fn visit_graph(g: &mut GraphProto, f: &mut impl FnMut(&mut TensorProto)) {
    g.initializer.iter_mut().for_each(&mut *f);
    for s in &mut g.sparse_initializer {
        s.values.iter_mut().chain(s.indices.iter_mut()).for_each(&mut *f);
    }
    visit_nodes(&mut g.node, f);
}

fn visit_nodes(nodes: &mut [NodeProto], f: &mut impl FnMut(&mut TensorProto)) {
    for n in nodes {
        visit_attributes(&mut n.attribute, f);
    }
}

fn visit_attributes(attrs: &mut [AttributeProto], f: &mut impl FnMut(&mut TensorProto)) {
    for a in attrs {
        a.t.iter_mut().chain(a.tensors.iter_mut()).for_each(&mut *f);
        for s in a.sparse_tensor.iter_mut().chain(a.sparse_tensors.iter_mut()) {
            s.values.iter_mut().chain(s.indices.iter_mut()).for_each(&mut *f);
        }
        for g in a.g.iter_mut().chain(a.graphs.iter_mut()) {
            visit_graph(g, f);
        }
    }
}

/// Calls `f` on every tensor of the model: initializers, sparse initializers, and tensors in node
/// attributes, in subgraphs and in model-local functions.
pub fn for_each_tensor(model: &mut ModelProto, f: &mut impl FnMut(&mut TensorProto)) {
    if let Some(g) = &mut model.graph {
        visit_graph(g, f);
    }
    for func in &mut model.functions {
        visit_nodes(&mut func.node, f);
        visit_attributes(&mut func.attribute_proto, f);
    }
}

pub fn is_external(t: &TensorProto) -> bool {
    t.data_location() == DataLocation::External
}

/// Where one external tensor's bytes are, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extent {
    /// The data file, canonical.
    pub file: PathBuf,
    pub offset: u64,
    pub length: u64,
}

fn entry<'a>(t: &'a TensorProto, key: &str) -> Option<&'a str> {
    t.external_data.iter().find(|e| e.key() == key).map(|e| e.value())
}

/// Checks one external tensor's location against the model's folder and returns its extent.
/// Nothing outside `folder` is opened: a location is refused on its text before it is resolved, and
/// resolved (following links) before its file is opened.
pub fn extent(t: &TensorProto, folder: &Path) -> Result<Extent, String> {
    let location = entry(t, "location").ok_or("is stored externally but has no 'location'")?;
    let rel = Path::new(location);
    if location.is_empty() || rel.is_absolute() || location.starts_with(['/', '\\']) {
        return Err(format!("external data location '{location}' is not a path relative to the model's folder"));
    }
    if rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        || location.split(['/', '\\']).any(|p| p == "..")
    {
        return Err(format!("external data location '{location}' leaves the model's folder ('..')"));
    }
    let number = |key: &str| -> Result<Option<u64>, String> {
        entry(t, key)
            .map(|v| v.parse::<u64>().map_err(|_| format!("external data {key} '{v}' is not a byte count")))
            .transpose()
    };
    let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
    let root = folder.canonicalize().map_err(|e| format!("cannot resolve the model's folder: {e}"))?;
    let file =
        root.join(rel).canonicalize().map_err(|e| format!("external data file '{location}' cannot be opened: {e}"))?;
    if !file.starts_with(&root) {
        return Err(format!(
            "external data location '{location}' resolves to {} through a link, outside the model's folder",
            file.display()
        ));
    }
    let meta = std::fs::metadata(&file).map_err(|e| format!("external data file '{location}': {e}"))?;
    if !meta.is_file() {
        return Err(format!("external data location '{location}' is not a file"));
    }
    let explicit_length = length.is_some();
    let length = length.unwrap_or(meta.len().saturating_sub(offset));
    if offset.checked_add(length).is_none_or(|end| end > meta.len()) {
        return Err(format!(
            "external data at offset {offset}, length {length} runs past the end of '{location}' ({} bytes)",
            meta.len()
        ));
    }
    // Where the length is left out, a reader takes the rest of the file, which need not be this
    // tensor's alone; a length given is the tensor's.
    if let Some(why) = explicit_length.then(|| crate::tensor::external_mismatch(t, length)).flatten() {
        return Err(why);
    }
    Ok(Extent { file, offset, length })
}

/// Checks every external tensor of a model read from `model_path`; the error names the tensor.
/// Returns whether the model has any.
pub fn check(model: &mut ModelProto, model_path: &Path) -> Result<bool, Error> {
    let folder = crate::rewrite::folder_of(model_path).to_path_buf();
    let mut first_error = None;
    let mut any = false;
    for_each_tensor(model, &mut |t| {
        any |= is_external(t);
        if first_error.is_none() && is_external(t) {
            if let Err(reason) = extent(t, &folder) {
                first_error = Some(Error::BadModel {
                    path: model_path.to_path_buf(),
                    reason: format!("tensor '{}': {reason}", t.name()),
                });
            }
        }
    });
    first_error.map_or(Ok(any), Err)
}

/// Where one piece of the output's data file comes from.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// A byte range of an input data file.
    File(Extent),
    /// An inline tensor's raw bytes, moved out of a model too large to stay in one file.
    Inline(Bytes),
}

impl Chunk {
    /// How many bytes the piece adds to the data file.
    pub fn byte_len(&self) -> u64 {
        match self {
            Chunk::File(e) => e.length,
            Chunk::Inline(b) => b.len() as u64,
        }
    }
}

/// The output's data file: its name (relative to the output's folder) and its pieces, each at an
/// offset that is a multiple of [`ALIGN`], in order.
#[derive(Debug, Default)]
pub struct DataFile {
    pub name: String,
    pub chunks: Vec<(u64, Chunk)>,
    pub len: u64,
}

fn set_external(t: &mut TensorProto, name: &str, offset: u64, length: u64) {
    t.set_data_location(DataLocation::External);
    t.raw_data = None;
    t.external_data = vec![
        StringStringEntryProto { key: Some("location".into()), value: Some(name.into()) },
        StringStringEntryProto { key: Some("offset".into()), value: Some(offset.to_string()) },
        StringStringEntryProto { key: Some("length".into()), value: Some(length.to_string()) },
    ];
}

/// Points every external tensor of `model` (read from `input_folder`) at the data file `name`, and
/// also every inline tensor of at least 1 KiB held as raw bytes for which `move_inline` says so
/// (all of them for a model that would not fit in one protobuf; the weights the stream form
/// partitioned, for an input that keeps its weights outside). Returns the layout to write.
pub fn plan_data_file(
    model: &mut ModelProto,
    input_folder: &Path,
    name: &str,
    move_inline: &dyn Fn(&TensorProto) -> bool,
) -> Result<DataFile, Error> {
    let mut data = DataFile { name: name.into(), ..Default::default() };
    let mut failure = None;
    for_each_tensor(model, &mut |t| {
        let chunk = if is_external(t) {
            match extent(t, input_folder) {
                Ok(e) => Chunk::File(e),
                Err(reason) => {
                    failure.get_or_insert(Error::Config(format!("tensor '{}': {reason}", t.name())));
                    return;
                }
            }
        } else if t.raw_data().len() >= MIN_EXTERNAL && move_inline(t) {
            Chunk::Inline(t.raw_data.clone().unwrap_or_default())
        } else {
            return;
        };
        let length = chunk.byte_len();
        let offset = data.len.div_ceil(ALIGN) * ALIGN;
        set_external(t, name, offset, length);
        data.chunks.push((offset, chunk));
        data.len = offset + length;
    });
    failure.map_or(Ok(data), Err)
}

/// The distinct input data files a plan reads, canonical.
pub fn sources(data: &DataFile) -> Vec<&Path> {
    let files: BTreeSet<&Path> = data
        .chunks
        .iter()
        .filter_map(|(_, c)| match c {
            Chunk::File(e) => Some(e.file.as_path()),
            Chunk::Inline(_) => None,
        })
        .collect();
    files.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(location: &str, offset: u64, length: u64) -> TensorProto {
        let mut t = TensorProto { name: Some("w".into()), ..Default::default() };
        set_external(&mut t, location, offset, length);
        t
    }

    #[test]
    fn locations_outside_the_folder_are_refused_on_their_text() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.bin"), [0u8; 64]).unwrap();
        assert_eq!(
            extent(&ext("w.bin", 16, 32), dir.path()).unwrap(),
            Extent { file: dir.path().canonicalize().unwrap().join("w.bin"), offset: 16, length: 32 }
        );
        for bad in ["/etc/passwd", "../w.bin", "sub/../../w.bin", "a/..", "", "\\\\server\\share"] {
            let err = extent(&ext(bad, 0, 1), dir.path()).unwrap_err();
            assert!(err.contains("relative") || err.contains("'..'"), "{bad}: {err}");
        }
        let err = extent(&ext("w.bin", 60, 8), dir.path()).unwrap_err();
        assert!(err.contains("runs past the end of 'w.bin' (64 bytes)"), "{err}");
        let err = extent(&ext("missing.bin", 0, 1), dir.path()).unwrap_err();
        assert!(err.contains("'missing.bin' cannot be opened"), "{err}");
    }

    #[test]
    fn a_link_out_of_the_folder_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), [1u8; 8]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("w.bin")).unwrap();
        let err = extent(&ext("w.bin", 0, 8), dir.path()).unwrap_err();
        assert!(err.contains("through a link, outside the model's folder"), "{err}");
    }

    #[test]
    fn data_file_offsets_are_aligned_and_small_tensors_stay_inline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.bin"), vec![3u8; 5000]).unwrap();
        let big =
            TensorProto { name: Some("big".into()), raw_data: Some(vec![9u8; 2000].into()), ..Default::default() };
        let small =
            TensorProto { name: Some("small".into()), raw_data: Some(vec![9u8; 10].into()), ..Default::default() };
        let mut model = ModelProto {
            graph: Some(GraphProto { initializer: vec![ext("in.bin", 100, 4900), small, big], ..Default::default() }),
            ..Default::default()
        };
        let data = plan_data_file(&mut model, dir.path(), "out.onnx.data", &|_| true).unwrap();
        let offsets: Vec<u64> = data.chunks.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, [0, 8192]);
        assert_eq!(data.len, 8192 + 2000);
        let g = model.graph.unwrap();
        assert_eq!(entry(&g.initializer[0], "location"), Some("out.onnx.data"));
        assert_eq!(entry(&g.initializer[2], "offset"), Some("8192"));
        assert!(!is_external(&g.initializer[1]) && g.initializer[1].raw_data().len() == 10);
        assert!(g.initializer[2].raw_data().is_empty());
    }
}
