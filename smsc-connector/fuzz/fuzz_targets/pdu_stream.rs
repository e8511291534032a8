//! Whatever bytes an SMSC sends, the session frames them, reacts to each
//! PDU (answers, nacks, hands deliver_sm on) and reads deliver_sm without
//! panicking; every answer it would send encodes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tern_smsc_connector::deliver::classify;
use tern_smsc_connector::session::{Reaction, react, react_to_malformed};
use tern_smsc_connector::smpp::{Frame, SmppCodec};
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let mut codec = SmppCodec::default();
    let mut stream = BytesMut::from(data);
    let now = chrono::Utc::now();
    let mut out = BytesMut::new();
    // A bad length ends the link (an error), never a panic or a loop.
    while let Ok(Some(frame)) = codec.decode(&mut stream) {
        let answer = match frame {
            Frame::Command(command) => match react(&command) {
                Reaction::Deliver(pdu) => {
                    let _ = classify(&pdu, now);
                    None
                }
                Reaction::Reply(answer) | Reaction::ReplyAndClose(answer) => Some(answer),
                Reaction::Response(_) | Reaction::Ignore => None,
            },
            Frame::Malformed(header) => react_to_malformed(&header),
        };
        if let Some(answer) = answer {
            assert!(codec.encode(answer, &mut out).is_ok());
        }
    }
});
