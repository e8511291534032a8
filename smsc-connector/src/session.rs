//! One SMPP session: a TCP connection bound as transmitter, receiver or
//! transceiver.
//!
//! Three tasks share the connection. The writer drains a channel of PDUs
//! and flushes once per burst (thousands of PDUs a second would otherwise
//! cost a system call each). The reader matches responses to requests by
//! sequence number, answers what the SMSC asks (`deliver_sm` through the
//! [`InboundHandler`], `enquire_link`, `unbind`) and `generic_nack`s what it
//! cannot read, without dropping the bind. The keepalive sends
//! `enquire_link` and ends the session when the SMSC stops answering.
//!
//! Requests wait for their response with a timeout; `submit_sm` also takes a
//! permit of the window, so no more than `window` are outstanding. When the
//! session ends, every outstanding request learns that its outcome is
//! unknown ([`RequestError::LinkLost`]).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSmResp, SubmitSm};
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::smpp::{Frame, Header, SmppCodec};

/// What a bind does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindKind {
    /// Sends and receives.
    Transceiver,
    /// Sends only.
    Transmitter,
    /// Receives only.
    Receiver,
}

impl BindKind {
    /// Whether `submit_sm` may go through it.
    pub fn transmits(self) -> bool {
        !matches!(self, Self::Receiver)
    }

    /// The label of metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transceiver => "transceiver",
            Self::Transmitter => "transmitter",
            Self::Receiver => "receiver",
        }
    }
}

/// How to open one session.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// Connector name (logs, metrics).
    pub connector: String,
    /// The SMSC.
    pub address: String,
    /// Bind credentials.
    pub system_id: String,
    /// Bind credentials.
    pub password: String,
    /// Bind `system_type`.
    pub system_type: String,
    /// What the bind does.
    pub kind: BindKind,
    /// Outstanding `submit_sm` at most.
    pub window: usize,
    /// How long a request waits for its response.
    pub response_timeout: Duration,
    /// Time between keepalives.
    pub enquire_link: Duration,
    /// How long connect and bind may take.
    pub connect_timeout: Duration,
}

/// Why a request got no usable response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The request never left: the session was closed or closing.
    #[error("not sent: the session is closed")]
    NotSent,
    /// No response in time: the SMSC may or may not have acted on it.
    #[error("no response within the timeout")]
    Timeout,
    /// The link broke while the request was outstanding: the same.
    #[error("the link broke before the response came")]
    LinkLost,
    /// The response could not be decoded: the same.
    #[error("the response could not be decoded: {0}")]
    Malformed(String),
}

impl RequestError {
    /// Whether the SMSC may have acted on the request (so a resend may duplicate it).
    pub fn outcome_unknown(&self) -> bool {
        !matches!(self, Self::NotSent)
    }
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// TCP connect failed.
    #[error("cannot connect to {address}: {error}")]
    Connect {
        /// The SMSC.
        address: String,
        /// What happened.
        error: String,
    },
    /// The SMSC answered the bind with an error status.
    #[error("the SMSC refused the bind with status {0:#010x}")]
    Refused(u32),
    /// The bind got no usable answer.
    #[error("the bind failed: {0}")]
    Bind(String),
}

/// What receives the SMSC's `deliver_sm`s (receipts and MO messages).
#[async_trait]
pub trait InboundHandler: Send + Sync + std::fmt::Debug + 'static {
    /// Handles one `deliver_sm`; the status returned goes in its `deliver_sm_resp`
    /// (`ESME_ROK` only once what it carries is durable).
    async fn deliver_sm(&self, pdu: rusmpp::pdus::DeliverSm) -> CommandStatus;
}

type Waiter = oneshot::Sender<Result<Command, RequestError>>;

#[derive(Debug)]
struct Shared {
    params: SessionParams,
    outgoing: mpsc::Sender<Command>,
    pending: Mutex<HashMap<u32, Waiter>>,
    window: Semaphore,
    sequence: AtomicU32,
    closed: CancellationToken,
}

/// A bound session; cheap to clone.
#[derive(Debug, Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

/// The answer to a `submit_sm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitResponse {
    /// `command_status`.
    pub status: u32,
    /// The SMSC's message id (empty on errors).
    pub message_id: String,
}

impl Session {
    /// Connects, binds, and starts the session's tasks. The handle ends
    /// when the session does, with the reason.
    pub async fn open(
        params: SessionParams,
        inbound: Arc<dyn InboundHandler>,
    ) -> Result<(Self, JoinHandle<String>), OpenError> {
        let connect = tokio::time::timeout(params.connect_timeout, TcpStream::connect(&params.address));
        let stream = match connect.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(OpenError::Connect { address: params.address.clone(), error: e.to_string() }),
            Err(_) => return Err(OpenError::Connect { address: params.address.clone(), error: "timed out".into() }),
        };
        // Requests are small and latency-bound; Nagle would hold each for an ACK.
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        let (read, write) = stream.into_split();
        let (outgoing, queued) = mpsc::channel(4 * params.window.max(64));
        let shared = Arc::new(Shared {
            window: Semaphore::new(params.window.max(1)),
            params,
            outgoing,
            pending: Mutex::new(HashMap::new()),
            sequence: AtomicU32::new(0),
            closed: CancellationToken::new(),
        });
        let session = Self { shared: shared.clone() };
        let writer = tokio::spawn(write_loop(FramedWrite::new(write, SmppCodec::default()), queued, shared.clone()));
        let reader = tokio::spawn(read_loop(FramedRead::new(read, SmppCodec::default()), shared.clone(), inbound));
        let bound = tokio::time::timeout(shared.params.connect_timeout, session.request(session.bind_pdu())).await;
        let refused = match bound {
            Ok(Ok(response)) if u32::from(response.status()) == 0 => None,
            Ok(Ok(response)) => Some(OpenError::Refused(response.status().into())),
            Ok(Err(e)) => Some(OpenError::Bind(e.to_string())),
            Err(_) => Some(OpenError::Bind("no bind response".into())),
        };
        if let Some(error) = refused {
            shared.closed.cancel();
            return Err(error);
        }
        tracing::info!(connector = %shared.params.connector, kind = shared.params.kind.as_str(), ?peer, "bound");
        let keepalive = tokio::spawn(keepalive(session.clone()));
        let ended = tokio::spawn(async move {
            let reason = match reader.await {
                Ok(reason) => reason,
                Err(e) => format!("reader task failed: {e}"),
            };
            shared.closed.cancel();
            keepalive.abort();
            let _ = writer.await;
            fail_pending(&shared);
            reason
        });
        Ok((session, ended))
    }

    /// What the bind does.
    pub fn kind(&self) -> BindKind {
        self.shared.params.kind
    }

    /// Whether the session has ended or is ending.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// Free places in the window.
    pub fn available(&self) -> usize {
        self.shared.window.available_permits()
    }

    fn bind_pdu(&self) -> Pdu {
        let p = &self.shared.params;
        macro_rules! bind {
            ($pdu:ident) => {
                $pdu::builder()
                    .system_id(c_text(&p.system_id))
                    .password(c_text(&p.password))
                    .system_type(c_text(&p.system_type))
                    .interface_version(InterfaceVersion::Smpp3_4)
                    .addr_ton(Ton::Unknown)
                    .addr_npi(Npi::Unknown)
                    .build()
                    .into()
            };
        }
        match p.kind {
            BindKind::Transceiver => bind!(BindTransceiver),
            BindKind::Transmitter => bind!(BindTransmitter),
            BindKind::Receiver => bind!(BindReceiver),
        }
    }

    /// Sends a `submit_sm` within the window and waits for its response.
    pub async fn submit(&self, pdu: SubmitSm) -> Result<SubmitResponse, RequestError> {
        let shared = &self.shared;
        let Ok(_permit) = shared.window.acquire().await else { return Err(RequestError::NotSent) };
        let connector = shared.params.connector.clone();
        ::metrics::gauge!(metrics::WINDOW_IN_USE, "connector" => connector.clone()).increment(1.0);
        let started = Instant::now();
        let result = self.request(Pdu::SubmitSm(pdu)).await;
        ::metrics::gauge!(metrics::WINDOW_IN_USE, "connector" => connector.clone()).decrement(1.0);
        let response = result?;
        ::metrics::histogram!(metrics::RESPONSE_SECONDS, "connector" => connector)
            .record(started.elapsed().as_secs_f64());
        let message_id = match response.pdu() {
            Some(Pdu::SubmitSmResp(resp)) => resp.message_id().to_string(),
            _ => String::new(),
        };
        Ok(SubmitResponse { status: response.status().into(), message_id })
    }

    /// Sends a request and waits for the response that carries its sequence number.
    async fn request(&self, pdu: Pdu) -> Result<Command, RequestError> {
        let shared = &self.shared;
        if shared.closed.is_cancelled() {
            return Err(RequestError::NotSent);
        }
        let sequence = next_sequence(&shared.sequence);
        let (waiter, answer) = oneshot::channel();
        lock(&shared.pending).insert(sequence, waiter);
        if shared.outgoing.send(Command::new(CommandStatus::EsmeRok, sequence, pdu)).await.is_err() {
            lock(&shared.pending).remove(&sequence);
            return Err(RequestError::NotSent);
        }
        match tokio::time::timeout(shared.params.response_timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RequestError::LinkLost),
            Err(_) => {
                lock(&shared.pending).remove(&sequence);
                Err(RequestError::Timeout)
            }
        }
    }

    /// Ends the session politely: stops taking `submit_sm`, waits up to
    /// `drain` for the outstanding ones to be answered, then unbinds.
    pub async fn unbind(&self, drain: Duration) {
        let shared = &self.shared;
        let all = u32::try_from(shared.params.window.max(1)).unwrap_or(u32::MAX);
        match tokio::time::timeout(drain, shared.window.acquire_many(all)).await {
            Ok(Ok(permits)) => permits.forget(),
            _ => tracing::warn!(connector = %shared.params.connector, "unbinding with requests still outstanding"),
        }
        shared.window.close();
        let answered = tokio::time::timeout(Duration::from_secs(2), self.request(Pdu::Unbind)).await;
        tracing::info!(connector = %shared.params.connector, kind = shared.params.kind.as_str(), clean = matches!(answered, Ok(Ok(_))), "unbound");
        shared.closed.cancel();
    }

    /// Whether both handles are the same session.
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Ends the session at once, as a crash would (tests use it).
    pub fn abort(&self) {
        self.shared.closed.cancel();
    }
}

/// A bind field; configuration validation keeps values within their sizes.
fn c_text<const MIN: usize, const MAX: usize>(value: &str) -> COctetString<MIN, MAX> {
    COctetString::from_str(value).unwrap_or_default()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// 1 to 0x7FFFFFFF, wrapping (SMPP reserves the rest).
fn next_sequence(counter: &AtomicU32) -> u32 {
    counter.fetch_add(1, Ordering::Relaxed) % 0x7FFF_FFFF + 1
}

fn fail_pending(shared: &Shared) {
    let waiters: Vec<Waiter> = lock(&shared.pending).drain().map(|(_, w)| w).collect();
    for waiter in waiters {
        let _ = waiter.send(Err(RequestError::LinkLost));
    }
}

async fn write_loop(
    mut sink: FramedWrite<tokio::net::tcp::OwnedWriteHalf, SmppCodec>,
    mut queued: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
) {
    let mut burst = Vec::with_capacity(256);
    loop {
        let received = tokio::select! {
            n = queued.recv_many(&mut burst, 256) => n,
            () = shared.closed.cancelled() => 0,
        };
        if received == 0 {
            break;
        }
        for command in burst.drain(..) {
            if let Err(e) = sink.feed(command).await {
                tracing::warn!(connector = %shared.params.connector, error = %e, "write failed");
                shared.closed.cancel();
                return;
            }
        }
        if let Err(e) = sink.flush().await {
            tracing::warn!(connector = %shared.params.connector, error = %e, "write failed");
            shared.closed.cancel();
            return;
        }
    }
    // Whatever the reader queued last (an unbind_resp) still goes out.
    while let Ok(command) = queued.try_recv() {
        if sink.feed(command).await.is_err() {
            break;
        }
    }
    let _ = sink.flush().await;
    let _ = sink.close().await;
}

/// Reads until the link ends; returns why it ended.
async fn read_loop(
    mut stream: FramedRead<tokio::net::tcp::OwnedReadHalf, SmppCodec>,
    shared: Arc<Shared>,
    inbound: Arc<dyn InboundHandler>,
) -> String {
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = shared.closed.cancelled() => return "closed".into(),
        };
        match frame {
            None => return "the SMSC closed the connection".into(),
            Some(Err(e)) => return format!("read failed: {e}"),
            Some(Ok(Frame::Command(command))) => {
                if let Some(reason) = on_command(&shared, &inbound, *command).await {
                    return reason;
                }
            }
            Some(Ok(Frame::Malformed(header))) => on_malformed(&shared, header).await,
        }
    }
}

async fn send(shared: &Shared, command: Command) {
    let _ = shared.outgoing.send(command).await;
}

fn generic_nack(status: CommandStatus, sequence: u32) -> Command {
    Command::new(status, sequence, Pdu::GenericNack)
}

/// What a session does with one PDU from the SMSC. Pure, so that the fuzz
/// target can check no input makes the session misbehave.
#[derive(Debug)]
pub enum Reaction {
    /// A response (`generic_nack` included): wake the request with this sequence number.
    Response(u32),
    /// A `deliver_sm` for the inbound handler, answered once handled.
    Deliver(Box<rusmpp::pdus::DeliverSm>),
    /// Send this answer and go on.
    Reply(Command),
    /// Send this answer and end the session.
    ReplyAndClose(Command),
    /// Nothing to answer (`alert_notification`).
    Ignore,
}

/// How the session reacts to a PDU that decoded.
pub fn react(command: &Command) -> Reaction {
    let sequence = command.sequence_number();
    if u32::from(command.id()) & 0x8000_0000 != 0 {
        return Reaction::Response(sequence);
    }
    match command.pdu() {
        Some(Pdu::DeliverSm(pdu)) => Reaction::Deliver(Box::new(pdu.clone())),
        Some(Pdu::EnquireLink) => Reaction::Reply(Command::new(CommandStatus::EsmeRok, sequence, Pdu::EnquireLinkResp)),
        Some(Pdu::Unbind) => Reaction::ReplyAndClose(Command::new(CommandStatus::EsmeRok, sequence, Pdu::UnbindResp)),
        Some(Pdu::AlertNotification(_)) => Reaction::Ignore,
        _ => Reaction::Reply(generic_nack(CommandStatus::EsmeRinvcmdid, sequence)),
    }
}

/// The answer to a request that did not decode (a response that did not
/// decode fails its request instead, and gets no answer).
pub fn react_to_malformed(header: &Header) -> Option<Command> {
    if header.is_response() {
        return None;
    }
    if CommandId::from(header.command_id) == CommandId::DeliverSm {
        // A deliver_sm we cannot read is refused with a permanent error the
        // SMSC reports, rather than a nack of the command itself.
        let refusal = Pdu::DeliverSmResp(DeliverSmResp::builder().build());
        return Some(Command::new(CommandStatus::EsmeRxPAppn, header.sequence, refusal));
    }
    Some(generic_nack(CommandStatus::EsmeRinvcmdlen, header.sequence))
}

/// Handles one PDU from the SMSC; `Some(reason)` ends the session.
async fn on_command(shared: &Arc<Shared>, inbound: &Arc<dyn InboundHandler>, command: Command) -> Option<String> {
    let sequence = command.sequence_number();
    match react(&command) {
        Reaction::Response(sequence) => match lock(&shared.pending).remove(&sequence) {
            Some(waiter) => {
                let _ = waiter.send(Ok(command));
            }
            None => {
                ::metrics::counter!(metrics::LATE_RESPONSES, "connector" => shared.params.connector.clone())
                    .increment(1);
                tracing::debug!(connector = %shared.params.connector, sequence, id = ?command.id(), "response to no outstanding request");
            }
        },
        Reaction::Deliver(pdu) => {
            let shared = shared.clone();
            let inbound = inbound.clone();
            // Handling waits for a durable write; the reader goes on meanwhile.
            tokio::spawn(async move {
                let status = inbound.deliver_sm(*pdu).await;
                let answer = Pdu::DeliverSmResp(DeliverSmResp::builder().build());
                send(&shared, Command::new(status, sequence, answer)).await;
            });
        }
        Reaction::Reply(answer) => {
            if answer.id() == CommandId::GenericNack {
                ::metrics::counter!(metrics::GENERIC_NACKS, "connector" => shared.params.connector.clone())
                    .increment(1);
                tracing::warn!(connector = %shared.params.connector, id = ?command.id(), "unexpected request from the SMSC");
            }
            send(shared, answer).await;
        }
        Reaction::ReplyAndClose(answer) => {
            send(shared, answer).await;
            return Some("the SMSC unbound".into());
        }
        Reaction::Ignore => {}
    }
    None
}

async fn on_malformed(shared: &Shared, header: Header) {
    tracing::warn!(connector = %shared.params.connector, command_id = header.command_id, sequence = header.sequence, error = %header.error, "malformed PDU from the SMSC");
    match react_to_malformed(&header) {
        Some(answer) => {
            ::metrics::counter!(metrics::GENERIC_NACKS, "connector" => shared.params.connector.clone()).increment(1);
            send(shared, answer).await;
        }
        None => {
            if let Some(waiter) = lock(&shared.pending).remove(&header.sequence) {
                let _ = waiter.send(Err(RequestError::Malformed(header.error)));
            }
        }
    }
}

/// Sends `enquire_link` every interval; a missing answer ends the session.
async fn keepalive(session: Session) {
    let every = session.shared.params.enquire_link;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        match session.request(Pdu::EnquireLink).await {
            Ok(_) => {}
            Err(RequestError::NotSent) => return,
            Err(e) => {
                tracing::warn!(connector = %session.shared.params.connector, error = %e, "enquire_link unanswered; closing the link");
                session.shared.closed.cancel();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rusmpp::pdus::{DeliverSm, SubmitSm};

    use super::*;

    fn header(command_id: u32) -> Header {
        Header { command_id, command_status: 0, sequence: 42, error: "bad".into() }
    }

    #[test]
    fn the_smsc_gets_an_answer_to_everything_it_asks() {
        let ask = |pdu: Pdu| react(&Command::new(CommandStatus::EsmeRok, 9, pdu));
        match ask(Pdu::EnquireLink) {
            Reaction::Reply(answer) => {
                assert_eq!((answer.id(), answer.sequence_number()), (CommandId::EnquireLinkResp, 9))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(ask(Pdu::Unbind), Reaction::ReplyAndClose(a) if a.id() == CommandId::UnbindResp));
        assert!(matches!(ask(Pdu::DeliverSm(DeliverSm::default())), Reaction::Deliver(_)));
        // An ESME does not take submit_sm: refused, not fatal.
        match ask(Pdu::SubmitSm(SubmitSm::default())) {
            Reaction::Reply(answer) => {
                assert_eq!(answer.id(), CommandId::GenericNack);
                assert_eq!(answer.status(), CommandStatus::EsmeRinvcmdid);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(ask(Pdu::EnquireLinkResp), Reaction::Response(9)));
        assert!(matches!(ask(Pdu::GenericNack), Reaction::Response(9)));
    }

    #[test]
    fn malformed_requests_are_refused_and_malformed_responses_fail_their_request() {
        let answer = react_to_malformed(&header(0x0000_0005)).unwrap();
        assert_eq!(
            (answer.id(), answer.status(), answer.sequence_number()),
            (CommandId::DeliverSmResp, CommandStatus::EsmeRxPAppn, 42)
        );
        let answer = react_to_malformed(&header(0x0000_0015)).unwrap();
        assert_eq!((answer.id(), answer.status()), (CommandId::GenericNack, CommandStatus::EsmeRinvcmdlen));
        assert!(react_to_malformed(&header(0x8000_0004)).is_none());
    }

    #[test]
    fn sequence_numbers_stay_in_the_range_smpp_allows() {
        let counter = AtomicU32::new(0x7FFF_FFFE);
        let seen: Vec<u32> = (0..3).map(|_| next_sequence(&counter)).collect();
        assert_eq!(seen, vec![0x7FFF_FFFF, 1, 2]);
        assert_eq!(next_sequence(&AtomicU32::new(0)), 1);
    }
}
