//! The reporting suite: one set of tests run over every combination of
//! journal backend (SQLite, MongoDB) and reporting store (SQLite,
//! PostgreSQL), and the helpers the other crates' tests use (fresh
//! databases, snapshots, the expected store computed straight from
//! [`MessageStatus::fold`]).
//!
//! ```ignore
//! tern_reporting::reporting_test_suite!(sqlite_journal, postgres_reports);
//! ```
//!
//! Databases that need a server come from `TERN_TEST_POSTGRES_URL` and
//! `TERN_TEST_MONGODB_URI` (set by `scripts/test.sh`); a test without them
//! fails, it never passes silently.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod expected;
mod suite;
mod support;

pub use expected::*;
pub use suite::*;
pub use support::*;

/// Generates one `#[tokio::test]` per suite test for a journal factory and
/// a reports factory (paths to `async fn() -> (Store, Guard)` and
/// `async fn() -> (ReportStore, Guard)`, guards dropping the databases).
#[macro_export]
macro_rules! reporting_test_suite {
    ($journal:path, $reports:path) => {
        $crate::reporting_test_suite!(@tests $journal, $reports;
            projects_every_lifecycle_path_exactly,
            applying_a_batch_twice_changes_nothing,
            a_restarted_projector_ends_as_if_it_never_stopped,
            a_rebuild_equals_the_incremental_store,
            lag_is_reported_until_caught_up,
            the_summary_groups_an_accounts_figures,
            the_example_queries_of_the_reporting_guide_run,
        );
    };
    (@tests $journal:path, $reports:path; $($test:ident),* $(,)?) => {
        mod reporting_test_suite {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let (journal, _journal_guard) = $journal().await;
                    $crate::test_suite::$test(journal, || $reports()).await;
                }
            )*
        }
    };
}
