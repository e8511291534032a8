//! Sender ids (the "from" of an SMS): a number, or a short alphanumeric name.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::encoding::gsm_septets;

/// Longest numeric sender: E.164 allows 15 digits.
pub const MAX_NUMERIC_LEN: usize = 15;
/// Longest alphanumeric sender: 11 GSM characters fit the TP-OA field.
pub const MAX_ALPHANUMERIC_LEN: usize = 11;

/// Why a string cannot be a sender id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderIdError {
    /// Nothing was given.
    #[error("sender id is empty")]
    Empty,
    /// Numeric senders are phone numbers or short codes: at most 15 digits.
    #[error("numeric sender id {0:?} is longer than {MAX_NUMERIC_LEN} digits")]
    NumericTooLong(String),
    /// Alphanumeric senders must fit 11 GSM characters.
    #[error("alphanumeric sender id {0:?} is longer than {MAX_ALPHANUMERIC_LEN} characters")]
    AlphanumericTooLong(String),
    /// A character outside the GSM 03.38 basic alphabet (handsets would show it garbled).
    #[error("sender id {value:?} contains {character:?}, which is not a GSM 03.38 basic character")]
    NonGsmCharacter {
        /// The whole rejected sender.
        value: String,
        /// The first offending character.
        character: char,
    },
    /// Alphanumeric senders must contain at least one letter, or networks treat them as numbers.
    #[error("sender id {0:?} must contain a letter, or be all digits")]
    NoLetter(String),
}

/// A validated sender id: numeric (short code or MSISDN) or alphanumeric.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SenderId {
    /// Digits only (an optional leading '+' is dropped): short code or long number.
    Numeric(String),
    /// A brand name such as `TernBank`.
    Alphanumeric(String),
}

impl SenderId {
    /// Validates a sender id as given in an API request.
    pub fn parse(input: &str) -> Result<Self, SenderIdError> {
        let value = input.trim();
        if value.is_empty() {
            return Err(SenderIdError::Empty);
        }
        let digits = value.strip_prefix('+').unwrap_or(value);
        if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
            if digits.len() > MAX_NUMERIC_LEN {
                return Err(SenderIdError::NumericTooLong(value.to_owned()));
            }
            return Ok(Self::Numeric(digits.to_owned()));
        }
        // Escaped (extension-table) characters are refused too: TP-OA has no room for them.
        if let Some(character) = value.chars().find(|&c| gsm_septets(c) != Some(1)) {
            return Err(SenderIdError::NonGsmCharacter { value: value.to_owned(), character });
        }
        if value.chars().count() > MAX_ALPHANUMERIC_LEN {
            return Err(SenderIdError::AlphanumericTooLong(value.to_owned()));
        }
        if !value.chars().any(char::is_alphabetic) {
            return Err(SenderIdError::NoLetter(value.to_owned()));
        }
        Ok(Self::Alphanumeric(value.to_owned()))
    }

    /// The sender as sent to the SMSC.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Numeric(s) | Self::Alphanumeric(s) => s,
        }
    }

    /// Whether the sender is alphanumeric (SMPP source_addr_ton 5).
    pub fn is_alphanumeric(&self) -> bool {
        matches!(self, Self::Alphanumeric(_))
    }
}

impl fmt::Display for SenderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SenderId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SenderId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_numeric_and_alphanumeric() {
        assert_eq!(SenderId::parse("+447700900123").unwrap(), SenderId::Numeric("447700900123".into()));
        assert_eq!(SenderId::parse("12345").unwrap(), SenderId::Numeric("12345".into()));
        assert_eq!(SenderId::parse("123456789012345").unwrap().as_str(), "123456789012345");
        let brand = SenderId::parse("Tern Bank").unwrap();
        assert!(brand.is_alphanumeric());
        assert_eq!(SenderId::parse("ÄpfelÖl").unwrap().as_str(), "ÄpfelÖl");
        assert_eq!(SenderId::parse("ABCDEFGHIJK").unwrap().as_str(), "ABCDEFGHIJK");
    }

    #[test]
    fn rejects_with_specific_reasons() {
        assert_eq!(SenderId::parse(" "), Err(SenderIdError::Empty));
        assert!(matches!(SenderId::parse("1234567890123456"), Err(SenderIdError::NumericTooLong(_))));
        assert!(matches!(SenderId::parse("ABCDEFGHIJKL"), Err(SenderIdError::AlphanumericTooLong(_))));
        assert!(matches!(SenderId::parse("Tern€"), Err(SenderIdError::NonGsmCharacter { character: '€', .. })));
        assert!(matches!(SenderId::parse("Tërn"), Err(SenderIdError::NonGsmCharacter { character: 'ë', .. })));
        assert!(matches!(SenderId::parse("12-34"), Err(SenderIdError::NoLetter(_))));
    }
}
