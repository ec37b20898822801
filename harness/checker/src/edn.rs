//! A small EDN reader: the subset Jepsen and Knossos histories (and Porcupine's kv logs) use.
//!
//! Owns reading EDN text into [`Edn`] values with the line each form starts on: nil, booleans,
//! integers (an `N` suffix allowed), floats, strings, characters are not supported, keywords,
//! symbols, vectors, lists, maps, sets, `;` comments, commas as whitespace, and `#_` discard.
//! Tagged literals other than sets (`#inst`, `#jepsen...`) read as their inner form.

use crate::jsonl::{excerpt, ParseError};

#[derive(Clone, Debug, PartialEq)]
pub enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Without the leading colon.
    Keyword(String),
    Symbol(String),
    Vector(Vec<Edn>),
    List(Vec<Edn>),
    Set(Vec<Edn>),
    Map(Vec<(Edn, Edn)>),
}

impl Edn {
    /// The value of keyword key `k` in a map.
    pub fn get(&self, k: &str) -> Option<&Edn> {
        match self {
            Edn::Map(m) => m.iter().find(|(key, _)| matches!(key, Edn::Keyword(s) if s == k)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The JSON form: keywords and symbols become strings, sequences arrays, maps objects
    /// (keys as strings).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Edn::Nil => Value::Null,
            Edn::Bool(b) => Value::Bool(*b),
            Edn::Int(i) => Value::from(*i),
            Edn::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) => Value::String(s.clone()),
            Edn::Vector(v) | Edn::List(v) | Edn::Set(v) => Value::Array(v.iter().map(Edn::to_json).collect()),
            Edn::Map(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        let key = match k {
                            Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) => s.clone(),
                            other => other.to_json().to_string(),
                        };
                        (key, v.to_json())
                    })
                    .collect(),
            ),
        }
    }

    /// Short rendering for error messages.
    pub fn describe(&self) -> String {
        match self {
            Edn::Nil => "nil".into(),
            Edn::Bool(b) => b.to_string(),
            Edn::Int(i) => i.to_string(),
            Edn::Float(f) => f.to_string(),
            Edn::Str(s) => format!("{s:?}"),
            Edn::Keyword(k) => format!(":{k}"),
            Edn::Symbol(s) => s.clone(),
            Edn::Vector(_) => "a vector".into(),
            Edn::List(_) => "a list".into(),
            Edn::Set(_) => "a set".into(),
            Edn::Map(_) => "a map".into(),
        }
    }
}

/// Nesting deeper than this is refused (bounds the recursion).
const DEPTH_MAX: usize = 64;

struct Reader<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
}

/// Reads every top-level form, with the 1-based line each starts on.
pub fn read_all(text: &str) -> Result<Vec<(usize, Edn)>, ParseError> {
    let mut r = Reader { s: text.as_bytes(), pos: 0, line: 1 };
    let mut out = Vec::new();
    loop {
        r.skip_ws();
        if r.pos >= r.s.len() {
            return Ok(out);
        }
        let line = r.line;
        let v = r.form(0)?;
        out.push((line, v));
    }
}

/// Reads one top-level form per element, flattening a top-level vector or list: `[{..} {..}]`
/// and one map per line give the same result.
pub fn read_ops(text: &str) -> Result<Vec<(usize, Edn)>, ParseError> {
    let mut r = Reader { s: text.as_bytes(), pos: 0, line: 1 };
    let mut out = Vec::new();
    loop {
        r.skip_ws();
        if r.pos >= r.s.len() {
            return Ok(out);
        }
        let c = r.s[r.pos];
        if c == b'[' || c == b'(' {
            let close = if c == b'[' { b']' } else { b')' };
            r.pos += 1;
            loop {
                r.skip_ws();
                if r.pos >= r.s.len() {
                    return Err(r.err(format!("'{}' closing the top-level sequence", close as char), "end of input"));
                }
                if r.s[r.pos] == close {
                    r.pos += 1;
                    break;
                }
                let line = r.line;
                out.push((line, r.form(1)?));
            }
        } else {
            let line = r.line;
            out.push((line, r.form(0)?));
        }
    }
}

fn is_delim(c: u8) -> bool {
    c.is_ascii_whitespace() || matches!(c, b',' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'"' | b';')
}

impl Reader<'_> {
    fn err(&self, expected: impl Into<String>, found: impl Into<String>) -> ParseError {
        ParseError::new(self.line, expected, found)
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() {
            match self.s[self.pos] {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b',' => self.pos += 1,
                c if c.is_ascii_whitespace() => self.pos += 1,
                b';' => {
                    while self.pos < self.s.len() && self.s[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn rest_excerpt(&self) -> String {
        let end = self.s[self.pos..].iter().position(|&c| c == b'\n').map_or(self.s.len(), |i| self.pos + i);
        excerpt(&String::from_utf8_lossy(&self.s[self.pos..end]))
    }

    fn seq(&mut self, close: u8, depth: usize) -> Result<Vec<Edn>, ParseError> {
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.pos >= self.s.len() {
                return Err(self.err(format!("'{}'", close as char), "end of input"));
            }
            if self.s[self.pos] == close {
                self.pos += 1;
                return Ok(items);
            }
            if matches!(self.s[self.pos], b')' | b']' | b'}') {
                return Err(self.err(format!("'{}'", close as char), format!("'{}'", self.s[self.pos] as char)));
            }
            items.push(self.form(depth + 1)?);
        }
    }

    fn form(&mut self, depth: usize) -> Result<Edn, ParseError> {
        if depth > DEPTH_MAX {
            return Err(self.err(format!("at most {DEPTH_MAX} levels of nesting"), "deeper nesting"));
        }
        self.skip_ws();
        let Some(&c) = self.s.get(self.pos) else {
            return Err(self.err("an EDN value", "end of input"));
        };
        match c {
            b'[' => {
                self.pos += 1;
                Ok(Edn::Vector(self.seq(b']', depth)?))
            }
            b'(' => {
                self.pos += 1;
                Ok(Edn::List(self.seq(b')', depth)?))
            }
            b'{' => {
                let line = self.line;
                self.pos += 1;
                let items = self.seq(b'}', depth)?;
                if items.len() % 2 != 0 {
                    return Err(ParseError::new(
                        line,
                        "a map with an even number of forms",
                        format!("{} forms", items.len()),
                    ));
                }
                let mut it = items.into_iter();
                let mut m = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    m.push((k, v));
                }
                Ok(Edn::Map(m))
            }
            b'"' => self.string(),
            b'#' => {
                self.pos += 1;
                match self.s.get(self.pos) {
                    Some(b'{') => {
                        self.pos += 1;
                        Ok(Edn::Set(self.seq(b'}', depth)?))
                    }
                    Some(b'_') => {
                        self.pos += 1;
                        self.form(depth + 1)?;
                        self.form(depth)
                    }
                    Some(c) if c.is_ascii_alphabetic() => {
                        // A tagged literal: read the tag, keep the inner form.
                        self.token();
                        self.form(depth + 1)
                    }
                    _ => Err(self.err("a set '#{' or a tagged literal after '#'", self.rest_excerpt())),
                }
            }
            b')' | b']' | b'}' => Err(self.err("an EDN value", format!("'{}'", c as char))),
            b'\\' => Err(self.err("a value other than a character literal", self.rest_excerpt())),
            _ => {
                let line = self.line;
                let tok = self.token();
                atom(tok).map_err(|expected| ParseError::new(line, expected, excerpt(tok)))
            }
        }
    }

    fn token(&mut self) -> &str {
        let start = self.pos;
        while self.pos < self.s.len() && !is_delim(self.s[self.pos]) {
            self.pos += 1;
        }
        // Tokens are split at ASCII delimiters, so they are valid UTF-8 slices of valid input.
        std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("")
    }

    fn string(&mut self) -> Result<Edn, ParseError> {
        let start_line = self.line;
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        while let Some(&c) = self.s.get(self.pos) {
            self.pos += 1;
            match c {
                b'"' => {
                    return String::from_utf8(out)
                        .map(Edn::Str)
                        .map_err(|_| ParseError::new(start_line, "a UTF-8 string", "invalid UTF-8"));
                }
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else { break };
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'"' | b'\\' => out.push(e),
                        other => {
                            return Err(
                                self.err("a string escape \\n \\t \\r \\\" or \\\\", format!("\\{}", other as char))
                            );
                        }
                    }
                }
                b'\n' => {
                    self.line += 1;
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
        Err(ParseError::new(start_line, "a closing '\"'", "end of input"))
    }
}

/// A token as a value, or what was expected instead. An integer beyond 64 bits and a number
/// that is not finite are refused, quoted as written (never rounded to a float or read as nil).
fn atom(tok: &str) -> Result<Edn, &'static str> {
    match tok {
        "" => Err("an EDN value"),
        "nil" => Ok(Edn::Nil),
        "true" => Ok(Edn::Bool(true)),
        "false" => Ok(Edn::Bool(false)),
        _ if tok.starts_with(':') => {
            if tok.len() > 1 {
                Ok(Edn::Keyword(tok[1..].to_string()))
            } else {
                Err("a keyword name after ':'")
            }
        }
        _ => {
            let b = tok.as_bytes();
            let numeric =
                b[0].is_ascii_digit() || (b.len() > 1 && matches!(b[0], b'-' | b'+') && b[1].is_ascii_digit());
            if numeric {
                return number(tok);
            }
            Ok(Edn::Symbol(tok.to_string()))
        }
    }
}

fn number(tok: &str) -> Result<Edn, &'static str> {
    let t = tok.strip_suffix('N').unwrap_or(tok);
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.bytes().all(|c| c.is_ascii_digit()) {
        return t.parse::<i64>().map(Edn::Int).map_err(|_| "an integer within 64 bits (-2^63 to 2^63-1)");
    }
    let f = tok.strip_suffix('M').unwrap_or(tok);
    match f.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Edn::Float(v)),
        Ok(_) => Err("a finite number"),
        Err(_) => Err("an EDN value"),
    }
}

/// Jepsen's independent keys: in a history of `jepsen.independent` registers every client op's
/// `:value` is a tuple `[k v]` (key `k`, the register op's own value `v`). If every client
/// event without a key has such a 2-element value (or none, on a `fail`/`info` completion) and
/// some read or write does, each becomes key `k` (as text) with value `v`; returns whether it
/// did. A plain cas-register history is left alone: its reads carry `nil` and its writes an
/// integer, so only a history of cas ops alone could look independent, and it needs a read or
/// write to be taken as one.
pub fn split_independent_keys(events: &mut [crate::history::Event]) -> bool {
    use crate::history::{EventType, Process};
    use serde_json::Value;
    let client = |e: &&mut crate::history::Event| e.process != Process::Nemesis;
    let pair = |v: &Value| v.as_array().is_some_and(|a| a.len() == 2);
    let mut any_register = false;
    for e in events.iter_mut().filter(client) {
        let completion_without_value = e.value.is_null() && matches!(e.kind, EventType::Fail | EventType::Info);
        if e.key.is_some() || !(pair(&e.value) || completion_without_value) {
            return false;
        }
        any_register |= (e.f == "read" || e.f == "write") && pair(&e.value);
    }
    if !any_register {
        return false;
    }
    for e in events.iter_mut().filter(client) {
        if let Value::Array(a) = std::mem::take(&mut e.value) {
            let mut it = a.into_iter();
            let (k, v) = (it.next().unwrap_or_default(), it.next().unwrap_or_default());
            e.key = Some(match k {
                Value::String(s) => s,
                other => other.to_string(),
            });
            e.value = v;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn independent_key_values_become_keys() {
        let text = "{:process 0, :type :invoke, :f :write, :value [3 1]}\n\
                    {:process 0, :type :ok, :f :write, :value [3 1]}\n\
                    {:process 1, :type :invoke, :f :cas, :value [4 [nil 2]]}\n\
                    {:process 1, :type :info, :f :cas, :value :timed-out}\n\
                    {:process :nemesis, :type :info, :f :start, :value [:a :b]}\n\
                    {:process 2, :type :invoke, :f :read, :value [3 nil]}\n\
                    {:process 2, :type :ok, :f :read, :value [3 1]}\n";
        let p = crate::formats::Format::JepsenEdn.parse(text).unwrap();
        let keys: Vec<Option<&str>> = p.events.iter().map(|e| e.key.as_deref()).collect();
        // The info cas's completion kept no value (its :timed-out became the error), so no key:
        // the op's key is its invocation's.
        assert_eq!(keys, [Some("3"), Some("3"), Some("4"), None, None, Some("3"), Some("3")]);
        assert_eq!(p.events[2].value, serde_json::json!([null, 2]));
        assert_eq!(p.events[6].value, serde_json::json!(1));
        assert_eq!(p.events[4].value, serde_json::json!(["a", "b"]));
        // A plain cas-register history (reads nil, writes integers, cas pairs) is left alone.
        let plain = "{:process 0, :type :invoke, :f :cas, :value [1 2]}\n\
                     {:process 1, :type :invoke, :f :read, :value nil}\n";
        let p = crate::formats::Format::JepsenEdn.parse(plain).unwrap();
        assert!(p.events.iter().all(|e| e.key.is_none()));
        assert_eq!(p.events[0].value, serde_json::json!([1, 2]));
    }

    #[test]
    fn reads_an_op_map() {
        let v = read_all("{:type :invoke, :f :cas, :value [1 2], :process 3, :time 123}").unwrap();
        assert_eq!(v.len(), 1);
        let m = &v[0].1;
        assert_eq!(m.get("type"), Some(&Edn::Keyword("invoke".into())));
        assert_eq!(m.get("value"), Some(&Edn::Vector(vec![Edn::Int(1), Edn::Int(2)])));
        assert_eq!(m.get("time"), Some(&Edn::Int(123)));
    }

    #[test]
    fn flattens_a_top_level_vector_and_counts_lines() {
        let v = read_ops("[{:a 1}\n {:a 2} ; comment\n {:a \"x\\\"y\"} #{1 2} nil]").unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(v[1].0, 2);
        assert_eq!(v[2].1.get("a"), Some(&Edn::Str("x\"y".into())));
        assert_eq!(v[3].1, Edn::Set(vec![Edn::Int(1), Edn::Int(2)]));
    }

    #[test]
    fn errors_name_the_line() {
        let e = read_all("{:a 1}\n{:a [1 2}\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("expected ']'"), "{e}");
        let e = read_all("{:a 1 :b}").unwrap_err();
        assert!(e.expected.contains("even number"), "{e}");
        let e = read_all("\"open").unwrap_err();
        assert!(e.expected.contains("closing"), "{e}");
        let deep = "[".repeat(100);
        assert!(read_all(&deep).unwrap_err().expected.contains("nesting"));
    }

    #[test]
    fn big_numbers_are_quoted_as_written_not_as_a_float_or_nil() {
        let e = read_all("{:value 18446744073709551616}").unwrap_err();
        assert_eq!(
            (e.expected.as_str(), e.found.as_str()),
            ("an integer within 64 bits (-2^63 to 2^63-1)", "\"18446744073709551616\"")
        );
        let huge = "9".repeat(100_000);
        let e = read_all(&format!("{{:value {huge}}}")).unwrap_err();
        assert!(e.found.starts_with("\"999") && e.found.chars().count() < 70, "{e}");
        let e = read_all("{:value 1e400}").unwrap_err();
        assert_eq!(e.expected, "a finite number");
        assert_eq!(
            read_all("[-9223372036854775808 9223372036854775807N 1.5M]").unwrap()[0].1,
            Edn::Vector(vec![Edn::Int(i64::MIN), Edn::Int(i64::MAX), Edn::Float(1.5)])
        );
    }
}
