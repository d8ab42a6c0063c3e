//! `check` reads whatever a user hands it: random text, broken YAML, real objects with random
//! edits. It must answer every one without panicking.

use mssql_operator::check::{Source, check};
use proptest::prelude::*;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/kubedb-docs");

fn examples() -> Vec<String> {
    let mut texts: Vec<String> = std::fs::read_dir(EXAMPLES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    texts.sort();
    texts
}

fn run(text: String) -> usize {
    check(&[Source {
        name: "fuzz".into(),
        text,
    }])
    .len()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_text(text in ".{0,400}") {
        run(text);
    }

    #[test]
    fn yaml_shaped_text(text in "([a-zA-Z:{}\\[\\],\\-\n \"'&*!|>#0-9.]){0,300}") {
        run(text);
    }

    #[test]
    fn examples_with_random_edits(
        which in 0usize..14,
        edits in prop::collection::vec((any::<prop::sample::Index>(), ".{0,8}"), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let texts = examples();
        let mut text = texts[which % texts.len()].clone();
        for (at, insert) in edits {
            let mut at = at.index(text.len() + 1);
            while !text.is_char_boundary(at) { at -= 1; }
            text.insert_str(at, &insert);
        }
        run(text.clone());
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) { at -= 1; }
        text.truncate(at);
        run(text);
    }

    #[test]
    fn examples_with_values_replaced(which in 0usize..14, value in prop_oneof![
        Just("null".to_owned()), Just("[]".to_owned()), Just("{}".to_owned()), Just("-1".to_owned()),
        Just("true".to_owned()), Just("\"\"".to_owned()), "[a-z0-9]{0,6}",
    ]) {
        let texts = examples();
        for line in texts[which % texts.len()].lines().filter(|l| l.trim_end().ends_with(':')) {
            let text = texts[which % texts.len()].replacen(line, &format!("{line} {value}"), 1);
            run(text);
        }
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    for open in ["[", "{a: ", "- "] {
        let text = open.repeat(100_000);
        assert_eq!(run(text), 1, "{open:?}");
    }
}
