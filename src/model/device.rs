//! Choosing where tensors live: `cpu`, or `cuda:N` when built with the `cuda` feature.

use candle_core::Device;

use crate::error::{Error, Result};

/// Where a `--device` spec asks for tensors to live: `None` for `cpu`, else the CUDA
/// ordinal (`cuda` is `cuda:0`). Only the spelling is checked, and whether this binary can
/// use a GPU at all; the device itself is opened by [`parse_device`]. The command line checks
/// a flag with this as it is parsed, and [`parse_device`] with the same words.
pub fn device_ordinal(spec: &str) -> Result<Option<usize>> {
    let bad = |message: String| Error::InvalidArgument {
        flag: "--device".into(),
        message,
    };
    if spec == "cpu" {
        return Ok(None);
    }
    let ordinal = match spec.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| bad(format!("{spec:?}; expected cpu, cuda or cuda:N")))?,
        None => return Err(bad(format!("{spec:?}; expected cpu, cuda or cuda:N"))),
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(bad(format!(
            "{spec:?}: this binary was built without the `cuda` feature (cargo build --features cuda)"
        )));
    }
    Ok(Some(ordinal))
}

/// Parses `cpu`, `cuda` or `cuda:N` ([`device_ordinal`]) and opens the device.
pub fn parse_device(spec: &str) -> Result<Device> {
    let Some(ordinal) = device_ordinal(spec)? else {
        return Ok(Device::Cpu);
    };
    // One stream of its own for the device, whichever host thread issues the work.
    // `Device::new_cuda` uses CUDA's per-thread default stream, so work issued from a rayon
    // worker (a pair's prompt and word passes, the server's batcher) ran on another stream
    // than the main thread's, unordered against it (issue 24).
    Ok(Device::new_cuda_with_stream(ordinal)?)
}
