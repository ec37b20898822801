//! Malformed input never panics any reader: arbitrary text, and valid inputs cut at any point
//! or with a character replaced, give a history or a `LINE: expected ..., found ...` error
//! whose line exists in the input. Checking what parses never panics either.

use faultline_checker::formats::Format;
use faultline_checker::{check_linearizable, CheckOptions, ModelKind};
use proptest::prelude::*;

const JSONL: &str = "{\"index\":0,\"time\":1,\"type\":\"invoke\",\"process\":0,\"f\":\"cas\",\"key\":\"r\",\"value\":[1,2]}\n\
{\"index\":1,\"time\":2,\"type\":\"info\",\"process\":\"nemesis\",\"f\":\"start-partition\",\"value\":{\"a\":[1]}}\n\
{\"index\":2,\"time\":3,\"type\":\"fail\",\"process\":0,\"f\":\"cas\",\"key\":\"r\",\"value\":[1,2],\"error\":\"cas-mismatch\"}\n";
const ETCD: &str = "INFO  jepsen.util - 2\t:invoke\t:cas\t[3 0]\nINFO  jepsen.util - 2\t:fail\t:cas\t[3 0]\n\
INFO  jepsen.util - 1\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:fail\t:read\t:timed-out\n";
const KV: &str = "{:process 0, :type :invoke, :f :append, :key \"0\", :value \"x 0 0 y\"}\n\
{:process 0, :type :ok, :f :append, :key \"0\", :value \"x 0 0 y\"}\n";
const EDN: &str = "[{:type :invoke, :f :cas, :value [1 2], :process 3, :time 123}\n\
 {:type :info, :f :cas, :value :timed-out, :process 3, :time 200} #_ {:x 1}\n\
 {:type :info, :f :start, :value #{\"n1\"}, :process :nemesis}]\n";

fn parse_all_formats(text: &str) {
    for format in Format::ALL {
        match format.parse(text) {
            Ok(p) => {
                assert_eq!(p.events.len(), p.lines.len());
                for model in ModelKind::ALL {
                    let opts = CheckOptions { threads: 1, ..CheckOptions::default() };
                    let _ = check_linearizable(&p.events, model, &opts);
                }
            }
            Err(e) => {
                let lines = text.split('\n').count().max(1);
                assert!(e.line >= 1 && e.line <= lines, "{format}: line {} of {lines}: {e}", e.line);
                assert!(!e.expected.is_empty() && !e.found.is_empty(), "{format}: {e}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(text in "(?s).{0,200}") {
        parse_all_formats(&text);
    }

    #[test]
    fn edn_like_text(text in "[\\[\\]{}()#_:a-z0-9 \",\\\\\n-]{0,120}") {
        parse_all_formats(&text);
    }

    #[test]
    fn valid_inputs_cut_or_altered(which in 0usize..4, cut in 0usize..400, at in 0usize..400, c in any::<char>()) {
        let base = [JSONL, ETCD, KV, EDN][which];
        let cut = cut.min(base.len());
        let cut = (0..=cut).rev().find(|&i| base.is_char_boundary(i)).unwrap_or(0);
        parse_all_formats(&base[..cut]);
        let mut altered: Vec<char> = base.chars().collect();
        let i = at % altered.len();
        altered[i] = c;
        parse_all_formats(&altered.into_iter().collect::<String>());
    }
}

#[test]
fn the_valid_inputs_parse() {
    for (format, text) in
        [(Format::Jsonl, JSONL), (Format::PorcupineEtcd, ETCD), (Format::PorcupineKv, KV), (Format::JepsenEdn, EDN)]
    {
        let p = format.parse(text).unwrap_or_else(|e| panic!("{format}: {e}"));
        assert!(p.events.len() >= 2, "{format}");
    }
}
