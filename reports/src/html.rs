//! HTML escaping and small formatting helpers shared by the pages.
//!
//! Histories carry user strings (keys, values, error messages, node names), and so do
//! test.json and results.json: every piece of text that reaches a page goes through [`esc`].

use std::fmt::Write;

/// Escapes text for HTML element content and double- or single-quoted attribute values
/// (also inside SVG). Control characters other than tab and newline become U+FFFD so that a
/// hostile string cannot make the document ill-formed.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as short text: strings unquoted, others as compact JSON, cut at `chars_max`.
pub fn short_json(v: &serde_json::Value, chars_max: usize) -> String {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    truncate(&s, chars_max)
}

/// Cuts `s` to `chars_max` characters, marking the cut with an ellipsis.
pub fn truncate(s: &str, chars_max: usize) -> String {
    if s.chars().count() <= chars_max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(chars_max).collect();
        t.push('…');
        t
    }
}

/// Nanoseconds as seconds with millisecond precision, e.g. `12.345 s`.
pub fn secs(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

/// Nanoseconds as a short human duration.
pub fn duration(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.2} s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} µs", ns as f64 / 1e3)
    }
}

/// Fill colour of a fault kind, the same in SVG and PNG pictures.
pub fn fault_rgb(kind: &str) -> (u8, u8, u8) {
    match kind {
        "partition" => (230, 120, 40),
        "kill" => (200, 40, 40),
        "pause" => (140, 80, 200),
        "clock" => (40, 120, 200),
        "loss" | "latency" | "delay" => (60, 160, 160),
        _ => {
            // Stable colour for kinds this version does not know.
            let h = kind.bytes().fold(17u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            (100 + (h % 120) as u8, 100 + ((h / 120) % 120) as u8, 100 + ((h / 14400) % 120) as u8)
        }
    }
}

pub fn rgb_css((r, g, b): (u8, u8, u8)) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// Fill colour of an outcome.
pub fn outcome_css(outcome: crate::ops::Outcome) -> &'static str {
    match outcome {
        crate::ops::Outcome::Ok => "#6db36d",
        crate::ops::Outcome::Fail => "#e08aa0",
        crate::ops::Outcome::Info => "#e8c547",
        crate::ops::Outcome::Pending => "#b0b0b0",
    }
}

/// Appends a two-column table row `<tr><th>k</th><td>v</td></tr>`, escaping both.
pub fn row(out: &mut String, key: &str, value: &str) {
    let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(key), esc(value));
}

/// A "nice" tick step for an axis spanning `span`, aiming at about `target` ticks.
pub fn tick_step(span: f64, target: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / target.max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= raw {
            return m * mag;
        }
    }
    10.0 * mag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(esc(r#"<script>alert("x")</script>"#), "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;");
        assert_eq!(esc("a & b's"), "a &amp; b&#39;s");
        assert_eq!(esc("&amp;"), "&amp;amp;");
        assert_eq!(esc("plain µs ✓"), "plain µs ✓");
        assert_eq!(esc("nul\u{0}bell\u{7}\tok\n"), "nul\u{FFFD}bell\u{FFFD}\tok\n");
    }

    #[test]
    fn escaped_text_cannot_close_an_attribute_or_open_a_tag() {
        for hostile in ["\" onload=\"x", "' onerror='x", "</title><svg onload=x>", "]]><!--"] {
            let e = esc(hostile);
            assert!(!e.contains('"') && !e.contains('\'') && !e.contains('<') && !e.contains('>'), "{e}");
        }
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate("ééééé", 3), "ééé…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(short_json(&serde_json::json!("s"), 5), "s");
        assert_eq!(short_json(&serde_json::json!([1, 2]), 5), "[1,2]");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(10.0, 10.0), 1.0);
        assert_eq!(tick_step(27.0, 10.0), 5.0);
        assert_eq!(tick_step(0.3, 6.0), 0.05);
    }

    #[test]
    fn durations_pick_a_unit() {
        assert_eq!(duration(1_500_000_000), "1.50 s");
        assert_eq!(duration(2_500_000), "2.50 ms");
        assert_eq!(duration(1_500), "1.5 µs");
        assert_eq!(secs(1_234_567_890), "1.235 s");
    }
}
