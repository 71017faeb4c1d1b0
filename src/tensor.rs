//! Small conversions between ONNX `TensorProto`s and plain values: finding a graph's constants and
//! reading the integer ones that shape inference and the rewrite need, building the int64 constants
//! the shift subgraph needs, and reading or writing float tensors in the ONNX test-data format
//! (`input_0.pb`).

use crate::graph::default_domain;
use crate::onnx::{tensor_proto::DataType, GraphProto, NodeProto, TensorProto};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use prost::Message;
use std::collections::HashMap;
use std::path::Path;

/// An int64 tensor of the given shape.
pub fn int64(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Int64 as i32),
        raw_data: Some(Bytes::from(values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())),
        ..Default::default()
    }
}

/// A bool tensor of the given shape.
pub fn bool_tensor(name: &str, dims: &[i64], values: &[bool]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Bool as i32),
        raw_data: Some(Bytes::from(values.iter().map(|&v| u8::from(v)).collect::<Vec<u8>>())),
        ..Default::default()
    }
}

/// A scalar zero of the floating-point type `data_type` (all its bytes zero, whatever its width).
pub fn zero_scalar(name: &str, data_type: i32) -> TensorProto {
    let width = match DataType::try_from(data_type) {
        Ok(DataType::Double | DataType::Int64 | DataType::Uint64) => 8,
        Ok(DataType::Float16 | DataType::Bfloat16 | DataType::Int16 | DataType::Uint16) => 2,
        Ok(DataType::Int8 | DataType::Uint8 | DataType::Bool) => 1,
        _ => 4,
    };
    TensorProto {
        name: Some(name.to_string()),
        data_type: Some(data_type),
        raw_data: Some(Bytes::from(vec![0u8; width])),
        ..Default::default()
    }
}

/// A scalar one of `data_type` (a float or integer type; Bool is true).
pub fn one_scalar(name: &str, data_type: i32) -> TensorProto {
    let bytes: Vec<u8> = match DataType::try_from(data_type) {
        Ok(DataType::Double) => 1f64.to_le_bytes().to_vec(),
        Ok(DataType::Float16) => vec![0x00, 0x3c],
        Ok(DataType::Bfloat16) => vec![0x80, 0x3f],
        Ok(DataType::Int64 | DataType::Uint64) => 1u64.to_le_bytes().to_vec(),
        Ok(DataType::Int32 | DataType::Uint32) => 1u32.to_le_bytes().to_vec(),
        Ok(DataType::Int16 | DataType::Uint16) => 1u16.to_le_bytes().to_vec(),
        Ok(DataType::Int8 | DataType::Uint8 | DataType::Bool) => vec![1],
        _ => 1f32.to_le_bytes().to_vec(),
    };
    TensorProto {
        name: Some(name.to_string()),
        data_type: Some(data_type),
        raw_data: Some(Bytes::from(bytes)),
        ..Default::default()
    }
}

/// A 1-D int64 tensor.
pub fn int64_vec(name: &str, values: &[i64]) -> TensorProto {
    int64(name, &[values.len() as i64], values)
}

/// The values of an integer tensor held in the model itself (not external data), if it is one.
pub fn int_values(t: &TensorProto) -> Option<Vec<i64>> {
    if t.data_location() == crate::onnx::tensor_proto::DataLocation::External {
        return None;
    }
    let dt = DataType::try_from(t.data_type()).ok()?;
    if !t.raw_data().is_empty() {
        let raw = t.raw_data();
        return match dt {
            DataType::Int64 => Some(raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()),
            DataType::Int32 => {
                Some(raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect())
            }
            _ => None,
        };
    }
    match dt {
        DataType::Int64 => Some(t.int64_data.clone()),
        DataType::Int32 => Some(t.int32_data.iter().map(|&v| v as i64).collect()),
        _ => None,
    }
}

/// The graph's constant tensors by name: its initializers, its Constant nodes' values (the
/// TorchScript exporter writes a GroupNorm's shape and InstanceNormalization constants as nodes)
/// and the Identity of a constant (the TorchScript exporter's for a weight equal to another, which
/// it keeps once: fresh GroupNorms' and BatchNorms' ones and zeros).
pub(crate) fn constants(graph: &GraphProto) -> HashMap<&str, &TensorProto> {
    let nodes = graph.node.iter().filter(|n| n.op_type() == "Constant" && default_domain(n) && n.output.len() == 1);
    let values = nodes.filter_map(|n| {
        let value = n.attribute.iter().find(|a| a.name() == "value")?.t.as_ref()?;
        Some((n.output[0].as_str(), value))
    });
    let mut consts: HashMap<&str, &TensorProto> =
        graph.initializer.iter().map(|t| (t.name(), t)).chain(values).collect();
    for n in &graph.node {
        if constant_identity(n, &consts) {
            let t = consts[n.input[0].as_str()];
            consts.insert(n.output[0].as_str(), t);
        }
    }
    consts
}

/// Whether `n` is an Identity of one of `consts`.
pub(crate) fn constant_identity(n: &NodeProto, consts: &HashMap<&str, &TensorProto>) -> bool {
    n.op_type() == "Identity"
        && default_domain(n)
        && n.input.len() == 1
        && n.output.len() == 1
        && consts.contains_key(n.input[0].as_str())
}

/// The number of elements a tensor declares (`i64::MAX` where the product of its dims overflows).
pub fn numel(t: &TensorProto) -> i64 {
    t.dims.iter().try_fold(1i64, |n, &d| n.checked_mul(d)).unwrap_or(i64::MAX)
}

/// Why a tensor's stored values are not the ones its dims declare, where they are not: a negative
/// dim, or data of another size. A tensor with nothing stored (external data, judged by
/// [`external_mismatch`] once its extent is known, or the fuzz seeds' emptied weights, whose dims
/// alone the pipeline reads) and strings, whose size varies, are not judged. Every runtime refuses
/// such a tensor; the rewrite would otherwise believe the dims (a convolution's channels, a shift's
/// fold).
pub fn payload_mismatch(t: &TensorProto) -> Option<String> {
    use DataType as D;
    if !t.raw_data().is_empty() {
        return size_mismatch(t, t.raw_data().len() as u128, "bytes of raw data", raw_bytes);
    }
    let (stored, per) = match DataType::try_from(t.data_type()).ok()? {
        D::Float => (t.float_data.len(), 1),
        D::Complex64 => (t.float_data.len(), 2),
        D::Double => (t.double_data.len(), 1),
        D::Complex128 => (t.double_data.len(), 2),
        D::Int64 => (t.int64_data.len(), 1),
        D::Uint32 | D::Uint64 => (t.uint64_data.len(), 1),
        // One value per int32, where the packed types (4- and 2-bit) put several: not judged.
        D::Int32 | D::Int16 | D::Int8 | D::Uint16 | D::Uint8 | D::Bool | D::Float16 | D::Bfloat16 => {
            (t.int32_data.len(), 1)
        }
        _ => return None,
    };
    if stored == 0 {
        return None;
    }
    size_mismatch(t, stored as u128, "values", |_, n| n.checked_mul(per))
}

/// [`payload_mismatch`] for an external tensor whose extent says `length` bytes.
pub fn external_mismatch(t: &TensorProto, length: u64) -> Option<String> {
    size_mismatch(t, u128::from(length), "bytes of external data", raw_bytes)
}

/// The bytes `n` values of `dt` take stored raw: the 4- and 2-bit types pack two or four a byte, the
/// last byte padded. `None` for strings, whose size varies.
pub(crate) fn raw_bytes(dt: DataType, n: u128) -> Option<u128> {
    use DataType as D;
    match dt {
        D::Bool | D::Uint8 | D::Int8 => Some(n),
        D::Float8e4m3fn | D::Float8e4m3fnuz | D::Float8e5m2 | D::Float8e5m2fnuz | D::Float8e8m0 => Some(n),
        D::Uint16 | D::Int16 | D::Float16 | D::Bfloat16 => n.checked_mul(2),
        D::Float | D::Int32 | D::Uint32 => n.checked_mul(4),
        D::Int64 | D::Uint64 | D::Double | D::Complex64 => n.checked_mul(8),
        D::Complex128 => n.checked_mul(16),
        D::Uint4 | D::Int4 | D::Float4e2m1 => Some(n.div_ceil(2)),
        D::Uint2 | D::Int2 => Some(n.div_ceil(4)),
        D::Undefined | D::String => None,
    }
}

/// Whether `stored` units are what `t`'s dims declare, `units_of` saying how many `n` values take.
fn size_mismatch(
    t: &TensorProto,
    stored: u128,
    unit: &str,
    units_of: impl Fn(DataType, u128) -> Option<u128>,
) -> Option<String> {
    let dt =
        DataType::try_from(t.data_type()).ok().filter(|&dt| !matches!(dt, DataType::Undefined | DataType::String))?;
    if let Some(d) = t.dims.iter().find(|&&d| d < 0) {
        return Some(format!("declares a negative dim ({d}) in {:?}", t.dims));
    }
    let declared = t.dims.iter().try_fold(1u128, |n, &d| n.checked_mul(d as u128));
    if declared.and_then(|n| units_of(dt, n)) == Some(stored) {
        return None;
    }
    let declared = declared.map_or_else(|| "more than 2^128".to_string(), |n| n.to_string());
    Some(format!("declares dims {:?} ({declared} values of {}) but stores {stored} {unit}", t.dims, dt.as_str_name()))
}

/// A float32 tensor in memory: shape and values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl FloatArray {
    pub fn to_proto(&self, name: &str) -> TensorProto {
        TensorProto {
            name: Some(name.to_string()),
            dims: self.shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(Bytes::from(self.data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())),
            ..Default::default()
        }
    }

    pub fn from_proto(t: &TensorProto) -> Result<FloatArray> {
        if t.data_type() != DataType::Float as i32 {
            bail!("tensor '{}' has data type {}, expected float32", t.name(), t.data_type());
        }
        let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
        let data: Vec<f32> = if !t.raw_data().is_empty() {
            t.raw_data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
        } else {
            t.float_data.clone()
        };
        if data.len() != shape.iter().product::<usize>() {
            bail!("tensor '{}' holds {} values for shape {:?}", t.name(), data.len(), shape);
        }
        Ok(FloatArray { shape, data })
    }

    /// Reads a serialized `TensorProto` file (the ONNX test-data convention).
    pub fn read_pb(path: &Path) -> Result<(String, FloatArray)> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let t = TensorProto::decode(&bytes[..]).with_context(|| format!("{}: not a TensorProto", path.display()))?;
        let a = FloatArray::from_proto(&t).with_context(|| path.display().to_string())?;
        Ok((t.name().to_owned(), a))
    }

    /// Seeded pseudo-random values in [-1, 1): the same seed gives the same values everywhere.
    pub fn random(shape: &[usize], seed: u64) -> FloatArray {
        let n: usize = shape.iter().product();
        // splitmix64: tiny, good enough for test inputs, and no dependency.
        let mut state = seed;
        let data = (0..n)
            .map(|_| {
                state = state.wrapping_add(0x9E3779B97F4A7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
                z ^= z >> 31;
                ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        FloatArray { shape: shape.to_vec(), data }
    }

    /// Largest absolute difference to another array of the same shape.
    pub fn max_abs_diff(&self, other: &FloatArray) -> f32 {
        assert_eq!(self.shape, other.shape, "shapes differ");
        self.data.iter().zip(&other.data).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
    }

    /// Largest absolute value (the output's scale, for relative tolerances).
    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_judged_against_their_dims() {
        let raw = |dt: DataType, dims: &[i64], bytes: usize| TensorProto {
            data_type: Some(dt as i32),
            dims: dims.to_vec(),
            raw_data: Some(Bytes::from(vec![0u8; bytes])),
            ..Default::default()
        };
        assert_eq!(payload_mismatch(&raw(DataType::Float, &[2, 3], 24)), None);
        assert_eq!(payload_mismatch(&raw(DataType::Float16, &[5], 10)), None);
        // Five int4 values take three bytes, the last half empty.
        assert_eq!(payload_mismatch(&raw(DataType::Int4, &[5], 3)), None);
        assert_eq!(payload_mismatch(&raw(DataType::Float, &[], 4)), None);
        // Nothing stored: not judged (external data, the fuzz seeds).
        assert_eq!(payload_mismatch(&raw(DataType::Float, &[1 << 62, 3], 0)), None);
        assert_eq!(payload_mismatch(&raw(DataType::String, &[2], 7)), None);
        assert_eq!(
            payload_mismatch(&raw(DataType::Float, &[2, 3], 20)).unwrap(),
            "declares dims [2, 3] (6 values of FLOAT) but stores 20 bytes of raw data"
        );
        assert_eq!(
            payload_mismatch(&raw(DataType::Int4, &[5], 2)).unwrap(),
            "declares dims [5] (5 values of INT4) but stores 2 bytes of raw data"
        );
        assert!(payload_mismatch(&raw(DataType::Float, &[2, -3], 24)).unwrap().contains("negative dim (-3)"));
        let huge = raw(DataType::Double, &[1 << 62, 1 << 62, 1 << 62], 8);
        assert!(payload_mismatch(&huge).unwrap().contains("(more than 2^128 values of DOUBLE)"));
        // One value per element in the typed fields (two for complex).
        let typed = TensorProto {
            data_type: Some(DataType::Int64 as i32),
            dims: vec![3],
            int64_data: vec![1, 2, 3],
            ..Default::default()
        };
        assert_eq!(payload_mismatch(&typed), None);
        let complex = TensorProto {
            data_type: Some(DataType::Complex64 as i32),
            dims: vec![2],
            float_data: vec![0.0; 3],
            ..Default::default()
        };
        assert!(payload_mismatch(&complex).unwrap().ends_with("(2 values of COMPLEX64) but stores 3 values"));
    }

    #[test]
    fn int64_round_trip() {
        let t = int64_vec("x", &[-1, 8, 64, 3136]);
        assert_eq!(int_values(&t), Some(vec![-1, 8, 64, 3136]));
        assert_eq!(numel(&t), 4);
    }

    #[test]
    fn random_is_seeded_and_bounded() {
        let a = FloatArray::random(&[2, 3], 7);
        assert_eq!(a, FloatArray::random(&[2, 3], 7));
        assert_ne!(a, FloatArray::random(&[2, 3], 8));
        assert!(a.data.iter().all(|v| (-1.0..1.0).contains(v)));
    }
}
