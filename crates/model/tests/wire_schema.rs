//! The wire JSON Schema (`schemas/coincap-trade.schema.json`) and the validator agree: every record of
//! the corpus (`schemas/corpus/trades.jsonl`) gets the verdict the corpus states from
//! [`tradewind_model::validate`] here, and from the schema in `scripts/check_wire_schema.py` (CI).
//! The schema's limits are the validator's constants.

use tradewind_model::{validate, Validator, MAX_AMOUNT, MAX_ID_CHARS, MIN_TIMESTAMP_MS};

const SCHEMA: &str = include_str!("../../../schemas/coincap-trade.schema.json");
const CORPUS: &str = include_str!("../../../schemas/corpus/trades.jsonl");
const NOW_MS: i64 = 1_700_000_000_000;

#[test]
fn the_validator_gives_every_corpus_record_its_stated_verdict() {
    let mut checked = 0;
    for (n, line) in CORPUS.lines().enumerate() {
        let row: serde_json::Value = serde_json::from_str(line).expect("corpus line");
        let record = row["record"].as_str().expect("record");
        let want = row["reason"].as_str();
        let got = validate(record.as_bytes(), NOW_MS, &Validator::default());
        assert_eq!(
            got.as_ref().err().map(|r| r.kind.label()),
            want,
            "line {} ({}): {got:?}",
            n + 1,
            row["note"]
        );
        checked += 1;
    }
    assert!(checked >= 30, "the corpus covers every rule");
}

#[test]
fn the_schema_states_the_validators_limits() {
    let s: serde_json::Value = serde_json::from_str(SCHEMA).expect("schema is JSON");
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(s["$defs"]["id"]["maxLength"], MAX_ID_CHARS);
    assert_eq!(s["$defs"]["id"]["minLength"], 1);
    assert_eq!(s["$defs"]["amount"]["maximum"].as_f64(), Some(MAX_AMOUNT));
    assert_eq!(s["$defs"]["amount"]["exclusiveMinimum"], 0);
    assert_eq!(s["properties"]["timestamp"]["minimum"], MIN_TIMESTAMP_MS);
    let required: Vec<&str> = s["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(required.len(), tradewind_model::FIELDS.len());
    for f in tradewind_model::FIELDS {
        assert!(required.contains(&f), "{f} is required");
    }
}
