//! `submit_sm` and `data_sm`: the faults drawn for each, the message id,
//! the ledger entry, and the receipt and MO that follow.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use rand::Rng;
use rand::rngs::SmallRng;
use rusmpp::pdus::{DataSm, DeliverSm, SubmitSm};
use rusmpp::tlvs::{Tlv, TlvValue};
use rusmpp::types::COctetString;
use rusmpp::{CommandId, CommandStatus};
use tern_core::DeliveryState;
use tokio::time::Instant;
use tracing::info;

use super::config::{Outcomes, SimConfig};
use super::connection::{End, Session};
use super::ledger::{Record, c_string};
use super::outbox::{Delivery, Kind, Timed};
use super::pdus::{self, Address, BindKind, ReceiptFacts};
use super::stats::Stats;
use super::udh::{Concat, decode_text, split_udh};

/// The fields of a `submit_sm` or `data_sm` the simulator uses.
#[derive(Debug)]
pub(super) struct Submission<'a> {
    source: &'a COctetString<1, 21>,
    source_ton: u8,
    source_npi: u8,
    destination: &'a COctetString<1, 21>,
    destination_ton: u8,
    destination_npi: u8,
    esm_class: u8,
    data_coding: u8,
    registered_delivery: u8,
    short_message: Bytes,
    payload: Option<Bytes>,
    /// From the `sar_*` TLVs, when all three are there.
    sar: Option<Concat>,
}

impl<'a> From<&'a SubmitSm> for Submission<'a> {
    fn from(pdu: &'a SubmitSm) -> Self {
        let (payload, sar) = scan_tlvs(pdu.tlvs());
        Self {
            source: &pdu.source_addr,
            source_ton: pdu.source_addr_ton.into(),
            source_npi: pdu.source_addr_npi.into(),
            destination: &pdu.destination_addr,
            destination_ton: pdu.dest_addr_ton.into(),
            destination_npi: pdu.dest_addr_npi.into(),
            esm_class: pdu.esm_class.into(),
            data_coding: pdu.data_coding.into(),
            registered_delivery: pdu.registered_delivery.into(),
            short_message: pdu.short_message().clone().into_bytes(),
            payload,
            sar,
        }
    }
}

impl<'a> From<&'a DataSm> for Submission<'a> {
    fn from(pdu: &'a DataSm) -> Self {
        let (payload, sar) = scan_tlvs(pdu.tlvs());
        Self {
            source: &pdu.source_addr,
            source_ton: pdu.source_addr_ton.into(),
            source_npi: pdu.source_addr_npi.into(),
            destination: &pdu.destination_addr,
            destination_ton: pdu.dest_addr_ton.into(),
            destination_npi: pdu.dest_addr_npi.into(),
            esm_class: pdu.esm_class.into(),
            data_coding: pdu.data_coding.into(),
            registered_delivery: pdu.registered_delivery.into(),
            short_message: Bytes::new(),
            payload,
            sar,
        }
    }
}

fn scan_tlvs(tlvs: &[Tlv]) -> (Option<Bytes>, Option<Concat>) {
    let (mut payload, mut reference, mut total, mut seq) = (None, None, None, None);
    for tlv in tlvs {
        match tlv.value() {
            Some(TlvValue::MessagePayload(value)) => payload = Some(value.value.clone().into_bytes()),
            Some(TlvValue::SarMsgRefNum(value)) => reference = Some(*value),
            Some(TlvValue::SarTotalSegments(value)) => total = Some(*value),
            Some(TlvValue::SarSegmentSeqnum(value)) => seq = Some(*value),
            _ => {}
        }
    }
    let sar = match (reference, total, seq) {
        (Some(reference), Some(total), Some(seq)) => Some((reference, total, seq)),
        _ => None,
    };
    (payload, sar)
}

impl Submission<'_> {
    fn user_data(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or(&self.short_message)
    }

    fn handset(&self) -> Address {
        Address { addr: self.destination.clone(), ton: self.destination_ton, npi: self.destination_npi }
    }

    fn sender(&self) -> Address {
        Address { addr: self.source.clone(), ton: self.source_ton, npi: self.source_npi }
    }
}

/// A draw that is true with probability `share`; any share, even NaN or
/// out of range, is taken without panicking.
fn chance(rng: &mut SmallRng, share: f64) -> bool {
    share > 0.0 && rng.random::<f64>() < share
}

fn outcome(rng: &mut SmallRng, outcomes: &Outcomes) -> DeliveryState {
    let weight = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
    let (delivered, undeliverable, expired) =
        (weight(outcomes.delivered), weight(outcomes.undeliverable), weight(outcomes.expired));
    let total = delivered + undeliverable + expired;
    if total <= 0.0 {
        return DeliveryState::Delivered;
    }
    let draw = rng.random::<f64>() * total;
    if draw < delivered {
        DeliveryState::Delivered
    } else if draw < delivered + undeliverable || expired == 0.0 {
        DeliveryState::Undeliverable
    } else {
        DeliveryState::Expired
    }
}

fn receipt_delay(rng: &mut SmallRng, config: &SimConfig) -> Duration {
    let (min, max) = config.receipt_delay_ms;
    let ms = if max > min { rng.random_range(min..=max) } else { min };
    Duration::from_millis(ms)
}

impl Session {
    pub(super) async fn on_submit(&mut self, submission: Submission<'_>, sequence: u32, response_id: CommandId) {
        let stats = &self.hub.stats;
        Stats::bump(if response_id == CommandId::DataSmResp { &stats.data_sm } else { &stats.submit_sm });
        let Some(bound) = self.bound.clone().filter(|bound| bound.kind.transmits()) else {
            self.send(pdus::error_resp(response_id, CommandStatus::EsmeRinvbndsts, sequence)).await;
            return;
        };
        self.submits += 1;
        let config = Arc::clone(&self.config);
        if config.disconnect_every.is_some_and(|every| every > 0 && self.submits.is_multiple_of(every)) {
            info!(peer = %self.peer, submits = self.submits, "dropping the link before answering");
            Stats::bump(&self.hub.stats.disconnects);
            self.end.get_or_insert(End::Dropped);
            return;
        }
        if chance(&mut self.rng, config.throttle_share) {
            Stats::bump(&self.hub.stats.throttled);
            self.send(pdus::error_resp(response_id, CommandStatus::EsmeRthrottled, sequence)).await;
            return;
        }
        if chance(&mut self.rng, config.reject_share) {
            Stats::bump(&self.hub.stats.rejected);
            self.send(pdus::error_resp(response_id, CommandStatus::EsmeRinvdstadr, sequence)).await;
            return;
        }
        let slow = chance(&mut self.rng, config.slow_share);
        let dropped = chance(&mut self.rng, config.drop_response_share);

        let message_id = pdus::message_id(self.hub.next_message_number(), config.message_ids);
        let (udh_concat, text) = split_udh(submission.esm_class, submission.user_data());
        let concat = udh_concat.or(submission.sar);
        self.record(&submission, &bound.system_id, &message_id, concat, &config);

        let delay = if config.receipt_before_response { Duration::ZERO } else { receipt_delay(&mut self.rng, &config) };
        let deliveries = self.deliveries(&submission, &message_id, text, concat, delay, &config);
        let response = if response_id == CommandId::DataSmResp {
            pdus::data_sm_resp(message_id, sequence)
        } else {
            pdus::submit_sm_resp(message_id, sequence)
        };

        if !deliveries.is_empty() {
            let due = Instant::now() + delay;
            if bound.kind == BindKind::Transceiver {
                if config.receipt_before_response {
                    for delivery in deliveries.into_iter().rev() {
                        self.outbox.push_front(delivery);
                    }
                    self.pump().await;
                } else {
                    for delivery in deliveries {
                        self.outbox.schedule(due, Timed::Deliver(delivery));
                    }
                }
            } else {
                self.hub.route(&bound.system_id, deliveries.into_iter().map(|d| (due, d)).collect());
            }
        }

        if dropped {
            Stats::bump(&self.hub.stats.dropped_responses);
        } else if slow {
            Stats::bump(&self.hub.stats.slow_responses);
            let due = Instant::now() + Duration::from_millis(config.slow_ms);
            self.outbox.schedule(due, Timed::Respond(response));
        } else {
            self.send(response).await;
        }
    }

    fn record(
        &self,
        submission: &Submission<'_>,
        system_id: &Arc<str>,
        message_id: &COctetString<1, 65>,
        concat: Option<Concat>,
        config: &SimConfig,
    ) {
        let record = Record {
            system_id: Arc::clone(system_id),
            message_id: message_id.clone().into_bytes(),
            source_addr: submission.source.clone().into_bytes(),
            source_addr_ton: submission.source_ton,
            source_addr_npi: submission.source_npi,
            destination_addr: submission.destination.clone().into_bytes(),
            esm_class: submission.esm_class,
            data_coding: submission.data_coding,
            registered_delivery: submission.registered_delivery,
            short_message: submission.short_message.clone(),
            message_payload: submission.payload.clone(),
            concat,
        };
        let digest = record.digest();
        let duplicate = self.hub.accept(record, digest, config.max_recorded);
        Stats::bump(&self.hub.stats.segments_accepted);
        if duplicate {
            Stats::bump(&self.hub.stats.duplicates);
        }
    }

    /// The receipt the message asked for, and the handset's answer if it
    /// gives one: after a delivered message, for the last part of a long one.
    fn deliveries(
        &mut self,
        submission: &Submission<'_>,
        message_id: &COctetString<1, 65>,
        text: &[u8],
        concat: Option<Concat>,
        delay: Duration,
        config: &SimConfig,
    ) -> Vec<Delivery> {
        let state = outcome(&mut self.rng, &config.outcomes);
        // registered_delivery bits 0-1: 1 asks for a receipt whatever the
        // outcome, 2 only on failure (SMPP 3.4 §5.2.17); 3 is taken as 1.
        let receipt_wanted = match submission.registered_delivery & 0x03 {
            0 => false,
            2 => state != DeliveryState::Delivered,
            _ => true,
        };
        let last_part = concat.is_none_or(|(_, total, seq)| seq >= total);
        let mo_wanted = state == DeliveryState::Delivered && last_part && chance(&mut self.rng, config.mo_share);
        let mut deliveries = Vec::new();
        if receipt_wanted {
            // The receipt quotes the start of the text: 40 octets hold 20
            // characters in any of the alphabets.
            let start = decode_text(submission.data_coding, text.get(..40).unwrap_or(text));
            let submitted_at = Utc::now();
            let facts = ReceiptFacts {
                message_id,
                handset: submission.handset(),
                sender: submission.sender(),
                state,
                submitted_at,
                done_at: submitted_at + delay,
                text: &start,
                form: config.receipts_as,
            };
            deliveries.push(Delivery::new(pdus::receipt(&facts), Kind::Receipt));
        }
        if mo_wanted {
            let handset = Address::handset(&c_string(submission.destination.as_ref()));
            let parts = handset
                .and_then(|from| pdus::mo_parts(&from, &submission.sender(), &config.mo_text, self.rng.random()));
            deliveries.extend(parts.unwrap_or_default().into_iter().map(|pdu: DeliverSm| Delivery::new(pdu, Kind::Mo)));
        }
        deliveries
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn outcomes_follow_their_weights() {
        let mut rng = SmallRng::seed_from_u64(7);
        let only = |delivered, undeliverable, expired| Outcomes { delivered, undeliverable, expired };
        for _ in 0..100 {
            assert_eq!(outcome(&mut rng, &only(1.0, 0.0, 0.0)), DeliveryState::Delivered);
            assert_eq!(outcome(&mut rng, &only(0.0, 2.0, 0.0)), DeliveryState::Undeliverable);
            assert_eq!(outcome(&mut rng, &only(0.0, 0.0, 0.5)), DeliveryState::Expired);
            assert_eq!(outcome(&mut rng, &only(-1.0, f64::NAN, 0.0)), DeliveryState::Delivered, "no weight at all");
        }
        let delivered =
            (0..10_000).filter(|_| outcome(&mut rng, &Outcomes::default()) == DeliveryState::Delivered).count();
        assert!((8_500..9_500).contains(&delivered), "{delivered} of 10000 at 0.9");
    }

    #[test]
    fn shares_never_panic() {
        let mut rng = SmallRng::seed_from_u64(1);
        for share in [f64::NAN, -1.0, 0.0, 2.0, f64::INFINITY] {
            let _ = chance(&mut rng, share);
        }
        assert!(!chance(&mut rng, 0.0));
        assert!(chance(&mut rng, 1.0));
    }
}
