//! The console's pages as maud markup: the layout, sign-in, dashboard, access rights,
//! verification queue and link file. Every value is escaped by maud.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::charts::{bars, fill_of, shown, stacked_columns};
use crate::access::{Access, HubDuty, PolicyRule, Principal, RuleSpec};
use crate::core::{
    AccessRequestView, ConfirmationFile, Dashboard, LinkDetails, PolicyChangeView, RecordView,
    Shown, SimulationAnswer,
};

/// Where a page sits in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Dashboard,
    Access,
    Verification,
}

/// The sections a principal may open: each is shown only to those its data is for.
pub(super) fn sections(access: &Access) -> Vec<(Section, &'static str, &'static str)> {
    let mut sections = Vec::new();
    if access.has_duty(HubDuty::Statistics) {
        sections.push((Section::Dashboard, "/console", "Dashboard"));
    }
    if access.has_duty(HubDuty::Administer) {
        sections.push((Section::Access, "/console/access", "Access rights"));
    }
    if !access.authorities().is_empty() {
        sections.push((
            Section::Verification,
            "/console/verification",
            "Verification queue",
        ));
    }
    sections
}

pub(super) fn layout(
    title: &str,
    principal: Option<&Principal>,
    nav: &[(Section, &'static str, &'static str)],
    current: Option<Section>,
    notice: Option<&str>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · interop-hub console" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                header {
                    strong { "interop-hub" }
                    nav {
                        @for (section, href, label) in nav {
                            a href=(href) class=[(current == Some(*section)).then_some("current")] { (label) }
                        }
                    }
                    @if let Some(principal) = principal {
                        span class="who" id="who" {
                            (principal.subject) " · " (principal.agency) " (" (principal.member_state) ") · "
                            (principal.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))
                        }
                        form method="post" action="/console/sign-out" {
                            button type="submit" id="sign-out" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(notice) = notice {
                        p class="notice" id="notice" { (notice) }
                    }
                    (body)
                }
            }
        }
    }
}

pub(super) fn sign_in(problem: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        &[],
        None,
        problem,
        html! {
            form method="post" action="/console/sign-in" class="card" {
                label for="token" { "Bearer token (from " code { "interop-hub token" } ")" }
                textarea id="token" name="token" rows="5" cols="80" required {}
                button type="submit" id="sign-in" { "Sign in" }
            }
        },
    )
}

pub(super) fn home(nav: &[(Section, &'static str, &'static str)]) -> Markup {
    html! {
        @if nav.is_empty() {
            p { "Your roles open no console page: the console serves administrators, supervisors and verifiers." }
        } @else {
            ul { @for (_, href, label) in nav { li { a href=(href) { (label) } } } }
        }
    }
}

pub(super) fn dashboard(d: &Dashboard) -> Markup {
    let withheld = format!("<{}", d.suppressed_below);
    let neutral = |_: &str| "#4a6fa5";
    let hours: Vec<(String, Vec<Shown>)> = d
        .stored_per_hour
        .iter()
        .map(|hour| {
            let stored = Shown {
                label: "stored".to_owned(),
                ..hour.clone()
            };
            (hour.label.clone(), vec![stored])
        })
        .collect();
    let figure = |id: &str, class: &str, figure: &Shown, caption: &str| {
        let text = shown(figure.count, &withheld);
        html! {
            div class="figure" {
                span class=(class) id=(id) data-row=(figure.row) data-count=(text) { (text) }
                span { (caption) }
            }
        }
    };
    html! {
        p class="as-of" {
            "Published statistics as of " (d.as_of.date()) " " (format!("{:02}:{:02}", d.as_of.hour(), d.as_of.minute()))
            " UTC, one snapshot a day. Counts below " (d.suppressed_below) " are withheld ("
            (withheld) "), and so are the counts that would let one be worked out from the others."
        }
        section class="figures" {
            (figure("backlog", "value", &d.backlog, "yellow links to verify"))
            (figure("overdue", "value overdue", &d.overdue, "overdue"))
        }
        section { h2 { "Records per system" } (bars("Records per system", &d.records_per_system, &withheld, &neutral)) }
        section {
            h2 { "Links made per day, by colour (14 days)" }
            (stacked_columns("Links per colour over time", &d.links_per_day, &withheld, &fill_of))
            p class="legend" { @for c in ["white", "yellow", "green", "red"] {
                svg width="12" height="12" { rect width="12" height="12" fill=(fill_of(c)) stroke="#555" {} } " " (c) " "
            } }
            (bars("Links per colour", &d.links_per_colour, &withheld, &fill_of))
        }
        section {
            h2 { "Verification backlog by authority" }
            table {
                thead { tr { th { "authority" } th { "open" } } }
                tbody { @for open in &d.backlog_by_authority {
                    @let text = shown(open.count, &withheld);
                    tr { td { (open.label) } td data-row=(open.row) data-count=(text) { (text) } }
                } }
            }
        }
        section { h2 { "Ingest: records stored per hour (24 h)" } (stacked_columns("Ingest rate", &hours, &withheld, &neutral)) }
        section {
            h2 { "Refused and flagged records" }
            (bars("Refused and flagged", &d.ingest_quality, &withheld, &|label: &str| if label.ends_with("refused") { "#c0392b" } else { "#e6b800" }))
        }
    }
}

fn rule_cells(rule: &RuleSpec) -> Markup {
    match rule {
        RuleSpec::Permission {
            subject,
            system,
            action,
        } => html! {
            td { "permission" } td { (subject) } td { (system) } td { (action) }
        },
        RuleSpec::Assignment { member, role } => html! {
            td { "assignment" } td { (member) } td { "—" } td { "holds " (role) }
        },
        RuleSpec::Denial {
            subject,
            system,
            action,
        } => html! {
            td { "denial" } td { (subject) } td { (system) } td { "never " (action) }
        },
    }
}

pub(super) fn access(
    rules: &[PolicyRule],
    pending: &[AccessRequestView],
    changes: &[PolicyChangeView],
    simulation: Option<(&SimulationQuery, &SimulationAnswer)>,
) -> Markup {
    html! {
        section {
            h2 { "Changes waiting for a second administrator" }
            @if changes.is_empty() { p id="no-changes" { "None." } }
            @else {
                table id="changes" {
                    thead { tr { th { "proposed" } th { "by" } th { "change" } th { "kind" } th { "subject / member" } th { "system" } th { "action / role" } th { "reason" } th { "decision" } } }
                    tbody { @for change in changes {
                        tr data-change=(change.id) {
                            td { (change.proposed_at.date()) }
                            td { (change.proposed_by) }
                            td { (change.change) }
                            (rule_cells(&change.rule))
                            td { (change.reason) }
                            td { form method="post" action=(format!("/console/access/changes/{}/decide", change.id)) class="inline" {
                                input name="reason" placeholder="reason" required;
                                button type="submit" name="approve" value="true" { "Approve" }
                                button type="submit" name="approve" value="false" { "Refuse" }
                            } }
                        }
                    } }
                }
            }
        }
        section {
            h2 { "Pending access requests" }
            @if pending.is_empty() { p id="no-requests" { "None." } }
            @else {
                table id="requests" {
                    thead { tr { th { "requested" } th { "by" } th { "system" } th { "case" } th { "justification" } th { "decision" } } }
                    tbody { @for request in pending {
                        tr {
                            td { (request.created_at.date()) }
                            td { (request.subject) " · " (request.agency) " (" (request.member_state) ")" }
                            td { (request.system) }
                            td { (request.case_reference) }
                            td { (request.justification) }
                            td { form method="post" action=(format!("/console/access/requests/{}/decide", request.id)) class="inline" {
                                input name="reason" placeholder="reason" required;
                                input name="hours" type="number" min="1" max="720" value="24" title="hours the grant lasts";
                                button type="submit" name="grant" value="true" { "Grant" }
                                button type="submit" name="grant" value="false" { "Refuse" }
                            } }
                        }
                    } }
                }
            }
        }
        section {
            h2 { "Add a rule" }
            form method="post" action="/console/access/rules" class="card" id="add-rule" {
                label { "kind " select name="kind" { option value="permission" { "permission" } option value="assignment" { "assignment" } option value="denial" { "denial" } } }
                label { "subject or member " input name="who" placeholder="le_designated or user:BKA/k.weber" required; }
                label { "system " input name="system" placeholder="ees, *, hub"; }
                label { "action " input name="action" placeholder="hit, read:identity, …"; }
                label { "role (assignments) " input name="role" placeholder="border_guard"; }
                label { "lapses after hours " input name="hours" type="number" min="1"; }
                label { "reason " input name="reason" required; }
                button type="submit" { "Add and apply" }
            }
        }
        section {
            h2 { "What would this principal see?" }
            form method="get" action="/console/access" class="card" id="simulate" {
                label { "subject " input name="subject" required value=[simulation.map(|(q, _)| q.subject.as_str())]; }
                label { "agency " input name="agency" required value=[simulation.map(|(q, _)| q.agency.as_str())]; }
                label { "member state " input name="member_state" required value=[simulation.map(|(q, _)| q.member_state.as_str())]; }
                label { "roles (comma-separated) " input name="roles" value=[simulation.map(|(q, _)| q.roles.as_str())]; }
                button type="submit" { "Simulate" }
            }
            @if let Some((_, answer)) = simulation {
                table id="simulation" {
                    thead { tr { th { "system" } th { "a search answers" } th { "field groups" } } }
                    tbody { @for decision in &answer.search {
                        @let json = serde_json::to_value(&decision.answer).unwrap_or_default();
                        tr {
                            td { (decision.system) }
                            td { (json["answer"].as_str().unwrap_or("")) }
                            td { (json["fields"].as_array().map(|f| f.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                        }
                    } }
                }
            }
        }
        section {
            h2 { "Roles, grants and assignments" }
            table id="rules" {
                thead { tr { th { "id" } th { "kind" } th { "subject / member" } th { "system" } th { "action / role" } th { "lapses" } th { "reason" } th { "revoke" } } }
                tbody { @for rule in rules {
                    tr class=[(!rule.active).then_some("lapsed")] data-rule=(rule.id) {
                        td { (rule.id) }
                        (rule_cells(&rule.rule))
                        td { @if let Some(at) = rule.expires_at { (at.date()) " " (at.time().hour()) ":" (format!("{:02}", at.time().minute())) } @else { "—" } }
                        td { (rule.reason) }
                        td { form method="post" action=(format!("/console/access/rules/{}/revoke", rule.id)) class="inline" {
                            input name="reason" placeholder="reason" required;
                            button type="submit" { "Revoke" }
                        } }
                    }
                } }
            }
        }
    }
}

/// The simulator's form fields, echoed back.
#[derive(Debug, Clone)]
pub(super) struct SimulationQuery {
    pub subject: String,
    pub agency: String,
    pub member_state: String,
    pub roles: String,
}

pub(super) fn queue(links: &[LinkDetails], now: time::OffsetDateTime) -> Markup {
    html! {
        @if links.is_empty() { p id="empty-queue" { "No yellow links await your authority." } }
        @else {
            table id="queue" {
                thead { tr { th { "link" } th { "records" } th { "rule" } th { "authority" } th { "deadline" } } }
                tbody { @for link in links {
                    @let overdue = link.deadline.is_some_and(|d| d < now);
                    tr class=[overdue.then_some("overdue")] {
                        td { a href=(format!("/console/verification/{}", link.id)) { (link.id.get(..8).unwrap_or(&link.id)) } }
                        td { (link.records[0].system) " ↔ " (link.records[1].system) }
                        td { (link.rule.as_str()) }
                        td { (link.authority) }
                        td { @if let Some(d) = link.deadline { (d.date()) " " (format!("{:02}:{:02}", d.hour(), d.minute())) }
                             @if overdue { " " span class="badge overdue" { "overdue" } } }
                    }
                } }
            }
        }
    }
}

fn record_panel(title: &str, view: Option<&RecordView>) -> Markup {
    html! {
        div class="record card" {
            h3 { (title) }
            @match view {
                None => p { "Not visible to you." },
                Some(view) => {
                    @let json = view.as_json();
                    @let record = &json["record"];
                    dl {
                        dt { "system" } dd { (record["system"].as_str().unwrap_or("")) }
                        dt { "source id" } dd { (record["source_id"].as_str().unwrap_or("")) }
                        @if let Some(names) = record["names"].as_array() {
                            @for name in names {
                                dt { (name["kind"].as_str().unwrap_or("name")) }
                                dd { (name["surname"]["original"].as_str().unwrap_or("")) ", " (name["given_names"]["original"].as_str().unwrap_or("")) }
                            }
                        }
                        @if let Some(dob) = record["date_of_birth"].as_str() { dt { "date of birth" } dd { (dob) } }
                        @if let Some(sex) = record["sex"].as_str() { dt { "sex" } dd { (sex) } }
                        @if let Some(n) = record["nationalities"].as_array() {
                            dt { "nationalities" } dd { (n.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")) }
                        }
                        @if let Some(docs) = record["travel_documents"].as_array() {
                            @for doc in docs { dt { "document" } dd { (doc["kind"].as_str().unwrap_or("")) " " (doc["number"].as_str().unwrap_or("")) } }
                        }
                        @if let Some(templates) = record["templates"].as_array() {
                            @for t in templates { dt { "template" } dd { (t["modality"].as_str().unwrap_or("")) ", quality " (t["quality"]) } }
                        }
                    }
                }
            }
        }
    }
}

pub(super) fn link_file(
    file: &ConfirmationFile,
    records: [Option<&RecordView>; 2],
    now: time::OffsetDateTime,
) -> Markup {
    let link = &file.link;
    let evidence = &link.evidence;
    let overdue = link.colour.as_str() == "yellow" && link.deadline.is_some_and(|d| d < now);
    html! {
        p {
            "Colour " span class=(format!("badge {}", link.colour.as_str())) id="colour" { (link.colour.as_str()) }
            " · rule " (link.rule.as_str()) " · authority " (link.authority)
            @if let Some(d) = link.deadline { " · deadline " (d.date()) " " (format!("{:02}:{:02}", d.hour(), d.minute())) }
            @if overdue { " " span class="badge overdue" { "overdue" } }
        }
        div class="pair" {
            (record_panel(&format!("{} {}", link.records[0].system, "record"), records[0]))
            (record_panel(&format!("{} {}", link.records[1].system, "record"), records[1]))
        }
        section {
            h2 { "Evidence" }
            table id="evidence" {
                tbody {
                    tr { th { "identity" } td { (evidence["identity"]["identity"].as_str().unwrap_or("—")) } }
                    tr { th { "name score" } td { (format!("{:.3}", evidence["identity"]["name_score"].as_f64().unwrap_or(0.0))) } }
                    tr { th { "date of birth" } td { (evidence["identity"]["date_of_birth"].as_str().unwrap_or("—")) } }
                    tr { th { "document" } td { (evidence["identity"]["document"].as_str().unwrap_or("—")) } }
                    tr { th { "biometrics" } td { (evidence["biometrics"].as_str().unwrap_or("—")) } }
                    @if let Some(scores) = evidence["biometric_scores"].as_array() {
                        @for score in scores {
                            tr { th { (score["modality"].as_str().unwrap_or("")) " (" (score["algorithm"].as_str().unwrap_or("")) ")" }
                                 td { (format!("{:.3}", score["similarity"].as_f64().unwrap_or(0.0))) " against threshold " (score["threshold"]) } }
                        }
                    }
                }
            }
        }
        section {
            h2 { "History" }
            table id="history" {
                thead { tr { th { "when" } th { "who" } th { "event" } th { "colour" } th { "justification" } } }
                tbody { @for entry in &file.history {
                    @let json = serde_json::to_value(entry).unwrap_or_default();
                    tr {
                        td { (json["at"].as_str().unwrap_or("")) }
                        td { (json["actor"].as_str().unwrap_or("")) }
                        td { (json["event"].as_str().unwrap_or("")) }
                        td { (json["colour_before"].as_str().unwrap_or("—")) " → " (json["colour_after"].as_str().unwrap_or("")) }
                        td { (json["justification"].as_str().unwrap_or("")) }
                    }
                } }
            }
        }
        // The file reaches only the link's verifier: the decision form is always theirs.
        section {
            h2 { "Decide" }
            form method="post" action=(format!("/console/verification/{}", link.id)) class="card" id="decide" {
                @for (colour, meaning) in [("white", "same person, legitimately"), ("green", "different persons"), ("red", "identity fraud")] {
                    label { input type="radio" name="colour" value=(colour) required; " " (colour) " — " (meaning) }
                }
                label for="justification" { "Justification" }
                textarea id="justification" name="justification" rows="3" cols="80" required {}
                button type="submit" id="submit-decision" { "Record decision" }
            }
        }
    }
}

pub(super) const STYLESHEET: &str = r#"
body { font-family: system-ui, sans-serif; margin: 0; color: #222; background: #f6f7f9; }
header { display: flex; gap: 1.5rem; align-items: center; padding: .6rem 1.2rem; background: #1f3a5f; color: #fff; }
header a { color: #dfe8f5; margin-right: 1rem; text-decoration: none; }
header a.current { color: #fff; font-weight: bold; border-bottom: 2px solid #fff; }
header .who { margin-left: auto; font-size: .9rem; }
header form { margin: 0; }
main { padding: 1rem 1.5rem; max-width: 1200px; }
.card { background: #fff; border: 1px solid #d6dbe1; border-radius: 6px; padding: .8rem 1rem; margin: .6rem 0; }
form.card label { display: block; margin: .35rem 0; }
form.inline { display: flex; gap: .3rem; }
table { border-collapse: collapse; background: #fff; margin: .5rem 0; }
th, td { border: 1px solid #d6dbe1; padding: .3rem .5rem; text-align: left; vertical-align: top; font-size: .9rem; }
tr.overdue td, td.overdue { background: #fdecea; }
tr.lapsed td { color: #999; }
.badge { padding: .05rem .4rem; border-radius: 4px; border: 1px solid #555; }
.badge.white { background: #f2f2f2; } .badge.yellow { background: #f7dc6f; } .badge.green { background: #a9dfbf; }
.badge.red, .badge.overdue { background: #e6b0aa; }
.notice { background: #eaf2e3; border: 1px solid #9bc27e; padding: .4rem .8rem; }
.figures { display: flex; gap: 1rem; }
.figure { background: #fff; border: 1px solid #d6dbe1; padding: .6rem 1rem; }
.figure .value { display: block; font-size: 2rem; font-weight: bold; }
.figure .overdue { color: #c0392b; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem .8rem; }
dt { color: #555; }
svg.chart { background: #fff; border: 1px solid #d6dbe1; }
"#;
