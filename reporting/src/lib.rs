//! The projector that builds the SQL reporting store from the journal.
//!
//! Filled by the reporting issue.
