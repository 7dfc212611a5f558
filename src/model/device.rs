//! Choosing where tensors live: `cpu`, or `cuda:N` when built with the `cuda` feature.

use candle_core::Device;

use crate::error::{Error, Result};

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    let bad = |message: String| Error::InvalidArgument {
        flag: "--device".into(),
        message,
    };
    if spec == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match spec.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| bad(format!("{spec:?}; expected cpu, cuda or cuda:N")))?,
        None => return Err(bad(format!("{spec:?}; expected cpu, cuda or cuda:N"))),
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(bad(format!(
            "{spec:?}: this binary was built without the `cuda` feature (cargo build --features cuda)"
        )));
    }
    // One stream of its own for the device, whichever host thread issues the work.
    // `Device::new_cuda` uses CUDA's per-thread default stream, so work issued from a rayon
    // worker (a pair's prompt and word passes, the server's batcher) ran on another stream
    // than the main thread's, unordered against it (issue 24).
    Ok(Device::new_cuda_with_stream(ordinal)?)
}
