//! `interop-hub import`: pushes an NDJSON file of native records to a running hub over
//! its REST API, exactly as connectors would, and summarises what happened.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub server: String,
    pub concurrency: usize,
    /// Bearer tokens whose roles include `connector:<system>` for the file's systems: one
    /// per member state whose records the file holds (`EU` for ETIAS), since a connector
    /// writes only its own state's records. Each record goes with its state's token.
    pub tokens: Vec<String>,
}

/// Which token each record goes with.
enum Tokens<'a> {
    /// One token: every record goes with it.
    One(&'a str),
    /// By member state: each record with its responsible state's token, the state read
    /// by parsing the record as the hub will.
    ByState(BTreeMap<String, &'a str>, connectors::AlgorithmRegistry),
}

impl<'a> Tokens<'a> {
    fn new(tokens: &'a [String]) -> anyhow::Result<Self> {
        match tokens {
            [] => anyhow::bail!("give a token (--token)"),
            [one] => Ok(Self::One(one)),
            many => {
                let mut by_state = BTreeMap::new();
                for (i, token) in many.iter().enumerate() {
                    let state = interop_hub::access::unverified_member_state(token)
                        .ok_or_else(|| anyhow::anyhow!("token {} is not a hub token", i + 1))?;
                    if by_state.insert(state.clone(), token.as_str()).is_some() {
                        anyhow::bail!("two tokens for member state {state}");
                    }
                }
                Ok(Self::ByState(
                    by_state,
                    connectors::AlgorithmRegistry::default(),
                ))
            }
        }
    }

    /// The token for a record of `system`, or the member state nobody gave a token for.
    fn for_record(&self, system: connectors::SourceSystem, body: &str) -> Result<&'a str, String> {
        let (by_state, registry) = match self {
            Self::One(token) => return Ok(token),
            Self::ByState(by_state, registry) => (by_state, registry),
        };
        let state = connectors::parse(system, body.as_bytes(), registry).map_or_else(
            // The hub refuses what does not parse whoever sends it.
            |_| None,
            |accepted| Some(interop_hub::core::responsible_state(&accepted.record).to_owned()),
        );
        match state {
            Some(state) => by_state.get(&state).copied().ok_or(state),
            None => Ok(by_state.values().next().copied().unwrap_or_default()),
        }
    }
}

/// One line of an import file.
#[derive(Debug, Deserialize)]
struct ImportLine {
    system: String,
    content_type: String,
    /// The native record: a JSON value for JSON systems, or the document text.
    body: serde_json::Value,
}

/// Counts of what the hub did with each line; refusals grouped by reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub created: u64,
    pub updated: u64,
    pub replayed: u64,
    pub refused: u64,
    /// Reason (problem code, and the field rule for validation failures) → count.
    pub refusal_reasons: BTreeMap<String, u64>,
    /// Lines that never got an answer from the hub (network errors, server errors).
    pub failed: u64,
}

enum LineResult {
    Created,
    Updated,
    Replayed,
    Refused(Vec<String>),
    Failed(String),
}

pub async fn import(file: &Path, options: &ImportOptions) -> anyhow::Result<ImportSummary> {
    let text = tokio::fs::read_to_string(file)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .collect();
    let progress = ProgressBar::new(lines.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} records  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let client = reqwest::Client::new();
    let base = options.server.trim_end_matches('/').to_owned();
    let tokens = Tokens::new(&options.tokens)?;
    let mut results = futures::stream::iter(lines)
        .map(|(number, line)| {
            let client = &client;
            let base = &base;
            let tokens = &tokens;
            async move { send_line(client, base, tokens, number + 1, line).await }
        })
        .buffered(options.concurrency.max(1));
    let mut summary = ImportSummary::default();
    while let Some(result) = results.next().await {
        progress.inc(1);
        match result {
            LineResult::Created => summary.created += 1,
            LineResult::Updated => summary.updated += 1,
            LineResult::Replayed => summary.replayed += 1,
            LineResult::Refused(reasons) => {
                summary.refused += 1;
                for reason in reasons {
                    *summary.refusal_reasons.entry(reason).or_default() += 1;
                }
            }
            LineResult::Failed(why) => {
                summary.failed += 1;
                progress.suspend(|| eprintln!("{why}"));
            }
        }
    }
    progress.finish_and_clear();
    Ok(summary)
}

async fn send_line(
    client: &reqwest::Client,
    base: &str,
    tokens: &Tokens<'_>,
    number: usize,
    line: &str,
) -> LineResult {
    let parsed: ImportLine = match serde_json::from_str(line) {
        Ok(parsed) => parsed,
        Err(e) => {
            return LineResult::Refused(vec![format!(
                "unreadable_line (not a {{system, content_type, body}} object: {})",
                json_error_kind(&e)
            )]);
        }
    };
    let body = match parsed.body {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    };
    // Only the five systems' names go into the URL: anything else is refused here.
    let Ok(system) = parsed.system.parse::<connectors::SourceSystem>() else {
        return LineResult::Refused(vec![
            "unknown_system (not one of the five source systems)".to_owned(),
        ]);
    };
    let token = match tokens.for_record(system, &body) {
        Ok(token) => token,
        Err(state) => {
            return LineResult::Refused(vec![format!(
                "no_token_for_member_state ({state}: its records need its connector's token)"
            )]);
        }
    };
    let url = format!("{base}/v1/systems/{system}/records");
    let response = match client
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, parsed.content_type)
        .bearer_auth(token)
        .body(body)
        .send()
        .await
    {
        Ok(response) => response,
        Err(e) => return LineResult::Failed(format!("line {number}: no answer from the hub: {e}")),
    };
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap_or_default();
    match status.as_u16() {
        201 => LineResult::Created,
        200 => match answer.get("outcome").and_then(|o| o.as_str()) {
            Some("updated") => LineResult::Updated,
            _ => LineResult::Replayed,
        },
        // Not the record's fault: the token is wrong for this hub or this system.
        401 | 403 => LineResult::Failed(format!(
            "line {number}: the hub refused the token ({status}) for {system}"
        )),
        400..=499 => LineResult::Refused(refusal_reasons(&answer, status.as_u16())),
        _ => LineResult::Failed(format!("line {number}: the hub answered {status}")),
    }
}

/// `validation_failed: required at /traveller/surname`, one per offending field.
fn refusal_reasons(problem: &serde_json::Value, status: u16) -> Vec<String> {
    let code = problem
        .get("code")
        .and_then(|c| c.as_str())
        .unwrap_or("http_error")
        .to_owned();
    let fields: Vec<String> = problem
        .get("errors")
        .and_then(|e| e.as_array())
        .map(|errors| {
            errors
                .iter()
                .map(|error| {
                    let rule = error.get("rule").and_then(|r| r.as_str()).unwrap_or("?");
                    let field = error.get("field").and_then(|f| f.as_str()).unwrap_or("?");
                    format!("{code}: {rule} at {field}")
                })
                .collect()
        })
        .unwrap_or_default();
    if fields.is_empty() {
        vec![format!("{code} ({status})")]
    } else {
        fields
    }
}

fn json_error_kind(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "JSON syntax error",
        serde_json::error::Category::Data => "missing or mistyped field",
        serde_json::error::Category::Eof => "truncated JSON",
    }
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "accepted: {} (created {}, updated {})",
            self.created + self.updated,
            self.created,
            self.updated
        )?;
        writeln!(f, "replayed: {}", self.replayed)?;
        writeln!(f, "refused:  {}", self.refused)?;
        for (reason, count) in &self.refusal_reasons {
            writeln!(f, "  {count:>6}  {reason}")?;
        }
        if self.failed > 0 {
            writeln!(
                f,
                "failed:   {} (no answer from the hub; safe to import again)",
                self.failed
            )?;
        }
        Ok(())
    }
}
