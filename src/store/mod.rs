//! Where relation vectors are kept and searched: building a local index from pairs
//! ([`indexing`]) and answering "A is to B as ? is to ?" from it ([`query`]).

pub mod indexing;
pub mod query;
