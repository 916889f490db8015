//! Generate the prost types of proto/millstream/v1 (the only source of the wire format).
//! protox compiles the .proto files in Rust, so building needs no protoc binary.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not baked in when it is compiled: a build script compiled
    // for one checkout is reused by cargo for another that shares its target directory.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = ["millstream/v1/event.proto", "millstream/v1/router.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    prost_build::Config::new()
        // a request's payloads become slices of its buffer instead of one copy per event
        .bytes([".millstream.v1.SourceEvent.data"])
        // an event has five or so attributes: a B-tree beats hashing them
        .btree_map([".millstream.v1.CloudEvent.attributes"])
        .compile_fds(fds)?;
    Ok(())
}
