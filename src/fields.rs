//! Finds fields in a model file that this tool's ONNX schema does not know (a model from a newer
//! ONNX, or a vendor's extension). prost drops unknown fields when it decodes, so they would vanish
//! from the output without a word; `load` reports them as a warning instead.
//!
//! The walk reads the protobuf wire format directly against a table of known field numbers that
//! `build.rs` generates from `proto/onnx.proto`, stepping over tensor payloads without reading them.

use std::collections::BTreeMap;

include!(concat!(env!("OUT_DIR"), "/known_fields.rs"));

fn varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Counts the unknown fields in `buf`, a message of type `MESSAGES[msg]`, into `found`, keyed by
/// (message name, field number). Stops quietly at malformed input: the decoder reports that.
fn walk(buf: &[u8], msg: usize, found: &mut BTreeMap<(&'static str, u64), usize>, depth: usize) {
    let (name, fields) = MESSAGES[msg];
    let mut at = 0;
    while at < buf.len() {
        let Some(key) = varint(buf, &mut at) else { return };
        let (number, wire) = (key >> 3, key & 7);
        let known = fields.iter().find(|(n, _)| u64::from(*n) == number);
        if known.is_none() {
            *found.entry((name, number)).or_default() += 1;
        }
        match wire {
            0 => {
                if varint(buf, &mut at).is_none() {
                    return;
                }
            }
            1 => at += 8,
            5 => at += 4,
            2 => {
                let Some(len) = varint(buf, &mut at).and_then(|l| usize::try_from(l).ok()) else { return };
                let Some(body) = at.checked_add(len).and_then(|end| buf.get(at..end)) else { return };
                // Nesting deeper than protobuf's own recursion limit is left to the decoder.
                if let (Some((_, Some(sub))), true) = (known, depth < 100) {
                    walk(body, *sub, found, depth + 1);
                }
                at += len;
            }
            // Groups (3, 4) are not in the schema; anything after one cannot be told apart.
            _ => return,
        }
    }
}

/// The unknown fields of a model file, as `(message, field number, count)`, in a stable order.
pub fn unknown_fields(model_bytes: &[u8]) -> Vec<(&'static str, u64, usize)> {
    let mut found = BTreeMap::new();
    if let Some(model) = MESSAGES.iter().position(|(n, _)| *n == "ModelProto") {
        walk(model_bytes, model, &mut found, 0);
    }
    found.into_iter().map(|((m, f), c)| (m, f, c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{GraphProto, ModelProto, NodeProto};
    use prost::Message;

    #[test]
    fn known_models_have_no_unknown_fields_and_new_ones_are_found_where_they_are() {
        let model = ModelProto {
            ir_version: Some(8),
            graph: Some(GraphProto {
                node: vec![NodeProto { op_type: Some("Relu".into()), ..Default::default() }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut bytes = model.encode_to_vec();
        assert!(unknown_fields(&bytes).is_empty());
        // Field 99 on the model; a second `graph` (field 7) merges into the first: its field 77.
        bytes.extend([0x98, 0x06, 0x01]);
        bytes.extend([0x3a, 0x03, 0xe8, 0x04, 0x05]);
        bytes.extend([0x3a, 0x03, 0xe8, 0x04, 0x06]);
        assert_eq!(unknown_fields(&bytes), [("GraphProto", 77, 2), ("ModelProto", 99, 1)]);
        // prost indeed drops them.
        assert_eq!(ModelProto::decode(&bytes[..]).unwrap(), model);
    }
}
