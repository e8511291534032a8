//! One client connection: a session task that reads PDUs, answers them and
//! keeps the timers, and a writer task that drains what the session sends
//! in batches (one flush for whatever queued up meanwhile), so the socket
//! sees few large writes under load.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc::{self, Receiver, Sender, UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::{debug, info};

use super::config::SimConfig;
use super::hub::{Control, Hub, Inbound};
use super::outbox::{Kind, Outbox, Timed};
use super::pdus::{self, BindKind};
use super::stats::Stats;
use crate::smpp::{Frame, SmppCodec};

/// Commands queued for the writer; the session waits when it is this far
/// ahead of the socket, which is the back-pressure a flooding client gets.
const OUT_CAPACITY: usize = 4096;
/// Most commands the writer encodes per flush.
const WRITE_BATCH: usize = 512;
/// Most frames handled per wake-up before timers and deliveries get a turn.
const READ_BATCH: usize = 64;
/// How long a polite stop waits for `unbind_resp`.
const UNBIND_WAIT: Duration = Duration::from_secs(1);

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The client closed the connection.
    Gone,
    /// The stream could not be framed any more, or I/O failed.
    Broken,
    /// The client unbound.
    Unbound,
    /// The bind was refused.
    Refused,
    /// The simulator dropped the link (a fault injected).
    Dropped,
    /// The simulator is stopping.
    Stopped,
}

/// A successful bind.
#[derive(Debug, Clone)]
pub(super) struct Bound {
    pub(super) system_id: Arc<str>,
    pub(super) kind: BindKind,
}

/// The state of one connection, owned by its session task.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) hub: Arc<Hub>,
    pub(super) id: u64,
    pub(super) peer: SocketAddr,
    pub(super) config: Arc<SimConfig>,
    config_version: u64,
    pub(super) bound: Option<Bound>,
    out: Sender<Command>,
    inbound: UnboundedSender<Inbound>,
    pub(super) rng: SmallRng,
    next_sequence: u32,
    pub(super) submits: u64,
    pub(super) outbox: Outbox,
    unbinding: Option<(u32, Instant)>,
    pub(super) end: Option<End>,
}

/// Serves one accepted connection until it ends.
pub(crate) async fn serve(hub: Arc<Hub>, stream: TcpStream, peer: SocketAddr) {
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%peer, %error, "TCP_NODELAY not set");
    }
    let (read, write) = stream.into_split();
    let (control_tx, mut control) = mpsc::unbounded_channel();
    let (out, out_rx) = mpsc::channel(OUT_CAPACITY);
    let writer = tokio::spawn(write_loop(FramedWrite::new(write, SmppCodec::default()), out_rx));
    let (inbound_tx, mut inbound) = mpsc::unbounded_channel();
    let id = hub.register(control_tx);
    let config = hub.config();
    let config_version = hub.config_version();
    let mut session = Session {
        hub,
        id,
        peer,
        config,
        config_version,
        bound: None,
        out,
        inbound: inbound_tx,
        rng: SmallRng::from_rng(&mut rand::rng()),
        next_sequence: 0,
        submits: 0,
        outbox: Outbox::default(),
        unbinding: None,
        end: None,
    };
    let mut frames = FramedRead::new(read, SmppCodec::default());
    let end = session.run(&mut frames, &mut control, &mut inbound).await;
    debug!(%peer, ?end, "connection ends");
    session.leave(&mut inbound);
    // The writer sends what is queued, then closes its half.
    drop(session);
    drop(frames);
    let _ = writer.await;
}

async fn write_loop(mut sink: FramedWrite<OwnedWriteHalf, SmppCodec>, mut commands: Receiver<Command>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while commands.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        for command in batch.drain(..) {
            if let Err(error) = sink.feed(command).await {
                debug!(%error, "write failed");
                return;
            }
        }
        if let Err(error) = sink.flush().await {
            debug!(%error, "flush failed");
            return;
        }
    }
    let _ = sink.close().await;
}

impl Session {
    async fn run(
        &mut self,
        frames: &mut FramedRead<OwnedReadHalf, SmppCodec>,
        control: &mut UnboundedReceiver<Control>,
        inbound: &mut UnboundedReceiver<Inbound>,
    ) -> End {
        let sleep = tokio::time::sleep_until(Instant::now());
        tokio::pin!(sleep);
        let mut armed = None;
        loop {
            if let Some(end) = self.end {
                return end;
            }
            let wakeup = self.next_wakeup();
            if wakeup != armed {
                if let Some(at) = wakeup {
                    sleep.as_mut().reset(at);
                }
                armed = wakeup;
            }
            // Timers and deliveries first: they are bounded work, while a
            // client that never stops sending would otherwise starve them.
            tokio::select! {
                biased;
                Some(control) = control.recv() => self.on_control(control).await,
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    self.on_timer().await;
                }
                Some(batch) = inbound.recv() => {
                    for (due, delivery) in batch {
                        self.outbox.schedule(due, Timed::Deliver(delivery));
                    }
                }
                frame = frames.next() => {
                    self.on_read(frame).await;
                    // Frames already buffered are handled without another
                    // trip through the scheduler.
                    for _ in 1..READ_BATCH {
                        if self.end.is_some() {
                            break;
                        }
                        match frames.next().now_or_never() {
                            Some(frame) => self.on_read(frame).await,
                            None => break,
                        }
                    }
                }
            }
            self.pump().await;
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let unbind = self.unbinding.map(|(_, at)| at);
        match (self.outbox.next_wakeup(), unbind) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Leaves the hub, handing every receipt and MO still owed to another
    /// bind of the system_id (or to the store until one binds): an SMSC
    /// does not lose receipts because a link dropped.
    fn leave(&mut self, inbound: &mut UnboundedReceiver<Inbound>) {
        self.hub.unregister(self.id);
        let Some(bound) = self.bound.take() else { return };
        Stats::sub(&self.hub.stats.binds_active, 1);
        if bound.kind.receives() {
            // After this, nothing new reaches `inbound`: the hub sends only
            // to registered receivers, under the same lock.
            self.hub.remove_receiver(&bound.system_id, self.id);
        }
        let mut owed = self.outbox.take_deliveries(Instant::now());
        while let Ok(batch) = inbound.try_recv() {
            owed.extend(batch);
        }
        if !owed.is_empty() {
            debug!(peer = %self.peer, owed = owed.len(), "handing back deliveries");
        }
        self.hub.route(&bound.system_id, owed);
    }

    /// Queues a command for the writer; a gone writer ends the session.
    pub(super) async fn send(&mut self, command: Command) {
        if self.out.send(command).await.is_err() {
            self.end.get_or_insert(End::Broken);
        }
    }

    fn sequence(&mut self) -> u32 {
        // SMPP sequence numbers run 1..=0x7FFFFFFF.
        self.next_sequence = if self.next_sequence >= 0x7FFF_FFFF { 1 } else { self.next_sequence + 1 };
        self.next_sequence
    }

    async fn on_control(&mut self, control: Control) {
        match control {
            Control::Disconnect => {
                info!(peer = %self.peer, "dropping the link");
                Stats::bump(&self.hub.stats.disconnects);
                self.end = Some(End::Dropped);
            }
            Control::Unbind if self.bound.is_some() && self.unbinding.is_none() => {
                let sequence = self.sequence();
                self.unbinding = Some((sequence, Instant::now() + UNBIND_WAIT));
                self.send(pdus::bare(Pdu::Unbind, sequence)).await;
            }
            Control::Unbind => {
                self.end.get_or_insert(End::Stopped);
            }
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        while let Some(response) = self.outbox.pop_due_response(now) {
            self.send(response).await;
        }
        let overdue = self.outbox.overdue(now);
        if !overdue.is_empty() {
            Stats::add(&self.hub.stats.deliver_sm_timeouts, overdue.len() as u64);
            let retry = now + Duration::from_millis(self.config.redeliver_after_ms);
            for delivery in overdue {
                self.outbox.schedule(retry, Timed::Deliver(delivery));
            }
        }
        if self.unbinding.is_some_and(|(_, at)| at <= now) {
            debug!(peer = %self.peer, "no unbind_resp in time");
            self.end.get_or_insert(End::Stopped);
        }
    }

    /// Sends due deliveries while the window has room.
    pub(super) async fn pump(&mut self) {
        if self.end.is_some() || self.unbinding.is_some() {
            return;
        }
        if !self.bound.as_ref().is_some_and(|bound| bound.kind.receives()) {
            return;
        }
        let deadline = Instant::now() + Duration::from_millis(self.config.deliver_timeout_ms);
        while let Some(mut delivery) = self.outbox.next_ready(self.config.window) {
            let stats = &self.hub.stats;
            Stats::bump(match (delivery.attempts, delivery.kind) {
                (0, Kind::Receipt) => &stats.receipts_sent,
                (0, Kind::Mo) => &stats.mo_sent,
                _ => &stats.redelivered,
            });
            delivery.attempts += 1;
            let sequence = self.sequence();
            let command = Command::new(CommandStatus::EsmeRok, sequence, Pdu::DeliverSm(delivery.pdu.clone()));
            self.outbox.sent(sequence, delivery, deadline);
            self.send(command).await;
            if self.end.is_some() {
                return;
            }
        }
    }

    async fn on_read(&mut self, frame: Option<std::io::Result<Frame>>) {
        match frame {
            None => {
                self.end.get_or_insert(End::Gone);
            }
            Some(Err(error)) => {
                info!(peer = %self.peer, %error, "closing an unreadable link");
                self.end.get_or_insert(End::Broken);
            }
            Some(Ok(frame)) => {
                self.refresh_config();
                match frame {
                    Frame::Command(command) => self.on_command(*command).await,
                    Frame::Malformed(header) => {
                        debug!(peer = %self.peer, ?header, "malformed PDU");
                        if header.is_response() {
                            // The header alone says whether a deliver_sm
                            // was taken.
                            self.on_response(header.command_id, header.command_status, header.sequence);
                        } else {
                            self.nack(CommandStatus::EsmeRinvcmdlen, header.sequence).await;
                        }
                    }
                }
            }
        }
    }

    fn refresh_config(&mut self) {
        let version = self.hub.config_version();
        if version != self.config_version {
            self.config = self.hub.config();
            self.config_version = version;
        }
    }

    async fn nack(&mut self, status: CommandStatus, sequence: u32) {
        Stats::bump(&self.hub.stats.generic_nacks_sent);
        self.send(pdus::generic_nack(status, sequence)).await;
    }

    async fn on_command(&mut self, command: Command) {
        let (id, sequence) = (command.id(), command.sequence_number());
        match command.pdu() {
            Some(Pdu::BindTransmitter(bind)) => {
                self.on_bind(BindKind::Transmitter, bind.system_id.as_str(), bind.password.as_str(), sequence).await;
            }
            Some(Pdu::BindReceiver(bind)) => {
                self.on_bind(BindKind::Receiver, bind.system_id.as_str(), bind.password.as_str(), sequence).await;
            }
            Some(Pdu::BindTransceiver(bind)) => {
                self.on_bind(BindKind::Transceiver, bind.system_id.as_str(), bind.password.as_str(), sequence).await;
            }
            Some(Pdu::SubmitSm(submit)) => self.on_submit(submit.into(), sequence, CommandId::SubmitSmResp).await,
            Some(Pdu::DataSm(data)) => self.on_submit(data.into(), sequence, CommandId::DataSmResp).await,
            Some(Pdu::EnquireLink) => {
                Stats::bump(&self.hub.stats.enquire_links);
                self.send(pdus::bare(Pdu::EnquireLinkResp, sequence)).await;
            }
            Some(Pdu::Unbind) => {
                info!(peer = %self.peer, "unbind");
                Stats::bump(&self.hub.stats.unbinds);
                self.send(pdus::bare(Pdu::UnbindResp, sequence)).await;
                self.end.get_or_insert(End::Unbound);
            }
            Some(Pdu::GenericNack) => {
                debug!(peer = %self.peer, sequence, status = ?command.status(), "generic_nack received");
                Stats::bump(&self.hub.stats.generic_nacks_received);
            }
            _ if id.is_response() => self.on_response(u32::from(id), u32::from(command.status()), sequence),
            // Unknown commands, with or without a body.
            _ if matches!(id, CommandId::Other(_)) => self.nack(CommandStatus::EsmeRinvcmdid, sequence).await,
            // A known request with no body where one is due is too short.
            None => self.nack(CommandStatus::EsmeRinvcmdlen, sequence).await,
            // Those the simulator does not offer (query_sm, submit_multi...).
            Some(_) => self.nack(CommandStatus::EsmeRinvcmdid, sequence).await,
        }
    }

    /// A response, decoded or only its header.
    fn on_response(&mut self, command_id: u32, status: u32, sequence: u32) {
        if command_id == u32::from(CommandId::DeliverSmResp) {
            self.on_deliver_sm_resp(sequence, status);
        } else if command_id == u32::from(CommandId::UnbindResp)
            && self.unbinding.is_some_and(|(awaited, _)| awaited == sequence)
        {
            info!(peer = %self.peer, "unbound");
            Stats::bump(&self.hub.stats.unbinds);
            self.end.get_or_insert(End::Stopped);
        } else if command_id == u32::from(CommandId::GenericNack) {
            Stats::bump(&self.hub.stats.generic_nacks_received);
        }
    }

    fn on_deliver_sm_resp(&mut self, sequence: u32, status: u32) {
        let Some(delivery) = self.outbox.answered(sequence) else {
            debug!(peer = %self.peer, sequence, "deliver_sm_resp for no deliver_sm outstanding");
            return;
        };
        let stats = &self.hub.stats;
        if status == 0 {
            Stats::bump(match delivery.kind {
                Kind::Receipt => &stats.receipts_acked,
                Kind::Mo => &stats.mo_acked,
            });
        } else {
            // At least once, like a real SMSC: a refused deliver_sm comes again.
            Stats::bump(&stats.deliver_sm_refused);
            let retry = Instant::now() + Duration::from_millis(self.config.redeliver_after_ms);
            self.outbox.schedule(retry, Timed::Deliver(delivery));
        }
    }

    async fn on_bind(&mut self, kind: BindKind, system_id: &str, password: &str, sequence: u32) {
        if self.bound.is_some() {
            self.send(pdus::bind_refused(kind, CommandStatus::EsmeRalybnd, sequence)).await;
            return;
        }
        let refusal = match self.config.accounts.iter().find(|account| account.system_id == system_id) {
            None => Some(CommandStatus::EsmeRinvsysid),
            Some(account) if account.password != password => Some(CommandStatus::EsmeRinvpaswd),
            Some(_) => None,
        };
        if let Some(status) = refusal {
            info!(peer = %self.peer, system_id, ?kind, ?status, "bind refused");
            Stats::bump(&self.hub.stats.bind_refused);
            self.send(pdus::bind_refused(kind, status, sequence)).await;
            self.end.get_or_insert(End::Refused);
            return;
        }
        info!(peer = %self.peer, system_id, ?kind, "bound");
        Stats::bump(&self.hub.stats.binds_total);
        Stats::bump(&self.hub.stats.binds_active);
        self.send(pdus::bind_resp(kind, sequence)).await;
        let system_id: Arc<str> = Arc::from(system_id);
        if kind.receives() {
            for (due, delivery) in self.hub.add_receiver(&system_id, self.id, self.inbound.clone()) {
                self.outbox.schedule(due, Timed::Deliver(delivery));
            }
        }
        self.bound = Some(Bound { system_id, kind });
    }
}
