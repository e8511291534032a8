//! The connector against the SMSC simulator over real TCP, on SQLite and on
//! the MongoDB stand-in, each test on a fresh store and a fresh simulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod faults;
mod inbound;
mod pacing;
mod sending;

connector_suite!(
    sending::messages_are_submitted_and_their_receipts_recorded,
    sending::long_messages_go_as_udh_segments_or_one_payload,
    sending::a_transmitter_and_receiver_pair_works_like_a_transceiver,
    sending::cancelled_and_expired_messages_are_not_sent,
    faults::throttling_backs_off_and_every_message_goes_later,
    faults::a_link_dropped_mid_window_loses_nothing,
    faults::lost_responses_are_resent_and_counted,
    faults::receipts_that_beat_their_response_are_still_matched,
    faults::permanent_refusals_fail_and_refund,
    faults::messages_wait_while_the_smsc_is_down_and_drain_after,
    faults::a_refused_bind_is_retried_without_sending,
    faults::shutdown_records_what_was_in_flight_then_unbinds,
    faults::a_receipt_records_the_submission_its_dispatcher_did_not_live_to,
    inbound::inbound_messages_reach_the_pipeline_whole,
    inbound::handsets_reply_to_delivered_messages,
    pacing::the_throughput_cap_paces_the_sends,
    pacing::the_window_bounds_the_requests_in_flight,
);
