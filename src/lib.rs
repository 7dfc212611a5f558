//! relbert: RelBERT relation embeddings in Rust.
//!
//! A word pair such as (Paris, France) is put into a prompt, run through a BERT or RoBERTa
//! encoder, and pooled into a *relation vector*; pairs with the same relation get close
//! vectors. [`relation::RelationEncoder`] is that function; the other modules build on it.

pub mod corpus;
pub mod defaults;
pub mod embed;
pub mod error;
pub mod eval;
pub mod model;
pub mod output;
pub mod pairs;
pub mod serve;
pub mod store;
pub mod train;

// The flat paths these modules had before they were grouped into folders, kept so that code
// written against them (benchmarks, users' programs) goes on compiling.
pub use eval::{analogy, classify, datasets};
pub use model::{
    batching, config, cpu_kernels, device, encoder, pooling, precision, prompt, relation,
};
pub use store::{indexing, query};
pub use train::{averaging, cpu_train, losses, training};

pub use error::{Error, Result};
pub use precision::Dtype;
pub use relation::{EncoderOptions, RelationEncoder};
