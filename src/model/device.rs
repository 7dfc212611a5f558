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

/// Prompts per forward pass when `--batch-size` is not given, on the CPU.
pub const DEFAULT_CPU_BATCH: usize = 64;

/// Prompts per forward pass when `--batch-size` is not given, on a GPU. A GPU forward pass
/// of a small batch is bound by the host (tokenising, launching kernels), not by the GPU:
/// measured on an H200 (`benchmarks/gpu/`, MiniLM shape, bf16), 9,500 pairs/s at batch 32,
/// 26,000 at 128 and 32,900 at 512; the CPU's best batch is far smaller.
pub const DEFAULT_GPU_BATCH: usize = 512;

/// The batch size for `device` when none is given: [`DEFAULT_CPU_BATCH`] or
/// [`DEFAULT_GPU_BATCH`].
pub fn default_batch_size(device: &Device) -> usize {
    if device.is_cpu() {
        DEFAULT_CPU_BATCH
    } else {
        DEFAULT_GPU_BATCH
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU keeps the batch its kernels were tuned at; only a GPU gets the larger default.
    #[test]
    fn the_default_batch_depends_on_the_device() {
        assert_eq!(default_batch_size(&Device::Cpu), 64);
    }
}
