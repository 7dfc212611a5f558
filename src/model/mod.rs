//! The relation encoder and everything it is made of: the model's `config.json`, the
//! BERT/RoBERTa transformer (candle tensors, plus the packed CPU inference path), prompts,
//! tokenising into padded batches, pooling, and the device it runs on.
//! [`relation::RelationEncoder`] is the pair → vector function the rest of the crate uses.

pub mod batching;
pub mod config;
pub mod cpu_kernels;
pub mod device;
pub mod encoder;
pub mod hub;
pub mod pooling;
pub mod precision;
pub mod prompt;
pub mod relation;
