//! SMPP 3.4 connectors to SMSCs, and the SMSC simulator.
//!
//! Filled by the connector issue.
