use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use tern_core::{AccountId, Encoding, MessageId};

use super::*;

fn query(digits: &str) -> RouteQuery<'_> {
    RouteQuery {
        message_id: MessageId::new(),
        digits,
        country: Some("GB"),
        account: AccountId::new(),
        reseller: None,
        sender: "ACME",
        encoding: Encoding::Gsm7,
        at: Utc::now(),
    }
}

fn route(name: &str, filters: Filters, connector: &str) -> Route {
    Route { name: name.into(), filters, action: Action::Connector(connector.into()) }
}

fn table(routes: Vec<Route>, default: Option<&str>) -> CompiledTable {
    RoutingTable { routes, default: default.map(|c| Action::Connector(c.into())) }.compile().unwrap()
}

fn found<'a>(t: &'a CompiledTable, q: &RouteQuery<'_>) -> Option<&'a str> {
    t.find(q).map(|m| m.route)
}

#[test]
fn first_matching_route_wins_and_the_default_catches_the_rest() {
    let t = table(
        vec![
            route("uk-mobile", Filters { prefixes: vec!["447".into()], ..Filters::default() }, "c1"),
            route("uk", Filters { countries: vec!["GB".into()], ..Filters::default() }, "c2"),
        ],
        Some("c3"),
    );
    assert_eq!(found(&t, &query("447700900123")), Some("uk-mobile"));
    assert_eq!(found(&t, &query("442079460000")), Some("uk"));
    let mut us = query("12025550123");
    us.country = Some("US");
    assert_eq!(found(&t, &us), Some("default"));
    let no_default =
        table(vec![route("uk", Filters { countries: vec!["GB".into()], ..Filters::default() }, "c")], None);
    assert_eq!(found(&no_default, &us), None);
}

#[test]
fn every_filter_must_match() {
    let account = AccountId::new();
    let reseller = AccountId::new();
    let filters = Filters {
        countries: vec!["GB".into()],
        prefixes: vec!["44".into()],
        accounts: vec![account],
        senders: vec!["AC.E".into()],
        encodings: vec![Encoding::Gsm7],
        ..Filters::default()
    };
    let t = table(vec![route("all", filters, "c1")], None);
    let mut q = query("447700900123");
    q.account = account;
    assert_eq!(found(&t, &q), Some("all"));
    for spoil in 0..5 {
        let mut bad = q.clone();
        match spoil {
            0 => bad.country = Some("FR"),
            1 => bad.digits = "337700900123",
            2 => bad.account = AccountId::new(),
            3 => bad.sender = "ACME2",
            _ => bad.encoding = Encoding::Ucs2,
        }
        assert_eq!(found(&t, &bad), None, "spoiled filter {spoil}");
    }
    let by_reseller = table(vec![route("r", Filters { resellers: vec![reseller], ..Filters::default() }, "c")], None);
    let mut child = query("447700900123");
    child.reseller = Some(reseller);
    assert_eq!(found(&by_reseller, &child), Some("r"), "a reseller's sub-account");
    child.reseller = None;
    child.account = reseller;
    assert_eq!(found(&by_reseller, &child), Some("r"), "the reseller itself");
    child.account = AccountId::new();
    assert_eq!(found(&by_reseller, &child), None);
}

#[test]
fn time_windows_open_on_their_days_and_wrap_past_midnight() {
    let window = |from: &str, to: &str, days: &[&str]| Filters {
        window: Some(TimeWindow {
            from: from.into(),
            to: to.into(),
            days: days.iter().map(|d| (*d).into()).collect(),
            utc_offset_minutes: 60,
        }),
        ..Filters::default()
    };
    let office =
        table(vec![route("office", window("09:00", "17:00", &["mon", "tue", "wed", "thu", "fri"]), "c")], None);
    let night = table(vec![route("night", window("22:00", "06:00", &["fri"]), "c")], None);
    let at = |d: u32, h: u32, m: u32| Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap();
    let mut q = query("447700900123");
    // 2026-11-20 is a Friday; the window's clock is UTC+1.
    q.at = at(20, 8, 0); // 09:00 local
    assert_eq!(found(&office, &q), Some("office"));
    q.at = at(20, 16, 0); // 17:00 local: closed
    assert_eq!(found(&office, &q), None);
    q.at = at(21, 10, 0); // Saturday
    assert_eq!(found(&office, &q), None);
    q.at = at(20, 22, 30); // Friday 23:30 local
    assert_eq!(found(&night, &q), Some("night"));
    q.at = at(21, 3, 0); // Saturday 04:00 local: Friday's window
    assert_eq!(found(&night, &q), Some("night"));
    q.at = at(22, 3, 0); // Sunday 04:00 local: Saturday's window, not open
    assert_eq!(found(&night, &q), None);
}

#[test]
fn failover_moves_down_the_list_and_skips_connectors_that_are_down() {
    let action = Action::Failover(vec!["a".into(), "b".into(), "c".into()]);
    let m = MessageId::new();
    let all_up = |_: &str| true;
    assert_eq!(choose(&action, m, 1, &all_up).as_deref(), Some("a"));
    assert_eq!(choose(&action, m, 2, &all_up).as_deref(), Some("b"));
    assert_eq!(choose(&action, m, 4, &all_up), None);
    let a_down = |c: &str| c != "a";
    assert_eq!(choose(&action, m, 1, &a_down).as_deref(), Some("b"));
    assert_eq!(choose(&action, m, 2, &a_down).as_deref(), Some("c"));
    let all_down = |_: &str| false;
    assert_eq!(choose(&action, m, 1, &all_down).as_deref(), Some("a"), "all down: wait in the first queue");
}

#[test]
fn weighted_spreads_by_weight_and_is_stable_per_message() {
    let action = Action::Weighted(BTreeMap::from([("a".into(), 3), ("b".into(), 1), ("z".into(), 0)]));
    let up = |_: &str| true;
    let mut counts = BTreeMap::new();
    for _ in 0..4_000 {
        let m = MessageId::new();
        let first = choose(&action, m, 1, &up).unwrap();
        assert_eq!(choose(&action, m, 1, &up).unwrap(), first, "same message, same pick");
        let second = choose(&action, m, 2, &up).unwrap();
        assert_ne!(first, second, "a new attempt tries another connector");
        assert_eq!(choose(&action, m, 3, &up), None);
        *counts.entry(first).or_insert(0) += 1;
    }
    assert!(!counts.contains_key("z"), "zero weight is never picked");
    let a = counts["a"];
    assert!((2_700..3_300).contains(&a), "a got {a} of 4000, expected about 3000");
    let b_down = |c: &str| c != "b";
    assert_eq!(choose(&action, MessageId::new(), 1, &b_down).as_deref(), Some("a"));
}

#[test]
fn invalid_tables_are_refused_with_the_route_named() {
    let bad = |filters: Filters, action: Action| {
        RoutingTable { routes: vec![Route { name: "r1".into(), filters, action }], default: None }
            .compile()
            .unwrap_err()
            .to_string()
    };
    let c = || Action::Connector("c".into());
    assert!(
        bad(Filters { countries: vec!["gb".into()], ..Filters::default() }, c())
            .contains("routes[0] (\"r1\"): country")
    );
    assert!(bad(Filters { prefixes: vec!["+44".into()], ..Filters::default() }, c()).contains("prefix"));
    assert!(bad(Filters { senders: vec!["(".into()], ..Filters::default() }, c()).contains("sender pattern"));
    assert!(bad(Filters::default(), Action::Failover(vec![])).contains("names no connector"));
    assert!(bad(Filters::default(), Action::Connector("a b".into())).contains("connector name"));
    assert!(bad(Filters::default(), Action::Weighted(BTreeMap::from([("a".into(), 0)]))).contains("zero"));
    let window = Filters {
        window: Some(TimeWindow { from: "25:00".into(), to: "06:00".into(), days: vec![], utc_offset_minutes: 0 }),
        ..Filters::default()
    };
    assert!(bad(window, c()).contains("HH:MM"));
    let dup = RoutingTable {
        routes: vec![route("x", Filters::default(), "c"), route("x", Filters::default(), "d")],
        default: None,
    };
    assert!(dup.compile().unwrap_err().to_string().contains("two routes"));
}

#[test]
fn the_table_reads_from_json_as_documented() {
    let json = r#"{
        "routes": [
            {"name": "uk", "filters": {"countries": ["GB"], "senders": ["ACME.*"]}, "action": {"failover": ["c1", "c2"]}},
            {"name": "spread", "action": {"weighted": {"c1": 2, "c2": 1}}}
        ],
        "default": {"connector": "c3"}
    }"#;
    let t: RoutingTable = serde_json::from_str(json).unwrap();
    assert_eq!(t.connectors(), vec!["c1", "c2", "c3"]);
    t.compile().unwrap();
    let typo = r#"{"routes": [{"name": "x", "filters": {"country": ["GB"]}, "action": {"connector": "c"}}]}"#;
    assert!(serde_json::from_str::<RoutingTable>(typo).unwrap_err().to_string().contains("unknown field"));
}
