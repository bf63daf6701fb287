//! The renewal-review scenario of DESIGN.md end to end, over real sockets, as
//! `portcullis demo` walks it: every allowed call reaches the upstream with the vaulted
//! credential, every denial of the scenario's list comes back with its reason, and the
//! audit trail verifies afterwards.

use portcullis::demo::scenario::run;

#[test]
fn the_renewal_review_walk_goes_as_designed() {
    let mut out = Vec::new();
    let steps = run(&mut out).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out)));
    let text = String::from_utf8_lossy(&out);
    for s in &steps {
        assert!(
            s.as_expected(),
            "{} -> {} {} (expected {})\n{text}",
            s.title,
            s.status,
            s.reason,
            s.expected
        );
        assert!(
            s.decision_id.starts_with("d-"),
            "every decision has an id: {}",
            s.title
        );
    }
    let reasons: std::collections::BTreeSet<&str> = steps
        .iter()
        .map(|s| s.reason.as_str())
        .filter(|r| !r.is_empty())
        .collect();
    for r in [
        "resource_out_of_scope",
        "record_limit",
        "tool_not_in_envelope",
        "policy_denied",
        "drift",
        "data_class_out_of_scope",
        "delegation_widening",
        "expired",
        "revoked",
    ] {
        assert!(reasons.contains(r), "the walk shows {r}");
    }
    assert_eq!(steps.iter().filter(|s| s.outcome == "allow").count(), 5);
    assert!(text.contains("0 carried an envelope"), "{text}");
    assert!(text.contains("hash chain intact"), "{text}");
}
