//! Making models: RelBERT's contrastive fine-tuning (candle autograd or the hand-written CPU
//! path), its losses, and averaging checkpoints into one model.

pub mod averaging;
pub mod cpu_train;
pub mod losses;
pub mod training;
