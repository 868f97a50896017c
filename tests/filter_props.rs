//! Property tests: the expression parser never panics, `Display` parses back to the same filter, globs
//! agree with a plain reference implementation, and data-field terms combine as documented (checked
//! against a plain model of the rules).

use ipckit::event_stream::Glob;
use ipckit::EventFilter;
use proptest::prelude::*;
use serde_json::json;

/// The data keys the model test uses: a top-level number, or a numeric string one level down.
const KEYS: [(&str, Option<&str>); 3] = [("a", None), ("b", None), ("c", Some("d"))];

#[derive(Debug, Clone, Copy, PartialEq)]
enum ModelOp {
    Eq,
    Ne,
    Gt,
    Le,
}

/// A data-field term over [`KEYS`] with values 0..5.
#[derive(Debug, Clone)]
struct ModelTerm {
    key: usize,
    op: ModelOp,
    /// The number compared with, or matched as text; `None` is the glob `*`.
    value: Option<i64>,
}

impl ModelTerm {
    fn text(&self) -> String {
        let (outer, inner) = KEYS[self.key];
        let path = inner.map_or(outer.to_owned(), |i| format!("{outer}.{i}"));
        let value = self.value.map_or("*".to_owned(), |v| v.to_string());
        let op = match self.op {
            ModelOp::Eq => "=",
            ModelOp::Ne => "!=",
            ModelOp::Gt => ">",
            ModelOp::Le => "<=",
        };
        format!("{path}{op}{value}")
    }

    fn holds(&self, field: i64) -> bool {
        match (self.op, self.value) {
            (ModelOp::Eq, None) => true,
            (ModelOp::Ne, None) => false,
            (ModelOp::Eq, Some(v)) => field == v,
            (ModelOp::Ne, Some(v)) => field != v,
            (ModelOp::Gt, v) => field > v.unwrap_or(0),
            (ModelOp::Le, v) => field <= v.unwrap_or(0),
        }
    }
}

fn model_term() -> impl Strategy<Value = ModelTerm> {
    (
        0..KEYS.len(),
        prop::sample::select(vec![ModelOp::Eq, ModelOp::Ne, ModelOp::Gt, ModelOp::Le]),
        prop::option::of(0i64..5),
    )
        .prop_map(|(key, op, value)| {
            let value = match op {
                ModelOp::Gt | ModelOp::Le => Some(value.unwrap_or(2)),
                _ => value,
            };
            ModelTerm { key, op, value }
        })
}

/// The obvious recursive glob matcher, as the oracle.
fn oracle(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|i| oracle(rest, &text[i..])),
        Some(('?', rest)) => !text.is_empty() && oracle(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && oracle(rest, &text[1..]),
    }
}

/// A value in quotes, with `"` and `\` escaped.
fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A number as people write them in a comparison.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i128>().prop_map(|n| n.to_string()),
        "[0-9]{39,45}",
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        "[+-]?[0-9]{0,3}\\.[0-9]{1,3}([eE][+-]?[0-9]{1,3})?",
        // Around 2^127, where whole numbers stop fitting an i128.
        prop::sample::select(vec![
            "170141183460469231731687303715884105727",
            "170141183460469231731687303715884105728",
            "-170141183460469231731687303715884105728",
            "-170141183460469231731687303715884105729",
            "1.7014118346046923e38",
            "-0",
            "-0.0",
        ])
        .prop_map(str::to_owned),
    ]
}

/// A data-field term: `PATH=GLOB`, `PATH!=GLOB` (plain or quoted) or `PATH>N`...
fn field_term() -> impl Strategy<Value = String> {
    let path = "[a-z_@$-]{1,3}(\\.([a-z]{1,2}|[0-9]{1,2})){0,2}";
    let value = "[a-z.*?\\-_ \"\\\\!:=<>]{0,8}";
    prop_oneof![
        (path, prop::sample::select(vec!["=", "!="]), value)
            .prop_map(|(p, op, v)| format!("{p}{op}{}", quoted(&v))),
        (
            path,
            prop::sample::select(vec!["=", "!="]),
            "[a-z*?=<>!:-]{0,6}"
        )
            .prop_map(|(p, op, v)| format!("{p}{op}{v}")),
        (
            path,
            prop::sample::select(vec![">", ">=", "<", "<="]),
            number()
        )
            .prop_map(|(p, op, n)| format!("{p}{op}{n}")),
    ]
}

fn term() -> impl Strategy<Value = String> {
    let value = "[a-z.*?\\-_ \"\\\\!:]{0,8}";
    prop_oneof![
        field_term(),
        field_term(),
        value.prop_map(|v| v.replace(' ', "")),
        value.prop_map(|v| format!("type:\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))),
        value.prop_map(|v| format!("res:\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))),
        value.prop_map(|v| format!(
            "origin:\"{}\"",
            v.replace('\\', "\\\\").replace('"', "\\\"")
        )),
        "[a-z*?-]{1,6}".prop_map(|v| format!("origin:{v}")),
        value.prop_map(|v| format!("text:\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))),
        (0u64..1_000).prop_map(|n| format!("since:id:{n}")),
        (0u64..4_000_000_000).prop_map(|s| format!("until:@{s}.5")),
        (1u64..600).prop_map(|m| format!("since:{m}m")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parser_never_panics(input in "\\PC{0,40}") {
        let _ = EventFilter::parse(&input);
    }

    #[test]
    fn parser_never_panics_on_syntax_soup(input in "[!\":a-z* ?\\\\@.0-9=<>_-]{0,30}") {
        if let Err(err) = EventFilter::parse(&input) {
            prop_assert!(err.column() >= 1 && err.column() <= input.chars().count() + 1, "{err} in {input:?}");
        }
    }

    #[test]
    fn display_parses_back(terms in prop::collection::vec((any::<bool>(), term()), 0..6)) {
        let text = terms
            .iter()
            .map(|(neg, t)| if *neg { format!("!{t}") } else { t.clone() })
            .collect::<Vec<_>>()
            .join(" ");
        if let Ok(filter) = EventFilter::parse(&text) {
            let shown = filter.to_string();
            let back = EventFilter::parse(&shown);
            prop_assert_eq!(back.as_ref(), Ok(&filter), "{} -> {}", text, shown);
        }
    }

    #[test]
    fn field_terms_combine_like_the_model(
        terms in prop::collection::vec((any::<bool>(), model_term()), 1..6),
        data in prop::collection::vec((0usize..KEYS.len(), 0i64..5), 0..4),
    ) {
        let text = terms
            .iter()
            .map(|(neg, t)| format!("{}{}", if *neg { "!" } else { "" }, t.text()))
            .collect::<Vec<_>>()
            .join(" ");
        let filter = EventFilter::parse(&text).unwrap();
        let mut object = serde_json::Map::new();
        let mut present: Vec<(usize, i64)> = Vec::new();
        for (key, value) in data {
            // A repeated key keeps the last value, as the JSON object does.
            present.retain(|(k, _)| *k != key);
            present.push((key, value));
            let (outer, inner) = KEYS[key];
            match inner {
                None => {
                    object.insert(outer.into(), json!(value));
                }
                Some(inner) => {
                    let member = object.entry(outer).or_insert_with(|| json!({}));
                    if let Some(map) = member.as_object_mut() {
                        map.insert(inner.into(), json!(value.to_string()));
                    }
                }
            }
        }
        // A nested key under a scalar does not exist: drop what the object could not hold.
        present.retain(|(k, _)| match KEYS[*k] {
            (outer, Some(_)) => object.get(outer).is_some_and(serde_json::Value::is_object),
            (outer, None) => object.get(outer).is_some_and(|v| !v.is_object()),
        });
        let value_of = |key: usize| present.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        // The model: positive `=`/comparison terms grouped by key (any of a group, every group),
        // positive `!=` each on its own, exclusions none.
        let mut groups: Vec<(usize, bool)> = Vec::new();
        let mut keep = true;
        for (negated, term) in &terms {
            let holds = value_of(term.key).is_some_and(|v| term.holds(v));
            if *negated {
                keep &= !holds;
            } else if term.op == ModelOp::Ne {
                keep &= holds;
            } else {
                match groups.iter_mut().find(|(k, _)| *k == term.key) {
                    Some((_, any)) => *any |= holds,
                    None => groups.push((term.key, holds)),
                }
            }
        }
        keep &= groups.iter().all(|(_, any)| *any);
        let event = ipckit::Event::new("t", serde_json::Value::Object(object));
        prop_assert_eq!(filter.matches(&event), keep, "{} on {}", text, event.data);
    }

    #[test]
    fn globs_match_like_the_oracle(pattern in "[ab.*?]{0,8}", text in "[ab.]{0,10}") {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        prop_assert_eq!(Glob::new(&pattern).matches(&text), oracle(&p, &t), "{} vs {}", pattern, text);
    }
}
