//! Destination numbers (MSISDNs) in E.164.

use std::fmt;
use std::str::FromStr;

use phonenumber::{Mode, PhoneNumber};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a usable destination number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsisdnError {
    /// Nothing was given.
    #[error("phone number is empty")]
    Empty,
    /// Characters other than digits, a leading '+', spaces, dots, dashes or parentheses.
    #[error("phone number {0:?} contains characters that are not digits")]
    BadCharacters(String),
    /// Without a leading '+' the country cannot be known.
    #[error("phone number {0:?} must be in international format, starting with '+' and the country code")]
    NotInternational(String),
    /// The number could not be parsed at all.
    #[error("phone number {0:?} could not be parsed: {1}")]
    Unparseable(String, String),
    /// Parsed, but not a number that exists in its country's numbering plan.
    #[error("phone number {0:?} is not a valid number in its country's numbering plan")]
    Invalid(String),
}

/// A validated phone number in E.164 form (`+` and up to 15 digits), with the
/// ISO 3166 country it belongs to, for routing and pricing.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Msisdn {
    e164: String,
    country: Option<String>,
}

impl Msisdn {
    /// Validates and normalises a number given in international format.
    /// Formatting characters (spaces, dots, dashes, parentheses) are allowed
    /// and dropped; a number must be valid in its country's numbering plan.
    pub fn parse(input: &str) -> Result<Self, MsisdnError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(MsisdnError::Empty);
        }
        let allowed = |c: char| c.is_ascii_digit() || matches!(c, '+' | ' ' | '.' | '-' | '(' | ')');
        if !trimmed.chars().all(allowed) || trimmed.rfind('+').is_some_and(|i| i != 0) {
            return Err(MsisdnError::BadCharacters(input.to_owned()));
        }
        if !trimmed.starts_with('+') {
            return Err(MsisdnError::NotInternational(input.to_owned()));
        }
        let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        if let Some((_, country)) = crate::numbering::validate(&digits) {
            return Ok(Self { e164: format!("+{digits}"), country });
        }
        Self::parse_slowly(input, trimmed)
    }

    /// The full libphonenumber parse, for what the fast path cannot confirm.
    fn parse_slowly(input: &str, trimmed: &str) -> Result<Self, MsisdnError> {
        let number: PhoneNumber =
            phonenumber::parse(None, trimmed).map_err(|e| MsisdnError::Unparseable(input.to_owned(), e.to_string()))?;
        if !phonenumber::is_valid(&number) {
            return Err(MsisdnError::Invalid(input.to_owned()));
        }
        let e164 = number.format().mode(Mode::E164).to_string();
        let country = number.country().id().map(|id| id.as_ref().to_owned());
        Ok(Self { e164, country })
    }

    /// Loads the numbering metadata now (under 0.1 s) instead of on the
    /// first number parsed. Each calling code's patterns compile on its
    /// first number (a few ms, 50 ms for +1's 25 regions), once per
    /// process: compiling every country up front took 0.5 s and 90 MB.
    pub fn prepare() {
        crate::numbering::prepare();
    }

    /// The number in E.164 form, e.g. `+447400123456`.
    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// The number without the leading `+`, as SMPP peers expect it (TON international).
    pub fn digits(&self) -> &str {
        self.e164.trim_start_matches('+')
    }

    /// ISO 3166-1 alpha-2 code of the number's country (`GB`, `US`...), when the
    /// numbering plan names one (non-geographic codes such as +882 have none).
    pub fn country(&self) -> Option<&str> {
        self.country.as_deref()
    }
}

impl fmt::Debug for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Msisdn({})", self.e164)
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.e164)
    }
}

impl FromStr for Msisdn {
    type Err = MsisdnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Msisdn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.e164)
    }
}

impl<'de> Deserialize<'de> for Msisdn {
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
    fn normalises_formatting_and_finds_the_country() {
        let n = Msisdn::parse(" +44 (7400) 123-456 ").unwrap();
        assert_eq!(n.as_str(), "+447400123456");
        assert_eq!(n.digits(), "447400123456");
        assert_eq!(Msisdn::parse("+44.7400.123.456").unwrap(), n);
        assert_eq!(n.country(), Some("GB"));
        assert_eq!(Msisdn::parse("+1 202 555 0143").unwrap().country(), Some("US"));
        assert_eq!(Msisdn::parse("+49 1512 3456789").unwrap().country(), Some("DE"));
    }

    #[test]
    fn rejects_bad_numbers_with_specific_errors() {
        assert_eq!(Msisdn::parse("  "), Err(MsisdnError::Empty));
        assert!(matches!(Msisdn::parse("+44abc"), Err(MsisdnError::BadCharacters(_))));
        assert!(matches!(Msisdn::parse("4+47700900123"), Err(MsisdnError::BadCharacters(_))));
        assert!(matches!(Msisdn::parse("07700900123"), Err(MsisdnError::NotInternational(_))));
        assert!(matches!(Msisdn::parse("+44 12"), Err(MsisdnError::Invalid(_) | MsisdnError::Unparseable(..))));
        assert!(matches!(Msisdn::parse("+999 1234567"), Err(MsisdnError::Invalid(_) | MsisdnError::Unparseable(..))));
    }

    #[test]
    fn serde_validates() {
        let n: Msisdn = serde_json::from_str("\"+447400123456\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"+447400123456\"");
        assert!(serde_json::from_str::<Msisdn>("\"12\"").is_err());
    }
}
