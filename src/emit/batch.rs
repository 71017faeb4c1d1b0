//! The offline shift along the batch axis, emitted from opset 10: no activation is reshaped.
//!
//! Frames of a clip are consecutive on axis 0 of `[N*T, C, H, W]`, so "frame t takes frame t+1"
//! is a shift of the whole batch by one: `x[1:, group]` with one zero frame padded at the end.
//! That shift also carries the first frame of the next clip into the last frame of this one;
//! a `Where` on a `[N*T, 1, 1, 1]` condition (frame t has a neighbour in its clip) puts the zeros
//! back there. The groups and the untouched channels are joined by a channel Concat. For the stream
//! form's head where [`super::rows`] does not apply (before opset 11, an open height or width, a
//! batch the rows' index cannot be made for), and where every channel moves, the groups and the
//! head's channels that stay are joined first and one `Where` on a `[N*T, C, 1, 1]` condition masks
//! them all (true where a channel stays), so the consuming convolution reads one tensor.
//!
//! Why this form: the tensor keeps its layout and its batch symbol. A Reshape to a clip view costs
//! OpenVINO a reorder out of its blocked layout and back at every site, and loses the batch symbol
//! in shape inference, after which onnxruntime cannot prove the two inputs of the block's residual
//! Add equal in shape and leaves the Add and its Relu outside the convolution (16 of each on
//! ResNet-50). Measured side by side on ResNet-50 (`bench/RESULTS-forms.md`): onnxruntime about
//! its channel round-trip floor, OpenVINO 1.17x against 1.42x for the clip view, tract about the
//! same as the clip view. `Where`, not a multiplication by a 0/1 mask, so that the zeros are zeros
//! whatever the neighbour holds (inf or NaN included), as in the reference.

use super::{int_attr, node, Emitter};
use crate::config::{Config, Neighbour};
use crate::onnx::tensor_proto::DataType;
use crate::onnx::{GraphProto, NodeProto, TensorProto};
use crate::plan::Site;
use crate::shapes::{declared_dims, Dim};
use crate::tensor::{bool_tensor, int64, one_scalar};
use crate::validate::data_inputs;

/// The site's shift along the batch axis; returns the shifted tensor's name.
pub(super) fn subgraph(e: &mut Emitter, site: &Site, config: &Config) -> String {
    shift(e, site, config, false)
}

/// The stream form's head shifted along the batch axis, its groups and any channels after them
/// joined first and masked by one `Where` (see [`subgraph`]'s doc); returns the shifted head.
pub(super) fn head(e: &mut Emitter, site: &Site, config: &Config) -> String {
    shift(e, site, config, true)
}

fn shift(e: &mut Emitter, site: &Site, config: &Config, joined: bool) -> String {
    let (t, c, fold) = (site.segments as i64, site.channels, site.fold);
    let x = site.tensor.clone();
    let zero = e.zero(site);
    // Each moved group: its name, its index and whether it takes the next frame.
    let groups: Vec<(&str, i64, bool)> =
        (0..).zip(config.moved_groups()).map(|(g, &from)| (from.name(), g, from == Neighbour::Next)).collect();
    let keep = |from_next: bool, frame: i64| if from_next { frame < t - 1 } else { frame > 0 };
    let moved = |e: &mut Emitter, what: &str, g: i64, from_next: bool| {
        let (start, end, pads): (i64, i64, [i64; 8]) =
            if from_next { (1, i64::MAX, [0, 0, 0, 0, 1, 0, 0, 0]) } else { (0, -1, [1, 0, 0, 0, 0, 0, 0, 0]) };
        let s = e.slice(what, &x, &[start, g * fold], &[end, (g + 1) * fold], &[0, 1], &[]);
        e.pad(what, &s, &pads)
    };
    let shifted_channels = fold * groups.len() as i64;
    if joined || shifted_channels >= c {
        // The stream form's head (read by a convolution of its own), or every channel moves: the
        // groups, and the channels after them that stay (a head rounded up to whole blocks), are
        // joined first and masked by one Where on a `[N*T, C, 1, 1]` condition, true for the
        // channels that stay. A Where per group would leave a Concat as the convolution's input,
        // which tract splits into one matrix product per group, each with its own output
        // transpose, and a sum. The Pads lose the batch symbol in shape inference; an empty slice
        // of x first in the Concat keeps it (see `carried`).
        let mut parts = carried(e, site);
        parts.extend(groups.iter().map(|&(what, g, next)| moved(e, what, g, next)));
        if shifted_channels < c {
            parts.push(e.slice("stay", &x, &[shifted_channels], &[c], &[1], &[c]));
        }
        let joined = e.node("Concat", "Concat", parts, "joined", vec![int_attr("axis", 1)]);
        let keeps = |frame: i64| {
            let stay = (shifted_channels..c).map(|_| true);
            groups.iter().flat_map(move |&(_, _, next)| (0..fold).map(move |_| keep(next, frame))).chain(stay)
        };
        let mask = frame_mask(e, site, "keep", "keep_frames_shape", c, &|f| keeps(f).collect(), "keep_frames");
        let mask = if whole_clips(site).is_some() {
            mask
        } else {
            // Shape inference cannot tell the Reshape's first dimension is the batch; the Where
            // would lose the batch symbol and with it onnxruntime's fusion of the Add that sums
            // the consumer's two halves. An empty slice of x carries the symbol in.
            let carrier = e.slice("keep_carrier", &x, &[0, 0, 0], &[0, 1, 1], &[1, 2, 3], &[]);
            let carrier = e.node(
                "Cast",
                "Cast_keep_carrier",
                vec![carrier],
                "keep_carrier_bool",
                vec![int_attr("to", DataType::Bool as i64)],
            );
            e.node("Concat", "Concat_keep", vec![carrier, mask], "keep", vec![int_attr("axis", 1)])
        };
        return e.node("Where", "Where", vec![mask, joined, zero], "shifted", vec![]);
    }
    let mut parts = carried(e, site);
    parts.extend(groups.iter().map(|&(what, g, next)| {
        let has = format!("has_{what}");
        let has = frame_mask(e, site, &has, "mask_frames_shape", 1, &|f| vec![keep(next, f)], &has);
        let p = moved(e, what, g, next);
        e.node("Where", &format!("Where_{what}"), vec![has, p, zero.clone()], &format!("{what}_kept"), vec![])
    }));
    parts.push(e.slice("rest", &x, &[shifted_channels], &[c], &[1], &[]));
    e.node("Concat", "Concat", parts, "shifted", vec![int_attr("axis", 1)])
}

/// An empty slice of the site's tensor, `[N*T, 0, H, W]`, to go first in a Concat whose other
/// inputs lose a symbolic batch in shape inference (the Pads', the Wheres' on masks of a length made
/// at run time), where the batch is symbolic; else nothing. It carries the batch symbol into the
/// Concat's output, without which onnxruntime cannot prove the inputs of the residual Adds
/// downstream equal in shape and leaves them unfused. First, because ONNX's inference takes a
/// symbol from the first input that has one, and `onnx.shape_inference.infer_shapes` (onnxsim with
/// it) names each unknown batch `unk__N`: last, the carrier lost to the first group's, and
/// onnxruntime, reading those shapes from value_info, left 52 Adds and 46 Relus of ResNet-50
/// unfused (bench/RESULTS-simplifiers.md).
pub(super) fn carried(e: &mut Emitter, site: &Site) -> Vec<String> {
    match site.batch.known() {
        Some(_) => vec![],
        None => vec![e.slice("batch_carrier", &site.tensor, &[0], &[0], &[1], &[])],
    }
}

/// Whether each frame keeps its moved channels (it has, in its clip, the neighbour they come from),
/// as a `[N*T, width, 1, 1]` condition whose row for a frame is `row(its index in the clip)`: a
/// constant for a fixed batch of whole clips, else one of the graph's [`FrameMasks`] where the batch
/// is a graph input's (from opset 11), else a `[T, width, 1, 1]` constant expanded to
/// `[N, T, width, 1, 1]` and flattened by a Reshape to `frames_shape` (Expand, not Tile: TVM cannot
/// convert a Tile whose repeats are computed) into `out`. Nodes and constants are named after `stem`.
fn frame_mask(
    e: &mut Emitter,
    site: &Site,
    stem: &str,
    frames_shape: &str,
    width: i64,
    row: &dyn Fn(i64) -> Vec<bool>,
    out: &str,
) -> String {
    let t = site.segments as i64;
    if let Some(b) = whole_clips(site) {
        let name = e.name(stem);
        e.inits.push(bool_tensor(&name, &[b, width, 1, 1], &(0..b).flat_map(|i| row(i % t)).collect::<Vec<_>>()));
        return name;
    }
    let rows: Vec<bool> = (0..t).flat_map(row).collect();
    let opset = e.opset;
    if let (Dim::Sym(batch), Some(masks)) = (&site.batch, e.masks.as_deref_mut()) {
        if let Some(mask) = masks.mask(batch, t, width, rows.clone(), opset) {
            return mask;
        }
    }
    let in_clip = e.name(&format!("{stem}_in_clip"));
    e.inits.push(bool_tensor(&in_clip, &[t, width, 1, 1], &rows));
    let clips_shape = clips_shape(e, &site.tensor, t);
    let shape = e.name(frames_shape);
    if !e.inits.iter().any(|i| i.name() == shape) {
        e.constant(frames_shape, &[-1, width, 1, 1]);
    }
    let clips =
        e.node("Expand", &format!("Expand_{stem}"), vec![in_clip, clips_shape], &format!("{stem}_clips"), vec![]);
    e.node("Reshape", &format!("Reshape_{stem}"), vec![clips, shape], out, vec![])
}

/// The batch, if it is fixed and whole clips. (A fixed batch that is not whole clips is the online
/// validation's reference, which runs the model at another batch: masks are computed at run time
/// then.)
fn whole_clips(site: &Site) -> Option<i64> {
    site.batch.known().filter(|b| b % site.segments as i64 == 0)
}

/// `[N, T, 1, 1, 1]`, N being the clips in the batch of `x` (its frames / T): the shape a
/// `[T, ...]` mask is expanded to; made once per site.
fn clips_shape(e: &mut Emitter, x: &str, t: i64) -> String {
    let clips_shape = e.name("mask_clips_shape");
    if e.nodes.iter().any(|n| n.output.contains(&clips_shape)) {
        return clips_shape;
    }
    let shape = e.node("Shape", "Shape", vec![x.into()], "shape", vec![]);
    let frames = e.slice("frames", &shape, &[0], &[1], &[0], &[]);
    let segments = e.constant("segments", &[t]);
    let clips = e.node("Div", "Div_clips", vec![frames, segments], "clips", vec![]);
    let clip_dims = e.constant("mask_clip_dims", &[t, 1, 1, 1]);
    e.node("Concat", "Concat_mask_shape", vec![clips, clip_dims], "mask_clips_shape", vec![int_attr("axis", 0)])
}

/// The frame masks of a graph whose batch is symbolic, made once for all its sites: each frame's
/// index in its clip, counted over the frames of the graph input that carries the batch, mod T,
/// and one `[N*T, width, 1, 1]` Gather of a `[T, width, 1, 1]` table per distinct mask. Placed
/// before the graph's first node.
///
/// Why: a mask gathered by this index is as long as the batch itself. The Reshape of an expanded
/// `[N, T]` mask gives `T * (batch / T)`, which tract, the batch left a symbol, cannot equate with
/// the batch (they differ when the batch is not whole clips), so it refused to load the model. And
/// once, not per site: tract merges identical nodes (its `PushSplitDown` pass), and merging the
/// same Gather made at every site left a reader of a node it had removed (ResNet-18, batch form:
/// "eval() called on a Dummy op").
#[derive(Debug, Default)]
pub struct FrameMasks {
    /// The graph inputs whose first dim is a batch symbol.
    sources: Vec<Source>,
    /// (T, each frame's index in its clip).
    index: Option<(i64, String)>,
    /// (width, rows, the mask's name), in the order first asked for.
    masks: Vec<(i64, Vec<bool>, String)>,
    /// (the batch, channels, the `[N*T, channels, 2]` ScatterND indices' name).
    positions: Vec<(Dim, i64, String)>,
    /// (the batch, T, each row's source, the rows form's Gather index's name).
    rows: Vec<(Dim, i64, Vec<Option<Neighbour>>, String)>,
    /// What the masks add to the graph, before its first node.
    pub nodes: Vec<NodeProto>,
    pub inits: Vec<TensorProto>,
}

/// A graph input whose first dim is the batch symbol `batch`: the masks count its frames.
#[derive(Debug, Clone)]
struct Source {
    batch: String,
    input: String,
    rank: usize,
    elem_type: i32,
}

const MASKS: &str = "/tsm/frames";

impl FrameMasks {
    /// Masks read the batch from the graph's data inputs whose first dim is a symbol.
    pub fn new(graph: &GraphProto) -> FrameMasks {
        let sources = data_inputs(graph)
            .into_iter()
            .filter_map(|i| {
                let Some(crate::onnx::type_proto::Value::TensorType(t)) = i.r#type.as_ref()?.value.as_ref() else {
                    return None;
                };
                let Dim::Sym(batch) = declared_dims(i)?.first()?.clone() else { return None };
                let (input, rank, elem_type) = (i.name().to_string(), t.shape.as_ref()?.dim.len(), t.elem_type());
                Some(Source { batch, input, rank, elem_type })
            })
            .collect();
        FrameMasks { sources, ..FrameMasks::default() }
    }

    /// The mask whose row for each frame is `rows[its index in the clip]` (`width` values each),
    /// `[N*T, width, 1, 1]`; `None` where the batch is no graph input's or before opset 11 (CumSum).
    fn mask(&mut self, batch: &str, t: i64, width: i64, rows: Vec<bool>, opset: i64) -> Option<String> {
        let source = self.sources.iter().find(|s| s.batch == batch).cloned().filter(|_| opset >= 11)?;
        if let Some((_, _, name)) = self.masks.iter().find(|(w, r, _)| *w == width && *r == rows) {
            return Some(name.clone());
        }
        let index = self.frame_index(&source, t)?;
        let name = format!("{MASKS}/mask{}", self.masks.len());
        let table = format!("{name}_rows");
        self.inits.push(bool_tensor(&table, &[t, width, 1, 1], &rows));
        self.nodes.push(node(
            "Gather",
            &format!("{name}/Gather"),
            vec![table, index],
            &name,
            vec![int_attr("axis", 0)],
        ));
        self.masks.push((width, rows, name.clone()));
        Some(name)
    }

    /// The `[N*T, channels, 2]` indices of a ScatterND that writes the first `channels` channels
    /// of every frame (`[frame, channel]` pairs, see [`super::scatter`]): a constant for a fixed
    /// batch of whole clips, else made at run time from the frames of the graph input that carries
    /// the batch, once per channel count; `None` otherwise. (ScatterND, hence the caller, needs
    /// opset 11, as CumSum does.)
    pub(super) fn positions(&mut self, batch: &Dim, t: i64, channels: i64) -> Option<String> {
        let fixed = batch.known().filter(|b| b % t == 0);
        // Keyed by the batch itself: a site after `--temporal-pool` (its batch unknown) once took
        // the input's positions made for an earlier site, twice its frames (a ScatterND out of
        // bounds, which tract's validation hit as a panic).
        if let Some((_, _, name)) = self.positions.iter().find(|(b, c, _)| b == batch && *c == channels) {
            return Some(name.clone());
        }
        let name = format!("{MASKS}/positions{}", self.positions.len());
        if let Some(b) = fixed {
            self.inits.push(int64(&name, &[b, channels, 2], &super::scatter::position_rows(b, channels)));
        } else {
            let Dim::Sym(batch) = batch else { return None };
            let source = self.sources.iter().find(|s| &s.batch == batch).cloned()?;
            let n = |what: &str| format!("{MASKS}/{what}");
            // Each frame's position in the batch as a `[N*T, 1, 1]` column, made once.
            let column = n("frame_column");
            if !self.nodes.iter().any(|node| node.output.contains(&column)) {
                let frame = self.frame(&source);
                self.inits.push(int64(&n("column_shape"), &[3], &[-1, 1, 1]));
                self.inits.push(int64(&n("zero_int"), &[], &[0]));
                self.nodes.push(node("Reshape", &n("Reshape_column"), vec![frame, n("column_shape")], &column, vec![]));
            }
            // Broadcast by adding zeros, not by Expand to the input's Shape: OpenVINO computed QDQ
            // rewrites wrongly with a shape made from the input's Shape (see `frame`). (Not Tile:
            // TVM cannot convert a Tile whose repeats are computed.)
            let (zeros, channel) = (format!("{name}_zeros"), format!("{name}_channel"));
            self.inits.push(int64(&zeros, &[1, channels, 1], &vec![0; channels as usize]));
            self.inits.push(int64(&channel, &[1, channels, 1], &(0..channels).collect::<Vec<_>>()));
            let (rows, cols, none) = (format!("{name}_frames"), format!("{name}_channels"), format!("{name}_none"));
            self.nodes.push(node("Add", &format!("{name}/Add_frames"), vec![column.clone(), zeros], &rows, vec![]));
            self.nodes.push(node("Mul", &format!("{name}/Mul_none"), vec![column, n("zero_int")], &none, vec![]));
            self.nodes.push(node("Add", &format!("{name}/Add_channels"), vec![channel, none], &cols, vec![]));
            self.nodes.push(node(
                "Concat",
                &format!("{name}/Concat"),
                vec![rows, cols],
                &name,
                vec![int_attr("axis", 2)],
            ));
        }
        self.positions.push((batch.clone(), channels, name.clone()));
        Some(name)
    }

    /// The index of the rows form's Gather (see [`super::rows`]), `[N*T * k]` for k =
    /// `sources.len()` rows per frame: a constant for a fixed batch of whole clips, else made at run
    /// time from the frames of the graph input that carries the batch (each frame's position in
    /// the batch times k, plus a `[T, k]` offset gathered by its index in the clip, times a `[T, k]`
    /// keep of 0 or 1), once per distinct `sources`; `None` otherwise.
    pub(super) fn rows(&mut self, batch: &Dim, t: i64, sources: &[Option<Neighbour>]) -> Option<String> {
        let fixed = batch.known().filter(|b| b % t == 0);
        // Keyed by the batch, as the positions above are, and by T, which each row's source
        // within its clip depends on.
        if let Some((.., name)) = self.rows.iter().find(|(b, bt, s, _)| b == batch && *bt == t && s == sources) {
            return Some(name.clone());
        }
        let name = format!("{MASKS}/rows{}", self.rows.len());
        let k = sources.len() as i64;
        if let Some(b) = fixed {
            self.inits.push(int64(&name, &[b * k], &super::rows::index_rows(b, t, sources)));
        } else {
            let Dim::Sym(batch) = batch else { return None };
            let source = self.sources.iter().find(|s| &s.batch == batch).cloned()?;
            let index = self.frame_index(&source, t)?;
            let frame = self.frame(&source);
            let (offset, keep) = super::rows::offset_table(t, sources);
            let n = |what: &str| format!("{name}_{what}");
            self.inits.push(int64(&n("k"), &[], &[k]));
            self.inits.push(int64(&n("column_shape"), &[2], &[-1, 1]));
            self.inits.push(int64(&n("offset_rows"), &[t, k], &offset));
            self.inits.push(int64(&n("keep_rows"), &[t, k], &keep));
            self.inits.push(int64(&n("flat"), &[1], &[-1]));
            let mut push = |op: &str, what: &str, inputs: Vec<String>, out: String, attrs| {
                self.nodes.push(node(op, &format!("{name}/{what}"), inputs, &out, attrs));
                out
            };
            let first = push("Mul", "Mul_first", vec![frame, n("k")], n("first"), vec![]);
            let column = push("Reshape", "Reshape_column", vec![first, n("column_shape")], n("column"), vec![]);
            let axis0 = || vec![int_attr("axis", 0)];
            let offset = push("Gather", "Gather_offset", vec![n("offset_rows"), index.clone()], n("offset"), axis0());
            let keep = push("Gather", "Gather_keep", vec![n("keep_rows"), index], n("keep"), axis0());
            let source = push("Add", "Add_offset", vec![column, offset], n("source"), vec![]);
            let kept = push("Mul", "Mul_keep", vec![source, keep], n("kept"), vec![]);
            push("Reshape", "Reshape_flat", vec![kept, n("flat")], name.clone(), vec![]);
        }
        self.rows.push((batch.clone(), t, sources.to_vec(), name.clone()));
        Some(name)
    }

    /// The rows index `rows` (see [`FrameMasks::rows`], k rows a frame) spread over the `pixels`
    /// of a channels-last view (see `super::rows::channels_last`): pixel p's row j of frame s
    /// (counted after the zero frame) is `(s * pixels + p) * k + j`, where `rows` holds `s * k +
    /// j`. Made once per index and size, by nodes even where `rows` is a constant: the runtimes fold
    /// them, and the file does not carry `[N*T * pixels * k]` int64s.
    pub(super) fn pixel_rows(&mut self, rows: &str, k: i64, pixels: i64) -> String {
        let name = format!("{rows}_pixels{pixels}");
        if self.nodes.iter().any(|n| n.output.contains(&name)) {
            return name;
        }
        let n = |what: &str| format!("{name}_{what}");
        self.inits.push(int64(&n("shape"), &[3], &[-1, 1, k]));
        self.inits.push(int64(&n("k"), &[], &[k]));
        self.inits.push(int64(&n("frame_rows"), &[], &[pixels * k]));
        self.inits.push(int64(&n("groups"), &[1, 1, k], &(0..k).collect::<Vec<_>>()));
        self.inits.push(int64(&n("pixels"), &[1, pixels, 1], &(0..pixels).map(|p| p * k).collect::<Vec<_>>()));
        self.inits.push(int64(&n("flat"), &[1], &[-1]));
        let mut push = |op: &str, what: &str, inputs: Vec<String>, out: String| {
            self.nodes.push(node(op, &format!("{name}/{what}"), inputs, &out, vec![]));
            out
        };
        let cells = push("Reshape", "Reshape_cells", vec![rows.to_string(), n("shape")], n("cells"));
        let frame = push("Div", "Div_frame", vec![cells, n("k")], n("frame"));
        let start = push("Mul", "Mul_frame", vec![frame, n("frame_rows")], n("start"));
        let group = push("Add", "Add_group", vec![start, n("groups")], n("group"));
        let each = push("Add", "Add_pixels", vec![group, n("pixels")], n("each"));
        push("Reshape", "Reshape_flat", vec![each, n("flat")], name.clone());
        name
    }

    /// `CumSum(ones [frames], exclusive) mod t`, `[N*T]` int64, one one per frame of the input (see
    /// `frame`). (A Range to the frames gives the same values, but TVM's frontend cannot tie a
    /// Range's length to the batch: the shapes after it are lost there.) Made once for the graph,
    /// for one T: `None` when asked for another (the sites after a `--temporal-pool`).
    fn frame_index(&mut self, source: &Source, t: i64) -> Option<String> {
        if let Some((segments, index)) = &self.index {
            return (*segments == t).then(|| index.clone());
        }
        let n = |what: &str| format!("{MASKS}/{what}");
        let frame = self.frame(source);
        self.inits.push(int64(&n("segments"), &[], &[t]));
        let index = n("frame_index");
        self.nodes.push(node("Mod", &n("Mod"), vec![frame, n("segments")], &index, vec![]));
        self.index = Some((t, index.clone()));
        Some(index)
    }

    /// `CumSum(ones [frames], exclusive)`: each frame's position in the batch, made once.
    fn frame(&mut self, source: &Source) -> String {
        let n = |what: &str| format!("{MASKS}/{what}");
        if self.nodes.iter().any(|node| node.output.contains(&n("frame"))) {
            return n("frame");
        }
        let (input, rank, elem_type) = (&source.input, source.rank, source.elem_type);
        frame_counter(input, rank, 0, elem_type, &n, &mut self.nodes, &mut self.inits)
    }
}

/// `CumSum(ones [frames], exclusive)`, int64: each frame's position among the frames of `input`
/// (of rank `rank` and element type `elem_type`), which lie along `axis`; the nodes and
/// initializers named by `n`. Shared by the 2D masks and the depth volume's (`super::volume`).
pub(crate) fn frame_counter(
    input: &str,
    rank: usize,
    axis: usize,
    elem_type: i32,
    n: &dyn Fn(&str) -> String,
    nodes: &mut Vec<NodeProto>,
    inits: &mut Vec<TensorProto>,
) -> String {
    inits.push(int64(&n("axis0"), &[], &[0]));
    // The ones are made from the input itself, a one in its type per frame (a Where on a
    // false condition, whatever the input holds), not by ConstantOfShape
    // of its Shape: OpenVINO 2026.4, compiling a QDQ model with its batch dynamic, computed the
    // batch form's quantized shift wrongly with masks made from the Shape (resnet_basic_qdq's
    // logits 0.81 off, where the 2D model is 0.027 off) and right with these
    // (bench/openvino_qdq_dynamic.py).
    let others: Vec<i64> = (0..rank as i64).filter(|&a| a != axis as i64).collect();
    let k = others.len() as i64;
    inits.push(int64(&n("first_starts"), &[k], &vec![0; others.len()]));
    inits.push(int64(&n("first_ends"), &[k], &vec![1; others.len()]));
    inits.push(int64(&n("first_axes"), &[k], &others));
    inits.push(bool_tensor(&n("never"), &vec![1; rank], &[false]));
    inits.push(one_scalar(&n("input_one"), elem_type));
    inits.push(int64(&n("flat"), &[1], &[-1]));
    let inputs = vec![input.to_string(), n("first_starts"), n("first_ends"), n("first_axes")];
    nodes.push(node("Slice", &n("Slice_first"), inputs, &n("first_values"), vec![]));
    let inputs = vec![n("never"), n("first_values"), n("input_one")];
    nodes.push(node("Where", &n("Where_ones"), inputs, &n("input_ones"), vec![]));
    let inputs = vec![n("input_ones"), n("flat")];
    nodes.push(node("Reshape", &n("Reshape_ones"), inputs, &n("input_ones_flat"), vec![]));
    // Counted in float32 (exact to 2^24 frames) and cast after: tract takes an int64 tensor
    // made from the input for a shape and cannot run a CumSum of it ("TDim is not a number").
    let float = vec![int_attr("to", DataType::Float as i64)];
    nodes.push(node("Cast", &n("Cast_ones"), vec![n("input_ones_flat")], &n("ones"), float));
    let exclusive = vec![int_attr("exclusive", 1)];
    nodes.push(node("CumSum", &n("CumSum"), vec![n("ones"), n("axis0")], &n("frame_float"), exclusive));
    let int = vec![int_attr("to", DataType::Int64 as i64)];
    nodes.push(node("Cast", &n("Cast_frame"), vec![n("frame_float")], &n("frame"), int));
    n("frame")
}
