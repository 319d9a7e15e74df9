//! Compiles the .proto with protox (pure Rust), so no `protoc` is needed on the build host.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/cortex.proto");
    let fds = protox::compile(["proto/cortex.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
