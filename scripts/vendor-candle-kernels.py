#!/usr/bin/env python3
"""Regenerates vendor/candle-kernels: candle's CUDA kernel crate cut down to the kernels relbert's
encoder runs, so that a `--features cuda` build compiles in minutes instead of half an hour.

candle-kernels compiles every .cu file it ships: the quantised-matmul (GGUF mmq/mmvq) and
mixture-of-experts kernels, which relbert never calls, are most of the nvcc time (issue 24: 32
minutes on 2 cores). The cut-down crate keeps the crate's name, version and API (candle-core
refers to every module and FFI symbol), but
- builds PTX only for the element-wise, cast, indexing, fill, ternary and reduction kernels (the
  transformer's matmuls go to cuBLAS);
- exposes the dropped modules (conv, quantized, sort) as empty PTX: candle loads a module only
  when one of its kernels is first launched, which relbert never does;
- replaces the statically linked MoE/GGUF launchers with `extern "C"` Rust functions (candle
  takes them as C function pointers) that panic, aborting with a clear
  message (they are unreachable from relbert).

  python3 scripts/vendor-candle-kernels.py [PATH-TO-candle-kernels-0.11.1]

Default source: the crate in ~/.cargo/registry (run `cargo fetch` first). Candle is MIT OR
Apache-2.0; the upstream licence note is kept in the vendored README.
"""
import glob, os, re, shutil, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSION = "0.11.1"
KEEP = ["affine", "binary", "cast", "fill", "indexing", "reduce", "ternary", "unary"]
EMPTY = ["conv", "quantized", "sort"]
HEADERS = ["binary_op_macros.cuh", "compatibility.cuh", "cuda_utils.cuh"]


def find_source():
    if len(sys.argv) > 1:
        return sys.argv[1]
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    hits = glob.glob(os.path.join(home, "registry", "src", "*", f"candle-kernels-{VERSION}"))
    if not hits:
        sys.exit(f"candle-kernels {VERSION} not in {home}/registry: run `cargo fetch` first")
    return hits[0]


def stub_ffi(text):
    """extern "C" declarations -> Rust functions that panic (same names and signatures)."""
    body = text.split('extern "C" {', 1)[1].rsplit("}", 1)[0]
    out = ["//! Stubs of the MoE / GGUF launchers relbert never calls (see build.rs).",
           "#![allow(unused_variables, non_snake_case, clippy::too_many_arguments, clippy::missing_safety_doc)]",
           "use core::ffi::c_void;", ""]
    for decl in re.finditer(r"((?:\s*#\[[^\]]*\]\s*)*)pub fn (\w+)\((.*?)\)(\s*->\s*[\w:]+)?;", body, re.S):
        attrs, name, args, ret = decl.group(1).strip(), decl.group(2), decl.group(3), decl.group(4) or ""
        args = re.sub(r"//[^\n]*", "", args)
        if attrs:
            out.append(attrs)
        out.append(f"pub unsafe extern \"C\" fn {name}({args}){ret} {{")
        out.append(f'    panic!("candle kernel {name} is not built into relbert (vendor/candle-kernels)")')
        out.append("}\n")
    return "\n".join(out)


def main():
    src = find_source()
    dst = os.path.join(ROOT, "vendor", "candle-kernels")
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(os.path.join(dst, "src"))
    for f in [k + ".cu" for k in KEEP] + HEADERS:
        shutil.copy(os.path.join(src, "src", f), os.path.join(dst, "src", f))
    shutil.copy(os.path.join(src, "src", "lib.rs"), os.path.join(dst, "src", "lib.rs"))
    with open(os.path.join(src, "src", "ffi.rs")) as f:
        ffi = stub_ffi(f.read())
    with open(os.path.join(dst, "src", "ffi.rs"), "w") as f:
        f.write(ffi)
    with open(os.path.join(dst, "Cargo.toml"), "w") as f:
        f.write(f"""[package]
# candle-kernels {VERSION}, cut down for relbert by scripts/vendor-candle-kernels.py.
name = "candle-kernels"
version = "{VERSION}"
edition = "2021"
license = "MIT OR Apache-2.0"
description = "CUDA kernels for Candle (the subset relbert runs)"
build = "build.rs"
publish = false

[features]
cutile = []

[lib]
name = "candle_kernels"
path = "src/lib.rs"

[build-dependencies]
cudaforge = "0.1.2"

# Its own workspace root: outside relbert's workspace (which needs no nvcc), buildable alone.
[workspace]
""")
    keep = ", ".join(f'"src/{k}.cu"' for k in KEEP)
    empty = "\n".join(f'        "pub const {e.upper()}: &str = \\"\\";",' for e in EMPTY)
    with open(os.path.join(dst, "build.rs"), "w") as f:
        f.write(f"""//! PTX for the kernels relbert's encoder launches; the rest of candle's kernels are
//! not compiled (scripts/vendor-candle-kernels.py says why and how this crate is made).
use cudaforge::{{KernelBuilder, Result}};
use std::io::Write;
use std::path::PathBuf;

fn main() -> Result<()> {{
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let ptx_path = out_dir.join("ptx.rs");
    let bindings = KernelBuilder::new()
        .source_files(vec![{keep}])
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
{empty}
    ] {{
        writeln!(f, "{{line}}").expect("ptx.rs");
    }}
    Ok(())
}}
""")
    with open(os.path.join(dst, "README.md"), "w") as f:
        f.write(f"""# candle-kernels {VERSION} (relbert subset)

Generated by `scripts/vendor-candle-kernels.py` from the crates.io release of
[candle](https://github.com/huggingface/candle)'s `candle-kernels` (MIT OR Apache-2.0, © the
candle authors). Kept: {", ".join(KEEP)}. Empty PTX: {", ".join(EMPTY)}. MoE/GGUF launchers:
panicking stubs. Used through `[patch.crates-io]` in the workspace Cargo.toml; only builds with
`--features cuda` compile it.
""")
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
