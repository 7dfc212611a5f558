//! Where relation vectors are kept and searched: building a local index from pairs
//! ([`indexing`]), the storage trait the query layer holds and its local backend
//! ([`backend`]), the Qdrant backend (`qdrant`, with the `qdrant` feature), exports to the files other tools read
//! ([`files`]), and answering "A is to B as ? is to ?" ([`query`]).

pub mod backend;
pub mod files;
pub mod indexing;
#[cfg(feature = "qdrant")]
pub mod qdrant;
pub mod query;
