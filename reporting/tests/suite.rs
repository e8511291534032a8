//! The reporting suite over every journal × reporting store combination.
//! PostgreSQL and MongoDB come from `TERN_TEST_POSTGRES_URL` and
//! `TERN_TEST_MONGODB_URI` (`scripts/test.sh`); without them those tests fail.

mod sqlite_journal_sqlite_reports {
    use tern_reporting::test_suite::{sqlite_journal, sqlite_reports};
    tern_reporting::reporting_test_suite!(sqlite_journal, sqlite_reports);
}

mod sqlite_journal_postgres_reports {
    use tern_reporting::test_suite::{postgres_reports, sqlite_journal};
    tern_reporting::reporting_test_suite!(sqlite_journal, postgres_reports);
}

mod mongo_journal_sqlite_reports {
    use tern_reporting::test_suite::{mongo_journal, sqlite_reports};
    tern_reporting::reporting_test_suite!(mongo_journal, sqlite_reports);
}

mod mongo_journal_postgres_reports {
    use tern_reporting::test_suite::{mongo_journal, postgres_reports};
    tern_reporting::reporting_test_suite!(mongo_journal, postgres_reports);
}
