//! Fidelity on the wire: what the rewrite does not touch leaves the tool byte for byte as it came in.
//!
//! The schema is proto2, as ONNX's own, so a field written with its default value (MaxPool's
//! `ceil_mode: 0`) keeps its presence, and repeated scalars stay unpacked. Checked here on the raw
//! bytes of the files, split along the wire format (not on decoded messages, which would hide a
//! dropped default), for every fixture, offline and online. `TSM_WIRE_MODELS=a.onnx:b.onnx` adds
//! models of your own (full-size exports; `bench/runtime_matrix.py` notes how).

mod common;

use common::*;
use prost::Message;
use std::path::{Path, PathBuf};
use tsm_rewrite::onnx::ModelProto;

fn varint(buf: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = buf[*at];
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    v
}

/// The top-level fields of a message, in file order: (field number, the field's bytes with its key,
/// the payload of a length-delimited field).
fn fields(buf: &[u8]) -> Vec<(u64, &[u8], &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let start = at;
        let key = varint(buf, &mut at);
        let body_start;
        match key & 7 {
            0 => {
                body_start = at;
                varint(buf, &mut at);
            }
            1 => {
                body_start = at;
                at += 8;
            }
            5 => {
                body_start = at;
                at += 4;
            }
            2 => {
                let len = varint(buf, &mut at) as usize;
                body_start = at;
                at += len;
            }
            w => panic!("wire type {w} at byte {start}"),
        }
        out.push((key >> 3, &buf[start..at], &buf[body_start..at]));
    }
    out
}

fn of<'a>(fields: &[(u64, &'a [u8], &'a [u8])], number: u64) -> Vec<&'a [u8]> {
    fields.iter().filter(|f| f.0 == number).map(|f| f.2).collect()
}

/// The one graph field of a model file, split.
fn graph_fields(model: &[u8]) -> Vec<(u64, &[u8], &[u8])> {
    let graph = fields(model).into_iter().find(|f| f.0 == 7).expect("a graph").2;
    fields(graph)
}

fn node_name(node: &[u8]) -> String {
    fields(node).iter().find(|f| f.0 == 3).map(|f| String::from_utf8_lossy(f.2).into_owned()).unwrap_or_default()
}

/// Checks that `out` (a rewrite of `input`) keeps every untouched message of `input` byte for byte,
/// and that the nodes it rewired differ from their input only in the rewired input names.
fn check_untouched(input: &[u8], out: &[u8], what: &str) {
    let (mi, mo) = (fields(input), fields(out));
    // Every top-level field but the graph and the appended metadata, in the same order.
    let top = |m: &[(u64, &[u8], &[u8])]| -> Vec<Vec<u8>> {
        m.iter().filter(|f| f.0 != 7 && f.0 != 14).map(|f| f.1.to_vec()).collect()
    };
    assert_eq!(top(&mi), top(&mo), "{what}: the model's own fields changed");
    let (meta_in, meta_out) = (of(&mi, 14), of(&mo, 14));
    assert_eq!(meta_in[..], meta_out[..meta_in.len()], "{what}: the input's metadata changed");

    let (gi, go) = (graph_fields(input), graph_fields(out));
    // Graph fields other than nodes, initializers, inputs and outputs: unchanged.
    let rest = |g: &[(u64, &[u8], &[u8])]| -> Vec<Vec<u8>> {
        g.iter().filter(|f| ![1, 5, 11, 12, 13].contains(&f.0)).map(|f| f.1.to_vec()).collect()
    };
    assert_eq!(rest(&gi), rest(&go), "{what}: graph fields changed");
    // Initializers, outputs and value_info: the input's first, as they were; the rewrite only
    // appends (new constants, online buffers, the shifted tensors' shapes).
    for (number, label) in [(5, "initializer"), (12, "graph output"), (13, "value_info")] {
        let (a, b) = (of(&gi, number), of(&go, number));
        assert!(b.len() >= a.len() && a[..] == b[..a.len()], "{what}: an {label} changed");
    }
    // Inputs: the input's, in order, with the online buffers inserted among them.
    let (ins, outs) = (of(&gi, 11), of(&go, 11));
    let mut it = outs.iter();
    assert!(ins.iter().all(|i| it.any(|o| o == i)), "{what}: a graph input changed");

    // Nodes: the input's in order, the inserted shift nodes between them; a node whose input the
    // rewrite rewired is the same once its inputs are set back.
    let nodes_in = of(&gi, 1);
    let nodes_out: Vec<&[u8]> = of(&go, 1).into_iter().filter(|n| !node_name(n).contains("/tsm/")).collect();
    assert_eq!(nodes_in.len(), nodes_out.len(), "{what}: node count");
    let mut rewired = 0;
    for (a, b) in nodes_in.iter().zip(&nodes_out) {
        if a == b {
            continue;
        }
        rewired += 1;
        let (fa, fb) = (fields(a), fields(b));
        let keep = |f: &[(u64, &[u8], &[u8])]| -> Vec<Vec<u8>> {
            f.iter().filter(|x| x.0 != 1).map(|x| x.1.to_vec()).collect()
        };
        assert_eq!(keep(&fa), keep(&fb), "{what}: node {} changed beyond its inputs", node_name(a));
        let moved: Vec<String> = of(&fb, 1)
            .iter()
            .zip(of(&fa, 1))
            .filter(|(x, y)| **x != *y)
            .map(|(x, _)| String::from_utf8_lossy(x).into_owned())
            .collect();
        assert!(
            !moved.is_empty() && moved.iter().all(|m| m.contains("/tsm/")),
            "{what}: node {} rewired to {moved:?}",
            node_name(a)
        );
    }
    assert!(rewired > 0, "{what}: nothing was rewired");
}

fn rewrite(input: &Path, dir: &Path, extra: &[&str]) -> Vec<u8> {
    let out = dir.join("out.onnx");
    let mut args = vec![input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--no-validate"];
    args.extend_from_slice(extra);
    let o = tool(&args);
    assert!(o.status.success(), "{}: {}", input.display(), stderr(&o));
    std::fs::read(out).unwrap()
}

fn models() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(fixtures().join("models")).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    if let Ok(extra) = std::env::var("TSM_WIRE_MODELS") {
        v.extend(extra.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
    }
    v
}

#[test]
fn every_model_reencodes_to_its_own_bytes() {
    for p in models() {
        let bytes = std::fs::read(&p).unwrap();
        let again = ModelProto::decode(&bytes[..]).unwrap().encode_to_vec();
        assert!(again == bytes, "{}: decoding and encoding changed the bytes", p.display());
    }
}

#[test]
fn untouched_messages_keep_their_bytes_offline_and_online() {
    // The batch form only inserts nodes and rewires inputs: everything else keeps its bytes.
    let dir = tempfile::tempdir().unwrap();
    for p in models() {
        let input = std::fs::read(&p).unwrap();
        let name = p.display().to_string();
        // A batch fixed at 1 is freed offline, on purpose (its inputs, outputs, value_info and a
        // flattening Reshape's target): the rest is compared with the freed model.
        // And offline, the symbolic batch is declared in clips (`batch` -> `batch*8` wherever it is
        // declared): the rest is compared with the input so declared.
        let mut freed = ModelProto::decode(&input[..]).unwrap();
        let graph = freed.graph.as_mut().unwrap();
        let changes = tsm_rewrite::symbolic_batch::free(graph).unwrap();
        let declared = tsm_rewrite::clip_batch::declare(graph, 8, &Default::default());
        let offline_input =
            if changes.is_empty() && declared.is_empty() { input.clone() } else { freed.encode_to_vec() };
        let batch = ["--shift-form", "batch"];
        check_untouched(&offline_input, &rewrite(&p, dir.path(), &batch), &format!("{name} offline"));
        let shape = if name.contains("dynamic_hw") { vec!["--input-shape", "3,32,32"] } else { vec![] };
        let online = rewrite(&p, dir.path(), &[&["--online"], &batch[..], &shape[..]].concat());
        if shape.is_empty() {
            check_untouched(&input, &online, &format!("{name} online"));
        }
        // The stream form replaces the convolutions around its sites (and partitions their weights):
        // what keeps its name keeps its bytes, but for inputs rewired to a shift.
        check_kept_names(&offline_input, &rewrite(&p, dir.path(), &[]), &format!("{name} offline stream"));
    }
}

/// Every node and initializer of `out` named as one of `input` is that one, byte for byte (a node's
/// inputs may be rewired to a shift's output).
fn check_kept_names(input: &[u8], out: &[u8], what: &str) {
    let (gi, go) = (graph_fields(input), graph_fields(out));
    // (field of the message in the graph, field of its name): initializers name themselves in 8.
    let named = |g: &[(u64, &[u8], &[u8])], number: u64, name: u64| -> std::collections::HashMap<String, Vec<u8>> {
        let name_of = |m: &[u8]| {
            fields(m)
                .iter()
                .find(|f| f.0 == name)
                .map(|f| String::from_utf8_lossy(f.2).into_owned())
                .unwrap_or_default()
        };
        of(g, number).into_iter().map(|m| (name_of(m), m.to_vec())).filter(|(n, _)| !n.is_empty()).collect()
    };
    let inits_in = named(&gi, 5, 8);
    for (n, bytes) in named(&go, 5, 8) {
        assert!(inits_in.get(&n).is_none_or(|b| *b == bytes), "{what}: initializer {n} changed");
    }
    let nodes_in = named(&gi, 1, 3);
    for (n, bytes) in named(&go, 1, 3) {
        let Some(a) = nodes_in.get(&n) else { continue };
        let keep = |m: &[u8]| -> Vec<Vec<u8>> { fields(m).iter().filter(|x| x.0 != 1).map(|x| x.1.to_vec()).collect() };
        assert_eq!(keep(a), keep(&bytes), "{what}: node {n} changed beyond its inputs");
    }
}

#[test]
fn defaults_written_by_the_exporter_survive() {
    // torch writes MaxPool's ceil_mode as an explicit 0; a proto3 schema dropped the value and left
    // an INT attribute without one, which TVM's ONNX frontend refuses.
    let dir = tempfile::tempdir().unwrap();
    let out = rewrite(&model("resnet_basic"), dir.path(), &[]);
    let m = ModelProto::decode(&out[..]).unwrap();
    let g = m.graph.unwrap();
    let pool = g.node.iter().find(|n| n.op_type() == "MaxPool").unwrap();
    let ceil = pool.attribute.iter().find(|a| a.name() == "ceil_mode").expect("the export wrote ceil_mode");
    assert_eq!(ceil.i, Some(0));
    // Every attribute anywhere in the output holds the value its type names.
    for n in &g.node {
        for a in &n.attribute {
            use tsm_rewrite::onnx::attribute_proto::AttributeType as A;
            let has = match a.r#type() {
                A::Int => a.i.is_some(),
                A::Float => a.f.is_some(),
                A::String => a.s.is_some(),
                A::Tensor => a.t.is_some(),
                A::Graph => a.g.is_some(),
                _ => true,
            };
            assert!(has, "node {}: attribute {} has no value", n.name(), a.name());
        }
    }
}
