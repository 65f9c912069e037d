//! Compiles `dockyard/v1/*.proto` with protox (pure Rust) so building needs no `protoc`.
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "dockyard/v1/common.proto",
        "dockyard/v1/job.proto",
        "dockyard/v1/agent.proto",
        "dockyard/v1/admin.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Reflection serves this set, so `grpcurl describe` works without proto files.
    fs::write(out.join("dockyard_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // The agent RPC is named `Connect`, which would clash with the generated `connect`
        // constructor; clients are built from a `Channel` instead.
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
