//! Scoring models offline: the dataset readers, multiple-choice analogy questions
//! (SAT/BATS/Google) and lexical relation classification.

pub mod analogy;
pub mod classify;
pub mod datasets;
