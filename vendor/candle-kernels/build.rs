//! PTX for the kernels relbert's encoder launches; the rest of candle's kernels are
//! not compiled (scripts/vendor-candle-kernels.py says why and how this crate is made).
use cudaforge::{KernelBuilder, Result};
use std::io::Write;
use std::path::PathBuf;

fn main() -> Result<()> {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let ptx_path = out_dir.join("ptx.rs");
    let bindings = KernelBuilder::new()
        .source_files(vec!["src/affine.cu", "src/binary.cu", "src/cast.cu", "src/fill.cu", "src/indexing.cu", "src/reduce.cu", "src/ternary.cu", "src/unary.cu"])
        .arg("--expt-relaxed-constexpr")
        .arg("-std=c++17")
        .arg("-O3")
        .build_ptx()?;
    bindings.write(&ptx_path)?;
    // Modules candle-core names but relbert never launches: empty PTX (loaded lazily, never).
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&ptx_path)
        .expect("ptx.rs");
    for line in [
        "pub const CONV: &str = \"\";",
        "pub const QUANTIZED: &str = \"\";",
        "pub const SORT: &str = \"\";",
    ] {
        writeln!(f, "{line}").expect("ptx.rs");
    }
    Ok(())
}
