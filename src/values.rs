//! Integer tensors an export computes inside the graph, folded so that shape inference can read
//! them. PyTorch writes `F.pad` as `ConstantOfShape -> Concat -> Reshape -> Slice -> Transpose ->
//! Reshape -> Cast` feeding the Pad's pads, and GroupNorm as a Reshape back to `Shape(x)`; a model
//! whose shapes pass through such chains (BiT and other pre-activation ResNets with GroupNorm,
//! weight-standardized convolutions, TF-style padding) would otherwise lose every channel count
//! after its first Pad. An integer element is a [`Dim`], so a `Shape` of an activation with a
//! symbolic batch keeps the batch as its symbol. Only small tensors are folded ([`MAX_ELEMENTS`]).
//!
//! Some of that arithmetic runs in float32: timm's TF-style "same" padding (`tf_efficientnet_*`,
//! `tf_mobilenetv3_*`, any `pad_type='same'` model) traces `ceil(ih / stride)` and `clamp(.., 0)`
//! as `Cast(to float) -> Div -> Ceil -> Sub -> Mul -> Add -> Clip -> Cast(to int64)` on the
//! activation's `Shape`. Without those folds every H and W after the stem is unknown. The float
//! elements are computed as float32, as a runtime computes them, and come back as integers through
//! a Cast, which truncates toward zero.

use crate::onnx::{tensor_proto::DataType, NodeProto, TensorProto};
use crate::shapes::{attr_float, attr_int, attr_ints, norm_axis, slice_range, Dim, Info};
use crate::tensor::{int_values, FloatArray};
use std::collections::HashMap;

/// Folded tensors larger than this are dropped: shapes and pads are a few elements long.
pub const MAX_ELEMENTS: usize = 4096;

/// Float constants larger than this are not folded: the shape arithmetic's are scalars, and a
/// model's biases and scales would only fill the map.
const MAX_FLOAT_CONSTANT: usize = 16;

/// One element of a folded tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Elem {
    /// An integer: a size, an index, a pad, known or not.
    Int(Dim),
    /// A float32 of shape arithmetic done in float, `None` where an input was not known.
    Float(Option<f32>),
}

/// A folded tensor of integers (or of float32 shape arithmetic).
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// The tensor's own shape (`[]` for a scalar).
    pub shape: Vec<usize>,
    /// Its elements, row-major.
    pub elems: Vec<Elem>,
    /// The tensor this is the whole `Shape` of, if it is: a Reshape to it restores that tensor's
    /// layout.
    pub shape_of: Option<String>,
}

impl Value {
    fn new(shape: Vec<usize>, elems: Vec<Elem>) -> Option<Value> {
        (elems.len() <= MAX_ELEMENTS && shape.iter().product::<usize>() == elems.len()).then_some(Value {
            shape,
            elems,
            shape_of: None,
        })
    }

    /// An integer initializer or Constant, or a small float32 one.
    pub fn of_tensor(t: &TensorProto) -> Option<Value> {
        let shape = t.dims.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<Vec<_>>>()?;
        let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).filter(|&n| n <= MAX_ELEMENTS)?;
        if let Some(ints) = int_values(t) {
            return Value::new(shape, ints.into_iter().map(|v| Elem::Int(Dim::Known(v))).collect());
        }
        if n > MAX_FLOAT_CONSTANT || t.data_type() != DataType::Float as i32 {
            return None;
        }
        let floats = FloatArray::from_proto(t).ok().filter(|_| !crate::external::is_external(t))?.data;
        Value::new(shape, floats.into_iter().map(|v| Elem::Float(Some(v))).collect())
    }

    /// Every element, if all are known integers.
    pub fn known(&self) -> Option<Vec<i64>> {
        self.elems.iter().map(|e| if let Elem::Int(d) = e { d.known() } else { None }).collect()
    }

    /// Every element as a dimension, if all are integers (known or not).
    pub fn dims(&self) -> Option<Vec<Dim>> {
        self.elems.iter().map(|e| if let Elem::Int(d) = e { Some(d.clone()) } else { None }).collect()
    }
}

/// What a fold sees: the node, the folded value of each input, and the inferred shape of each.
struct Inputs<'a> {
    node: &'a NodeProto,
    values: Vec<Option<&'a Value>>,
    infos: Vec<Option<&'a Info>>,
}

impl Inputs<'_> {
    fn value(&self, k: usize) -> Option<&Value> {
        self.values.get(k).copied().flatten()
    }

    /// Input k's elements as integers: a constant operand (axes, starts, a permutation).
    fn ints(&self, k: usize) -> Option<Vec<i64>> {
        self.value(k)?.known()
    }
}

type Fold = fn(&Inputs) -> Option<Value>;

/// One function per operator, in the order a reader looks them up.
const FOLDS: &[(&str, Fold)] = &[
    ("Shape", shape),
    ("ConstantOfShape", constant_of_shape),
    ("Identity", identity),
    ("Cast", cast),
    ("Concat", concat),
    ("Reshape", reshape),
    ("Squeeze", squeeze),
    ("Unsqueeze", unsqueeze),
    ("Slice", slice),
    ("Transpose", transpose),
    ("Gather", gather),
    ("Add", |i| arithmetic(i, |a, b| a.checked_add(b), |a, b| a + b)),
    ("Sub", |i| arithmetic(i, |a, b| a.checked_sub(b), |a, b| a - b)),
    ("Mul", |i| arithmetic(i, |a, b| a.checked_mul(b), |a, b| a * b)),
    // ONNX's integer Div truncates toward zero, as Rust's does.
    ("Div", |i| arithmetic(i, |a, b| a.checked_div(b), |a, b| a / b)),
    ("Ceil", |i| rounding(i, f32::ceil)),
    ("Floor", |i| rounding(i, f32::floor)),
    ("Clip", clip),
];

/// Folds `node` if it is an operator of shape arithmetic over folded inputs; `values` holds what
/// was folded so far, `infos` the inferred shapes (for `Shape`).
pub fn fold(node: &NodeProto, values: &HashMap<String, Value>, infos: &HashMap<String, Info>) -> Option<Value> {
    let (_, f) = FOLDS.iter().find(|(op, _)| *op == node.op_type())?;
    let inputs = Inputs {
        node,
        values: node.input.iter().map(|n| values.get(n).filter(|_| !n.is_empty())).collect(),
        infos: node.input.iter().map(|n| infos.get(n).filter(|_| !n.is_empty())).collect(),
    };
    f(&inputs)
}

fn shape(i: &Inputs) -> Option<Value> {
    let x = i.infos.first().copied().flatten()?;
    let rank = x.rank() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let start = clamp(attr_int(i.node, "start").unwrap_or(0));
    let end = clamp(attr_int(i.node, "end").unwrap_or(rank));
    let dims: Vec<Elem> = x.dims.get(start..end.max(start))?.iter().cloned().map(Elem::Int).collect();
    let whole = start == 0 && end == x.rank();
    let mut v = Value::new(vec![dims.len()], dims)?;
    v.shape_of = whole.then(|| i.node.input[0].clone());
    Some(v)
}

fn constant_of_shape(i: &Inputs) -> Option<Value> {
    let shape = i.ints(0)?.into_iter().map(|d| usize::try_from(d).ok()).collect::<Option<Vec<_>>>()?;
    let fill = match i.node.attribute.iter().find(|a| a.name() == "value").and_then(|a| a.t.as_ref()) {
        Some(t) => Value::of_tensor(t)?.elems.first()?.clone(),
        None => Elem::Float(Some(0.0)),
    };
    let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
    if n > MAX_ELEMENTS {
        return None;
    }
    Value::new(shape, vec![fill; n])
}

fn identity(i: &Inputs) -> Option<Value> {
    i.value(0).cloned()
}

fn cast(i: &Inputs) -> Option<Value> {
    let to = DataType::try_from(i32::try_from(attr_int(i.node, "to")?).ok()?).ok()?;
    let v = i.value(0)?;
    let elems = match to {
        DataType::Int64 | DataType::Int32 if v.dims().is_some() => return Some(v.clone()),
        // Float to integer truncates toward zero (onnxruntime's static_cast); out of range is
        // undefined in ONNX, so unknown here.
        DataType::Int64 | DataType::Int32 => v
            .elems
            .iter()
            .map(|e| match e {
                Elem::Float(Some(f)) if f.is_finite() && f.abs() < 9.0e18 => Elem::Int(Dim::Known(f.trunc() as i64)),
                Elem::Float(_) => Elem::Int(Dim::Unknown),
                int => int.clone(),
            })
            .collect(),
        DataType::Float => v
            .elems
            .iter()
            .map(|e| match e {
                Elem::Int(d) => Elem::Float(d.known().map(|x| x as f32)),
                float => float.clone(),
            })
            .collect(),
        _ => return None,
    };
    Value::new(v.shape.clone(), elems)
}

fn concat(i: &Inputs) -> Option<Value> {
    // Shapes and pads are vectors: only rank 1 is folded.
    let mut elems = Vec::new();
    for (k, name) in i.node.input.iter().enumerate() {
        if name.is_empty() {
            continue;
        }
        let v = i.value(k)?;
        if v.shape.len() != 1 {
            return None;
        }
        elems.extend(v.elems.iter().cloned());
    }
    Value::new(vec![elems.len()], elems)
}

fn reshape(i: &Inputs) -> Option<Value> {
    let v = i.value(0)?;
    let target = i.ints(1)?;
    let allowzero = attr_int(i.node, "allowzero").unwrap_or(0) != 0;
    let mut shape: Vec<Option<usize>> = Vec::with_capacity(target.len());
    for (k, &t) in target.iter().enumerate() {
        shape.push(match t {
            0 if !allowzero => Some(*v.shape.get(k)?),
            -1 => None,
            t => Some(usize::try_from(t).ok()?),
        });
    }
    let known: usize = shape.iter().flatten().product();
    let total = v.elems.len();
    let shape: Vec<usize> = match shape.iter().filter(|d| d.is_none()).count() {
        0 => shape.into_iter().flatten().collect(),
        1 if known > 0 && total % known == 0 => shape.into_iter().map(|d| d.unwrap_or(total / known)).collect(),
        _ => return None,
    };
    Value::new(shape, v.elems.clone())
}

fn axes_of(i: &Inputs, rank: usize) -> Option<Vec<usize>> {
    let axes = attr_ints(i.node, "axes").or_else(|| i.ints(1))?;
    let mut out: Vec<usize> = axes.iter().map(|&a| norm_axis(a, rank)).collect::<Option<_>>()?;
    out.sort_unstable();
    out.dedup();
    (out.len() == axes.len()).then_some(out)
}

fn squeeze(i: &Inputs) -> Option<Value> {
    let v = i.value(0)?;
    let axes = match axes_of(i, v.shape.len()) {
        Some(a) => a,
        None if attr_ints(i.node, "axes").is_none() && i.node.input.len() < 2 => {
            (0..v.shape.len()).filter(|&k| v.shape[k] == 1).collect()
        }
        None => return None,
    };
    if axes.iter().any(|&a| v.shape[a] != 1) {
        return None;
    }
    let shape = v.shape.iter().enumerate().filter(|(k, _)| !axes.contains(k)).map(|(_, &d)| d).collect();
    Value::new(shape, v.elems.clone())
}

fn unsqueeze(i: &Inputs) -> Option<Value> {
    let v = i.value(0)?;
    let axes = axes_of(i, v.shape.len() + attr_ints(i.node, "axes").or_else(|| i.ints(1))?.len())?;
    let mut shape = v.shape.clone();
    for &a in &axes {
        if a > shape.len() {
            return None;
        }
        shape.insert(a, 1);
    }
    Value::new(shape, v.elems.clone())
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * shape[k + 1];
    }
    s
}

/// Every index of `shape`, row-major.
fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for &d in shape {
        out = out.into_iter().flat_map(|p| (0..d).map(move |k| [p.clone(), vec![k]].concat())).collect();
    }
    out
}

fn slice(i: &Inputs) -> Option<Value> {
    let v = i.value(0)?;
    let rank = v.shape.len();
    // Opset 10 moved starts, ends, axes and steps from attributes to inputs.
    let (starts, ends, axes, steps) = match attr_ints(i.node, "starts") {
        Some(s) => (s, attr_ints(i.node, "ends")?, attr_ints(i.node, "axes"), None),
        None => (i.ints(1)?, i.ints(2)?, i.ints(3), i.ints(4)),
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return None;
    }
    // Per axis, the source index of each output position.
    let mut picks: Vec<Vec<usize>> = v.shape.iter().map(|&d| (0..d).collect()).collect();
    for k in 0..starts.len() {
        let a = norm_axis(axes[k], rank)?;
        let d = v.shape[a] as i64;
        let step = steps[k];
        let (start, len) = slice_range(d, starts[k], ends[k], step)?;
        // Within the axis by slice_range's clamping, so no step overflows here.
        let p: Vec<usize> = (0..len).map(|j| (start as i128 + j as i128 * step as i128) as usize).collect();
        picks[a] = p;
    }
    let shape: Vec<usize> = picks.iter().map(Vec::len).collect();
    let src = strides(&v.shape);
    let elems = indices(&shape)
        .iter()
        .map(|ix| v.elems[ix.iter().enumerate().map(|(a, &k)| picks[a][k] * src[a]).sum::<usize>()].clone())
        .collect();
    Value::new(shape, elems)
}

fn transpose(i: &Inputs) -> Option<Value> {
    let v = i.value(0)?;
    let rank = v.shape.len();
    let perm: Vec<usize> = match attr_ints(i.node, "perm") {
        Some(p) => p.iter().map(|&a| usize::try_from(a).ok().filter(|&a| a < rank)).collect::<Option<_>>()?,
        None => (0..rank).rev().collect(),
    };
    if perm.len() != rank {
        return None;
    }
    let shape: Vec<usize> = perm.iter().map(|&p| v.shape[p]).collect();
    let src = strides(&v.shape);
    let elems = indices(&shape)
        .iter()
        .map(|ix| v.elems[ix.iter().enumerate().map(|(k, &x)| x * src[perm[k]]).sum::<usize>()].clone())
        .collect();
    Value::new(shape, elems)
}

fn gather(i: &Inputs) -> Option<Value> {
    // `Shape -> Gather(k)`: picking dims out of a shape vector.
    let v = i.value(0)?;
    let idx = i.value(1)?;
    if v.shape.len() != 1 || attr_int(i.node, "axis").unwrap_or(0) != 0 {
        return None;
    }
    let elems = idx
        .known()?
        .iter()
        .map(|&k| norm_axis(k, v.elems.len()).map(|k| v.elems[k].clone()))
        .collect::<Option<Vec<_>>>()?;
    Value::new(idx.shape.clone(), elems)
}

/// A binary operator on integers (`int`, `None` on overflow) or on float32s (`float`); operands
/// of two kinds are not a valid model, and are not folded.
fn arithmetic(i: &Inputs, int: fn(i64, i64) -> Option<i64>, float: fn(f32, f32) -> f32) -> Option<Value> {
    let (a, b) = (i.value(0)?, i.value(1)?);
    // A vector with a scalar or a vector of the same length: what shape arithmetic needs.
    let n = a.elems.len().max(b.elems.len());
    let shape = if a.elems.len() >= b.elems.len() { a.shape.clone() } else { b.shape.clone() };
    let at = |v: &Value, k: usize| if v.elems.len() == 1 { v.elems[0].clone() } else { v.elems[k].clone() };
    if (a.elems.len() != n && a.elems.len() != 1) || (b.elems.len() != n && b.elems.len() != 1) {
        return None;
    }
    let elems = (0..n)
        .map(|k| match (at(a, k), at(b, k)) {
            (Elem::Int(Dim::Known(x)), Elem::Int(Dim::Known(y))) => {
                Some(Elem::Int(int(x, y).map(Dim::Known).unwrap_or(Dim::Unknown)))
            }
            (Elem::Int(_), Elem::Int(_)) => Some(Elem::Int(Dim::Unknown)),
            (Elem::Float(x), Elem::Float(y)) => Some(Elem::Float(x.zip(y).map(|(x, y)| float(x, y)))),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Value::new(shape, elems)
}

/// Ceil and Floor, defined on floats only.
fn rounding(i: &Inputs, f: fn(f32) -> f32) -> Option<Value> {
    let v = i.value(0)?;
    let elems = v
        .elems
        .iter()
        .map(|e| match e {
            Elem::Float(x) => Some(Elem::Float(x.map(f))),
            Elem::Int(_) => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Value::new(v.shape.clone(), elems)
}

/// `min(max(x, lo), hi)`, the bounds scalar inputs (opset 11 on; an empty name leaves that side
/// open) or float attributes before.
fn clip(i: &Inputs) -> Option<Value> {
    let v = i.value(0)?;
    let bound = |k: usize, attr: &str| -> Option<Option<Elem>> {
        match i.node.input.get(k).filter(|n| !n.is_empty()) {
            Some(_) => {
                let b = i.value(k)?;
                (b.elems.len() == 1).then(|| Some(b.elems[0].clone()))
            }
            None => Some(attr_float(i.node, attr).map(|f| Elem::Float(Some(f)))),
        }
    };
    let (lo, hi) = (bound(1, "min")?, bound(2, "max")?);
    let elems = v
        .elems
        .iter()
        .map(|e| match e {
            Elem::Float(x) => {
                let side = |b: &Option<Elem>| match b {
                    None => Some(None),
                    Some(Elem::Float(f)) => Some(Some(*f)),
                    Some(Elem::Int(_)) => None,
                };
                let (lo, hi) = (side(&lo)?, side(&hi)?);
                let known = x.filter(|_| lo.is_none_or(|b| b.is_some()) && hi.is_none_or(|b| b.is_some()));
                Some(Elem::Float(known.map(|x| {
                    let x = lo.flatten().map_or(x, |b| x.max(b));
                    hi.flatten().map_or(x, |b| x.min(b))
                })))
            }
            Elem::Int(d) => {
                let side = |b: &Option<Elem>| match b {
                    None => Some(None),
                    Some(Elem::Int(d)) => Some(Some(d.known())),
                    Some(Elem::Float(_)) => None,
                };
                let (lo, hi) = (side(&lo)?, side(&hi)?);
                let known = d.known().filter(|_| lo.is_none_or(|b| b.is_some()) && hi.is_none_or(|b| b.is_some()));
                Some(Elem::Int(known.map_or(Dim::Unknown, |x| {
                    let x = lo.flatten().map_or(x, |b| x.max(b));
                    Dim::Known(hi.flatten().map_or(x, |b| x.min(b)))
                })))
            }
        })
        .collect::<Option<Vec<_>>>()?;
    Value::new(v.shape.clone(), elems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit::{int_attr, ints_attr};
    use crate::onnx::AttributeProto;
    use crate::tensor::int64;

    fn node(op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec!["out".into()],
            attribute: attrs,
            ..Default::default()
        }
    }

    fn known(shape: &[usize], v: &[i64]) -> Value {
        Value::new(shape.to_vec(), v.iter().map(|&x| Elem::Int(Dim::Known(x))).collect()).unwrap()
    }

    fn float(v: f32) -> Value {
        Value::new(vec![], vec![Elem::Float(Some(v))]).unwrap()
    }

    fn run(n: &NodeProto, values: &[(&str, Value)]) -> Option<Value> {
        let values = values.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        fold(n, &values, &HashMap::new())
    }

    /// PyTorch's `F.pad(x, (1, 2, 3, 4))` at opset 17, step by step: the pads of the last two
    /// axes, reversed into ONNX's begin-all-then-end-all order.
    #[test]
    fn torch_pad_chain_folds_to_onnx_pads() {
        let int_zero = AttributeProto {
            name: Some("value".into()),
            r#type: Some(crate::onnx::attribute_proto::AttributeType::Tensor as i32),
            t: Some(int64("", &[1], &[0])),
            ..Default::default()
        };
        let zeros = run(&node("ConstantOfShape", &["n"], vec![int_zero]), &[("n", known(&[1], &[4]))]).unwrap();
        assert_eq!(zeros.known(), Some(vec![0; 4]));
        let cat = run(&node("Concat", &["p", "z"], vec![]), &[("p", known(&[4], &[1, 2, 3, 4])), ("z", zeros)]);
        let pairs =
            run(&node("Reshape", &["c", "s"], vec![]), &[("c", cat.unwrap()), ("s", known(&[2], &[-1, 2]))]).unwrap();
        assert_eq!(pairs.shape, vec![4, 2]);
        let reversed = run(
            &node("Slice", &["r", "st", "en", "ax", "sp"], vec![]),
            &[
                ("r", pairs),
                ("st", known(&[1], &[-1])),
                ("en", known(&[1], &[i64::MIN + 1])),
                ("ax", known(&[1], &[0])),
                ("sp", known(&[1], &[-1])),
            ],
        )
        .unwrap();
        assert_eq!(reversed.known(), Some(vec![0, 0, 0, 0, 3, 4, 1, 2]));
        let t = run(&node("Transpose", &["r"], vec![ints_attr("perm", &[1, 0])]), &[("r", reversed)]).unwrap();
        let flat = run(&node("Reshape", &["t", "s"], vec![]), &[("t", t), ("s", known(&[1], &[-1]))]).unwrap();
        assert_eq!(flat.known(), Some(vec![0, 0, 3, 1, 0, 0, 4, 2]));
    }

    /// ONNX clamps a negative step's start to `[0, d - 1]`: a reversed slice starting before the
    /// axis takes its first element (onnxruntime agrees), and hostile steps take one element.
    #[test]
    fn slice_clamps_as_onnx_does() {
        let slice = |start: i64, end: i64, step: i64| {
            let v = [
                ("v", known(&[4], &[10, 11, 12, 13])),
                ("st", known(&[1], &[start])),
                ("en", known(&[1], &[end])),
                ("sp", known(&[1], &[step])),
            ];
            run(&node("Slice", &["v", "st", "en", "", "sp"], vec![]), &v).and_then(|r| r.known())
        };
        assert_eq!(slice(-10, i64::MIN, -1), Some(vec![10]));
        assert_eq!(slice(-10, -20, -1), Some(vec![10]));
        assert_eq!(slice(100, 0, -2), Some(vec![13, 11]));
        assert_eq!(slice(2, i64::MAX, i64::MAX), Some(vec![12]));
        assert_eq!(slice(-1, i64::MIN, i64::MIN), Some(vec![13]));
        assert_eq!(slice(0, 4, 0), None);
    }

    #[test]
    fn shape_keeps_a_symbolic_batch_and_names_its_tensor() {
        let x = Info {
            dims: vec![Dim::Sym("batch".into()), Dim::Known(8), Dim::Known(4), Dim::Known(4)],
            channel_axis: Some(1),
        };
        let infos = HashMap::from([("x".to_string(), x)]);
        let v = fold(&node("Shape", &["x"], vec![]), &HashMap::new(), &infos).unwrap();
        assert_eq!(v.elems[0], Elem::Int(Dim::Sym("batch".into())));
        assert_eq!(v.shape_of.as_deref(), Some("x"));
        let g = run(&node("Gather", &["v", "i"], vec![]), &[("v", v), ("i", known(&[], &[-1]))]).unwrap();
        assert_eq!((g.shape.clone(), g.known()), (vec![], Some(vec![4])));
    }

    #[test]
    fn arithmetic_and_casts() {
        let a = known(&[2], &[7, -7]);
        let two = known(&[], &[2]);
        let d = run(&node("Div", &["a", "b"], vec![]), &[("a", a.clone()), ("b", two)]).unwrap();
        assert_eq!(d.known(), Some(vec![3, -3]));
        let zero = known(&[], &[0]);
        let bad = run(&node("Div", &["a", "b"], vec![]), &[("a", a.clone()), ("b", zero)]).unwrap();
        assert_eq!(bad.elems, vec![Elem::Int(Dim::Unknown), Elem::Int(Dim::Unknown)]);
        let to_double = int_attr("to", DataType::Double as i64);
        assert_eq!(run(&node("Cast", &["a"], vec![to_double]), &[("a", a.clone())]), None);
        // Operands of two kinds are not a valid model: not folded.
        let f = run(&node("Cast", &["a"], vec![int_attr("to", DataType::Float as i64)]), &[("a", a.clone())]).unwrap();
        assert_eq!(run(&node("Add", &["a", "f"], vec![]), &[("a", a), ("f", f)]), None);
    }

    /// timm's `get_same_padding` and `pad_same` as the TorchScript exporter traces them on a
    /// `Shape` (tf_efficientnet_b0, opset 17): `clamp((ceil(ih / s) - 1) * s + (k - 1) * d + 1 -
    /// ih, min=0)` in float32, then `pad // 2` and `pad - pad // 2` through a Cast to int64.
    fn same_pads(ih: i64, k: i64, s: i64) -> Option<Vec<i64>> {
        let to = |t: DataType| vec![int_attr("to", t as i64)];
        let ih_f = run(&node("Cast", &["ih"], to(DataType::Float)), &[("ih", known(&[], &[ih]))])?;
        let step = |op: &str, a: Value, b: f32| run(&node(op, &["a", "b"], vec![]), &[("a", a), ("b", float(b))]);
        let ceil = run(&node("Ceil", &["a"], vec![]), &[("a", step("Div", ih_f.clone(), s as f32)?)])?;
        let span = step("Add", step("Add", step("Mul", step("Sub", ceil, 1.0)?, s as f32)?, (k - 1) as f32)?, 1.0)?;
        let over = run(&node("Sub", &["a", "b"], vec![]), &[("a", span), ("b", ih_f)])?;
        let pad = run(&node("Clip", &["a", "lo", ""], vec![]), &[("a", over), ("lo", float(0.0))])?;
        let half = run(&node("Cast", &["a"], to(DataType::Int64)), &[("a", step("Div", pad.clone(), 2.0)?)])?;
        let half_f = run(&node("Cast", &["a"], to(DataType::Float)), &[("a", half.clone())])?;
        let rest = run(&node("Sub", &["a", "b"], vec![]), &[("a", pad), ("b", half_f)])?;
        let rest = run(&node("Cast", &["a"], to(DataType::Int64)), &[("a", rest)])?;
        Some([half.known()?, rest.known()?].concat())
    }

    #[test]
    fn tf_same_padding_folds_in_float() {
        // 3x3 at stride 2: one pad, at the end, on an even size; two, one each side, on an odd one.
        assert_eq!(same_pads(224, 3, 2), Some(vec![0, 1]));
        assert_eq!(same_pads(15, 3, 2), Some(vec![1, 1]));
        // 5x5 at stride 2 (tf_efficientnet's stage 3): three, the extra one at the end.
        assert_eq!(same_pads(56, 5, 2), Some(vec![1, 2]));
        assert_eq!(same_pads(65, 5, 2), Some(vec![2, 2]));
        // Stride 1 never needs the clamp; a 1x1 at stride 2 would go negative without it.
        assert_eq!(same_pads(7, 3, 1), Some(vec![1, 1]));
        assert_eq!(same_pads(8, 1, 2), Some(vec![0, 0]));
    }

    #[test]
    fn float_to_int_truncates_toward_zero_and_out_of_range_is_unknown() {
        let to_int = vec![int_attr("to", DataType::Int64 as i64)];
        let v = Value::new(
            vec![4],
            [Some(-2.5f32), Some(2.5), Some(f32::INFINITY), None].into_iter().map(Elem::Float).collect(),
        )
        .unwrap();
        let i = run(&node("Cast", &["v"], to_int), &[("v", v)]).unwrap();
        assert_eq!(
            i.elems,
            [Dim::Known(-2), Dim::Known(2), Dim::Unknown, Dim::Unknown].into_iter().map(Elem::Int).collect::<Vec<_>>()
        );
    }

    /// Before opset 11 Clip's bounds are float attributes; from 11 optional inputs (integers too,
    /// from 12).
    #[test]
    fn clip_takes_its_bounds_from_attributes_or_inputs() {
        let bound = |name: &str, f: f32| AttributeProto {
            name: Some(name.into()),
            r#type: Some(crate::onnx::attribute_proto::AttributeType::Float as i32),
            f: Some(f),
            ..Default::default()
        };
        let v = Value::new(vec![3], [-1.0f32, 0.5, 9.0].into_iter().map(|x| Elem::Float(Some(x))).collect()).unwrap();
        let old = run(&node("Clip", &["v"], vec![bound("min", 0.0), bound("max", 6.0)]), &[("v", v.clone())]).unwrap();
        assert_eq!(old.elems, [0.0f32, 0.5, 6.0].into_iter().map(|x| Elem::Float(Some(x))).collect::<Vec<_>>());
        let high = run(&node("Clip", &["v", "", "hi"], vec![]), &[("v", v), ("hi", float(1.0))]).unwrap();
        assert_eq!(high.elems, [-1.0f32, 0.5, 1.0].into_iter().map(|x| Elem::Float(Some(x))).collect::<Vec<_>>());
        let ints = run(&node("Clip", &["v", "lo"], vec![]), &[("v", known(&[2], &[-3, 4])), ("lo", known(&[], &[0]))]);
        assert_eq!(ints.unwrap().known(), Some(vec![0, 4]));
        // A bound of the other kind, or one not folded: not folded.
        assert_eq!(run(&node("Clip", &["v", "lo"], vec![]), &[("v", known(&[1], &[2])), ("lo", float(0.0))]), None);
        assert_eq!(run(&node("Clip", &["v", "lo"], vec![]), &[("v", known(&[1], &[2]))]), None);
    }

    #[test]
    fn large_tensors_are_not_folded() {
        let t = int64("big", &[MAX_ELEMENTS as i64 + 1], &vec![0; MAX_ELEMENTS + 1]);
        assert_eq!(Value::of_tensor(&t), None);
        let n = run(&node("ConstantOfShape", &["n"], vec![]), &[("n", known(&[2], &[1 << 20, 1 << 20]))]);
        assert_eq!(n, None);
    }
}
