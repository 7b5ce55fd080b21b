//! Each service called directly, with no HTTP in between, over in-memory SQLite databases:
//! what it answers and what it leaves in the audit log.

use connectors::SourceSystem;

use super::statistics::StatCategory;
use super::{
    AccessRequestDecision, AccessRequestFiling, AccessRequestKind, BiographicQuery, Hub,
    IngestOutcome, LinkDetails, LinkFilter, Purpose, SearchRequest, SystemAnswer, Verification,
};
use crate::access::{Principal, Role, RuleSpec};
use crate::config::HubConfig;
use crate::error::HubError;
use crate::matching::LinkColour;

/// A prepared hub whose four databases live in memory (the directory holds index files).
/// Each database is named, so that every connection to it (the pool's, the migration's,
/// the readiness probe's) reaches the same one.
async fn hub() -> (tempfile::TempDir, Hub) {
    let (dir, config) = in_memory_config();
    (dir, prepared(&config).await)
}

fn in_memory_config() -> (tempfile::TempDir, HubConfig) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let in_memory = |name: &str| {
        Some(format!(
            "sqlite:file:{name}-{}?mode=memory&cache=shared",
            uuid::Uuid::now_v7()
        ))
    };
    let mut config = HubConfig::embedded(dir.path());
    config.civil_database_url = in_memory("civil");
    config.law_enforcement_database_url = in_memory("law-enforcement");
    config.mid_database_url = in_memory("links");
    config.control_database_url = in_memory("control");
    (dir, config)
}

async fn prepared(config: &HubConfig) -> Hub {
    let hub = Hub::open(config).await.expect("the hub opens");
    hub.records
        .prepare(&config.index_dir())
        .await
        .expect("the indexes are built");
    hub
}

/// Two prepared hubs on the same in-memory databases, each with its own index files (the
/// directories live while the returned pair does).
async fn two_hubs_on_one_set_of_databases() -> ([tempfile::TempDir; 2], Hub, Hub) {
    let (dir, config) = in_memory_config();
    let first = prepared(&config).await;
    let second_dir = tempfile::tempdir().expect("a temporary directory");
    let mut second_config = config.clone();
    second_config.data_dir = second_dir.path().to_path_buf();
    let second = prepared(&second_config).await;
    ([dir, second_dir], first, second)
}

fn principal(member_state: &str, roles: &[&str]) -> Principal {
    let roles = roles
        .iter()
        .map(|role| role.parse::<Role>().expect("a role"))
        .collect();
    Principal::new("officer-1", "AGENCY", member_state, roles).expect("a principal")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Spain's EES connector pushes the EES example; Sweden's SIS connector the SIS one, which
/// the detector links to it.
async fn ingest_pair(hub: &Hub) {
    let spain = principal("ES", &["connector:ees"]);
    let ees = hub
        .records
        .ingest(
            &spain,
            SourceSystem::Ees,
            Some("application/json"),
            &fixture("ees.json"),
        )
        .await
        .expect("the EES example is stored");
    assert_eq!(ees.outcome, IngestOutcome::Created);
    let sweden = principal("SE", &["connector:sis"]);
    let sis = hub
        .records
        .ingest(
            &sweden,
            SourceSystem::Sis,
            Some("application/json"),
            &fixture("sis.json"),
        )
        .await
        .expect("the SIS example is stored");
    assert_eq!(sis.outcome, IngestOutcome::Created);
}

/// The audit log's actions, oldest first, as a supervisor reads them.
async fn audited_actions(hub: &Hub) -> Vec<String> {
    let supervisor = principal("SE", &["supervisor"]);
    let page = hub
        .administration
        .audit_log(&supervisor, 0, 1_000)
        .await
        .expect("a supervisor reads the log");
    page.entries.into_iter().map(|entry| entry.action).collect()
}

#[tokio::test]
async fn records_are_created_replayed_read_back_and_deleted_by_their_own_connector() {
    let (_dir, hub) = hub().await;
    let spain = principal("ES", &["connector:ees"]);
    let body = fixture("ees.json");
    let push = || {
        hub.records
            .ingest(&spain, SourceSystem::Ees, Some("application/json"), &body)
    };
    assert_eq!(
        push().await.expect("stored").outcome,
        IngestOutcome::Created
    );
    assert_eq!(
        push().await.expect("stored").outcome,
        IngestOutcome::Replayed
    );
    let read = hub
        .records
        .record(
            &spain,
            Purpose::RecordManagement,
            SourceSystem::Ees,
            "EES-DE-2026-000123",
        )
        .await
        .expect("its connector reads it back");
    assert_eq!(read.as_json()["record"]["source_id"], "EES-DE-2026-000123");

    let germany = principal("DE", &["connector:ees"]);
    assert!(matches!(
        hub.records
            .delete(&germany, SourceSystem::Ees, "EES-DE-2026-000123")
            .await,
        Err(HubError::RecordNotFound)
    ));
    hub.records
        .delete(&spain, SourceSystem::Ees, "EES-DE-2026-000123")
        .await
        .expect("its own connector deletes it");
    assert!(matches!(
        hub.records
            .record(
                &spain,
                Purpose::RecordManagement,
                SourceSystem::Ees,
                "EES-DE-2026-000123",
            )
            .await,
        Err(HubError::RecordNotFound)
    ));
    assert_eq!(
        audited_actions(&hub).await,
        ["ingest", "ingest", "read", "delete", "delete", "read"]
    );
}

#[tokio::test]
async fn the_portal_answers_a_border_guard_with_the_record_and_a_stranger_with_nothing() {
    let (_dir, hub) = hub().await;
    ingest_pair(&hub).await;
    let search = || SearchRequest {
        purpose: Purpose::BorderCheck,
        biographic: Some(BiographicQuery {
            surname: Some("Mueller".to_owned()),
            given_names: None,
            date_of_birth: Some("1990-04-17".to_owned()),
            nationality: None,
            document_number: None,
        }),
        biometric: Vec::new(),
        systems: None,
        fallback: None,
        case_reference: None,
    };
    let guard = principal("ES", &["border_guard"]);
    let answer = hub
        .portal
        .search(&guard, search())
        .await
        .expect("a border guard searches");
    let ees = answer
        .results
        .iter()
        .find_map(|result| match result {
            SystemAnswer::Records(records) if records.system == SourceSystem::Ees => Some(records),
            _ => None,
        })
        .expect("EES answers with records");
    assert_eq!(ees.records.len(), 1);

    let stranger = principal("ES", &["statistics_reader_that_does_not_exist"]);
    assert!(matches!(
        hub.portal.search(&stranger, search()).await,
        Err(HubError::Forbidden)
    ));
}

/// A bureau's verdict: one person under two identities.
fn same_face_under_two_names() -> Verification {
    Verification {
        colour: LinkColour::Red,
        justification: "the same face under two names".to_owned(),
    }
}

/// The one link in `verifier`'s queue of links to EES records.
async fn the_one_link_queued(hub: &Hub, verifier: &Principal) -> LinkDetails {
    let queue = hub
        .links
        .queue(
            verifier,
            LinkFilter {
                system: Some(SourceSystem::Ees),
                limit: 50,
                ..LinkFilter::default()
            },
        )
        .await
        .expect("the bureau reads its queue");
    assert_eq!(queue.total, 1, "{:?}", queue.links);
    queue.links.into_iter().next().expect("one link")
}

#[tokio::test]
async fn the_links_service_queues_a_link_for_its_bureau_and_takes_its_decision() {
    let (_dir, hub) = hub().await;
    ingest_pair(&hub).await;
    let sirene = principal("SE", &["sirene"]);
    let link = the_one_link_queued(&hub, &sirene).await;
    assert_eq!(link.authority, "sirene:SE", "a SIS alert's bureau verifies");
    let id = link.id.clone();

    let another_bureau = principal("IT", &["sirene"]);
    assert!(matches!(
        hub.links.file(&another_bureau, &id).await,
        Err(HubError::LinkNotFound)
    ));
    let decided = hub
        .links
        .verify(&sirene, &id, same_face_under_two_names())
        .await
        .expect("the bureau decides");
    assert_eq!(decided.link.colour, LinkColour::Red);
    assert!(matches!(
        hub.links
            .verify(
                &sirene,
                &id,
                Verification {
                    colour: LinkColour::Red,
                    justification: "again".to_owned(),
                },
            )
            .await,
        Err(HubError::AlreadyDecided)
    ));
    assert_eq!(decided.history.len(), 2);
}

#[tokio::test]
async fn administration_grants_a_requested_access_that_the_next_decision_follows() {
    let (_dir, hub) = hub().await;
    let officer = principal("SE", &["le_designated"]);
    let before = hub
        .access(&officer)
        .await
        .expect("access")
        .rights(SourceSystem::Ees);
    assert!(
        before.fields.is_empty() && before.request_access,
        "{before:?}"
    );
    let filed = hub
        .administration
        .file_access_request(
            &officer,
            AccessRequestFiling {
                kind: AccessRequestKind::Request,
                system: SourceSystem::Ees,
                case_reference: "CASE-1".to_owned(),
                justification: "a hit flag in an investigation".to_owned(),
            },
        )
        .await
        .expect("filed");
    assert_eq!(filed.status, "pending");
    assert!(matches!(
        hub.administration
            .decide_access_request(
                &officer,
                &filed.id,
                AccessRequestDecision {
                    grant: true,
                    reason: "my own".to_owned(),
                    hours: Some(1),
                },
            )
            .await,
        Err(HubError::Forbidden)
    ));
    let admin = principal("SE", &["admin"]);
    let decided = hub
        .administration
        .decide_access_request(
            &admin,
            &filed.id,
            AccessRequestDecision {
                grant: true,
                reason: "case confirmed".to_owned(),
                hours: Some(1),
            },
        )
        .await
        .expect("an administrator decides");
    assert_eq!(decided.status, "granted");
    let after = hub
        .access(&officer)
        .await
        .expect("access")
        .rights(SourceSystem::Ees);
    assert!(!after.fields.is_empty(), "{after:?}");
}

#[tokio::test]
async fn statistics_count_what_was_stored_and_operations_report_the_indexes() {
    let (_dir, hub) = hub().await;
    ingest_pair(&hub).await;
    let admin = principal("SE", &["admin"]);
    let statistics = hub
        .statistics
        .statistics(&admin)
        .await
        .expect("an administrator reads the statistics");
    let records = |system: Option<SourceSystem>| {
        statistics
            .rows
            .iter()
            .find(|row| {
                row.category == StatCategory::Records
                    && row.system == system
                    && row.key.is_none()
                    && row.period.is_none()
            })
            .map(|row| row.count)
    };
    assert_eq!(
        records(None),
        Some(None),
        "two records in all: a small count, withheld"
    );
    assert_eq!(
        records(Some(SourceSystem::Etias)),
        Some(Some(0)),
        "no ETIAS record: zero is published"
    );
    assert!(
        matches!(
            hub.statistics
                .statistics(&principal("SE", &["police"]))
                .await,
            Err(HubError::Forbidden)
        ),
        "the statistics duty only"
    );
    hub.operations.ready().await.expect("ready once prepared");
    let indexes = hub
        .operations
        .index_status(&admin)
        .await
        .expect("an operator reads the indexes");
    let held: usize = indexes.iter().map(|index| index.indexed).sum();
    let eligible: usize = indexes.iter().map(|index| index.eligible).sum();
    assert_eq!(held, eligible, "{indexes:?}");
    assert!(held >= 4, "both records' templates: {indexes:?}");
}

/// A second hub on the same databases (its own index files) has read the feeds once
/// prepared, learns what the first stored from the change feed alone, and the feeds' upkeep
/// puts back a template its index lost.
#[tokio::test]
async fn a_second_hub_on_the_same_databases_follows_the_feeds_and_mends_its_indexes() {
    use connectors::Partition;
    let (_dirs, first, second) = two_hubs_on_one_set_of_databases().await;
    ingest_pair(&first).await;

    let face = "acme-face-v3";
    let indexed = |hub: &Hub, partition| {
        hub.indexes
            .get()
            .map_or(0, |biometrics| biometrics.len(partition, face))
    };
    let partitions = [Partition::Civil, Partition::LawEnforcement];
    assert_eq!(indexed(&second, Partition::Civil), 0, "nothing yet");
    let lag = std::time::Duration::from_secs(5);
    assert_eq!(
        second.feeds.behind(lag),
        None,
        "a prepared hub has read the feeds"
    );
    for partition in partitions {
        let biometrics = second.indexes.ready().expect("ready");
        let applied = second
            .feeds
            .read(partition, biometrics, &second.metrics)
            .await
            .expect("the feed is read");
        assert!(applied > 0, "{partition:?} had changes");
    }
    assert_eq!(second.feeds.behind(lag), None);
    for partition in partitions {
        assert_eq!(indexed(&second, partition), indexed(&first, partition));
        assert_eq!(indexed(&second, partition), 1, "{partition:?}");
    }

    let lost = first
        .records
        .stores
        .of(Partition::Civil)
        .indexable_template_ids(face)
        .await
        .expect("template ids");
    let biometrics = second.indexes.ready().expect("ready");
    biometrics
        .remove(Partition::Civil, &lost)
        .await
        .expect("removed");
    assert_eq!(indexed(&second, Partition::Civil), 0);
    second.operations.tend_feeds().await.expect("upkeep");
    assert_eq!(
        indexed(&second, Partition::Civil),
        1,
        "mended from the store"
    );
}

/// A verification answers with the link's confirmation file and is not run twice, so it
/// decides under the policy the store holds when it runs: a rule removed through another hub
/// refuses it at once, though this hub has not read the policy version since.
#[tokio::test]
async fn a_verification_follows_a_rule_removed_through_another_hub() {
    let (_dirs, first, second) = two_hubs_on_one_set_of_databases().await;
    ingest_pair(&first).await;
    let sirene = principal("SE", &["sirene"]);
    let id = the_one_link_queued(&second, &sirene).await.id;

    let admin = principal("SE", &["admin"]);
    let verify_rule = first
        .administration
        .policy_rules(&admin)
        .await
        .expect("an administrator lists the rules")
        .into_iter()
        .find(|rule| {
            matches!(&rule.rule, RuleSpec::Permission { subject, system, action }
                if subject == "sirene" && system == "sis" && action == "verify")
        })
        .expect("the baseline lets SIRENE verify SIS links");
    first
        .administration
        .remove_policy_rule(&admin, verify_rule.id, "bureau suspended")
        .await
        .expect("the rule is removed through the first hub");

    let attempt = second
        .links
        .verify(&sirene, &id, same_face_under_two_names())
        .await;
    assert!(
        matches!(attempt, Err(HubError::LinkNotFound | HubError::Forbidden)),
        "refused under the rules as they are now, not as the second hub last read them: {:?}",
        attempt.map(|file| file.link.colour)
    );
}
