//! Memory-mapped relation-vector index (in progress).
