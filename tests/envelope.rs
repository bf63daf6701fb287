//! Envelope verification: round trips, every refusal with its reason, interop with an
//! independent JOSE implementation (`jsonwebtoken`, backed by ed25519-dalek), and the
//! verified-envelope cache.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use portcullis::envelope::jws::{self, sign_raw};
use portcullis::envelope::mint::{MintOptions, claims_from_file};
use portcullis::envelope::{
    Claims, EnvelopeCache, EnvelopeError, SigningKey, TrustedKeys, Verifier,
};
use serde_json::{Value, json};

const NOW: i64 = 1_790_000_000;
const SEED: &str = include_str!("../policies/envelopes/renewal-review.json");

fn key() -> SigningKey {
    SigningKey::generate(Some("issuer-1".into())).unwrap()
}

fn verifier(k: &SigningKey) -> Verifier {
    let mut keys = TrustedKeys::new();
    keys.add(k.kid.clone(), k.public_key());
    Verifier::new(keys, "portcullis")
}

fn seed_claims(now: i64, ttl: i64) -> Claims {
    let m = serde_json::from_str::<Value>(SEED)
        .unwrap()
        .as_object()
        .unwrap()
        .clone();
    claims_from_file(
        m,
        &MintOptions {
            now,
            ttl_secs: Some(ttl),
            ..Default::default()
        },
    )
    .unwrap()
}

fn header(k: &SigningKey) -> Value {
    json!({"alg": "EdDSA", "typ": "agent-envelope+jwt", "kid": k.kid})
}

fn signed(k: &SigningKey, header: &Value, payload: &Value) -> String {
    sign_raw(
        header.to_string().as_bytes(),
        payload.to_string().as_bytes(),
        k,
    )
}

fn code(r: Result<Claims, EnvelopeError>) -> &'static str {
    r.map(|_| "accepted").unwrap_or_else(|e| e.code())
}

#[test]
fn mint_then_verify_round_trips_the_seed_claims() {
    let k = key();
    let claims = seed_claims(NOW, 900);
    let token = jws::sign(&claims, &k);
    let got = verifier(&k).verify(&token, NOW + 10).unwrap();
    assert_eq!(got, claims);
    assert_eq!(got.delegator_id, "user_7f3a91");
    assert_eq!(
        got.allowed_tools,
        ["contracts.read", "crm.read", "tickets.create"]
    );
    assert_eq!(got.resource_constraints.max_records, 25);
    assert_eq!(got.exp, NOW + 900);
    assert_eq!(got.delegation_depth, 0);
    assert!(got.delegation_chain.is_empty());
}

#[test]
fn every_refusal_has_its_own_reason() {
    let k = key();
    let v = verifier(&k);
    let claims = seed_claims(NOW, 900);
    let payload = claims.to_json();
    let good = jws::sign(&claims, &k);
    let [h, p, s]: [&str; 3] = good.split('.').collect::<Vec<_>>().try_into().unwrap();

    let mut cases: Vec<(&str, String)> = Vec::new();
    cases.push(("token_too_large", format!("{h}.{}.{s}", "A".repeat(9000))));
    cases.push(("malformed_token", "only.two".into()));
    cases.push(("malformed_token", format!("{h}.{p}.{s}.extra")));
    cases.push(("bad_base64", format!("{h}.{p}.{s}*")));
    cases.push(("bad_base64", format!("{h}=.{p}.{s}")));
    cases.push((
        "bad_json",
        format!("{}.{p}.{s}", URL_SAFE_NO_PAD.encode("{not json")),
    ));
    cases.push((
        "bad_json",
        format!("{h}.{}.{s}", URL_SAFE_NO_PAD.encode("[1,2]")),
    ));
    for alg in ["none", "None", "NONE"] {
        let none = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"{alg}","typ":"agent-envelope+jwt","kid":"{}"}}"#,
            k.kid
        ));
        cases.push(("alg_none", format!("{none}.{p}.")));
        // ...even when it carries a signature.
        cases.push(("alg_none", format!("{none}.{p}.{s}")));
    }
    let no_alg = URL_SAFE_NO_PAD.encode(r#"{"typ":"agent-envelope+jwt","kid":"issuer-1"}"#);
    cases.push(("unsupported_alg", format!("{no_alg}.{p}.{s}")));
    for alg in ["HS256", "RS256", "ES256", "eddsa", "Ed25519"] {
        let mut hd = header(&k);
        hd["alg"] = json!(alg);
        cases.push(("unsupported_alg", signed(&k, &hd, &payload)));
    }
    let mut hd = header(&k);
    hd["typ"] = json!("JWT");
    cases.push(("bad_typ", signed(&k, &hd, &payload)));
    let mut hd = header(&k);
    hd.as_object_mut().unwrap().remove("kid");
    cases.push(("missing_kid", signed(&k, &hd, &payload)));
    let mut hd = header(&k);
    hd["kid"] = json!("someone-else");
    cases.push(("unknown_kid", signed(&k, &hd, &payload)));
    let mut hd = header(&k);
    hd["crit"] = json!(["exp"]);
    cases.push(("unsupported_crit", signed(&k, &hd, &payload)));
    let other = SigningKey::generate(Some("issuer-1".into())).unwrap();
    cases.push(("bad_signature", jws::sign(&claims, &other)));
    let mut tampered = payload.clone();
    tampered["resource_constraints"]["max_records"] = json!(1000);
    cases.push((
        "bad_signature",
        format!("{h}.{}.{s}", URL_SAFE_NO_PAD.encode(tampered.to_string())),
    ));
    let mut no_task = payload.clone();
    no_task.as_object_mut().unwrap().remove("task_id");
    cases.push(("missing_claim", signed(&k, &header(&k), &no_task)));
    let mut bad_tools = payload.clone();
    bad_tools["allowed_tools"] = json!("contracts.read");
    cases.push(("invalid_claim", signed(&k, &header(&k), &bad_tools)));
    let mut wrong_aud = payload.clone();
    wrong_aud["aud"] = json!("some-other-gateway");
    cases.push(("wrong_audience", signed(&k, &header(&k), &wrong_aud)));
    cases.push(("expired", jws::sign(&seed_claims(NOW - 7200, 600), &k)));
    cases.push((
        "not_yet_valid",
        jws::sign(&seed_claims(NOW + 3600, 600), &k),
    ));

    for (want, token) in &cases {
        assert_eq!(code(v.verify(token, NOW)), *want, "token {token:.60}");
    }
    assert_eq!(code(v.verify(&good, NOW)), "accepted");
}

#[test]
fn skew_is_configurable() {
    let k = key();
    let mut v = verifier(&k);
    let token = jws::sign(&seed_claims(NOW, 60), &k);
    v.skew_secs = 0;
    assert_eq!(
        code(v.verify(&token, NOW + 60)),
        "expired",
        "exp is exclusive"
    );
    assert_eq!(code(v.verify(&token, NOW + 59)), "accepted");
    v.skew_secs = 30;
    assert_eq!(code(v.verify(&token, NOW + 89)), "accepted");
    assert_eq!(code(v.verify(&token, NOW + 90)), "expired");
    let future = jws::sign(&seed_claims(NOW + 20, 60), &k);
    assert_eq!(
        code(v.verify(&future, NOW)),
        "accepted",
        "iat 20s ahead is within 30s skew"
    );
    v.skew_secs = 0;
    assert_eq!(code(v.verify(&future, NOW)), "not_yet_valid");
}

#[test]
fn a_token_we_mint_verifies_with_jsonwebtoken() {
    let k = key();
    let claims = seed_claims(jsonwebtoken::get_current_timestamp() as i64, 900);
    let token = jws::sign(&claims, &k);
    let dk = DecodingKey::from_ed_pem(k.public_pem().as_bytes()).unwrap();
    let mut val = Validation::new(Algorithm::EdDSA);
    val.set_audience(&["portcullis"]);
    let data = jsonwebtoken::decode::<Value>(&token, &dk, &val).expect("independent verify");
    assert_eq!(data.header.kid.as_deref(), Some("issuer-1"));
    assert_eq!(data.header.typ.as_deref(), Some("agent-envelope+jwt"));
    assert_eq!(data.claims["delegator_id"], "user_7f3a91");
    assert_eq!(data.claims, claims.to_json());

    // ...and through a JWK, the form a gateway publishes.
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(k.jwk()).unwrap();
    let dk = DecodingKey::from_jwk(&jwk).unwrap();
    jsonwebtoken::decode::<Value>(&token, &dk, &val).expect("verify via JWK");
}

#[test]
fn a_token_jsonwebtoken_signs_with_our_key_verifies_here() {
    let k = key();
    let claims = seed_claims(NOW, 900);
    let ek = EncodingKey::from_ed_pem(k.private_pem().as_bytes()).unwrap();
    let mut h = Header::new(Algorithm::EdDSA);
    h.typ = Some("agent-envelope+jwt".into());
    h.kid = Some(k.kid.clone());
    let token = jsonwebtoken::encode(&h, &claims.to_json(), &ek).unwrap();
    assert_eq!(verifier(&k).verify(&token, NOW).unwrap(), claims);
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    // The key-confusion attack: an HMAC over the token keyed with the (public) verification
    // key, which a naive verifier would check with that same key.
    let k = key();
    let claims = seed_claims(NOW, 900);
    let mut h = Header::new(Algorithm::HS256);
    h.typ = Some("agent-envelope+jwt".into());
    h.kid = Some(k.kid.clone());
    for secret in [k.public_pem().into_bytes(), k.public_key().to_vec()] {
        let token = jsonwebtoken::encode(&h, &claims.to_json(), &EncodingKey::from_secret(&secret))
            .unwrap();
        assert_eq!(code(verifier(&k).verify(&token, NOW)), "unsupported_alg");
    }
}

#[test]
fn cache_hit_returns_the_same_claims_and_still_checks_expiry() {
    let k = key();
    let v = verifier(&k);
    let claims = seed_claims(NOW, 60);
    let token = jws::sign(&claims, &k);
    let mut cache = EnvelopeCache::new(8);
    let first = cache.verify(&v, &token, NOW).unwrap();
    let second = cache.verify(&v, &token, NOW + 1).unwrap();
    assert_eq!((cache.misses, cache.hits), (1, 1));
    assert_eq!(*first, claims);
    assert_eq!(*second, claims);
    let err = cache
        .verify(&v, &token, NOW + 60 + v.skew_secs)
        .unwrap_err();
    assert_eq!(err.code(), "expired");
    assert_eq!(
        cache.hits, 2,
        "the refusal came from the cached entry, re-checked"
    );

    // A refused token is never cached: it is refused again by full verification.
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert!(cache.verify(&v, &forged, NOW).is_err());
    assert!(cache.verify(&v, &forged, NOW).is_err());
    assert_eq!(cache.misses, 3);
}

#[test]
fn cache_stays_within_its_bound() {
    let k = key();
    let v = verifier(&k);
    let mut cache = EnvelopeCache::new(16);
    let tokens: Vec<String> = (0..100)
        .map(|_| jws::sign(&seed_claims(NOW, 900), &k))
        .collect();
    for t in &tokens {
        cache.verify(&v, t, NOW).unwrap();
        assert!(cache.len() <= 16);
    }
    assert_eq!(cache.len(), 16);
    // The newest are cached, the oldest were evicted and verify again from scratch.
    let misses = cache.misses;
    cache.verify(&v, &tokens[99], NOW).unwrap();
    assert_eq!(cache.misses, misses);
    cache.verify(&v, &tokens[0], NOW).unwrap();
    assert_eq!(cache.misses, misses + 1);
}
