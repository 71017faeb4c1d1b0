//! Random residual networks: random widths, depths, strides (projection shortcuts), squeeze-excite
//! gates in the branch and opsets, built as ONNX here. For each, the rewrite must keep the graph
//! valid, find exactly the residual joins the generator made, and, run in tract, equal a reference
//! computed part by part: the stem, each block and the head run as separate models, with the
//! shift applied between them on arrays in Rust (the reference semantics, written independently
//! of the emitter).

mod common;

use proptest::prelude::*;
use tsm_rewrite::config::{Config, Direction, Mode, ShiftForm};
use tsm_rewrite::onnx::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension::Value, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use tsm_rewrite::tensor::FloatArray;

#[derive(Debug, Clone)]
struct BlockSpec {
    out: usize,
    stride: i64,
    se: bool,
}

#[derive(Debug, Clone)]
struct Net {
    opset: i64,
    /// The stem's and the blocks' kernel (a strided block's first is 3x3): 1 (the offline stream
    /// form takes only sites between 1x1 convolutions) or 3.
    kernel: usize,
    stem: usize,
    hw: usize,
    stages: Vec<Vec<BlockSpec>>,
    seed: u64,
}

fn net() -> impl Strategy<Value = Net> {
    // 32 and 48 channels: sites the stream form takes, some with a head rounded up to 16 channels.
    let block = (prop::sample::select(vec![4usize, 8, 12, 16, 32, 48]), any::<bool>()).prop_map(|(out, se)| (out, se));
    let stage = (prop::collection::vec(block, 1..4), any::<bool>());
    (
        (prop::sample::select(vec![9i64, 11, 13, 17, 18]), prop::sample::select(vec![1usize, 3])),
        prop::sample::select(vec![4usize, 8, 16, 32]),
        prop::sample::select(vec![4usize, 8]),
        prop::collection::vec(stage, 1..4),
        any::<u64>(),
    )
        .prop_map(|((opset, kernel), stem, hw, stages, seed)| Net {
            opset,
            kernel,
            stem,
            hw,
            // Within a stage, later blocks keep the first block's width (identity shortcuts);
            // a stage may start with stride 2 (a projection) or not.
            stages: stages
                .into_iter()
                .map(|(blocks, down)| {
                    let width = blocks[0].0;
                    blocks
                        .iter()
                        .enumerate()
                        .map(|(i, &(_, se))| BlockSpec { out: width, stride: if i == 0 && down { 2 } else { 1 }, se })
                        .collect()
                })
                .collect(),
            seed,
        })
}

/// Builds nodes and weights; weights are seeded by the part they belong to, so that the whole
/// network and its parts built alone share them.
struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    state: u64,
    prefix: String,
    n: usize,
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

impl Builder {
    fn new(seed: u64, part: usize, prefix: &str) -> Builder {
        let mut b = Builder { nodes: vec![], inits: vec![], state: 0, prefix: String::new(), n: 0 };
        b.start_part(seed, part, prefix);
        b
    }

    /// Names and weights from here on belong to `part`.
    fn start_part(&mut self, seed: u64, part: usize, prefix: &str) {
        self.state = seed ^ (part as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.prefix = prefix.into();
        self.n = 0;
    }

    fn weights(&mut self, name: &str, dims: &[usize], scale: f32) -> String {
        let name = format!("{}/{name}", self.prefix);
        let data: Vec<u8> = (0..dims.iter().product::<usize>())
            .flat_map(|_| {
                // splitmix64
                self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = self.state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                (((z >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale).to_le_bytes()
            })
            .collect();
        self.inits.push(TensorProto {
            name: Some(name.clone()),
            data_type: Some(DataType::Float as i32),
            dims: dims.iter().map(|&d| d as i64).collect(),
            raw_data: Some(data.into()),
            ..Default::default()
        });
        name
    }

    fn op(&mut self, op: &str, inputs: Vec<String>, attrs: Vec<AttributeProto>) -> String {
        self.n += 1;
        let name = format!("{}/{op}_{}", self.prefix, self.n);
        let out = format!("{name}_output");
        self.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(name.clone()),
            input: inputs,
            output: vec![out.clone()],
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    fn conv(&mut self, x: &str, cin: usize, cout: usize, k: usize, stride: i64) -> String {
        let w = self.weights(&format!("w{}", self.n), &[cout, cin, k, k], (2.0 / (cin * k * k) as f32).sqrt());
        let b = self.weights(&format!("b{}", self.n), &[cout], 0.1);
        let p = (k / 2) as i64;
        let attrs = vec![
            ints_attr("kernel_shape", &[k as i64, k as i64]),
            ints_attr("strides", &[stride, stride]),
            ints_attr("pads", &[p, p, p, p]),
        ];
        self.op("Conv", vec![x.into(), w, b], attrs)
    }
}

fn stem(net: &Net, b: &mut Builder, x: &str) -> String {
    let c = b.conv(x, 3, net.stem, net.kernel, 1);
    b.op("Relu", vec![c], vec![])
}

/// One block; the branch reads `xb`, the shortcut `xs` (the same tensor in the whole network).
/// Returns the output and the name of the joining Add.
fn block(b: &mut Builder, xb: &str, xs: &str, cin: usize, spec: &BlockSpec, k: usize) -> (String, String) {
    // A strided 1x1 convolution tract cannot optimize ("Pulling Downsample over Reshape: Invalid
    // axis", the 2D model as much): a strided block starts with a 3x3, as ResNet v1.5 strides its 3x3.
    let c1 = b.conv(xb, cin, spec.out, if spec.stride == 1 { k } else { 3 }, spec.stride);
    let r1 = b.op("Relu", vec![c1], vec![]);
    let mut branch = b.conv(&r1, spec.out, spec.out, k, 1);
    if spec.se {
        let squeeze = (spec.out / 4).max(1);
        let pool = b.op("GlobalAveragePool", vec![branch.clone()], vec![]);
        let s1 = b.conv(&pool, spec.out, squeeze, 1, 1);
        let r = b.op("Relu", vec![s1], vec![]);
        let s2 = b.conv(&r, squeeze, spec.out, 1, 1);
        let gate = b.op("Sigmoid", vec![s2], vec![]);
        branch = b.op("Mul", vec![branch, gate], vec![]);
    }
    let shortcut =
        if spec.stride != 1 || cin != spec.out { b.conv(xs, cin, spec.out, 1, spec.stride) } else { xs.to_string() };
    let sum = b.op("Add", vec![branch, shortcut], vec![]);
    let add = b.nodes.last().unwrap().name().to_owned();
    (b.op("Relu", vec![sum], vec![]), add)
}

fn head(b: &mut Builder, x: &str, c: usize) -> String {
    let pool = b.op("GlobalAveragePool", vec![x.into()], vec![]);
    let flat = b.op("Flatten", vec![pool], vec![int_attr("axis", 1)]);
    let w = b.weights("fc_w", &[5, c], (1.0 / c as f32).sqrt());
    let bias = b.weights("fc_b", &[5], 0.1);
    b.op("Gemm", vec![flat, w, bias], vec![int_attr("transB", 1)])
}

fn info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| tsm_rewrite::onnx::tensor_shape_proto::Dimension {
                            value: Some(match d {
                                Some(v) => Value::DimValue(*v as i64),
                                None => Value::DimParam("N".into()),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn model(opset: i64, b: Builder, inputs: Vec<ValueInfoProto>, output: ValueInfoProto) -> ModelProto {
    ModelProto {
        ir_version: Some(if opset < 10 { 4 } else { 8 }),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        graph: Some(GraphProto {
            name: Some("net".into()),
            node: b.nodes,
            initializer: b.inits,
            input: inputs,
            output: vec![output],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Channels and spatial size at each block's input.
fn block_inputs(net: &Net) -> Vec<(usize, usize)> {
    let (mut c, mut hw) = (net.stem, net.hw);
    let mut v = vec![];
    for spec in net.stages.iter().flatten() {
        v.push((c, hw));
        c = spec.out;
        hw = if spec.stride == 2 { hw.div_ceil(2) } else { hw };
    }
    v.push((c, hw));
    v
}

/// The whole network, and the names of its joining Adds in order.
fn whole(net: &Net) -> (ModelProto, Vec<String>) {
    let mut b = Builder::new(net.seed, 0, "/stem");
    let mut x = stem(net, &mut b, "input");
    let mut adds = vec![];
    let shapes = block_inputs(net);
    for (i, spec) in net.stages.iter().flatten().enumerate() {
        b.start_part(net.seed, i + 1, &format!("/block{i}"));
        let (y, add) = block(&mut b, &x, &x, shapes[i].0, spec, net.kernel);
        x = y;
        adds.push(add);
    }
    b.start_part(net.seed, 1000, "/head");
    let out = head(&mut b, &x, shapes.last().unwrap().0);
    let input = info("input", &[None, Some(3), Some(net.hw), Some(net.hw)]);
    (model(net.opset, b, vec![input], info(&out, &[None, Some(5)])), adds)
}

fn run(m: &ModelProto, inputs: &[FloatArray]) -> FloatArray {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.onnx");
    std::fs::write(&p, prost::Message::encode_to_vec(m)).unwrap();
    tsm_rewrite::validate::run(&p, inputs).unwrap().remove(0)
}

/// The reference: the network part by part, shifting on arrays between the parts.
fn reference(net: &Net, x: &FloatArray, config: &Config) -> FloatArray {
    let n = x.shape[0];
    let mut b = Builder::new(net.seed, 0, "/stem");
    let out = stem(net, &mut b, "input");
    let mut act = run(
        &model(
            net.opset,
            b,
            vec![info("input", &[None, Some(3), Some(net.hw), Some(net.hw)])],
            info(&out, &[None, Some(net.stem), Some(net.hw), Some(net.hw)]),
        ),
        std::slice::from_ref(x),
    );
    let shapes = block_inputs(net);
    for (i, spec) in net.stages.iter().flatten().enumerate() {
        let (c, hw) = shapes[i];
        let mut b = Builder::new(net.seed, i + 1, &format!("/block{i}"));
        let (out, _) = block(&mut b, "xb", "xs", c, spec, net.kernel);
        let (oc, ohw) = shapes[i + 1];
        let m = model(
            net.opset,
            b,
            vec![info("xb", &[None, Some(c), Some(hw), Some(hw)]), info("xs", &[None, Some(c), Some(hw), Some(hw)])],
            info(&out, &[None, Some(oc), Some(ohw), Some(ohw)]),
        );
        let shifted =
            common::reference_shift(&act, config.segments, c / config.fold_div, config.direction, config.group_order);
        let shortcut = if config.mode == Mode::Inplace { shifted.clone() } else { act };
        act = run(&m, &[shifted, shortcut]);
        assert_eq!(act.shape[0], n);
    }
    let mut b = Builder::new(net.seed, 1000, "/head");
    let out = head(&mut b, "x", shapes.last().unwrap().0);
    let (c, hw) = *shapes.last().unwrap();
    run(
        &model(net.opset, b, vec![info("x", &[None, Some(c), Some(hw), Some(hw)])], info(&out, &[None, Some(5)])),
        &[act],
    )
}

/// Rewrites `net` with `config`, runs it in tract and compares with [`reference`]; returns each
/// site's stream head and moved channels (`None` where it does not take the stream form).
fn check(net: &Net, config: &Config) -> Result<Vec<Option<(i64, i64)>>, TestCaseError> {
    let (m, adds) = whole(net);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("net.onnx");
    std::fs::write(&input, prost::Message::encode_to_vec(&m)).unwrap();
    let prepared = tsm_rewrite::rewrite::prepare(&input, config).unwrap();

    // Exactly the joins the generator made, none of the SE gates' Muls or anything else.
    let found: Vec<&str> = prepared.findings.blocks.iter().map(|b| b.name.as_str()).collect();
    prop_assert_eq!(found, adds.iter().map(String::as_str).collect::<Vec<_>>());
    prop_assert_eq!(prepared.plan.sites.len(), adds.len());
    // The output is a valid graph.
    tsm_rewrite::graph::Dataflow::build(prepared.graph()).unwrap();

    let x = FloatArray::random(&[2 * config.segments, 3, net.hw, net.hw], net.seed);
    let out = dir.path().join("tsm.onnx");
    tsm_rewrite::rewrite::finish(&prepared, &out, config).unwrap();
    let got = tsm_rewrite::validate::run(&out, std::slice::from_ref(&x)).unwrap().remove(0);
    let want = reference(net, &x, config);
    let tol = common::tolerance(&want);
    prop_assert!(got.max_abs_diff(&want) <= tol, "max abs diff {} > {tol}", got.max_abs_diff(&want));
    // The output loads in tract as written, the batch left a symbol, and runs at any whole number
    // of clips: the input declares its batch in clips (`batch*T`), so the clip view's Reshape into
    // clips is exact, and the frame masks are as long as the batch itself.
    let symbolic = common::run_as_written(&out, std::slice::from_ref(&x)).map_err(TestCaseError::fail)?.remove(0);
    prop_assert!(
        symbolic.max_abs_diff(&got) <= tol,
        "batch symbolic: max abs diff {} > {tol}",
        symbolic.max_abs_diff(&got)
    );
    Ok(prepared.plan.sites.iter().map(|s| s.stream.as_ref().map(|s| (s.split, s.moved))).collect())
}

fn config(fold_div: usize, inplace: bool, past: bool) -> Config {
    Config {
        segments: 3,
        fold_div,
        mode: if inplace { Mode::Inplace } else { Mode::Residual },
        direction: if past { Direction::Past } else { Direction::Bidirectional },
        validate: false,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_residual_networks(
        net in net(),
        inplace in any::<bool>(),
        past in any::<bool>(),
        fold_div in prop::sample::select(vec![2usize, 4]),
        form in prop::sample::select(vec![ShiftForm::Stream, ShiftForm::Batch, ShiftForm::Clip]),
    ) {
        check(&net, &Config { shift_form: form, ..config(fold_div, inplace, past) })?;
    }
}

/// The stream form, with heads of the moved channels only and heads rounded up to whole blocks of
/// 16 (channels that stay riding along), against the same reference. With `--mode inplace` (since
/// stop 32) the same sites take it: the shortcut reads the shifted halves too (the residual Add
/// adds the shifted head to the branch's head, or after the last site reads them joined; the
/// downsample is folded by them as the consumer is).
#[test]
fn stream_sites_with_rounded_heads() {
    let block = |out, stride| BlockSpec { out, stride, se: false };
    let net = Net {
        opset: 17,
        kernel: 1,
        stem: 32,
        hw: 8,
        stages: vec![vec![block(32, 1), block(32, 1)], vec![block(48, 2), block(48, 1)]],
        seed: 7,
    };
    // (fold_div, past): the 32- and 48-channel sites' (head, moved), where the stream form takes them
    // (a consumer that widens 32 to 48 does not).
    let cases = [
        (4, false, vec![Some((16, 16)), Some((16, 16)), None, Some((32, 24))]),
        (4, true, vec![Some((16, 8)), Some((16, 8)), None, Some((16, 12))]),
        (8, false, vec![Some((16, 8)), Some((16, 8)), None, Some((16, 12))]),
    ];
    for ((fold_div, past, want), inplace) in cases.iter().flat_map(|c| [(c, false), (c, true)]) {
        let got = check(&net, &config(*fold_div, inplace, *past))
            .unwrap_or_else(|e| panic!("fold_div {fold_div} past {past} inplace {inplace}: {e}"));
        assert_eq!(&got, want, "fold_div {fold_div} past {past} inplace {inplace}");
    }
}

/// With the batch left a symbol (tract's default when nothing is pinned), every form loads and runs
/// (`check` runs each output so): the stream form's heads, the batch form, and the clip view, whose
/// Reshape into clips needs the batch declared in clips; at opset 9 every site takes the clip view
/// and the frame masks are made per site.
#[test]
fn every_form_loads_in_tract_with_the_batch_symbolic() {
    let block = |out, stride| BlockSpec { out, stride, se: false };
    let stream_only =
        Net { opset: 17, kernel: 1, stem: 32, hw: 8, stages: vec![vec![block(32, 1), block(32, 1)]], seed: 11 };
    for (fold_div, past) in [(8, false), (4, true)] {
        let got = check(&stream_only, &config(fold_div, false, past))
            .unwrap_or_else(|e| panic!("fold_div {fold_div} past {past}: {e}"));
        assert!(got.iter().all(Option::is_some), "fold_div {fold_div} past {past}: {got:?}");
    }
    let widening = |opset| Net {
        opset,
        kernel: 3,
        stem: 16,
        hw: 8,
        stages: vec![vec![block(16, 1)], vec![block(32, 2), block(32, 1)]],
        seed: 12,
    };
    let batch = Config { shift_form: ShiftForm::Batch, ..config(4, false, false) };
    let got = check(&widening(13), &batch).unwrap_or_else(|e| panic!("batch form: {e}"));
    assert!(got.iter().all(Option::is_none), "{got:?}");
    for opset in [9, 13] {
        let clip = Config { shift_form: ShiftForm::Clip, ..config(4, false, false) };
        let got = check(&widening(opset), &clip).unwrap_or_else(|e| panic!("clip view, opset {opset}: {e}"));
        assert!(got.iter().all(Option::is_none), "{got:?}");
    }
}
