//! The submission server: the REST API resellers and enterprises use.
//!
//! Filled by the submission issue.
