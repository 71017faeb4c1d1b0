//! Exports from other frameworks (`fixtures/export_keras.py`): Keras applications through tf2onnx,
//! NHWC input, with TSM references computed in Keras (the model rebuilt with a shift layer around
//! the first layer of each residual branch). Every residual branch the reference shifts must be
//! shifted by the tool, and the rewrite, run in tract, must equal the Keras TSM.

mod common;

use common::*;
use tsm_rewrite::config::{Config, Direction};
use tsm_rewrite::rewrite::{self, Validated};

fn check(name: &str) {
    let branches = std::fs::read_to_string(data(name).join("branches.txt")).unwrap();
    let branches = branches.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
    let x = input(name);
    assert_eq!(x.shape, [16, 32, 32, 3], "NHWC");
    let plain_ref = output(name, "plain");
    let plain = tsm_rewrite::validate::run(&model(name), std::slice::from_ref(&x)).unwrap().remove(0);
    assert!(plain.max_abs_diff(&plain_ref) <= tolerance(&plain_ref), "{name}: tf2onnx's export differs from Keras");
    for (direction, folder) in
        [(Direction::Bidirectional, "residual-bidirectional-fd8"), (Direction::Past, "residual-past-fd8")]
    {
        let config = Config { direction, ..Config::default() };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tsm.onnx");
        let prepared = rewrite::prepare(&model(name), &config).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(prepared.plan.sites.len(), branches, "{name}: skipped {:#?}", prepared.findings.skipped);
        let report = rewrite::finish(&prepared, &out, &config).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let Some(Validated::Offline(r)) = report else { panic!("{name}: not validated") };
        assert!(r.unoptimized.is_none() && r.float32.is_none(), "{name}: tract optimized it as it is");
        let want = output(name, folder);
        let got = tsm_rewrite::validate::run(&out, std::slice::from_ref(&x)).unwrap().remove(0);
        let diff = got.max_abs_diff(&want);
        assert!(diff <= tolerance(&want), "{name} {folder}: max abs diff {diff}");
        assert!(
            want.max_abs_diff(&plain_ref) > 10.0 * tolerance(&want),
            "{name} {folder}: reference too close to plain"
        );
    }
}

#[test]
fn keras_resnet_v1() {
    // keras.applications' ResNet v1: ZeroPadding2D as Pad with its pads as an input, the stride on
    // the first 1x1 conv of each stage.
    check("keras_resnet_v1");
}

#[test]
fn keras_mobilenet_v2() {
    check("keras_mobilenet_v2");
}
