//! The account-facing summary read from `daily_stats`.

use serde::Serialize;

/// How `GET /v1/reports/summary` groups an account's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// Day of acceptance (UTC), `YYYY-MM-DD`.
    Day,
    /// Destination country (ISO 3166 code; `""` when unknown).
    Country,
    /// Current status.
    Status,
}

impl GroupBy {
    /// Every value, as the API spells it.
    pub const NAMES: [&'static str; 3] = ["day", "country", "status"];

    /// Parses the API's spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "day" => Some(Self::Day),
            "country" => Some(Self::Country),
            "status" => Some(Self::Status),
            _ => None,
        }
    }

    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Country => "country",
            Self::Status => "status",
        }
    }

    /// The `daily_stats` column it groups by.
    pub(crate) fn column(self) -> &'static str {
        // The columns are named as the API spells the groupings.
        self.as_str()
    }
}

/// One group's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SummaryRow {
    /// The day, country or status.
    pub key: String,
    /// Messages.
    pub messages: i64,
    /// Their SMS segments.
    pub segments: i64,
    /// Charged, net of refunds, in minor units of the account's currency.
    pub revenue: i64,
}
