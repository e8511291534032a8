//! A stress-run report as one self-contained HTML page: tables plus inline
//! SVG charts, no scripts and no external files, so the page can be archived
//! as a CI artefact and opened anywhere, offline, years later.

use std::fmt::Write;

use super::report::{ChaosEvent, Comparison, Invariant, Percentiles, Report, RoleUsage, Second};

// Writing into a `String` cannot fail, so the `fmt::Result` carries nothing.
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {
        let _ = write!($dst, $($arg)*);
    };
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1000px;color:#222;padding:0 1em}\
h1{margin-bottom:.2em}\
.meta{color:#555;margin-top:0}\
table{border-collapse:collapse;margin:.5em 0 1.5em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
.verdict{font-size:1.4em;font-weight:bold;padding:.5em 1em;border-radius:4px;color:#fff}\
.verdict.ok{background:#2e7d32}\
.verdict.broken{background:#c62828}\
.held{color:#2e7d32;font-weight:bold}\
.broke{color:#c62828;font-weight:bold}\
tr.worse td{background:#fdecea;color:#b71c1c}\
svg{display:block;max-width:100%;height:auto;margin:.5em 0 1.5em;background:#fff;border:1px solid #ddd}\
.nodata{color:#777;font-style:italic}";

/// The report as one HTML page: no scripts, no external files; charts are inline SVG.
pub fn render(report: &Report, comparisons: &[Comparison]) -> String {
    let mut page = String::with_capacity(32 * 1024);
    w!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Tern stress run {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&report.started_at)
    );
    header(&mut page, report);
    verdict(&mut page, &report.invariants, report.invariants_held());
    throughput(&mut page, report);
    latency(&mut page, report);
    charts(&mut page, &report.timeline, &report.chaos_events);
    roles(&mut page, &report.roles);
    errors(&mut page, report);
    chaos(&mut page, &report.chaos_events);
    counts(&mut page, report);
    if !comparisons.is_empty() {
        compared(&mut page, comparisons);
    }
    page.push_str("</body>\n</html>\n");
    page
}

fn header(page: &mut String, r: &Report) {
    let rate = match r.target_rate {
        Some(rate) => format!("{} msg/s", fmt_num(rate, 0)),
        None => "flat out".to_owned(),
    };
    w!(
        page,
        "<h1>Tern stress run</h1>\n<p class=\"meta\">started {} · mode <b>{}</b> · backend <b>{}</b> · \
         reports <b>{}</b> · {} accounts · target rate {} · chaos {} · \
         duration {} s · drain {} s</p>\n",
        esc(&r.started_at),
        esc(&r.mode),
        esc(&r.backend),
        esc(&r.reports),
        fmt_int(r.accounts as u64),
        rate,
        if r.chaos { "on" } else { "off" },
        fmt_num(r.duration_secs, 1),
        fmt_num(r.drain_secs, 1),
    );
}

fn verdict(page: &mut String, invariants: &[Invariant], held: bool) {
    if held {
        page.push_str("<div class=\"verdict ok\">All invariants held</div>\n");
    } else {
        page.push_str("<div class=\"verdict broken\">INVARIANT BROKEN</div>\n");
    }
    page.push_str("<h2>Invariants</h2>\n");
    if invariants.is_empty() {
        page.push_str("<p class=\"nodata\">none checked</p>\n");
        return;
    }
    page.push_str("<table>\n<tr><th>Invariant</th><th>Held</th><th>Detail</th></tr>\n");
    for inv in invariants {
        let mark = if inv.held { "<span class=\"held\">✓</span>" } else { "<span class=\"broke\">✗</span>" };
        w!(page, "<tr><td>{}</td><td>{mark}</td><td>{}</td></tr>\n", esc(&inv.name), esc(&inv.detail));
    }
    page.push_str("</table>\n");
}

fn throughput(page: &mut String, r: &Report) {
    let t = &r.throughput;
    page.push_str("<h2>Throughput</h2>\n<table>\n<tr><th>Measure</th><th>msg/s</th></tr>\n");
    for (name, value) in [
        ("accepted/s", t.accepted_per_sec),
        ("submitted/s", t.submitted_per_sec),
        ("receipts/s", t.receipts_per_sec),
        ("end-to-end/s", t.end_to_end_per_sec),
    ] {
        w!(page, "<tr><td>{name}</td><td class=\"n\">{}</td></tr>\n", fmt_num(value, 0));
    }
    page.push_str("</table>\n");
}

fn latency(page: &mut String, r: &Report) {
    let l = &r.latency_ms;
    page.push_str(
        "<h2>Latency (ms)</h2>\n<table>\n<tr><th>Measure</th><th>count</th><th>p50</th>\
         <th>p95</th><th>p99</th><th>max</th></tr>\n",
    );
    let rows: [(&str, &Percentiles); 3] =
        [("accept", &l.accept), ("accept→submit", &l.accept_to_submit), ("accept→receipt", &l.accept_to_receipt)];
    for (name, p) in rows {
        w!(
            page,
            "<tr><td>{name}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
            fmt_int(p.count),
            fmt_num(p.p50, 1),
            fmt_num(p.p95, 1),
            fmt_num(p.p99, 1),
            fmt_num(p.max, 1),
        );
    }
    page.push_str("</table>\n");
}

fn charts(page: &mut String, timeline: &[Second], events: &[ChaosEvent]) {
    let markers: Vec<(f64, &str)> = events.iter().map(|e| (e.at_secs, e.action.as_str())).collect();
    let over = |f: fn(&Second) -> f64| -> Vec<(f64, f64)> { timeline.iter().map(|s| (f64::from(s.t), f(s))).collect() };

    page.push_str("<h2>Throughput over time</h2>\n");
    page.push_str(&line_chart(
        "messages per second",
        &[
            ("accepted", "#1f77b4", over(|s| s.accepted as f64)),
            ("submitted", "#ff7f0e", over(|s| s.submitted as f64)),
            ("receipts", "#2ca02c", over(|s| s.receipts as f64)),
        ],
        &markers,
    ));

    page.push_str("<h2>Latency over time</h2>\n");
    page.push_str(&line_chart(
        "milliseconds",
        &[("accept p99", "#9467bd", over(|s| s.accept_p99_ms)), ("receipt p50", "#d62728", over(|s| s.receipt_p50_ms))],
        &markers,
    ));
}

fn roles(page: &mut String, roles: &[RoleUsage]) {
    page.push_str("<h2>Processes</h2>\n");
    if roles.is_empty() {
        page.push_str("<p class=\"nodata\">none sampled</p>\n");
        return;
    }
    page.push_str(
        "<table>\n<tr><th>Role</th><th>Restarts</th><th>Peak RSS MB</th><th>Mean RSS MB</th>\
         <th>CPU s</th><th>CPU cores</th></tr>\n",
    );
    for role in roles {
        w!(
            page,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
            esc(&role.name),
            role.restarts,
            fmt_num(role.peak_rss_mb, 1),
            fmt_num(role.mean_rss_mb, 1),
            fmt_num(role.cpu_secs, 1),
            fmt_num(role.cpu_cores, 2),
        );
    }
    page.push_str("</table>\n");
}

fn errors(page: &mut String, r: &Report) {
    page.push_str("<h2>Errors by kind</h2>\n");
    if r.errors.is_empty() {
        page.push_str("<p>none</p>\n");
        return;
    }
    page.push_str("<table>\n<tr><th>Kind</th><th>Count</th></tr>\n");
    for (kind, n) in &r.errors {
        w!(page, "<tr><td>{}</td><td class=\"n\">{}</td></tr>\n", esc(kind), fmt_int(*n));
    }
    page.push_str("</table>\n");
}

fn chaos(page: &mut String, events: &[ChaosEvent]) {
    page.push_str("<h2>Chaos events</h2>\n");
    if events.is_empty() {
        page.push_str("<p>none</p>\n");
        return;
    }
    page.push_str("<ul>\n");
    for e in events {
        w!(page, "<li>{} s — {}</li>\n", fmt_num(e.at_secs, 1), esc(&e.action));
    }
    page.push_str("</ul>\n");
}

fn counts(page: &mut String, r: &Report) {
    let c = &r.counts;
    page.push_str("<h2>Counts</h2>\n<table>\n<tr><th>Count</th><th>Value</th></tr>\n");
    let mut row = |name: &str, n: u64| {
        w!(page, "<tr><td>{}</td><td class=\"n\">{}</td></tr>\n", esc(name), fmt_int(n));
    };
    row("requests", c.requests);
    row("accepted", c.accepted);
    row("journal accepted", c.journal_accepted);
    for (status, n) in &c.by_status {
        row(&format!("status {status}"), *n);
    }
    row("segments submitted", c.segments_submitted);
    row("duplicates", c.duplicates);
    row("unknown outcomes", c.unknown_outcomes);
    row("callbacks received", c.callbacks_received);
    row("callbacks given up", c.callbacks_given_up);
    row("inbound", c.inbound);
    row("journal events", c.journal_events);
    page.push_str("</table>\n");
}

fn compared(page: &mut String, comparisons: &[Comparison]) {
    page.push_str(
        "<h2>Compared with the baseline</h2>\n<table>\n<tr><th>Figure</th><th>Baseline</th><th>Now</th>\
         <th>Change</th><th></th></tr>\n",
    );
    for c in comparisons {
        let change = if c.change.is_finite() { format!("{:+.1}%", c.change * 100.0) } else { "—".to_owned() };
        let (class, note) = if c.worse { (" class=\"worse\"", "worse by more than 10%") } else { ("", "") };
        w!(
            page,
            "<tr{class}><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{change}</td>\
             <td>{note}</td></tr>\n",
            esc(&c.name),
            fmt_figure(c.baseline),
            fmt_figure(c.now),
        );
    }
    page.push_str("</table>\n");
}

// Chart geometry, in SVG user units.
const W: f64 = 960.0;
const H: f64 = 320.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 44.0;

/// One line of a chart: name, colour, points (seconds, value).
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A line chart of `series` against seconds, with a dashed vertical line at
/// each marker (x, tooltip).
fn line_chart(title: &str, series: &[Series<'_>], markers: &[(f64, &str)]) -> String {
    // A NaN or infinity would poison the scale and leak into the SVG as "NaN".
    let finite = |&&(x, y): &&(f64, f64)| x.is_finite() && y.is_finite();
    let points = || series.iter().flat_map(|(_, _, pts)| pts.iter().filter(finite));
    let mut svg = String::with_capacity(8 * 1024);
    if points().next().is_none() {
        w!(svg, "<p class=\"nodata\">{}: no data</p>\n", esc(title));
        return svg;
    }
    let markers: Vec<(f64, &str)> = markers.iter().copied().filter(|(x, _)| x.is_finite()).collect();

    // Time starts at 0 so charts of runs of different lengths read alike, and
    // the range stretches to show faults injected after the last sample.
    let xs = points().map(|p| p.0).chain(markers.iter().map(|m| m.0));
    let (x_min, mut x_max) = xs.fold((0.0_f64, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    if x_max - x_min < 1.0 {
        x_max = x_min + 1.0;
    }
    let y_top = points().map(|p| p.1).fold(0.0_f64, f64::max);
    let (y_max, y_step) = nice_scale(y_top);

    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x - x_min) / (x_max - x_min) * plot_w;
    let sy = |y: f64| TOP + plot_h - (y.clamp(0.0, y_max) / y_max) * plot_h;

    w!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" \
         role=\"img\" aria-label=\"{t}\" font-size=\"12\">\n<text x=\"{LEFT}\" y=\"20\" font-weight=\"bold\">{t}</text>\n",
        t = esc(title)
    );

    // Y gridlines and labels.
    let y_decimals = decimals_for(y_step);
    let y_ticks = (y_max / y_step).round() as usize;
    for i in 0..=y_ticks {
        let v = y_step * i as f64;
        let y = sy(v);
        let stroke = if i == 0 { "#444" } else { "#e3e3e3" };
        w!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{stroke}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            fmt_num(v, y_decimals)
        );
    }

    // X axis, ticks labelled in seconds.
    let axis_y = TOP + plot_h;
    w!(svg, "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{axis_y}\" stroke=\"#444\"/>\n");
    let x_step = nice_step((x_max - x_min) / 8.0);
    let x_decimals = decimals_for(x_step);
    let first = (x_min / x_step).ceil();
    for k in 0..=64 {
        let v = (first + f64::from(k)) * x_step;
        if v > x_max + x_step * 1e-6 {
            break;
        }
        let x = sx(v);
        w!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{axis_y}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#444\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            axis_y + 5.0,
            axis_y + 18.0,
            fmt_num(v, x_decimals)
        );
    }
    w!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">seconds</text>\n",
        LEFT + plot_w / 2.0,
        H - 6.0
    );

    // Markers go under the series so the lines stay readable; the wide
    // transparent stroke makes the tooltip reachable with a mouse.
    for (at, what) in &markers {
        let x = sx(*at);
        w!(
            svg,
            "<g class=\"chaos-marker\"><title>{} s: {}</title>\
             <line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{axis_y}\" stroke=\"#c62828\" stroke-dasharray=\"5 4\"/>\
             <line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{axis_y}\" stroke=\"transparent\" stroke-width=\"9\"/></g>\n",
            fmt_num(*at, 1),
            esc(what)
        );
    }

    for (name, colour, pts) in series {
        let pts: Vec<&(f64, f64)> = pts.iter().filter(finite).collect();
        let mut coords = String::with_capacity(pts.len() * 12);
        for (x, y) in &pts {
            w!(coords, "{:.1},{:.1} ", sx(*x), sy(*y));
        }
        w!(
            svg,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>\n",
            coords.trim_end(),
            esc(name),
            c = esc(colour)
        );
        // One point draws no line; a dot keeps it visible.
        if let [(x, y)] = pts.as_slice() {
            w!(svg, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"/>\n", sx(*x), sy(*y), esc(colour));
        }
    }

    // Legend, top right.
    let mut lx = W - RIGHT - 130.0 * series.len() as f64;
    for (name, colour, _) in series {
        w!(
            svg,
            "<rect x=\"{lx:.1}\" y=\"11\" width=\"14\" height=\"10\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"20\">{}</text>\n",
            esc(colour),
            lx + 19.0,
            esc(name)
        );
        lx += 130.0;
    }

    svg.push_str("</svg>\n");
    svg
}

/// A round axis maximum at or above `v` (1, 2 or 5 × 10^k) and the gridline
/// step that divides it into four or five.
fn nice_scale(v: f64) -> (f64, f64) {
    if !(v.is_finite() && v > 0.0) {
        return (1.0, 0.2);
    }
    let exp = 10f64.powf(v.log10().floor());
    let f = v / exp;
    let (m, step) = if f <= 1.0 {
        (1.0, 0.2)
    } else if f <= 2.0 {
        (2.0, 0.5)
    } else if f <= 5.0 {
        (5.0, 1.0)
    } else {
        (10.0, 2.0)
    };
    (m * exp, step * exp)
}

/// The smallest 1, 2 or 5 × 10^k at or above `v`.
fn nice_step(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let exp = 10f64.powf(v.log10().floor());
    let f = v / exp;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * exp
}

/// Decimals needed to tell ticks `step` apart.
fn decimals_for(step: f64) -> usize {
    if step >= 1.0 || !(step.is_finite() && step > 0.0) { 0 } else { (-step.log10()).ceil() as usize }
}

/// A comparison figure: rates and sizes in the hundreds need no decimals,
/// small ones such as CPU cores do.
fn fmt_figure(v: f64) -> String {
    let a = v.abs();
    fmt_num(
        v,
        if a >= 100.0 {
            0
        } else if a >= 1.0 {
            1
        } else {
            2
        },
    )
}

/// `v` with `decimals` decimals and thousands separators; a dash for a
/// non-finite value so the page never shows "NaN".
fn fmt_num(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "—".to_owned();
    }
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s.as_str(), None),
    };
    // "-0.0" reads as a regression that is not there.
    let negative = v < 0.0 && s.bytes().any(|b| b.is_ascii_digit() && b != b'0');
    let mut out = String::with_capacity(s.len() + s.len() / 3 + 1);
    if negative {
        out.push('-');
    }
    out.push_str(&group(int));
    if let Some(frac) = frac {
        out.push('.');
        out.push_str(frac);
    }
    out
}

fn fmt_int(n: u64) -> String {
    group(&n.to_string())
}

/// Thousands separators in a string of digits.
fn group(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    // Counting down rather than `% 3 == 0` keeps clippy from asking for
    // `is_multiple_of`, which is newer than the workspace's rust-version.
    let mut before_comma = match digits.len() % 3 {
        0 => 3,
        n => n,
    };
    for c in digits.chars() {
        if before_comma == 0 {
            out.push(',');
            before_comma = 3;
        }
        out.push(c);
        before_comma -= 1;
    }
    out
}

/// Escapes text for element content and quoted attribute values alike.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut r = Report {
            started_at: "2024-05-01T02:00:00Z".to_owned(),
            mode: "roles".to_owned(),
            backend: "sqlite".to_owned(),
            reports: "sqlite".to_owned(),
            duration_secs: 3.0,
            drain_secs: 1.5,
            accounts: 1200,
            target_rate: Some(5000.0),
            chaos: true,
            ..Report::default()
        };
        r.timeline = (0..3)
            .map(|t| Second {
                t,
                accepted: 1000 + u64::from(t) * 10,
                submitted: 990,
                receipts: 980,
                accept_p99_ms: 12.5,
                receipt_p50_ms: 250.0,
            })
            .collect();
        r.chaos_events = vec![ChaosEvent { at_secs: 1.5, action: "SIGKILL connector".to_owned() }];
        r.invariants = vec![
            Invariant { name: "no message lost".to_owned(), held: true, detail: "0 lost".to_owned() },
            Invariant {
                name: "no duplicate".to_owned(),
                held: false,
                detail: "body was <script>alert('x')</script> & more".to_owned(),
            },
        ];
        r.counts.by_status.insert("delivered".to_owned(), 2970);
        r.errors.insert("timeout".to_owned(), 3);
        r.roles = vec![RoleUsage {
            name: "worker".to_owned(),
            restarts: 1,
            peak_rss_mb: 120.0,
            mean_rss_mb: 80.0,
            cpu_secs: 2.5,
            cpu_cores: 0.8,
        }];
        r
    }

    #[test]
    fn a_broken_run_renders_charts_markers_and_escaped_details() {
        let report = sample();
        let comparisons = vec![Comparison {
            name: "accepted/s".to_owned(),
            baseline: 1200.0,
            now: 1000.0,
            change: -1.0 / 6.0,
            worse: true,
        }];
        let page = render(&report, &comparisons);
        assert_eq!(page.matches("<svg").count(), 2);
        assert_eq!(page.matches("<polyline").count(), 5, "three throughput series and two latency series");
        assert_eq!(page.matches("class=\"chaos-marker\"").count(), 2, "the marker on both charts");
        assert!(page.contains("<title>1.5 s: SIGKILL connector</title>"));
        assert!(page.contains("INVARIANT BROKEN"));
        assert!(!page.contains("All invariants held"));
        assert!(page.contains("body was &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
        assert!(!page.contains("<script"));
        assert!(page.contains("worse by more than 10%"));
        assert!(page.contains("-16.7%"));
        assert!(page.contains("status delivered"));
        assert!(page.contains("5,000 msg/s"));
        assert!(!page.contains("NaN"));
    }

    #[test]
    fn an_empty_report_renders_without_nan() {
        let page = render(&Report::default(), &[]);
        assert!(!page.contains("NaN"));
        assert!(!page.contains("inf"));
        assert!(page.contains("no data"));
        assert!(page.contains("All invariants held"));
        assert!(page.contains("flat out"));
        assert!(!page.contains("Compared with the baseline"));
    }

    #[test]
    fn all_zero_series_still_scale() {
        let timeline = vec![Second { t: 0, ..Second::default() }, Second { t: 1, ..Second::default() }];
        let page = render(&Report { timeline, ..Report::default() }, &[]);
        assert!(!page.contains("NaN"));
        assert_eq!(page.matches("<polyline").count(), 5);
    }

    #[test]
    fn scales_and_numbers_are_round_and_readable() {
        assert_eq!(nice_scale(0.0), (1.0, 0.2));
        assert_eq!(nice_scale(1000.0).0, 1000.0);
        assert_eq!(nice_scale(1010.0).0, 2000.0);
        assert_eq!(nice_scale(3.2).0, 5.0);
        assert_eq!(nice_scale(7.0).0, 10.0);
        assert_eq!(fmt_num(1234567.4, 0), "1,234,567");
        assert_eq!(fmt_num(-0.01, 1), "0.0");
        assert_eq!(fmt_num(-1234.56, 1), "-1,234.6");
        assert_eq!(fmt_num(f64::NAN, 1), "—");
        assert_eq!(fmt_int(999), "999");
        assert_eq!(fmt_int(1000), "1,000");
        assert_eq!(fmt_int(0), "0");
        assert_eq!(esc("a&b<c>\"'"), "a&amp;b&lt;c&gt;&quot;&#39;");
    }
}
