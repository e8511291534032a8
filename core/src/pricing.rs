//! Price plans: what one SMS segment costs an account, by destination.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Msisdn;

/// Prices per segment in integer minor units of the account's currency.
///
/// The longest matching number prefix wins, then the destination's ISO
/// country, then `default`; a destination none of them covers has no price
/// (routing or billing decide what that means).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricePlan {
    /// Price for any destination not otherwise listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<i64>,
    /// Price by ISO 3166 country code of the destination ("GB", "US").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub countries: BTreeMap<String, i64>,
    /// Price by E.164 digit prefix, without '+' ("4477", "1").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prefixes: BTreeMap<String, i64>,
}

/// A price plan that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricePlanError {
    /// A price below zero.
    #[error("price for {0} is negative")]
    Negative(String),
    /// A prefix that is not 1 to 15 digits.
    #[error("prefix {0:?} must be 1 to 15 digits")]
    BadPrefix(String),
    /// A country that is not two capital letters.
    #[error("country {0:?} must be an ISO 3166 alpha-2 code such as \"GB\"")]
    BadCountry(String),
}

impl PricePlan {
    /// Checks every entry.
    pub fn validate(&self) -> Result<(), PricePlanError> {
        if self.default.is_some_and(|p| p < 0) {
            return Err(PricePlanError::Negative("default".into()));
        }
        for (prefix, price) in &self.prefixes {
            if prefix.is_empty() || prefix.len() > 15 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                return Err(PricePlanError::BadPrefix(prefix.clone()));
            }
            if *price < 0 {
                return Err(PricePlanError::Negative(format!("prefix {prefix}")));
            }
        }
        for (country, price) in &self.countries {
            if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(PricePlanError::BadCountry(country.clone()));
            }
            if *price < 0 {
                return Err(PricePlanError::Negative(format!("country {country}")));
            }
        }
        Ok(())
    }

    /// Price of one segment to `to`, if the plan covers it.
    pub fn segment_price(&self, to: &Msisdn) -> Option<i64> {
        let digits = to.digits();
        (1..=digits.len())
            .rev()
            .find_map(|len| self.prefixes.get(&digits[..len]).copied())
            .or_else(|| to.country().and_then(|c| self.countries.get(c).copied()))
            .or(self.default)
    }

    /// Price of a message of `segments` segments to `to`.
    pub fn price(&self, to: &Msisdn, segments: u16) -> Option<i64> {
        self.segment_price(to).and_then(|p| p.checked_mul(i64::from(segments)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_then_country_then_default() {
        let plan = PricePlan {
            default: Some(9),
            countries: [("GB".to_string(), 5)].into(),
            prefixes: [("44".to_string(), 4), ("4474".to_string(), 3)].into(),
        };
        plan.validate().unwrap();
        assert_eq!(plan.segment_price(&Msisdn::parse("+447400123456").unwrap()), Some(3));
        assert_eq!(plan.segment_price(&Msisdn::parse("+442079460000").unwrap()), Some(4));
        assert_eq!(plan.price(&Msisdn::parse("+14155550100").unwrap(), 3), Some(27));
        let no_default = PricePlan { default: None, ..plan };
        assert_eq!(no_default.segment_price(&Msisdn::parse("+14155550100").unwrap()), None);
    }

    #[test]
    fn bad_plans_are_refused() {
        let bad = PricePlan { prefixes: [("4a".to_string(), 1)].into(), ..PricePlan::default() };
        assert!(matches!(bad.validate(), Err(PricePlanError::BadPrefix(_))));
        let bad = PricePlan { countries: [("gb".to_string(), 1)].into(), ..PricePlan::default() };
        assert!(matches!(bad.validate(), Err(PricePlanError::BadCountry(_))));
        let bad = PricePlan { default: Some(-1), ..PricePlan::default() };
        assert!(matches!(bad.validate(), Err(PricePlanError::Negative(_))));
    }
}
