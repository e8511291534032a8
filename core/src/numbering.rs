//! A fast path for validating E.164 numbers: the numbering-plan patterns of
//! the `phonenumber` crate's metadata (libphonenumber's), compiled once per
//! calling code into our own regexes.
//!
//! Why: `phonenumber` looks every pattern up in one process-wide LRU of
//! compiled regexes behind a mutex, hashing the pattern text on each use.
//! Validating one number costs a dozen such lookups, and at bulk-send rates
//! that was a third of the submission role's CPU. The rules are the same
//! (national number must match the region's general pattern and one of its
//! number types); a number this path cannot confirm goes to `phonenumber`
//! itself, so the fast path can only make an answer faster, never different
//! (a property test in `tests/numbering_props.rs` compares the two).

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};

use phonenumber::metadata::{DATABASE, Metadata};
use regex::{Regex, RegexBuilder};

struct Region {
    id: String,
    leading_digits: Option<Regex>,
    /// What a national prefix looks like here (the "8" of Russia's 8 811...).
    national_prefix: Option<Regex>,
    general: Regex,
    types: Vec<Regex>,
}

impl Region {
    fn new(meta: &Metadata) -> Option<Self> {
        let d = meta.descriptors();
        // The metadata's patterns are laid out over lines: whitespace is not part of them.
        let compile = |pattern: String| RegexBuilder::new(&pattern).ignore_whitespace(true).build().ok();
        let anchored = |pattern: &str| compile(format!("^(?:{pattern})$"));
        let types = [
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ];
        let mut compiled = Vec::new();
        for desc in types.into_iter().flatten() {
            compiled.push(anchored(desc.national_number().as_str())?);
        }
        let leading_digits = match meta.leading_digits() {
            Some(p) => Some(compile(format!("^(?:{})", p.as_str()))?),
            None => None,
        };
        let national_prefix = match (meta.national_prefix_for_parsing(), meta.national_prefix()) {
            (Some(p), _) => Some(compile(format!("^(?:{})", p.as_str()))?),
            (None, Some(p)) => Some(compile(format!("^{}", regex::escape(p)))?),
            (None, None) => None,
        };
        Some(Self {
            id: meta.id().to_owned(),
            leading_digits,
            national_prefix,
            general: anchored(d.general().national_number().as_str())?,
            types: compiled,
        })
    }

    fn is_valid(&self, national: &str) -> bool {
        self.general.is_match(national) && self.types.iter().any(|t| t.is_match(national))
    }
}

/// Regions by calling code, main region first (as libphonenumber orders
/// them), each code's compiled on first use: all of them take about 90 MB,
/// and most deployments see a handful of countries. `None`: a region whose
/// patterns our regex engine refuses, left to the slow path.
static PLAN: LazyLock<HashMap<u16, OnceLock<Option<Vec<Region>>>>> = LazyLock::new(|| {
    (1..=999u16).filter(|code| DATABASE.by_code(code).is_some()).map(|code| (code, OnceLock::new())).collect()
});

fn regions(code: u16) -> Option<&'static [Region]> {
    let slot = PLAN.get(&code)?;
    slot.get_or_init(|| {
        let metas = DATABASE.by_code(&code)?;
        let regions: Option<Vec<Region>> = metas.into_iter().map(Region::new).collect();
        regions.filter(|r| !r.is_empty())
    })
    .as_deref()
}

/// Loads the numbering metadata if it is not loaded yet (regions compile on first use).
pub(crate) fn prepare() {
    LazyLock::force(&PLAN);
}

/// For `digits` (an E.164 number without '+'), the country code length and
/// the region id (`None` for non-geographic codes) if the number is valid.
/// `None` means "not confirmed": ask `phonenumber`.
pub(crate) fn validate(digits: &str) -> Option<(usize, Option<String>)> {
    // No calling code starts with 0; parsing "044" as 44 would accept "+044...".
    if digits.starts_with('0') {
        return None;
    }
    for len in 1..=3.min(digits.len()) {
        let Ok(code) = digits[..len].parse::<u16>() else { continue };
        let Some(regions) = regions(code) else { continue };
        let national = &digits[len..];
        // libphonenumber's region for a shared code: the first whose leading
        // digits match, else the first for which the number is valid.
        let region = regions
            .iter()
            .find(|r| r.leading_digits.as_ref().is_some_and(|l| l.is_match(national)))
            .or_else(|| regions.iter().find(|r| r.is_valid(national)))?;
        // libphonenumber strips what looks like a national prefix even after
        // a '+'; such numbers are rare, and left to it so both always agree.
        if !region.is_valid(national)
            || regions.iter().any(|r| r.national_prefix.as_ref().is_some_and(|p| p.is_match(national)))
        {
            return None;
        }
        // "001" is libphonenumber's id for non-geographic entities.
        let country = (region.id != "001").then(|| region.id.clone());
        return Some((len, country));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_numbers_take_the_fast_path() {
        assert_eq!(validate("447400123456"), Some((2, Some("GB".to_owned()))));
        assert_eq!(validate("12025550143"), Some((1, Some("US".to_owned()))));
        assert_eq!(validate("4915123456789"), Some((2, Some("DE".to_owned()))));
        assert_eq!(validate("4474001"), None);
        assert_eq!(validate("0447400123456"), None, "no calling code starts with 0");
    }
}
