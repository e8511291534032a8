//! The routing table: ordered routes of filters and actions, and a default.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveTime, Timelike, Utc, Weekday};
use regex::Regex;
use serde::{Deserialize, Serialize};
use tern_core::{AccountId, Encoding, MessageId};

/// A routing table as configured or stored (JSON/TOML).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingTable {
    /// Tried in order; the first whose filters all match decides.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// What to do when no route matches; without one, the message is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Action>,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Name, recorded with each message it routes.
    pub name: String,
    /// All must match (an empty filter matches everything).
    #[serde(default)]
    pub filters: Filters,
    /// Where matching messages go.
    pub action: Action,
}

/// Conditions on a message; each list matches when empty or when the
/// message's value is in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// Destination ISO countries ("GB").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Destination E.164 digit prefixes, without '+' ("4477").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    /// Sending accounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountId>,
    /// Resellers: their own messages and their sub-accounts'.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resellers: Vec<AccountId>,
    /// Regular expressions one of which must match the whole sender id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub senders: Vec<String>,
    /// Body encodings (`gsm7`, `ucs2`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encodings: Vec<Encoding>,
    /// Only at these times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<TimeWindow>,
}

/// A daily time window, `from` inclusive to `to` exclusive; it wraps past
/// midnight when `to` is earlier than `from` ("22:00" to "06:00").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    /// "HH:MM".
    pub from: String,
    /// "HH:MM".
    pub to: String,
    /// Days the window opens on ("mon".."sun"); every day when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
    /// Offset from UTC of the clock the window is written in, in minutes.
    #[serde(default)]
    pub utc_offset_minutes: i32,
}

/// Where a route sends messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// One connector.
    Connector(String),
    /// The first available connector of the list; each new routing attempt
    /// (a connector gave the message back) moves down the list.
    Failover(Vec<String>),
    /// Spread by weight. The pick is a function of the message id, so a
    /// redelivered message goes where it went the first time.
    Weighted(BTreeMap<String, u32>),
}

/// A table that cannot be used, with what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RoutingError(pub String);

/// What routing knows about a message.
#[derive(Debug, Clone)]
pub struct RouteQuery<'a> {
    /// The message (weighted picks hash it).
    pub message_id: MessageId,
    /// Destination digits, without '+'.
    pub digits: &'a str,
    /// Destination country.
    pub country: Option<&'a str>,
    /// Sending account.
    pub account: AccountId,
    /// Its reseller.
    pub reseller: Option<AccountId>,
    /// Sender id.
    pub sender: &'a str,
    /// Encoding.
    pub encoding: Encoding,
    /// Now.
    pub at: DateTime<Utc>,
}

/// A table checked and ready to match.
#[derive(Debug, Clone)]
pub struct CompiledTable {
    routes: Vec<CompiledRoute>,
    default: Option<Action>,
}

#[derive(Debug, Clone)]
struct CompiledRoute {
    name: String,
    filters: Filters,
    senders: Vec<Regex>,
    window: Option<(NaiveTime, NaiveTime, Vec<Weekday>, i32)>,
    action: Action,
}

/// The route that matched and its action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'a> {
    /// Route name (`default` for the default route).
    pub route: &'a str,
    /// Its action.
    pub action: &'a Action,
}

impl RoutingTable {
    /// Checks every route and builds the matcher.
    pub fn compile(&self) -> Result<CompiledTable, RoutingError> {
        let mut names = std::collections::HashSet::new();
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, route) in self.routes.iter().enumerate() {
            let at = |what: String| RoutingError(format!("routes[{i}] ({:?}): {what}", route.name));
            if route.name.trim().is_empty() || route.name == "default" {
                return Err(at("a route needs a name other than \"default\"".into()));
            }
            if !names.insert(route.name.as_str()) {
                return Err(at("two routes have this name".into()));
            }
            check_action(&route.action).map_err(at)?;
            let f = &route.filters;
            if let Some(bad) = f.countries.iter().find(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase())) {
                return Err(at(format!("country {bad:?} must be an ISO code such as \"GB\"")));
            }
            if let Some(bad) =
                f.prefixes.iter().find(|p| p.is_empty() || p.len() > 15 || !p.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(at(format!("prefix {bad:?} must be 1 to 15 digits, without '+'")));
            }
            let senders = f
                .senders
                .iter()
                .map(|s| Regex::new(&format!("^(?:{s})$")).map_err(|e| at(format!("sender pattern {s:?}: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            let window = f.window.as_ref().map(|w| compile_window(w).map_err(at)).transpose()?;
            routes.push(CompiledRoute {
                name: route.name.clone(),
                filters: f.clone(),
                senders,
                window,
                action: route.action.clone(),
            });
        }
        if let Some(default) = &self.default {
            check_action(default).map_err(|e| RoutingError(format!("default: {e}")))?;
        }
        Ok(CompiledTable { routes, default: self.default.clone() })
    }

    /// Every connector the table names.
    pub fn connectors(&self) -> Vec<String> {
        let mut all: Vec<String> =
            self.routes.iter().map(|r| &r.action).chain(self.default.as_ref()).flat_map(action_connectors).collect();
        all.sort();
        all.dedup();
        all
    }
}

fn action_connectors(action: &Action) -> Vec<String> {
    match action {
        Action::Connector(c) => vec![c.clone()],
        Action::Failover(list) => list.clone(),
        Action::Weighted(weights) => weights.keys().cloned().collect(),
    }
}

fn check_action(action: &Action) -> Result<(), String> {
    let names = action_connectors(action);
    if names.is_empty() {
        return Err("the action names no connector".into());
    }
    let valid = |c: &String| {
        !c.is_empty() && c.len() <= 64 && c.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-'))
    };
    if let Some(bad) = names.iter().find(|c| !valid(c)) {
        return Err(format!("connector name {bad:?} must be 1 to 64 ASCII letters, digits, '_' or '-'"));
    }
    if let Action::Weighted(weights) = action
        && weights.values().all(|w| *w == 0)
    {
        return Err("weights must not all be zero".into());
    }
    Ok(())
}

fn compile_window(w: &TimeWindow) -> Result<(NaiveTime, NaiveTime, Vec<Weekday>, i32), String> {
    let time = |s: &str| NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| format!("time {s:?} must be HH:MM"));
    let days = w
        .days
        .iter()
        .map(|d| d.parse::<Weekday>().map_err(|_| format!("day {d:?} must be mon, tue, wed, thu, fri, sat or sun")))
        .collect::<Result<Vec<_>, _>>()?;
    if w.utc_offset_minutes.abs() > 14 * 60 {
        return Err(format!("utc_offset_minutes {} is beyond ±14 hours", w.utc_offset_minutes));
    }
    Ok((time(&w.from)?, time(&w.to)?, days, w.utc_offset_minutes))
}

impl CompiledTable {
    /// The first route whose filters all match, else the default route.
    pub fn find(&self, q: &RouteQuery<'_>) -> Option<Matched<'_>> {
        self.routes
            .iter()
            .find(|r| r.matches(q))
            .map(|r| Matched { route: &r.name, action: &r.action })
            .or_else(|| self.default.as_ref().map(|action| Matched { route: "default", action }))
    }
}

impl CompiledRoute {
    fn matches(&self, q: &RouteQuery<'_>) -> bool {
        let f = &self.filters;
        let any = |list: &[String], pred: &dyn Fn(&String) -> bool| list.is_empty() || list.iter().any(pred);
        any(&f.countries, &|c| q.country == Some(c.as_str()))
            && any(&f.prefixes, &|p| q.digits.starts_with(p.as_str()))
            && (f.accounts.is_empty() || f.accounts.contains(&q.account))
            && (f.resellers.is_empty()
                || f.resellers.contains(&q.account)
                || q.reseller.is_some_and(|r| f.resellers.contains(&r)))
            && (self.senders.is_empty() || self.senders.iter().any(|re| re.is_match(q.sender)))
            && (f.encodings.is_empty() || f.encodings.contains(&q.encoding))
            && self.window.as_ref().is_none_or(|w| in_window(w, q.at))
    }
}

fn in_window((from, to, days, offset): &(NaiveTime, NaiveTime, Vec<Weekday>, i32), at: DateTime<Utc>) -> bool {
    let local = at.naive_utc() + chrono::TimeDelta::minutes(i64::from(*offset));
    let time = NaiveTime::from_hms_opt(local.hour(), local.minute(), local.second()).unwrap_or_default();
    let (open, day) = if from <= to {
        (time >= *from && time < *to, local.weekday())
    } else if time >= *from {
        (true, local.weekday())
    } else {
        // After midnight in a window that opened the evening before.
        (time < *to, local.weekday().pred())
    };
    open && (days.is_empty() || days.contains(&day))
}

/// Picks the connector for routing attempt `attempt` (1-based) among those
/// `available` says are up; `None` when the action has no connector left.
pub fn choose(action: &Action, message: MessageId, attempt: u32, available: &dyn Fn(&str) -> bool) -> Option<String> {
    let attempt = usize::try_from(attempt.max(1) - 1).unwrap_or(usize::MAX);
    match action {
        // A single connector keeps its messages queued while it is down.
        Action::Connector(c) => (attempt == 0).then(|| c.clone()),
        Action::Failover(list) => {
            let up: Vec<&String> = list.iter().filter(|c| available(c)).collect();
            // All down: wait in the first one's queue rather than reject.
            if up.is_empty() {
                list.first().filter(|_| attempt == 0).cloned()
            } else {
                up.get(attempt).map(|c| (*c).clone())
            }
        }
        Action::Weighted(weights) => {
            let mut pool: Vec<(&String, u64)> =
                weights.iter().filter(|(c, w)| **w > 0 && available(c)).map(|(c, w)| (c, u64::from(*w))).collect();
            if pool.is_empty() {
                pool = weights.iter().filter(|(_, w)| **w > 0).map(|(c, w)| (c, u64::from(*w))).collect();
            }
            // Attempt k draws without replacement: the k-th pick never repeats an earlier one.
            let mut draw = hash(message);
            for _ in 0..attempt {
                let picked = weighted_pick(&pool, draw)?;
                pool.remove(picked);
                draw = draw.rotate_left(17).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            }
            weighted_pick(&pool, draw).map(|i| pool[i].0.clone())
        }
    }
}

fn weighted_pick(pool: &[(&String, u64)], draw: u64) -> Option<usize> {
    let total: u64 = pool.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return None;
    }
    let mut point = draw % total;
    for (i, (_, w)) in pool.iter().enumerate() {
        if point < *w {
            return Some(i);
        }
        point -= w;
    }
    None
}

/// A well-mixed 64-bit hash of the whole id (UUIDv7s made in the same
/// millisecond differ only in a few counter bits, so those must spread).
fn hash(message: MessageId) -> u64 {
    let value = message.as_uuid().as_u128();
    // SplitMix64's finaliser over both halves.
    let mut z = (value as u64) ^ ((value >> 64) as u64).rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
