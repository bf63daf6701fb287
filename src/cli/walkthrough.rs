//! `portcullis demo`: the renewal-review envelope walk-through. Everything runs in-process
//! with a throwaway issuer key, so it needs no files and no network.

use super::CliError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Args;
use portcullis::clock;
use portcullis::envelope::mint::{MintOptions, claims_from_file};
use portcullis::envelope::{EnvelopeCache, SigningKey, TrustedKeys, Verifier, jws};
use serde_json::Value;

/// The seed article's example envelope, as shipped in `policies/envelopes/`.
pub const SEED_ENVELOPE: &str = include_str!("../../policies/envelopes/renewal-review.json");

#[derive(Args)]
pub struct DemoArgs {
    /// Only the envelope part: mint, verify, tamper (no gateway).
    #[arg(long)]
    pub envelope_only: bool,
}

fn env_err(context: &str) -> impl FnOnce(portcullis::envelope::EnvelopeError) -> CliError + '_ {
    move |e| CliError::Envelope {
        context: context.into(),
        source: e,
    }
}

/// `portcullis demo`: the gateway walk-through, then (with --envelope-only) just the
/// envelope's.
pub fn run(a: DemoArgs) -> Result<(), CliError> {
    if a.envelope_only {
        return envelope_walkthrough();
    }
    let mut out = std::io::stdout();
    portcullis::demo::scenario::run(&mut out)
        .map(|_| ())
        .map_err(CliError::Usage)
}

fn envelope_walkthrough() -> Result<(), CliError> {
    let now = clock::now_unix();
    outln!("== Portcullis envelope walk-through: renewal review ==\n")?;
    let key = SigningKey::generate(Some("demo-issuer-1".into())).map_err(env_err("keygen"))?;
    outln!("1. Issuer key generated (Ed25519), kid `{}`.", key.kid)?;

    let Value::Object(seed) = serde_json::from_str::<Value>(SEED_ENVELOPE)
        .map_err(|e| CliError::Usage(format!("embedded seed envelope: {e}")))?
    else {
        return Err(CliError::Usage(
            "embedded seed envelope is not an object".into(),
        ));
    };
    let opts = MintOptions {
        now,
        ttl_secs: Some(15 * 60),
        agent_id: Some("renewal-review-agent".into()),
        agent_kind: Some("renewal_reviewer".into()),
        ..MintOptions::default()
    };
    let claims = claims_from_file(seed, &opts).map_err(env_err("minting the seed envelope"))?;
    let token = jws::sign(&claims, &key);
    outln!(
        "2. Minted the seed's envelope for {} ({}), purpose `{}`, expiring {} ({} bytes):\n   {}...",
        claims.delegator_id,
        claims.agent_kind,
        claims.purpose,
        claims.expires_at,
        token.len(),
        &token[..token.len().min(72)]
    )?;

    let mut keys = TrustedKeys::new();
    keys.add(key.kid.clone(), key.public_key());
    let verifier = Verifier::new(keys, "portcullis");
    let ok = verifier.verify(&token, now).map_err(CliError::Refused)?;
    outln!(
        "3. Verified: tools {:?}, customer {:?}, max {} records, data classes {:?}.",
        ok.allowed_tools,
        ok.resource_constraints
            .scope("customer_id")
            .map_or(&[][..], |s| s.as_slice()),
        ok.resource_constraints.max_records,
        ok.resource_constraints.data_classes
    )?;

    let mut cache = EnvelopeCache::new(1024);
    cache
        .verify(&verifier, &token, now)
        .map_err(CliError::Refused)?;
    cache
        .verify(&verifier, &token, now)
        .map_err(CliError::Refused)?;
    outln!(
        "4. Through the verified-envelope cache: {} miss, {} hit (a repeat call costs a lookup).",
        cache.misses,
        cache.hits
    )?;

    outln!("5. Tampering:")?;
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(parts[1])
            .map_err(|e| CliError::Usage(e.to_string()))?,
    )
    .map_err(|e| CliError::Usage(e.to_string()))?;
    if let Some(tools) = payload["allowed_tools"].as_array_mut() {
        tools.push(Value::from("billing.update"));
    }
    payload["resource_constraints"]["max_records"] = Value::from(100_000);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );
    report(
        "   widened tools and record limit, old signature",
        &verifier,
        &forged,
        now,
    )?;

    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"agent-envelope+jwt"}"#);
    let alg_none = format!("{none_header}.{}.", parts[1]);
    report(
        "   re-labelled `alg: none`, no signature      ",
        &verifier,
        &alg_none,
        now,
    )?;

    let expired = claims_from_file(
        serde_json::from_str(SEED_ENVELOPE).unwrap_or_default(),
        &MintOptions {
            now: now - 3600,
            ttl_secs: Some(60),
            ..MintOptions::default()
        },
    )
    .map_err(env_err("minting an expired example"))?;
    report(
        "   validly signed but expired an hour ago     ",
        &verifier,
        &jws::sign(&expired, &key),
        now,
    )?;

    let other = SigningKey::generate(Some("demo-issuer-1".into())).map_err(env_err("keygen"))?;
    report(
        "   signed by an untrusted key under our kid   ",
        &verifier,
        &jws::sign(&claims, &other),
        now,
    )?;

    outln!(
        "\nNext: `portcullis keygen --out keys`, then `portcullis mint --key keys/private.pem \\"
    )?;
    outln!(
        "  --claims policies/envelopes/renewal-review.json --ttl 15m`, then `portcullis verify --jwks keys/jwks.json -`."
    )?;
    Ok(())
}

fn report(label: &str, v: &Verifier, token: &str, now: i64) -> Result<(), CliError> {
    match v.verify(token, now) {
        Ok(_) => outln!("{label} -> ACCEPTED (this is a bug)"),
        Err(e) => outln!("{label} -> refused: {} ({e})", e.code()),
    }
}
