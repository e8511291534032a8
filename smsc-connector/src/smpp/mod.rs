//! SMPP plumbing shared by the connector and the simulator.

pub mod codec;

pub use codec::{Frame, Header, SmppCodec};
