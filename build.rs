//! Generates the ONNX types from `proto/onnx.proto` with a pure-Rust proto compiler, so that a fresh
//! machine needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let fds = protox::compile(["proto/onnx.proto"], ["proto"])?;
    let mut config = prost_build::Config::new();
    // Tensor payloads (raw_data) then share the input buffer instead of being copied.
    config.bytes(["."]);
    config.compile_fds(fds)?;
    Ok(())
}
