//! Pipeline tests: every test runs on SQLite and on the MongoDB stand-in,
//! each on a fresh store (see `helpers::pipeline_suite!`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod billing;
mod callbacks;
mod mt;
mod replies;
mod runtime;
mod scheduler;

pipeline_suite!(
    mt::opted_out_numbers_are_rejected_and_never_charged,
    mt::routes_follow_the_table_and_reload_without_restart,
    mt::failover_skips_down_connectors_and_follows_reroutes,
    mt::cancelled_and_expired_messages_are_not_sent,
    billing::messages_and_resellers_are_charged_once_even_when_retried,
    billing::insufficient_funds_reject_without_charging_anyone,
    billing::balance_always_equals_top_ups_minus_charges_plus_refunds,
    callbacks::status_callbacks_are_signed_and_retried_until_accepted,
    callbacks::callbacks_are_given_up_with_an_event,
    callbacks::a_receipt_journaled_late_but_stamped_early_still_reports_delivered,
    replies::replies_are_matched_listed_and_forwarded,
    runtime::failing_messages_are_dead_lettered_and_refunded,
    runtime::shutdown_drains_in_flight_work_and_releases_the_rest,
    runtime::leases_are_extended_while_a_batch_is_in_flight,
    runtime::a_batch_busy_on_the_store_finishes_while_its_leases_are_extended,
    scheduler::two_schedulers_release_each_message_exactly_once,
    scheduler::validity_expiry_refunds_unsent_messages_only,
);
