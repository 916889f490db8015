//! Generate the prost types of proto/millstream/v1 (the only source of the wire format).
//! protox compiles the .proto files in Rust, so building needs no protoc binary.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["millstream/v1/event.proto", "millstream/v1/router.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
