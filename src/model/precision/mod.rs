//! Reduced precision: which number format the encoder's matrix products use (`--dtype`), and
//! the CPU kernel that makes bfloat16 pay.
//!
//! A [`Dtype`] is a *numerical definition*, not a choice of kernel: at `bf16` the operands of
//! every dense layer (the weights and the activations entering it) are rounded to bfloat16
//! (round-to-nearest-even) and the products are accumulated in float32; embeddings,
//! LayerNorm, softmax, GELU, the attention products and pooling stay float32. The same
//! definition is computed by
//!
//! - [`bf16_gemm`]: an AVX512-BF16 (`vdpbf16ps`) GEMM, picked at run time on CPUs that have it
//!   (Zen 4, Sapphire Rapids and later), which does two multiply-adds per lane per
//!   instruction where float32 FMA does one;
//! - everywhere else, the float32 GEMM on operands rounded to the reduced format first (same
//!   numbers up to summation order, float32 speed), so an index built at `bf16` on one machine
//!   is reproduced on any other.
//!
//! On the GPU (candle tensors, [`crate::encoder`]) `f16`/`bf16` mean weights and activations
//! in that format with LayerNorm, softmax and pooling in float32.
//!
//! Why a hand-written kernel: the `gemm` crate that candle uses has no bfloat16 dot-product
//! path (its `f16` support widens to float32 and runs the float32 kernel), and no maintained
//! Rust crate exposes `vdpbf16ps` GEMMs. The kernel is one register-tiled loop (12 rows × 32
//! columns, 24 accumulators) over weights packed once at load; it is checked against the
//! float32 GEMM on rounded operands in its tests.
//!
//! `f16` has no fast CPU path on x86 (no AVX512-FP16 on Zen 4), so on the CPU it is the
//! rounded-operand definition at float32 speed: useful to reproduce a GPU `f16` index, not to
//! go faster. int8 was not implemented (see `benchmarks/precision.md`).

pub mod bf16_gemm;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The number format of the encoder's matrix products (`--dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// IEEE float32 throughout. The default, and the reference.
    #[default]
    F32,
    /// IEEE float16 operands, float32 accumulation.
    F16,
    /// bfloat16 operands (8-bit exponent, 8-bit significand), float32 accumulation.
    Bf16,
}

impl Dtype {
    /// The format relbert picks when a CPU encoding job that is a cache (the default index)
    /// gets no `--dtype`: `bf16` where this CPU runs the bfloat16 kernel (1.5–1.6× float32
    /// there, at cosine ≥ 0.9999 per pair and analogy accuracy within half a point:
    /// `benchmarks/precision.md`), float32 elsewhere, where `bf16` would be no faster.
    pub fn fast_cpu_default() -> Dtype {
        if bf16_gemm::available() {
            Dtype::Bf16
        } else {
            Dtype::F32
        }
    }

    /// Every dtype, for help texts and tests.
    pub const ALL: [Dtype; 3] = [Dtype::F32, Dtype::F16, Dtype::Bf16];

    /// The name on the command line and in an index's encoder identity.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
        }
    }

    /// Whether this is the float32 reference (serde skips the field then, so identities
    /// written before `--dtype` existed read back unchanged).
    pub fn is_f32(&self) -> bool {
        *self == Dtype::F32
    }

    /// The candle tensor type of this format.
    pub fn candle(self) -> candle_core::DType {
        match self {
            Dtype::F32 => candle_core::DType::F32,
            Dtype::F16 => candle_core::DType::F16,
            Dtype::Bf16 => candle_core::DType::BF16,
        }
    }

    /// `x` rounded to this format (round-to-nearest-even) and widened back to float32.
    #[inline(always)]
    pub fn round(self, x: f32) -> f32 {
        match self {
            Dtype::F32 => x,
            Dtype::F16 => half::f16::from_f32(x).to_f32(),
            Dtype::Bf16 => half::bf16::from_f32(x).to_f32(),
        }
    }

    /// Rounds every element of `xs` in place (see [`Dtype::round`]).
    pub fn round_slice(self, xs: &mut [f32]) {
        if self != Dtype::F32 {
            xs.iter_mut().for_each(|x| *x = self.round(*x));
        }
    }

    /// Which CPU kernel computes this format's dense layers on this machine (for logs and
    /// benchmark records).
    pub fn cpu_kernel(self) -> &'static str {
        match self {
            Dtype::F32 => "f32 gemm",
            Dtype::Bf16 if bf16_gemm::available() => "avx512-bf16 (vdpbf16ps)",
            Dtype::Bf16 | Dtype::F16 => "f32 gemm on rounded operands (no faster kernel here)",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Dtype::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| Error::InvalidArgument {
                flag: "--dtype".into(),
                message: format!("{s:?}; expected f32, f16 or bf16"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_name_the_flag() {
        for d in Dtype::ALL {
            assert_eq!(d.name().parse::<Dtype>().unwrap(), d);
        }
        let err = "fp16".parse::<Dtype>().unwrap_err().to_string();
        assert!(err.contains("--dtype") && err.contains("fp16"), "{err}");
    }

    #[test]
    fn rounding_keeps_the_formats_significand() {
        // 1 + 2^-10 is exact in f16 but not in bf16 (7 stored significand bits).
        let x = 1.0 + 2f32.powi(-10);
        assert_eq!(Dtype::F32.round(x), x);
        assert_eq!(Dtype::F16.round(x), x);
        assert_eq!(Dtype::Bf16.round(x), 1.0);
        // bf16 keeps float32's range, f16 does not.
        assert_eq!(Dtype::Bf16.round(1e30).log10().round(), 30.0);
        assert!(Dtype::F16.round(1e30).is_infinite());
    }
}
