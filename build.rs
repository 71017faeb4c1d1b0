//! Generates the ONNX types from `proto/onnx.proto` with a pure-Rust proto compiler, so that a fresh
//! machine needs no `protoc`; and a table of the field numbers each message knows, with which
//! fields hold messages, so that `load` can tell a model holding fields this schema lacks (which
//! prost would drop silently).

use std::fmt::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let fds = protox::compile(["proto/onnx.proto"], ["proto"])?;

    let mut messages = Vec::new();
    for file in &fds.file {
        let mut stack: Vec<(String, &prost_types::DescriptorProto)> =
            file.message_type.iter().map(|m| (format!(".{}.{}", file.package(), m.name()), m)).collect();
        while let Some((name, m)) = stack.pop() {
            stack.extend(m.nested_type.iter().map(|n| (format!("{name}.{}", n.name()), n)));
            messages.push((name, m));
        }
    }
    messages.sort_by(|a, b| a.0.cmp(&b.0));
    let index = |name: &str| messages.iter().position(|(n, _)| n == name);
    let mut table =
        String::from("/// A field: its number, and the index of its message type in `MESSAGES` if it holds one.\n");
    table += "pub type Field = (u32, Option<usize>);\n";
    table += "/// (message name, its fields), sorted by name.\n";
    table += "pub static MESSAGES: &[(&str, &[Field])] = &[\n";
    for (name, m) in &messages {
        let mut fields: Vec<(i32, Option<usize>)> = m
            .field
            .iter()
            .map(|f| {
                (
                    f.number(),
                    (f.r#type() == prost_types::field_descriptor_proto::Type::Message)
                        .then(|| index(f.type_name()))
                        .flatten(),
                )
            })
            .collect();
        fields.sort();
        let list: Vec<String> = fields.iter().map(|(n, t)| format!("({n}, {t:?})")).collect();
        writeln!(table, "    ({:?}, &[{}]),", name.trim_start_matches(".onnx."), list.join(", "))?;
    }
    table += "];\n";
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("known_fields.rs"), table)?;

    let mut config = prost_build::Config::new();
    // Tensor payloads (raw_data) then share the input buffer instead of being copied.
    config.bytes(["."]);
    config.compile_fds(fds)?;
    Ok(())
}
