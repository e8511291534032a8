//! Framing on top of rusmpp's codec.
//!
//! rusmpp's `CommandCodec` returns an error for a PDU it cannot decode, and
//! a `Framed` stream ends at the first error: one odd PDU from an SMSC would
//! drop the bind. Here the frame is cut by its `command_length` first, so a
//! body that does not decode only costs that frame: it comes out as
//! [`Frame::Malformed`] with its header, and the session answers it with a
//! `generic_nack` (or fails the one request it answered) and carries on.
//! Only a `command_length` that cannot be trusted ends the link, because
//! nothing after it can be framed.

use bytes::BytesMut;
use rusmpp::Command;
use rusmpp::tokio_codec::CommandCodec;
use tokio_util::codec::{Decoder, Encoder};

/// Smallest PDU: the 16-octet header.
const HEADER: usize = 16;

/// One PDU read from the link.
#[derive(Debug)]
pub enum Frame {
    /// A PDU that decoded (boxed: most frames are small, a deliver_sm is not).
    Command(Box<Command>),
    /// A PDU whose body did not decode; its header is intact.
    Malformed(Header),
}

/// The header of a PDU that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `command_id`.
    pub command_id: u32,
    /// `command_status`.
    pub command_status: u32,
    /// `sequence_number`.
    pub sequence: u32,
    /// What was wrong with the body.
    pub error: String,
}

impl Header {
    /// Whether the PDU is a response (bit 31 of `command_id`).
    pub fn is_response(&self) -> bool {
        self.command_id & 0x8000_0000 != 0
    }
}

/// Frames SMPP PDUs; see the module documentation.
#[derive(Debug)]
pub struct SmppCodec {
    inner: CommandCodec,
    max_length: usize,
}

impl SmppCodec {
    /// A codec refusing PDUs longer than `max_length` octets.
    pub fn new(max_length: usize) -> Self {
        Self { inner: CommandCodec::new().without_max_length(), max_length }
    }
}

impl Default for SmppCodec {
    /// 64 KiB: a `message_payload` may carry a long message whole.
    fn default() -> Self {
        Self::new(64 * 1024)
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(slice) = bytes.get(at..at + 4) {
        word.copy_from_slice(slice);
    }
    u32::from_be_bytes(word)
}

impl Decoder for SmppCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        if src.len() < 4 {
            return Ok(None);
        }
        let length = usize::try_from(be_u32(src, 0)).unwrap_or(usize::MAX);
        if !(HEADER..=self.max_length).contains(&length) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "command_length {length} is outside {HEADER}..={}: the stream cannot be framed",
                    self.max_length
                ),
            ));
        }
        if src.len() < length {
            src.reserve(length - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(length);
        let (command_id, command_status, sequence) = (be_u32(&frame, 4), be_u32(&frame, 8), be_u32(&frame, 12));
        let malformed = match self.inner.decode(&mut frame) {
            Ok(Some(command)) => return Ok(Some(Frame::Command(Box::new(command)))),
            Ok(None) => "the PDU ended early".to_owned(),
            Err(e) => e.to_string(),
        };
        // The inner codec may have stopped mid-frame; what is left of the
        // frame is dropped with it, and the next frame starts clean.
        self.inner = CommandCodec::new().without_max_length();
        Ok(Some(Frame::Malformed(Header { command_id, command_status, sequence, error: malformed })))
    }
}

impl Encoder<Command> for SmppCodec {
    type Error = std::io::Error;

    fn encode(&mut self, command: Command, dst: &mut BytesMut) -> Result<(), Self::Error> {
        self.inner.encode(command, dst).map_err(|e| std::io::Error::other(e.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rusmpp::{CommandStatus, Pdu};

    use super::*;

    fn encoded(command: Command) -> BytesMut {
        let mut buffer = BytesMut::new();
        SmppCodec::default().encode(command, &mut buffer).unwrap();
        buffer
    }

    #[test]
    fn a_bad_body_costs_one_frame_not_the_link() {
        let mut stream = BytesMut::new();
        // A submit_sm_resp whose message_id runs past the frame (no NUL).
        stream.extend_from_slice(&[0, 0, 0, 20, 0x80, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 7, b'a', b'b', b'c', b'd']);
        stream.extend_from_slice(&encoded(Command::new(CommandStatus::EsmeRok, 8, Pdu::EnquireLink)));
        let mut codec = SmppCodec::default();
        match codec.decode(&mut stream).unwrap() {
            Some(Frame::Malformed(header)) => {
                assert_eq!((header.command_id, header.sequence), (0x8000_0004, 7));
                assert!(header.is_response());
            }
            other => panic!("expected a malformed frame, got {other:?}"),
        }
        match codec.decode(&mut stream).unwrap() {
            Some(Frame::Command(command)) => assert_eq!(command.sequence_number(), 8),
            other => panic!("expected the next PDU, got {other:?}"),
        }
        assert!(codec.decode(&mut stream).unwrap().is_none());
    }

    #[test]
    fn partial_frames_wait_and_untrustworthy_lengths_end_the_stream() {
        let whole = encoded(Command::new(CommandStatus::EsmeRok, 1, Pdu::EnquireLink));
        let mut codec = SmppCodec::default();
        let mut partial = BytesMut::from(&whole[..10]);
        assert!(codec.decode(&mut partial).unwrap().is_none());
        partial.extend_from_slice(&whole[10..]);
        assert!(matches!(codec.decode(&mut partial).unwrap(), Some(Frame::Command(_))));
        for length in [0u32, 15, 1 << 20] {
            let mut bad = BytesMut::from(&length.to_be_bytes()[..]);
            bad.extend_from_slice(&[0; 16]);
            assert!(SmppCodec::default().decode(&mut bad).is_err(), "length {length}");
        }
    }
}
