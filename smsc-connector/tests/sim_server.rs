//! The SMSC simulator against a small raw SMPP client written here on
//! `SmppCodec` over real TCP: what each PDU gets back, receipts, MOs,
//! faults and at-least-once delivery. No assertion depends on the
//! machine's speed; timeouts only keep a broken build from hanging.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, DataSm, DeliverSm, DeliverSmResp, SubmitSm};
use rusmpp::tlvs::{MessageSubmissionRequestTlvValue, TlvValue};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, MessagePayload, MessageState, Npi, RegisteredDelivery, Ton,
};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tern_core::encoding::{decode_gsm7, encode_gsm7};
use tern_smsc_connector::receipt::parse_receipt_text;
use tern_smsc_connector::sim::{Outcomes, ReceiptForm, SimConfig, SimHandle, Simulator};
use tern_smsc_connector::smpp::{Frame, SmppCodec};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Long enough for a loaded CI machine; only reached when something hangs.
const PATIENCE: Duration = Duration::from_secs(20);
const HANDSET: &str = "447700900123";

fn config() -> SimConfig {
    SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        receipt_delay_ms: (0, 5),
        outcomes: Outcomes { delivered: 1.0, undeliverable: 0.0, expired: 0.0 },
        redeliver_after_ms: 20,
        ..SimConfig::default()
    }
}

async fn start(change: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut config = config();
    change(&mut config);
    Simulator::start(config).await.unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Bind {
    Transmitter,
    Receiver,
    Transceiver,
}

struct Client {
    framed: Framed<TcpStream, SmppCodec>,
    sequence: u32,
}

impl Client {
    async fn connect(address: SocketAddr) -> Self {
        let stream = TcpStream::connect(address).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self { framed: Framed::new(stream, SmppCodec::default()), sequence: 0 }
    }

    /// A connected client bound as `kind` with the default credentials.
    async fn bound(sim: &SimHandle, kind: Bind) -> Self {
        let mut client = Self::connect(sim.local_addr()).await;
        let response = client.bind(kind, "tern", "secret").await;
        assert_eq!(response.status(), CommandStatus::EsmeRok);
        client
    }

    async fn send(&mut self, pdu: impl Into<Pdu>) -> u32 {
        self.sequence += 1;
        let command = Command::new(CommandStatus::EsmeRok, self.sequence, pdu);
        self.framed.send(command).await.unwrap();
        self.sequence
    }

    async fn respond(&mut self, status: CommandStatus, sequence: u32, pdu: impl Into<Pdu>) {
        self.framed.send(Command::new(status, sequence, pdu)).await.unwrap();
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.framed.get_mut().write_all(bytes).await.unwrap();
    }

    async fn next_frame(&mut self) -> Option<Frame> {
        match tokio::time::timeout(PATIENCE, self.framed.next()).await {
            Ok(Some(Ok(frame))) => Some(frame),
            Ok(Some(Err(_)) | None) => None,
            Err(_) => panic!("nothing from the simulator in {PATIENCE:?}"),
        }
    }

    async fn next(&mut self) -> Command {
        match self.next_frame().await {
            Some(Frame::Command(command)) => *command,
            other => panic!("expected a PDU, got {other:?}"),
        }
    }

    async fn expect_closed(&mut self) {
        if let Some(frame) = self.next_frame().await {
            panic!("expected the link to close, got {frame:?}");
        }
    }

    async fn bind(&mut self, kind: Bind, system_id: &str, password: &str) -> Command {
        let (system_id, password) = (system_id.parse().unwrap(), password.parse().unwrap());
        let sequence = match kind {
            Bind::Transmitter => {
                self.send(BindTransmitter::builder().system_id(system_id).password(password).build()).await
            }
            Bind::Receiver => self.send(BindReceiver::builder().system_id(system_id).password(password).build()).await,
            Bind::Transceiver => {
                self.send(BindTransceiver::builder().system_id(system_id).password(password).build()).await
            }
        };
        let response = self.next().await;
        assert_eq!(response.sequence_number(), sequence);
        response
    }

    /// Submits and returns the sequence number used.
    async fn submit(&mut self, submit: SubmitSm) -> u32 {
        self.send(submit).await
    }

    /// Submits and returns the message id of the (successful) response.
    async fn submit_ok(&mut self, submit: SubmitSm) -> String {
        let sequence = self.submit(submit).await;
        let response = self.next().await;
        assert_eq!((response.id(), response.sequence_number()), (CommandId::SubmitSmResp, sequence));
        assert_eq!(response.status(), CommandStatus::EsmeRok);
        match response.pdu() {
            Some(Pdu::SubmitSmResp(resp)) => resp.message_id().as_str().to_owned(),
            other => panic!("submit_sm_resp without a body: {other:?}"),
        }
    }

    /// The next deliver_sm, acknowledged with `status`.
    async fn deliver_sm(&mut self, status: CommandStatus) -> DeliverSm {
        let command = self.next().await;
        let sequence = command.sequence_number();
        let Some(Pdu::DeliverSm(deliver)) = command.pdu() else { panic!("expected a deliver_sm, got {command:?}") };
        let deliver = deliver.clone();
        self.respond(status, sequence, DeliverSmResp::default()).await;
        deliver
    }
}

fn submit(text: &str, registered_delivery: u8) -> SubmitSm {
    SubmitSm::builder()
        .source_addr_ton(Ton::Alphanumeric)
        .source_addr_npi(Npi::Unknown)
        .source_addr("Tern".parse().unwrap())
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(HANDSET.parse().unwrap())
        .esm_class(EsmClass::from(0x00))
        .registered_delivery(RegisteredDelivery::from(registered_delivery))
        .data_coding(DataCoding::from(0))
        .short_message(OctetString::from_vec(encode_gsm7(text).unwrap()).unwrap())
        .build()
}

fn text_of(deliver: &DeliverSm) -> String {
    decode_gsm7(deliver.short_message())
}

fn tlv<'a>(deliver: &'a DeliverSm, wanted: fn(&'a TlvValue) -> bool) -> Option<&'a TlvValue> {
    deliver.tlvs().iter().filter_map(|tlv| tlv.value()).find(|value| wanted(value))
}

/// Waits for the simulator's counters to say so.
async fn eventually(sim: &SimHandle, what: &str, done: impl Fn(&tern_smsc_connector::sim::SimStats) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done(&sim.stats()) {
        assert!(tokio::time::Instant::now() < deadline, "{what}: {:?}", sim.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn binds_check_credentials() {
    let sim = start(|_| {}).await;
    let mut good = Client::connect(sim.local_addr()).await;
    let response = good.bind(Bind::Transceiver, "tern", "secret").await;
    assert_eq!(response.status(), CommandStatus::EsmeRok);
    let Some(Pdu::BindTransceiverResp(resp)) = response.pdu() else { panic!("{response:?}") };
    assert_eq!(resp.system_id.as_str(), "TernSim");
    assert_eq!(resp.sc_interface_version(), Some(InterfaceVersion::Smpp3_4));
    let again = good.bind(Bind::Transmitter, "tern", "secret").await;
    assert_eq!((again.id(), again.status()), (CommandId::BindTransmitterResp, CommandStatus::EsmeRalybnd));

    let mut bad_password = Client::connect(sim.local_addr()).await;
    let refused = bad_password.bind(Bind::Transmitter, "tern", "wrong").await;
    assert_eq!((refused.id(), refused.status()), (CommandId::BindTransmitterResp, CommandStatus::EsmeRinvpaswd));
    bad_password.expect_closed().await;

    let mut bad_system = Client::connect(sim.local_addr()).await;
    let refused = bad_system.bind(Bind::Receiver, "nobody", "secret").await;
    assert_eq!((refused.id(), refused.status()), (CommandId::BindReceiverResp, CommandStatus::EsmeRinvsysid));
    bad_system.expect_closed().await;

    let stats = sim.stats();
    assert_eq!((stats.binds_total, stats.binds_active, stats.bind_refused), (1, 1, 2));
}

#[tokio::test]
async fn submit_needs_a_transmitting_bind() {
    let sim = start(|_| {}).await;
    let mut unbound = Client::connect(sim.local_addr()).await;
    let sequence = unbound.submit(submit("hi", 1)).await;
    let response = unbound.next().await;
    assert_eq!(response.sequence_number(), sequence);
    assert_eq!((response.id(), response.status()), (CommandId::SubmitSmResp, CommandStatus::EsmeRinvbndsts));
    assert!(response.pdu().is_none(), "an error response has no body");

    let mut receiver = Client::bound(&sim, Bind::Receiver).await;
    receiver.submit(submit("hi", 1)).await;
    assert_eq!(receiver.next().await.status(), CommandStatus::EsmeRinvbndsts);
    assert!(sim.submitted().is_empty());
}

#[tokio::test]
async fn a_submit_gets_an_id_then_a_receipt_whose_text_and_tlvs_agree() {
    let sim = start(|_| {}).await;
    let mut client = Client::bound(&sim, Bind::Transceiver).await;
    let id = client.submit_ok(submit("Hello from Tern!", 1)).await;
    assert_eq!(id.len(), 10, "hex ids by default: {id}");

    let receipt = client.deliver_sm(CommandStatus::EsmeRok).await;
    assert_eq!(u8::from(receipt.esm_class), 0x04);
    assert_eq!(receipt.source_addr.as_str(), HANDSET, "from the handset");
    assert_eq!(receipt.destination_addr.as_str(), "Tern", "to the sender");
    assert_eq!(u8::from(receipt.dest_addr_ton), 5);
    let text = parse_receipt_text(&text_of(&receipt)).unwrap();
    assert_eq!(text.id, id);
    assert_eq!(text.stat.as_deref(), Some("DELIVRD"));
    assert_eq!(text.err, Some(0));
    assert_eq!(text.text.as_deref(), Some("Hello from Tern!"));
    assert!(text.submit_date.is_some() && text.done_date.is_some());
    let Some(TlvValue::ReceiptedMessageId(tlv_id)) = tlv(&receipt, |v| matches!(v, TlvValue::ReceiptedMessageId(_)))
    else {
        panic!("no receipted_message_id")
    };
    assert_eq!(tlv_id.as_str(), id);
    assert!(matches!(
        tlv(&receipt, |v| matches!(v, TlvValue::MessageState(_))),
        Some(TlvValue::MessageState(MessageState::Delivered))
    ));
    assert!(tlv(&receipt, |v| matches!(v, TlvValue::NetworkErrorCode(_))).is_none());
    eventually(&sim, "receipt acked", |s| s.receipts_acked == 1).await;

    let submitted = sim.submitted();
    assert_eq!(submitted.len(), 1);
    let message = &submitted[0];
    assert_eq!((message.system_id.as_str(), message.message_id.as_str()), ("tern", id.as_str()));
    assert_eq!((message.source_addr.as_str(), message.source_addr_ton, message.source_addr_npi), ("Tern", 5, 0));
    assert_eq!((message.destination_addr.as_str(), message.registered_delivery), (HANDSET, 1));
    assert_eq!((message.text.as_str(), message.concat), ("Hello from Tern!", None));

    // A failure carries the network error; each receipt form keeps to its part.
    sim.update(|c| c.outcomes = Outcomes { delivered: 0.0, undeliverable: 1.0, expired: 0.0 });
    let id = client.submit_ok(submit("second", 1)).await;
    let receipt = client.deliver_sm(CommandStatus::EsmeRok).await;
    assert_eq!(parse_receipt_text(&text_of(&receipt)).unwrap().stat.as_deref(), Some("UNDELIV"));
    assert!(matches!(
        tlv(&receipt, |v| matches!(v, TlvValue::MessageState(_))),
        Some(TlvValue::MessageState(MessageState::Undeliverable))
    ));
    assert!(tlv(&receipt, |v| matches!(v, TlvValue::NetworkErrorCode(_))).is_some());
    assert_eq!(parse_receipt_text(&text_of(&receipt)).unwrap().id, id);

    sim.update(|c| c.receipts_as = ReceiptForm::TextOnly);
    client.submit_ok(submit("text only", 1)).await;
    let receipt = client.deliver_sm(CommandStatus::EsmeRok).await;
    assert!(receipt.tlvs().is_empty());
    assert!(parse_receipt_text(&text_of(&receipt)).is_some());

    sim.update(|c| c.receipts_as = ReceiptForm::TlvOnly);
    let id = client.submit_ok(submit("tlv only", 1)).await;
    let receipt = client.deliver_sm(CommandStatus::EsmeRok).await;
    assert!(receipt.short_message().is_empty());
    assert!(
        matches!(tlv(&receipt, |v| matches!(v, TlvValue::ReceiptedMessageId(_))), Some(TlvValue::ReceiptedMessageId(r)) if r.as_str() == id)
    );

    // No receipt asked, none sent: the next PDU is the enquire_link_resp.
    client.submit_ok(submit("no receipt", 0)).await;
    client.send(Pdu::EnquireLink).await;
    assert_eq!(client.next().await.id(), CommandId::EnquireLinkResp);
}

#[tokio::test]
async fn throttling_and_rejection_answer_with_their_status() {
    let sim = start(|c| c.throttle_share = 1.0).await;
    let mut client = Client::bound(&sim, Bind::Transceiver).await;
    let sequence = client.submit(submit("hi", 1)).await;
    let response = client.next().await;
    assert_eq!((response.sequence_number(), response.status()), (sequence, CommandStatus::EsmeRthrottled));
    assert_eq!(u32::from(response.status()), 0x58);

    sim.update(|c| {
        c.throttle_share = 0.0;
        c.reject_share = 1.0;
    });
    client.submit(submit("hi", 1)).await;
    let response = client.next().await;
    assert_eq!((response.id(), u32::from(response.status())), (CommandId::SubmitSmResp, 0x0B));

    sim.update(|c| c.reject_share = 0.0);
    client.submit_ok(submit("hi", 0)).await;
    let stats = sim.stats();
    assert_eq!((stats.submit_sm, stats.throttled, stats.rejected, stats.segments_accepted), (3, 1, 1, 1));
    assert_eq!(stats.receipts_sent, 0, "no receipt for refused messages");
}

#[tokio::test]
async fn a_dropped_response_still_gets_its_receipt() {
    let sim = start(|c| c.drop_response_share = 1.0).await;
    let mut client = Client::bound(&sim, Bind::Transceiver).await;
    client.submit(submit("lost response", 1)).await;
    let receipt = client.deliver_sm(CommandStatus::EsmeRok).await;
    let id = parse_receipt_text(&text_of(&receipt)).unwrap().id;
    assert_eq!(sim.submitted()[0].message_id, id);
    client.send(Pdu::EnquireLink).await;
    assert_eq!(client.next().await.id(), CommandId::EnquireLinkResp, "and still no submit_sm_resp");
    assert_eq!(sim.stats().dropped_responses, 1);
}

#[tokio::test]
async fn a_receipt_can_come_before_its_response() {
    // A long receipt delay would put the receipt last, if it were used.
    let sim = start(|c| {
        c.receipt_before_response = true;
        c.receipt_delay_ms = (60_000, 60_000);
    })
    .await;
    let mut client = Client::bound(&sim, Bind::Transceiver).await;
    let sequence = client.submit(submit("early receipt", 1)).await;
    let receipt = client.deliver_sm(CommandStatus::EsmeRok).await;
    let response = client.next().await;
    assert_eq!((response.id(), response.sequence_number()), (CommandId::SubmitSmResp, sequence));
    let Some(Pdu::SubmitSmResp(resp)) = response.pdu() else { panic!("{response:?}") };
    assert_eq!(parse_receipt_text(&text_of(&receipt)).unwrap().id, resp.message_id().as_str());
}

#[tokio::test]
async fn a_slow_response_comes_after_later_ones() {
    let sim = start(|c| {
        c.slow_share = 1.0;
        c.slow_ms = 300;
    })
    .await;
    let mut client = Client::bound(&sim, Bind::Transceiver).await;
    let submitted = client.submit(submit("slow", 0)).await;
    let enquired = client.send(Pdu::EnquireLink).await;
    assert_eq!(client.next().await.sequence_number(), enquired);
    let response = client.next().await;
    assert_eq!((response.id(), response.sequence_number()), (CommandId::SubmitSmResp, submitted));
    assert_eq!(sim.stats().slow_responses, 1);
}

#[tokio::test]
async fn the_link_drops_on_every_nth_submit_before_answering_it() {
    let sim = start(|c| c.disconnect_every = Some(3)).await;
    let mut client = Client::bound(&sim, Bind::Transceiver).await;
    client.submit_ok(submit("one", 0)).await;
    client.submit_ok(submit("two", 0)).await;
    client.submit(submit("three", 0)).await;
    client.expect_closed().await;
    eventually(&sim, "bind gone", |s| s.binds_active == 0).await;
    let stats = sim.stats();
    assert_eq!((stats.submit_sm, stats.segments_accepted, stats.disconnects), (3, 2, 1));
    assert_eq!(sim.submitted().iter().map(|s| s.text.as_str()).collect::<Vec<_>>(), ["one", "two"]);

    // Counting is per connection: a new link gets two more answers.
    let mut again = Client::bound(&sim, Bind::Transceiver).await;
    again.submit_ok(submit("four", 0)).await;
    again.submit_ok(submit("five", 0)).await;
    again.submit(submit("six", 0)).await;
    again.expect_closed().await;
}

#[tokio::test]
async fn the_handset_answers_a_delivered_message() {
    let sim = start(|c| c.mo_share = 1.0).await;
    let mut client = Client::bound(&sim, Bind::Transceiver).await;
    client.submit_ok(submit("Reply please", 1)).await;
    let receipt = client.deliver_sm(CommandStatus::EsmeRok).await;
    assert_eq!(u8::from(receipt.esm_class), 0x04);
    let mo = client.deliver_sm(CommandStatus::EsmeRok).await;
    assert_eq!(u8::from(mo.esm_class), 0x00, "an MO, not a receipt");
    assert_eq!(u8::from(mo.data_coding), 0);
    assert_eq!((mo.source_addr.as_str(), u8::from(mo.source_addr_ton), u8::from(mo.source_addr_npi)), (HANDSET, 1, 1));
    assert_eq!((mo.destination_addr.as_str(), u8::from(mo.dest_addr_ton)), ("Tern", 5));
    assert_eq!(text_of(&mo), "Thanks!");
    eventually(&sim, "MO acked", |s| s.mo_acked == 1 && s.receipts_acked == 1).await;

    // An undelivered message gets no answer.
    sim.update(|c| c.outcomes = Outcomes { delivered: 0.0, undeliverable: 0.0, expired: 1.0 });
    client.submit_ok(submit("Anyone?", 1)).await;
    let receipt = client.deliver_sm(CommandStatus::EsmeRok).await;
    assert_eq!(parse_receipt_text(&text_of(&receipt)).unwrap().stat.as_deref(), Some("EXPIRED"));
    client.send(Pdu::EnquireLink).await;
    assert_eq!(client.next().await.id(), CommandId::EnquireLinkResp);
    assert_eq!(sim.stats().mo_sent, 1);
}

#[tokio::test]
async fn a_long_mo_arrives_in_consistent_concatenated_parts() {
    let sim = start(|_| {}).await;
    let text: String = (0..200).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    assert!(sim.send_mo("tern", "+447700900123", "12345", &text).await.is_err(), "no bind yet");
    let mut receiver = Client::bound(&sim, Bind::Receiver).await;
    sim.send_mo("tern", "+447700900123", "12345", &text).await.unwrap();
    let (first, second) =
        (receiver.deliver_sm(CommandStatus::EsmeRok).await, receiver.deliver_sm(CommandStatus::EsmeRok).await);
    let mut reassembled = String::new();
    let mut reference = None;
    for (seq, part) in [(1u8, &first), (2, &second)] {
        assert_eq!(u8::from(part.esm_class), 0x40, "UDHI");
        assert_eq!(part.source_addr.as_str(), HANDSET);
        assert_eq!(part.destination_addr.as_str(), "12345");
        let data = part.short_message().as_ref();
        assert_eq!(&data[..5], &[0x05, 0x00, 0x03, data[3], 2]);
        assert_eq!(data[5], seq);
        assert_eq!(*reference.get_or_insert(data[3]), data[3], "one reference for all parts");
        reassembled.push_str(&decode_gsm7(&data[6..]));
    }
    assert_eq!(reassembled, text);
    eventually(&sim, "parts acked", |s| s.mo_acked == 2).await;
    assert!(sim.send_mo("other", "447700900123", "12345", "hi").await.is_err(), "no bind of that system_id");
}

#[tokio::test]
async fn a_malformed_pdu_gets_a_generic_nack_and_the_bind_stays_up() {
    let sim = start(|_| {}).await;
    let mut client = Client::bound(&sim, Bind::Transceiver).await;
    // A submit_sm whose body stops in its first field.
    client.send_raw(&[0, 0, 0, 20, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 77, b'a', b'b', b'c', b'd']).await;
    let nack = client.next().await;
    assert_eq!(
        (nack.id(), nack.sequence_number(), nack.status()),
        (CommandId::GenericNack, 77, CommandStatus::EsmeRinvcmdlen)
    );
    // An unknown command id.
    client.send_raw(&[0, 0, 0, 16, 0, 0, 0x01, 0x99, 0, 0, 0, 0, 0, 0, 0, 78]).await;
    let nack = client.next().await;
    assert_eq!(
        (nack.id(), nack.sequence_number(), nack.status()),
        (CommandId::GenericNack, 78, CommandStatus::EsmeRinvcmdid)
    );
    // A submit_sm with no body at all.
    client.send_raw(&[0, 0, 0, 16, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 79]).await;
    assert_eq!(client.next().await.status(), CommandStatus::EsmeRinvcmdlen);
    client.submit_ok(submit("still here", 0)).await;
    assert_eq!(sim.stats().generic_nacks_sent, 3);

    // A length that cannot be framed ends that link only.
    client.send_raw(&[0, 0, 0, 3, 0, 0, 0, 0]).await;
    client.expect_closed().await;
    let mut other = Client::bound(&sim, Bind::Transceiver).await;
    other.submit_ok(submit("fine", 0)).await;
}

#[tokio::test]
async fn random_pdus_neither_panic_nor_drop_the_bind() {
    use rand::{Rng, SeedableRng};

    let sim = start(|_| {}).await;
    let client = Client::bound(&sim, Bind::Transceiver).await;
    let (mut stream, mut sink) = client.framed.into_inner().into_split();
    let writer = tokio::spawn(async move {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
        // Everything but binds and unbind, which would end the session
        // by design; plus responses and ids nobody defined.
        let ids = [3u32, 4, 5, 7, 8, 0x0B, 0x15, 0x21, 0x102, 0x103, 0x111, 0x8000_0000, 0x8000_0005, 0x8000_0015];
        for sequence in 1..=3000u32 {
            let id = if rng.random_bool(0.1) { rng.random() } else { ids[rng.random_range(0..ids.len())] };
            let body: Vec<u8> = (0..rng.random_range(0..120)).map(|_| rng.random()).collect();
            let mut pdu = Vec::with_capacity(16 + body.len());
            pdu.extend_from_slice(&(16 + body.len() as u32).to_be_bytes());
            pdu.extend_from_slice(&id.to_be_bytes());
            pdu.extend_from_slice(&rng.random::<u32>().to_be_bytes());
            pdu.extend_from_slice(&sequence.to_be_bytes());
            pdu.extend_from_slice(&body);
            sink.write_all(&pdu).await.unwrap();
        }
        // The marker: a well-formed enquire_link.
        sink.write_all(&[0, 0, 0, 16, 0, 0, 0, 0x15, 0, 0, 0, 0, 0x7F, 0, 0, 0]).await.unwrap();
        sink
    });
    // Read (and so never block the simulator) until the marker's answer.
    let mut frames = tokio_util::codec::FramedRead::new(&mut stream, SmppCodec::default());
    loop {
        let frame = tokio::time::timeout(PATIENCE, frames.next()).await.expect("marker answered").unwrap().unwrap();
        if let Frame::Command(command) = frame
            && command.id() == CommandId::EnquireLinkResp
            && command.sequence_number() == 0x7F00_0000
        {
            break;
        }
    }
    writer.await.unwrap();
    assert_eq!(sim.stats().binds_active, 1, "the bind is still up");
    assert!(sim.stats().generic_nacks_sent > 0);
}

#[tokio::test]
async fn enquire_link_and_unbind() {
    let sim = start(|_| {}).await;
    let mut client = Client::bound(&sim, Bind::Transceiver).await;
    let sequence = client.send(Pdu::EnquireLink).await;
    let response = client.next().await;
    assert_eq!((response.id(), response.sequence_number()), (CommandId::EnquireLinkResp, sequence));
    let sequence = client.send(Pdu::Unbind).await;
    let response = client.next().await;
    assert_eq!((response.id(), response.sequence_number()), (CommandId::UnbindResp, sequence));
    client.expect_closed().await;
    eventually(&sim, "unbound", |s| s.unbinds == 1 && s.binds_active == 0).await;
    assert_eq!(sim.stats().enquire_links, 1);
}

#[tokio::test]
async fn the_same_message_twice_is_counted_as_a_duplicate() {
    let sim = start(|_| {}).await;
    let mut client = Client::bound(&sim, Bind::Transmitter).await;
    let first = client.submit_ok(submit("only once, please", 0)).await;
    client.submit_ok(submit("another text", 0)).await;
    let second = client.submit_ok(submit("only once, please", 0)).await;
    assert_ne!(first, second, "every submit gets a fresh id");
    assert_eq!(sim.stats().duplicates, 1);
    let duplicates = sim.duplicates();
    assert_eq!(duplicates.len(), 1);
    assert_eq!(
        (duplicates[0].text.as_str(), duplicates[0].message_id.as_str()),
        ("only once, please", second.as_str())
    );
}

#[tokio::test]
async fn receipts_for_a_transmitter_wait_for_a_receiver_of_the_same_system_id() {
    let sim = start(|_| {}).await;
    let mut transmitter = Client::bound(&sim, Bind::Transmitter).await;
    let id = transmitter.submit_ok(submit("to the receiver", 1)).await;
    eventually(&sim, "receipt stored", |s| s.stored == 1).await;

    let mut receiver = Client::bound(&sim, Bind::Receiver).await;
    let receipt = receiver.deliver_sm(CommandStatus::EsmeRok).await;
    assert_eq!(parse_receipt_text(&text_of(&receipt)).unwrap().id, id);
    assert_eq!(sim.stats().stored, 0);

    let id = transmitter.submit_ok(submit("again", 1)).await;
    let receipt = receiver.deliver_sm(CommandStatus::EsmeRok).await;
    assert_eq!(parse_receipt_text(&text_of(&receipt)).unwrap().id, id);
    eventually(&sim, "receipts acked", |s| s.receipts_acked == 2).await;
    // Nothing ever went to the transmitter.
    transmitter.send(Pdu::EnquireLink).await;
    assert_eq!(transmitter.next().await.id(), CommandId::EnquireLinkResp);
}

#[tokio::test]
async fn the_window_bounds_unacknowledged_deliveries_and_the_store_is_bounded() {
    let sim = start(|c| {
        c.window = 2;
        c.max_stored = 5;
    })
    .await;
    let mut transmitter = Client::bound(&sim, Bind::Transmitter).await;
    for i in 0..6 {
        transmitter.submit_ok(submit(&format!("stored {i}"), 1)).await;
    }
    eventually(&sim, "five stored, one dropped", |s| s.stored == 5 && s.stored_dropped == 1).await;

    // All five are due when the receiver binds; only two may be unanswered.
    let mut receiver = Client::bound(&sim, Bind::Receiver).await;
    let first = receiver.next().await;
    let second = receiver.next().await;
    assert_eq!((first.id(), second.id()), (CommandId::DeliverSm, CommandId::DeliverSm));
    let enquired = receiver.send(Pdu::EnquireLink).await;
    let response = receiver.next().await;
    assert_eq!((response.id(), response.sequence_number()), (CommandId::EnquireLinkResp, enquired), "window full");
    receiver.respond(CommandStatus::EsmeRok, first.sequence_number(), DeliverSmResp::default()).await;
    let third = receiver.next().await;
    assert_eq!(third.id(), CommandId::DeliverSm, "room for one more");
    for sent in [&second, &third] {
        receiver.respond(CommandStatus::EsmeRok, sent.sequence_number(), DeliverSmResp::default()).await;
    }
    for _ in 0..2 {
        receiver.deliver_sm(CommandStatus::EsmeRok).await;
    }
    eventually(&sim, "five receipts acked", |s| s.receipts_acked == 5).await;
    assert_eq!(sim.stats().redelivered, 0);
}

#[tokio::test]
async fn an_unanswered_deliver_sm_is_sent_again() {
    let sim = start(|c| c.deliver_timeout_ms = 50).await;
    let mut client = Client::bound(&sim, Bind::Transceiver).await;
    client.submit_ok(submit("answer me", 1)).await;
    let ignored = client.next().await;
    let again = client.deliver_sm(CommandStatus::EsmeRok).await;
    assert_eq!(ignored.pdu(), Some(&Pdu::DeliverSm(again)));
    eventually(&sim, "timed out once, then acked", |s| s.deliver_sm_timeouts == 1 && s.receipts_acked == 1).await;
    // The late answer to the first attempt is for no outstanding deliver_sm: ignored.
    client.respond(CommandStatus::EsmeRok, ignored.sequence_number(), DeliverSmResp::default()).await;
    client.send(Pdu::EnquireLink).await;
    assert_eq!(client.next().await.id(), CommandId::EnquireLinkResp);
    assert_eq!(sim.stats().receipts_acked, 1);
}

#[tokio::test]
async fn a_refused_receipt_comes_again_and_so_does_one_owed_to_a_dropped_link() {
    let sim = start(|_| {}).await;
    let mut client = Client::bound(&sim, Bind::Transceiver).await;
    let id = client.submit_ok(submit("at least once", 1)).await;
    let refused = client.deliver_sm(CommandStatus::EsmeRsyserr).await;
    let again = client.deliver_sm(CommandStatus::EsmeRok).await;
    assert_eq!(refused, again);
    eventually(&sim, "redelivered", |s| s.redelivered == 1 && s.deliver_sm_refused == 1 && s.receipts_acked == 1).await;

    // A receipt sent but not acknowledged when the link drops comes on the next bind.
    let id2 = client.submit_ok(submit("across links", 1)).await;
    let command = client.next().await;
    assert_eq!(command.id(), CommandId::DeliverSm, "not acknowledged on purpose");
    sim.disconnect_all();
    client.expect_closed().await;
    let mut next = Client::bound(&sim, Bind::Transceiver).await;
    let receipt = next.deliver_sm(CommandStatus::EsmeRok).await;
    assert_eq!(parse_receipt_text(&text_of(&receipt)).unwrap().id, id2);
    assert_ne!(id, id2);
    assert_eq!(sim.stats().disconnects, 1);
}

#[tokio::test]
async fn data_sm_and_concatenation_info_are_recorded() {
    let sim = start(|_| {}).await;
    let mut client = Client::bound(&sim, Bind::Transceiver).await;
    // A UDH part (16-bit reference) and a payload message with sar_* TLVs.
    let mut user_data = vec![0x06, 0x08, 0x04, 0x01, 0x02, 0x03, 0x02];
    user_data.extend(encode_gsm7("part two").unwrap());
    let part = SubmitSm::builder()
        .source_addr("Tern".parse().unwrap())
        .destination_addr(HANDSET.parse().unwrap())
        .esm_class(EsmClass::from(0x40))
        .short_message(OctetString::from_vec(user_data).unwrap())
        .build();
    client.submit_ok(part).await;
    let mut payload = submit("", 0);
    payload.push_tlv(MessageSubmissionRequestTlvValue::MessagePayload(MessagePayload::new(
        rusmpp::types::AnyOctetString::from_vec(encode_gsm7("in the payload").unwrap()),
    )));
    payload.push_tlv(MessageSubmissionRequestTlvValue::SarMsgRefNum(9));
    payload.push_tlv(MessageSubmissionRequestTlvValue::SarTotalSegments(1));
    payload.push_tlv(MessageSubmissionRequestTlvValue::SarSegmentSeqnum(1));
    client.submit_ok(payload).await;

    let data_sm = DataSm::builder()
        .source_addr("Tern".parse().unwrap())
        .destination_addr(HANDSET.parse::<COctetString<1, 21>>().unwrap())
        .registered_delivery(RegisteredDelivery::from(1))
        .tlvs(vec![MessageSubmissionRequestTlvValue::MessagePayload(MessagePayload::new(
            rusmpp::types::AnyOctetString::from_vec(encode_gsm7("by data sm").unwrap()),
        ))])
        .build();
    let sequence = client.send(data_sm).await;
    let response = client.next().await;
    assert_eq!(
        (response.id(), response.sequence_number(), response.status()),
        (CommandId::DataSmResp, sequence, CommandStatus::EsmeRok)
    );
    let receipt = client.deliver_sm(CommandStatus::EsmeRok).await;
    assert_eq!(parse_receipt_text(&text_of(&receipt)).unwrap().text.as_deref(), Some("by data sm"));

    let submitted = sim.submitted();
    assert_eq!((submitted[0].concat, submitted[0].text.as_str()), (Some((0x0102, 3, 2)), "part two"));
    assert_eq!((submitted[1].concat, submitted[1].text.as_str()), (Some((9, 1, 1)), "in the payload"));
    assert!(submitted[1].message_payload.is_some());
    assert_eq!(submitted[2].text, "by data sm");
    assert_eq!(sim.stats().data_sm, 1);
}

#[tokio::test]
async fn stop_unbinds_politely() {
    let sim = start(|_| {}).await;
    let mut client = Client::bound(&sim, Bind::Transceiver).await;
    let stopping = tokio::spawn(sim.clone().stop());
    let unbind = client.next().await;
    assert_eq!(unbind.id(), CommandId::Unbind);
    client.respond(CommandStatus::EsmeRok, unbind.sequence_number(), Pdu::UnbindResp).await;
    client.expect_closed().await;
    tokio::time::timeout(PATIENCE, stopping).await.unwrap().unwrap();
    assert_eq!(sim.stats().unbinds, 1);
    assert!(TcpStream::connect(sim.local_addr()).await.is_err(), "no longer listening");
}

/// Throughput by hand, in release mode:
/// `cargo test --release -p tern-smsc-connector --test sim_server -- --ignored --nocapture`
///
/// One transceiver keeps 100 `submit_sm` in flight and acknowledges every
/// receipt; it prints what the simulator sustained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn throughput() {
    use futures::FutureExt;

    const MESSAGES: usize = 100_000;
    const WINDOW: usize = 100;
    let sim = start(|c| c.receipt_delay_ms = (10, 50)).await;
    let mut client = Client::bound(&sim, Bind::Transceiver).await;
    let template = submit("", 1);
    let started = std::time::Instant::now();
    let (mut sent, mut in_flight, mut responses, mut receipts) = (0usize, 0usize, 0usize, 0usize);
    let mut last_response = started;
    while responses < MESSAGES || receipts < MESSAGES {
        while in_flight < WINDOW && sent < MESSAGES {
            let mut message = template.clone();
            message.set_short_message(OctetString::from_string(format!("message {sent}")).unwrap());
            client.sequence += 1;
            client.framed.feed(Command::new(CommandStatus::EsmeRok, client.sequence, message)).await.unwrap();
            sent += 1;
            in_flight += 1;
        }
        client.framed.flush().await.unwrap();
        let mut frame = Some(client.next().await);
        while let Some(command) = frame.take() {
            match command.id() {
                CommandId::SubmitSmResp => {
                    assert_eq!(command.status(), CommandStatus::EsmeRok);
                    in_flight -= 1;
                    responses += 1;
                    last_response = std::time::Instant::now();
                }
                CommandId::DeliverSm => {
                    receipts += 1;
                    let ack = Command::new(CommandStatus::EsmeRok, command.sequence_number(), DeliverSmResp::default());
                    client.framed.feed(ack).await.unwrap();
                }
                other => panic!("unexpected {other:?}"),
            }
            if let Some(Some(Ok(Frame::Command(next)))) = client.framed.next().now_or_never() {
                frame = Some(*next);
            }
        }
    }
    client.framed.flush().await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let submitting = last_response.duration_since(started).as_secs_f64();
    let stats = sim.stats();
    println!(
        "{MESSAGES} submit_sm, window {WINDOW}: {:.0} submit_sm/s (all responses in {submitting:.2} s); \
         {:.0} messages/s with their receipts acknowledged ({elapsed:.2} s); {:.0} PDUs/s through the simulator",
        MESSAGES as f64 / submitting,
        MESSAGES as f64 / elapsed,
        (4 * MESSAGES) as f64 / elapsed,
    );
    assert_eq!(stats.segments_accepted, MESSAGES as u64);
    eventually(&sim, "every receipt acknowledged", |s| s.receipts_acked == MESSAGES as u64).await;
    assert_eq!(stats.duplicates, 0);
}
